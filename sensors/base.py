"""What every driver gives the gateway: typed :class:`Sample` values with a quality, through a
two-method :class:`Driver` surface; and the one table of driver families, :data:`DRIVERS`.

A broken sensor is a FAULT (``value`` None, ``state`` "fault", ``detail`` says why) — never a fire,
never 85 °C. Hardware is reached only through injected seams (:class:`Seams`), so tests drive the
same code with gpiozero's MockFactory, pty pairs, temp dirs and local sockets::

    >>> from stationwatch.core.config import load_config  # or a gateway's plan (gateway/plan.py)
    >>> cfg = load_config("docs/examples/city-station.yaml")
    >>> alive = lambda url, timeout: None  # stand-in camera probe
    >>> drivers = build_drivers(cfg, cfg.gateways[0], probe={"rtsp": alive, "http": alive, "tcp": alive})
    >>> samples = [s for d in drivers for s in d.read(now=1795614042.0)]
"""
from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from stationwatch.sensors.kinds import SensorKind
    from stationwatch.sensors.specs import DeviceTable, GatewaySpec, SensorSpec

Quality = Literal["ok", "fault", "stale"]


@dataclass(frozen=True)
class Sample:
    """One reading of one sensor at one time."""
    sensor: str
    value: float | None
    quality: Quality
    ts: float
    state: str | None = None  # binary kinds: "alarm"/"normal", "open"/"closed"; any kind: "fault"
    detail: str | None = None  # why a fault (or why stale)

    @classmethod
    def fault(cls, sensor: str, ts: float, detail: str) -> "Sample":
        return cls(sensor, None, "fault", ts, state="fault", detail=detail)

    @classmethod
    def binary(cls, sensor: str, kind: "SensorKind", active: bool, ts: float) -> "Sample":
        """A binary kind reads 1 when active, 0 when idle, with the kind's state names."""
        return cls(sensor, 1.0 if active else 0.0, "ok", ts,
                   state=kind.active_state if active else kind.idle_state)

    @classmethod
    def measured(cls, sensor: str, kind: "SensorKind", value: float, ts: float) -> "Sample":
        """An analog value, checked against the kind's plausible range (outside is a FAULT)."""
        if not kind.low <= value <= kind.high:
            return cls.fault(sensor, ts, f"implausible {value:g}{kind.unit} "
                                         f"(range {kind.low:g}..{kind.high:g}{kind.unit}): sensor or wiring fault")
        return cls(sensor, value, "ok", ts)


class Driver(Protocol):
    """One poll gives the samples due now (a Modbus bus may give several sensors)."""

    def read(self, now: float) -> list[Sample]: ...

    def close(self) -> None: ...


@runtime_checkable
class EdgeDriver(Driver, Protocol):
    """A contact driver that also reports each change as it happens."""

    def on_change(self, callback: Callable[[Sample], None]) -> None: ...


Probe = Callable[[str, float], None]  # (url, timeout_s); raises OSError (or ProbeFailed) when the camera is down


@dataclass(frozen=True)
class Seams:
    """The handles through which drivers reach hardware; tests pass fakes of the same shape."""
    pin_factory: Any = None  # gpiozero pin factory; None: gpiozero's default (lgpio on a Pi)
    onewire_base: Path = Path("/sys/bus/w1/devices")
    serial_for_url: Callable[..., Any] | None = None  # None: serial.serial_for_url
    probes: Mapping[str, Probe] = field(default_factory=dict)  # URL scheme → probe, over the defaults
    register_maps: Mapping[str, Any] | None = None  # name → RegisterMap; None: the shipped files (regmap.py)
    health: Any = None  # health.HealthSeams; None: the Pi's own files and commands
    building: Any = None  # simulated.SimulatedHardware: only the simulated station sets it (simulated.py)


class FaultyDriver:
    """Stands in for a driver that could not be set up: its sensors read FAULT with the reason,
    so one bad pin or missing bus never stops the gateway's other sensors."""

    family = "faulty"

    def __init__(self, sensors: Sequence[str], detail: str):
        self.sensors = list(sensors)
        self.detail = detail

    def read(self, now: float) -> list[Sample]:
        return [Sample.fault(s, now, self.detail) for s in self.sensors]

    def close(self) -> None:
        pass


def set_up(sensors: Sequence[str], make: Callable[[], Driver]) -> Driver:
    """``make()`` the driver, or a :class:`FaultyDriver` saying why it could not be made."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 — any setup failure is the sensors' FAULT, named
        return FaultyDriver(sensors, f"driver setup failed: {type(exc).__name__}: {exc}")


def sources_of(cfg: DeviceTable, gateway: GatewaySpec, driver: str) -> list[tuple[SensorSpec, Any]]:
    """(sensor, source) of the gateway's sensors read by one driver family."""
    return [(s, s.source) for s in cfg.sensors
            if s.gateway == gateway.id and s.source is not None and s.source.driver == driver]


# The driver families: source type name → "module:Class" under stationwatch.sensors. Each class
# has ``build(cfg, gateway, seams) -> list[Driver]``. A new device family is one row + one module.
# (Named, not imported, here: the modules import Sample from this one.)
DRIVERS: dict[str, str] = {
    "gpio": "contact:ContactInput",
    "mcp3008": "analog:AnalogInput",
    "onewire": "onewire:OneWireThermometer",
    "modbus": "modbus:ModbusBus",
    "camera": "camera:CameraWatch",
    "health": "health:GatewayHealth",
    "simulated": "simulated:SimulatedInputs",  # sensors without hardware, when a simulated building is given
}


def inventory(drivers: Sequence[Any]) -> list[str]:
    """Driver families and how many of each, for the birth message: ``["camera:1", "gpio:10"]``
    (a driver without a ``family`` counts under its class name)."""
    counts = Counter(getattr(d, "family", type(d).__name__.lower()) for d in drivers)
    return [f"{family}:{n}" for family, n in sorted(counts.items())]


def driver_class(name: str) -> type:
    module, cls = DRIVERS[name].split(":")
    return getattr(importlib.import_module(f"stationwatch.sensors.{module}"), cls)


def build_drivers(cfg: DeviceTable, gateway: GatewaySpec, *, pin_factory: Any = None, onewire_base: str | Path | None = None,
                  serial_for_url: Callable[..., Any] | None = None,
                  probe: Mapping[str, Probe] | None = None,
                  register_maps: Mapping[str, Any] | None = None, health: Any = None,
                  building: Any = None) -> list[Driver]:
    """Every driver of one gateway: its sensors' sources, its cameras, its own health (and, given a
    simulated ``building``, the sensors that have no hardware)."""
    seams = Seams(pin_factory=pin_factory,
                  onewire_base=Path(onewire_base) if onewire_base is not None else Seams.onewire_base,
                  serial_for_url=serial_for_url, probes=dict(probe or {}), register_maps=register_maps,
                  health=health, building=building)
    drivers: list[Driver] = []
    for name in DRIVERS:
        drivers += driver_class(name).build(cfg, gateway, seams)
    return drivers
