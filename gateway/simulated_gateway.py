"""One simulated gateway, in-process: the station's sensors and cameras on a simulated clock,
speaking the MQTT contract (see :mod:`stationwatch.gateway.simulator` for the behaviour).

Example::

    with SimulatedGateway(cfg, cfg.gateways[0], BrokerAddress("127.0.0.1", 1883), speed=50) as gw:
        gw.play("fire").wait(5)
"""
from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from stationwatch.core.config import Gateway, StationConfig
from stationwatch.core.contract import Event, Heartbeat, MessageClass, Reading, Sequenced, Status, encode, topic
from stationwatch.core.wire import GatewayCommand, command_handler
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.sensors.kinds import KINDS

from stationwatch.sensors.simulated import QUANTITY

from .building import ACTIVE_AT_REST, Building, SimClock, most_recent
from .scenarios import Scenario, SimulationError, Station, Step, cast, check_scenario

log = logging.getLogger(__name__)

HEAT_HYSTERESIS_C = 2.0  # a heat detector returns to normal this far below its threshold
RECONNECT_RETRY_S = 2.0  # real seconds between reconnection attempts after a power loss


@dataclass
class Play:
    """One playing of a scenario; ``wait()`` until its timeline has run out."""
    scenario: Scenario
    speed: float
    roles: Mapping[str, tuple[str, ...]]
    clock_anchor: float | None = None  # Unix time the scenario's own clock reads at its start
    finished: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    def stamp(self, at_s: float) -> float:
        """``ts`` for an event of the step at ``at_s``: the scenario's clock, or real time."""
        return time.time() if self.clock_anchor is None else self.clock_anchor + at_s


class SimulatedGateway:
    """A gateway of ``cfg`` with every sensor and camera wired to it, simulated in-process."""

    def __init__(self, cfg: StationConfig, gw: Gateway, address: BrokerAddress, *, speed: float = 1.0,
                 config_version: str | None = None):
        if speed <= 0:
            raise SimulationError(f"speed must be > 0, not {speed}")
        self.station = Station.of(cfg, gw)
        self.gateway, self.site, self.address = gw, self.station.site, address
        self.base_speed = speed
        self.config_version = config_version
        self.clock = SimClock(speed)
        self.building = Building(self.site.tz, seed=gw.id)
        self.powered = False
        self.plays: list[Play] = []
        self._active: list[Play] = []  # scenarios still playing; the last one sets the speed
        # binary sensors in their active state (a running pump rests there)
        self._contacts: set[str] = {s.id for s in self.station.sensors if s.kind in ACTIVE_AT_REST}
        self._heat_alarms: set[str] = set()
        self._cameras_down: set[str] = set()
        self._seq = itertools.count()
        self._rng = random.Random(gw.id)  # probe latencies; used by the scheduler thread only
        self._spool: list[tuple[str, MessageClass, Sequenced]] = []  # kept while the power is off
        self._send_lock = threading.Lock()
        self._jobs: list[tuple[float, int, Callable[[float], None]]] = []  # heap by simulated time
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self._born = threading.Event()
        self._link: MqttLink | None = None
        self._thread: threading.Thread | None = None

    # ---- topics and drivers
    def topic(self, kind: MessageClass, device: str | None = None) -> str:
        return topic(self.site.id, self.gateway.id, kind, device)

    @property
    def drivers(self) -> list[str]:
        """The birth message's inventory in the contract's ``family:count`` form: the simulated
        sensors count as one family, the cameras as one camera watch (as on a real gateway)."""
        families = {"simulated": len(self.station.sensors), "camera": 1 if self.station.cameras else 0}
        return [f"{family}:{n}" for family, n in sorted(families.items()) if n]

    # ---- life cycle
    def start(self) -> "SimulatedGateway":
        self._connect()
        now = self.clock.now()
        devices = [*self.station.sensors, *self.station.cameras]
        for sensor in self.station.sensors:
            if not self._simulates(sensor):
                log.warning("不模拟该类型 / sensor %s: kind '%s' is not simulated; it stays silent",
                            sensor.id, sensor.kind)
        for i, sensor in enumerate(self.station.sensors):  # staggered so they don't all fire at once
            if not self._simulates(sensor):
                continue
            self._every(now + sensor.interval_s * i / len(devices), sensor.interval_s,
                        lambda _t, s=sensor: self._read(s))
        for i, camera in enumerate(self.station.cameras, start=len(self.station.sensors)):
            self._every(now + camera.heartbeat_s * i / len(devices), camera.heartbeat_s,
                        lambda _t, c=camera: self._heartbeat(c))
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.gateway.id}", daemon=True)
        self._thread.start()
        log.info("模拟网关已启动 / simulated gateway %s started: %d sensors, %d cameras, speed %g",
                 self.gateway.id, len(self.station.sensors), len(self.station.cameras), self.base_speed)
        return self

    def stop(self) -> None:
        """Stop cleanly: a retained ``Status(offline, reason="shutdown")``, then DISCONNECT."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self.powered and self._link is not None:
            body = Status(v=1, ts=time.time(), state="offline", reason="shutdown")
            try:
                self._link.publish(self.topic(MessageClass.STATUS), encode(body), MessageClass.STATUS).wait_for_publish(5)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish the shutdown status: %s", exc)
            self._link.stop()
        self.powered = False
        log.info("模拟网关已停止 / simulated gateway %s stopped", self.gateway.id)

    def __enter__(self) -> "SimulatedGateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _connect(self) -> None:
        will = Status(v=1, ts=time.time(), state="offline", reason="will")
        self._born.clear()
        link = MqttLink(self.address, f"sim-{self.gateway.id}", will=(self.topic(MessageClass.STATUS), encode(will)),
                        on_connect=self._on_connect, on_message=self._on_message)
        try:
            link.start()
        except ConnectionError as exc:
            raise SimulationError(f"{exc} / 无法连接 MQTT 代理; is the broker running?") from None
        self._link = link
        self._born.wait(10)
        self.powered = True

    def _on_connect(self, link: MqttLink) -> None:
        """Birth on every (re)connection, and the command subscription again."""
        birth = Status(v=1, ts=time.time(), state="online", config_version=self.config_version, drivers=self.drivers)
        link.publish(self.topic(MessageClass.STATUS), encode(birth), MessageClass.STATUS)
        link.subscribe(self.topic(MessageClass.CMD, "+"))
        self._born.set()

    # ---- scheduling in simulated time
    def _at(self, sim_t: float, job: Callable[[float], None]) -> None:
        with self._wake:
            heapq.heappush(self._jobs, (sim_t, next(self._order), job))
            self._wake.notify_all()

    def _every(self, first: float, period_s: float, job: Callable[[float], None]) -> None:
        def tick(due: float) -> None:
            job(due)
            self._at(max(due + period_s, self.clock.now()), tick)
        self._at(first, tick)

    def _set_speed(self, speed: float) -> None:
        with self._wake:
            self.clock.set_speed(speed)
            self._wake.notify_all()

    def _next_job(self) -> tuple[float, Callable[[float], None]] | None:
        with self._wake:
            while not self._stopping:
                if self._jobs:
                    delay = self.clock.real_delay(self._jobs[0][0])
                    if delay <= 0:
                        due, _, job = heapq.heappop(self._jobs)
                        return due, job
                    self._wake.wait(delay)
                else:
                    self._wake.wait()
            return None

    def _run(self) -> None:
        while (item := self._next_job()) is not None:
            due, job = item
            try:
                job(due)
            except Exception:  # one bad job must not stop the station
                log.exception("simulated gateway %s: job failed", self.gateway.id)

    # ---- sending
    def _send(self, kind: MessageClass, device: str, make: Callable[[int], Sequenced]) -> None:
        """Give the message the next ``seq`` and publish it, or keep it while the power is off
        (heartbeats are not kept: a camera probe needs the gateway running)."""
        with self._send_lock:
            if not self.powered:
                if kind is not MessageClass.HEARTBEAT:
                    self._spool.append((self.topic(kind, device), kind, make(next(self._seq))))
                return
            self._link.publish(self.topic(kind, device), encode(make(next(self._seq))), kind)

    @staticmethod
    def _simulates(sensor) -> bool:
        """Contacts always; an analog kind when the building has a quantity for it."""
        return KINDS[sensor.kind].binary or sensor.kind in QUANTITY

    def _read(self, sensor) -> None:
        kind = KINDS[sensor.kind]
        if kind.binary:
            value = 1.0 if sensor.id in self._contacts else 0.0
        else:
            value = self.building.value(QUANTITY[sensor.kind](sensor), self.clock.now())
        self._send(MessageClass.READING, sensor.id,
                   lambda seq: Reading(v=1, ts=time.time(), seq=seq, value=value, unit=kind.unit))
        threshold = getattr(sensor, "threshold_c", None)
        if threshold is not None:
            self._check_heat(sensor.id, value, threshold)

    def _check_heat(self, sensor_id: str, value: float, threshold: float) -> None:
        alarmed = sensor_id in self._heat_alarms
        if not alarmed and value >= threshold:
            self._heat_alarms.add(sensor_id)
            self._event(sensor_id, "alarm", value, time.time())
        elif alarmed and value <= threshold - HEAT_HYSTERESIS_C:
            self._heat_alarms.discard(sensor_id)
            self._event(sensor_id, "normal", value, time.time())

    def _event(self, device: str, state: str, value: float | None, ts: float) -> None:
        log.info("事件 / event %s/%s: %s", self.gateway.id, device, state)
        self._send(MessageClass.EVENT, device, lambda seq: Event(v=1, ts=ts, seq=seq, state=state, value=value))

    def _heartbeat(self, camera) -> None:
        online = camera.id not in self._cameras_down
        latency = round(self._rng.uniform(5.0, 40.0), 1) if online else None
        self._send(MessageClass.HEARTBEAT, camera.id,
                   lambda seq: Heartbeat(v=1, ts=time.time(), seq=seq, online=online, latency_ms=latency))

    # ---- scenarios
    def play(self, name: str, speed: float | None = None) -> Play:
        """Start scenario ``name`` at ``speed`` (default: the scenario's own); returns at once."""
        scenario = check_scenario(name)
        speed = scenario.default_speed if speed is None else float(speed)
        if speed <= 0:
            raise SimulationError(f"speed must be > 0, not {speed}")
        roles = cast(scenario, self.station)
        anchor = most_recent(scenario.clock, self.site.tz) if scenario.clock else None
        play = Play(scenario, speed, roles, anchor)
        with self._wake:
            self.plays.append(play)
            self._active.append(play)
            self._set_speed(speed)
            t0 = self.clock.now()
            for step in scenario.steps:
                self._at(t0 + step.at_s, lambda t, s=step: self._perform(play, s, t))
            self._at(t0 + scenario.duration_s, lambda t: self._finish(play))
        log.info("场景开始 / scenario '%s' (%s) started on %s at speed %g",
                 scenario.name, scenario.title, self.gateway.id, speed)
        return play

    def _perform(self, play: Play, step: Step, t: float) -> None:
        for target in play.roles[step.role]:
            ACTIONS[step.action](self, target, play, step, t)

    def _finish(self, play: Play) -> None:
        with self._wake:
            self._active.remove(play)
            self._set_speed(self._active[-1].speed if self._active else self.base_speed)
        play.finished.set()
        log.info("场景结束 / scenario '%s' finished on %s", play.scenario.name, self.gateway.id)

    # actions: (gateway, target, play, step, simulated time)
    def _contact(self, sensor_id: str, active: bool, ts: float) -> None:
        if (sensor_id in self._contacts) == active:
            return
        (self._contacts.add if active else self._contacts.discard)(sensor_id)
        kind = KINDS[next(s.kind for s in self.station.sensors if s.id == sensor_id)]
        self._event(sensor_id, kind.active_state if active else kind.idle_state, 1.0 if active else 0.0, ts)

    def _power_off(self) -> None:
        log.warning("网关断电 / gateway %s lost power (no DISCONNECT; the broker publishes the will)",
                    self.gateway.id)
        with self._send_lock:
            self.powered = False
            self._link.drop()

    def _power_on(self) -> None:
        """Power back: reconnect (birth), send what was kept as historical, in order, then resume."""
        with self._send_lock:
            try:
                self._connect()
            except SimulationError as exc:
                log.warning("网关重连失败，稍后重试 / gateway %s cannot reconnect (%s); retrying", self.gateway.id, exc)
                self._at(self.clock.now() + RECONNECT_RETRY_S * self.clock.speed, lambda _t: self._power_on())
                return
            kept, self._spool = self._spool, []
            for topic_name, kind, body in kept:
                self._link.publish(topic_name, encode(body.model_copy(update={"historical": True})), kind)
        log.info("网关恢复供电 / gateway %s back: %d kept messages sent as historical", self.gateway.id, len(kept))

    # ---- commands
    def _on_message(self, topic_name: str, body: bytes, _msg) -> None:
        found = command_handler(topic_name, body, COMMANDS)
        if found is None:
            return
        cmd, handler = found
        try:
            handler(self, cmd)
        except SimulationError as exc:
            log.warning("命令未执行 / command '%s' not carried out: %s", cmd.name, exc)

    def _command_scenario(self, cmd: GatewayCommand) -> None:
        name, speed = cmd.args.get("name"), cmd.args.get("speed")
        if not isinstance(name, str):
            raise SimulationError("args.name must be a scenario name")
        if speed is not None and (isinstance(speed, bool) or not isinstance(speed, (int, float))):
            raise SimulationError(f"args.speed must be a number, not {speed!r}")
        self.play(name, speed)


ACTIONS: dict[str, Callable[[SimulatedGateway, str, Play, Step, float], None]] = {
    "activate": lambda gw, target, play, step, t: gw._contact(target, True, play.stamp(step.at_s)),
    "release": lambda gw, target, play, step, t: gw._contact(target, False, play.stamp(step.at_s)),
    "ramp": lambda gw, target, play, step, t: gw.building.ramp(target, t, **step.args),
    "approach": lambda gw, target, play, step, t: gw.building.approach(target, t, **step.args),
    "camera_down": lambda gw, target, play, step, t: gw._cameras_down.add(target),
    "camera_up": lambda gw, target, play, step, t: gw._cameras_down.discard(target),
    "power_off": lambda gw, target, play, step, t: gw._power_off(),
    "power_on": lambda gw, target, play, step, t: gw._power_on(),
}

COMMANDS: dict[str, Callable[[SimulatedGateway, GatewayCommand], None]] = {
    "scenario": SimulatedGateway._command_scenario,
}
