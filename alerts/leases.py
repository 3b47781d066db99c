"""Alert engines partitioned by site: who owns which site, as leases in the shared PostgreSQL store.

Each engine has a row in ``engines`` (renewed on every beat) and holds the sites it owns as rows of
``site_leases`` (owner, fencing token, expiry). The monitoring centre's own alerts (the pipeline's
hops, :data:`~stationwatch.core.config.CENTRE`) are one more partition, leased like a site.

* **Who should own a site**: rendezvous hashing over the engines alive — the engine with the highest
  ``sha256(site | engine)`` — so each engine gets about ``1/n`` of the sites, and an engine joining
  or leaving moves only the sites it gains or had.
* **Renewal**: every :data:`RENEW_S` an engine renews its leases to ``now +`` :data:`LEASE_S` and
  its ``engines`` row with them, in one transaction. A site whose preferred engine is another live
  one is let go (its lease ends now), and that engine takes it on its next beat.
* **Takeover**: a lease not renewed by its expiry is taken by the engine that now ranks first for
  the site (the dead engine's ``engines`` row expires at the same moment, so it no longer ranks).
  An engine SIGKILLed right after a renewal has its sites taken at most ``LEASE_S + RENEW_S`` later.
* **Fencing**: every take increments the site's token. Before an engine commits any write, the
  store calls :meth:`Leases.fence` inside the transaction (which holds the store's writers' lock,
  so no take can interleave): if one of its leases has a new token or owner, or has expired, the
  transaction is rolled back with :class:`LeaseLost` — an engine paused past its lease (SIGSTOP, a
  long GC, a VM migration) cannot write after another has taken over.

Time is the engines' clocks (``time.time``): their hosts keep NTP time; a skew much smaller than
``LEASE_S`` is harmless.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .records import AlertError

log = logging.getLogger(__name__)

LEASE_S = 10.0  # a lease, and an engine's row, last this long unless renewed
RENEW_S = 2.0  # engines renew (and take what is free) this often
TAKEOVER_S = LEASE_S + RENEW_S  # a killed engine's sites are owned again after at most this long


class LeaseLost(AlertError):
    """A lease this engine counted on has been taken or has run out: the write is refused."""


def rank(site: str, engine: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{site}|{engine}".encode()).digest()[:8], "big")


def preferred(site: str, engines: Iterable[str]) -> str | None:
    """The engine that should own ``site`` (rendezvous hashing); None when no engine is alive."""
    return max(engines, key=lambda e: (rank(site, e), e), default=None)


@dataclass
class Change:
    gained: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)


class Leases:
    """One engine's leases on ``partitions`` (its config's sites and the centre) in ``store``."""

    def __init__(self, store, owner: str, partitions: Iterable[str], *, lease_s: float = LEASE_S,
                 clock: Callable[[], float] = time.time):
        self.store, self.owner, self.partitions = store, owner, tuple(dict.fromkeys(partitions))
        self.lease_s, self.clock = lease_s, clock
        self.held: dict[str, int] = {}  # site → the token this engine holds it with
        self.started_at = clock()
        self.on_lost: Callable[[frozenset[str]], None] = lambda sites: None  # told the sites still held
        self._lock = threading.Lock()  # held is read by the engine's loop and changed by any writer's fence

    @property
    def sites(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self.held)

    def beat(self) -> Change:
        """Renew, let go of what another live engine should own, take what is free and ours."""
        now, change = self.clock(), Change()
        until = now + self.lease_s
        with self.store.tx(fenced=False) as db:
            db.execute("INSERT INTO engines (id, host, pid, started_at, expires_at) VALUES (?,?,?,?,?)"
                       " ON CONFLICT(id) DO UPDATE SET host=excluded.host, pid=excluded.pid,"
                       " expires_at=excluded.expires_at",
                       (self.owner, socket.gethostname(), os.getpid(), self.started_at, until))
            alive = [r["id"] for r in db.execute("SELECT id FROM engines WHERE expires_at>?", (now,))]
            leases = {r["site"]: r for r in db.execute("SELECT * FROM site_leases")}
            for site in self.partitions:
                row, best = leases.get(site), preferred(site, alive)
                mine = row is not None and row["owner"] == self.owner and row["expires_at"] > now
                if mine and best != self.owner:  # hand over to the engine that ranks first
                    db.execute("UPDATE site_leases SET expires_at=? WHERE site=? AND token=?",
                               (now, site, row["token"]))
                elif mine:
                    db.execute("UPDATE site_leases SET expires_at=? WHERE site=? AND token=?",
                               (until, site, row["token"]))
                    with self._lock:
                        self.held[site] = row["token"]
                    continue
                elif best == self.owner and row is None:
                    if db.execute("INSERT INTO site_leases (site, owner, token, expires_at, taken_at) VALUES"
                                  " (?,?,1,?,?) ON CONFLICT(site) DO NOTHING", (site, self.owner, until, now)).rowcount:
                        with self._lock:
                            self.held[site] = 1
                        change.gained.add(site)
                    continue
                elif best == self.owner and row["expires_at"] <= now:
                    db.execute("UPDATE site_leases SET owner=?, token=token+1, expires_at=?, taken_at=?"
                               " WHERE site=? AND token=?", (self.owner, until, now, site, row["token"]))
                    with self._lock:
                        self.held[site] = row["token"] + 1
                    change.gained.add(site)
                    if row["owner"] != self.owner:
                        log.warning("site %s taken over from engine %s (lease expired %.1f s ago)", site,
                                    row["owner"], now - row["expires_at"])
                    continue
                with self._lock:
                    had = self.held.pop(site, None)
                if had is not None:
                    change.lost.add(site)
        if change.gained or change.lost:
            log.info("engine %s: sites gained %s, let go %s; holds %d", self.owner, sorted(change.gained),
                     sorted(change.lost), len(self.held))
        return change

    def fence(self, db) -> None:
        """Inside a write transaction: :class:`LeaseLost` unless every lease held is still this
        engine's, with the same token, and not expired. Sites lost are dropped from :attr:`held`."""
        if not self.held:
            return
        now = self.clock()
        valid = {r["site"]: r["token"] for r in db.execute(
            "SELECT site, token FROM site_leases WHERE owner=? AND expires_at>?", (self.owner, now))}
        with self._lock:
            gone = {site for site, token in self.held.items() if valid.get(site) != token}
            for site in gone:
                self.held.pop(site, None)
        if gone:
            self.on_lost(self.sites)
            raise LeaseLost(f"租约已失效，写入被拒绝：{', '.join(sorted(gone))} / lease lost for"
                            f" {', '.join(sorted(gone))}: engine {self.owner} may no longer write for them")

    def release(self) -> None:
        """A clean stop: let every lease go now, so the others take over at their next beat."""
        now = self.clock()
        with self.store.tx(fenced=False) as db:
            db.execute("UPDATE site_leases SET expires_at=? WHERE owner=?", (now, self.owner))
            db.execute("UPDATE engines SET expires_at=? WHERE id=?", (now, self.owner))
        with self._lock:
            self.held.clear()

    def owners(self) -> dict[str, tuple[str, int, float]]:
        """site → (owner, token, expires_at), as the store has it (for tests and ``/health``)."""
        return {r["site"]: (r["owner"], r["token"], r["expires_at"])
                for r in self.store.query("SELECT * FROM site_leases")}
