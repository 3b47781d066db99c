"""What a Modbus RTU line carries: the register maps of its devices and its line time.

Plain dataclasses, so the gateway runtime reads register maps without pydantic. Where a register
map is loaded from its YAML file (the config check, and ``stationwatch gateway`` before it starts
the runtime) pydantic validates the file against these same dataclasses — their ``Annotated``
bounds are ``annotated_types`` constraints, which pydantic enforces — and the runtime gets the
validated maps through :class:`stationwatch.sensors.base.Seams`.

Example::

    >>> point = register_map("th-transmitter").points["temperature"]
    >>> point.decode([0xFF38]) * point.scale  # int16 -200 × 0.1
    -20.0
"""
from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal

from annotated_types import Ge, Interval, Le, MinLen

if TYPE_CHECKING:
    from stationwatch.sensors.kinds import SensorKind

# type → (registers, decode of big-endian-ordered words)
WORD_TYPES: dict[str, tuple[int, Callable[[list[int]], float]]] = {
    "uint16": (1, lambda w: w[0]),
    "int16": (1, lambda w: struct.unpack(">h", struct.pack(">H", w[0]))[0]),
    "uint32": (2, lambda w: w[0] << 16 | w[1]),
    "int32": (2, lambda w: struct.unpack(">i", struct.pack(">HH", *w))[0]),
    "float32": (2, lambda w: struct.unpack(">f", struct.pack(">HH", *w))[0]),
    "bit": (1, lambda w: w[0]),
}
FORBID_EXTRA = {"extra": "forbid"}  # pydantic's config for a plain dataclass: unknown keys are errors


class RegisterMapError(ValueError):
    """A register map is missing or malformed; the message names it."""


@dataclass(frozen=True)
class RegisterPoint:
    """One value in a device's register map."""
    __pydantic_config__ = FORBID_EXTRA
    address: Annotated[int, Interval(ge=0, le=65535)]
    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    type: Literal["uint16", "int16", "uint32", "int32", "float32", "bit"] = "uint16"
    bit: Annotated[int, Ge(0), Le(15)] | None = None  # type bit: which bit of the register
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    word_order: Literal["big", "little"] = "big"  # 32-bit types: which register holds the high word
    fault_values: tuple[float, ...] = ()  # raw values by which the device reports its probe broken
    active_when: Literal[0, 1] = 1  # binary points

    def __post_init__(self) -> None:
        if self.table in ("coil", "discrete") and self.type != "bit":
            raise ValueError(f"a {self.table} point is a bit: type must be 'bit'")
        if self.table in ("holding", "input") and (self.type == "bit") != (self.bit is not None):
            raise ValueError("type 'bit' of a register needs 'bit' (0..15), and only it")

    @property
    def registers(self) -> int:
        return WORD_TYPES[self.type][0]

    @property
    def binary(self) -> bool:
        return self.type == "bit"

    def unfit_for(self, kind: SensorKind) -> str | None:
        """Why this point cannot feed a sensor of ``kind``, or None."""
        if kind.binary != self.binary:
            want = "a bit (coil, discrete input or register bit)" if kind.binary else f"a value in {kind.unit}"
            return f"kind '{kind.name}' needs {want}; this point is not / 点位类型与传感器类型不符"
        if not kind.binary and self.unit != kind.unit:
            return f"point is in '{self.unit}' but kind '{kind.name}' is in '{kind.unit}' / 单位不符"
        return None

    def decode(self, values: list[Any]) -> float:
        """The raw number (before scale) from the registers or bits read."""
        if self.table in ("coil", "discrete"):
            return float(bool(values[0]))
        words = [int(v) for v in values[: self.registers]]
        if self.word_order == "little":
            words.reverse()
        raw = WORD_TYPES[self.type][1](words)
        return float((raw >> self.bit) & 1) if self.bit is not None else float(raw)


@dataclass(frozen=True)
class RegisterMap:
    __pydantic_config__ = FORBID_EXTRA
    name: str
    title: str
    points: Annotated[dict[str, RegisterPoint], MinLen(1)]

    def as_data(self) -> dict[str, Any]:
        """JSON-ready, for the gateway's runtime plan."""
        return asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "RegisterMap":
        """A map already validated where it was loaded (see :func:`register_map`)."""
        return cls(data["name"], data["title"],
                   {k: RegisterPoint(**(p | {"fault_values": tuple(p.get("fault_values", ()))}))
                    for k, p in data["points"].items()})


def register_map_names() -> list[str]:
    folder = resources.files("stationwatch.sensors") / "registers"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


@lru_cache(maxsize=None)
def register_map(name: str) -> RegisterMap:
    """The shipped register map ``sensors/registers/{name}.yaml``, validated."""
    import yaml
    from pydantic import TypeAdapter, ValidationError

    path = resources.files("stationwatch.sensors") / "registers" / f"{name}.yaml"
    if not path.is_file():
        raise RegisterMapError(f"no register map '{name}' (shipped: {', '.join(register_map_names())}) "
                               f"/ 寄存器表不存在")
    try:
        regmap = TypeAdapter(RegisterMap).validate_python(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as exc:
        raise RegisterMapError(f"register map '{name}' is malformed: {exc}") from None
    if regmap.name != name:
        raise RegisterMapError(f"register map file '{name}.yaml' calls itself '{regmap.name}'")
    return regmap


# ---- line time of an RS-485 line (any object with baudrate, parity, stopbits, turnaround_ms)
def char_s(line: Any) -> float:
    """Line time of one character: start bit, 8 data bits, parity, stop bits."""
    return (1 + 8 + (line.parity != "N") + line.stopbits) / line.baudrate


def poll_s(line: Any, registers: int = 1) -> float:
    """Line time of one read: an 8-byte request, a (5 + 2n)-byte answer, the 3.5-character
    silence after each frame, and the device's turnaround. 9600 8N1, one register: ≈ 25 ms."""
    return (8 + 5 + 2 * registers + 2 * 3.5) * char_s(line) + line.turnaround_ms / 1000


def polls_per_s(line: Any) -> float:
    """Single-register reads the line carries per second (≈ 40 at 9600 baud)."""
    return 1 / poll_s(line, 1)
