"""The engine's inbox: what the broker delivered, in order — except that an alarm does not wait
behind a country's readings, nor behind a country's births.

A readings batch, a single reading or a camera heartbeat is *routine*; anything else a gateway sends
is *urgent*, and an *alarm* above all: an event (a smoke detector's alarm, an exit door) or the local
alarm (``health/local_alarm``); its status, a will, its other health and its patrol answers come next.
Commands to gateways and their replies are not urgent (the engine does not subscribe to them).
:meth:`Inbox.take` hands out, while urgent messages wait, the urgent ones — alarms first — each
together with every message of the same site that arrived before it, in their order, and only then
the rest. The rules judge a site by its own messages only, so each site still sees its messages in
the order its gateway sent them; only other sites' messages wait one commit longer. A commit is
bounded (``limit`` messages, ``work_max`` observations: a batch counts its items), so an alarm
behind a backlog waits for one short commit, not for the backlog — and behind 2,000 gateways' births
after the broker restarted, for one commit of urgent messages, not for 2,000 commits of one each.

Acknowledgements to the broker stay in arrival order (MQTT 3.1.1 §4.6, MQTT 5 §4.6: PUBACKs in the
order the PUBLISH packets came): :class:`AckOrder` releases a message's acknowledgement once it and
every message before it are committed.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, NamedTuple

from stationwatch.core.contract import MessageClass
from stationwatch.core.wire import LOCAL_ALARM, ROOT

from .partition import Partitions

ROUTINE = frozenset(k.value for k in (MessageClass.READINGS, MessageClass.READING, MessageClass.HEARTBEAT,
                                      MessageClass.CMD, MessageClass.REPLY))
GATEWAY_ROOT = ROOT + "/"
ROUTINE_RANK, URGENT_RANK, ALARM_RANK = 0, 1, 2


class Delivered(NamedTuple):
    topic: str
    body: bytes
    mid: int
    qos: int
    n: int  # arrival number: acknowledgements go back in this order
    rank: int  # ROUTINE_RANK, URGENT_RANK or ALARM_RANK
    site: str  # its partition (alerts/partition.py)
    cost: int  # observations (work)

    @property
    def urgent(self) -> bool:
        return self.rank > ROUTINE_RANK


def rank(topic: str) -> int:
    """How soon a message is judged: a gateway's (``sw/v1/{site}/{gateway}/{class}…``) event or local
    alarm first, then its other messages that are not routine; the services' heartbeats and the
    engine's probe go in order."""
    parts = topic.split("/", 6)
    if not topic.startswith(GATEWAY_ROOT) or len(parts) < 5 or parts[4] in ROUTINE:
        return ROUTINE_RANK
    alarm = parts[4] == MessageClass.EVENT.value or (parts[4] == MessageClass.HEALTH.value and parts[5:6] == [LOCAL_ALARM])
    return ALARM_RANK if alarm else URGENT_RANK


def urgent(topic: str) -> bool:
    return rank(topic) > ROUTINE_RANK


def work(topic: str, body: bytes) -> int:
    """What a message costs the engine, in observations: a ``readings`` batch one per item."""
    return (body.count(b'"sensor"') or 1) if topic.endswith("/" + MessageClass.READINGS.value) else 1


URGENT_RUN = 20  # urgent commits in a row before one of routine messages: a gateway flooding events starves nobody


class Inbox:
    def __init__(self) -> None:
        self._items: deque[Delivered] = deque()
        self._urgent = 0  # urgent messages waiting
        self._run = 0  # urgent commits since the last routine one
        self._cond = threading.Condition()
        self._n = 0

    def put(self, topic: str, body: bytes, mid: int, qos: int) -> None:
        with self._cond:
            m = Delivered(topic, body, mid, qos, self._n, rank(topic), Partitions.of_topic(topic), work(topic, body))
            self._items.append(m)
            self._n += 1
            self._urgent += m.urgent
            self._cond.notify()

    def empty(self) -> bool:
        return not self._items

    def urgent_waiting(self) -> bool:
        return self._urgent > 0

    def take(self, timeout: float, limit: int, work_max: int) -> list[Delivered]:
        """Messages for one commit: urgent ones (alarms first) with their sites' messages before them,
        else the oldest; up to ``limit`` messages and about ``work_max`` observations (at least one
        message). [] after ``timeout`` s of nothing."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: self._items, timeout):
                return []
            if self._urgent and self._run < URGENT_RUN:
                self._run += 1
                return self._urgent_first(limit, work_max)
            self._run = 0
            batch = [self._items.popleft()]
            cost = batch[0].cost
            while self._items and len(batch) < limit and cost < work_max:
                batch.append(self._items.popleft())
                cost += batch[-1].cost
            self._urgent -= sum(m.urgent for m in batch)
            return batch

    def _urgent_first(self, limit: int, work_max: int) -> list[Delivered]:
        """Urgent messages, alarms first then by arrival, each with what its site sent before it, for
        as long as the commit's bounds allow (at least one); everything else keeps its place."""
        so_far: dict[str, tuple[int, int]] = {}  # site → (cost, count) of its messages to here, in arrival order
        upto: list[tuple[Delivered, int, int]] = []  # an urgent message, its site's cost and count up to it
        for m in self._items:
            site_cost, site_count = so_far.get(m.site, (0, 0))
            site_cost, site_count = site_cost + m.cost, site_count + 1
            so_far[m.site] = site_cost, site_count
            if m.urgent:
                upto.append((m, site_cost, site_count))
        cut: dict[str, tuple[int, int, int]] = {}  # site → (last arrival number taken, its cost, its count)
        cost = taken = 0
        for m, site_cost, site_count in sorted(upto, key=lambda u: (-u[0].rank, u[0].n)):
            had_n, had_cost, had_count = cut.get(m.site, (-1, 0, 0))
            if m.n <= had_n:
                continue  # taken already, with a later message of its site
            more, more_count = site_cost - had_cost, site_count - had_count
            if cut and (cost + more > work_max or taken + more_count > limit):
                break
            cut[m.site] = (m.n, site_cost, site_count)
            cost, taken = cost + more, taken + more_count
        chosen, kept = [], deque()
        for m in self._items:
            (chosen if m.n <= cut.get(m.site, (-1,))[0] else kept).append(m)
        self._items = kept
        self._urgent -= sum(m.urgent for m in chosen)
        return chosen


class AckOrder:
    """Acknowledge in arrival order: ``done(messages, ack)`` calls ``ack(mid, qos)`` for each QoS 1
    message that is done and has every message before it done too."""

    def __init__(self) -> None:
        self._next = 0
        self._done: dict[int, Delivered] = {}

    def done(self, messages: list[Delivered], ack: Callable[[int, int], Any]) -> None:
        for m in messages:
            self._done[m.n] = m
        while self._next in self._done:
            m = self._done.pop(self._next)
            if m.qos:
                ack(m.mid, m.qos)
            self._next += 1
