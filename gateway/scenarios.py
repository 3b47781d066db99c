"""Scenarios the simulated gateway can play, as data: named timelines of steps in simulated seconds.

A step names an *action* the gateway performs (``activate`` a contact, ``ramp`` a room's
temperature, ``power_off`` …) and a *role* ("the first smoke detector of the fire zone", "every
sleeping room"). Roles are resolved against the organisation config when a scenario starts
(:func:`cast`), so the same timeline plays on any station; no device id is written here.

Adding a scenario means adding a row to :data:`SCENARIOS` (and, if it needs one, a role to
:data:`ROLES`); the station's action table is :data:`stationwatch.gateway.simulation.ACTIONS`.

Example::

    >>> SCENARIOS["fire"].default_speed
    1.0
    >>> [s.action for s in SCENARIOS["night-exit"].steps]
    ['activate', 'release']
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from stationwatch.core.config import Camera, Gateway, Site, StationConfig


class SimulationError(Exception):
    """A simulation request that cannot be carried out; the message says what to do instead."""


@dataclass(frozen=True)
class Step:
    at_s: float  # simulated seconds after the scenario starts
    action: str  # what the gateway does (a key of the simulator's action table)
    role: str  # which devices or quantities (a key of ROLES)
    args: Mapping[str, float] = field(default_factory=dict)
    required: bool = True  # False: skipped when the config has nothing in this role


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str  # 中文 / English, shown in logs
    default_speed: float  # simulated seconds per real second unless the caller asks otherwise
    duration_s: float  # simulated seconds until the scenario counts as finished
    steps: tuple[Step, ...]
    # Local HH:MM that the gateway's clock reads when the scenario starts. Events produced by the
    # scenario's steps are stamped with that clock (the most recent such local time of the site,
    # plus the step's offset); readings keep real wall-clock time.
    clock: str | None = None


HOUR = 3600.0

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    # Two independent detectors in one zone confirm a fire (GB 50116 §4.1.6). Nothing resets:
    # a fire needs a person on site.
    Scenario("fire", "宿舍火灾 / fire in a dormitory", 1.0, 15.0, (
        Step(0, "activate", "fire_smoke_first"),
        Step(0, "ramp", "fire_room", {"rate_c_per_s": 0.5, "cap_c": 80.0}),  # ~1 °C per 2 s
        Step(8, "activate", "fire_smoke_second"),
    )),
    # Winter night, boiler down: supply water ~58 → ~25 °C in ~2 h, sleeping rooms ~20 → ~14 °C
    # in ~6 h (exponential approach; the gateway keeps reading at the compressed rhythm).
    Scenario("heating-failure", "供暖故障 / heating failure", 120.0, 6 * HOUR, (
        Step(0, "activate", "boiler_fault", required=False),
        Step(0, "approach", "outdoor", {"to_c": -8.0, "tau_s": 0.5 * HOUR}, required=False),
        Step(0, "approach", "supply", {"to_c": 24.0, "tau_s": 0.5 * HOUR}, required=False),
        Step(0, "approach", "return", {"to_c": 22.0, "tau_s": 0.5 * HOUR}, required=False),
        Step(0, "approach", "sleeping_rooms", {"to_c": 13.8, "tau_s": 1.5 * HOUR}),
    )),
    # Winter, the circulation pump stops (tripped motor): the boiler stays hot, but no heat reaches
    # the rooms; the return water and the sleeping rooms cool down.
    Scenario("pump-failure", "循环泵停运 / circulation pump stopped", 60.0, 2 * HOUR, (
        Step(0, "release", "pumps"),
        Step(0, "approach", "return", {"to_c": 20.0, "tau_s": 0.5 * HOUR}, required=False),
        Step(0, "approach", "sleeping_rooms", {"to_c": 15.0, "tau_s": 2 * HOUR}),
    )),
    # A resident leaves through an exit at night (走失 risk): the door events read 02:00 and 02:01.
    Scenario("night-exit", "夜间出口门开启 / exit door opened at night", 1.0, 60.0, (
        Step(0, "activate", "exit_door"),
        Step(60, "release", "exit_door"),
    ), clock="02:00"),
    # The observation-room camera stops answering for ten minutes.
    Scenario("camera-offline", "摄像机离线 / camera offline", 20.0, 600.0, (
        Step(0, "camera_down", "watched_camera"),
        Step(600, "camera_up", "watched_camera"),
    )),
    # Power cut: no DISCONNECT (the broker publishes the will); readings are kept in memory and
    # sent as historical after the new birth.
    Scenario("gateway-power-loss", "网关断电 / gateway power loss", 1.0, 30.0, (
        Step(0, "power_off", "gateway"),
        Step(30, "power_on", "gateway"),
    )),
)}


def check_scenario(name: str) -> Scenario:
    """The scenario called ``name``, or :class:`SimulationError` listing the valid names."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise SimulationError(f"unknown scenario '{name}' / 未知场景; valid: {', '.join(SCENARIOS)}") from None


# ---- roles: who plays which part, read from the config --------------------------------------

@dataclass(frozen=True)
class Station:
    """What one gateway sees of the config: its site, sensors and cameras (in config order)."""
    site: Site
    gateway: Gateway
    sensors: tuple
    cameras: tuple[Camera, ...]

    @classmethod
    def of(cls, cfg: StationConfig, gw: Gateway) -> "Station":
        return cls(cfg.site(gw.site), gw,
                   tuple(s for s in cfg.sensors if s.gateway == gw.id),
                   tuple(c for c in cfg.cameras if c.gateway == gw.id))

    def sensors_of(self, kind: str) -> list:
        return [s for s in self.sensors if s.kind == kind]


DORMITORY_KINDS = ("dormitory", "minors_dormitory")


def fire_detectors(st: Station) -> tuple[str, ...]:
    """The two smoke detectors a fire is played on, chosen by fire zone.

    Candidates are the dormitory fire zones holding at least two of this gateway's smoke
    detectors, in config order. A zone where one room holds two detectors is preferred (the
    fire's own room then sees both); in the city example that is ``dorm-f1`` in ``z-dorm-west``.
    """
    smoke = st.sensors_of("smoke")
    rooms = [r for r in st.site.rooms if r.kind in DORMITORY_KINDS]
    in_room = {r.id: [s.id for s in smoke if s.room == r.id] for r in rooms}
    in_zone = {r.fire_zone: [s.id for s in smoke if st.site.room(s.room).fire_zone == r.fire_zone] for r in rooms}
    one_room = [ids for ids in in_room.values() if len(ids) >= 2]
    one_zone = [ids for ids in in_zone.values() if len(ids) >= 2]
    best = (one_room or one_zone or [[]])[0]
    return tuple(best[:2])


def _first_fire(st: Station) -> tuple[str, ...]:
    return fire_detectors(st)[:1]


def _second_fire(st: Station) -> tuple[str, ...]:
    return fire_detectors(st)[1:2]


def _fire_room(st: Station) -> tuple[str, ...]:
    first = {s.id: s for s in st.sensors}.get(next(iter(fire_detectors(st)), ""))
    return (f"room:{first.room}",) if first else ()


def _watched_camera(st: Station) -> tuple[str, ...]:
    """The medical observation room's camera (a major hazard when blind), else the first camera."""
    observed = [c for c in st.cameras if st.site.room(c.room).kind == "medical_observation"]
    return tuple(c.id for c in (observed or list(st.cameras))[:1])


# role → the device ids (or climate quantities, "room:{id}", "outdoor", "supply:{id}", "return:{id}") it names
ROLES: dict[str, Callable[[Station], tuple[str, ...]]] = {
    "fire_smoke_first": _first_fire,
    "fire_smoke_second": _second_fire,
    "fire_room": _fire_room,
    "sleeping_rooms": lambda st: tuple(f"room:{r.id}" for r in st.site.rooms if r.people_sleep),
    "outdoor": lambda st: ("outdoor",) if st.sensors_of("outdoor_temperature") else (),
    "supply": lambda st: tuple(f"supply:{s.id}" for s in st.sensors_of("supply_temperature")),
    "return": lambda st: tuple(f"return:{s.id}" for s in st.sensors_of("return_temperature")),
    "boiler_fault": lambda st: tuple(s.id for s in st.sensors_of("boiler_fault")),
    "pumps": lambda st: tuple(s.id for s in st.sensors_of("pump_running")),
    "exit_door": lambda st: tuple(s.id for s in st.sensors_of("door") if s.exit)[:1],
    "watched_camera": _watched_camera,
    "gateway": lambda st: (st.gateway.id,),
}

# what to tell the user when a required role is empty
MISSING: dict[str, str] = {
    "fire_smoke_first": "a dormitory zone with two smoke detectors / 宿舍防火分区内两只感烟探测器",
    "fire_smoke_second": "a dormitory zone with two smoke detectors / 宿舍防火分区内两只感烟探测器",
    "fire_room": "a dormitory zone with two smoke detectors / 宿舍防火分区内两只感烟探测器",
    "sleeping_rooms": "a room where people sleep / 住宿房间",
    "exit_door": "a door sensor with `exit: true` / 出口门磁",
    "pumps": "a `pump_running` sensor / 循环泵运行信号",
    "watched_camera": "a camera / 摄像机",
}


def cast(scenario: Scenario, st: Station) -> dict[str, tuple[str, ...]]:
    """Resolve every role of ``scenario`` on this gateway, or raise :class:`SimulationError`."""
    roles = {step.role: ROLES[step.role](st) for step in scenario.steps}
    for step in scenario.steps:
        if step.required and not roles[step.role]:
            need = MISSING.get(step.role, step.role)
            raise SimulationError(f"scenario '{scenario.name}' needs {need} on gateway '{st.gateway.id}'")
    return roles
