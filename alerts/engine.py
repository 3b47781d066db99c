"""The alert engine: MQTT messages → rules → lifecycle → escalation → the durable outbox.

A batch of messages goes through a pipeline of small stages, as in Alertmanager::

    parse (contract) → inventory → observe (situation) → rules (table)
    → inhibit → lifecycle (store: dedup, pending, flaps, resolve hold) → silence → escalate (escalation.py)
    → outbox        … one transaction …
    → commit → MQTT acknowledgement → dispatcher (rate limit, digest, retry, failover)

Inhibition and silencing are one shape (:class:`~.silences.Window`): an open cause (a lost gateway)
is a window over its symptoms, which are not raised; a maintenance window lets an alert be recorded
but pages nobody.

Everything a batch changes — alerts, audit rows, escalation deadlines, queued notices and the
rules' memory — is committed in one SQLite transaction *before* the batch is acknowledged to the
broker; a message whose effects were not committed is delivered again. So a SIGKILL at any point
loses no alert, acknowledgement, timer or notice.

:class:`AlertEngine` is the whole pipeline in-process with an injectable clock (tests drive it with
:meth:`~AlertEngine.handle` and :meth:`~AlertEngine.tick`); :func:`~.runner.run_engine` connects it
to the broker with a persistent session and manual acknowledgement.

>>> engine = AlertEngine(cfg, "alerts.db")                        # doctest: +SKIP
>>> engine.handle("sw/v1/sl-station/gw-sl-main/event/smk-dorm-m1", payload)  # doctest: +SKIP
[Alert(id=1, rule='fire', severity='pre_alarm', …)]
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import msgspec

from stationwatch.core.alert_types import ALERT_TYPES
from stationwatch.core.config import CENTRE, StationConfig
from stationwatch.core.contract import (
    LOCAL_ALARM,
    ContractError,
    Inventory,
    Message,
    MessageClass,
    Refused,
    fan_out,
    item_bytes,
    parse,
    parse_service,
)
from stationwatch.core.quarantine import Quarantine
from stationwatch.core.wire import SERVICE_ROOT

from . import gateway_health, outbox, patrol
from .database import is_url
from .dispatch import Notifier
from .escalation import Escalator
from .express import BatchLane
from .liveness import SilenceWatch
from .memory import Memory
from .ownership import SiteOwnership
from .partition import Partitions
from .register.evidence import Watch
from .register.store import Register
from .resting import Resting
from .rules import RULES, Rule
from .silences import INHIBITED, INHIBITIONS, Silences, Window
from .situation import Situation
from .store import ENGINE, Alert, Raised, Store
from .supervision import Pipeline
from .verdicts import Clear, Verdict

REGISTER_RULE = Rule("hazard_register", frozenset(), lambda sit, obs: ())  # names the register's stage in logs

log = logging.getLogger(__name__)



def quarantine_path(db_path: str | Path) -> Path:
    """The quarantine file lives next to the alert store: ``alerts.db`` → ``alerts.quarantine.db``;
    with a PostgreSQL store, in the working directory (each engine's own: ``runner.py`` names it)."""
    return Path("alerts.quarantine.db") if is_url(db_path) else Path(db_path).with_suffix(".quarantine.db")


@dataclass
class EngineStats:
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    resting: int = 0  # readings of sensors at rest: noted, the rules not run again (alerts/resting.py)
    raised: int = 0
    resolved: int = 0
    inhibited: int = 0
    rule_errors: int = 0
    batches: int = 0
    started: float = field(default_factory=time.time)


class AlertEngine(SiteOwnership):
    """The alert pipeline without the network. Thread-safe."""

    def __init__(self, cfg: StationConfig, db_path: str | Path, *, notifier: Notifier | None = None,
                 quarantine: Quarantine | None = None, clock: Callable[[], float] = time.time,
                 rules: tuple[Rule, ...] = RULES, config_version: str | None = None, probe_topic: str | None = None,
                 scope: frozenset[str] | None = None):
        self.cfg = cfg
        self.config_version = config_version  # the centre's: a gateway running another is a patrol finding
        self.probe_topic = probe_topic  # this engine's own broker probe (alerts/runner.py)
        self.outgoing: list[tuple[str, bytes]] = []  # commands to publish (patrols), taken by the runner
        self.clock = clock
        self.store = Store(db_path, clock=clock)
        self.quarantine = quarantine or Quarantine(quarantine_path(db_path), "alerts")
        self.inventory = Inventory(cfg)
        self.batches = BatchLane(self.inventory)
        self.situation = Situation(cfg, Memory(self.store.load_memory(),
                                               groups={d.id: d.gateway for d in [*cfg.sensors, *cfg.cameras]}))
        self.situation.silence = SilenceWatch()
        self.stats = EngineStats()
        self.resting = Resting(self.situation, self.stats)
        self.escalator = Escalator(cfg, self.store)
        self.silences = Silences(cfg, self.store)
        self.register = Register(self.store)
        self.hazards = Watch(cfg, self.store, self.register)
        self.rules = rules
        self.routes: dict[tuple, list[Rule]] = {}
        for rule in rules:
            for key in rule.watches:
                self.routes.setdefault(key, []).append(rule)
        self.partitions = Partitions(cfg)
        self.scope = scope  # the sites (and CENTRE) this engine owns; None: all (leases.py)
        self.watching = True  # time rules on; run_engine holds them until the session's backlog is read
        self._open = self.store.open_keys()  # (rule, subject) of open alerts: lets Clear skip the store
        self._lock = threading.RLock()
        self.situation.resume(clock())
        self.pipeline = self.situation.pipeline = Pipeline(self.situation, self.store, clock())
        self._persist()
        if notifier is not None:
            notifier.sites = scope
        self.notifier = notifier.start(self.store, self.escalator.undeliverable) if notifier is not None else None

    # ---- the pipeline
    def handle(self, topic: str, payload: bytes, now: float | None = None) -> list[Alert]:
        """One message from the broker. Returns the alerts it raised, changed or resolved."""
        return self.handle_batch([(topic, payload)], now)

    def handle_batch(self, messages: Iterable[tuple[str, bytes]], now: float | None = None) -> list[Alert]:
        """Messages committed together: when this returns they may be acknowledged to the broker."""
        with self._lock:
            now = self.clock() if now is None else now
            changed: list[Alert] = []
            with self.store.tx():
                for topic, payload in messages:
                    changed += self._apply(self._evaluate(topic, payload, now), now)
                self._persist()
            self.stats.batches += 1
        self._wake()
        return changed

    def tick(self, now: float | None = None) -> list[Alert]:
        """Time rules (silence, doors left open), resolve holds, maintenance windows, deadlines and reminders."""
        with self._lock:
            now = self.clock() if now is None else now
            changed: list[Alert] = []
            with self.store.tx() as db:
                self.situation.start(now)
                if self.watching:
                    verdicts: list[Verdict] = list(self.pipeline.tick(now)) if self._owns(CENTRE) else []
                    for rule in self.rules:
                        if rule.tick is not None:
                            verdicts += self._run(rule, rule.tick, self.situation, now)
                    commands, missed = patrol.due(self.situation, now)
                    self.outgoing += [(t, b) for t, b in commands if self._owns(self.partitions.of_topic(t))]
                    changed += self._apply(verdicts + missed, now)
                    changed += self._review(now) if self._owns(CENTRE) else []
                for alert in self.store.settle(now, self.cfg.rules.resolve_hold_s, self.scope):
                    self._open.discard((alert.rule, alert.subject))
                    self._closed(db, alert, now)
                    changed.append(alert)
                self._silence_stage(db, now)
                self.escalator.tick(now, self.scope)
                self._persist()
        self._wake()
        return changed

    def take_outgoing(self) -> list[tuple[str, bytes]]:
        """Commands the engine wants published (patrols), handed over once."""
        with self._lock:
            out, self.outgoing = self.outgoing, []
        return out
    # ---- a partition of the sites (alerts/leases.py; taking sites over: alerts/ownership.py)
    def _owns(self, partition: str) -> bool:
        return self.scope is None or partition in self.scope

    def review(self, now: float | None = None) -> list[Alert]:
        """The hazard register's stage alone (``tick`` runs it once the backlog is read): entries from
        the store's evidence, and overdue entries up the reporting chain (alerts/register/evidence.py)."""
        with self._lock:
            now = self.clock() if now is None else now
            with self.store.tx():
                changed = self._review(now)
                self._persist()
        self._wake()
        return changed

    def _review(self, now: float) -> list[Alert]:
        return self._apply(self._run(REGISTER_RULE, self.hazards.tick, now, set(self._open)), now)

    def beat(self, **extra: object) -> None:
        """Write the engine's heartbeat (read by ``/health``) with its counters."""
        info = {**asdict(self.stats), "quarantine": dict(self.quarantine.counts),
                "clock_corrected": self.situation.clock_corrected, **extra}
        self.store.beat(ENGINE, info)

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()
        self.quarantine.close()
        self.store.close()

    # ---- stages
    def _evaluate(self, topic: str, payload: bytes, now: float) -> list[Verdict]:
        if not self._owns(self.partitions.of_topic(topic)):  # another engine's site (leases.py)
            return []
        self.stats.received += 1
        if topic.startswith(SERVICE_ROOT + "/"):
            return self._service(topic, payload, now)
        taken = self.batches.take(topic, payload)
        if taken is not None:  # a batch of readings, all well formed and known (alerts/express.py)
            self._heard(taken[0][0].gateway, max(item.body.seq for item, _, _ in taken), now)  # once, for all
            verdicts: list[Verdict] = []
            for item, device, raw in taken:
                verdicts += self._observe(item, device, topic, lambda raw=raw: msgspec.json.encode(raw), now, heard=True)
            return verdicts
        try:
            msg = parse(topic, payload)
            device = self.inventory.check(msg)
        except ContractError as exc:
            self._refuse(topic, payload, exc.reason, exc.detail)
            return []
        if msg.kind is MessageClass.READINGS:  # a batch: the same observations its readings make one by one
            return self._batch(msg, now)
        return self._observe(msg, device, topic, lambda: payload, now)

    def _batch(self, batch: Message, now: float) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for i, item in enumerate(fan_out(batch)):
            if isinstance(item, Refused):  # that item alone goes to the quarantine
                self._refuse(item.topic, item.item, item.reason, item.detail)
                continue
            try:
                device = self.inventory.check(item)
            except ContractError as exc:
                self._refuse(batch.topic, item_bytes(batch.body.items[i]), exc.reason, f"items[{i}]: {exc.detail}")
                continue
            verdicts += self._observe(item, device, batch.topic, lambda i=i: item_bytes(batch.body.items[i]), now)
        return verdicts

    def _heard(self, gateway: str, seq: int | None, now: float) -> None:
        self.situation.heard(gateway, now)
        if seq is not None and seq > self.situation.mem.get("seq", gateway, -1):
            self.situation.mem.put("seq", gateway, seq)  # what a takeover need not replay (runner.py)

    def _observe(self, msg: Message, device, topic: str, evidence: Callable[[], bytes], now: float,
                 heard: bool = False) -> list[Verdict]:
        """One observation (a message, or an item of a batch); ``evidence`` is what the quarantine
        keeps; ``heard``: the gateway's last-heard time and sequence are noted already (a whole batch's)."""
        if msg.kind in (MessageClass.CMD, MessageClass.REPLY):  # commands to gateways are not the engine's business
            return []
        self.stats.accepted += 1
        if not heard and msg.kind is not MessageClass.STATUS:  # a status (no seq) is heard below, unless retained again
            self._heard(msg.gateway, getattr(msg.body, "seq", None), now)
        if msg.kind is MessageClass.PATROL:
            return self._run_fn("patrol", patrol.answer, self.situation, msg, now, self.config_version)
        try:
            if msg.kind is MessageClass.HEALTH:  # the gateway's own health: its device is the gateway
                obs = gateway_health.observe(self.situation, msg, device, now)
                if msg.device == LOCAL_ALARM:
                    with self.store.tx() as db:
                        gateway_health.local_alarm(self.situation, self.store, db, obs)
            else:
                obs = self.situation.observe(msg, device, now)
        except Exception as exc:  # a bug must cost one message, not the engine
            log.exception("could not observe a message on %r", topic[:200])
            self._refuse(topic, evidence(), "internal_error", repr(exc))
            return []
        if obs.kind == "gateway" and obs.news:
            self.situation.heard(msg.gateway, now)
            self.store.gateway_seen(msg.gateway, msg.site, msg.body.state, msg.body.reason, msg.body.ts)
            log.log(logging.WARNING if msg.body.reason == "will" else logging.INFO, "gateway %s %s (%s)",
                    msg.gateway, msg.body.state, msg.body.reason or "birth")
        rules = self.routes.get((msg.kind, obs.kind), ())
        if msg.kind is MessageClass.READING:  # a sensor saying again what it said, nothing around it changed
            return self.resting.judge(obs, self._open.__contains__, lambda: self._check(rules, obs))
        return self._check(rules, obs)[0]

    def _check(self, rules: Iterable[Rule], obs) -> tuple[list[Verdict], bool]:
        """The verdicts of ``rules`` on ``obs``, and whether all ran without an error."""
        errors, verdicts = self.stats.rule_errors, []
        for rule in rules:
            verdicts += self._run(rule, rule.check, self.situation, obs)
        return verdicts, self.stats.rule_errors == errors

    def _service(self, topic: str, payload: bytes, now: float) -> list[Verdict]:
        """A pipeline service's heartbeat, or this engine's own broker probe back (alerts/supervision.py)."""
        try:
            msg = parse_service(topic, payload)
        except ContractError as exc:
            self._refuse(topic, payload, exc.reason, exc.detail)
            return []
        self.stats.accepted += 1
        if msg.leaf == "probe":
            if topic == self.probe_topic:
                self.pipeline.round_trip(now)
        elif msg.body is not None:
            self.pipeline.service(msg, now)
            self.store.beat(f"{msg.service}:{msg.instance}", {"state": msg.body.state, "reason": msg.body.reason,
                                                              **msg.body.info}, at=msg.body.ts)
        return []

    def _run_fn(self, name: str, fn: Callable, *args: object) -> list[Verdict]:
        try:
            return list(fn(*args))
        except Exception:  # a rule bug must cost one verdict, not the engine
            self.stats.rule_errors += 1
            log.exception("rule %s failed", name)
            return []

    def _refuse(self, topic: str, payload: bytes, reason: str, detail: str) -> None:
        self.stats.quarantined += 1
        try:
            self.quarantine.add(topic, payload, reason, detail)
        except Exception:  # the quarantine's disk is full or broken: still count, go on
            log.exception("could not keep a refused message in the quarantine")

    def _run(self, rule: Rule, fn: Callable, *args: object) -> list[Verdict]:
        return self._run_fn(rule.name, fn, *args)

    # the stages of one verdict: inhibit → lifecycle → silence → escalate
    def _apply(self, verdicts: list[Verdict], now: float) -> list[Alert]:
        changed: list[Alert] = []
        for verdict in verdicts:
            if type(verdict) is Clear and (verdict.rule, verdict.subject) not in self._open:
                continue  # nothing open to clear (nearly every reading): the stages below would find the same
            if not self._owns(self.partitions.of_verdict(verdict)) or self._inhibited(verdict, now):
                continue
            alert, change = self._lifecycle(verdict, now)
            if alert is None:
                continue
            changed.append(alert)
            with self.store.tx() as db:
                if change in ("expired", "resolved"):
                    self._closed(db, alert, now)
                elif change in ("new", "fired"):
                    self._fire(db, alert, now)
                elif change == "reopened":
                    self.escalator.reopened(alert, now)
                elif change in ("escalated", "lowered"):  # the chain follows at once (a confirmed fire → the bureau)
                    self.escalator.follow(alert, now)
        return changed

    def _inhibited(self, verdict: Verdict, now: float) -> bool:
        """A symptom of a cause that is open (a lost gateway's faults): not raised at all."""
        if not isinstance(verdict, Raised) or verdict.rule not in INHIBITED:
            return False
        if any(w.covers(verdict, now) for inh in INHIBITIONS for w in inh.windows(self.cfg, self._open)):
            self.stats.inhibited += 1
            return True
        return False

    def _lifecycle(self, verdict: Verdict, now: float) -> tuple[Alert | None, str]:
        """Record the verdict in the store: dedup, pending, flaps, the resolve hold. Returns the alert
        and what changed, or (None, …) when there is nothing to show or tell."""
        key, kind = (verdict.rule, verdict.subject), ALERT_TYPES[verdict.rule]
        if isinstance(verdict, Clear):
            if not kind.auto_resolve or key not in self._open:
                return None, "none"
            alert, change = self.store.clear(verdict.rule, verdict.subject, now, verdict.note,
                                             self.cfg.rules.resolve_hold_s, at=verdict.at)
            if change in ("expired", "resolved", "none"):
                self._open.discard(key)
            return (alert, change) if alert is not None and change in ("expired", "resolved") else (None, change)
        alert, change = self.store.raise_alert(verdict, now, follows=kind.follows,
                                               flap_window_s=self.cfg.rules.flap_window_s)
        self._open.add(key)
        if change == "repeat":
            return None, change
        if change != "pending":
            self.stats.raised += change in ("new", "fired")
            log.warning("alert %s %s [%s]: %s", alert.id, change, alert.severity, alert.title_en)
        return alert, change

    def _fire(self, db, alert: Alert, now: float) -> None:
        """An alert starts firing: silenced by a maintenance window, or up the reporting chain."""
        window = self.silences.covering(alert, now)
        if window is not None:
            self.store.set_silence(db, alert.id, window.id, f"{window.id}: {window.reason}")
            return
        self.escalator.start(alert, now)

    def _closed(self, db, alert: Alert, now: float) -> None:
        self.stats.resolved += 1
        log.info("alert %s %s: %s", alert.id, alert.resolution, alert.title_en)
        if alert.resolution != "expired" and alert.flaps < 2 and self.cfg.routing.notify_resolved:
            outbox.enqueue(db, alert, outbox.told(db, alert.id), None, "resolved", now)

    def _silence_stage(self, db, now: float) -> None:
        """Mark alerts a window now covers; when a window ends, their escalation starts (or goes on)."""
        windows = self.silences.windows(now)
        rows = db.execute("SELECT * FROM alerts WHERE state IN ('firing', 'acknowledged') AND"
                          " (silenced_by IS NOT NULL OR ?)", (bool(windows),)).fetchall()
        for alert in map(Alert.from_row, rows):
            if not self._owns(alert.site):
                continue
            window: Window | None = next((w for w in windows if w.covers(alert, now)), None)
            if window is not None and alert.silenced_by != window.id:
                self.store.set_silence(db, alert.id, window.id, f"{window.id}: {window.reason}")
            elif window is None and alert.silenced_by is not None:
                self.store.set_silence(db, alert.id, None, f"{alert.silenced_by} over / 维护结束")
                self.escalator.unsilenced(alert, now)

    def _persist(self) -> None:
        self.situation.note_said(self.clock())
        changes = self.situation.mem.dirty()
        if self.scope is not None:  # what the rules noted about other engines' sites is not ours to write
            changes = {k: v for k, v in changes.items() if self.partitions.of_memory(*k) in self.scope}
        if changes:
            self.store.save_memory(changes)
            self.situation.mem.clean()

    def _wake(self) -> None:
        if self.notifier is not None:
            self.notifier.wake()
