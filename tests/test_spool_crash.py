"""SIGKILL loop: a child process appends to the spool (and removes some rows as if acknowledged)
as fast as it can and reports every commit; it is killed at a random moment, 50 times. After each
kill the spool must open cleanly and hold every message the child reported as committed (unless
the child had started to remove it), and seq must never go backwards.

A SIGKILL leaves the page cache intact, so this proves crash safety of the SQLite/WAL usage, not
power-cut safety; that rests on ``synchronous=FULL`` (see gateway/spool.py)."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from stationwatch.gateway.spool import Spool

KILLS = 50

CHILD = r"""
import random, sys, time
from stationwatch.core.wire import MessageClass, payload, topic
from stationwatch.gateway.spool import Outgoing, Spool

spool = Spool(sys.argv[1], max_bytes=1 << 40)
rng = random.Random()
reading = Outgoing(MessageClass.READING, topic("s", "g", MessageClass.READING, "t"),
                   lambda seq: payload(time.time(), seq, value=20.5, unit="°C"))
event = Outgoing(MessageClass.EVENT, topic("s", "g", MessageClass.EVENT, "smk"),
                 lambda seq: payload(time.time(), seq, state="alarm"))
print("open", spool.last_seq, flush=True)
while True:
    seqs = spool.append([rng.choice((reading, reading, event)) for _ in range(rng.randint(1, 50))], offline=True)
    print("c", seqs[-1], flush=True)
    if rng.random() < 0.3:
        rows = spool.pending({}, rng.randint(1, 60))
        print("d", *[r.seq for r in rows], flush=True)  # about to remove these
        spool.sent([r.id for r in rows])
        print("D", flush=True)
"""


def run_child_until_killed(path, commits: int) -> list[list[str]]:
    """Start the child, let it report ``commits`` commits, SIGKILL it; every line it wrote."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, bufsize=1)
    lines: list[list[str]] = []
    try:
        seen = 0
        while seen < commits:
            line = child.stdout.readline()
            assert line, f"child ended early: {child.stderr.read()[-2000:]}"
            lines.append(line.split())
            seen += lines[-1][0] == "c"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # a line the kill cut short (no newline: the child's buffer went out mid-print) was never reported
    tail = child.stdout.read().split("\n")[:-1]
    lines += [line.split() for line in tail if line.strip()]
    child.stdout.close()
    child.stderr.close()
    return lines


def test_spool_survives_sigkill_at_random_moments(tmp_path):
    path = tmp_path / "spool.db"
    rng = random.Random(os.getpid())
    committed = -1  # highest seq the child reported committed, over all runs
    maybe_removed: set[int] = set()  # the child had started to remove these
    removed: set[int] = set()  # … and finished
    started = time.monotonic()
    for attempt in range(KILLS):
        lines = run_child_until_killed(path, rng.randint(1, 40))
        assert lines[0][0] == "open" and int(lines[0][1]) >= committed, "seq went backwards after a restart"
        pending: list[int] = []
        for tag, *rest in lines[1:]:
            if tag == "c":
                committed = max(committed, int(rest[-1]))
            elif tag == "d":
                pending = [int(s) for s in rest]
                maybe_removed.update(pending)
            elif tag == "D":
                removed.update(pending)

        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), f"kill {attempt}: damaged"
            stored = {seq for (seq,) in db.execute("SELECT seq FROM message")}
        finally:
            db.close()
        lost = set(range(committed + 1)) - stored - maybe_removed
        assert not lost, f"kill {attempt}: committed seqs missing from the spool: {sorted(lost)[:20]}"
        assert not stored & removed, f"kill {attempt}: removed rows came back"
        with Spool(path) as spool:  # the agent's own open path recovers it too
            assert spool.last_seq >= committed
    assert committed > KILLS, "the child committed almost nothing"
    assert time.monotonic() - started < 120
