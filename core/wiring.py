"""How sensors are wired to a gateway: buses (RS-485/Modbus) and, per sensor, its *source*.

A sensor's ``source`` says which driver reads it and where (``driver:`` is the tag)::

    sensors:
      - {id: smk-dorm-1, kind: smoke, …, source: {driver: gpio, pin: 17, wiring: nc, supervision_pin: 27}}
      - {id: gas-kitchen, kind: smoke, …, source: {driver: mcp3008, channel: 0, alarm_above: 300,
                                                    calibration: [{raw: 0.10, value: 0}, {raw: 0.60, value: 1000}]}}
      - {id: t-dorm-1, kind: temperature, …, source: {driver: onewire, address: 28-00000abcdef0}}
      - {id: supply-main, kind: supply_temperature, …,
         source: {driver: modbus, bus: rs485-1, unit: 3, register_map: heating-controller, point: supply_temperature}}

No ``source`` means no hardware: the sensor is simulated. :func:`wiring_problems` adds the checks
that need the whole config (each pin and bus address used once per gateway, a sensor's bus and
register map exist, the bus can carry the configured polling, each camera's probe URL is one the
gateway can probe). Drivers and their fault rules: docs/drivers.md.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Iterator, Literal, Union
from urllib.parse import urlsplit

from pydantic import Discriminator, Field, Tag, model_validator

from stationwatch.sensors.camera import SCHEMES
from stationwatch.sensors.kinds import KINDS
from stationwatch.sensors.regmap import RegisterMapError, poll_s, polls_per_s, register_map

from .fields import Ident, Model, Pin


class Bus(Model):
    """An RS-485 serial line with Modbus RTU devices on it."""
    id: Ident
    port: str  # /dev/ttyUSB0, /dev/serial/by-id/…, or any pyserial URL
    baudrate: int = 9600
    parity: Annotated[str, Field(pattern="^[NEO]$")] = "N"
    stopbits: Annotated[int, Field(ge=1, le=2)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=5)] = 0.3
    turnaround_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0  # the slowest device's answer delay

    # line time: sensors/regmap.py (plain, shared with the gateway runtime)
    def poll_s(self, registers: int = 1) -> float:
        return poll_s(self, registers)

    @property
    def polls_per_s(self) -> float:
        return polls_per_s(self)


class GpioSource(Model):
    """A dry contact on a GPIO input: smoke/heat detector relay, door reed, boiler fault, pump running
    (contact.py)."""
    driver: Literal["gpio"]
    pin: Pin
    wiring: Literal["no", "nc"] = "no"  # normally open: closed = active; normally closed: open = active
    pull_up: bool = True  # contact to GND with the Pi's pull-up; False: contact to 3V3, external pull-down
    debounce_ms: Annotated[int, Field(ge=0, le=2000)] = 50
    # optional end-of-line supervision relay contact (closed while the loop is powered and intact)
    supervision_pin: Pin | None = None


class CalibrationPoint(Model):
    raw: Annotated[float, Field(ge=0, le=1)]  # fraction of the ADC reference voltage
    value: float  # in the sensor's unit (°C, ppm …)


class Mcp3008Source(Model):
    """An analog input on an MCP3008 ADC (analog.py): MQ-2 gas/smoke modules, analog heat sensors."""
    driver: Literal["mcp3008"]
    channel: Annotated[int, Field(ge=0, le=7)]
    spi_port: Literal[0, 1] = 0
    spi_device: Annotated[int, Field(ge=0, le=2)] = 0  # chip select CE0/CE1 (CE2 on port 1)
    calibration: Annotated[list[CalibrationPoint], Field(min_length=2)]
    alarm_above: float | None = None  # binary kinds: alarm at this calibrated value
    hysteresis: Annotated[float, Field(ge=0)] = 0.0  # back to normal below alarm_above - hysteresis
    warm_up_s: Annotated[float, Field(ge=0, le=86400)] = 60.0  # readings before are "stale"
    rail_margin: Annotated[float, Field(ge=0, le=0.2)] = 0.01  # within this of 0 V or Vref: open/short

    @model_validator(mode="after")
    def _check(self) -> "Mcp3008Source":
        raws = [p.raw for p in self.calibration]
        if any(b <= a for a, b in zip(raws, raws[1:])):
            raise ValueError("calibration points need strictly increasing raw values / 标定点 raw 须递增")
        if self.spi_port == 0 and self.spi_device > 1:
            raise ValueError("SPI port 0 has chip selects 0 and 1 only")
        return self


class OneWireSource(Model):
    """A DS18B20 (or other w1_therm) thermometer on the 1-Wire bus (onewire.py)."""
    driver: Literal["onewire"]
    address: Annotated[str, Field(pattern=r"^[0-9a-f]{2}-[0-9a-f]{12}$")]  # e.g. 28-00000abcdef0


class ModbusSource(Model):
    """One point of a Modbus RTU device on one of the gateway's buses (modbus.py)."""
    driver: Literal["modbus"]
    bus: Ident
    unit: Annotated[int, Field(ge=1, le=247)]
    register_map: Ident  # a file sensors/registers/{name}.yaml
    point: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,63}$")]


SOURCES = {"gpio": GpioSource, "mcp3008": Mcp3008Source, "onewire": OneWireSource, "modbus": ModbusSource}


def _driver_tag(value: object) -> str | None:
    return value.get("driver") if isinstance(value, dict) else getattr(value, "driver", None)


SensorSource = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in SOURCES.items())],  # type: ignore[misc]
    Discriminator(_driver_tag, custom_error_type="unknown_driver",
                  custom_error_message=f"missing or unknown driver; expected one of {', '.join(SOURCES)} / 未知驱动"),
]

# pins a source family takes for itself (SPI port/chip select; 1-Wire: dtoverlay=w1-gpio default GPIO4).
# `dtparam=spi=on` hands both chip selects of SPI0 (GPIO8 and GPIO7) to the kernel, whichever is used.
SPI_PINS = {(0, 0): (11, 10, 9, 8, 7), (0, 1): (11, 10, 9, 8, 7),
            (1, 0): (21, 20, 19, 18), (1, 1): (21, 20, 19, 17), (1, 2): (21, 20, 19, 16)}
ONEWIRE_PIN = 4


def _fits_kind(driver: str, kind) -> str | None:
    """Why a source cannot feed a sensor of this kind, or None."""
    binary = ", ".join(k.name for k in KINDS.values() if k.binary)
    rules = {
        "gpio": (kind.binary, f"a GPIO contact reads a binary kind ({binary})"),
        "onewire": (kind.unit == "°C", "a 1-Wire thermometer reads a °C kind"),
    }
    ok, why = rules.get(driver, (True, ""))
    return None if ok else f"{why}, not '{kind.name}' / 数据源与传感器类型不符"


def _has_port(url) -> bool:
    try:
        return bool(url.hostname) and url.port is not None
    except ValueError:
        return False


def wiring_problems(cfg) -> Iterator[tuple[str, str]]:
    """(path, message) for wiring that cannot work."""
    yield from _bus_problems(cfg)
    yield from _camera_problems(cfg)
    yield from _source_problems(cfg)


def _bus_problems(cfg) -> Iterator[tuple[str, str]]:
    for i, gw in enumerate(cfg.gateways):
        seen_ids: set[str] = set()
        seen_ports: set[str] = set()
        for j, bus in enumerate(gw.buses):
            if bus.id in seen_ids:
                yield f"gateways[{i}].buses[{j}].id", f"duplicate bus id '{bus.id}' / 总线编号重复"
            if bus.port in seen_ports:
                yield f"gateways[{i}].buses[{j}].port", f"port '{bus.port}' already used by another bus / 串口重复"
            seen_ids.add(bus.id)
            seen_ports.add(bus.port)


def _camera_problems(cfg) -> Iterator[tuple[str, str]]:
    for i, cam in enumerate(cfg.cameras):
        url = urlsplit(cam.probe)
        if url.scheme not in SCHEMES:
            yield f"cameras[{i}].probe", (f"unsupported probe scheme '{url.scheme}' "
                                          f"(use {', '.join(SCHEMES)}) / 不支持的探测方式")
        elif url.scheme == "tcp" and not _has_port(url):
            yield f"cameras[{i}].probe", "a tcp:// probe needs host and port, e.g. tcp://192.0.2.17:554"


def _source_problems(cfg) -> Iterator[tuple[str, str]]:
    # claims per gateway: key → [path, …]; any key claimed twice is a conflict
    pins: dict[tuple[str, int], list[str]] = defaultdict(list)
    reserved: dict[tuple[str, int], str] = {}
    addresses: dict[tuple, list[str]] = defaultdict(list)
    devices: dict[tuple[str, str, int], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    bus_load: dict[tuple[str, str], float] = defaultdict(float)

    for i, sensor in enumerate(cfg.sensors):
        src = sensor.source
        gw = cfg.gateway(sensor.gateway)
        if src is None or gw is None:
            continue
        path = f"sensors[{i}].source"
        kind = KINDS[sensor.kind]
        if (why := _fits_kind(src.driver, kind)) is not None:
            yield f"{path}.driver", why
        if isinstance(src, GpioSource):
            pins[(gw.id, src.pin)].append(f"{path}.pin")
            if src.supervision_pin is not None:
                pins[(gw.id, src.supervision_pin)].append(f"{path}.supervision_pin")
        elif isinstance(src, Mcp3008Source):
            for pin in SPI_PINS.get((src.spi_port, src.spi_device), ()):
                reserved[(gw.id, pin)] = f"SPI{src.spi_port} (MCP3008)"
            addresses[(gw.id, "mcp3008", src.spi_port, src.spi_device, src.channel)].append(f"{path}.channel")
            if kind.binary and src.alarm_above is None:
                yield f"{path}.alarm_above", f"a '{kind.name}' sensor needs an alarm threshold / 需设报警阈值"
            if not kind.binary and src.alarm_above is not None:
                yield f"{path}.alarm_above", "only binary kinds alarm in the driver; analog kinds alarm in the rules"
        elif isinstance(src, OneWireSource):
            reserved[(gw.id, ONEWIRE_PIN)] = "the 1-Wire bus (w1-gpio)"
            addresses[(gw.id, "onewire", src.address)].append(f"{path}.address")
        elif isinstance(src, ModbusSource):
            bus = next((b for b in gw.buses if b.id == src.bus), None)
            if bus is None:
                yield f"{path}.bus", f"no bus '{src.bus}' on gateway '{gw.id}' / 网关上没有该总线"
            try:
                regmap = register_map(src.register_map)
            except RegisterMapError as exc:
                yield f"{path}.register_map", str(exc)
                continue
            point = regmap.points.get(src.point)
            if point is None:
                yield f"{path}.point", (f"register map '{regmap.name}' has no point '{src.point}' "
                                        f"(it has: {', '.join(regmap.points)}) / 寄存器表中无此点")
                continue
            if (why := point.unfit_for(kind)) is not None:
                yield f"{path}.point", why
            devices[(gw.id, src.bus, src.unit)][src.register_map].append(f"{path}.register_map")
            addresses[(gw.id, "modbus", src.bus, src.unit, src.point)].append(f"{path}.point")
            if bus is not None:
                bus_load[(gw.id, bus.id)] += bus.poll_s(point.registers) / sensor.interval_s

    for (gw_id, pin), paths in pins.items():
        if len(paths) > 1:
            for p in paths:
                yield p, f"GPIO{pin} used {len(paths)} times on gateway '{gw_id}' / 引脚重复使用"
        if (gw_id, pin) in reserved:
            for p in paths:
                yield p, f"GPIO{pin} is taken by {reserved[(gw_id, pin)]} on gateway '{gw_id}' / 引脚已被占用"
    for key, paths in addresses.items():
        if len(paths) > 1:
            for p in paths:
                yield p, f"the same {key[1]} input is used by {len(paths)} sensors on gateway '{key[0]}' / 地址重复"
    for (gw_id, bus_id, unit), maps in devices.items():
        if len(maps) > 1:
            for paths in maps.values():
                for p in paths:
                    yield p, (f"unit {unit} on bus '{bus_id}' is given different register maps "
                              f"({', '.join(sorted(maps))}) / 同一地址的设备寄存器表不一致")
    for i, gw in enumerate(cfg.gateways):
        for j, bus in enumerate(gw.buses):
            load = bus_load.get((gw.id, bus.id), 0.0)
            if load > 1.0:
                yield f"gateways[{i}].buses[{j}]", (
                    f"polling needs {load:.0%} of what {bus.baudrate} baud carries "
                    f"(≈ {bus.polls_per_s:.0f} single-register reads/s): raise interval_s or split the bus "
                    f"/ 总线负载超限")
