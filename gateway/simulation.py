"""The simulated station: the production gateway agent (gateway/agent.py) — spool, forwarder,
local alarm on MockFactory pins, health, birth and will — running on a simulated building.

What is simulated is only what a real Pi would have wired to it: the sensors without hardware read
the building through the ``simulated`` driver family (sensors/simulated.py); cameras are probed by
the real camera watch through a probe that asks the building whether the camera answers; the health
driver reads simulated files and commands (a Pi at 47.5 °C, powered well, clock in sync). Everything
from the samples on — states and events, heat hysteresis, seq, spool, replay, the MQTT session —
is the code that runs on the Pi.

**Time.** ``speed`` compresses the gateway's rhythm: every ``interval_s``, ``heartbeat_s`` and the
health interval of the gateway are divided by it, and the building's clock runs that much faster.
A scenario sets the building's clock to its own speed while it plays (``heating-failure`` runs six
simulated hours in three real minutes); readings keep the gateway's real wall-clock time.

**Commands.** Besides the agent's own (``silence``, ``ack``), ``cmd/scenario`` plays a scenario
(:mod:`.scenarios`); ``gateway-power-loss`` drops the agent's MQTT link without a DISCONNECT, as
a power cut of its uplink does (the broker publishes the will), and reconnects 30 simulated seconds
later: what was read meanwhile waits in the spool and goes out flagged historical.

Example::

    with SimulatedStation(cfg, cfg.gateways[0], BrokerAddress("127.0.0.1", 1883), speed=10) as station:
        station.play("fire").wait(5)
"""
from __future__ import annotations

import heapq
import itertools
import logging
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from stationwatch.core.config import Gateway, StationConfig
from stationwatch.core.mqtt import BrokerAddress
from stationwatch.core.wire import CommandRefused, GatewayCommand
from stationwatch.sensors.camera import PROBES
from stationwatch.sensors.health import HealthSeams
from stationwatch.sensors.kinds import KINDS

from .agent import Agent
from .building import Building, SimClock, most_recent
from .commands import COMMANDS
from .scenarios import Scenario, SimulationError, Station, Step, cast, check_scenario
from .service import run_agent

log = logging.getLogger(__name__)

BIRTH_WAIT_S = 10.0  # start() waits this long for the first connection (the agent goes on without one)


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
        """``ts`` for a change made by the step at ``at_s``: the scenario's clock, or real time."""
        return time.time() if self.clock_anchor is None else self.clock_anchor + at_s


def camera_address(camera_id: str) -> str:
    """The probe URL a simulated camera answers on (one per camera, whatever the config says)."""
    return f"tcp://{camera_id}.camera.simulated:554"


def for_simulation(cfg: StationConfig, gw: Gateway, speed: float) -> tuple[StationConfig, Gateway]:
    """``cfg`` as the simulated gateway ``gw`` runs it: its rhythm ``speed`` times faster (validated
    bounds do not apply: a heartbeat every 0.6 s is fine for a simulation) and each of its cameras
    probed at an address of its own (:func:`camera_address`)."""
    sensors = [s.model_copy(update={"interval_s": s.interval_s / speed}) if s.gateway == gw.id else s
               for s in cfg.sensors]
    cameras = [c.model_copy(update={"heartbeat_s": c.heartbeat_s / speed, "probe": camera_address(c.id)})
               if c.gateway == gw.id else c for c in cfg.cameras]
    fast = gw.model_copy(update={"agent": gw.agent.model_copy(
        update={"health_interval_s": gw.agent.health_interval_s / speed})})
    gateways = [fast if g.id == gw.id else g for g in cfg.gateways]
    return cfg.model_copy(update={"sensors": sensors, "cameras": cameras, "gateways": gateways}), fast


def default_spool(gateway_id: str) -> Path:
    """Where a simulated gateway keeps its spool unless told: one file per gateway id in the temp dir
    (a second simulation of the same gateway is refused by the spool's lock, as on a Pi)."""
    return Path(tempfile.gettempdir()) / "stationwatch-simulated" / f"{gateway_id}.spool.db"


def simulated_health(folder: Path) -> HealthSeams:
    """The health driver's files and commands for a simulated Pi: 47.5 °C, no under-voltage or
    throttling, 62 % of the disk free, 70 % of the memory available, clock synchronised."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thermal").write_text("47500\n")
    (folder / "meminfo").write_text("MemTotal: 446476 kB\nMemAvailable: 312533 kB\n")
    answers = {"vcgencmd": "throttled=0x0\n", "timedatectl": "NTPSynchronized=yes\n"}
    return HealthSeams(thermal_path=folder / "thermal", meminfo_path=folder / "meminfo", disk_path=folder,
                       run=lambda argv: answers[argv[0]], disk_usage=lambda _p: (32 * 2**30, 12 * 2**30, 20 * 2**30),
                       clock_state=lambda: 0)


class SimulatedStation:
    """Gateway ``gw`` of ``cfg`` with every sensor and camera it has, on a simulated building."""

    def __init__(self, cfg: StationConfig, gw: Gateway, address: BrokerAddress, *, speed: float = 1.0,
                 config_version: str | None = None, spool_path: str | Path | None = None):
        if speed <= 0:
            raise SimulationError(f"speed must be > 0, not {speed}")
        self.station = Station.of(cfg, gw)
        self.site, self.address = self.station.site, address
        self.base_speed, self.config_version = speed, config_version
        self.cfg, self.gateway = for_simulation(cfg, gw, speed)
        self.clock = SimClock(speed)
        self.building = Building(self.site.tz, seed=gw.id, clock=self.clock,
                                 active=frozenset(s.id for s in self.station.sensors if KINDS[s.kind].active_at_rest))
        self.spool_path = Path(spool_path) if spool_path is not None else default_spool(gw.id)
        self.agent: Agent | None = None
        self.plays: list[Play] = []
        self._active: list[Play] = []  # scenarios still playing; the last one sets the speed
        self._jobs: list[tuple[float, int, Callable[[float], None]]] = []  # scenario steps, by simulated time
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._threads: list[threading.Thread] = []

    # ---- life cycle
    def start(self) -> "SimulatedStation":
        from gpiozero.pins.mock import MockFactory  # the local alarm's buzzer, relay, LED and button

        self.pins = MockFactory()
        self._threads = [threading.Thread(target=self._run_agent, name=f"sim-{self.gateway.id}", daemon=True),
                         threading.Thread(target=self._run_steps, name=f"sim-steps-{self.gateway.id}", daemon=True)]
        for thread in self._threads:
            thread.start()
        while not self._ready.wait(0.05):
            if self._failed is not None:
                raise SimulationError(f"the simulated gateway did not start: {self._failed}") from self._failed
        if not self.agent.born.wait(BIRTH_WAIT_S):
            log.warning("模拟网关尚未连接 MQTT / simulated gateway %s: no broker at %s:%s yet; it keeps trying "
                        "and spools what it reads", self.gateway.id, self.address.host, self.address.port)
        log.info("模拟站点已启动 / simulated station %s started: %d sensors, %d cameras, speed %g, spool %s",
                 self.gateway.id, len(self.station.sensors), len(self.station.cameras), self.base_speed,
                 self.spool_path)
        return self

    def stop(self) -> None:
        """Stop cleanly: the agent sends what it can, says goodbye (``shutdown``) and disconnects."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)

    def __enter__(self) -> "SimulatedStation":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run_agent(self) -> None:
        try:
            run_agent(self.cfg, self.gateway, self.address, self._stop, config_version=self.config_version,
                      pin_factory=self.pins, spool_path=str(self.spool_path), ready=self._ready,
                      commands={**COMMANDS, "scenario": self._command_scenario}, attach=self._attach,
                      probe=self._probes(), health=simulated_health(self.spool_path.parent / "simulated-health"),
                      building=self.building)
        except BaseException as exc:  # noqa: BLE001 — reported by start() or logged
            self._failed = exc
            log.exception("simulated gateway %s stopped on an error", self.gateway.id)

    def _attach(self, agent: Agent) -> None:
        self.agent = agent

    def _probes(self) -> dict[str, Callable[[str, float], None]]:
        """The camera watch's probes: a camera answers (after a LAN's few ms) unless a scenario took it down."""
        by_url = {camera_address(c.id): c.id for c in self.station.cameras}
        rng = random.Random(self.gateway.id)

        def probe(url: str, timeout: float) -> None:
            if not self.building.camera_answers(by_url.get(url, "")):
                raise TimeoutError(f"simulated camera {by_url.get(url, url)} does not answer")
            time.sleep(min(timeout, rng.uniform(0.005, 0.04)))  # the camera's answer takes a LAN's few ms
        return {scheme: probe for scheme in PROBES}

    # ---- scenario steps in simulated time
    def _at(self, sim_t: float, job: Callable[[float], None]) -> None:
        with self._wake:
            heapq.heappush(self._jobs, (sim_t, next(self._order), job))
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

    def _run_steps(self) -> None:
        while (item := self._next_job()) is not None:
            due, job = item
            try:
                job(due)
            except Exception:  # one bad step must not stop the station
                log.exception("simulated station %s: step failed", self.gateway.id)

    def _set_speed(self, speed: float) -> None:
        with self._wake:
            self.clock.set_speed(speed)
            self._wake.notify_all()

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

    def _command_scenario(self, agent: Agent, cmd: GatewayCommand) -> None:
        """``cmd/scenario``: play one; a refusal (unknown name, devices missing) is the reply's detail."""
        name, speed = cmd.args.get("name"), cmd.args.get("speed")
        try:
            if not isinstance(name, str):
                raise SimulationError("args.name must be a scenario name")
            if speed is not None and (isinstance(speed, bool) or not isinstance(speed, (int, float))):
                raise SimulationError(f"args.speed must be a number, not {speed!r}")
            self.play(name, speed)
        except SimulationError as exc:
            raise CommandRefused(str(exc)) from None

    # ---- the uplink's power
    def power_off(self) -> None:
        log.warning("网关断电 / gateway %s lost power (no DISCONNECT; the broker publishes the will)",
                    self.gateway.id)
        self.agent.link.drop()

    def power_on(self) -> None:
        log.info("网关恢复供电 / gateway %s has power again: reconnecting; the spool sends what waited as historical",
                 self.gateway.id)
        self.agent.link.resume()


Action = Callable[[SimulatedStation, str, Play, Step, float], Any]
ACTIONS: dict[str, Action] = {  # (station, target, play, step, simulated time)
    "activate": lambda st, target, play, step, t: st.building.set_contact(target, True, play.stamp(step.at_s)),
    "release": lambda st, target, play, step, t: st.building.set_contact(target, False, play.stamp(step.at_s)),
    "ramp": lambda st, target, play, step, t: st.building.ramp(target, t, **step.args),
    "approach": lambda st, target, play, step, t: st.building.approach(target, t, **step.args),
    "camera_down": lambda st, target, play, step, t: st.building.camera_down(target),
    "camera_up": lambda st, target, play, step, t: st.building.camera_down(target, down=False),
    "power_off": lambda st, target, play, step, t: st.power_off(),
    "power_on": lambda st, target, play, step, t: st.power_on(),
}
