"""The organisation and the database's own layout, written into InfluxDB beside the data, so a
dashboard can chain its choices down the organisation and pick the right resolution by itself.

``organisation`` (policy ``records``): one point per room — tags ``province``, ``city``,
``bureau``, ``site``, ``room`` (ids from the config), fields with the names. Grafana's template
variables read it with ``SHOW TAG VALUES`` (province → city → bureau → site → room). The hierarchy
is a look-up beside the readings rather than tags on every reading: a reading's series stays the
device's whatever bureau the site reports to after a reorganisation.

``resolution`` (policy ``records``): which source answers a time range of a given length —
``raw.reading`` (every reading) up to :data:`RAW_UP_TO_S`, ``trend.reading_1m`` (1-minute means,
min and max) beyond. A dashboard's hidden variable asks ``SELECT first("source") … WHERE
"up_to_ms" >= $__range_ms``.

Both are rewritten by ingest when it starts and every :data:`REFRESH_S`, with the current time:
kept as long as the longest data (400 days), a site removed from the config disappears from the
choices when its last points expire, and several ingest processes (or cities) sharing a database
never remove each other's sites.
"""
from __future__ import annotations

from dataclasses import dataclass

from stationwatch.core.config import StationConfig
from stationwatch.core.organisation import bureau_name, org_path

from .influx import RAW_POLICY, RECORDS_POLICY, TREND_POLICY, Point

REFRESH_S = 6 * 3600
# Up to 12 h the raw readings are shown; beyond, 1-minute means. At 720 points a panel, 12 h is one
# point a minute: the resolution of `trend`, so the switch never coarsens what a chart can show.
RAW_UP_TO_S = 12 * 3600


@dataclass(frozen=True)
class Source:
    policy: str
    measurement: str
    up_to_s: float  # the longest time range this source answers

    @property
    def name(self) -> str:
        return f'"{self.policy}"."{self.measurement}"'


# ordered by how fine they are: the first whose up_to_s covers a range answers it
SOURCES = (Source(RAW_POLICY, "reading", RAW_UP_TO_S),
           Source(TREND_POLICY, "reading_1m", 100 * 365 * 86400.0))  # answers whatever range it holds


def directory_points(cfg: StationConfig, now_ms: int) -> list[Point]:
    points = []
    for site in cfg.sites:
        path = org_path(cfg, site.id)
        names = {"site_name": site.name, "bureau_name": bureau_name(cfg, path.bureau),
                 "city_name": bureau_name(cfg, path.city), "province_name": bureau_name(cfg, path.province)}
        for room in site.rooms:
            tags = {"province": path.province, "city": path.city, "bureau": path.bureau, "site": site.id,
                    "room": room.id}
            fields = {**names, "room_name": room.name, "room_kind": room.kind, "sleeping": room.people_sleep}
            points.append(Point("organisation", tags, fields, now_ms, RECORDS_POLICY))
    return points


def resolution_points(now_ms: int) -> list[Point]:
    """One point per source; the finer source a millisecond earlier, so ``first()`` prefers it."""
    return [Point("resolution", {"source_policy": s.policy}, {"source": s.name, "up_to_ms": s.up_to_s * 1000.0},
                  now_ms + i, RECORDS_POLICY) for i, s in enumerate(SOURCES)]


def layout_points(cfg: StationConfig, now_ms: int) -> list[Point]:
    return directory_points(cfg, now_ms) + resolution_points(now_ms)
