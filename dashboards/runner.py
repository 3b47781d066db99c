"""Run a dashboard's queries the way Grafana runs them, against a real InfluxDB 1.x — what the
acceptance test proves the dashboards with, and what `stationwatch dashboards render` draws.

What Grafana does, and this module does the same (Grafana 10/11, InfluxQL, raw queries):

1. **Variables** are resolved in dashboard order, each query interpolated with the ones before it
   (a chain). A ``SHOW TAG VALUES`` or ``SELECT`` answer gives its second column; ``SHOW FIELD KEYS``
   its first. The current value is kept if offered, else the first option; "All" is every option.
2. **Template variables** in queries are formatted as regular expressions (Grafana's ``regex``
   format for InfluxDB): a value has ``\\ ^ $ * + ? . ( ) | [ ] { } /`` escaped, several values
   become ``(a|b)``; ``${name:raw}`` is left as it is. ``$__range_ms``, ``$__range_s``, ``$__from``
   and ``$__to`` come from the time range.
3. **Macros** are then expanded as Grafana's InfluxDB backend does: ``$timeFilter`` →
   ``time >= {from}ms and time <= {to}ms``; ``$__interval`` (and ``$interval``) → the range divided
   by the panel's ``maxDataPoints``, rounded by Grafana's table, never below the panel's
   ``interval``; ``$__interval_ms`` → the same in milliseconds.
4. **Series names** follow the target's alias (``$tag_x``, ``[[tag_x]]``, ``$col``, ``$m``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

# Grafana's roundInterval: (below this many ms, use this many ms)
ROUNDING = ((10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
            (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
            (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
            (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
            (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
            (1814400000, 604800000), (3628800000, 2592000000))
UNITS_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "w": 604800000}
DEFAULT_MIN_INTERVAL = "10s"  # the data source's timeInterval (provisioning.py): readings every 10 s
REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|\[\]{}/])")
VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")
ALIAS = re.compile(r"\$(\w+)|\[\[([\s\S]+?)\]\]")

Query = Callable[[str], list[dict[str, Any]]]  # InfluxQL → the "series" of its first statement


def round_interval(ms: float) -> int:
    return next((to for below, to in ROUNDING if ms < below), 31536000000)


def parse_duration(text: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip())
    if not m:
        raise ValueError(f"not a Grafana interval: {text!r} (e.g. 10s, 1m)")
    return int(m.group(1)) * UNITS_MS[m.group(2)]


def format_interval(ms: int) -> str:
    """Grafana backend's FormatInterval (days, hours, minutes, seconds, milliseconds)."""
    for unit in ("d", "h", "m", "s"):
        if ms >= UNITS_MS[unit]:
            return f"{ms // UNITS_MS[unit]}{unit}"
    return f"{max(ms, 1)}ms"


def interval_ms(range_ms: int, max_points: int, min_interval: str | None) -> int:
    low = parse_duration(min_interval or DEFAULT_MIN_INTERVAL)
    return max(round_interval(range_ms / max(max_points, 1)), low)


def regex_format(values: list[str]) -> str:
    escaped = [REGEX_SPECIAL.sub(r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class TimeRange:
    from_ms: int
    to_ms: int

    @property
    def range_ms(self) -> int:
        return self.to_ms - self.from_ms


@dataclass
class Series:
    """One series as Grafana shows it: a result column of an InfluxDB series (``index``), named."""
    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]
    index: int = 1

    def column(self, index: int | None = None) -> list[Any]:
        return [row[self.index if index is None else index] for row in self.values]


@dataclass
class TargetResult:
    dashboard: str
    panel: str
    ref_id: str
    query: str  # as sent to InfluxDB
    series: list[Series] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"dashboard '{self.dashboard}', panel '{self.panel}', target {self.ref_id}"


class Runner:
    """One dashboard on one time range: variables resolved once, then any panel's targets run."""

    def __init__(self, model: dict[str, Any], query: Query, time_range: TimeRange):
        self.model, self.query, self.range = model, query, time_range
        self.values: dict[str, list[str]] = {}
        self.options: dict[str, list[str]] = {}
        for var in model.get("templating", {}).get("list", []):
            self._resolve(var)

    # ---- variables
    def interpolate(self, text: str) -> str:
        builtins = {"__range_ms": str(self.range.range_ms), "__range_s": str(self.range.range_ms // 1000),
                    "__range": format_interval(self.range.range_ms), "__from": str(self.range.from_ms),
                    "__to": str(self.range.to_ms)}

        def replace(m: re.Match) -> str:
            name = m.group(1) or m.group(3) or m.group(4)
            if name in builtins:
                return builtins[name]
            if name not in self.values:
                return m.group(0)  # a macro for the backend ($timeFilter, $__interval) or unknown
            return ",".join(self.values[name]) if m.group(2) == "raw" else regex_format(self.values[name])
        return VARIABLE.sub(replace, text)

    def _resolve(self, var: dict[str, Any]) -> None:
        name = var["name"]
        if var.get("type") != "query":
            raise ValueError(f"variable ${name}: only query variables are used by these dashboards")
        series = self.query(self.interpolate(var["query"]))
        first_column = "show field keys" in var["query"].lower() or "show retention policies" in var["query"].lower()
        options = sorted({str(row[0] if first_column or len(row) < 2 else row[1]) for s in series for row in s["values"]})
        self.options[name] = options
        wanted = (var.get("current") or {}).get("value")
        wanted = wanted if isinstance(wanted, list) else [wanted] if wanted else []
        if var.get("includeAll") and (not wanted or "$__all" in wanted):
            self.values[name] = options
        else:
            kept = [w for w in wanted if w in options]
            self.values[name] = kept or options[:1]

    def choose(self, name: str, values: list[str]) -> None:
        """Pick values of a variable (as a user would) and resolve the ones after it again."""
        self.values[name] = values
        names = [v["name"] for v in self.model["templating"]["list"]]
        for var in self.model["templating"]["list"][names.index(name) + 1:]:
            self._resolve(var)

    # ---- panels
    def expand(self, text: str, panel: dict[str, Any]) -> str:
        text = self.interpolate(text)
        ms = interval_ms(self.range.range_ms, int(panel.get("maxDataPoints") or 1000), panel.get("interval"))
        time_filter = f"time >= {self.range.from_ms}ms and time <= {self.range.to_ms}ms"
        for macro, value in (("$timeFilter", time_filter), ("$interval", format_interval(ms)),
                             ("$__interval_ms", str(ms)), ("$__interval", format_interval(ms))):
            text = text.replace(macro, value)
        return text

    def run(self, panel: dict[str, Any]) -> list[TargetResult]:
        out = []
        for target in panel.get("targets", []):
            sent = self.expand(target["query"], panel)
            series = [Series(_name(s, target.get("alias", ""), i), s.get("tags") or {}, s["columns"], s.get("values") or [], i)
                      for s in self.query(sent) for i in range(1, len(s["columns"]))]
            out.append(TargetResult(self.model["title"], panel["title"], target["refId"], sent, series))
        return out

    def annotations(self) -> list[TargetResult]:
        out = []
        for a in self.model.get("annotations", {}).get("list", []):
            if "query" in a:
                sent = self.expand(a["query"], {})
                out.append(TargetResult(self.model["title"], f"annotation {a['name']}", "annotation", sent,
                                        [Series(s["name"], s.get("tags") or {}, s["columns"], s.get("values") or [])
                                         for s in self.query(sent)]))
        return out


def _name(series: dict[str, Any], alias: str, column: int) -> str:
    """The series name Grafana shows, from the alias (``$tag_x``, ``$col``, ``$m``)."""
    tags = series.get("tags") or {}
    if not alias:
        base = series["name"] + ("" if series["columns"][column] == "value" else "." + series["columns"][column])
        return base + (" {" + ", ".join(f"{k}: {v}" for k, v in tags.items()) + "}" if tags else "")

    def replace(m: re.Match) -> str:
        group = m.group(1) or m.group(2)
        if group in ("m", "measurement"):
            return series["name"]
        if group == "col":
            return series["columns"][column]
        if group.startswith("tag_") and group[4:] in tags:
            return tags[group[4:]]
        return m.group(0)
    return ALIAS.sub(replace, alias)


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel with targets, including those inside collapsed rows."""
    out = []
    for p in model.get("panels", []):
        out += [p] if p.get("targets") else []
        out += [q for q in p.get("panels", []) if q.get("targets")]
    return out


def influx_query(client) -> Query:
    """A :data:`Query` over an ``influxdb.InfluxDBClient`` (epoch ms, as Grafana asks)."""
    def run(text: str) -> list[dict[str, Any]]:
        result = client.query(text, epoch="ms")
        return result.raw.get("series", [])
    return run
