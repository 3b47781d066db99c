"""Which partition (a site, or the monitoring centre) a message, a verdict or an entry of the rules'
memory belongs to — what an engine that owns only some sites (:mod:`.leases`) keeps or drops.

* a gateway's message: the site in its topic (``sw/v1/{site}/…``); a service's heartbeat or the
  engine's own probe (``sw/svc/v1/…``): the centre;
* a verdict: its site (a :class:`~.records.Raised`) or its subject's first part (a ``Clear``);
* a memory entry: the site of the first part of its key (``|``-separated) that names a site, a
  gateway or a device of the config; anything else (the engine's start, the hops) is the centre's.

>>> cfg = load_config(EXAMPLES / "city-station.yaml")                         # doctest: +SKIP
>>> Partitions(cfg).of_memory("zone", "sl-station|z-dorm-f|0")              # doctest: +SKIP
'sl-station'
"""
from __future__ import annotations

from stationwatch.core.config import CENTRE, StationConfig
from stationwatch.core.wire import ROOT

from .verdicts import Verdict

GATEWAY_PREFIX = ROOT + "/"


class Partitions:
    def __init__(self, cfg: StationConfig):
        self.sites = tuple(s.id for s in cfg.sites)
        self.all = (*self.sites, CENTRE)
        self._site_of: dict[str, str] = {s: s for s in self.sites}
        self._site_of.update({gw.id: gw.site for gw in cfg.gateways})
        gateway_site = {gw.id: gw.site for gw in cfg.gateways}
        self._site_of.update({d.id: gateway_site.get(d.gateway, CENTRE) for d in [*cfg.sensors, *cfg.cameras]})

    @staticmethod
    def of_topic(topic: str) -> str:
        if topic.startswith(GATEWAY_PREFIX):
            return topic[len(GATEWAY_PREFIX):].split("/", 1)[0]
        return CENTRE

    @staticmethod
    def of_verdict(verdict: Verdict) -> str:
        site = getattr(verdict, "site", None)
        return site if site is not None else verdict.subject.split("/", 1)[0]

    def of_memory(self, ns: str, key: str) -> str:
        for part in key.split("|"):
            if part in self._site_of:
                return self._site_of[part]
        return CENTRE
