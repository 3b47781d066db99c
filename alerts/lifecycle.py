"""The lifecycle of an alert — the transitions the store makes, each audited in its transaction::

    pending ──► firing ──► acknowledged ──► resolved
       │           │             │     └──► dismissed (false alarm, with a reason)
       └─► resolved (expired: cleared before it had held long enough)

A condition that clears is resolved only after it stayed clear for ``resolve_hold_s``; one that
comes back within ``flap_window_s`` of resolving reopens the same alert (flapping is damped). A
severity rise clears an acknowledgement (a confirmed fire must be acknowledged again).
"""
from __future__ import annotations

import json
from typing import Any

from stationwatch.core.alert_types import SEVERITIES, STATES

from .records import Alert, Conflict, Raised

_OPEN = "state IN ('pending', 'firing', 'acknowledged')"
_LATER = "last_at=CASE WHEN last_at > ? THEN last_at ELSE ? END"  # SQLite's MAX(a, b), PostgreSQL's GREATEST


class Lifecycle:
    """Transitions; mixed into :class:`~.store.Store`, which provides ``tx``, ``audit``, ``clock``."""

    # ---- transitions made by the engine
    def raise_alert(self, r: Raised, now: float | None = None, *, follows: bool = False, flap_window_s: float = 0.0,
                    actor: str = "engine") -> tuple[Alert, str]:
        """Record that a condition holds. Returns the alert and what changed: ``new`` (firing at
        once), ``pending``, ``fired`` (pending → firing), ``reopened`` (it had resolved itself less
        than ``flap_window_s`` ago: a flap, the same alert), ``escalated`` (severity rose),
        ``lowered`` (severity fell; only when the kind ``follows`` its condition) or ``repeat``."""
        now = self.clock() if now is None else now
        detail = json.dumps(r.detail, ensure_ascii=False)
        with self.tx() as db:
            row = db.execute(f"SELECT * FROM alerts WHERE rule=? AND subject=? AND {_OPEN}",
                             (r.rule, r.subject)).fetchone()
            recent = None if row is not None or r.pending or flap_window_s <= 0 else db.execute(
                "SELECT id FROM alerts WHERE rule=? AND subject=? AND resolution='auto' AND resolved_at>=?"
                " ORDER BY id DESC LIMIT 1", (r.rule, r.subject, now - flap_window_s)).fetchone()
            if recent is not None:
                db.execute("UPDATE alerts SET state='firing', resolved_at=NULL, resolved_by=NULL, resolution=NULL,"
                           " flaps=flaps+1, severity=?, title_zh=?, title_en=?, detail=?, count=count+1,"
                           f" {_LATER} WHERE id=?",
                           (r.severity, r.title_zh, r.title_en, detail, r.at, r.at, recent["id"]))
                self.audit(db, recent["id"], actor, "reopen", f"back within the flap window / 告警复发: {r.title_zh}", now)
                return self._row(db, recent["id"]), "reopened"
            if row is None:
                state = "pending" if r.pending else "firing"
                alert_id = db.execute(
                    "INSERT INTO alerts (rule, subject, site, room, zone, severity, state, title_zh, title_en,"
                    " detail, drill, first_at, last_at, created_at, fired_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                    " RETURNING id",
                    (r.rule, r.subject, r.site, r.room, r.zone, r.severity, state, r.title_zh, r.title_en, detail,
                     int(r.drill), r.at, r.at, now, None if r.pending else now)).fetchone()[0]
                self.audit(db, alert_id, actor, "pending" if r.pending else "raise", f"{r.severity}: {r.title_zh}", now)
                return self._row(db, alert_id), "pending" if r.pending else "new"
            old = Alert.from_row(row)
            change, sets, args = self._change(db, old, r, now, follows, actor)
            merged = json.dumps({**old.detail, **r.detail}, ensure_ascii=False)
            db.execute(f"UPDATE alerts SET {', '.join(sets + ['detail=?', 'count=count+1', _LATER])}"
                       " WHERE id=?", (*args, merged, r.at, r.at, old.id))
            return self._row(db, old.id), change

    def _change(self, db, old: Alert, r: Raised, now: float, follows: bool,
                actor: str) -> tuple[str, list[str], list[Any]]:
        """The update a repeat of an open alert makes: state, severity and titles."""
        sets: list[str] = []
        args: list[Any] = []
        titles = ["severity=?", "title_zh=?", "title_en=?"]
        if old.state == "pending":
            if r.pending:
                return "repeat", sets, args
            self.audit(db, old.id, actor, "fire", f"{r.severity}: {r.title_zh}", now)
            return "fired", ["state='firing'", "fired_at=?", *titles], [now, r.severity, r.title_zh, r.title_en]
        if old.clearing_since is not None:  # came back inside the resolve hold: a flap, not a new alert
            sets += ["clearing_since=NULL", "flaps=flaps+1"]
            self.audit(db, old.id, actor, "recur", "condition back before the hold ran out / 条件复现", now)
        if r.pending:
            return "repeat", sets, args
        rank_new, rank_old = SEVERITIES[r.severity].rank, SEVERITIES[old.severity].rank
        if rank_new > rank_old:
            note = f"{old.severity} → {r.severity}: {r.title_zh}"
            if old.state == "acknowledged":
                sets += ["state='firing'", "acknowledged_at=NULL", "acknowledged_by=NULL"]
                note += "（级别升高，须重新确认 / severity rose: acknowledge again）"
            self.audit(db, old.id, actor, "escalate", note, now)
            return "escalated", sets + titles, args + [r.severity, r.title_zh, r.title_en]
        if rank_new < rank_old and follows:
            self.audit(db, old.id, actor, "deescalate", f"{old.severity} → {r.severity}: {r.title_zh}", now)
            return "lowered", sets + titles, args + [r.severity, r.title_zh, r.title_en]
        return "repeat", sets, args

    def clear(self, rule: str, subject: str, now: float | None = None, note: str = "",
              hold_s: float = 0.0, at: float | None = None) -> tuple[Alert | None, str]:
        """The condition is gone. A pending alert expires; a firing one resolves after it has
        stayed clear for ``hold_s`` (see :meth:`settle`) — flapping is damped, not notified."""
        now = self.clock() if now is None else now
        with self.tx() as db:
            row = db.execute(f"SELECT * FROM alerts WHERE rule=? AND subject=? AND {_OPEN}", (rule, subject)).fetchone()
            if row is None:
                return None, "none"
            alert = Alert.from_row(row)
            if alert.state == "pending":
                self._close(db, alert.id, now, "engine", "resolved", "expired",
                            note or "cleared before it held long enough / 未达持续时间即恢复")
                return self._row(db, alert.id), "expired"
            if hold_s <= 0:
                db.execute("UPDATE alerts SET detail=? WHERE id=?", (json.dumps(
                    {**alert.detail, "cleared_at": now if at is None else at}, ensure_ascii=False), alert.id))
                self._close(db, alert.id, now, "engine", "resolved", "auto", note or "condition cleared / 条件已消除")
                return self._row(db, alert.id), "resolved"
            if alert.clearing_since is None:
                db.execute("UPDATE alerts SET clearing_since=? WHERE id=?", (now, alert.id))
                detail = {**alert.detail, "clear_note": note, "cleared_at": now if at is None else at}
                db.execute("UPDATE alerts SET detail=? WHERE id=?", (json.dumps(detail, ensure_ascii=False), alert.id))
            return self._row(db, alert.id), "clearing"

    def settle(self, now: float, hold_s: float, sites: frozenset[str] | None = None) -> list[Alert]:
        """Resolve the alerts (of ``sites``, if given) whose condition has stayed clear for ``hold_s``."""
        scope = "" if sites is None else (f" AND site IN ({','.join('?' * len(sites))})" if sites else " AND 1=0")
        with self.tx() as db:
            rows = db.execute(f"SELECT id, detail FROM alerts WHERE {_OPEN} AND clearing_since IS NOT NULL"
                              f" AND clearing_since <= ?{scope}", (now - hold_s, *sorted(sites or ()))).fetchall()
            for row in rows:
                note = json.loads(row["detail"]).get("clear_note") or "condition cleared / 条件已消除"
                self._close(db, row["id"], now, "engine", "resolved", "auto", note)
            return [self._row(db, row["id"]) for row in rows]

    # ---- transitions made by people (API)
    def acknowledge(self, alert_id: int, actor: str, note: str = "") -> Alert:
        """A person has seen the alert and is handling it (已确认): escalation stops."""
        now = self.clock()
        with self.tx() as db:
            alert = self._row(db, alert_id)
            if alert.state != "firing":
                raise Conflict(_cannot("acknowledge", alert))
            db.execute("UPDATE alerts SET state='acknowledged', acknowledged_at=?, acknowledged_by=? WHERE id=?",
                       (now, actor, alert_id))
            self.audit(db, alert_id, actor, "acknowledge", note, now)
            return self._row(db, alert_id)

    def resolve(self, alert_id: int, actor: str, note: str = "") -> Alert:
        """A person closes an alert: handled (处置完毕)."""
        return self._person_close(alert_id, actor, "resolved", "resolved", note)

    def dismiss(self, alert_id: int, actor: str, reason: str) -> Alert:
        """A person closes an alert as a false alarm (误报), with the reason."""
        if not reason.strip():
            raise Conflict("须填写误报原因 / a dismissal needs a reason")
        return self._person_close(alert_id, actor, "dismissed", "dismissed", reason)

    def confirm(self, alert_id: int, actor: str, note: str = "") -> Alert:
        """A person checked on site (复核) and confirms the danger: the alert becomes critical
        (a pre-alarm a fire, an exit at night a missing resident), and climbs as such."""
        now = self.clock()
        with self.tx() as db:
            alert = self._row(db, alert_id)
            if alert.state not in ("firing", "acknowledged"):
                raise Conflict(_cannot("confirm", alert))
            db.execute("UPDATE alerts SET severity='critical', state='firing', acknowledged_at=NULL,"
                       " acknowledged_by=NULL, title_zh=?, title_en=? WHERE id=?",
                       (_confirmed(alert.title_zh, "【已复核确认】"), _confirmed(alert.title_en, "[CONFIRMED] "),
                        alert_id))
            self.audit(db, alert_id, actor, "confirm", f"{alert.severity} → critical: {note}", now)
            return self._row(db, alert_id)

    def _person_close(self, alert_id: int, actor: str, state: str, how: str, note: str) -> Alert:
        with self.tx() as db:
            alert = self._row(db, alert_id)
            if not alert.active:
                raise Conflict(_cannot(how, alert))
            self._close(db, alert_id, self.clock(), actor, state, how, note)
            return self._row(db, alert_id)

    def _close(self, db, alert_id: int, at: float, actor: str, state: str, how: str,
               note: str) -> None:
        db.execute("UPDATE alerts SET state=?, resolved_at=?, resolved_by=?, resolution=?, clearing_since=NULL"
                   " WHERE id=?", (state, at, actor, how, alert_id))
        self.audit(db, alert_id, actor, {"dismissed": "dismiss", "expired": "expire"}.get(how, "resolve"),
                   f"{how}: {note}", at)

    def set_silence(self, db, alert_id: int, silenced_by: str | None, note: str) -> None:
        db.execute("UPDATE alerts SET silenced_by=? WHERE id=?", (silenced_by, alert_id))
        self.audit(db, alert_id, "engine", "silence" if silenced_by else "unsilence", note)


def _cannot(action: str, alert: Alert) -> str:
    state = STATES[alert.state]
    by = f"（{alert.acknowledged_by or alert.resolved_by}）" if alert.state != "firing" else ""
    return (f"告警 #{alert.id} 当前状态为“{state.zh}”{by}，无法执行该操作 / "
            f"alert #{alert.id} is {state.en}; cannot {action} it")


def _confirmed(title: str, mark: str) -> str:
    return title if mark in title else mark + title
