"""The table of sensor kinds and the config schema of each.

A kind is a row: adding a device family means adding a row and (for its own settings) a small
pydantic model, never a branch elsewhere. Binary kinds (smoke, heat contact, door) report a
*state* as events and 0/1 as readings; analog kinds report a value in their unit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from stationwatch.sensors.wiring import SensorSource


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


KINDS: dict[str, SensorKind] = {k.name: k for k in (
    SensorKind("smoke", "感烟探测器", "smoke detector", "", True, 0, 1, "alarm", "normal"),
    SensorKind("heat", "感温探测器", "heat detector", "°C", False, -40, 125),
    SensorKind("temperature", "室温", "room temperature", "°C", False, -40, 85),
    SensorKind("outdoor_temperature", "室外温度", "outdoor temperature", "°C", False, -50, 60),
    SensorKind("supply_temperature", "供暖供水温度", "heating supply water temperature", "°C", False, -10, 130),
    SensorKind("door", "门磁", "door contact", "", True, 0, 1, "open", "closed"),
    SensorKind("boiler_fault", "锅炉故障信号", "boiler fault contact", "", True, 0, 1, "alarm", "normal"),
)}


class _SensorBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    name: str
    gateway: str
    room: str
    interval_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    source: SensorSource | None = None  # the hardware it is read from (sensors/wiring.py); None: simulated


class SmokeSensor(_SensorBase):
    kind: Literal["smoke"]


class HeatSensor(_SensorBase):
    """A heat detector with an analog output; alarms at the static threshold (GB 4716: 54 °C)."""
    kind: Literal["heat"]
    threshold_c: Annotated[float, Field(ge=40, le=100)] = 54.0


class TemperatureSensor(_SensorBase):
    kind: Literal["temperature"]


class OutdoorTemperatureSensor(_SensorBase):
    kind: Literal["outdoor_temperature"]


class SupplyTemperatureSensor(_SensorBase):
    kind: Literal["supply_temperature"]


class DoorSensor(_SensorBase):
    kind: Literal["door"]
    exit: bool = False  # an exit to the outside: opening it at night may mean a resident leaving (走失)


class BoilerFaultSensor(_SensorBase):
    kind: Literal["boiler_fault"]


SensorConfig = Annotated[
    Union[SmokeSensor, HeatSensor, TemperatureSensor, OutdoorTemperatureSensor,
          SupplyTemperatureSensor, DoorSensor, BoilerFaultSensor],
    Field(discriminator="kind"),
]
