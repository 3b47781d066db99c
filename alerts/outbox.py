"""The durable outbox: every notice to send is a row, written in the same transaction as the
transition that calls for it, and read by the dispatcher (:mod:`.dispatch`) — also after a restart.

Row states: ``queued`` (due at ``next_at``) → ``sending`` (claimed, by ``claimed_by``) → ``sent``
or ``failed`` (every channel of the contact tried ``attempts`` times). A row found ``sending`` at
start was cut off by a crash and is queued again: a notice may then arrive twice, never not at all.
With engines partitioned by site (leases.py) a row is queued again by its site's owner once the
engine that claimed it is no longer alive; a live one records its own sends, even of a site it has
just handed over.

Each channel tried for a row has a ``deliveries`` row (state, attempts, last error), which is what
the API and the duty board show per alert.
"""
from __future__ import annotations

from typing import Any, Iterable

from stationwatch.core.alert_types import SEVERITIES

from .notify import NOTICE_TYPES
from .store import Alert


def enqueue(db, alert: Alert, contacts: Iterable[str], level: int | None, kind: str,
            now: float, note: str = "") -> list[int]:
    """Queue one notice of ``kind`` (a :data:`~.notify.NOTICE_TYPES` name) about ``alert`` for each
    contact; returns the row ids."""
    priority = SEVERITIES[alert.severity].rank * 10 + NOTICE_TYPES[kind].urgency
    return [db.execute("INSERT INTO outbox (alert_id, contact, level, kind, severity, priority, created_at, note)"
                       " VALUES (?,?,?,?,?,?,?,?) RETURNING id",
                       (alert.id, contact, level, kind, alert.severity, priority, now, note)).fetchone()[0]
            for contact in contacts]


def _of_sites(sites: frozenset[str] | None) -> tuple[str, tuple]:
    if sites is None:
        return "", ()
    marks = ",".join("?" * len(sites)) or "NULL"
    return f" AND alert_id IN (SELECT id FROM alerts WHERE site IN ({marks}))", tuple(sorted(sites))


def claim(db, now: float, limit: int = 200, sites: frozenset[str] | None = None, by: str | None = None) -> list[Any]:
    """Due rows (about alerts of ``sites``, if given), most urgent first, marked ``sending`` by ``by``."""
    scope, args = _of_sites(sites)
    rows = db.execute(f"SELECT * FROM outbox WHERE state='queued' AND next_at<=?{scope} ORDER BY priority DESC, id"
                      " LIMIT ?", (now, *args, limit)).fetchall()
    if rows:
        db.execute(f"UPDATE outbox SET state='sending', claimed_by=? WHERE id IN ({','.join('?' * len(rows))})",
                   [by, *(r["id"] for r in rows)])
    return rows


def release(db, ids: list[int], next_at: float) -> None:
    """Put claimed rows back, due at ``next_at`` (a rate-limited channel)."""
    if ids:
        db.execute(f"UPDATE outbox SET state='queued', next_at=? WHERE id IN ({','.join('?' * len(ids))})",
                   [next_at, *ids])


def requeue_interrupted(db, sites: frozenset[str] | None = None, alive_at: float | None = None) -> int:
    """Rows cut off by a crash (``sending``) queued again. With ``sites`` and ``alive_at`` (engines
    partitioned by site): only rows of those sites whose claiming engine is not alive at ``alive_at``."""
    scope, args = _of_sites(sites)
    if alive_at is not None:
        scope += " AND (claimed_by IS NULL OR claimed_by NOT IN (SELECT id FROM engines WHERE expires_at>?))"
        args = (*args, alive_at)
    return db.execute(f"UPDATE outbox SET state='queued' WHERE state='sending'{scope}", args).rowcount


def next_due(db) -> float | None:
    return db.execute("SELECT MIN(next_at) FROM outbox WHERE state='queued'").fetchone()[0]


def delivery_row(db, row: Any, channel: str, now: float) -> int:
    """The deliveries row of this outbox row on its current channel (made on the first attempt)."""
    found = db.execute("SELECT id FROM deliveries WHERE outbox_id=? AND channel=? ORDER BY id DESC LIMIT 1",
                       (row["id"], channel)).fetchone()
    if found is not None and row["attempts"] > 0:
        return found["id"]
    return db.execute("INSERT INTO deliveries (alert_id, contact, channel, severity, state, at, outbox_id, kind,"
                      " level) VALUES (?,?,?,?,'pending',?,?,?,?) RETURNING id",
                      (row["alert_id"], row["contact"], channel, row["severity"], now, row["id"], row["kind"],
                       row["level"])).fetchone()[0]


def told(db, alert_id: int) -> list[str]:
    """Contacts that have been sent (or are being sent) a notice about the alert, in order."""
    rows = db.execute("SELECT contact FROM outbox WHERE alert_id=? AND kind NOT IN ('acknowledged', 'resolved',"
                      " 'dismissed') ORDER BY id", (alert_id,)).fetchall()
    return list(dict.fromkeys(r["contact"] for r in rows))


def level_reached(db, alert_id: int, level: int) -> bool | None:
    """Did anyone of ``level`` get a notice? None while some notice to that level is still under way."""
    states = {r["state"] for r in db.execute("SELECT state FROM outbox WHERE alert_id=? AND level=? AND kind NOT IN"
                                             " ('acknowledged', 'resolved', 'dismissed')", (alert_id, level))}
    if "sent" in states:
        return True
    return None if states & {"queued", "sending"} else False


def rows_for(db, alert_id: int) -> list[dict]:
    return [dict(r) for r in db.execute("SELECT * FROM outbox WHERE alert_id=? ORDER BY id", (alert_id,))]
