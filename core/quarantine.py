"""Quarantine: messages a service refused, kept with their raw bytes, topic, time and reason, and
counted. Nothing in here is ever written as a reading; a person can inspect it later
(``sqlite3 quarantine.db 'select * from quarantine'``).

It is bounded in bytes (``max_bytes``, the config's ``limits.ingest.quarantine_mb``): past it the
oldest rows make room, and :attr:`Quarantine.dropped` counts the rows given up that way, so a flood
of junk cannot fill the server's disk and still shows in the counters."""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

KEEP_ROWS = 100_000  # the newest rows are kept; the counters keep counting past this
KEEP_PAYLOAD = 65536  # bytes of a refused payload kept (the detail says when it was longer)
MAX_BYTES = 64 * 1024 * 1024
ROW_OVERHEAD = 100  # bytes a row costs besides its payload, topic and detail (ids, times, the index)
_ROW_SIZE = f"length(payload) + length(CAST(topic AS BLOB)) + length(CAST(detail AS BLOB)) + {ROW_OVERHEAD}"


class Quarantine:
    def __init__(self, path: str | Path, service: str, max_bytes: int = MAX_BYTES):
        self.service = service
        self.max_bytes = max_bytes
        self.counts: Counter[str] = Counter()
        self.dropped = 0  # rows removed to stay within max_bytes or KEEP_ROWS
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")  # ingest workers (--workers) share one file
        self._db.execute("""CREATE TABLE IF NOT EXISTS quarantine (
            id INTEGER PRIMARY KEY, at REAL NOT NULL, service TEXT NOT NULL, topic TEXT NOT NULL,
            reason TEXT NOT NULL, detail TEXT NOT NULL, payload BLOB NOT NULL)""")
        self._added = 0
        self._bytes = self._db.execute(f"SELECT coalesce(sum({_ROW_SIZE}), 0) FROM quarantine").fetchone()[0]

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, topic: str, payload: bytes, reason: str, detail: str) -> None:
        if len(payload) > KEEP_PAYLOAD:
            detail = f"{detail} (payload {len(payload)} bytes, the first {KEEP_PAYLOAD} kept)"
        topic, detail, payload = topic[:1024], detail[:1024], payload[:KEEP_PAYLOAD]
        with self._lock:
            self.counts[reason] += 1
            self._db.execute("INSERT INTO quarantine (at, service, topic, reason, detail, payload) VALUES (?,?,?,?,?,?)",
                             (time.time(), self.service, topic, reason, detail, payload))
            self._bytes += len(payload) + len(topic.encode()) + len(detail.encode()) + ROW_OVERHEAD
            self._added += 1
            if self._bytes > self.max_bytes:
                self._make_room()
            if self._added % 1000 == 0:
                gone = self._db.execute("DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?",
                                        (KEEP_ROWS,)).rowcount
                if gone > 0:
                    self.dropped += gone
                    self._bytes = self._db.execute(f"SELECT coalesce(sum({_ROW_SIZE}), 0) FROM quarantine").fetchone()[0]
        log.warning("quarantined message on %r: %s: %s", topic[:200], reason, detail[:200])

    def _make_room(self) -> None:
        """Remove the oldest rows until a tenth of the budget is free (one delete for many adds)."""
        target = self.max_bytes * 0.9
        freed, last = 0, None
        for row_id, size in self._db.execute(f"SELECT id, {_ROW_SIZE} FROM quarantine ORDER BY id"):
            if self._bytes - freed <= target:
                break
            freed, last = freed + size, row_id
        if last is not None:
            self.dropped += self._db.execute("DELETE FROM quarantine WHERE id <= ?", (last,)).rowcount
            self._bytes -= freed

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def rows(self, limit: int = 100) -> list[dict]:
        with self._lock:
            cur = self._db.execute("SELECT at, service, topic, reason, detail, payload FROM quarantine "
                                   "ORDER BY id DESC LIMIT ?", (limit,))
            names = [c[0] for c in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def close(self) -> None:
        self._db.close()
