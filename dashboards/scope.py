"""What one city's dashboards cover, read from the organisation config: its sites, their sensors by
kind, cameras and gateways, the names to show for ids, and the rule thresholds to draw.

A panel about a kind of sensor the city does not have is left out (a city without pressure sensors
gets no empty pressure chart), so every panel of a generated dashboard has something to show.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from stationwatch.core.config import StationConfig
from stationwatch.core.organisation import OrgPath, bureau_name, cities, org_path

UID_MAX = 40  # Grafana's limit for dashboard and folder uids


def uid(prefix: str, ident: str) -> str:
    """A stable uid within Grafana's 40 characters (long ids are shortened with a hash)."""
    text = f"{prefix}-{ident}"
    if len(text) <= UID_MAX:
        return text
    return f"{prefix}-{ident[:UID_MAX - len(prefix) - 10]}-{hashlib.sha1(ident.encode()).hexdigest()[:8]}"


def regex(ids) -> str:
    """``(a|b)`` for a query; ids are ``[a-z0-9_-]`` (config-checked): nothing to escape."""
    return "(" + "|".join(sorted(ids)) + ")"


@dataclass
class CityScope:
    cfg: StationConfig
    city: str  # bureau id of the city

    @property
    def sites(self):
        ids = set(cities(self.cfg).get(self.city, []))
        return [s for s in self.cfg.sites if s.id in ids]

    @property
    def name(self) -> str:
        return bureau_name(self.cfg, self.city)

    @property
    def path(self) -> OrgPath:
        return org_path(self.cfg, self.sites[0].id)

    def _gateways(self) -> set[str]:
        sites = {s.id for s in self.sites}
        return {g.id for g in self.cfg.gateways if g.site in sites}

    def sensors(self, *kinds: str, sleeping: bool | None = None) -> list:
        gateways, out = self._gateways(), []
        for s in self.cfg.sensors:
            if s.gateway not in gateways or s.kind not in kinds:
                continue
            room = self.cfg.site_of(s).room(s.room)
            if sleeping is None or room.people_sleep == sleeping:
                out.append(s)
        return out

    def cameras(self) -> list:
        gateways = self._gateways()
        return [c for c in self.cfg.cameras if c.gateway in gateways]

    def gateways(self) -> list:
        gateways = self._gateways()
        return [g for g in self.cfg.gateways if g.id in gateways]

    def names(self, devices) -> dict[str, str]:
        return {d.id: f"{d.name} {d.id}" for d in devices}

    def site_names(self) -> dict[str, str]:
        return {s.id: f"{s.name} {s.id}" for s in self.sites}

    def heartbeat_interval(self) -> str:
        """The shortest sensible $__interval for camera charts: one heartbeat period."""
        longest = max((c.heartbeat_s for c in self.cameras()), default=60.0)
        return f"{int(round(longest))}s"


def city_scopes(cfg: StationConfig) -> list[CityScope]:
    return [CityScope(cfg, city) for city in cities(cfg)]
