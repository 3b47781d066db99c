"""Hands spooled messages (gateway/spool.py) to the MQTT link in sending order.

On the broker's PUBACK (QoS 0 heartbeats: once written to the socket) a message is acknowledged
to the spool, which removes it — or, end to end, keeps it until ingest's ``cmd/stored`` names its
seq. A message the broker took more than ``store_timeout_s`` before the centre's latest receipt and
that the centre never confirmed was lost (a broker that died before saving its queues) and is sent
again. Measured against the latest receipt, not the clock: while the centre stores nothing (InfluxDB
or ingest down) nothing is sent twice, and the broker's queue keeps what it holds. Except while the
agent drains before it stops: then the clock counts too, so messages that went to a broker with no
ingest subscribed yet (its sessions lost in a crash) are sent again before the goodbye instead of
staying spooled — no later receipt would come to show them lost, and a second copy is harmless. ``window``
bounds the messages awaiting PUBACK. Messages handed over stay with paho until acknowledged, across
reconnections; after a restart of the agent whatever is still spooled is sent again.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque

from stationwatch.core.mqtt import MqttLink
from stationwatch.core.wire import DELIVERY

from .spool import ROUTINE, URGENT, Spool, Spooled

log = logging.getLogger(__name__)

HELD_BY_PAHO = {0, 4}  # publish() results after which paho keeps a QoS 1 message until its PUBACK:
                       # MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN (sent once the connection is back)
REQUEUE_EVERY_S = 5.0  # how often unconfirmed messages are looked for


class Forwarder:
    def __init__(self, spool: Spool, link: MqttLink, window: int = 1000, store_timeout_s: float = 120.0):
        self.spool, self.link, self.window, self.store_timeout_s = spool, link, window, store_timeout_s
        self._acked: deque[int] = deque()  # mids from paho's thread; resolved in ours
        self._inflight: dict[int, Spooled] = {}  # mid → message
        self._cursor: dict[int, int] = {URGENT: 0, ROUTINE: 0}
        self._wake, self._stopping, self._reconnected = threading.Event(), threading.Event(), threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._requeue_at = 0.0
        self._draining = False
        link.client.on_publish = self._on_publish

    def start(self) -> "Forwarder":
        self._thread = threading.Thread(target=self._run, name="spool-forwarder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def wake(self) -> None:
        """New messages were spooled (or the link came back, or the centre stored some): look again now."""
        self._idle.clear()
        self._wake.set()

    def connected(self) -> None:
        """Called on every (re)connection: QoS 0 messages paho had not written yet are gone."""
        self._reconnected.set()
        self.wake()

    def drain(self, timeout: float) -> bool:
        """Wait until everything spooled has been acknowledged (end to end: stored); False at the deadline."""
        self._draining = True
        self.wake()
        return self._idle.wait(timeout)

    # paho's network thread: record only; never take a lock paho might wait on
    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acked.append(mid)
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                if self._reconnected.is_set():
                    self._reconnected.clear()
                    self._forget_unwritten()
                self._settle()
                self._requeue()
                if self.link.connected.is_set():
                    self._hand_over()
                if not self._inflight and self.spool.rows == 0:
                    self._idle.set()
            except sqlite3.Error:
                log.exception("缓存读写失败 / spool error; retrying")
                self._stopping.wait(1.0)

    def _settle(self) -> None:
        done: list[int] = []
        while self._acked:
            row = self._inflight.pop(self._acked.popleft(), None)
            if row is not None:
                done.append(row.id)
        if done:
            self.spool.sent(done)

    def _requeue(self) -> None:
        now = time.monotonic()
        since = max(self.spool.last_receipt or 0.0, time.time() if self._draining else 0.0)
        if now < self._requeue_at or not since:
            return
        self._requeue_at = now + (1.0 if self._draining else REQUEUE_EVERY_S)
        for priority, lowest in self.spool.requeue(since - self.store_timeout_s).items():
            self._cursor[priority] = min(self._cursor[priority], lowest - 1)

    def _forget_unwritten(self) -> None:
        for mid, row in list(self._inflight.items()):
            if DELIVERY[row.kind].qos == 0:
                del self._inflight[mid]
                if row.id > 0:
                    self._cursor[row.priority] = min(self._cursor[row.priority], row.id - 1)

    def _hand_over(self) -> None:
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        in_flight = {row.id for row in self._inflight.values()}
        for row in self.spool.pending(self._cursor, room):
            if row.id not in in_flight:
                info = self.link.publish(row.topic, row.payload, row.kind)
                if info.rc not in (HELD_BY_PAHO if DELIVERY[row.kind].qos else {0}):  # not taken: try later
                    return
                self._inflight[info.mid] = row
            if row.id > 0:  # held in memory (negative ids) are not in the file's order
                self._cursor[row.priority] = max(self._cursor[row.priority], row.id)
