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

The chain's state is an :class:`~.records.Escalation` value that only :class:`Escalator` writes,
through the store's escalation methods; the engine and the API ask the escalator.
"""
from __future__ import annotations

import dataclasses
import logging

from stationwatch.core.alert_types import SEVERITIES
from stationwatch.core.config import StationConfig
from stationwatch.core.policy import EscalationPolicy, Level

from . import outbox
from .roster import Directory
from .store import Alert, Escalation, Store

log = logging.getLogger(__name__)

DEADLINE, UNDELIVERABLE, RECTIFICATION = "deadline", "undeliverable", "rectification"
FLAP_NOTICES = {1: "recurred", 2: "flapping"}  # flaps so far → what those told hear (then nothing more)


class Escalator:
    """The one owner of the reporting chain: the engine and the API ask it, never the tables.
    Every method works inside the caller's store transaction (``store.tx()`` nests)."""

    def __init__(self, cfg: StationConfig, store: Store, directory: Directory | None = None):
        self.cfg = cfg
        self.store = store
        self.directory = directory or Directory(cfg)
        self.policies = {p.id: p for p in cfg.routing.chain}

    # ---- choosing
    def policy_for(self, alert: Alert) -> EscalationPolicy:
        return next((p for p in self.policies.values() if p.matches(alert.site, alert.rule, alert.severity)),
                    next(iter(self.policies.values())))

    def policy_of(self, esc: Escalation, alert: Alert) -> EscalationPolicy:
        """The chain an escalation follows (a policy since removed from the config: the one that matches now)."""
        return self.policies.get(esc.policy) or self.policy_for(alert)

    def recipients(self, policy: EscalationPolicy, level: int, alert: Alert, at: float) -> list[str]:
        extra = self.cfg.routing.notify if level == 0 else []
        return self.directory.recipients(policy.levels[level], alert.site, at, extra)

    # ---- transitions the engine asks for
    def start(self, alert: Alert, now: float) -> None:
        """The alert fires (or its maintenance window ended): tell level 0 and the at-once levels."""
        policy = self.policy_for(alert)
        first = policy.levels[0]
        notified = (0, *(i for i, lv in enumerate(policy.levels) if lv.at_once and i))
        esc = Escalation(alert.id, policy.id, alert.severity, 0, now, now, now + first.ack_s, _remind(first, now),
                         notified)
        self.store.save_escalation(esc)
        if alert.rule == "hazard_overdue":  # a register entry's missed rectification deadline is a breach itself
            self.store.add_breach(alert, esc, "整改时限 / rectification deadline", alert.detail["deadline_at"], now,
                                  RECTIFICATION)
        told = [self._tell(alert, policy, i, "new", now) for i in notified]
        if not told[0]:  # nobody at level 0: the chain goes on at once
            self.climb(alert, esc, now, reason=UNDELIVERABLE)

    def follow(self, alert: Alert, now: float) -> None:
        """The alert's severity changed (a confirmed fire): the chain follows at once, unless silenced."""
        esc = self.store.escalation(alert.id)
        if esc is not None and alert.silenced_by is None:
            self.rise(alert, esc, now)

    def reopened(self, alert: Alert, now: float) -> None:
        """A flap: the same alert again. Its chain goes on where it was, with a fresh deadline; those
        told hear it is back once, then that it flaps, then nothing more (damping)."""
        esc = self.store.escalation(alert.id)
        if esc is None:
            self.start(alert, now)
            return
        level = self.policy_of(esc, alert).level(esc.level)
        self.store.save_escalation(dataclasses.replace(esc, due_at=now + level.ack_s))
        kind = FLAP_NOTICES.get(alert.flaps)
        if kind is not None:
            with self.store.tx() as db:
                outbox.enqueue(db, alert, outbox.told(db, alert.id), None, kind, now)

    def unsilenced(self, alert: Alert, now: float) -> None:
        """A maintenance window over the alert ended: a firing alert never paged starts its chain; a
        waiting deadline counts afresh (deadlines do not run while silenced)."""
        esc = self.store.escalation(alert.id)
        if esc is None:
            if alert.state == "firing":
                self.start(alert, now)
            return
        if esc.due_at is not None:
            level = self.policy_of(esc, alert).level(esc.level)
            self.store.save_escalation(dataclasses.replace(esc, due_at=now + level.ack_s))

    def rise(self, alert: Alert, esc: Escalation, now: float) -> Escalation:
        """The severity changed: re-select the policy; on a rise, tell the level reached again (and
        any at-once level not yet told) with a fresh deadline."""
        policy = self.policy_for(alert)
        level = min(esc.level, len(policy.levels) - 1)
        notified = set(esc.notified)
        rose = SEVERITIES[alert.severity].rank > SEVERITIES[esc.severity].rank
        due, remind = esc.due_at, esc.remind_at
        if rose:
            for i in [level] + [i for i, lv in enumerate(policy.levels) if lv.at_once and i not in notified
                                and i != level]:
                self._tell(alert, policy, i, "escalated" if i == level else "new", now)
                notified.add(i)
            fresh = now + policy.levels[level].ack_s
            due = fresh if due is None or alert.state != "firing" else min(due, fresh)
            remind = _remind(policy.levels[level], now)
        esc = dataclasses.replace(esc, policy=policy.id, severity=alert.severity, level=level, due_at=due,
                                  remind_at=remind, notified=tuple(sorted(notified)))
        self.store.save_escalation(esc)
        return esc

    def climb(self, alert: Alert, esc: Escalation, now: float, reason: str = DEADLINE) -> Escalation:
        """Handle every deadline that has passed, in order (each a breach, each level told)."""
        policy = self.policy_of(esc, alert)
        notified = set(esc.notified)
        while esc.due_at is not None and (esc.due_at <= now or reason == UNDELIVERABLE):
            missed = policy.level(esc.level)
            at = esc.due_at if reason == DEADLINE else now
            self.store.add_breach(alert, esc, missed.name, esc.due_at, now, reason)
            why = "确认时限已过 / acknowledgement deadline missed" if reason == DEADLINE else \
                "无法送达 / could not be delivered"
            with self.store.tx() as db:
                self.store.audit(db, alert.id, "engine", "breach", f"L{esc.level} {missed.name}: {why}", now)
            if esc.level + 1 >= len(policy.levels):
                esc = dataclasses.replace(esc, due_at=None)  # the top of the chain: recorded; reminders go on
                break
            level = esc.level + 1
            nxt = policy.levels[level]
            told = self._tell(alert, policy, level, "escalation" if reason == DEADLINE else "undeliverable", now)
            notified.add(level)
            esc = dataclasses.replace(esc, level=level, level_at=at, due_at=at + nxt.ack_s, remind_at=_remind(nxt, at),
                                      notified=tuple(sorted(notified)))
            reason = DEADLINE if told else UNDELIVERABLE  # a level with nobody to tell is passed at once
        self.store.save_escalation(esc)
        return esc

    def remind(self, alert: Alert, esc: Escalation, now: float) -> Escalation:
        level = self.policy_of(esc, alert).level(esc.level)
        self._tell(alert, self.policy_of(esc, alert), esc.level, "reminder", now)
        nxt = esc.remind_at
        while nxt <= now:  # one reminder however long the engine was away, then on schedule
            nxt += level.remind_s
        esc = dataclasses.replace(esc, remind_at=nxt)
        self.store.save_escalation(esc)
        return esc

    def undeliverable(self, alert_id: int, level: int) -> None:
        """Called by the dispatcher when a notice to ``level`` failed on every channel."""
        now = self.store.clock()  # the engine's clock: deadlines are kept on it
        with self.store.tx() as db:
            esc = self.store.escalation(alert_id)
            alert = self.store.get(alert_id)
            if esc is None or alert is None or alert.state != "firing" or esc.level != level:
                return
            if outbox.level_reached(db, alert_id, level) is False:
                log.error("alert %s: nobody at level %s could be reached; escalating", alert_id, level)
                self.climb(alert, esc, now, reason=UNDELIVERABLE)

    def tick(self, now: float, sites: frozenset[str] | None = None) -> list[int]:
        """Deadlines, reminders and severity changes of firing alerts (of ``sites``, if given: an
        engine's partition). Returns the alert ids changed."""
        changed: list[int] = []
        with self.store.tx():
            for esc in self.store.escalations_due(now, sites):
                alert = self.store.get(esc.alert_id)
                if alert.severity != esc.severity:
                    esc = self.rise(alert, esc, now)
                if esc.due_at is not None and esc.due_at <= now:
                    esc = self.climb(alert, esc, now)
                if esc.remind_at is not None and esc.remind_at <= now:
                    self.remind(alert, esc, now)
                changed.append(alert.id)
        return changed

    def _tell(self, alert: Alert, policy: EscalationPolicy, level: int, kind: str, now: float) -> int:
        """Queue a notice of ``kind`` for everyone of ``level``; returns how many were queued."""
        contacts = self.recipients(policy, level, alert, now)
        name = policy.levels[level].name
        with self.store.tx() as db:
            if kind != "reminder":
                self.store.audit(db, alert.id, "engine", "notify",
                                 f"L{level} {name}: {', '.join(contacts) or '（无联系人 / nobody configured）'}", now)
            outbox.enqueue(db, alert, contacts, level, kind, now, name)
        if not contacts:
            log.error("alert %s: level %s (%s) of policy %s has no contact", alert.id, level, name, policy.id)
        return len(contacts)


def where(cfg: StationConfig, esc: Escalation) -> tuple[str, int]:
    """The name of the level an escalation reached and how many levels its chain has (for people)."""
    policy = next((p for p in cfg.routing.chain if p.id == esc.policy), None)
    return (policy.level(esc.level).name, len(policy.levels)) if policy else (f"L{esc.level}", esc.level + 1)


def _remind(level: Level, at: float) -> float | None:
    return None if level.remind_s is None else at + level.remind_s
