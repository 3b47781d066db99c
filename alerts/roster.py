"""Who a level of the reporting chain reaches, for one site at one moment.

Targets are resolved against the config: ``staff``/``leader`` are the contacts of that role for the
site — only those on duty when a duty roster (排班表) covers the site; ``bureau`` the contacts of the
site's own bureau; ``bureau_up`` those of the bureaus above it (city government, province). Named
``contacts`` are always included. If a roster leaves a role empty (a gap in the roster), everyone of
that role is paged rather than no one.

>>> Directory(cfg).recipients(level, "sl-station", at)        # doctest: +SKIP
['duty-staff']
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Callable

from stationwatch.core.config import Contact, Site, StationConfig
from stationwatch.core.policy import Level, Shift

log = logging.getLogger(__name__)


def on_shift(shift: Shift, local: datetime) -> bool:
    """Is ``local`` (site local time) inside ``shift``? Over-midnight shifts belong to the day they start."""
    start, end, now = dtime.fromisoformat(shift.start), dtime.fromisoformat(shift.end), local.time()
    today, yesterday = local.isoweekday(), (local - timedelta(days=1)).isoweekday()
    if start < end:
        return today in shift.days and start <= now < end
    return (today in shift.days and now >= start) or (yesterday in shift.days and now < end)


class Directory:
    """Contacts by target, site and time."""

    def __init__(self, cfg: StationConfig):
        self.cfg = cfg
        self.contacts: dict[str, Contact] = {c.id: c for c in cfg.contacts}
        self._parents = {b.id: b.parent for b in cfg.bureaus}
        self.targets: dict[str, Callable[[Site, datetime], list[str]]] = {
            "staff": lambda site, local: self._role(site, "staff", local),
            "leader": lambda site, local: self._role(site, "leader", local),
            "bureau": lambda site, local: self._bureau(site.bureau),
            "bureau_up": lambda site, local: [c for b in self._ancestors(site.bureau) for c in self._bureau(b)],
        }

    def recipients(self, level: Level, site_id: str, at: float, extra: list[str] = ()) -> list[str]:
        """Contact ids for ``level`` at ``site_id`` at Unix time ``at``, in order, each once."""
        site = self.cfg.site(site_id)
        found: list[str] = [*extra]
        if site is None:  # the monitoring centre's own alerts (alerts/supervision.py): no site of its own
            for target in level.targets:
                found += self._centre(target)
        else:
            local = datetime.fromtimestamp(at, site.tz)
            for target in level.targets:
                found += self.targets[target](site, local)
        found += level.contacts
        return list(dict.fromkeys(c for c in found if c in self.contacts))

    def _centre(self, target: str) -> list[str]:
        """Who hears of the centre's own trouble: ``supervision.contacts`` (else ``routing.notify``)
        for staff and leader levels; the bureaus of the sites for the bureau levels."""
        if target in ("staff", "leader"):
            return list(self.cfg.supervision.contacts or self.cfg.routing.notify)
        bureaus = list(dict.fromkeys(s.bureau for s in self.cfg.sites))
        if target == "bureau":
            return [c for b in bureaus for c in self._bureau(b)]
        return list(dict.fromkeys(c for b in bureaus for up in self._ancestors(b) for c in self._bureau(up)))

    def on_duty(self, site: Site, local: datetime) -> set[str] | None:
        """Contacts on duty at the site now; None when no roster covers the site."""
        rosters = [r for r in self.cfg.rosters if site.id in r.sites]
        if not rosters:
            return None
        return {c for r in rosters for s in r.shifts if on_shift(s, local) for c in s.contacts}

    def _role(self, site: Site, role: str, local: datetime) -> list[str]:
        everyone = [c.id for c in self.cfg.contacts if c.role == role and site.id in c.sites]
        duty = self.on_duty(site, local)
        if duty is None:
            return everyone
        on = [c for c in everyone if c in duty]
        if everyone and not on:
            log.warning("roster of %s has no %s on duty at %s: paging every %s", site.id, role, local, role)
        return on or everyone

    def _bureau(self, bureau: str | None) -> list[str]:
        return [c.id for c in self.cfg.contacts if c.role == "bureau" and c.bureau == bureau]

    def _ancestors(self, bureau: str | None) -> list[str]:
        out: list[str] = []
        parent = self._parents.get(bureau) if bureau else None
        while parent and parent not in out:
            out.append(parent)
            parent = self._parents.get(parent)
        return out

    def sites_of_bureau(self, bureau: str) -> set[str]:
        """Every site under ``bureau``, its child bureaus included."""
        return {s.id for s in self.cfg.sites if s.bureau == bureau or bureau in self._ancestors(s.bureau)}
