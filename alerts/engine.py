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
:meth:`~AlertEngine.handle` and :meth:`~AlertEngine.tick`); :func:`run_engine` connects it to the
broker with a persistent session and manual acknowledgement.

>>> engine = AlertEngine(cfg, "alerts.db")                        # doctest: +SKIP
>>> engine.handle("sw/v1/sl-station/gw-sl-main/event/smk-dorm-m1", payload)  # doctest: +SKIP
[Alert(id=1, rule='fire', severity='pre_alarm', …)]
"""
from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from stationwatch.core.alert_types import ALERT_TYPES
from stationwatch.core.config import StationConfig
from stationwatch.core.contract import LOCAL_ALARM, ContractError, Inventory, MessageClass, parse, subscription
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.quarantine import Quarantine

from . import gateway_health, outbox
from .dispatch import Notifier
from .escalation import Escalator
from .register.evidence import Watch
from .register.store import Register
from .rules import RULES, Rule
from .silences import INHIBITED, INHIBITIONS, Silences, Window
from .situation import Memory, Situation
from .store import ENGINE, Alert, Raised, Store
from .verdicts import Clear, Verdict

REGISTER_RULE = Rule("hazard_register", frozenset(), lambda sit, obs: ())  # names the register's stage in logs

log = logging.getLogger(__name__)

CLIENT_ID = "stationwatch-alerts"
TICK_S = 1.0  # time rules, deadlines and reminders are evaluated this often
BEAT_S = 2.0  # the engine's heartbeat in the store, read by /health
BATCH_MAX = 500  # messages committed (and acknowledged) together


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
    inhibited: int = 0
    rule_errors: int = 0
    batches: int = 0
    started: float = field(default_factory=time.time)


class AlertEngine:
    """The alert pipeline without the network. Thread-safe."""

    def __init__(self, cfg: StationConfig, db_path: str | Path, *, notifier: Notifier | None = None,
                 quarantine: Quarantine | None = None, clock: Callable[[], float] = time.time,
                 rules: tuple[Rule, ...] = RULES):
        self.cfg = cfg
        self.clock = clock
        self.store = Store(db_path, clock=clock)
        self.quarantine = quarantine or Quarantine(quarantine_path(db_path), "alerts")
        self.inventory = Inventory(cfg)
        self.situation = Situation(cfg, Memory(self.store.load_memory()))
        self.escalator = Escalator(cfg, self.store)
        self.silences = Silences(cfg, self.store)
        self.register = Register(self.store)
        self.hazards = Watch(cfg, self.store, self.register)
        self.rules = rules
        self.routes: dict[tuple, list[Rule]] = {}
        for rule in rules:
            for key in rule.watches:
                self.routes.setdefault(key, []).append(rule)
        self.stats = EngineStats()
        self.watching = True  # time rules on; run_engine holds them until the session's backlog is read
        self._open = self.store.open_keys()  # (rule, subject) of open alerts: lets Clear skip the store
        self._lock = threading.RLock()
        self.situation.resume(clock())
        self._persist()
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
                    verdicts: list[Verdict] = []
                    for rule in self.rules:
                        if rule.tick is not None:
                            verdicts += self._run(rule, rule.tick, self.situation, now)
                    changed += self._apply(verdicts, now)
                    changed += self._review(now)
                for alert in self.store.settle(now, self.cfg.rules.resolve_hold_s):
                    self._open.discard((alert.rule, alert.subject))
                    self._closed(db, alert, now)
                    changed.append(alert)
                self._silence_stage(db, now)
                self.escalator.tick(now)
                self._persist()
        self._wake()
        return changed

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
        info = {**asdict(self.stats), "quarantine": dict(self.quarantine.counts), **extra}
        self.store.beat(ENGINE, info)

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()
        self.quarantine.close()
        self.store.close()

    # ---- stages
    def _evaluate(self, topic: str, payload: bytes, now: float) -> list[Verdict]:
        self.stats.received += 1
        try:
            msg = parse(topic, payload)
            device = self.inventory.check(msg)
        except ContractError as exc:
            self._refuse(topic, payload, exc.reason, exc.detail)
            return []
        if msg.kind is MessageClass.CMD:  # commands to gateways are not the engine's business
            return []
        self.stats.accepted += 1
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
            self._refuse(topic, payload, "internal_error", repr(exc))
            return []
        if obs.kind == "gateway" and obs.news:
            self.store.gateway_seen(msg.gateway, msg.site, msg.body.state, msg.body.reason, msg.body.ts)
            log.log(logging.WARNING if msg.body.reason == "will" else logging.INFO, "gateway %s %s (%s)",
                    msg.gateway, msg.body.state, msg.body.reason or "birth")
        verdicts: list[Verdict] = []
        for rule in self.routes.get((msg.kind, obs.kind), ()):
            verdicts += self._run(rule, rule.check, self.situation, obs)
        return verdicts

    def _refuse(self, topic: str, payload: bytes, reason: str, detail: str) -> None:
        self.stats.quarantined += 1
        try:
            self.quarantine.add(topic, payload, reason, detail)
        except Exception:  # the quarantine's disk is full or broken: still count, go on
            log.exception("could not keep a refused message in the quarantine")

    def _run(self, rule: Rule, fn: Callable, *args: object) -> list[Verdict]:
        try:
            return list(fn(*args))
        except Exception:  # a rule bug must cost one verdict, not the engine
            self.stats.rule_errors += 1
            log.exception("rule %s failed", rule.name)
            return []

    # the stages of one verdict: inhibit → lifecycle → silence → escalate
    def _apply(self, verdicts: list[Verdict], now: float) -> list[Alert]:
        changed: list[Alert] = []
        for verdict in verdicts:
            if self._inhibited(verdict, now):
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

    def _fire(self, db: sqlite3.Connection, alert: Alert, now: float) -> None:
        """An alert starts firing: silenced by a maintenance window, or up the reporting chain."""
        window = self.silences.covering(alert, now)
        if window is not None:
            self.store.set_silence(db, alert.id, window.id, f"{window.id}: {window.reason}")
            return
        self.escalator.start(alert, now)

    def _closed(self, db: sqlite3.Connection, alert: Alert, now: float) -> None:
        self.stats.resolved += 1
        log.info("alert %s %s: %s", alert.id, alert.resolution, alert.title_en)
        if alert.resolution != "expired" and alert.flaps < 2 and self.cfg.routing.notify_resolved:
            outbox.enqueue(db, alert, outbox.told(db, alert.id), None, "resolved", now)

    def _silence_stage(self, db: sqlite3.Connection, now: float) -> None:
        """Mark alerts a window now covers; when a window ends, their escalation starts (or goes on)."""
        windows = self.silences.windows(now)
        rows = db.execute("SELECT * FROM alerts WHERE state IN ('firing', 'acknowledged') AND"
                          " (silenced_by IS NOT NULL OR ?)", (bool(windows),)).fetchall()
        for alert in map(Alert.from_row, rows):
            window: Window | None = next((w for w in windows if w.covers(alert, now)), None)
            if window is not None and alert.silenced_by != window.id:
                self.store.set_silence(db, alert.id, window.id, f"{window.id}: {window.reason}")
            elif window is None and alert.silenced_by is not None:
                self.store.set_silence(db, alert.id, None, f"{alert.silenced_by} over / 维护结束")
                self.escalator.unsilenced(alert, now)

    def _persist(self) -> None:
        changes = self.situation.mem.dirty()
        if changes:
            self.store.save_memory(changes)
            self.situation.mem.clean()

    def _wake(self) -> None:
        if self.notifier is not None:
            self.notifier.wake()


def _drain(inbox: queue.Queue, timeout: float, limit: int) -> list:
    try:
        batch = [inbox.get(timeout=timeout)]
    except queue.Empty:
        return []
    while len(batch) < limit:
        try:
            batch.append(inbox.get_nowait())
        except queue.Empty:
            break
    return batch


def run_engine(cfg: StationConfig, address: BrokerAddress, db_path: str | Path, stop: threading.Event, *,
               client_id: str = CLIENT_ID, notifier: Notifier | None = None,
               tick_s: float = TICK_S, beat_s: float = BEAT_S, batch_max: int = BATCH_MAX) -> None:
    """Run the alert engine on the live MQTT stream until ``stop`` is set.

    The session is persistent (clean_start=False) and messages are acknowledged only after the
    batch holding them is committed: what arrives while the engine is down, or what it had not
    committed when it died, waits on the broker and is evaluated when it comes back. Silence rules
    wait until that backlog has been read, so a restart does not mistake its own absence for silence."""
    engine = AlertEngine(cfg, db_path, notifier=notifier if notifier is not None else Notifier(cfg))
    engine.watching = False
    inbox: queue.Queue = queue.Queue()
    link = MqttLink(address, client_id, clean_start=False, manual_ack=True,
                    on_connect=lambda lk: lk.subscribe(subscription(), qos=1),
                    on_message=lambda topic, payload, msg: inbox.put((topic, payload, msg.mid, msg.qos)))
    log.info("alert engine: store %s, broker %s:%s", db_path, address.host, address.port)
    link.start(wait=None)  # paho keeps retrying; /health shows the engine as not connected meanwhile
    next_tick = next_beat = 0.0
    subscribed_at: float | None = None
    try:
        while not stop.is_set():
            batch = _drain(inbox, max(0.0, min(next_tick, next_beat) - time.monotonic()), batch_max)
            if batch:
                _commit(engine, batch, stop)
                for _topic, _payload, mid, qos in batch:
                    if qos:
                        link.ack(mid, qos)
            if not engine.watching:  # the session's backlog comes right after connecting: read it first
                subscribed_at = subscribed_at or (time.monotonic() if link.subscribed.is_set() else None)
                if subscribed_at is not None and time.monotonic() - subscribed_at >= tick_s and inbox.empty():
                    engine.watching = True
                    log.info("alert engine: backlog read, silence rules on")
            if time.monotonic() >= next_tick:
                engine.tick()
                next_tick = time.monotonic() + tick_s
            if time.monotonic() >= next_beat:
                engine.beat(connected=link.connected.is_set(), watching=engine.watching)
                next_beat = time.monotonic() + beat_s
    finally:
        link.stop()
        engine.close()
        log.info("alert engine stopped: %s", asdict(engine.stats))


def _commit(engine: AlertEngine, batch: list, stop: threading.Event) -> None:
    """Commit a batch, retrying while the store is busy or unwritable (nothing is acknowledged before)."""
    delay = 0.2
    while True:
        try:
            engine.handle_batch([(topic, payload) for topic, payload, _mid, _qos in batch])
            return
        except sqlite3.Error as exc:
            log.error("alert store write failed (%s); retrying in %.1f s", exc, delay)
            if stop.wait(delay):
                raise
            delay = min(delay * 2, 5.0)
