"""The state a sample puts a sensor in, one rule per kind: binary kinds by their active/idle
state, heat detectors by threshold with hysteresis (GB 4716), the rest report only a fault and
its end. A change of state is what the agent publishes as an event."""
from __future__ import annotations

import math
from typing import Any, Callable

from stationwatch.sensors.kinds import KINDS

HEAT_HYSTERESIS_C = 2.0  # a heat detector clears this far below its threshold

StateRule = Callable[[Any, float, "str | None"], "str | None"]


def _binary_state(sensor, value: float, last: str | None) -> str | None:
    spec = KINDS[sensor.kind]
    return spec.active_state if value >= 0.5 else spec.idle_state


def _heat_state(sensor, value: float, last: str | None) -> str | None:
    if value >= sensor.threshold_c:
        return "alarm"
    if value <= sensor.threshold_c - HEAT_HYSTERESIS_C:
        return "normal"
    return last if last in ("alarm", "normal") else "normal"


def _analog_state(sensor, value: float, last: str | None) -> str | None:
    return "normal" if last == "fault" else last  # only a fault (and its end) is an event


STATE_RULES: dict[str, StateRule] = {"heat": _heat_state}


def state_rule(kind: str) -> StateRule:
    return STATE_RULES.get(kind) or (_binary_state if KINDS[kind].binary else _analog_state)


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


