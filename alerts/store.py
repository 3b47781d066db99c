"""The alert store: one SQLite file (WAL) — or one PostgreSQL database that several engines and
the API share (:mod:`.database`) — holding every alert with its lifecycle (:mod:`.lifecycle`)
and audit trail, and — in the tables of :mod:`.schema` — escalations, the outbox, deliveries and
the rules' memory.

Every transition is audited (who, when, what, note) in the same transaction, and the engine
commits a whole batch of messages in one transaction, so a killed process loses nothing it has
acknowledged to the broker. Dedup is enforced by the database: a partial unique index allows one
open alert per ``(rule, subject)``; a repeat updates ``last_at`` and ``count``.

>>> store = Store(":memory:")
>>> alert, change = store.raise_alert(Raised("fire", "s/z1", "pre_alarm", "s", "r", "z1",
...                                   "火灾预警", "Fire pre-alarm", {}, 1.7e9), now=1.7e9)
>>> change, store.raise_alert(Raised("fire", "s/z1", "critical", "s", "r", "z1",
...                                  "火警确认", "Fire confirmed", {}, 1.7e9 + 5), now=1.7e9 + 5)[1]
('new', 'escalated')
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from stationwatch.core.alert_types import ACTIVE_STATES, SEVERITIES

from .database import ERRORS, connect, shown
from .lifecycle import _OPEN, Lifecycle
from .records import Alert, AlertError, Conflict, Escalation, NotFound, Raised
from .schema import migrate

__all__ = ["ENGINE", "DISPATCHER", "Store", "Alert", "Raised", "Escalation", "AlertError", "Conflict", "NotFound"]

ENGINE = "alerts"  # the service name the engine writes its heartbeat under
DISPATCHER = "dispatcher"  # … and its dispatcher (the watcher reads both: alerts/watcher.py)


try:  # the memory's rows are written at every commit: msgspec encodes them ~5 × faster than json
    import msgspec

    _encode = msgspec.json.Encoder().encode
except ImportError:  # (no wheel for 32-bit Raspberry Pi OS: core/readings_codec.py)
    _encode = None


def _json(value: Any) -> str:
    """A memory entry as JSON text, as json.dumps writes it for anything msgspec refuses or cannot
    write the same way (non-finite numbers, which msgspec writes as null)."""
    if _encode is not None:
        try:
            text = _encode(value).decode()
            if "null" not in text:  # a null may have been a NaN: json.dumps decides
                return text
        except (TypeError, msgspec.EncodeError):
            pass
    return json.dumps(value)


def in_sites(sites: frozenset[str] | set[str] | None, column: str = "site") -> tuple[str, tuple]:
    """`` AND {column} IN (…)`` for an engine that owns ``sites`` (None: every site, no filter)."""
    if sites is None:
        return "", ()
    return (f" AND {column} IN ({','.join('?' * len(sites))})" if sites else " AND 1=0"), tuple(sorted(sites))


class Store(Lifecycle):
    """Thread-safe access to the alert database. Open one per process (engine, API). ``path`` is a
    SQLite file (or ``:memory:``) or a ``postgresql://`` URL."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time):
        self.path = str(path)
        self.clock = clock
        self._lock = threading.RLock()
        self._depth = 0
        self.guard: Callable[[Any], None] | None = None  # checked before each write commits (leases.py: fencing)
        self._db = connect(self.path)
        self.dialect = self._db.dialect
        with self._lock:
            migrate(self._db)

    def __repr__(self) -> str:
        return f"Store({shown(self.path)!r})"

    # ---- plumbing
    @contextmanager
    def tx(self, fenced: bool = True) -> Iterator[Any]:
        """One transaction; nested calls join the outer one (a whole batch commits at once). Before
        it commits, :attr:`guard` (when set, and ``fenced``) may refuse it by raising."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            for statement in self.dialect.begin:
                self._db.execute(statement)
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                self._depth = 0
                self._db.execute("ROLLBACK")
                raise
            try:
                if fenced and self.guard is not None:
                    self.guard(self._db)
            except BaseException:
                self._depth = 0
                self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            self._db.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[Any]:
        with self._lock:
            cursor = self._db.execute(sql, args)
            return cursor.fetchall() if cursor.description is not None else []  # a statement without rows

    def script(self, sql: str) -> None:
        """Run DDL outside any transaction (the tables of a part of the service that keeps its own)."""
        with self._lock:
            self._db.executescript(sql)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ping(self) -> bool:
        """True when the database answers a query."""
        try:
            self.query("SELECT 1 FROM alerts LIMIT 1")
            return True
        except ERRORS:
            return False

    def _row(self, db, alert_id: int) -> Alert:
        row = db.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()
        if row is None:
            raise NotFound(f"告警 #{alert_id} 不存在 / no alert #{alert_id}")
        return Alert.from_row(row)

    def audit(self, db, alert_id: int, actor: str, action: str, note: str = "",
              at: float | None = None) -> None:
        db.execute("INSERT INTO audit (alert_id, at, actor, action, note) VALUES (?,?,?,?,?)",
                   (alert_id, self.clock() if at is None else at, actor, action, note))

    # ---- the rules' memory
    def load_memory(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for row in self.query("SELECT ns, key, value FROM memory"):
            out.setdefault(row["ns"], {})[row["key"]] = json.loads(row["value"])
        return out

    def save_memory(self, changes: dict[tuple[str, str], Any]) -> None:
        """Write changed entries; a value of None deletes the entry."""
        gone = [(ns, key) for (ns, key), value in changes.items() if value is None]
        kept = [(ns, key, _json(value)) for (ns, key), value in changes.items() if value is not None]
        with self.tx() as db:
            if gone:
                db.executemany("DELETE FROM memory WHERE ns=? AND key=?", gone)
            if kept:
                db.executemany("INSERT INTO memory (ns, key, value) VALUES (?,?,?) ON CONFLICT(ns, key)"
                               " DO UPDATE SET value=excluded.value", kept)

    # ---- heartbeat and gateway status
    def beat(self, service: str = ENGINE, info: dict[str, Any] | None = None, at: float | None = None) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO heartbeat (service, at, info) VALUES (?,?,?) ON CONFLICT(service) DO UPDATE"
                       " SET at=excluded.at, info=excluded.info",
                       (service, time.time() if at is None else at, json.dumps(info or {}, ensure_ascii=False)))

    def last_beat(self, service: str = ENGINE) -> tuple[float, dict[str, Any]] | None:
        rows = self.query("SELECT at, info FROM heartbeat WHERE service=?", (service,))
        return (rows[0]["at"], json.loads(rows[0]["info"])) if rows else None

    def gateway_seen(self, gateway: str, site: str, state: str, reason: str | None, at: float) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO gateway_status (gateway, site, state, reason, at) VALUES (?,?,?,?,?)"
                       " ON CONFLICT(gateway) DO UPDATE SET site=excluded.site, state=excluded.state,"
                       " reason=excluded.reason, at=excluded.at", (gateway, site, state, reason, at))

    def gateways(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.query("SELECT * FROM gateway_status ORDER BY gateway")]

    # ---- reading
    def get(self, alert_id: int, with_trail: bool = False) -> Alert | None:
        rows = self.query("SELECT * FROM alerts WHERE id=?", (alert_id,))
        if not rows:
            return None
        alert = Alert.from_row(rows[0])
        if with_trail:
            alert.audit = self.trail(alert_id)
            alert.deliveries = self.deliveries(alert_id)
            esc = self.escalation(alert_id)
            alert.escalation = vars(esc) | {"notified": list(esc.notified)} if esc else None
            alert.breaches = self.breaches(alert_id)
        return alert

    def trail(self, alert_id: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self.query("SELECT at, actor, action, note FROM audit WHERE alert_id=? ORDER BY id",
                                            (alert_id,))]

    def deliveries(self, alert_id: int | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM deliveries", ()
        if alert_id is not None:
            sql, args = sql + " WHERE alert_id=?", (alert_id,)
        return [dict(r) for r in self.query(sql + " ORDER BY id", args)]

    def active(self, rule: str, subject: str) -> Alert | None:
        rows = self.query(f"SELECT * FROM alerts WHERE rule=? AND subject=? AND {_OPEN}", (rule, subject))
        return Alert.from_row(rows[0]) if rows else None

    def alerts(self, *, include_resolved: bool = False, state: str | None = None, site: str | None = None,
               sites: set[str] | None = None, severity: str | None = None, rule: str | None = None,
               drill: bool | None = None, since: float | None = None, until: float | None = None,
               limit: int = 500) -> list[Alert]:
        """Alerts, the most recently raised first; by default only open ones (pending, firing,
        acknowledged). ``sites`` limits to those sites (a user's scope)."""
        where, args = [], []
        for column, value in (("state", state), ("site", site), ("severity", severity), ("rule", rule)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if drill is not None:
            where.append("drill=?")
            args.append(int(drill))
        if since is not None:
            where.append("first_at>=?")
            args.append(since)
        if until is not None:
            where.append("first_at<?")
            args.append(until)
        if sites is not None:
            where.append(f"site IN ({','.join('?' * len(sites))})" if sites else "1=0")
            args.extend(sorted(sites))
        if state is None and not include_resolved:
            where.append(_OPEN)
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        return [Alert.from_row(r) for r in self.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))]

    def counts(self, sites: set[str] | None = None) -> dict[str, int]:
        """Open alerts per severity (drills apart), plus ``active``, ``drills``, ``total``,
        ``breaches`` and ``failed_deliveries``."""
        scope, args = ("", ()) if sites is None else (
            f" AND site IN ({','.join('?' * len(sites))})" if sites else " AND 1=0", tuple(sorted(sites)))
        out = {name: 0 for name in SEVERITIES}
        for row in self.query(f"SELECT severity, COUNT(*) n FROM alerts WHERE {_OPEN} AND drill=0{scope}"
                              " GROUP BY severity", args):
            out[row["severity"]] = row["n"]
        out["active"] = sum(out[name] for name in SEVERITIES)
        out["drills"] = self.query(f"SELECT COUNT(*) n FROM alerts WHERE {_OPEN} AND drill=1{scope}", args)[0]["n"]
        out["total"] = self.query(f"SELECT COUNT(*) n FROM alerts WHERE 1=1{scope}", args)[0]["n"]
        out["drills_total"] = self.query(f"SELECT COUNT(*) n FROM alerts WHERE drill=1{scope}", args)[0]["n"]
        out["breaches"] = self.query(f"SELECT COUNT(*) n FROM breaches WHERE 1=1{scope}", args)[0]["n"]
        out["failed_deliveries"] = self.query(
            "SELECT COUNT(*) n FROM deliveries d JOIN alerts a ON a.id=d.alert_id WHERE d.state='failed'"
            + scope.replace("site", "a.site"), args)[0]["n"]
        return out

    # ---- the reporting chain: escalations and breaches (written by alerts/escalation.py alone)
    def escalation(self, alert_id: int) -> Escalation | None:
        with self.tx() as db:
            row = db.execute("SELECT * FROM escalations WHERE alert_id=?", (alert_id,)).fetchone()
        return Escalation.from_row(row) if row is not None else None

    def escalations(self, alert_ids: list[int]) -> dict[int, Escalation]:
        marks = ",".join("?" * len(alert_ids)) or "NULL"
        return {r["alert_id"]: Escalation.from_row(r) for r in
                self.query(f"SELECT * FROM escalations WHERE alert_id IN ({marks})", tuple(alert_ids))}

    def save_escalation(self, esc: Escalation) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO escalations (alert_id, policy, severity, level, started_at, level_at,"
                       " due_at, remind_at, notified) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(alert_id) DO UPDATE SET"
                       " policy=excluded.policy, severity=excluded.severity, level=excluded.level,"
                       " started_at=excluded.started_at, level_at=excluded.level_at, due_at=excluded.due_at,"
                       " remind_at=excluded.remind_at, notified=excluded.notified",
                       (esc.alert_id, esc.policy, esc.severity, esc.level, esc.started_at, esc.level_at, esc.due_at,
                        esc.remind_at, json.dumps(list(esc.notified))))

    def escalations_due(self, now: float, sites: frozenset[str] | None = None) -> list[Escalation]:
        """Chains of firing, unsilenced alerts with something to do: a deadline or reminder passed,
        or the alert's severity changed since the chain was chosen (of ``sites`` only, if given)."""
        scope, args = in_sites(sites, "a.site")
        return [Escalation.from_row(r) for r in self.query(
            "SELECT e.* FROM escalations e JOIN alerts a ON a.id=e.alert_id WHERE a.state='firing' AND"
            " a.silenced_by IS NULL AND (a.severity!=e.severity OR e.due_at<=? OR e.remind_at<=?)"
            f"{scope} ORDER BY e.alert_id", (now, now, *args))]

    def add_breach(self, alert: Alert, esc: Escalation, level_name: str, due_at: float, at: float,
                   reason: str) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO breaches (alert_id, site, drill, policy, level, level_name, due_at, at, reason)"
                       " VALUES (?,?,?,?,?,?,?,?,?)", (alert.id, alert.site, int(alert.drill), esc.policy, esc.level,
                                                       level_name, due_at, at, reason))

    def breaches(self, alert_id: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self.query("SELECT * FROM breaches WHERE alert_id=? ORDER BY id", (alert_id,))]

    def breach_counts(self, alert_ids: list[int]) -> dict[int, int]:
        marks = ",".join("?" * len(alert_ids)) or "NULL"
        return {r["alert_id"]: r["n"] for r in self.query(
            f"SELECT alert_id, COUNT(*) n FROM breaches WHERE alert_id IN ({marks}) GROUP BY alert_id", tuple(alert_ids))}

    # ---- outages of the pipeline's hops, as spans (alerts/supervision.py)
    def outage_started(self, hop: str, at: float, detail: str = "") -> None:
        with self.tx() as db:
            if db.execute("SELECT 1 FROM outages WHERE hop=? AND ended_at IS NULL", (hop,)).fetchone() is None:
                db.execute("INSERT INTO outages (hop, started_at, detail) VALUES (?,?,?)", (hop, at, detail))

    def outage_ended(self, hop: str, at: float) -> None:
        with self.tx() as db:
            db.execute("UPDATE outages SET ended_at=? WHERE hop=? AND ended_at IS NULL", (at, hop))

    def outages(self, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Spans (hop, started_at, ended_at — None while it lasts) overlapping ``[since, until)``."""
        return [dict(r) for r in self.query(
            "SELECT hop, started_at, ended_at, detail FROM outages WHERE (ended_at IS NULL OR ended_at>=?)"
            " AND started_at<? ORDER BY started_at", (since or 0.0, until or float("inf")))]

    def open_keys(self) -> set[tuple[str, str]]:
        return {(r["rule"], r["subject"]) for r in self.query(f"SELECT rule, subject FROM alerts WHERE {_OPEN}")}


assert set(ACTIVE_STATES) == {"pending", "firing", "acknowledged"}  # _OPEN spells them out for the index
