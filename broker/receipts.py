"""Receipts (入库回执): ingest tells each gateway which of its messages the centre has stored, so the
gateway's spool can let them go (end-to-end acknowledgement, gateway/spool.py). A message counts
as stored once InfluxDB has taken the batch holding it — or once it was refused into the quarantine,
where it is kept for inspection and sending it again would change nothing.

A ``readings`` batch counts as stored once all its items are (each was written or quarantined);
its receipt names every item's seq, so the gateway's spool lets the whole batch go.

Every ``every_s`` each gateway heard from gets one ``sw/v1/{site}/{gateway}/cmd/stored`` (QoS 1):
``{"name": "stored", "args": {"seqs": [[first, last], …]}}``, its seqs as inclusive ranges.

>>> ranges([7, 3, 4, 5, 9, 8])
[[3, 5], [7, 9]]
"""
from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Callable

from stationwatch.core.wire import MessageClass, batch_seqs, payload, topic

MAX_RANGES = 5_000  # per message (the gateway accepts up to 10,000)


def ranges(seqs: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def _seq_of(body: bytes) -> int | None:
    """The seq of a message, read leniently: a message refused for its schema still has one."""
    try:
        seq = json.loads(body).get("seq")
    except (ValueError, AttributeError, RecursionError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


class Receipts:
    def __init__(self, publish: Callable[[str, bytes], None], gateway_site: dict[str, str], every_s: float = 1.0):
        self.publish, self.gateway_site, self.every_s = publish, gateway_site, every_s
        self._seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._lock = threading.Lock()
        self._next = time.monotonic() + every_s
        self.sent = 0

    def note(self, topic_name: str, body: bytes, seqs: list[int] | None = None) -> None:
        """A message of a gateway was stored (or quarantined); ``seqs``: its seqs, when known already."""
        parts = topic_name.split("/")
        if len(parts) < 5 or parts[4] == MessageClass.CMD.value or self.gateway_site.get(parts[3]) != parts[2]:
            return  # not a known gateway's message, or a command (these receipts themselves)
        if seqs is None and parts[4] == MessageClass.READINGS.value:  # a batch: every item's seq, the refused ones' too
            seqs = batch_seqs(body)
        elif seqs is None:
            seq = _seq_of(body)
            seqs = [] if seq is None else [seq]
        if seqs:
            with self._lock:
                self._seqs[(parts[2], parts[3])].extend(seqs)

    def flush(self, force: bool = False) -> None:
        if not force and time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every_s
        with self._lock:
            due, self._seqs = self._seqs, defaultdict(list)
        for (site, gateway), seqs in due.items():
            found = ranges(seqs)
            for i in range(0, len(found), MAX_RANGES):
                self.publish(topic(site, gateway, MessageClass.CMD, "stored"),
                             payload(time.time(), name="stored", args={"seqs": found[i:i + MAX_RANGES]}))
                self.sent += 1
