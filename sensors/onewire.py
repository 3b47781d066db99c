"""DS18B20 (and other ``w1_therm``) thermometers through the kernel's sysfs files.

The kernel's ``w1_therm`` driver writes ``{base}/{address}/w1_slave`` as two lines::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

Fault rules (a broken thermometer is a FAULT, never a temperature):

| what the file says | means |
|---|---|
| missing file / directory | sensor unplugged or bus down |
| CRC line ends in ``NO`` | the read was garbled on the wire |
| all nine bytes ``00`` (CRC 00 passes!) | data line shorted or sensor lost mid-read |
| ``t=85000`` | the power-on reset value: the sensor lost power or never converted |
| ``t=-127000`` and below -55 °C | "disconnected" marker / beyond the DS18B20's range |

Example::

    >>> import pathlib, tempfile
    >>> base = pathlib.Path(tempfile.mkdtemp()); (base / "28-00000abcdef0").mkdir()
    >>> _ = (base / "28-00000abcdef0" / "w1_slave").write_text(
    ...     "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\\n72 01 4b 46 7f ff 0e 10 57 t=23125\\n")
    >>> from stationwatch.sensors.kinds import KINDS
    >>> OneWireThermometer("t-dorm-1", KINDS["temperature"], "28-00000abcdef0", base=base).read(0.0)[0].value
    23.125
"""
from __future__ import annotations

import re
from pathlib import Path

from stationwatch.sensors.base import Driver, Sample, Seams, sources_of
from stationwatch.sensors.kinds import KINDS, SensorKind
from stationwatch.sensors.specs import DeviceTable, GatewaySpec

_CRC = re.compile(r"^((?:[0-9a-f]{2} ){9}): crc=[0-9a-f]{2} (YES|NO)$")
_TEMP = re.compile(r"t=(-?\d+)$")
POWER_ON_MILLI_C = 85000
DS18B20_MIN_MILLI_C = -55000


class W1Fault(Exception):
    """The file does not hold a trustworthy temperature; the message says why."""


def parse_w1_slave(text: str) -> float:
    """°C from the content of a ``w1_slave`` file, or :class:`W1Fault`."""
    lines = text.strip().splitlines()
    if len(lines) != 2:
        raise W1Fault(f"unreadable w1_slave ({len(lines)} lines, expected 2)")
    crc = _CRC.match(lines[0].strip())
    if crc is None:
        raise W1Fault(f"unreadable CRC line {lines[0].strip()!r}")
    if crc.group(2) != "YES":
        raise W1Fault("CRC error on the 1-Wire bus / CRC 校验失败")
    if set(crc.group(1).split()) == {"00"}:
        raise W1Fault("all-zero scratchpad: data line shorted or sensor lost mid-read / 数据线短路")
    temp = _TEMP.search(lines[1].strip())
    if temp is None:
        raise W1Fault(f"no temperature in {lines[1].strip()!r}")
    milli_c = int(temp.group(1))
    if milli_c == POWER_ON_MILLI_C:
        raise W1Fault("85 °C power-on value: the sensor lost power or did not convert / 上电默认值")
    if milli_c < DS18B20_MIN_MILLI_C:
        raise W1Fault(f"{milli_c / 1000:g} °C: sensor disconnected / 传感器断开")
    return milli_c / 1000


class OneWireThermometer:
    """One thermometer, read from ``{base}/{address}/w1_slave`` at each poll."""

    family = "onewire"

    def __init__(self, sensor: str, kind: SensorKind, address: str, *, base: Path = Path("/sys/bus/w1/devices")):
        self.sensor = sensor
        self.kind = kind
        self.address = address
        self.path = Path(base) / address / "w1_slave"

    @classmethod
    def build(cls, cfg: DeviceTable, gateway: GatewaySpec, seams: Seams) -> list[Driver]:
        return [cls(s.id, KINDS[s.kind], src.address, base=seams.onewire_base)
                for s, src in sources_of(cfg, gateway, "onewire")]

    def read(self, now: float) -> list[Sample]:
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            return [Sample.fault(self.sensor, now, f"sensor {self.address} not present "
                                                   f"({exc.strerror or exc}) / 传感器不在线")]
        try:
            celsius = parse_w1_slave(text)
        except W1Fault as exc:
            return [Sample.fault(self.sensor, now, str(exc))]
        return [Sample.measured(self.sensor, self.kind, celsius, now)]

    def close(self) -> None:
        pass
