"""Which sites an engine judges, and taking sites over (several engines on one PostgreSQL store,
alerts/leases.py): narrowing at once when a lease is found lost, adopting the rules' memory and the open
alerts of sites gained, queueing again the notices a dead engine was sending, and replaying the
messages kept while another engine owned a site — skipping those its last owner had judged.

A part of :class:`stationwatch.alerts.engine.AlertEngine`, kept apart so the engine's module stays the
pipeline; it uses the engine's ``scope``, ``notifier``, ``store``, ``situation``, ``partitions``,
``_open``, ``_lock``, ``_wake`` and ``handle_batch``."""
from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

from . import outbox

if TYPE_CHECKING:
    from .records import Alert

log = logging.getLogger("stationwatch.alerts.engine")


class SiteOwnership:
    def narrow(self, scope: frozenset[str]) -> None:
        """Judge and notify for ``scope`` only, at once (a lease was found lost by a refused write,
        in whichever thread made it): no lock taken, plain assignments."""
        self.scope = frozenset(scope)
        if self.notifier is not None:
            self.notifier.sites = self.scope

    def own(self, scope: frozenset[str], gained: set[str] = frozenset()) -> None:
        """From now on this engine judges ``scope`` only. For the ``gained`` partitions (taken over,
        or new), what the rules remember and which alerts are open are read again from the store —
        the engine that had them wrote them there — and notices its dispatcher was cut off from
        are queued again."""
        with self._lock:
            self.scope = frozenset(scope)
            if self.notifier is not None:
                self.notifier.sites = self.scope
            if not gained:
                return
            self.situation.mem.adopt(self.store.load_memory(), lambda ns, key: self.partitions.of_memory(ns, key) in gained)
            self._open = self.store.open_keys()
            self.resting.forget()  # what the rules remember was read again: every sensor judged in full once
            self.situation.forget_said()
        self.requeue_orphans()

    def requeue_orphans(self) -> None:
        """Notices of this engine's sites that an engine no longer alive was sending: queued again."""
        if not self.scope:
            return
        with self.store.tx() as db:
            again = outbox.requeue_interrupted(db, self.scope, alive_at=time.time())
        if again:
            log.warning("outbox: %d notice(s) an engine no longer alive was sending are queued again", again)
            self._wake()

    def replay(self, messages: list[tuple[str, bytes]]) -> list[Alert]:
        """Messages of sites just taken over, kept while another engine owned them: those its last
        owner had committed (by the gateway's sequence number, in the store's memory) are skipped."""
        fresh = []
        for topic, body in messages:
            try:
                seq, gateway = json.loads(body).get("seq"), topic.split("/")[3]
            except (ValueError, AttributeError, IndexError):
                seq, gateway = None, ""
            if seq is None or not isinstance(seq, int) or seq > self.situation.mem.get("seq", gateway, -1):
                fresh.append((topic, body))
        if fresh:
            log.warning("replaying %d message(s) of sites taken over (%d already judged by their last owner)",
                        len(fresh), len(messages) - len(fresh))
        return self.handle_batch(fresh) if fresh else []
