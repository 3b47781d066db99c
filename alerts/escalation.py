"""Escalation along the reporting chain (逐级上报), with deadlines kept in SQLite.

When an alert starts firing, the first policy of ``routing.policies`` (or the built-in statutory
chain) that matches its site, rule and severity is chosen. Level 0 and every ``at_once`` level are
told at once. While the alert is not acknowledged:

* every ``remind_s`` the level reached is reminded;
* when the level's ``ack_s`` runs out, the missed deadline is recorded as a **breach** and the next
  level is told; the next deadline counts from the one missed (not from "now"), so the schedule
  does not drift, and after a restart every deadline that passed while the engine was down is
  handled in order — each level reached, each breach recorded, none skipped;
* if no notice of the level reached could be delivered on any channel, that too is a breach
  (``undeliverable``) and the next level is told at once.

Acknowledging stops the climb; a severity rise (a confirmed fire) clears the acknowledgement,
re-selects the policy (e.g. the bureau told at once) and climbs again.
"""
from __future__ import annotations

import json
import logging
import sqlite3

from stationwatch.core.config import StationConfig

from . import outbox
from stationwatch.core.alert_types import SEVERITIES
from stationwatch.core.policy import EscalationPolicy, Level
from .roster import Directory
from .store import Alert, Store

log = logging.getLogger(__name__)

DEADLINE, UNDELIVERABLE = "deadline", "undeliverable"


class Escalator:
    def __init__(self, cfg: StationConfig, store: Store, directory: Directory | None = None):
        self.cfg = cfg
        self.store = store
        self.directory = directory or Directory(cfg)
        self.policies = {p.id: p for p in cfg.routing.chain}

    # ---- choosing
    def policy_for(self, alert: Alert) -> EscalationPolicy:
        return next((p for p in self.policies.values() if p.matches(alert.site, alert.rule, alert.severity)),
                    next(iter(self.policies.values())))

    def recipients(self, policy: EscalationPolicy, level: int, alert: Alert, at: float) -> list[str]:
        extra = self.cfg.routing.notify if level == 0 else []
        return self.directory.recipients(policy.levels[level], alert.site, at, extra)

    # ---- transitions (inside the caller's transaction)
    def start(self, db: sqlite3.Connection, alert: Alert, now: float) -> None:
        """The alert fires (or its maintenance window ended): tell level 0 and the at-once levels."""
        policy = self.policy_for(alert)
        first = policy.levels[0]
        notified = [0] + [i for i, lv in enumerate(policy.levels) if lv.at_once and i]
        db.execute("INSERT OR REPLACE INTO escalations (alert_id, policy, severity, level, started_at, level_at,"
                   " due_at, remind_at, notified) VALUES (?,?,?,0,?,?,?,?,?)",
                   (alert.id, policy.id, alert.severity, now, now, now + first.ack_s, _remind(first, now),
                    json.dumps(notified)))
        told = [self._tell(db, alert, policy, i, "new", now) for i in notified]
        if not told[0]:  # nobody at level 0: the chain goes on at once
            esc = db.execute("SELECT * FROM escalations WHERE alert_id=?", (alert.id,)).fetchone()
            self.climb(db, alert, esc, now, reason=UNDELIVERABLE)

    def rise(self, db: sqlite3.Connection, alert: Alert, esc: sqlite3.Row, now: float) -> None:
        """The severity changed: re-select the policy; on a rise, tell the level reached again (and
        any at-once level not yet told) with a fresh deadline."""
        policy = self.policy_for(alert)
        level = min(esc["level"], len(policy.levels) - 1)
        notified = json.loads(esc["notified"])
        rose = SEVERITIES[alert.severity].rank > SEVERITIES[esc["severity"]].rank
        due, remind = esc["due_at"], esc["remind_at"]
        if rose:
            for i in [level] + [i for i, lv in enumerate(policy.levels) if lv.at_once and i not in notified
                                and i != level]:
                self._tell(db, alert, policy, i, "escalated" if i == level else "new", now)
                notified = sorted({*notified, i})
            fresh = now + policy.levels[level].ack_s
            due = fresh if due is None or alert.state != "firing" else min(due, fresh)
            remind = _remind(policy.levels[level], now)
        db.execute("UPDATE escalations SET policy=?, severity=?, level=?, due_at=?, remind_at=?, notified=?"
                   " WHERE alert_id=?", (policy.id, alert.severity, level, due, remind, json.dumps(notified), alert.id))

    def climb(self, db: sqlite3.Connection, alert: Alert, esc: sqlite3.Row, now: float, reason: str = DEADLINE) -> int:
        """Handle every deadline that has passed, in order. Returns the number of levels climbed."""
        policy = self.policies.get(esc["policy"]) or self.policy_for(alert)
        level, due, remind, level_at = esc["level"], esc["due_at"], esc["remind_at"], esc["level_at"]
        notified, climbed = json.loads(esc["notified"]), 0
        while due is not None and (due <= now or reason == UNDELIVERABLE):
            missed = policy.levels[min(level, len(policy.levels) - 1)]
            at = due if reason == DEADLINE else now
            db.execute("INSERT INTO breaches (alert_id, site, drill, policy, level, level_name, due_at, at, reason)"
                       " VALUES (?,?,?,?,?,?,?,?,?)", (alert.id, alert.site, int(alert.drill), policy.id, level,
                                                       missed.name, due, now, reason))
            why = "确认时限已过 / acknowledgement deadline missed" if reason == DEADLINE else \
                "无法送达 / could not be delivered"
            self.store.audit(db, alert.id, "engine", "breach", f"L{level} {missed.name}: {why}", now)
            if level + 1 >= len(policy.levels):
                due = None  # the top of the chain: recorded; reminders go on
                break
            level += 1
            nxt = policy.levels[level]
            told = self._tell(db, alert, policy, level, "escalation" if reason == DEADLINE else "undeliverable", now)
            notified = sorted({*notified, level})
            due, remind, level_at, climbed = at + nxt.ack_s, _remind(nxt, at), at, climbed + 1
            reason = DEADLINE if told else UNDELIVERABLE  # a level with nobody to tell is passed at once
        db.execute("UPDATE escalations SET level=?, level_at=?, due_at=?, remind_at=?, notified=? WHERE alert_id=?",
                   (level, level_at, due, remind, json.dumps(notified), alert.id))
        return climbed

    def remind(self, db: sqlite3.Connection, alert: Alert, esc: sqlite3.Row, now: float) -> None:
        policy = self.policies.get(esc["policy"]) or self.policy_for(alert)
        level = policy.levels[min(esc["level"], len(policy.levels) - 1)]
        self._tell(db, alert, policy, esc["level"], "reminder", now)
        nxt = esc["remind_at"]
        while nxt <= now:  # one reminder however long the engine was away, then on schedule
            nxt += level.remind_s
        db.execute("UPDATE escalations SET remind_at=? WHERE alert_id=?", (nxt, alert.id))

    def undeliverable(self, alert_id: int, level: int) -> None:
        """Called by the dispatcher when a notice to ``level`` failed on every channel."""
        now = self.store.clock()  # the engine's clock: deadlines are kept on it
        with self.store.tx() as db:
            esc = db.execute("SELECT * FROM escalations WHERE alert_id=?", (alert_id,)).fetchone()
            alert = Alert.from_row(db.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone())
            if esc is None or alert.state != "firing" or esc["level"] != level:
                return
            if outbox.level_reached(db, alert_id, level) is False:
                log.error("alert %s: nobody at level %s could be reached; escalating", alert_id, level)
                self.climb(db, alert, esc, now, reason=UNDELIVERABLE)

    def tick(self, now: float) -> list[int]:
        """Deadlines, reminders and severity changes of firing alerts. Returns the alert ids changed."""
        changed: list[int] = []
        with self.store.tx() as db:
            rows = db.execute("SELECT e.*, a.severity AS alert_severity FROM escalations e JOIN alerts a"
                              " ON a.id=e.alert_id WHERE a.state='firing' AND a.silenced_by IS NULL AND"
                              " (a.severity!=e.severity OR e.due_at<=? OR e.remind_at<=?)", (now, now)).fetchall()
            for esc in rows:
                alert = Alert.from_row(db.execute("SELECT * FROM alerts WHERE id=?", (esc["alert_id"],)).fetchone())
                if esc["alert_severity"] != esc["severity"]:
                    self.rise(db, alert, esc, now)
                    esc = db.execute("SELECT * FROM escalations WHERE alert_id=?", (alert.id,)).fetchone()
                if esc["due_at"] is not None and esc["due_at"] <= now:
                    self.climb(db, alert, esc, now)
                    esc = db.execute("SELECT * FROM escalations WHERE alert_id=?", (alert.id,)).fetchone()
                if esc["remind_at"] is not None and esc["remind_at"] <= now:
                    self.remind(db, alert, esc, now)
                changed.append(alert.id)
        return changed

    def _tell(self, db: sqlite3.Connection, alert: Alert, policy: EscalationPolicy, level: int, kind: str,
              now: float) -> int:
        """Queue a notice of ``kind`` for everyone of ``level``; returns how many were queued."""
        contacts = self.recipients(policy, level, alert, now)
        name = policy.levels[level].name
        if kind != "reminder":
            self.store.audit(db, alert.id, "engine", "notify",
                             f"L{level} {name}: {', '.join(contacts) or '（无联系人 / nobody configured）'}", now)
        outbox.enqueue(db, alert, contacts, level, kind, now, name)
        if not contacts:
            log.error("alert %s: level %s (%s) of policy %s has no contact", alert.id, level, name, policy.id)
        return len(contacts)


def _remind(level: Level, at: float) -> float | None:
    return None if level.remind_s is None else at + level.remind_s
