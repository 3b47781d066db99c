"""The alert store: one SQLite file (WAL) that holds every alert, its audit trail, every
notification attempt and the engine's heartbeat.

Every transition is one committed transaction, so a killed process loses nothing it has
reported. Dedup is enforced by the database itself: a partial unique index allows at most one
alert per ``(rule, subject)`` that is not resolved; a repeat updates ``last_at`` and ``count``.

>>> store = Store(":memory:")
>>> alert, change = store.raise_alert(Raised("fire", "s/z1", "pre_alarm", "s", "r", "z1",
...                                   "火灾预警", "Fire pre-alarm", {}, 1.7e9))
>>> change, store.raise_alert(Raised("fire", "s/z1", "critical", "s", "r", "z1",
...                                  "火警确认", "Fire confirmed", {}, 1.7e9 + 5))[1]
('new', 'escalated')
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINE = "alerts"  # the service name the engine writes its heartbeat under


@dataclass(frozen=True)
class Severity:
    name: str
    rank: int  # higher is worse; an alert only ever moves up
    zh: str
    en: str


SEVERITIES: dict[str, Severity] = {s.name: s for s in (
    Severity("critical", 4, "严重", "critical"),
    Severity("pre_alarm", 3, "预警（需人工复核）", "pre-alarm (check in person)"),
    Severity("major", 2, "重要", "major"),
    Severity("warning", 1, "一般", "warning"),
)}
STATES = ("firing", "acknowledged", "resolved")
ACTIVE_STATES = ("firing", "acknowledged")

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL, site TEXT NOT NULL,
    room TEXT, zone TEXT, severity TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'firing',
    title_zh TEXT NOT NULL, title_en TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}',
    count INTEGER NOT NULL DEFAULT 1, drill INTEGER NOT NULL DEFAULT 0,
    first_at REAL NOT NULL, last_at REAL NOT NULL, created_at REAL NOT NULL,
    acknowledged_at REAL, acknowledged_by TEXT,
    resolved_at REAL, resolved_by TEXT, resolution TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active ON alerts (rule, subject) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, site);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id), at REAL NOT NULL,
    actor TEXT NOT NULL, action TEXT NOT NULL, note TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS audit_by_alert ON audit (alert_id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id), contact TEXT NOT NULL,
    channel TEXT NOT NULL, severity TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS deliveries_by_alert ON deliveries (alert_id);
CREATE TABLE IF NOT EXISTS heartbeat (
    service TEXT PRIMARY KEY, at REAL NOT NULL, info TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS gateway_status (
    gateway TEXT PRIMARY KEY, site TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, at REAL NOT NULL);
"""

_SECRET_IN_URL = re.compile(r"(?<=://)([^/@:]*)(:[^/@]*)?@")


def redact(url: str) -> str:
    """A channel URL fit for a table anyone may read: apprise's own privacy form when it knows
    the scheme, else the password part removed."""
    try:
        import apprise
        service = apprise.Apprise.instantiate(url)
        if service is not None:
            return service.url(privacy=True)
    except Exception:  # noqa: BLE001 — redaction must never fail a delivery record
        pass
    return _SECRET_IN_URL.sub(lambda m: f"{m.group(1)}:****@" if m.group(2) else "****@", url)


@dataclass(frozen=True)
class Raised:
    """What a rule asks the store to record: the alert condition holds (again)."""
    rule: str
    subject: str
    severity: str
    site: str
    room: str | None
    zone: str | None
    title_zh: str
    title_en: str
    detail: dict[str, Any]
    at: float  # when it happened: the message's own time (gateway clock)
    drill: bool = False


@dataclass
class Alert:
    id: int
    rule: str
    subject: str
    site: str
    room: str | None
    zone: str | None
    severity: str
    state: str
    title_zh: str
    title_en: str
    detail: dict[str, Any]
    count: int
    drill: bool
    first_at: float
    last_at: float
    created_at: float
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    audit: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Alert":
        data = dict(row)
        data["detail"] = json.loads(data["detail"] or "{}")
        data["drill"] = bool(data["drill"])
        return cls(**data)

    @property
    def active(self) -> bool:
        return self.state != "resolved"


class Store:
    """Thread-safe access to the alert database. Open one per process (engine, API)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an alert reported is an alert kept
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._db.executescript(SCHEMA)

    # ---- plumbing
    class _Tx:
        def __init__(self, store: "Store"):
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            self.store._db.execute("BEGIN IMMEDIATE")
            return self.store._db

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.store._lock.release()

    def _tx(self) -> "Store._Tx":
        return Store._Tx(self)

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ping(self) -> bool:
        """True when the database answers a query."""
        try:
            self._query("SELECT 1 FROM alerts LIMIT 1")
            return True
        except sqlite3.Error:
            return False

    # ---- transitions (each one commit, each one audited)
    def raise_alert(self, r: Raised, actor: str = "engine") -> tuple[Alert, str]:
        """Record that a condition holds. Returns the alert and what changed:
        ``new``, ``escalated`` (severity rose) or ``repeat``."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT * FROM alerts WHERE rule=? AND subject=? AND state!='resolved'",
                             (r.rule, r.subject)).fetchone()
            if row is None:
                cur = db.execute(
                    "INSERT INTO alerts (rule, subject, site, room, zone, severity, title_zh, title_en, detail,"
                    " drill, first_at, last_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (r.rule, r.subject, r.site, r.room, r.zone, r.severity, r.title_zh, r.title_en,
                     json.dumps(r.detail, ensure_ascii=False), int(r.drill), r.at, r.at, now))
                alert_id, change = cur.lastrowid, "new"
                _audit(db, alert_id, now, actor, "raise", f"{r.severity}: {r.title_zh}")
            else:
                alert_id = row["id"]
                rises = SEVERITIES[r.severity].rank > SEVERITIES[row["severity"]].rank
                change = "escalated" if rises else "repeat"
                keep = (r.severity, r.title_zh, r.title_en) if rises else \
                    (row["severity"], row["title_zh"], row["title_en"])
                merged = {**json.loads(row["detail"]), **r.detail}
                db.execute("UPDATE alerts SET severity=?, title_zh=?, title_en=?, detail=?, count=count+1,"
                           " last_at=MAX(last_at, ?), room=COALESCE(room, ?) WHERE id=?",
                           (*keep, json.dumps(merged, ensure_ascii=False), r.at, r.room, alert_id))
                if rises:
                    _audit(db, alert_id, now, actor, "escalate", f"{row['severity']} → {r.severity}: {r.title_zh}")
            alert = Alert.from_row(db.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone())
        return alert, change

    def clear(self, rule: str, subject: str, at: float, note: str = "") -> Alert | None:
        """The condition is gone: resolve the active alert of ``(rule, subject)`` automatically."""
        with self._tx() as db:
            row = db.execute("SELECT id FROM alerts WHERE rule=? AND subject=? AND state!='resolved'",
                             (rule, subject)).fetchone()
            if row is None:
                return None
            self._resolve(db, row["id"], at, "engine", "auto", note or "condition cleared / 条件已消除")
        return self.get(row["id"])

    def resolve(self, alert_id: int, actor: str, note: str = "", dismissed: bool = False) -> Alert:
        """A person closes an alert: resolved (handled) or dismissed (false alarm, 误报)."""
        with self._tx() as db:
            row = db.execute("SELECT state FROM alerts WHERE id=?", (alert_id,)).fetchone()
            if row is None:
                raise KeyError(alert_id)
            if row["state"] != "resolved":
                self._resolve(db, alert_id, time.time(), actor, "dismissed" if dismissed else "resolved", note)
        return self.get(alert_id)

    def acknowledge(self, alert_id: int, actor: str, note: str = "") -> Alert:
        """A person has seen the alert and is handling it (已确认)."""
        now = time.time()
        with self._tx() as db:
            cur = db.execute("UPDATE alerts SET state='acknowledged', acknowledged_at=?, acknowledged_by=?"
                             " WHERE id=? AND state='firing'", (now, actor, alert_id))
            if cur.rowcount:
                _audit(db, alert_id, now, actor, "acknowledge", note)
        return self.get(alert_id)

    @staticmethod
    def _resolve(db: sqlite3.Connection, alert_id: int, at: float, actor: str, how: str, note: str) -> None:
        db.execute("UPDATE alerts SET state='resolved', resolved_at=?, resolved_by=?, resolution=? WHERE id=?",
                   (at, actor, how, alert_id))
        _audit(db, alert_id, time.time(), actor, "resolve" if how != "dismissed" else "dismiss", f"{how}: {note}")

    # ---- deliveries
    def delivery_started(self, alert_id: int, contact: str, channel: str, severity: str) -> int:
        with self._tx() as db:
            return db.execute("INSERT INTO deliveries (alert_id, contact, channel, severity, at) VALUES (?,?,?,?,?)",
                              (alert_id, contact, redact(channel), severity, time.time())).lastrowid

    def delivery_attempt(self, delivery_id: int, ok: bool, error: str | None = None, final: bool = False) -> None:
        """One attempt on a channel; ``final`` marks the last try of a failing channel."""
        state = "sent" if ok else ("failed" if final else "pending")
        with self._tx() as db:
            db.execute("UPDATE deliveries SET attempts=attempts+1, state=?, last_error=COALESCE(?, last_error), at=?"
                       " WHERE id=?", (state, None if ok else (error or "unknown error")[:500], time.time(),
                                       delivery_id))

    def deliveries(self, alert_id: int | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM deliveries", ()
        if alert_id is not None:
            sql, args = sql + " WHERE alert_id=?", (alert_id,)
        return [dict(r) for r in self._query(sql + " ORDER BY id", args)]

    # ---- heartbeat and gateway status
    def beat(self, service: str = ENGINE, info: dict[str, Any] | None = None, at: float | None = None) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO heartbeat (service, at, info) VALUES (?,?,?) ON CONFLICT(service) DO UPDATE"
                       " SET at=excluded.at, info=excluded.info",
                       (service, time.time() if at is None else at, json.dumps(info or {}, ensure_ascii=False)))

    def last_beat(self, service: str = ENGINE) -> tuple[float, dict[str, Any]] | None:
        rows = self._query("SELECT at, info FROM heartbeat WHERE service=?", (service,))
        return (rows[0]["at"], json.loads(rows[0]["info"])) if rows else None

    def gateway_seen(self, gateway: str, site: str, state: str, reason: str | None, at: float) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO gateway_status (gateway, site, state, reason, at) VALUES (?,?,?,?,?)"
                       " ON CONFLICT(gateway) DO UPDATE SET site=excluded.site, state=excluded.state,"
                       " reason=excluded.reason, at=excluded.at", (gateway, site, state, reason, at))

    def gateways(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM gateway_status ORDER BY gateway")]

    # ---- reading
    def get(self, alert_id: int, with_trail: bool = False) -> Alert | None:
        rows = self._query("SELECT * FROM alerts WHERE id=?", (alert_id,))
        if not rows:
            return None
        alert = Alert.from_row(rows[0])
        if with_trail:
            alert.audit = [dict(r) for r in self._query("SELECT at, actor, action, note FROM audit"
                                                        " WHERE alert_id=? ORDER BY id", (alert_id,))]
            alert.deliveries = self.deliveries(alert_id)
        return alert

    def active(self, rule: str, subject: str) -> Alert | None:
        rows = self._query("SELECT * FROM alerts WHERE rule=? AND subject=? AND state!='resolved'", (rule, subject))
        return Alert.from_row(rows[0]) if rows else None

    def alerts(self, *, include_resolved: bool = False, state: str | None = None, site: str | None = None,
               severity: str | None = None, limit: int = 500) -> list[Alert]:
        """Alerts, the most recently raised first; by default only those not resolved."""
        where, args = [], []
        for column, value in (("state", state), ("site", site), ("severity", severity)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if state is None and not include_resolved:
            where.append("state!='resolved'")
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        return [Alert.from_row(r) for r in self._query(sql + " ORDER BY id DESC LIMIT ?",
                                                       (*args, limit))]

    def counts(self) -> dict[str, int]:
        """Active alerts per severity, plus ``active`` and ``total``."""
        out = {name: 0 for name in SEVERITIES}
        for row in self._query("SELECT severity, COUNT(*) n FROM alerts WHERE state!='resolved' GROUP BY severity"):
            out[row["severity"]] = row["n"]
        out["active"] = sum(out[name] for name in SEVERITIES)
        out["total"] = self._query("SELECT COUNT(*) n FROM alerts")[0]["n"]
        return out

    def active_keys(self) -> set[tuple[str, str]]:
        return {(r["rule"], r["subject"]) for r in self._query("SELECT rule, subject FROM alerts WHERE state!='resolved'")}


def _audit(db: sqlite3.Connection, alert_id: int, at: float, actor: str, action: str, note: str) -> None:
    db.execute("INSERT INTO audit (alert_id, at, actor, action, note) VALUES (?,?,?,?,?)",
               (alert_id, at, actor, action, note))

