"""Several ingest processes on one MQTT v5 shared subscription (``$share/{group}/sw/v1/+/+/#``):
the broker hands each message to one of them, so the stream is parsed on every core and the
writes to InfluxDB overlap. ``stationwatch ingest --workers N`` starts N of them, each a
``stationwatch ingest --shared GROUP --instance {name}{i}`` of its own, and keeps them running.

Lossless as one ingest is: each worker acknowledges a message only after InfluxDB took it; its
session is persistent and its name stable, so a worker that dies is started again under the same
client id and the broker gives it back the messages it held unacknowledged. Processes, not
threads: the work per message is Python, and one interpreter runs it on one core.

Example::

    pool = WorkerPool(["stationwatch", "ingest", "-c", "station.yaml", "--shared", "ingest"], 2, "w")
    pool.run(stop)   # until stop is set; then SIGTERM to every worker, which stops cleanly
"""
from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0  # a worker that keeps dying is started again less often
STOP_S = 30.0  # a worker's clean stop: finish its batch, flush receipts, say goodbye


@dataclass
class _Worker:
    name: str
    args: list[str]
    proc: subprocess.Popen | None = None
    backoff: float = RESTART_MIN_S
    due: float = 0.0  # monotonic time of the next start
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)


class WorkerPool:
    """``n`` copies of ``args`` (a ``stationwatch ingest`` command line with ``--shared``), each
    with ``--instance {prefix}{i}`` (and, if ``metrics_port`` is given, ``--metrics-port`` + i)."""

    def __init__(self, args: list[str], n: int, prefix: str = "w", metrics_port: int | None = None):
        if n < 1:
            raise ValueError(f"--workers must be at least 1, not {n}")
        self.workers = [_Worker(f"{prefix}{i}", [*args, "--instance", f"{prefix}{i}",
                                                 *(["--metrics-port", str(metrics_port + i if metrics_port else 0)]
                                                   if metrics_port is not None else [])])
                        for i in range(1, n + 1)]

    def _start(self, w: _Worker) -> None:
        w.proc = subprocess.Popen(w.args)
        w.started = time.monotonic()
        log.info("ingest worker %s started (pid %d)", w.name, w.proc.pid)

    def run(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        for w in self.workers:
            self._start(w)
        try:
            while not stop.wait(poll_s):
                self._tend()
        finally:
            self.stop()

    def _tend(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is not None:
                code, w.proc = w.proc.returncode, None
                if now - w.started > 60:
                    w.backoff = RESTART_MIN_S  # it ran a while: this is not a crash loop
                w.due = now + w.backoff
                log.error("入库进程退出 / ingest worker %s exited with %s; starting it again in %.0f s "
                          "(its session keeps what it had not stored)", w.name, code, w.backoff)
                w.backoff = min(w.backoff * 2, RESTART_MAX_S)
            if w.proc is None and now >= w.due:
                w.restarts += 1
                self._start(w)

    def pids(self) -> dict[str, int | None]:
        return {w.name: (w.proc.pid if w.proc is not None and w.proc.poll() is None else None) for w in self.workers}

    def stop(self) -> None:
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + STOP_S
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("ingest worker pid %d did not stop in %.0f s; killed (the broker keeps what it held)",
                          proc.pid, STOP_S)
                proc.kill()
                proc.wait()
