"""The gateway agent on the Pi: polls the sensor drivers, sounds the local alarm, and publishes
readings, events and heartbeats through the disk spool (gateway/spool.py).

- **Batched readings** (``agent.batch_readings``): the readings one poll cycle produced go out as
  ``readings`` messages (up to ``batch_max_items`` each) instead of one message per reading; events,
  alarms, heartbeats and health stay one message each and go first, never waiting for a batch.

- **Polling**: each driver is read at the shortest ``interval_s`` of its sensors, in a small thread
  pool (a camera probe waiting for its timeout delays nobody else); a reading goes out every
  ``interval_s``, a camera heartbeat every ``heartbeat_s``.
- **Events** on every change of state: binary states, the heat threshold (GB 4716: 54 °C, normal
  2 °C below), faults and their end. ``on_change`` drivers report edges at once, not at the next poll.
- **Local alarm first**: a state change switches the buzzer/relay/LED (gateway/alarm.py) in the
  thread that saw it, before anything is written or sent; the network plays no part. What the alarm
  then does (``sounding``, ``silenced`` by the button or a command, ``quiet``) is handed to the outbox
  and spooled as ``health/local_alarm`` (urgent: sent before routine telemetry, never dropped).
- **Health**: the health driver's samples (``{gateway}-{metric}``, sensors/health.py) go out as
  ``health/{metric}`` every ``health_interval_s`` (default 60 s), faults with quality ``fault``.
- **MQTT**: client id = gateway id; last will ``Status(offline, reason="will")`` (retained); birth
  ``Status(online, config_version, drivers)`` on every connection; a clean stop publishes
  ``Status(offline, reason="shutdown")``. Birth and will carry the connection's ``session`` (kept in
  the spool, rising with every connection), so the centre knows a will that comes after the next
  birth as stale. Commands on its own ``cmd/+``: ``silence`` and ``ack``, and ``patrol`` (巡检), answered
  at once on ``patrol`` with the gateway's clock, config version and drivers.
  The session is clean: a command sent while the gateway was away is not acted on later.
- **seq**: one counter per gateway, kept in the spool file, so it never goes backwards.

Example::

    run_agent(cfg, cfg.gateway("gw-sl-main"), BrokerAddress("127.0.0.1", 1883), threading.Event())
"""
from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Mapping, Sequence

from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.wire import (
    DRILL,
    LOCAL_ALARM,
    SPOOL,
    GatewayCommand,
    MessageClass,
    batch_payload,
    command_handler,
    payload,
    topic,
)
from stationwatch.sensors.base import Driver, EdgeDriver, Sample, inventory
from stationwatch.sensors.health import METRICS as HEALTH_METRICS
from stationwatch.sensors.health import sample_id
from stationwatch.sensors.kinds import KINDS

from .alarm import AlarmChange, LocalAlarm
from .commands import COMMANDS, carry_out
from .forwarder import Forwarder
from .plan import GatewayPlanSpec, StationSpec
from .spool import Outgoing, Spool
from .states import finite, state_rule

log = logging.getLogger(__name__)

DUE_TOLERANCE = 0.1      # a reading is due after 90 % of its interval (polls jitter)
LOOP_MAX_S = 5.0         # the loop goes round at least this often, polls due or not
LINGER_S = 0.02          # gather what the other polls of a tick produce into one spool commit
POLL_WORKERS = 4


class Agent:
    """One gateway's agent: ``start()``, then ``stop()`` for a clean goodbye."""

    def __init__(self, cfg: StationSpec, gw: GatewayPlanSpec, address: BrokerAddress, drivers: Sequence[Driver], *,
                 spool: Spool, alarm: LocalAlarm | None = None, config_version: str | None = None,
                 commands: Mapping[str, Callable[[Agent, GatewayCommand], None]] | None = None):
        self.gateway, self.settings = gw, gw.agent
        self.drivers = list(drivers)
        self.spool = spool
        self.alarm = alarm or LocalAlarm()
        self.config_version = config_version
        self.commands = COMMANDS if commands is None else commands  # cmd/{name} → what the agent does
        self.sensors = {s.id: s for s in cfg.sensors if s.gateway == gw.id}
        self.cameras = {c.id: c for c in cfg.cameras if c.gateway == gw.id}
        self.health = {sample_id(gw.id, m): m for m in HEALTH_METRICS}  # health sample id → metric
        health_s = self.settings.health_interval_s
        self._every = {s.id: s.interval_s for s in self.sensors.values()} | \
            {c.id: c.heartbeat_s for c in self.cameras.values()} | \
            {h: health_s for h in self.health}  # device → seconds between messages
        # readings, events, heartbeats, health, local_alarm, commands, births, read_errors
        self.stats: Counter[str] = Counter()
        self.born = threading.Event()  # set at each birth (tests wait on it)
        self.session = spool.next_session()  # this connection's: its birth and its will carry it
        self._next_session = self.session
        self.link = MqttLink(address, gw.id, will=(self.topic(MessageClass.STATUS), self._will(self.session)),
                             on_connect=self._on_connect, on_message=self._on_command)
        self.link.client.max_inflight_messages_set(self.settings.send_window)
        self.forwarder = Forwarder(spool, self.link, self.settings.send_window,
                                   getattr(self.settings, "store_timeout_s", 600.0))
        self._spool_trouble: str | None = None  # what was last reported as health/spool
        self.drill_until: float | None = None  # monotonic end of a drill (gateway/commands.py)
        self._lock = threading.Lock()  # the per-device state below
        self._state: dict[str, str] = {}
        self._last_sent: dict[str, float] = {}  # device → monotonic time of its last reading/heartbeat
        self._served: dict[int, set[str]] = {}  # driver index → devices it reported
        self._period: dict[int, float] = {}
        self._read_at: dict[int, float] = {}  # driver index → the ``now`` of its last read
        self._busy: set[int] = set()
        self._unknown: set[str] = set()
        self._edge_at: dict[str, float] = {}  # sensor → monotonic time of its last edge
        self._outbox: queue.SimpleQueue[list[Outgoing]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(POLL_WORKERS, thread_name_prefix="poll")
        self._thread: threading.Thread | None = None
        self.loop_at = time.monotonic()

    def topic(self, kind: MessageClass, device: str | None = None) -> str:
        return topic(self.gateway.site, self.gateway.id, kind, device)

    # ---- life cycle
    def start(self) -> "Agent":
        for driver in self.drivers:
            if isinstance(driver, EdgeDriver):
                driver.on_change(self._on_edge)
        self.alarm.on_change(self._on_alarm)
        self.forwarder.start()
        self.link.start(wait=None)  # connect in the background; the agent works without a network
        self._thread = threading.Thread(target=self._run, name=f"agent-{self.gateway.id}", daemon=True)
        self._thread.start()
        log.info("网关代理已启动 / gateway agent %s started: %d drivers (%s), spool %s (%d waiting)",
                 self.gateway.id, len(self.drivers), ", ".join(inventory(self.drivers)), self.spool.path,
                 self.spool.rows)
        return self

    def stop(self) -> None:
        """Stop polling, spool what was read, send what the drain time allows, say goodbye
        (``Status(offline, reason="shutdown")``) and disconnect. What is left stays spooled."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._outbox.put([])
        if self._thread is not None:
            self._thread.join(30)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._spool(self._collect(0.0))  # what polls still running at the stop produced
        for driver in self.drivers:
            try:
                driver.close()
            except Exception:  # noqa: BLE001 — one bad driver must not block the goodbye
                log.exception("driver close failed")
        if self.link.connected.is_set():
            self.forwarder.drain(self.settings.drain_s)
            bye = payload(time.time(), state="offline", config_version=self.config_version, drivers=[],
                          reason="shutdown", session=self.session)
            try:
                self.link.publish(self.topic(MessageClass.STATUS), bye, MessageClass.STATUS).wait_for_publish(5)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish the shutdown status: %s", exc)
        self.forwarder.stop()
        self.link.stop()
        log.info("网关代理已停止 / gateway agent %s stopped; %d message(s) stay spooled; %s",
                 self.gateway.id, self.spool.rows, self.spool.stats.as_dict())

    def __enter__(self) -> "Agent":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the loop: schedule polls, spool what they produce
    def _run(self) -> None:
        now, first_period = time.monotonic(), min(self._every.values(), default=10.0)
        schedule = [(now, i) for i in range(len(self.drivers))]
        heapq.heapify(schedule)
        held: list[Outgoing] = []  # could not be spooled yet (disk trouble): tried again
        while not self._stopping.is_set():
            now = self.loop_at = time.monotonic()
            while schedule and schedule[0][0] <= now:
                due, i = heapq.heappop(schedule)
                with self._lock:
                    idle = i not in self._busy
                    self._busy.add(i)
                if idle:
                    self._pool.submit(self._poll, i)
                heapq.heappush(schedule, (max(due + self._period.get(i, first_period), now), i))
            # wake at least every LOOP_MAX_S, so a live loop is seen as alive by the watchdog
            held += self._collect(min(LOOP_MAX_S, max(0.0, schedule[0][0] - time.monotonic())) if schedule else 1.0)
            held = self._spool(held + self._spool_health() + self._drill_over())
        held += self._collect(0.0)
        self._spool(held)

    def alive(self) -> bool:
        """The polling loop went round recently (what the systemd watchdog is told)."""
        return time.monotonic() - self.loop_at < 3 * LOOP_MAX_S

    def _collect(self, timeout: float) -> list[Outgoing]:
        """What polls and edges produced: wait up to ``timeout`` for the first, then gather the
        rest of the tick (up to LINGER_S while polls are still running)."""
        try:
            batch = list(self._outbox.get(timeout=timeout))
        except queue.Empty:
            return []
        deadline = time.monotonic() + LINGER_S
        while True:
            with self._lock:
                polling = bool(self._busy)
            try:
                batch += self._outbox.get(timeout=max(0.0, deadline - time.monotonic()) if polling else 0.0)
            except queue.Empty:
                return batch

    def _spool_health(self) -> list[Outgoing]:
        """``health/spool`` when the disk starts or stops failing (urgent: it goes out from memory), and
        once when a damaged file was set aside: that report stands until the disk fails again (a person
        closes the alert; readings may have been lost and the card may be dying)."""
        trouble = self.spool.trouble
        if trouble is None and self.spool.replaced:
            trouble, self.spool.replaced = self.spool.replaced, None
        elif trouble is None and (self._spool_trouble or "").startswith("replaced"):
            return []
        if trouble == self._spool_trouble:
            return []
        self._spool_trouble = trouble
        state, detail = ("alarm", trouble) if trouble else ("normal", None)
        self.stats["spool_trouble"] += trouble is not None
        return [Outgoing(MessageClass.HEALTH, self.topic(MessageClass.HEALTH, SPOOL), lambda seq: payload(
            time.time(), seq, value=1.0 if trouble else 0.0, unit="", quality="ok", state=state, detail=detail),
            urgent=True)]

    def _drill_over(self) -> list[Outgoing]:
        """A drill that ran out by itself: back to real, and say so."""
        if self.drill_until is not None and not self.drilling:
            self.drill_until = None
            log.warning("演练已到时结束 / the drill ran out: events are real again")
            self.report_drill(None)
        return []

    def report_drill(self, until: float | None) -> None:
        """``health/drill`` (urgent): a drill is on until ``until`` (Unix time), or over (None)."""
        state, detail = ("alarm", f"until {until:.0f}") if until else ("normal", None)
        self._outbox.put([Outgoing(MessageClass.HEALTH, self.topic(MessageClass.HEALTH, DRILL), lambda seq: payload(
            time.time(), seq, value=1.0 if until else 0.0, unit="", quality="ok", state=state, detail=detail),
            urgent=True)])

    def _batched(self, items: list[Outgoing]) -> list[Outgoing]:
        """With ``agent.batch_readings``: the readings of a poll cycle as ``readings`` messages of up to
        ``batch_max_items``; everything else (events, alarms, heartbeats, health) as it is."""
        readings = [o for o in items if o.reading is not None]
        if not self.settings.batch_readings or len(readings) < 2:
            return items
        size = self.settings.batch_max_items
        chunks = [[o.reading for o in readings[i:i + size]] for i in range(0, len(readings), size)]
        batches = [Outgoing(MessageClass.READINGS, self.topic(MessageClass.READINGS),
                            lambda seq, chunk=chunk: batch_payload(time.time(), seq, chunk), seqs=len(chunk))
                   for chunk in chunks]
        return [o for o in items if o.reading is None] + batches

    def _spool(self, items: list[Outgoing]) -> list[Outgoing]:
        if not items:
            return []
        items = self._batched(items)
        try:
            self.spool.append(items, offline=not self.link.connected.is_set())
        except Exception:  # noqa: BLE001 — the disk may be full or failing; keep the alarm path alive
            log.exception("写入缓存失败 / cannot write the spool; %d message(s) held in memory", len(items))
            return items[-10_000:]
        self.forwarder.wake()
        return []

    def _poll(self, i: int) -> None:
        driver, now, period = self.drivers[i], time.time(), self._period.get(i, 0.0)
        read_at = time.monotonic()
        # dispatch jitter must not make a poll read as less than a period after the last one, or
        # a driver that keeps its own schedule (camera probes) skips it and reports a period late
        if i in self._read_at and 0 < self._read_at[i] + period - now < DUE_TOLERANCE * period:
            now = self._read_at[i] + period
        self._read_at[i] = now
        try:
            samples: Sequence[Sample] = driver.read(now)
        except Exception as exc:  # noqa: BLE001 — a driver bug is its sensors' fault, not the agent's end
            self.stats["read_errors"] += 1
            log.warning("driver %s read failed: %s", type(driver).__name__, exc)
            samples = [Sample.fault(s, now, f"read failed: {exc}") for s in sorted(self._served.get(i, ()))]
        try:
            out: list[Outgoing] = []
            for sample in samples:
                out += self._observe(sample, poll=True, read_at=read_at)
            served = self._served.setdefault(i, set())
            served.update(s.sensor for s in samples if s.sensor in self._every)
            if served:
                self._period[i] = min(self._every[d] for d in served)
            if out:
                self._outbox.put(out)
        finally:
            with self._lock:
                self._busy.discard(i)

    def _on_edge(self, sample: Sample) -> None:
        """A contact changed (the driver's thread): alarm at once, event to the spool."""
        out = self._observe(sample, poll=False)
        if out:
            self._outbox.put(out)

    # ---- samples → alarm, events, readings, heartbeats
    def _observe(self, sample: Sample, poll: bool, read_at: float = 0.0) -> list[Outgoing]:
        sensor = self.sensors.get(sample.sensor)
        if sensor is None:
            camera = self.cameras.get(sample.sensor)
            if camera is not None:
                return self._heartbeat(sample, camera.heartbeat_s) if poll else []
            metric = self.health.get(sample.sensor)
            if metric is not None:
                return self._health(sample, metric) if poll else []
            if sample.sensor not in self._unknown:
                self._unknown.add(sample.sensor)
                log.info("忽略未配置的设备 / samples of '%s' ignored: not a device of gateway %s",
                         sample.sensor, self.gateway.id)
            return []
        value = finite(sample.value)
        quality = sample.quality if value is not None or sample.quality != "ok" else "fault"
        out: list[Outgoing] = []
        with self._lock:
            if not poll:
                self._edge_at[sensor.id] = time.monotonic()
            elif self._edge_at.get(sensor.id, float("-inf")) >= read_at:
                # read before an edge the driver has reported since: its state is the older one and
                # must not undo the edge (the next poll reports the contact as it is now)
                self.stats["stale_polls"] += 1
                return []
            last = self._state.get(sensor.id)
            state = "fault" if quality == "fault" else None if quality == "stale" else \
                sample.state or state_rule(sensor.kind)(sensor, value, last)
            if state is not None and state != last:
                self._state[sensor.id] = state
                if sensor.kind in self.settings.alarm_kinds and state != "fault":  # a fault changes nothing
                    self.alarm.update(sensor.id, state == "alarm")
                if last is not None or state not in ("normal", KINDS[sensor.kind].rest_state):
                    out.append(self._event(sensor.id, state, value, sample.ts))
            if poll and self._due(sensor.id, sensor.interval_s):
                self.stats["readings"] += 1
                unit = KINDS[sensor.kind].unit
                item = {"sensor": sensor.id, "ts": sample.ts, "value": None if quality == "fault" else value,
                        "unit": unit, "quality": quality}
                out.append(Outgoing(MessageClass.READING, self.topic(MessageClass.READING, sensor.id), lambda seq: payload(
                    item["ts"], seq, value=item["value"], unit=unit, quality=quality), reading=item))
        return out

    def _event(self, device: str, state: str, value: float | None, ts: float) -> Outgoing:
        self.stats["events"] += 1
        log.info("事件 / event %s/%s: %s", self.gateway.id, device, state)
        return Outgoing(MessageClass.EVENT, self.topic(MessageClass.EVENT, device),
                        lambda seq, drill=self.drilling: payload(ts, seq, state=state, value=value, drill=drill))

    def _heartbeat(self, sample: Sample, period: float) -> list[Outgoing]:
        with self._lock:
            if not self._due(sample.sensor, period):
                return []
        self.stats["heartbeats"] += 1
        online = sample.quality == "ok"
        latency = finite(sample.value) if online else None
        return [Outgoing(MessageClass.HEARTBEAT, self.topic(MessageClass.HEARTBEAT, sample.sensor),
                         lambda seq: payload(sample.ts, seq, online=online, latency_ms=latency))]

    def _health(self, sample: Sample, metric: str) -> list[Outgoing]:
        with self._lock:
            if not self._due(sample.sensor, self._every[sample.sensor]):
                return []
        self.stats["health"] += 1
        value = finite(sample.value)
        quality = sample.quality if value is not None or sample.quality != "ok" else "fault"
        state = "fault" if quality == "fault" else sample.state
        detail = getattr(sample, "detail", None)
        unit = HEALTH_METRICS[metric].unit
        return [Outgoing(MessageClass.HEALTH, self.topic(MessageClass.HEALTH, metric), lambda seq: payload(
            sample.ts, seq, value=None if quality == "fault" else value, unit=unit, quality=quality, state=state,
            detail=detail[:200] if detail else None))]

    def _on_alarm(self, change: AlarmChange) -> None:
        """The local alarm changed (any thread, under the alarm's lock): to the outbox, never waiting."""
        self.stats["local_alarm"] += 1
        self._outbox.put([Outgoing(MessageClass.HEALTH, self.topic(MessageClass.HEALTH, LOCAL_ALARM), lambda seq: payload(
            change.ts, seq, state=change.state, by=change.by, detectors=list(change.detectors)), urgent=True)])

    def _due(self, device: str, period: float) -> bool:
        now, last = time.monotonic(), self._last_sent.get(device)
        if last is not None and now - last < period * (1 - DUE_TOLERANCE):
            return False
        self._last_sent[device] = now
        return True

    # ---- MQTT (paho's network thread)
    @staticmethod
    def _will(session: int) -> bytes:
        return payload(time.time(), state="offline", config_version=None, drivers=[], reason="will", session=session)

    def _on_connect(self, link: MqttLink) -> None:
        if self.stats["births"]:  # a new connection: a new session, with the will paho registered for it
            self.session = self._next_session
        birth = payload(time.time(), state="online", config_version=self.config_version,
                        drivers=inventory(self.drivers), reason=None, session=self.session)
        link.publish(self.topic(MessageClass.STATUS), birth, MessageClass.STATUS)
        try:  # the will of the next connection, in case this one is lost
            self._next_session = self.spool.next_session()
            link.set_will(self.topic(MessageClass.STATUS), self._will(self._next_session))
        except Exception:  # noqa: BLE001 — a spool that cannot count sessions must not stop the birth
            log.exception("could not number the next MQTT session")
        link.subscribe(self.topic(MessageClass.CMD, "+"), 1)
        self.forwarder.connected()
        self.stats["births"] += 1
        self.born.set()
        log.info("已连接 / connected to the broker; %d message(s) waiting in the spool", self.spool.rows)

    def _on_command(self, topic_name: str, body: bytes, _msg) -> None:
        found = command_handler(topic_name, body, self.commands)
        if found is not None:
            cmd, handler = found
            self.stats["commands"] += 1
            carry_out(self, cmd, handler)

    # ---- drills (演练)
    @property
    def drilling(self) -> bool:
        """In a drill started from the centre (``cmd/drill``): every event is marked as a drill."""
        return self.drill_until is not None and time.monotonic() < self.drill_until
