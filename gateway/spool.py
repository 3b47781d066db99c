"""The gateway's store-and-forward spool: every reading, event and heartbeat is written to a SQLite
file first and leaves it only when the broker has acknowledged it (PUBACK).

Example::

    spool = Spool("/var/lib/stationwatch/spool.db", max_bytes=256 * 2**20)
    spool.append([Outgoing(MessageClass.READING, topic_name, lambda seq: payload(now, seq, value=21.5, unit="°C"))],
                 offline=not link.connected.is_set())
    Forwarder(spool, link).start()   # publishes in order, deletes on PUBACK

**Durability: WAL with ``synchronous=FULL``.** In WAL mode a commit appends frames to the ``-wal``
file; with FULL that file is fsync'ed before COMMIT returns, so a message that reached the spool
is on the medium: a power cut at any moment loses none of it. Nothing is corrupted either: a
half-written frame at the tail of the WAL fails its checksum and is ignored on recovery, and the
main file is only written by checkpoints of frames already synced. ``synchronous=NORMAL`` (offered
as ``spool_sync: normal``) syncs the WAL only at checkpoints: never corrupt and safe when the agent
is killed, but the last commits before a power cut roll back, so "reached the spool" would not
mean "kept". FULL costs one fsync per commit; the agent commits once per poll tick (every sensor
due at that moment in one transaction), so 64 sensors every 10 s cost about one fsync every 10 s.
Removals after PUBACK commit without an fsync of their own: one lost in a power cut means the
message is sent once more (at least once; ingest overwrites its own point), never that it is lost.

**Order and priority.** Events (alarms, doors, faults) are handed to MQTT before routine telemetry
(readings, heartbeats) — an alarm never waits behind an hour of replayed temperatures; within a
priority, messages leave in the order they were spooled, so each sensor's readings arrive in seq
order. A message spooled while the link was down, or left over from an earlier run of the agent,
goes out with ``historical: true``; one spooled while connected goes out as live.

**Budget.** The spool keeps to ``max_bytes`` (topic + payload + a fixed row overhead) by dropping
the oldest routine telemetry first; events are never dropped: with only events left it grows past
the budget and says so in the log at every further 10 %.
"""
from __future__ import annotations

import fcntl
import logging
import math
import sqlite3
import threading
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

from stationwatch.core.mqtt import MqttLink
from stationwatch.core.wire import DELIVERY, MessageClass

log = logging.getLogger(__name__)

ROUTINE, URGENT = 0, 1
PRIORITY: dict[MessageClass, int] = {MessageClass.EVENT: URGENT, MessageClass.READING: ROUTINE, MessageClass.HEARTBEAT: ROUTINE,
                             MessageClass.HEALTH: ROUTINE}  # health samples; a local-alarm change is spooled urgent
ROW_OVERHEAD = 64  # bytes a row costs beyond topic and payload: row header, index entry, page slack
LIVE_FLAG, HISTORICAL_FLAG = b'"historical":false', b'"historical":true'
DELETE_CHUNK = 500  # ids per DELETE … IN (…) statement
SYNC = {"full": "FULL", "normal": "NORMAL"}  # spool_sync setting → PRAGMA synchronous
HELD_BY_PAHO = {0, 4}  # publish() results after which paho keeps a QoS 1 message until its PUBACK:
                       # MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN (sent once the connection is back)

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- spool order; AUTOINCREMENT: never reused, even when empty
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,                 -- encoded with historical=false
    class TEXT NOT NULL,                   -- reading | event | heartbeat
    seq INTEGER NOT NULL,
    priority INTEGER NOT NULL,             -- 1 event (never dropped), 0 routine telemetry
    historical INTEGER NOT NULL,           -- spooled while the link was down
    size INTEGER NOT NULL                  -- what the row counts against the budget
);
CREATE INDEX IF NOT EXISTS message_by_priority ON message (priority, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_session', 0);
"""


class SpoolError(RuntimeError):
    """The spool cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Outgoing:
    """A message to spool; ``body`` encodes it once the spool has given it its ``seq``
    (:func:`stationwatch.core.wire.payload`, which writes the ``historical`` flag)."""
    kind: MessageClass
    topic: str
    body: Callable[[int], bytes]
    urgent: bool = False  # True: sent first and never dropped whatever its class (a local-alarm change)


@dataclass(frozen=True)
class Spooled:
    """A message waiting in the spool, with its payload as it goes on the wire."""
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
    dropped: Counter[str] = field(default_factory=Counter)  # removed to keep to the budget
    replayed: int = 0                                        # sent with historical: true

    def as_dict(self) -> dict[str, object]:
        return {"spooled": dict(self.spooled), "sent": dict(self.sent), "dropped": dict(self.dropped),
                "replayed": self.replayed}


def _connect(path: Path, sync: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={SYNC[sync]}")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(SCHEMA)
    return db


class Spool:
    """A bounded, crash-safe FIFO of outgoing messages in one SQLite file (one agent at a time)."""

    def __init__(self, path: str | Path, max_bytes: int = 256 * 2**20, sync: Literal["full", "normal"] = "full"):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lockfile = open(self.path.with_name(self.path.name + ".lock"), "a+")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise SpoolError(f"spool {self.path} is in use by another agent; stop it first / 缓存文件被占用") from None
        try:
            self._db = _connect(self.path, sync)
        except sqlite3.DatabaseError as exc:  # a damaged file must not keep the gateway (and its alarm) down
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            log.error("缓存文件损坏 / spool %s is damaged (%s); moved to %s, starting an empty one",
                      self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    src.rename(Path(str(aside) + suffix))
            self._db = _connect(self.path, sync)
        self._lock = threading.Lock()
        self._sync = SYNC[sync]
        self.stats = SpoolStats()
        db = self._db
        self.boot_id: int = db.execute("SELECT coalesce(max(id), 0) FROM message").fetchone()[0]
        stored_seq = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]
        self._next_seq: int = max(stored_seq, db.execute("SELECT coalesce(max(seq) + 1, 0) FROM message").fetchone()[0])
        self._rows, self._bytes = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM message").fetchone()
        self._loud_at = max_bytes  # next size at which "over budget with only events" is logged

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

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lockfile.close()

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """``durable=False``: no fsync at COMMIT — for removals after PUBACK, where a removal lost
        in a power cut only means the message is sent again; the next durable commit syncs it."""
        if not durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            if not durable:
                self._db.execute(f"PRAGMA synchronous={self._sync}")

    def next_session(self) -> int:
        """A new MQTT session number: birth and will of one connection share it, and it never goes
        backwards across restarts, so a will that arrives after the next birth is known as stale."""
        with self._lock, self._transaction() as db:
            session = db.execute("SELECT value FROM meta WHERE key='next_session'").fetchone()[0]
            db.execute("UPDATE meta SET value=? WHERE key='next_session'", (session + 1,))
        return session

    # ---- writing
    def append(self, items: Sequence[Outgoing], offline: bool) -> list[int]:
        """Give each item the next seq and store them in one transaction; returns the seqs.
        When this returns, the messages are on disk (with ``sync="full"``)."""
        if not items:
            return []
        with self._lock:
            first = self._next_seq
            rows = []
            for item in items:
                seq = first + len(rows)
                try:
                    payload = item.body(seq)
                except ValueError as exc:  # e.g. a NaN from a driver: drop that message, keep the batch
                    log.error("message for %s not spooled: %s", item.topic, exc)
                    continue
                priority = URGENT if item.urgent else PRIORITY[item.kind]
                rows.append((item.topic, payload, item.kind.value, seq, priority, int(offline),
                             len(item.topic) + len(payload) + ROW_OVERHEAD))
            if not rows:
                return []
            added = sum(r[-1] for r in rows)
            with self._transaction() as db:
                db.executemany("INSERT INTO message (topic, payload, class, seq, priority, historical, size) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (first + len(rows),))
                dropped, freed = self._make_room(self._bytes + added - self.max_bytes,
                                                 (self._bytes + added) / (self._rows + len(rows)))
            self._next_seq = first + len(rows)
            self._rows += len(rows) - sum(dropped.values())
            self._bytes += added - freed
            self.stats.dropped.update(dropped)
            self.stats.spooled.update(r[2] for r in rows)
            self._warn_if_over()
        return list(range(first, first + len(rows)))

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
        """Up to ``limit`` messages in sending order: events first, then routine telemetry, each in
        spool order, starting past ``after[priority]`` (the last id already handed over)."""
        out: list[Spooled] = []
        with self._lock:
            for priority in (URGENT, ROUTINE):
                if len(out) >= limit:
                    break
                for id_, topic_name, payload, cls, seq, hist in self._db.execute(
                        "SELECT id, topic, payload, class, seq, historical FROM message "
                        "WHERE priority=? AND id>? ORDER BY id LIMIT ?",
                        (priority, after.get(priority, 0), limit - len(out))):
                    historical = bool(hist) or id_ <= self.boot_id
                    wire = payload.replace(LIVE_FLAG, HISTORICAL_FLAG, 1) if historical else payload
                    out.append(Spooled(id_, topic_name, wire, MessageClass(cls), seq, priority, historical))
        return out

    def sent(self, ids: Sequence[int]) -> int:
        """The broker acknowledged these messages: remove them. Returns how many were still there
        (a message dropped for the budget while in flight is simply gone)."""
        removed = 0
        with self._lock, self._transaction(durable=False) as db:
            for i in range(0, len(ids), DELETE_CHUNK):
                chunk = ids[i:i + DELETE_CHUNK]
                for id_, cls, size, hist in db.execute(
                        f"DELETE FROM message WHERE id IN ({','.join('?' * len(chunk))}) "
                        "RETURNING id, class, size, historical", chunk):
                    removed += 1
                    self._bytes -= size
                    self.stats.sent[cls] += 1
                    self.stats.replayed += bool(hist) or id_ <= self.boot_id
            self._rows -= removed
        return removed


class Forwarder:
    """Hands spooled messages to the MQTT link in sending order and removes each from the spool
    on its PUBACK (QoS 0 heartbeats: once written to the socket). ``window`` bounds the messages
    awaiting acknowledgement. Messages handed over stay with paho until acknowledged, across
    reconnections; after a restart of the agent whatever is still spooled is sent again."""

    def __init__(self, spool: Spool, link: MqttLink, window: int = 1000):
        self.spool, self.link, self.window = spool, link, window
        self._acked: deque[int] = deque()  # mids from paho's thread; resolved in ours
        self._inflight: dict[int, Spooled] = {}  # mid → message
        self._cursor: dict[int, int] = {URGENT: 0, ROUTINE: 0}
        self._wake, self._stopping, self._reconnected = threading.Event(), threading.Event(), threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
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
        """New messages were spooled (or the link came back): look again now."""
        self._idle.clear()
        self._wake.set()

    def connected(self) -> None:
        """Called on every (re)connection: QoS 0 messages paho had not written yet are gone."""
        self._reconnected.set()
        self.wake()

    def drain(self, timeout: float) -> bool:
        """Wait until everything spooled has been acknowledged; False at the deadline."""
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

    def _forget_unwritten(self) -> None:
        for mid, row in list(self._inflight.items()):
            if DELIVERY[row.kind].qos == 0:
                del self._inflight[mid]
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
            self._cursor[row.priority] = row.id
