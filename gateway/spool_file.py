"""The spool's SQLite file and what can go wrong with it: one agent at a time (a lock file), WAL
with the chosen sync, a damaged file set aside and replaced (:mod:`.spool_rescue`), a disk that
fails (full, read-only, I/O errors) noted as :attr:`SpoolFile.trouble` and tried again every
``RETRY_S``. :class:`~.spool.Spool` builds the message queue on it; see there for durability.
"""
from __future__ import annotations

import fcntl
import logging
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from . import spool_rescue

log = logging.getLogger(__name__)

SYNC = {"full": "FULL", "normal": "NORMAL"}  # spool_sync setting → PRAGMA synchronous
RETRY_S = 10.0  # with the disk in trouble, try it again this often
ROW_OVERHEAD = 64  # bytes a row costs beyond topic and payload: row header, index entry, page slack

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- seq + 1: spool order, and a receipt's seqs find rows by key
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,                 -- encoded with historical=false
    class TEXT NOT NULL,                   -- reading | event | heartbeat | health
    seq INTEGER NOT NULL,
    priority INTEGER NOT NULL,             -- 1 urgent (never dropped), 0 routine telemetry
    historical INTEGER NOT NULL,           -- spooled while the link was down
    size INTEGER NOT NULL,                 -- what the row counts against the budget
    acked REAL                             -- when the broker acknowledged it (end to end: kept until stored)
);
CREATE INDEX IF NOT EXISTS message_by_priority ON message (priority, id);
DROP INDEX IF EXISTS message_by_seq;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_session', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('e2e', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('layout', 2);
"""
# what SQLite's errors say → the trouble reported (the first that matches)
TROUBLES = (("full", "disk_full"), ("readonly", "read_only"), ("read-only", "read_only"),
            ("malformed", "damaged"), ("not a database", "damaged"), ("i/o", "io_error"))




class SpoolError(RuntimeError):
    """The spool cannot be used; the message says what to do."""


def _connect(path: Path, sync: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={SYNC[sync]}")
    db.execute("PRAGMA busy_timeout=5000")
    if "acked" not in {r[1] for r in db.execute("PRAGMA table_info(message)")} and \
            db.execute("SELECT 1 FROM sqlite_master WHERE name='message'").fetchone():
        db.execute("ALTER TABLE message ADD COLUMN acked REAL")  # a spool of an earlier version
    _renumber(db)
    db.executescript(SCHEMA)
    return db


def _renumber(db: sqlite3.Connection) -> None:
    """A spool written before ids were seq + 1 (no ``layout`` in meta): renumber its rows once, so a
    receipt naming seqs deletes by key instead of needing an index that slows every write."""
    has = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "message" not in has or "meta" not in has or \
            db.execute("SELECT 1 FROM meta WHERE key='layout'").fetchone():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        twins = db.execute("DELETE FROM message WHERE id NOT IN (SELECT min(id) FROM message GROUP BY seq)").rowcount
        db.execute("UPDATE message SET id = -id")
        db.execute("UPDATE message SET id = seq + 1")
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('layout', 2)")
        db.execute("COMMIT")
    except sqlite3.Error:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if twins:
        log.error("缓存中有重复序号的消息 / %d spooled message(s) repeated another's seq and were dropped", twins)


def trouble_of(exc: BaseException) -> str:
    text = str(exc).lower()
    return next((name for key, name in TROUBLES if key in text), "io_error")




class SpoolFile:
    """The file under a spool; subclasses keep their counters in ``_load`` and hold messages no disk
    could take in ``_held`` (negative ids)."""

    def _setup(self, path: str | Path, sync: str) -> None:
        self.path = Path(path)
        self._sync = SYNC[sync]
        self.trouble: str | None = None  # disk_full | read_only | io_error | damaged, while the disk fails
        self.replaced: str | None = None  # a damaged file was set aside: where, and what was recovered
        self._retry_at = 0.0
        self._db: sqlite3.Connection | None = None
        self._lockfile = self._take_lock()
        self._open(sync)

    def _take_lock(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lockfile = open(self.path.with_name(self.path.name + ".lock"), "a+")
        except OSError as exc:  # a read-only or failed disk: the alarm works without a spool
            log.error("缓存目录不可写 / cannot use the spool folder %s (%s): alarms go out from memory",
                      self.path.parent, exc)
            return None
        try:
            fcntl.flock(lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lockfile.close()
            raise SpoolError(f"spool {self.path} is in use by another agent; stop it first / 缓存文件被占用") from None
        return lockfile

    def _open(self, sync: str) -> None:
        """Open the file; a damaged one is set aside with what can be read of it, and a new one made."""
        try:
            self._db = _connect(self.path, sync)
            self._load()
        except (sqlite3.Error, OSError) as exc:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._failed(exc, "open")
            if self.trouble == "damaged":
                self._replace(sync)

    def _load(self) -> None:
        db = self._db
        self.boot_id = db.execute("SELECT coalesce(max(id), 0) FROM message").fetchone()[0]
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        top = db.execute("SELECT coalesce(max(seq) + 1, 0) FROM message").fetchone()[0]
        self._next_seq = max(self._next_seq, meta.get("next_seq", 0), top)
        self._next_session = max(self._next_session, meta.get("next_session", 0))
        self.e2e = self.e2e or bool(meta.get("e2e", 0))
        self._rows, self._bytes = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM message").fetchone()
        self._rows += len(self._held)
        self._bytes += sum(len(h.payload) + len(h.topic) + ROW_OVERHEAD for h in self._held.values())

    def _replace(self, sync: str) -> None:
        """The file is damaged: set it aside, start a new one, put back what was recovered."""
        aside = spool_rescue.set_aside(self.path)
        if aside is None:
            return  # nothing can be replaced (read-only): memory until the disk is usable
        saved = spool_rescue.salvage(aside)
        self._next_seq = max(self._next_seq, saved.next_seq)
        self._next_session = max(self._next_session, saved.next_session)
        try:
            self._db = _connect(self.path, sync)
            with self._transaction() as db:
                db.executemany("INSERT OR IGNORE INTO message (id, topic, payload, class, seq, priority, historical,"
                               " size) VALUES (?, ?, ?, ?, ?, ?, 1, ?)", [(r[4] + 1, *r[1:]) for r in saved.rows])
                db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (self._next_seq,))
                db.execute("UPDATE meta SET value=? WHERE key='next_session'", (self._next_session,))
            self._load()
            self.boot_id = self._db.execute("SELECT coalesce(max(id), 0) FROM message").fetchone()[0]
            self.stats.recovered += len(saved.rows)
            self.trouble = None
            self.replaced = f"replaced: set aside as {aside.name}, {len(saved.rows)} message(s) recovered"
            log.error("缓存文件损坏，已另存并新建 / spool %s was damaged: set aside as %s, %d message(s) recovered "
                      "into a new one", self.path, aside, len(saved.rows))
        except (sqlite3.Error, OSError) as exc:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._failed(exc, "replace")

    def _failed(self, exc: BaseException, doing: str) -> None:
        self.stats.disk_errors += 1
        trouble = trouble_of(exc)
        if trouble != self.trouble:
            log.error("缓存故障 / spool %s %s failed (%s): %s — alarms and events go out from memory, routine "
                      "readings may be lost until it is fixed", self.path, doing, trouble, exc)
        self.trouble, self._retry_at = trouble, time.monotonic() + RETRY_S

    def _usable(self) -> bool:
        """A disk to write to (trying again every RETRY_S while it is in trouble)."""
        if self.trouble is None:
            return self._db is not None
        if time.monotonic() < self._retry_at:
            return False
        self._retry_at = time.monotonic() + RETRY_S
        try:
            if self._db is None:
                if self._lockfile is None:
                    self._lockfile = self._take_lock()
                self._db = _connect(self.path, self._sync)
                self._load()
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (self._next_seq,))
            self._db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            self._rollback()
            if trouble_of(exc) == "damaged":
                self._db = None
                self._replace(self._sync)
                return self.trouble is None
            return False
        log.warning("缓存已恢复可写 / spool %s is writable again", self.path)
        self.trouble = None
        return True

    def _rollback(self) -> None:
        try:
            if self._db is not None and self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
        if self._lockfile is not None:
            self._lockfile.close()

    def __enter__(self) -> "SpoolFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """``durable=False``: no fsync at COMMIT — for removals, where a removal lost in a power
        cut only means the message is sent again; the next durable commit syncs it."""
        db = self._db
        if not durable:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                self._rollback()
                raise
            db.execute("COMMIT")
        finally:
            if not durable:
                db.execute(f"PRAGMA synchronous={self._sync}")

    def _guarded(self, doing: str, fn: Callable[[sqlite3.Connection], object], default: object = None) -> object:
        """Run ``fn`` on the file; a failing disk becomes :attr:`trouble` (a damaged file is replaced)."""
        if not self._usable():
            return default
        try:
            return fn(self._db)
        except (sqlite3.Error, OSError) as exc:
            self._rollback()
            self._failed(exc, doing)
            if self.trouble == "damaged":
                self._db.close()
                self._db = None
                self._replace(self._sync)
            return default
