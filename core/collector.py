"""The cycle collector, tuned for a service that turns a stream of messages into short-lived objects.

Points, observations, their dicts and strings hold no reference cycles, yet every 700 allocations
wake the collector, and its full passes walk every object alive — the organisation config among
them, millions of objects for a country. :func:`tune` moves what exists at start-up (the config) into
the permanent generation and lets the youngest generation fill to 20,000 before a pass. Measured
(docs/BENCHMARKS.md, issue 14): ingest on batched readings ~6.4 → ~4.6 µs a point; the alert engine
on 2,000 sites ~48 → ~44 µs a reading.

Loading a country's config makes millions of objects that all live, and each automatic full pass
on the way walked all of them again: :func:`paused` holds the collector off while a config loads.

The alert engine cannot let the collector choose its moment. CPython reuses small tuples from a
free list without counting them towards the youngest generation's threshold, and the engine keeps
a few per device (128,000 for a country): between two automatic passes ~420,000 of them piled up,
and the pass that walked them held the engine — and an alarm behind it — for ~200–330 ms. An engine
that calls :class:`Pace`'s :meth:`~Pace.between` after each commit collects the youngest generation
there (a few ms), the middle one every :data:`MIDDLE_EVERY` of those, and the oldest (~350 ms for a
country) at most every :data:`FULL_EVERY_S`, when nothing urgent waits.
"""
from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Callable, Iterator

YOUNG = 20_000
MIDDLE_EVERY = 10  # youngest-generation passes per pass of the middle one (CPython's own default)
FULL_EVERY_S = 600.0  # at most one full pass this often, at a safe point
FULL_OVERDUE = 3  # × FULL_EVERY_S: past this a full pass runs even with an alarm waiting (memory stays bounded)
NEVER = 1_000_000_000  # an automatic threshold no count reaches


def tune(paced: bool = False) -> None:
    """Call once the long-lived state (the config) is loaded. ``paced``: the caller runs
    :meth:`Pace.between` at its safe points, and the collector never starts a full pass on its own."""
    gc.freeze()
    gc.set_threshold(YOUNG, 50, NEVER if paced else 100)


@contextmanager
def paused() -> Iterator[None]:
    """No automatic pass inside (loading state that all lives); the collector as it was after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Pace:
    """When the collector runs, chosen by the service: :meth:`between` at points where no alarm is
    being judged. Returns the generation collected, for the service's figures."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, full_every_s: float = FULL_EVERY_S):
        self.clock = clock
        self.full_every_s = full_every_s
        self._last_full = clock()
        self.passes = [0, 0, 0]  # by generation
        self.slowest_s = [0.0, 0.0, 0.0]

    def between(self, urgent_waiting: bool = False) -> int:
        since_full = self.clock() - self._last_full
        middle_due = gc.get_count()[1] >= MIDDLE_EVERY
        if since_full >= self.full_every_s * FULL_OVERDUE or (since_full >= self.full_every_s and not urgent_waiting):
            generation = 2
        else:
            generation = 1 if middle_due else 0
        started = time.perf_counter()
        gc.collect(generation)
        took = time.perf_counter() - started
        if generation == 2:
            self._last_full = self.clock()
        self.passes[generation] += 1
        self.slowest_s[generation] = max(self.slowest_s[generation], took)
        return generation

    def figures(self) -> dict[str, list]:
        """For the service's heartbeat: passes by generation and the slowest of each, in ms."""
        return {"passes": list(self.passes), "slowest_ms": [round(s * 1000, 1) for s in self.slowest_s]}
