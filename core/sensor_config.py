"""The ``sensors:`` section of the station config: one pydantic model per sensor kind.

Validated where the config is loaded (the central services, ``check-config``, and the gateway
command before it starts its runtime); the kinds themselves are the plain table in
:mod:`stationwatch.sensors.kinds`.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from .fields import Ident, Model
from .wiring import SensorSource


class _SensorBase(Model):
    id: Ident
    name: str
    gateway: str
    room: str
    interval_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    source: SensorSource | None = None  # the hardware it is read from (core/wiring.py); None: simulated


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


class HeatAlarmSensor(_SensorBase):
    """A heat detector's alarm relay contact: an alarm counts for the fire rule like a smoke detector's."""
    kind: Literal["heat_alarm"]


class PumpRunningSensor(_SensorBase):
    """The heating circulation pump's running contact or status bit; stopped in the heating season → alert."""
    kind: Literal["pump_running"]


class ReturnTemperatureSensor(_SensorBase):
    kind: Literal["return_temperature"]


class PressureSensor(_SensorBase):
    """Heating system water pressure. ``low_bar``: alert below it (none by default — the right figure is the
    system's own fill pressure, which depends on the building's height; see docs/config.md)."""
    kind: Literal["pressure"]
    low_bar: Annotated[float, Field(gt=0, le=16)] | None = None


class HumiditySensor(_SensorBase):
    kind: Literal["humidity"]


SensorConfig = Annotated[
    Union[SmokeSensor, HeatSensor, TemperatureSensor, OutdoorTemperatureSensor,
          SupplyTemperatureSensor, DoorSensor, BoilerFaultSensor, HeatAlarmSensor, PumpRunningSensor,
          ReturnTemperatureSensor, PressureSensor, HumiditySensor],
    Field(discriminator="kind"),
]
