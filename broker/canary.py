"""Ingest's check that InfluxDB is alive: a canary point written and read back."""
from __future__ import annotations

import threading
import time

from .influx import PointWriter


class Canary:
    """Is InfluxDB alive? A point written and read back every ``period_s``, in a thread of its own
    (a hanging database must not delay ingest's heartbeat). What it found goes into the beat."""

    def __init__(self, writer: PointWriter, instance: str, period_s: float):
        self.writer, self.instance, self.period_s = writer, instance, period_s
        self.ok: bool | None = None  # None: not checked yet
        self.checked_at: float | None = None
        self.ok_at: float | None = None  # last time the database took and returned the canary
        self.error: str | None = None
        self.n = 0

    def run(self, stop: threading.Event) -> None:
        while True:
            self.n += 1
            try:
                ok = bool(self.writer.canary(self.instance, self.n))
                self.error = None if ok else "the canary point did not come back / 写入后读不回"
            except Exception as exc:  # noqa: BLE001 — any failure is the database's state, reported
                ok, self.error = False, f"{type(exc).__name__}: {str(exc)[:200]}"
            self.ok, self.checked_at = ok, time.time()
            if ok:
                self.ok_at = self.checked_at
            if stop.wait(self.period_s):
                return

    def info(self) -> dict[str, object]:
        return {"influx_ok": self.ok, "influx_checked_at": self.checked_at, "influx_ok_at": self.ok_at,
                "influx_error": self.error}
