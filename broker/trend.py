"""The 1-minute trend (``trend.reading_1m``: each sensor's mean, min and max over a minute), made by
ingest from the readings it has just stored, the way Telegraf's aggregators summarise at the edge.

InfluxDB's continuous query did this before: each minute it read every series back. At a country's
128,000 sensors it cost ~26 s of CPU each minute, 1–1.5 cores for 20–40 s, and the alert engine
on the same machine waited behind it (docs/BENCHMARKS.md). Here a reading adds to its sensor's open
minute (a dict look-up); the minute is written when the sensor's next minute begins or when it has
been quiet for :data:`QUIET_S`.

What memory cannot know is recomputed from the stored readings, per site, by the same statement the
continuous query ran (:meth:`~.influx.InfluxV1Writer.downsample`), once the site has been quiet for
:data:`REDO_QUIET_S`:

- a sensor's first minute after ingest starts (the readings before the start went to the ingest
  that stopped, and are in InfluxDB);
- readings of a minute already written (out of order) and readings replayed from a spool
  (``historical``: an outage's minutes arrive long after they ended);
- minutes whose trend points could not be written.

Only one process may see a sensor's stream for this: ingest processes sharing a subscription
(``--shared``, ``--workers``) each see part of it, and keep InfluxDB's continuous query instead.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from .influx import RAW_POLICY, TREND_POLICY, InfluxV1Writer, Point, PointWriter

log = logging.getLogger(__name__)

MEASUREMENT = "reading_1m"
MINUTE_MS = 60_000
QUIET_S = 90.0  # a sensor heard nothing for this long: its open minute is complete
REDO_QUIET_S = 30.0  # a site's minutes to recompute wait until nothing was added to them for this long
REDO_SPAN_MS = 6 * 3600 * 1000  # a recomputation reads at most this much of a site's history at once
SWEEP_S = 10.0  # how often the open minutes are looked at for quiet sensors
REDO_EVERY_S = 5.0  # how often the recomputer looks for due sites
REDO_IDLE = 3.0  # after a recomputation the recomputer rests this many times as long as it took: InfluxDB
# spends at most a quarter of its time on them (2,000 sites' first minutes after a start take ~40 s of its CPU)
START_MARGIN_MS = 120_000  # a minute that began this long after the start cannot have readings with the
# ingest before (gateway clocks within the 60 s tolerance, a stopping ingest's last batch)


@dataclass(slots=True)
class _Minute:
    minute: int  # the minute's number: its start in ms // MINUTE_MS
    tags: dict
    heard: float  # monotonic time its last reading was added
    whole: bool  # every reading of the minute went through this process
    total: float = 0.0
    n: int = 0
    low: float = 0.0
    high: float = 0.0
    written: bool = False  # closed (written or sent to be recomputed); a reading of it now is late


@dataclass(slots=True)
class _Redo:
    first: int  # minute numbers, inclusive
    last: int
    touched: float


class MinuteTrend:
    """Open minutes per sensor, and the sites' minutes to recompute. Not thread-safe: ingest's
    writer thread adds and sweeps; :meth:`due` hands the recomputations to :class:`Recomputer`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, started_ms: int | None = None):
        self.clock = clock
        started_ms = int(time.time() * 1000) if started_ms is None else started_ms
        self._whole_from = (started_ms + START_MARGIN_MS) // MINUTE_MS + 1  # first minute surely all ours
        self._open: dict[tuple[str, str, str], _Minute] = {}
        self._redo: dict[str, _Redo] = {}
        self._lock = threading.Lock()  # _redo only: the recomputer takes from it
        self._swept = clock()
        self.written = 0  # trend points made from memory
        self.redone = 0  # site recomputations handed out

    def add(self, points: Iterable[Point]) -> list[Point]:
        """Readings InfluxDB has taken, in arrival order; returns the minutes they completed."""
        now = self.clock()
        done: list[Point] = []
        for pt in points:
            if pt is None or pt.measurement != "reading" or pt.policy != RAW_POLICY:
                continue
            tags, fields = pt.tags, pt.fields
            minute = pt.time_ms // MINUTE_MS
            key = (tags.get("site", ""), tags.get("gateway", ""), tags.get("sensor", ""))
            m = self._open.get(key)
            if fields.get("historical"):  # replayed: may repeat what was stored, never counted from memory
                if m is not None and m.minute == minute and not m.written:
                    m.whole = False  # a blip within the open minute: recomputed once it closes, not before
                else:
                    self.later(key[0], minute, minute, now)
                continue
            if m is None or (m.tags is not tags and m.tags != tags):  # first heard, or moved by a new config
                if m is not None and not m.written:
                    self._close(m, done, now)
                m = self._open[key] = _Minute(minute, tags, now, whole=minute >= self._whole_from)
            elif minute != m.minute:
                if minute < m.minute:
                    self.later(key[0], minute, minute, now)  # late: that minute is recomputed
                    continue
                if not m.written:
                    self._close(m, done, now)
                m.minute, m.whole, m.written, m.total, m.n = minute, True, False, 0.0, 0  # reused: no garbage
            elif m.written:  # its minute went quiet and was closed, and now more of it arrives
                self.later(key[0], minute, minute, now)
                continue
            m.heard = now
            value = fields.get("value")
            if value is None or isinstance(value, bool):  # quality not ok: no value to summarise
                continue
            if m.n == 0:
                m.low = m.high = value
            elif value < m.low:
                m.low = value
            elif value > m.high:
                m.high = value
            m.total += value
            m.n += 1
        if now - self._swept >= SWEEP_S:  # (module constants are read at each call: tests shorten them)
            self._swept = now
            done += self.sweep(now)
        return done

    def sweep(self, now: float | None = None) -> list[Point]:
        """The open minutes of sensors quiet for :data:`QUIET_S`."""
        now = self.clock() if now is None else now
        done: list[Point] = []
        for m in self._open.values():
            if not m.written and now - m.heard >= QUIET_S:
                self._close(m, done, now)
        return done

    def _close(self, m: _Minute, done: list[Point], now: float) -> None:
        m.written = True
        if not m.whole:
            self.later(m.tags.get("site", ""), m.minute, m.minute, now)
        elif m.n:
            done.append(Point(MEASUREMENT, m.tags, {"value": m.total / m.n, "min": m.low, "max": m.high},
                              m.minute * MINUTE_MS, TREND_POLICY))
            self.written += 1

    def later(self, site: str, first: int, last: int, now: float | None = None) -> None:
        """Minutes ``first``…``last`` of ``site`` to be recomputed from the stored readings."""
        now = self.clock() if now is None else now
        with self._lock:
            r = self._redo.get(site)
            if r is None:
                self._redo[site] = _Redo(first, last, now)
            else:
                r.first, r.last, r.touched = min(r.first, first), max(r.last, last), now

    def failed(self, points: Iterable[Point]) -> None:
        """Trend points InfluxDB did not take: their minutes are recomputed instead."""
        for pt in points:
            minute = pt.time_ms // MINUTE_MS
            self.later(pt.tags.get("site", ""), minute, minute)

    def due(self, now: float | None = None) -> list[tuple[str, int, int]]:
        """(site, start ms, end ms) ranges quiet for :data:`REDO_QUIET_S`, at most
        :data:`REDO_SPAN_MS` long each; handed out once."""
        now = self.clock() if now is None else now
        out = []
        with self._lock:
            for site in [s for s, r in self._redo.items() if now - r.touched >= REDO_QUIET_S]:
                r = self._redo.pop(site)
                start, end = r.first * MINUTE_MS, (r.last + 1) * MINUTE_MS
                out += [(site, a, min(end, a + REDO_SPAN_MS)) for a in range(start, end, REDO_SPAN_MS)]
        self.redone += len(out)
        return out

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._redo)


class Recomputer:
    """Runs the due recomputations in a thread of its own, one site at a time, with a writer of its
    own (a long one must not hold up the readings' writes). A failed one is asked for again."""

    def __init__(self, trend: MinuteTrend, downsample: Callable[[int, int, str], None]):
        self.trend, self.downsample = trend, downsample
        self.failures = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(REDO_EVERY_S):
            self.once(stop)

    def once(self, stop: threading.Event | None = None) -> int:
        done = 0
        rest = stop or threading.Event()
        for site, start_ms, end_ms in self.trend.due():
            if rest.is_set():
                self.trend.later(site, start_ms // MINUTE_MS, end_ms // MINUTE_MS - 1)
                continue
            try:
                t0 = time.monotonic()
                self.downsample(start_ms, end_ms, site)
                done += 1
                rest.wait((time.monotonic() - t0) * REDO_IDLE)
            except Exception as exc:  # InfluxDB away: the same minutes again, once the site is quiet again
                self.failures += 1
                log.warning("trend of site %s not recomputed (%s); trying again later", site, str(exc)[:200])
                self.trend.later(site, start_ms // MINUTE_MS, end_ms // MINUTE_MS - 1)
        return done


def start_trend(writer: PointWriter, stop: threading.Event) -> MinuteTrend:
    """The trend for ingest's writer, and its recomputations in a thread with a writer of its own
    (InfluxDB 1.x only: with the v2 API the minutes memory cannot know stay without a trend point)."""
    trend = MinuteTrend()
    if isinstance(writer, InfluxV1Writer):
        threading.Thread(target=_recompute, args=(trend, InfluxV1Writer(writer.url, writer.database, timeout=120.0), stop),
                         name="trend-recompute", daemon=True).start()
    else:
        log.warning("ingest: the trend of minutes replayed or out of order is not recomputed with this writer (%s)",
                    type(writer).__name__)
    return trend


def _recompute(trend: MinuteTrend, own: InfluxV1Writer, stop: threading.Event) -> None:
    try:
        Recomputer(trend, own.downsample).run(stop)
    finally:
        own.close()  # its kept-alive connections: a process that starts ingest again must not run out of them
