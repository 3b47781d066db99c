"""The gateways' sequence numbers as ingest sees them: the same seq twice with the same content is
a redelivery (written again, harmlessly: it overwrites its own point); with other content it is a
**conflict** — two messages claim one number (a cloned SD card running as a second gateway, a bug)
— and the later one is quarantined instead of overwriting or joining the first. A **regression** is
a seq lower than the gateway's highest on a message that is newer in time: the gateway's counter
went back (a new spool, a clone). It is counted and starts the gateway's record afresh, so a gateway
whose counter restarts is not taken for a stream of conflicts.

What ingest remembers is bounded: per gateway the last ``WINDOW`` seqs (16 bytes each, 64 KiB),
enough for the broker's in-flight window and the gateway's send window; an older redelivery is not
checked. Replays (``historical``) differ from the original only in that flag, which is left out of
the comparison. The record lives in memory: after a restart it starts empty.

>>> ledger = SequenceLedger()
>>> ledger.check("gw", 7, 100.0, 1), ledger.check("gw", 7, 100.0, 1), ledger.check("gw", 7, 100.0, 2)
('new', 'duplicate', 'conflict')
>>> ledger.check("gw", 1, 500.0, 3), ledger.regressions
('new', 1)
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any, Literal

WINDOW = 4096  # seqs remembered per gateway
Verdict = Literal["new", "duplicate", "conflict"]


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else \
        tuple(sorted((k, _frozen(v)) for k, v in value.items())) if isinstance(value, dict) else value


def content_of(topic: str, fields: dict[str, Any]) -> int:
    """64 bits of topic + content: Python's hash of the topic and the message's fields
    (without the replay flag). The ledger lives in memory, so a hash that differs between runs of
    the interpreter (string hashing is seeded per process) is fine. A JSON dump hashed with blake2b,
    as before, cost ten times as much: most of what ingest spent on a reading."""
    content = fields.copy()
    content.pop("historical", None)
    content.pop("sensor", None)  # a batch item's (BatchedReading): the topic names it already
    try:
        return hash((topic, tuple(content.items())))
    except TypeError:  # a list among the fields (the local alarm's detectors)
        return hash((topic, _frozen(content)))


@dataclass
class _Gateway:
    seqs: array = field(default_factory=lambda: array("q", [-1]) * WINDOW)
    digests: array = field(default_factory=lambda: array("q", [0]) * WINDOW)
    highest: int = -1
    highest_ts: float = 0.0


class SequenceLedger:
    def __init__(self) -> None:
        self._gateways: dict[str, _Gateway] = {}
        self.regressions = 0
        self.conflicts = 0

    def check(self, gateway: str, seq: int, ts: float, content: int, historical: bool = False) -> Verdict:
        g = self._gateways.get(gateway)
        if g is None:  # (setdefault would build a gateway's 64 KiB record for every message)
            g = self._gateways[gateway] = _Gateway()
        slot = seq % WINDOW
        if g.seqs[slot] == seq:
            if g.digests[slot] == content:
                return "duplicate"
            self.conflicts += 1
            return "conflict"
        if not historical and seq < g.highest and ts > g.highest_ts:
            self.regressions += 1
            g = self._gateways[gateway] = _Gateway()
        g.seqs[slot], g.digests[slot] = seq, content
        if seq > g.highest:
            g.highest, g.highest_ts = seq, ts
        return "new"
