"""The alert rules, as a table.

Each :class:`Rule` row names the messages it watches — ``(message class, device kind)`` pairs —
a ``check`` function that turns one :class:`~.situation.Observation` into verdicts
(:class:`~.store.Raised`: the condition holds, the store dedups repeats; :class:`~.verdicts.Clear`:
it no longer holds) and, for conditions of time (silence, a door left open), a ``tick`` function.
What the rules remember lives in the :class:`~.situation.Situation`'s persisted memory.

Which alert kind a rule raises, and how that kind ends, is in :data:`~.kinds.ALERT_TYPES`.
Adding a rule = one function in a small module + one row here.

| module | rules |
|---|---|
| :mod:`.fire` | smoke and heat detectors (static, rate of rise, alarm contacts), two-detector confirmation per zone |
| :mod:`.doors` | exits opened at night, doors held open |
| :mod:`.liveness` | sensor faults and silence, camera heartbeats, gateway wills |
| :mod:`.gateway_health` | a gateway's under-voltage, throttling, full disk, unsynchronised clock; its local alarm silenced |
| :mod:`.climate` | cold and hot rooms by heating season, supply water, boiler fault, pump stopped, low water pressure |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from stationwatch.core.contract import MessageClass
from stationwatch.sensors.kinds import KINDS

from . import climate, doors, fire, gateway_health, liveness
from .situation import Observation, Situation
from .verdicts import Clear, Verdict

__all__ = ["RULES", "Rule", "Clear", "Verdict"]


@dataclass(frozen=True)
class Rule:
    name: str
    watches: frozenset[tuple[MessageClass, str]]  # (message class, device kind)
    check: Callable[[Situation, Observation], Iterable[Verdict]]
    tick: Callable[[Situation, float], Iterable[Verdict]] | None = None


def _watch(classes: Iterable[MessageClass], kinds: Iterable[str]) -> frozenset[tuple[MessageClass, str]]:
    return frozenset((c, k) for c in classes for k in kinds)


BOTH = (MessageClass.EVENT, MessageClass.READING)
RULES: tuple[Rule, ...] = (
    Rule("fire", _watch(BOTH, tuple(fire.DETECTOR_SIGNALS)), fire.fire),  # smoke, heat, heat_alarm
    Rule("night_exit", _watch(BOTH, ("door",)), doors.night_exit),
    Rule("door_held_open", _watch(BOTH, ("door",)), doors.door_state, tick=doors.doors_held_open),
    # a lost gateway before its devices' silence: in one tick the cause is open before its symptoms
    Rule("gateway_offline", _watch((MessageClass.STATUS,), ("gateway",)), liveness.gateway_offline,
         tick=liveness.gateways_lost),
    Rule("sensor_fault", _watch(BOTH, tuple(KINDS)), liveness.sensor_fault, tick=liveness.sensors_stale),
    Rule("camera_offline", _watch((MessageClass.HEARTBEAT,), ("camera",)), liveness.camera_offline,
         tick=liveness.cameras_silent),
    Rule("room_temperature", _watch((MessageClass.READING,), ("temperature",)), climate.room_temperature),  # cold/hot
    Rule("outdoor", _watch((MessageClass.READING,), ("outdoor_temperature",)), climate.outdoor_temperature),
    Rule("supply_cold", _watch((MessageClass.READING,), ("supply_temperature",)), climate.supply_water),
    Rule("boiler_fault", _watch(BOTH, ("boiler_fault",)), climate.boiler_fault),
    Rule("pump_stopped", _watch(BOTH, ("pump_running",)), climate.pump_stopped),
    Rule("pressure_low", _watch((MessageClass.READING,), ("pressure",)), climate.pressure_low),
    Rule("gateway_health", _watch((MessageClass.HEALTH,), (gateway_health.KIND,)), gateway_health.gateway_health),
)
