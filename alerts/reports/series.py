"""What the monthly report reads from InfluxDB (docs/influxdb-schema.md): the ``trend`` policy's one-minute
room temperatures for heating compliance, and the ``records`` policy's door and detector events. Only
InfluxQL over the v1 HTTP API (``GET /query``), with httpx.

The queries of one site and month are :func:`queries` — the benchmark times them alone as the floor
of the report (tests/benchmarks/bench_reports.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from stationwatch.core.config import Site, StationConfig
from stationwatch.core.policy import Season

from ..records import AlertError
from .period import Month

TREND, RECORDS = "trend", "records"  # the retention policies the report reads (docs/influxdb-schema.md)


class SeriesError(AlertError):
    """InfluxDB did not answer a report query; the message says which and why."""


@dataclass
class Heating:
    """One-minute temperatures of one sensor over the heating-season part of the month."""
    sensor: str
    minutes: int = 0  # one-minute means present
    below: int = 0  # … of them below the threshold
    low: float | None = None  # lowest one-minute minimum
    mean: float | None = None


@dataclass
class SiteSeries:
    heating: dict[str, Heating]  # by sensor id
    season_minutes: int  # minutes of the month inside the heating season
    door_opens: list[tuple[float, str]]  # (time, door id) of every door opening
    detector_alarms: dict[str, int]  # alarm signals of detectors by kind (drills included)


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def season_ranges(month: Month, season: Season, tz) -> list[tuple[float, float]]:
    """The parts of ``month`` inside ``season``, as [start, end) Unix times at the site."""
    ranges: list[tuple[float, float]] = []
    for day in month.days():
        if not season.contains(day):
            continue
        a = datetime.combine(day, datetime.min.time(), tz).timestamp()
        b = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).timestamp()
        if ranges and ranges[-1][1] == a:
            ranges[-1] = (ranges[-1][0], b)
        else:
            ranges.append((a, b))
    return ranges


def season_of(cfg: StationConfig, site: Site) -> Season:
    bureaus = {b.id: b for b in cfg.bureaus}
    bureau = site.bureau
    while bureau:
        if bureau in cfg.rules.heating_seasons:
            return cfg.rules.heating_seasons[bureau]
        bureau = bureaus[bureau].parent if bureau in bureaus else None
    return cfg.rules.heating_season


def sleeping_sensors(cfg: StationConfig, site: Site) -> list:
    rooms = {r.id for r in site.rooms if r.people_sleep}
    return [s for s in cfg.sensors if s.kind == "temperature" and s.room in rooms and cfg.site_of(s).id == site.id]


def queries(cfg: StationConfig, site: Site, month: Month, until: float | None = None) -> list[tuple[str, str]]:
    """(name, InfluxQL) of every query the report makes for one site and month."""
    start, end = month.bounds(site.tz)
    end = min(end, until) if until else end
    s = _q(site.id)
    sensors = sleeping_sensors(cfg, site)
    out: list[tuple[str, str]] = []
    if sensors:
        which = " OR ".join(f'"sensor" = {_q(x.id)}' for x in sensors)
        limit = cfg.hazards.sleeping_min_c
        for a, b in season_ranges(month, season_of(cfg, site), site.tz):
            a, b = max(a, start), min(b, end)
            if a >= b:
                continue
            t = f"time >= {int(a * 1000)}ms AND time < {int(b * 1000)}ms"
            base = f'FROM "{TREND}"."reading_1m" WHERE "site" = {s} AND ({which}) AND {t}'
            out.append(("heating", f'SELECT count("value") AS minutes, min("min") AS low, mean("value") AS mean '
                                   f'{base} GROUP BY "sensor"'))
            out.append(("below", f'SELECT count("value") AS below {base} AND "value" < {limit:g} GROUP BY "sensor"'))
    t = f"time >= {int(start * 1000)}ms AND time < {int(end * 1000)}ms"
    exits = [x.id for x in cfg.sensors if x.kind == "door" and getattr(x, "exit", False) and cfg.site_of(x).id == site.id]
    if exits:
        which = " OR ".join(f'"device" = {_q(x)}' for x in exits)
        out.append(("doors", f'SELECT "state" FROM "{RECORDS}"."event" WHERE "site" = {s} AND ({which}) '
                             f'AND "state" = \'open\' AND {t} GROUP BY "device"'))
    out.append(("detectors", f'SELECT count("state") AS n FROM "{RECORDS}"."event" WHERE "site" = {s} AND '
                             f'"state" = \'alarm\' AND {t} GROUP BY "kind"'))
    return out


class Series:
    """An InfluxDB 1.x database read over HTTP."""

    def __init__(self, url: str, database: str = "stationwatch", timeout: float = 120.0):
        self.url, self.database = url.rstrip("/"), database
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def run(self, influxql: str) -> list[dict]:
        """The series of one statement's answer: ``[{"tags": {...}, "columns": [...], "values": [...]}]``."""
        try:
            r = self.http.get(f"{self.url}/query", params={"db": self.database, "q": influxql, "epoch": "ms"})
        except httpx.HTTPError as exc:
            raise SeriesError(f"InfluxDB at {self.url} did not answer: {exc}") from None
        if r.status_code != 200:
            raise SeriesError(f"InfluxDB refused a report query ({r.status_code}): {r.text[:300]}")
        result = r.json()["results"][0]
        if "error" in result:
            raise SeriesError(f"InfluxDB: {result['error']} in {influxql[:200]}")
        return result.get("series", [])

    def site(self, cfg: StationConfig, site: Site, month: Month, until: float | None = None) -> SiteSeries:
        heating: dict[str, Heating] = {}
        doors: list[tuple[float, str]] = []
        detectors: dict[str, int] = {}
        season = 0
        for a, b in season_ranges(month, season_of(cfg, site), site.tz):
            start, end = month.bounds(site.tz)
            a, b = max(a, start), min(b, until or end, end)
            season += max(0, int((b - a) // 60))
        for name, influxql in queries(cfg, site, month, until):
            for series in self.run(influxql):
                tags, cols = series.get("tags", {}), series["columns"]
                for values in series["values"]:
                    row = dict(zip(cols, values))
                    if name in ("heating", "below"):
                        h = heating.setdefault(tags["sensor"], Heating(tags["sensor"]))
                        if name == "heating":
                            h.minutes += row["minutes"] or 0
                            h.low = _min(h.low, row["low"])
                            h.mean = row["mean"] if h.mean is None else (h.mean + (row["mean"] or h.mean)) / 2
                        else:
                            h.below += row["below"] or 0
                    elif name == "doors":
                        doors.append((row["time"] / 1000, tags["device"]))
                    else:
                        detectors[tags["kind"]] = detectors.get(tags["kind"], 0) + (row["n"] or 0)
        return SiteSeries(heating, season, sorted(doors), detectors)


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)
