"""A damaged spool (SD-card rot, a torn write, a file cut short): set it aside and keep what can
still be read of it, so the gateway starts on a fresh spool at once and loses only what was truly
unreadable. Used by :class:`~.spool.Spool` when SQLite reports the file damaged — at open or at any
later query.

Rows are read back in id ranges; a range that fails is halved until the unreadable rows are
isolated and skipped, so one bad page costs the rows on it, not the whole spool.
"""
from __future__ import annotations

import logging
import shutil
import sqlite3
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from stationwatch.core.wire import batch_seqs

log = logging.getLogger(__name__)

SUFFIXES = ("", "-wal", "-shm")
CHUNK = 512  # ids read per query while salvaging
MAX_SCAN = 5_000_000  # ids looked at below the newest when the lowest cannot be read
COLUMNS = "id, topic, payload, class, seq, priority, size"


@dataclass
class Salvage:
    """What was read back from a damaged spool."""
    rows: list[tuple] = field(default_factory=list)  # (id, topic, payload, class, seq, priority, size)
    next_seq: int = 0  # the seq counter must never go backwards
    next_session: int = 0
    lost: int = 0  # ids that could not be read
    aside: Path | None = None


def set_aside(path: Path) -> Path | None:
    """Move the spool and its WAL aside (``spool.db.damaged-{time}``); None when that is impossible
    (a read-only file system): then nothing of it can be replaced either."""
    aside = path.with_name(f"{path.name}.damaged-{int(time.time() * 1000)}")
    try:
        for suffix in SUFFIXES:
            src = Path(str(path) + suffix)
            if src.exists():
                src.rename(Path(str(aside) + suffix))
    except OSError as exc:
        log.error("缓存文件无法移开 / the damaged spool %s cannot be set aside: %s", path, exc)
        return None
    return aside


def _padded(aside: Path) -> Path | None:
    """A file cut short (the header says it has more pages): a copy padded with empty pages, so
    SQLite reads what is there and reports only the missing pages as damaged."""
    try:
        with open(aside, "rb") as f:
            header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            return None
        page = struct.unpack(">H", header[16:18])[0]
        size = (65536 if page == 1 else page) * struct.unpack(">I", header[28:32])[0]
        if aside.stat().st_size >= size:
            return None
        padded = aside.with_name(aside.name + ".padded")
        shutil.copyfile(aside, padded)
        with open(padded, "r+b") as f:
            f.truncate(size)
        return padded
    except OSError:
        return None


def _open(aside: Path) -> sqlite3.Connection | None:
    for uri in (f"file:{aside}?mode=ro", f"file:{aside}?immutable=1"):  # immutable: ignore a torn WAL
        try:
            db = sqlite3.connect(uri, uri=True)
            db.execute("SELECT 1 FROM message LIMIT 1").fetchall()
            return db
        except sqlite3.Error:
            continue
    return None


def _meta(db: sqlite3.Connection, key: str) -> int:
    try:
        row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0
    except sqlite3.Error:
        return 0


def _first(db: sqlite3.Connection, sqls: tuple[str, ...]) -> int | None:
    for sql in sqls:
        try:
            row = db.execute(sql).fetchone()
            if row and row[0] is not None:
                return int(row[0])
        except sqlite3.Error:
            continue
    return None


def _id_span(db: sqlite3.Connection) -> tuple[int, int]:
    """The ids to look at: ids only grow (they are seq + 1), so a gateway that has sent millions
    of messages keeps its rows far above 1 — start at the lowest readable id, or MAX_SCAN below
    the newest when the bottom of the table cannot be read."""
    top = _first(db, ("SELECT max(id) FROM message", "SELECT seq FROM sqlite_sequence WHERE name='message'")) or 0
    low = _first(db, ("SELECT min(id) FROM message",))
    return (max(1, top - MAX_SCAN + 1) if low is None else max(low, 1)), top


def _read(db: sqlite3.Connection, low: int, high: int, out: Salvage) -> None:
    """Rows with ``low <= id < high``, halving the range around what cannot be read."""
    try:
        out.rows += db.execute(f"SELECT {COLUMNS} FROM message WHERE id >= ? AND id < ? ORDER BY id",
                               (low, high)).fetchall()
    except sqlite3.Error:
        if high - low <= 1:
            out.lost += 1
            return
        mid = (low + high) // 2
        _read(db, low, mid, out)
        _read(db, mid, high, out)


def _whole(row: tuple) -> bool:
    """A row read back intact: every field of its type (damage can leave a readable row of nulls)."""
    _id, topic, body, cls, seq, priority, size = row
    return (isinstance(topic, str) and isinstance(body, bytes) and cls in ("reading", "readings", "event", "heartbeat", "health")
            and isinstance(seq, int) and priority in (0, 1) and isinstance(size, int))


def salvage(aside: Path) -> Salvage:
    """Everything still readable in the set-aside spool ``aside``."""
    out = Salvage(aside=aside)
    padded = _padded(aside)
    db = _open(padded or aside)
    if db is None:
        log.error("缓存文件无法读取，内容丢失 / nothing of the damaged spool %s can be read", aside)
        return out
    try:
        out.next_seq, out.next_session = _meta(db, "next_seq"), _meta(db, "next_session")
        bottom, top = _id_span(db)
        for low in range(bottom, top + 1, CHUNK):
            _read(db, low, min(low + CHUNK, top + 1), out)
    finally:
        db.close()
        if padded is not None:
            padded.unlink(missing_ok=True)
    whole = [r for r in out.rows if _whole(r)]
    out.lost += len(out.rows) - len(whole)
    out.rows = whole
    if out.rows:  # past the last seq in use: a batch's items take the seqs after its own
        out.next_seq = max(out.next_seq, max(r[4] + max(1, len(batch_seqs(r[2])) if r[3] == "readings" else 1)
                                             for r in out.rows))
    log.warning("损坏的缓存已抢救 / damaged spool %s: %d message(s) recovered, %d unreadable",
                aside, len(out.rows), out.lost)
    return out
