"""The alert engine: MQTT messages → rules → the alert store → notifications.

A message goes through a pipeline of small stages, as in Alertmanager:

    parse (contract) → inventory check → observe (situation) → rules (table) → store (dedup,
    escalation, auto-resolve) → notify (worker thread)

A refused message goes to the quarantine and is counted; nothing a gateway sends can stop the
engine. :class:`AlertEngine` is the whole pipeline in-process (tests drive it with
:meth:`~AlertEngine.handle` and :meth:`~AlertEngine.tick`); :func:`run_engine` only connects it
to the broker with a persistent session and ticks it every second.

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
from typing import Callable

from stationwatch.broker.config import StationConfig
from stationwatch.broker.contract import ContractError, Inventory, Kind, Message, parse, subscription
from stationwatch.broker.mqtt import BrokerAddress, MqttLink
from stationwatch.broker.quarantine import Quarantine

from .notify import Notifier
from .rules import RULES, Clear, Rule, Situation, Verdict
from .store import ENGINE, Alert, Raised, Store

log = logging.getLogger(__name__)

CLIENT_ID = "stationwatch-alerts"
TICK_S = 1.0  # time-based rules (silent sensors and cameras) are evaluated this often
BEAT_S = 2.0  # the engine's heartbeat in the store, read by /health


def quarantine_path(db_path: str | Path) -> Path:
    """The quarantine file lives next to the alert store: ``alerts.db`` → ``alerts.quarantine.db``."""
    return Path(db_path).with_suffix(".quarantine.db")


@dataclass
class EngineStats:
    received: int = 0
    accepted: int = 0
    quarantined: int = 0
    raised: int = 0
    resolved: int = 0
    rule_errors: int = 0
    started: float = field(default_factory=time.time)


class AlertEngine:
    """The alert pipeline without the network. Thread-safe: MQTT messages and ticks may come
    from different threads."""

    def __init__(self, cfg: StationConfig, db_path: str | Path, *, notifier: Notifier | None = None,
                 quarantine: Quarantine | None = None, clock: Callable[[], float] = time.time,
                 rules: tuple[Rule, ...] = RULES):
        self.cfg = cfg
        self.store = Store(db_path)
        self.quarantine = quarantine or Quarantine(quarantine_path(db_path), "alerts")
        self.inventory = Inventory(cfg)
        self.situation = Situation(cfg)
        self.clock = clock
        self.rules = rules
        self.manual_close = frozenset(r.name for r in rules if not r.auto_resolve)  # only a person closes these
        self.routes: dict[tuple[Kind, str], list[Rule]] = {}
        for rule in rules:
            for key in rule.watches:
                self.routes.setdefault(key, []).append(rule)
        self.notifier = notifier.start(self.store) if notifier is not None else None
        self.stats = EngineStats()
        self._active = self.store.active_keys()  # (rule, subject) not resolved: lets Clear skip the store
        self.situation.restore(self.store.alerts(limit=100_000))
        self._lock = threading.RLock()

    # ---- the pipeline
    def handle(self, topic: str, payload: bytes, now: float | None = None) -> list[Alert]:
        """One message from the broker. Returns the alerts it raised, escalated or resolved."""
        with self._lock:
            now = self.clock() if now is None else now
            self.stats.received += 1
            try:
                msg = parse(topic, payload)
                device = self.inventory.check(msg)
            except ContractError as exc:
                self.stats.quarantined += 1
                self.quarantine.add(topic, payload, exc.reason, exc.detail)
                return []
            self.stats.accepted += 1
            obs = self.situation.observe(msg, device, now)
            if msg.kind is Kind.STATUS:
                self._record_status(msg)
            verdicts: list[Verdict] = []
            for rule in self.routes.get((msg.kind, obs.kind), ()):
                verdicts += self._run(rule, rule.check, self.situation, obs)
            return self._apply(verdicts)

    def tick(self, now: float | None = None) -> list[Alert]:
        """Evaluate the time-based rules (silent sensors, silent cameras)."""
        with self._lock:
            now = self.clock() if now is None else now
            self.situation.start(now)
            verdicts: list[Verdict] = []
            for rule in self.rules:
                if rule.tick is not None:
                    verdicts += self._run(rule, rule.tick, self.situation, now)
            return self._apply(verdicts)

    def beat(self, **extra: object) -> None:
        """Write the engine's heartbeat (read by ``/health``) with its counters."""
        info = {**asdict(self.stats), "quarantine": dict(self.quarantine.counts), **extra}
        self.store.beat(ENGINE, info)

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()
        self.quarantine.close()
        self.store.close()

    # ---- stages
    def _run(self, rule: Rule, fn: Callable, *args: object) -> list[Verdict]:
        try:
            return list(fn(*args))
        except Exception:  # a rule bug must cost one verdict, not the engine
            self.stats.rule_errors += 1
            log.exception("rule %s failed", rule.name)
            return []

    def _record_status(self, msg: Message) -> None:
        body = msg.body
        self.store.gateway_seen(msg.gateway, msg.site, body.state, body.reason, body.ts)
        if body.state == "offline":
            log.log(logging.WARNING if body.reason == "will" else logging.INFO,
                    "gateway %s offline (%s)", msg.gateway, body.reason or "no reason")

    def _apply(self, verdicts: list[Verdict]) -> list[Alert]:
        changed: list[Alert] = []
        for verdict in verdicts:
            key = (verdict.rule, verdict.subject)
            if isinstance(verdict, Clear):
                if verdict.rule in self.manual_close or key not in self._active:
                    continue
                self._active.discard(key)
                alert = self.store.clear(verdict.rule, verdict.subject, verdict.at, verdict.note)
                if alert is not None:
                    self.stats.resolved += 1
                    changed.append(alert)
                    log.info("alert %s resolved: %s", alert.id, alert.title_en)
                continue
            changed.append(self._raise(verdict))
        return changed

    def _raise(self, raised: Raised) -> Alert:
        alert, change = self.store.raise_alert(raised)
        self._active.add((raised.rule, raised.subject))
        if change != "repeat":
            self.stats.raised += 1
            log.warning("alert %s %s [%s]: %s", alert.id, change, alert.severity, alert.title_en)
            if self.notifier is not None:
                self.notifier.submit(alert, change)
        return alert


def run_engine(cfg: StationConfig, address: BrokerAddress, db_path: str | Path, stop: threading.Event, *,
               client_id: str = CLIENT_ID, notifier: Notifier | None = None,
               tick_s: float = TICK_S, beat_s: float = BEAT_S) -> None:
    """Run the alert engine on the live MQTT stream until ``stop`` is set.

    The session is persistent (clean_start=False): messages published while the engine is down
    wait on the broker and are evaluated when it comes back."""
    engine = AlertEngine(cfg, db_path, notifier=notifier if notifier is not None else Notifier(cfg))
    link = MqttLink(address, client_id, clean_start=False,
                    on_connect=lambda lk: lk.subscribe(subscription(), qos=1),
                    on_message=lambda topic, payload, _msg: engine.handle(topic, payload))
    log.info("alert engine: store %s, broker %s:%s", db_path, address.host, address.port)
    link.start(wait=None)  # paho keeps retrying; /health shows the engine as not connected meanwhile
    next_beat = 0.0
    try:
        while True:
            engine.tick()
            if time.monotonic() >= next_beat:
                engine.beat(connected=link.connected.is_set())
                next_beat = time.monotonic() + beat_s
            if stop.wait(tick_s):
                break
    finally:
        link.stop()
        engine.close()
        log.info("alert engine stopped: %s", asdict(engine.stats))
