"""The engine's inbox: what the broker delivered, in order — except that an alarm does not wait
behind a country's readings.

A readings batch, a single reading or a camera heartbeat is *routine*; anything else a gateway sends
(an event: a smoke detector's alarm, an exit door; its status, a will; its health, the local alarm) is
*urgent*. :meth:`Inbox.take` hands out, while an urgent message waits, that message together with
every message of the same site that arrived before it, in their order, and only then the rest. The
rules judge a site by its own messages only, so each site still sees its messages in the order its
gateway sent them; only other sites' routine messages wait one commit longer. A commit is bounded
(``limit`` messages, ``work_max`` observations: a batch counts its items), so an alarm behind a
backlog waits for one short commit, not for the backlog.

Acknowledgements to the broker stay in arrival order (MQTT 3.1.1 §4.6, MQTT 5 §4.6: PUBACKs in the
order the PUBLISH packets came): :class:`AckOrder` releases a message's acknowledgement once it and
every message before it are committed.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, NamedTuple

from stationwatch.core.contract import MessageClass
from stationwatch.core.wire import ROOT

from .partition import Partitions

ROUTINE = frozenset(k.value for k in (MessageClass.READINGS, MessageClass.READING, MessageClass.HEARTBEAT))
GATEWAY_ROOT = ROOT + "/"


class Delivered(NamedTuple):
    topic: str
    body: bytes
    mid: int
    qos: int
    n: int  # arrival number: acknowledgements go back in this order
    urgent: bool
    site: str  # its partition (alerts/partition.py)


def urgent(topic: str) -> bool:
    """A gateway's message (``sw/v1/{site}/{gateway}/{class}…``) whose class is not a reading, a
    readings batch or a camera heartbeat; the services' heartbeats and the engine's probe go in order."""
    parts = topic.split("/", 5)
    return topic.startswith(GATEWAY_ROOT) and len(parts) > 4 and parts[4] not in ROUTINE


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
            hurry = urgent(topic)
            self._items.append(Delivered(topic, body, mid, qos, self._n, hurry, Partitions.of_topic(topic)))
            self._n += 1
            self._urgent += hurry
            self._cond.notify()

    def empty(self) -> bool:
        return not self._items

    def take(self, timeout: float, limit: int, work_max: int) -> list[Delivered]:
        """Messages for one commit: an urgent one with its site's messages before it, else the oldest,
        up to ``limit`` messages and about ``work_max`` observations. [] after ``timeout`` s of nothing."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: self._items, timeout):
                return []
            if self._urgent and self._run < URGENT_RUN:
                self._run += 1
                return self._first_urgent()
            self._run = 0
            batch = [self._items.popleft()]
            cost = work(batch[0].topic, batch[0].body)
            while self._items and len(batch) < limit and cost < work_max:
                batch.append(self._items.popleft())
                cost += work(batch[-1].topic, batch[-1].body)
            self._urgent -= sum(m.urgent for m in batch)
            return batch

    def _first_urgent(self) -> list[Delivered]:
        """The oldest urgent message and what its site sent before it; the others keep their places
    (a scan of the inbox: the broker keeps at most ``max_inflight_messages`` QoS 1 messages in it)."""
        k = next(i for i, m in enumerate(self._items) if m.urgent)
        site = self._items[k].site
        taken, kept = [], deque()
        for i, m in enumerate(self._items):
            (taken if i <= k and m.site == site else kept).append(m)
        self._items = kept
        self._urgent -= sum(m.urgent for m in taken)
        return taken


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
