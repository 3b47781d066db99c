"""The simulated building as a driver family: the sensors of a gateway that have no hardware
(``source`` omitted) read the quantities and contacts of a simulated building, so ``make demo``
and ``stationwatch simulate`` run the production agent — spool, local alarm, birth and will —
on a station that exists only in memory.

The building is the far end of the seam (``Seams.building``), as MockFactory pins are for GPIO:
:class:`stationwatch.gateway.building.Building` implements :class:`SimulatedHardware`. Without a
building (every real gateway) this family builds no driver, so a real Pi never invents readings.

| sensor kind | reads |
|---|---|
| binary kinds (smoke, door, heat alarm, boiler fault, pump running) | the contact, with an edge at each change |
| ``temperature``, ``heat`` | ``room:{room}`` |
| ``outdoor_temperature`` | ``outdoor`` |
| ``supply_temperature`` / ``return_temperature`` / ``pressure`` | ``supply:{id}`` / ``return:{id}`` / ``pressure:{id}`` |
| ``humidity`` | ``humidity:{room}`` |

Example::

    >>> from stationwatch.gateway.building import Building, SimClock
    >>> from zoneinfo import ZoneInfo
    >>> building = Building(ZoneInfo("Asia/Shanghai"), seed="gw-1", clock=SimClock())
    >>> door = SimulatedInputs([("door-exit", KINDS["door"], "door-exit")], building)
    >>> building.set_contact("door-exit", True, ts=1795614042.0)
    >>> door.read(now=1795614043.0)[0].state
    'open'
"""
from __future__ import annotations

import threading
from typing import Callable, Protocol, Sequence

from stationwatch.sensors.base import Driver, Sample, Seams
from stationwatch.sensors.kinds import KINDS, SensorKind
from stationwatch.sensors.specs import DeviceTable, GatewaySpec, SensorSpec

# sensor kind → the building quantity it reads (binary kinds read a contact instead)
QUANTITY: dict[str, Callable[[SensorSpec], str]] = {
    "temperature": lambda s: f"room:{s.room}",
    "heat": lambda s: f"room:{s.room}",  # a heat detector reads its room's temperature
    "outdoor_temperature": lambda s: "outdoor",
    "supply_temperature": lambda s: f"supply:{s.id}",
    "return_temperature": lambda s: f"return:{s.id}",
    "pressure": lambda s: f"pressure:{s.id}",
    "humidity": lambda s: f"humidity:{s.room}",
}

ContactCallback = Callable[[str, bool, float], None]  # sensor id, active, ts of the change


class SimulatedHardware(Protocol):
    """What the driver reads of the simulated building (gateway/building.py)."""

    def read(self, quantity: str) -> float: ...

    def contact(self, sensor: str) -> bool: ...

    def on_contact(self, callback: ContactCallback) -> None: ...


class SimulatedInputs:
    """Every hardware-less sensor of one gateway, read from the simulated building.

    ``sensors`` are ``(sensor id, kind, quantity)``; the quantity is ignored for binary kinds."""

    family = "simulated"

    def __init__(self, sensors: Sequence[tuple[str, SensorKind, str]], building: SimulatedHardware):
        self.sensors = {sensor: (kind, quantity) for sensor, kind, quantity in sensors}
        self.building = building
        self._callbacks: list[Callable[[Sample], None]] = []
        self._lock = threading.Lock()
        building.on_contact(self._changed)

    @classmethod
    def build(cls, cfg: DeviceTable, gateway: GatewaySpec, seams: Seams) -> list[Driver]:
        if seams.building is None:
            return []
        sensors = [(s.id, KINDS[s.kind], QUANTITY[s.kind](s) if s.kind in QUANTITY else "")
                   for s in cfg.sensors if s.gateway == gateway.id and s.source is None
                   and (KINDS[s.kind].binary or s.kind in QUANTITY)]
        return [cls(sensors, seams.building)] if sensors else []

    def read(self, now: float) -> list[Sample]:
        out = []
        for sensor, (kind, quantity) in self.sensors.items():
            if kind.binary:
                out.append(Sample.binary(sensor, kind, self.building.contact(sensor), now))
            else:
                out.append(Sample.measured(sensor, kind, self.building.read(quantity), now))
        return out

    def on_change(self, callback: Callable[[Sample], None]) -> None:
        """Call ``callback(sample)`` at each change of a contact, stamped with the change's time."""
        self._callbacks.append(callback)

    def _changed(self, sensor: str, active: bool, ts: float) -> None:
        found = self.sensors.get(sensor)
        if found is None or not found[0].binary:
            return
        sample = Sample.binary(sensor, found[0], active, ts)
        with self._lock:  # one change at a time, in the order the building made them
            for callback in list(self._callbacks):
                callback(sample)

    def close(self) -> None:
        pass
