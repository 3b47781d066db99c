"""Ingest's queue between the MQTT link and the InfluxDB writer, bounded in messages and bytes.

While InfluxDB is away nothing leaves the queue, so what comes in must be bounded:

* **QoS 1 waits for room** — back-pressure. The link's network thread stops reading; the broker,
  whose in-flight window (``max_inflight_messages``) is then full of unacknowledged messages, keeps
  the rest in the session's queue. Nothing is lost. With the generated broker config the window is
  far smaller than the queue, so the wait is a second line that a broker without a window would need.
* **QoS 0 is dropped and counted**: routine messages (readings, camera heartbeats, health samples)
  once ``routine_qos0`` messages are queued, any other (an event or status someone sent at QoS 0)
  once the queue is four-fifths full — QoS 0 never takes the room QoS 1 needs.

>>> q = Backlog(max_messages=100, max_bytes=10_000, routine_qos0=10)
>>> [q.put(i, 100, qos=0, routine=True) for i in range(12)].count(False), q.dropped
(2, 2)
>>> q.put("event", 100, qos=0, routine=False), len(q), q.get(0.0)
(True, 11, 0)
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")
QOS0_SHARE = 0.8  # QoS 0 of any class may fill the queue up to this share; the rest is QoS 1's


class Backlog(Generic[T]):
    def __init__(self, max_messages: int, max_bytes: int, routine_qos0: int):
        self.max_messages, self.max_bytes, self.routine_qos0 = max_messages, max_bytes, routine_qos0
        self.dropped = 0  # QoS 0 messages refused for want of room
        self.waits = 0  # times a QoS 1 message had to wait for room
        qos0 = int(max_messages * QOS0_SHARE)
        routine = min(routine_qos0, qos0)
        self._qos0_room = {False: (qos0, max_bytes * QOS0_SHARE), True: (routine, max_bytes * routine / max_messages)}
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._closed = False
        self._cv = threading.Condition()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def takes_qos0(self, routine: bool) -> bool:
        """Would a QoS 0 message be queued now? (Asked before the message is parsed: a flood costs little.)"""
        messages, size = self._qos0_room[routine]
        return len(self._items) < messages and self._bytes < size

    def put(self, item: T, size: int, qos: int, routine: bool) -> bool:
        """Queue ``item`` of ``size`` bytes. QoS 0: False (and counted) when there is no room. QoS 1:
        waits for room; False only when the queue is closed (the message is then not acknowledged
        and the broker delivers it again)."""
        with self._cv:
            if qos == 0:
                if self._closed or not self.takes_qos0(routine):
                    self.dropped += 1
                    return False
            else:
                waited = False
                while not self._closed and self._items and (
                        len(self._items) >= self.max_messages or self._bytes + size > self.max_bytes):
                    if not waited:
                        self.waits, waited = self.waits + 1, True
                    self._cv.wait(1.0)
                if self._closed:
                    return False
            self._items.append((item, size))
            self._bytes += size
            self._cv.notify_all()
            return True

    def get(self, timeout: float) -> T | None:
        """The oldest item, waiting up to ``timeout`` seconds; None when there is none."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                self._cv.wait(remaining)
            item, size = self._items.popleft()
            self._bytes -= size
            self._cv.notify_all()
            return item

    def close(self) -> None:
        """Release a waiting producer: ingest is stopping."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
