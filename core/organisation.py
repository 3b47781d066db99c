"""Where a site sits in the reporting chain: province → city → bureau → site.

Bureaus name their ``parent``; a site names its ``bureau``. The city of a site is the nearest
city-level bureau at or above its bureau (a county bureau reports to its city); its province the
nearest province-level one. A site whose bureau has no city above it (a provincial station) is its
own bureau's city, so every site belongs to exactly one city — the unit a bureau server serves and
the folder its dashboards live in.

>>> from stationwatch.core.config import load_config        # doctest: +SKIP
>>> org_path(load_config("docs/examples/city-station.yaml"), "sl-station")  # doctest: +SKIP
OrgPath(province='gd-mz', city='sl-mz', bureau='sl-mz', site='sl-station')
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import Bureau, StationConfig


@dataclass(frozen=True)
class OrgPath:
    province: str
    city: str
    bureau: str
    site: str


def _chain(cfg: StationConfig, bureau_id: str) -> list[Bureau]:
    """The bureau and its parents, nearest first (a cycle in the config stops at the first repeat)."""
    by_id = {b.id: b for b in cfg.bureaus}
    chain: list[Bureau] = []
    current = by_id.get(bureau_id)
    while current is not None and current not in chain:
        chain.append(current)
        current = by_id.get(current.parent) if current.parent else None
    return chain


def org_path(cfg: StationConfig, site_id: str) -> OrgPath:
    site = cfg.site(site_id)
    if site is None:
        raise KeyError(f"no site '{site_id}' / 站点不存在")
    chain = _chain(cfg, site.bureau)
    city = next((b.id for b in chain if b.level == "city"), site.bureau)
    province = next((b.id for b in chain if b.level == "province"), chain[-1].id if chain else site.bureau)
    return OrgPath(province, city, site.bureau, site.id)


def cities(cfg: StationConfig) -> dict[str, list[str]]:
    """City bureau id → the ids of its sites, in config order."""
    out: dict[str, list[str]] = {}
    for site in cfg.sites:
        out.setdefault(org_path(cfg, site.id).city, []).append(site.id)
    return out


def bureau_name(cfg: StationConfig, bureau_id: str) -> str:
    return next((b.name for b in cfg.bureaus if b.id == bureau_id), bureau_id)
