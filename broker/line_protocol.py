"""InfluxDB line protocol, built at the database's pace.

The influxdb-python client escapes every tag of every point through several generic calls (about
370 µs a point measured under cProfile here, 90 % of its ``write_points``); ingest writes the same few
thousand series over and over. :class:`LineBuilder` escapes a series (measurement and tags) once
and keeps it, so a point costs its fields and its time.

Escaping, as InfluxDB 1.x parses it (checked against the real 1.6.7 in tests/test_influx_writers.py):

- measurement: ``,`` and space take a backslash; tag keys, tag values and field keys: ``,``, ``=`` and
  space. A backslash is otherwise itself: it is written as it is (doubling it would store two). A
  name with a line break, a tag ending in a backslash, or a measurement or field key with a backslash
  before ``,``, ``=``, a space or its end cannot be written at all (InfluxDB 1.6 refuses or mangles
  them): :class:`Unwritable` says which, and ingest quarantines that point, not its batch.
- string fields: in double quotes, with ``"`` and ``\\`` escaped; line breaks are kept as they are.
- integers take ``i``; booleans are ``true``/``false``; floats as Python's shortest repr.

>>> from stationwatch.broker.influx import Point
>>> LineBuilder().line(Point("reading", {"sensor": "t 1", "site": "中文"}, {"value": 21.5, "q": 'a "b"'}, 5))
'reading,sensor=t\\\\ 1,site=中文 value=21.5,q="a \\\\"b\\\\"" 5'
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .influx import Point

SERIES_CACHE = 200_000  # series kept escaped (a national deployment has ~130k readings' series)
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})


class Unwritable(ValueError):
    """A point line protocol cannot carry (a tag value ending in a backslash, a line break in a name)."""


_STUCK = re.compile(r"\\(?=[,= ]|$)")  # a backslash before what needs escaping, or at the end


def _name(text: str, table: dict, what: str, strict: bool = False) -> str:
    if "\n" in text or "\r" in text:
        raise Unwritable(f"{what} {text[:64]!r} holds a line break, which line protocol cannot carry")
    if text.endswith("\\") or (strict and _STUCK.search(text)):
        raise Unwritable(f"{what} {text[:64]!r} has a backslash before a comma, equals sign, space or its end, "
                         "which line protocol cannot carry")
    return text.translate(table)


def escape_key(text: str, what: str = "tag value") -> str:
    """A tag key or value — or, ``what="field key"``, a field key — as line protocol writes it."""
    return _name(text, _KEY, what, strict=what == "field key")


def string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def field_value(value: object) -> str:
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return f"{value}i"
    if kind is str:
        return string_field(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{int(value)}i"
    if isinstance(value, float):
        return repr(float(value))
    return string_field(str(value))


class LineBuilder:
    """Points → line protocol, with each series' escaped prefix kept (bounded: ``SERIES_CACHE``)."""

    def __init__(self) -> None:
        self._series: dict[tuple, str] = {}
        self._fields: dict[str, str] = {}

    def series(self, measurement: str, tags: dict[str, str]) -> str:
        key = (measurement, *tags.items())
        found = self._series.get(key)
        if found is None:
            found = _name(measurement, _MEASUREMENT, "measurement", strict=True) + "".join(
                f",{escape_key(k, 'tag key')}={escape_key(v, 'tag value')}" for k, v in sorted(tags.items()) if v != "")
            if len(self._series) >= SERIES_CACHE:
                self._series.clear()
            self._series[key] = found
        return found

    def line(self, point: Point) -> str:
        if point.line is not None:
            return point.line
        fields = self._fields
        parts = []
        for k, v in point.fields.items():
            name = fields.get(k)
            if name is None:
                name = fields[k] = escape_key(k, "field key")
            parts.append(f"{name}={field_value(v)}")
        return f"{self.series(point.measurement, point.tags)} {','.join(parts)} {point.time_ms}"

    def lines(self, points: Iterable[Point]) -> bytes:
        line = self.line
        return "\n".join([line(p) for p in points]).encode()


SHARED = LineBuilder()  # for writers without one of their own (the v2 writer, line_protocol())
