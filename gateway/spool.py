"""The gateway's store-and-forward spool: every reading, event and heartbeat is written to a SQLite
file first and leaves it only when the centre has stored it — ingest's ``cmd/stored`` naming its
seq — or, until the centre has acknowledged anything that way, on the broker's PUBACK.
:class:`~.forwarder.Forwarder` hands it to MQTT.

Example::

    spool = Spool("/var/lib/stationwatch/spool.db", max_bytes=256 * 2**20)
    spool.append([Outgoing(MessageClass.READING, topic_name, lambda seq: payload(now, seq, value=21.5, unit="°C"))],
                 offline=not link.connected.is_set())
    Forwarder(spool, link).start()   # publishes in order

**Durability: WAL with ``synchronous=FULL``.** In WAL mode a commit appends frames to the ``-wal``
file; with FULL that file is fsync'ed before COMMIT returns, so a message that reached the spool
is on the medium: a power cut at any moment loses none of it. Nothing is corrupted either: a
half-written frame at the tail of the WAL fails its checksum and is ignored on recovery, and the
main file is only written by checkpoints of frames already synced. ``synchronous=NORMAL`` (offered
as ``spool_sync: normal``) syncs the WAL only at checkpoints: never corrupt and safe when the agent
is killed, but the last commits before a power cut roll back, so "reached the spool" would not
mean "kept". FULL costs one fsync per commit; the agent commits once per poll tick (every sensor
due at that moment in one transaction), so 64 sensors every 10 s cost about one fsync every 10 s.
Removals commit without an fsync of their own: one lost in a power cut means the message is sent
once more (at least once; ingest overwrites its own point), never that it is lost.

**End to end.** A message the broker acknowledged stays in the spool (``acked``) until ingest says
it stored it (:meth:`Spool.stored`); one the broker took ``store_timeout_s`` before the centre's
latest receipt and never confirmed — the broker lost it in a power cut — is sent again
(:meth:`Spool.requeue`, driven by :class:`~.forwarder.Forwarder`). The first ``stored`` from the
centre switches a spool to this mode for good (``meta.e2e``); before it, PUBACK removes a message.

**Order and priority.** Events (alarms, doors, faults) are handed to MQTT before routine telemetry
(readings, heartbeats) — an alarm never waits behind an hour of replayed temperatures; within a
priority, messages leave in the order they were spooled, so each sensor's readings arrive in seq
order. A message spooled while the link was down, or left over from an earlier run of the agent,
goes out with ``historical: true``; one spooled while connected goes out as live.

**Budget.** The spool keeps to ``max_bytes`` (topic + payload + a fixed row overhead) by dropping
the oldest routine telemetry first; events are never dropped: with only events left it grows past
the budget and says so in the log at every further 10 %.

**When the disk fails** (full, read-only, I/O errors, a damaged file) the gateway goes on: a damaged
file is set aside with what can be recovered of it (:mod:`.spool_rescue`) and a fresh one started;
if no file can be written at all, alarms and events are kept in memory until PUBACK — never
dropped — while routine telemetry gives way (counted in ``stats.dropped``). :attr:`Spool.trouble`
says what is wrong (the agent reports it as ``health/spool``); the disk is tried again every
``RETRY_S``.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

from stationwatch.core.wire import MessageClass

from .spool_file import ROW_OVERHEAD, SpoolError, SpoolFile  # noqa: F401 — SpoolError: the runtime's

__all__ = ["Outgoing", "Spool", "SpoolError", "Spooled", "SpoolStats", "ROW_OVERHEAD", "URGENT", "ROUTINE"]

log = logging.getLogger(__name__)

ROUTINE, URGENT = 0, 1
PRIORITY: dict[MessageClass, int] = {MessageClass.EVENT: URGENT, MessageClass.READING: ROUTINE,
                                     MessageClass.READINGS: ROUTINE, MessageClass.HEARTBEAT: ROUTINE,
                                     MessageClass.HEALTH: ROUTINE}
# (health samples are routine; a local-alarm change or the spool's own trouble is spooled urgent)
LIVE_FLAG, HISTORICAL_FLAG = b'"historical":false', b'"historical":true'
DELETE_CHUNK = 500  # ids per DELETE … IN (…) statement
HELD_LIMIT = 100_000  # urgent messages kept in memory at most while no disk can be written

@dataclass(frozen=True)
class Outgoing:
    """A message to spool; ``body`` encodes it once the spool has given it its ``seq``
    (:func:`stationwatch.core.wire.payload`, which writes the ``historical`` flag). A ``readings``
    batch takes ``seqs`` numbers, one per item, from the seq it is given
    (:func:`stationwatch.core.wire.batch_payload`)."""
    kind: MessageClass
    topic: str
    body: Callable[[int], bytes]
    urgent: bool = False  # True: sent first and never dropped whatever its class (a local-alarm change)
    seqs: int = 1  # seqs the message takes: its items' for a batch
    # a reading as a batch item (sensor, ts, value, unit, quality), so the agent may batch it
    reading: dict | None = None


@dataclass(frozen=True)
class Spooled:
    """A message waiting in the spool, with its payload as it goes on the wire (negative id: held
    in memory because no disk could take it)."""
    id: int
    topic: str
    payload: bytes
    kind: MessageClass
    seq: int
    priority: int
    historical: bool


@dataclass
class SpoolStats:
    spooled: Counter[str] = field(default_factory=Counter)  # by message class
    sent: Counter[str] = field(default_factory=Counter)     # acknowledged by the broker
    stored: int = 0                                          # confirmed stored by the centre
    dropped: Counter[str] = field(default_factory=Counter)  # removed to keep to the budget, or for a failed disk
    replayed: int = 0                                        # sent with historical: true
    recovered: int = 0                                       # rows saved from a damaged file
    disk_errors: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"spooled": dict(self.spooled), "sent": dict(self.sent), "stored": self.stored,
                "dropped": dict(self.dropped), "replayed": self.replayed, "recovered": self.recovered,
                "disk_errors": self.disk_errors}


class Spool(SpoolFile):
    """A bounded, crash-safe FIFO of outgoing messages in one SQLite file (one agent at a time)."""

    def __init__(self, path: str | Path, max_bytes: int = 256 * 2**20, sync: Literal["full", "normal"] = "full"):
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self.stats = SpoolStats()
        self._held: dict[int, Spooled] = {}  # urgent messages no disk could take, by negative id
        self._held_ids = 0
        self._next_seq, self._next_session, self.e2e = 0, 0, False
        self.last_receipt: float | None = None  # when the centre last said it stored something
        self._rows = self._bytes = self.boot_id = 0
        self._loud_at = max_bytes  # next size at which "over budget with only events" is logged
        self._setup(path, sync)

    # ---- state
    @property
    def rows(self) -> int:
        return self._rows

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def last_seq(self) -> int:
        """The highest seq ever given out (−1 for a new spool); never goes backwards."""
        return self._next_seq - 1

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def next_session(self) -> int:
        """A new MQTT session number: birth and will of one connection share it, and it never goes
        backwards across restarts, so a will that arrives after the next birth is known as stale."""
        with self._lock:
            session = self._next_session
            self._next_session += 1

            def write(_db):
                with self._transaction() as db:
                    db.execute("UPDATE meta SET value=? WHERE key='next_session'", (self._next_session,))
            self._guarded("session count", write)
        return session

    # ---- writing
    def append(self, items: Sequence[Outgoing], offline: bool) -> list[int]:
        """Give each item the next seq and store them in one transaction; returns the seqs (a batch's:
        its first). When this returns, the messages are on disk (with ``sync="full"``) — or, the disk failing, the
        urgent ones are held in memory and the routine ones are dropped."""
        if not items:
            return []
        with self._lock:
            seq = self._next_seq
            rows, seqs = [], []
            for item in items:
                try:
                    payload = item.body(seq)
                except ValueError as exc:  # e.g. a NaN from a driver: drop that message, keep the batch
                    log.error("message for %s not spooled: %s", item.topic, exc)
                    continue
                priority = URGENT if item.urgent else PRIORITY[item.kind]
                rows.append((item.topic, payload, item.kind.value, seq, priority, int(offline),
                             len(item.topic) + len(payload) + ROW_OVERHEAD))
                seqs.append(seq)
                seq += max(1, item.seqs)  # a batch's row is its first seq + 1; the others are its items'
            if not rows:
                return []
            self._next_seq = seq
            written = self._guarded("write", lambda _db: self._insert(rows), False)
            if written is False and self.trouble is None and self._db is not None:  # a damaged file was replaced
                written = self._guarded("write", lambda _db: self._insert(rows), False)
            if written is False:
                self._hold(rows)
            self.stats.spooled.update(r[2] for r in rows)
            self._warn_if_over()
        return seqs

    def _insert(self, rows: list[tuple]) -> bool:
        added = sum(r[-1] for r in rows)
        with self._transaction() as db:
            db.executemany("INSERT INTO message (id, topic, payload, class, seq, priority, historical, size) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(r[3] + 1, *r) for r in rows])
            db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (self._next_seq,))
            dropped, freed = self._make_room(self._bytes + added - self.max_bytes,
                                             (self._bytes + added) / (self._rows + len(rows)))
        self._rows += len(rows) - sum(dropped.values())
        self._bytes += added - freed
        self.stats.dropped.update(dropped)
        return True

    def _hold(self, rows: list[tuple]) -> None:
        """No disk: urgent messages wait in memory until their PUBACK; routine ones are lost."""
        for topic, payload, cls, seq, priority, offline, size in rows:
            if priority != URGENT:
                self.stats.dropped[cls] += 1
                continue
            if len(self._held) >= HELD_LIMIT:
                log.error("内存中的告警过多 / %d urgent messages held in memory; the oldest is given up", HELD_LIMIT)
                self._held.pop(min(self._held, key=abs))
            self._held_ids -= 1
            self._held[self._held_ids] = Spooled(self._held_ids, topic, payload, MessageClass(cls), seq, priority,
                                                 bool(offline))
            self._rows += 1
            self._bytes += size

    def _make_room(self, excess: float, row_size: float) -> tuple[Counter[str], int]:
        """Delete the oldest routine rows until ``excess`` bytes are gone (in the caller's transaction);
        returns the rows dropped by class and the bytes freed."""
        dropped: Counter[str] = Counter()
        freed = 0
        while excess > 0:
            n = max(1, math.ceil(excess / max(row_size, 1.0)))
            gone = self._db.execute("DELETE FROM message WHERE id IN (SELECT id FROM message WHERE priority=? "
                                    "ORDER BY id LIMIT ?) RETURNING class, size", (ROUTINE, n)).fetchall()
            if not gone:
                break
            for cls, size in gone:
                dropped[cls] += 1
                freed += size
                excess -= size
        return dropped, freed

    def _warn_if_over(self) -> None:
        if self._bytes <= self.max_bytes:
            self._loud_at = self.max_bytes
        elif self._bytes >= self._loud_at:
            log.error("缓存超出上限，仅剩事件，事件从不丢弃 / SPOOL OVER BUDGET: %.1f MB of %.1f MB and only events "
                      "left, which are never dropped; the spool keeps growing until the broker is back",
                      self._bytes / 2**20, self.max_bytes / 2**20)
            self._loud_at = self._bytes + self.max_bytes // 10

    # ---- reading and acknowledging
    def pending(self, after: dict[int, int], limit: int) -> list[Spooled]:
        """Up to ``limit`` messages in sending order: those held in memory, then events, then
        routine telemetry, each in spool order, starting past ``after[priority]`` (the last id
        already handed over), not yet acknowledged by the broker."""
        with self._lock:
            out = sorted(self._held.values(), key=lambda s: -s.id)[:limit]

            def read(db):
                found = []
                for priority in (URGENT, ROUTINE):
                    if len(out) + len(found) >= limit:
                        break
                    for id_, topic_name, payload, cls, seq, hist in db.execute(
                            "SELECT id, topic, payload, class, seq, historical FROM message "
                            "WHERE priority=? AND id>? AND acked IS NULL ORDER BY id LIMIT ?",
                            (priority, after.get(priority, 0), limit - len(out) - len(found))):
                        historical = bool(hist) or id_ <= self.boot_id
                        wire = payload.replace(LIVE_FLAG, HISTORICAL_FLAG, 1) if historical else payload
                        found.append(Spooled(id_, topic_name, wire, MessageClass(cls), seq, priority, historical))
                return found
            return out + self._guarded("read", read, [])

    def sent(self, ids: Sequence[int]) -> int:
        """The broker acknowledged these messages: remove them — or, end to end, keep them until the
        centre says it stored them. Returns how many were still there."""
        removed = 0
        with self._lock:
            for id_ in [i for i in ids if i < 0]:
                held = self._held.pop(id_, None)
                if held is not None:
                    removed += 1
                    self._rows -= 1
                    self._bytes -= len(held.payload) + len(held.topic) + ROW_OVERHEAD
                    self.stats.sent[held.kind.value] += 1
            on_disk = [i for i in ids if i > 0]
            if on_disk:
                removed += self._guarded("acknowledge", lambda _db: self._acknowledge(on_disk), 0)
        return removed

    def _acknowledge(self, ids: Sequence[int]) -> int:
        found = 0
        with self._transaction(durable=False) as db:
            for i in range(0, len(ids), DELETE_CHUNK):
                chunk = ids[i:i + DELETE_CHUNK]
                marks = ",".join("?" * len(chunk))
                if self.e2e:
                    rows = db.execute(f"UPDATE message SET acked=? WHERE id IN ({marks}) AND acked IS NULL "
                                      "RETURNING id, class, size, historical", (time.time(), *chunk)).fetchall()
                else:
                    rows = db.execute(f"DELETE FROM message WHERE id IN ({marks}) RETURNING id, class, size, historical",
                                      chunk).fetchall()
                for id_, cls, size, hist in rows:
                    found += 1
                    self.stats.sent[cls] += 1
                    self.stats.replayed += bool(hist) or id_ <= self.boot_id
                    if not self.e2e:
                        self._rows -= 1
                        self._bytes -= size
        return found

    def stored(self, seqs: Sequence[tuple[int, int]]) -> int:
        """The centre stored the messages with these seqs (inclusive ranges): they leave the spool.
        A batch leaves with its first seq (the centre names all of its items' together: it stores a
        batch whole, each item written or quarantined). The first such word switches the spool to
        end-to-end for good."""
        with self._lock:
            self.last_receipt = time.time()
            if not self.e2e:
                self.e2e = True
                self._guarded("e2e", lambda db: db.execute("UPDATE meta SET value=1 WHERE key='e2e'"))

            def remove(_db):
                gone = 0
                with self._transaction(durable=False) as db:
                    for low, high in seqs:
                        for _cls, size in db.execute("DELETE FROM message WHERE id BETWEEN ? AND ? "
                                                     "RETURNING class, size", (low + 1, high + 1)):
                            gone += 1
                            self._rows -= 1
                            self._bytes -= size
                return gone
            gone = self._guarded("remove stored", remove, 0)
            self.stats.stored += gone
        return gone

    def requeue(self, acked_before: float) -> dict[int, int]:
        """Messages the broker acknowledged before ``acked_before`` that the centre has not said it
        stored (the broker lost them): make them pending again. Returns, per priority, the lowest id
        requeued (the forwarder goes back there)."""
        with self._lock:
            def again(_db):
                with self._transaction(durable=False) as db:
                    rows = db.execute("UPDATE message SET acked=NULL WHERE acked IS NOT NULL AND acked<? "
                                      "RETURNING id, priority", (acked_before,)).fetchall()
                lowest: dict[int, int] = {}
                for id_, priority in rows:
                    lowest[priority] = min(lowest.get(priority, id_), id_)
                if rows:
                    log.warning("中心未确认入库，重发 / %d message(s) the broker took but the centre never stored: "
                                "sent again", len(rows))
                return lowest
            return self._guarded("requeue", again, {}) if self.e2e else {}
