"""Quarantine: messages a service refused, kept with their raw bytes, topic, time and reason, and
counted. Nothing in here is ever written as a reading; a person can inspect it later
(``sqlite3 quarantine.db 'select * from quarantine'``)."""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

KEEP_ROWS = 100_000  # the newest rows are kept; the counters keep counting past this


class Quarantine:
    def __init__(self, path: str | Path, service: str):
        self.service = service
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS quarantine (
            id INTEGER PRIMARY KEY, at REAL NOT NULL, service TEXT NOT NULL, topic TEXT NOT NULL,
            reason TEXT NOT NULL, detail TEXT NOT NULL, payload BLOB NOT NULL)""")
        self._added = 0

    def add(self, topic: str, payload: bytes, reason: str, detail: str) -> None:
        with self._lock:
            self.counts[reason] += 1
            self._db.execute("INSERT INTO quarantine (at, service, topic, reason, detail, payload) VALUES (?,?,?,?,?,?)",
                             (time.time(), self.service, topic[:1024], reason, detail[:1024], payload[:65536]))
            self._added += 1
            if self._added % 1000 == 0:
                self._db.execute("DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?", (KEEP_ROWS,))
        log.warning("quarantined message on %r: %s: %s", topic[:200], reason, detail[:200])

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
