"""Modbus RTU over RS-485 (pymodbus on pyserial): temperature/humidity transmitters and heating
controllers, several devices per bus.

What each device holds is DATA: a register map ``sensors/registers/{name}.yaml`` (regmap.py) names its points
(table, address, type, scale, unit, the raw values by which the device reports its own probe as
broken). A sensor's source picks ``bus``, ``unit`` (slave address), ``register_map`` and ``point``.

One :class:`ModbusBus` driver owns one serial line. Its :class:`BusSchedule` reads each point every
``interval_s``, staggering the points over the interval instead of in bursts, keeps the 3.5-character
silence between frames, and knows the line's budget: a 9600-baud 8N1 line carries about 40
single-register reads a second (:func:`~stationwatch.sensors.regmap.poll_s`). A configured load over that is refused by the
config check and logged by the driver. ``read(now)`` returns only the points that fell due — call it
often (several times a second).

Timeouts, CRC errors, exception answers and a missing adapter become FAULT samples naming the unit;
no exception escapes ``read()``. After a unit stays silent once in a round, its other points in that
round are marked FAULT without spending another timeout on the line.

Example::

    >>> from types import SimpleNamespace  # any object with the fields of a bus (sensors/specs.py)
    >>> from stationwatch.sensors.kinds import KINDS
    >>> bus = SimpleNamespace(id="rs485-1", port="/dev/ttyUSB0", baudrate=9600, parity="N", stopbits=1, timeout_s=0.3, turnaround_ms=2.0)
    >>> from stationwatch.sensors.regmap import register_map
    >>> point = register_map("th-transmitter").points["temperature"]
    >>> driver = ModbusBus(bus, [Poll("t-dorm-1", KINDS["temperature"], unit=1, point=point, interval_s=10)])
    >>> driver.read(now=0.0)  # doctest: +SKIP
    [Sample(sensor='t-dorm-1', value=21.5, quality='ok', ts=0.0, state=None, detail=None)]
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Literal

from stationwatch.sensors.base import Driver, Sample, Seams, set_up, sources_of
from stationwatch.sensors.kinds import KINDS, SensorKind
from stationwatch.sensors.regmap import RegisterPoint, char_s, poll_s, polls_per_s, register_map
from stationwatch.sensors.specs import BusSpec, DeviceTable, GatewaySpec

log = logging.getLogger(__name__)

READS = {"holding": "read_holding_registers", "input": "read_input_registers",
         "coil": "read_coils", "discrete": "read_discrete_inputs"}
EXCEPTION_CODES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "device failure", 5: "acknowledge", 6: "device busy",
                   10: "gateway path unavailable", 11: "gateway target did not respond"}


@dataclass
class Poll:
    """One point of one unit, read every ``interval_s`` for one sensor."""
    sensor: str
    kind: SensorKind
    unit: int
    point: RegisterPoint
    interval_s: float
    next_due: float | None = None

    def sample(self, raw: float, now: float) -> Sample:
        if raw in self.point.fault_values:
            return Sample.fault(self.sensor, now, f"unit {self.unit} reports its probe broken "
                                                  f"(raw value {raw:g}) / 设备报告探头故障")
        if self.kind.binary:
            return Sample.binary(self.sensor, self.kind, raw == self.point.active_when, now)
        return Sample.measured(self.sensor, self.kind, raw * self.point.scale + self.point.offset, now)


class BusSchedule:
    """When each point of one bus is read, staggered over its interval, within the line's budget."""

    def __init__(self, bus: BusSpec, polls: list[Poll]):
        self.bus = bus
        self.polls = polls
        self.load = sum(poll_s(bus, p.point.registers) / p.interval_s for p in polls)

    @property
    def overloaded(self) -> bool:
        return self.load > 1.0

    def describe(self) -> str:
        return (f"bus '{self.bus.id}': {len(self.polls)} points use {self.load:.0%} of the line "
                f"({self.bus.baudrate} baud ≈ {polls_per_s(self.bus):.0f} single-register reads/s)")

    def due(self, now: float) -> list[Poll]:
        """The polls due at ``now``, oldest first; each is rescheduled (missed periods are skipped)."""
        for k, p in enumerate(self.polls):
            if p.next_due is None:  # first round: spread the points over their interval
                p.next_due = now + p.interval_s * k / len(self.polls)
        due = sorted((p for p in self.polls if p.next_due <= now), key=lambda p: p.next_due)
        for p in due:
            p.next_due += p.interval_s
            if p.next_due <= now:
                p.next_due = now + p.interval_s
        return due


class BusFault(Exception):
    def __init__(self, detail: str, scope: Literal["point", "unit", "line"]):
        super().__init__(detail)
        self.scope = scope


def _serial_client(bus: BusSpec, serial_for_url: Callable[..., Any], trace_packet):
    """A pymodbus RTU client whose serial port is opened through the injected ``serial_for_url``."""
    from pymodbus.client import ModbusSerialClient  # vendor library: only where a bus is wired

    class Client(ModbusSerialClient):
        open_error: str | None = None

        def connect(self) -> bool:
            if self.socket is None:
                try:
                    self.socket = serial_for_url(bus.port, baudrate=bus.baudrate, bytesize=8, parity=bus.parity,
                                                 stopbits=bus.stopbits, timeout=bus.timeout_s,
                                                 write_timeout=bus.timeout_s, exclusive=True)
                    self.socket.inter_byte_timeout = getattr(self, "inter_byte_timeout", None) or None
                    self.open_error = None
                except (OSError, ValueError) as exc:
                    self.open_error = str(exc)
            return self.socket is not None

    return Client(bus.port, baudrate=bus.baudrate, parity=bus.parity, stopbits=bus.stopbits,
                  timeout=bus.timeout_s, retries=0, trace_packet=trace_packet, name=bus.id)


class ModbusBus:
    """The driver of one RS-485 line: polls its points on schedule, every failure a FAULT sample."""

    family = "modbus"

    def __init__(self, bus: BusSpec, polls: list[Poll], *, serial_for_url: Callable[..., Any] | None = None,
                 pause: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic):
        if serial_for_url is None:
            import serial

            serial_for_url = serial.serial_for_url
        self.bus = bus
        self.schedule = BusSchedule(bus, polls)
        if self.schedule.overloaded:
            log.warning("%s: over budget, points will be read late", self.schedule.describe())
        self._pause = pause
        self._monotonic = monotonic
        self._quiet_until = 0.0
        self._heard = False
        self._client = _serial_client(bus, serial_for_url, self._trace)

    @classmethod
    def build(cls, cfg: DeviceTable, gateway: GatewaySpec, seams: Seams) -> list[Driver]:
        polls: dict[str, list[Poll]] = defaultdict(list)
        for s, src in sources_of(cfg, gateway, "modbus"):
            regmap = seams.register_maps[src.register_map] if seams.register_maps is not None \
                else register_map(src.register_map)
            point = regmap.points[src.point]  # the config check vouches for it
            polls[src.bus].append(Poll(s.id, KINDS[s.kind], src.unit, point, s.interval_s))
        buses = {b.id: b for b in gateway.buses}
        return [set_up([p.sensor for p in bus_polls],
                       lambda b=buses[bus_id], bp=bus_polls: cls(b, bp, serial_for_url=seams.serial_for_url))
                for bus_id, bus_polls in polls.items()]

    def read(self, now: float) -> list[Sample]:
        samples: list[Sample] = []
        down: dict[int | None, str] = {}  # unit (None: the whole line) → why, for the rest of this round
        for poll in self.schedule.due(now):
            if (why := down.get(None, down.get(poll.unit))) is not None:
                samples.append(Sample.fault(poll.sensor, now, why))
                continue
            try:
                raw = self._transact(poll)
            except BusFault as exc:
                if exc.scope != "point":
                    down[None if exc.scope == "line" else poll.unit] = str(exc)
                samples.append(Sample.fault(poll.sensor, now, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 — whatever the library does, a FAULT, not a crash
                samples.append(Sample.fault(poll.sensor, now, f"driver error: {type(exc).__name__}: {exc}"))
                continue
            samples.append(poll.sample(raw, now))
        return samples

    def _transact(self, poll: Poll) -> float:
        from pymodbus.exceptions import ModbusException, ModbusIOException

        point, unit = poll.point, poll.unit
        if not self._client.connect():
            raise BusFault(f"cannot open {self.bus.port}: {self._client.open_error} / 串口无法打开", "line")
        wait = self._quiet_until - self._monotonic()
        if wait > 0:
            self._pause(wait)  # RTU: 3.5 characters of silence between frames
        self._heard = False
        try:
            reply = getattr(self._client, READS[point.table])(point.address, count=point.registers, device_id=unit)
        except ModbusIOException:
            if self._heard:
                raise BusFault(f"garbled answer from unit {unit} (CRC error or noise on the line) / 校验错误",
                               "unit") from None
            raise BusFault(f"no answer from unit {unit} within {self.bus.timeout_s:g} s / 设备无应答",
                           "unit") from None
        except (ModbusException, OSError) as exc:
            self._client.close()  # reopen on the next poll (adapter unplugged, port gone)
            raise BusFault(f"bus '{self.bus.id}' failed: {exc} / 总线故障", "line") from None
        finally:
            self._quiet_until = self._monotonic() + 3.5 * char_s(self.bus)
        if reply.isError():
            code = getattr(reply, "exception_code", None)
            raise BusFault(f"unit {unit} refused {point.table} register {point.address}: "
                           f"exception {code} ({EXCEPTION_CODES.get(code, 'unknown')}) / 设备拒绝请求", "point")
        values = reply.bits if point.table in ("coil", "discrete") else reply.registers
        if len(values) < point.registers:
            raise BusFault(f"short answer from unit {unit}", "point")
        return point.decode(values)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self._heard = True
        return data

    def close(self) -> None:
        self._client.close()
