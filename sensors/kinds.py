"""The table of sensor kinds: what each kind measures, its unit, states and plausible range.

A kind is a row: adding a device family means adding a row here and (for its own settings) a
small model in :mod:`stationwatch.core.sensor_config`, never a branch elsewhere. This module is plain
Python: the gateway runtime uses it without loading pydantic. Binary kinds (smoke, heat alarm contact, door,
pump running) report a *state* as events and 0/1 as readings (1: the active state); analog kinds report a value
in their unit.

``heat`` is a heat detector with an analog output (°C, the alert rules apply GB 4716); ``heat_alarm`` is the
alarm relay contact of a heat detector (or the fire panel output that follows it): the detector has decided.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SensorKind:
    name: str
    label_zh: str
    label_en: str
    unit: str
    binary: bool
    # physically plausible range; a value outside is a FAULT, never an alarm
    low: float
    high: float
    active_state: str | None = None  # binary kinds: the state that means "something happened"
    idle_state: str | None = None
    active_at_rest: bool = False  # binary kinds whose healthy state is the active one (a pump runs all winter)

    @property
    def rest_state(self) -> str:
        """The state of a healthy building: a gateway starting up does not report it as an event."""
        if not self.binary:
            return "normal"
        return (self.active_state if self.active_at_rest else self.idle_state) or "normal"


KINDS: dict[str, SensorKind] = {k.name: k for k in (
    SensorKind("smoke", "感烟探测器", "smoke detector", "", True, 0, 1, "alarm", "normal"),
    SensorKind("heat", "感温探测器", "heat detector", "°C", False, -40, 125),
    SensorKind("temperature", "室温", "room temperature", "°C", False, -40, 85),
    SensorKind("outdoor_temperature", "室外温度", "outdoor temperature", "°C", False, -50, 60),
    SensorKind("supply_temperature", "供暖供水温度", "heating supply water temperature", "°C", False, -10, 130),
    SensorKind("door", "门磁", "door contact", "", True, 0, 1, "open", "closed"),
    SensorKind("boiler_fault", "锅炉故障信号", "boiler fault contact", "", True, 0, 1, "alarm", "normal"),
    SensorKind("heat_alarm", "感温探测器报警触点", "heat detector alarm contact", "", True, 0, 1, "alarm", "normal"),
    SensorKind("pump_running", "循环泵运行信号", "circulation pump running", "", True, 0, 1, "running", "stopped",
               active_at_rest=True),
    SensorKind("return_temperature", "供暖回水温度", "heating return water temperature", "°C", False, -10, 130),
    # PN16 (16 bar) is the usual pressure rating of heating pipework, valves and gauges: above is a broken sensor
    SensorKind("pressure", "供暖系统水压", "heating system water pressure", "bar", False, 0, 16),
    SensorKind("humidity", "相对湿度", "relative humidity", "%RH", False, 0, 100),
)}

