"""What the drivers read of the config, as protocols.

A driver is handed either the validated config (the pydantic models of :mod:`stationwatch.core`,
in the central services and in tests) or the gateway's plan (plain attribute views of the same
JSON, :mod:`stationwatch.gateway.plan`, on the Pi). Both have the attributes below, so the drivers
are annotated against these protocols and neither side imports the other; ``tests/test_gateway_plan.py``
checks that every driver family reads the same from both.

Fields are documented where they are validated: :mod:`stationwatch.core.wiring` (sources and
buses), :mod:`stationwatch.core.sensor_config` (sensors), :mod:`stationwatch.core.config`
(cameras and gateways).
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence


class GpioWiring(Protocol):
    """``source: {driver: gpio, …}``: a dry contact on a GPIO input (contact.py)."""
    driver: str
    pin: int
    wiring: str  # no | nc
    pull_up: bool
    debounce_ms: int
    supervision_pin: int | None


class CalibrationPointSpec(Protocol):
    raw: float
    value: float


class AdcWiring(Protocol):
    """``source: {driver: mcp3008, …}``: an analog input on an MCP3008 (analog.py)."""
    driver: str
    channel: int
    spi_port: int
    spi_device: int
    calibration: Sequence[CalibrationPointSpec]
    alarm_above: float | None
    hysteresis: float
    warm_up_s: float
    rail_margin: float


class OneWireWiring(Protocol):
    """``source: {driver: onewire, address}`` (onewire.py)."""
    driver: str
    address: str


class ModbusWiring(Protocol):
    """``source: {driver: modbus, …}``: one point of a Modbus RTU device (modbus.py)."""
    driver: str
    bus: str
    unit: int
    register_map: str
    point: str


class BusSpec(Protocol):
    """An RS-485 line of a gateway (``gateways[].buses[]``)."""
    id: str
    port: str
    baudrate: int
    parity: str
    stopbits: int
    timeout_s: float
    turnaround_ms: float


class SensorSpec(Protocol):
    """One entry of ``sensors:``; ``source`` is the wiring of its driver family, None if it has none."""
    id: str
    kind: str
    gateway: str
    room: str
    interval_s: float
    source: Any


class CameraConfigSpec(Protocol):
    """One entry of ``cameras:``."""
    id: str
    gateway: str
    room: str
    probe: str
    heartbeat_s: float
    misses: int


class GatewaySpec(Protocol):
    """One entry of ``gateways:`` (its ``agent`` settings are read by the gateway, see gateway/plan.py)."""
    id: str
    site: str
    buses: Sequence[BusSpec]
    agent: Any


class DeviceTable(Protocol):
    """What a driver family builds from: the devices of the station (the config or a gateway's plan)."""
    sensors: Sequence[SensorSpec]
    cameras: Sequence[CameraConfigSpec]
