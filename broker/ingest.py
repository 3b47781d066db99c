"""Ingest: MQTT → InfluxDB, batched, at least once end to end.

A message is acknowledged to the broker (PUBACK, paho's manual acknowledgement) only after
InfluxDB has accepted the batch holding it; if InfluxDB is slow or down, unacknowledged
messages stay with the broker, whose in-flight window then stops sending — that is the
back-pressure. Writes are idempotent (see :mod:`.influx`), so a redelivered message overwrites
its own point. Refused messages go to the quarantine and are acknowledged, never written — those
:mod:`.admission` refuses, and every point InfluxDB itself refuses (found by halving the batch).

Memory is bounded (``limits.ingest``): the queue to the writer (:mod:`.backlog`) makes QoS 1 wait
and drops routine QoS 0 with a counter; the quarantine gives up its oldest rows past its size.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from stationwatch.core import collector
from stationwatch.core.contract import ContractError, MessageClass, Refused, item_bytes, subscription
from stationwatch.core.heartbeat import Beacon
from stationwatch.core.metrics import MetricsServer, prometheus_text
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.mqtt_stream import StreamLink
from stationwatch.core.quarantine import Quarantine

from .directory import REFRESH_S, layout_points
from .admission import Admission, routine
from .backlog import Backlog
from .canary import Canary
from .influx import RETENTION_MARGIN_S, RETENTION_S, InfluxV1Writer, Point, PointsRejected, PointWriter
from .receipts import Receipts
from .trend import MinuteTrend, start_trend

log = logging.getLogger(__name__)

CLIENT_ID = "stationwatch-ingest"
ENTRY_BYTES = 1024  # what a queued message costs besides its payload and topic (its point, measured ~940)
MB = 1024 * 1024
LINGER_S = 0.02  # no message for this long: write the batch gathered so far


@dataclass
class IngestStats:
    received: int = 0
    written: int = 0
    quarantined: int = 0
    write_errors: int = 0
    batches: int = 0
    last_batch: int = 0
    lag_s: float = 0.0
    started: float = field(default_factory=time.time)
    # set by Ingest.figures(): the bounded parts' own counters
    dropped: int = 0
    waits: int = 0
    queue_bytes: int = 0
    quarantine_dropped: int = 0
    quarantine_bytes: int = 0
    clock_flagged: int = 0
    seq_regressions: int = 0
    trend_written: int = 0  # 1-minute trend points made from memory (broker/trend.py)
    trend_recomputed: int = 0  # site ranges handed to be recomputed from the stored readings

    def values(self, queue_depth: int, subscribed: bool = False) -> dict[str, float]:
        return {"subscribed": float(subscribed), "received_total": self.received, "written_total": self.written,
                "quarantined_total": self.quarantined, "write_errors_total": self.write_errors,
                "batches_total": self.batches, "last_batch_size": self.last_batch, "lag_seconds": self.lag_s,
                "queue_depth": queue_depth, "uptime_seconds": time.time() - self.started,
                "queue_bytes": self.queue_bytes, "dropped_total": self.dropped, "backpressure_waits_total": self.waits,
                "quarantine_dropped_total": self.quarantine_dropped, "quarantine_bytes": self.quarantine_bytes,
                "clock_flagged_total": self.clock_flagged, "seq_regressions_total": self.seq_regressions,
                "trend_written_total": self.trend_written, "trend_recomputed_total": self.trend_recomputed}


@dataclass
class _Pending:
    """One MQTT message waiting for its points to be stored: acknowledged once all of them are.
    ``points[k]`` becomes None once refused into the quarantine; ``items[k]`` is its place in a
    ``readings`` batch (None: each point is the message itself). ``seqs``: what the receipt reports,
    when admission knew it (else read from the payload)."""
    points: list[Point | None]
    items: Sequence[int] | None
    mid: int
    qos: int
    topic: str = ""
    payload: bytes = b""
    seqs: list[int] | None = None

    def evidence(self, k: int) -> bytes:
        """What the quarantine keeps when InfluxDB refuses point ``k``: the message, or the batch's item."""
        return self.payload if self.items is None else item_bytes(json.loads(self.payload)["items"][self.items[k]])


class Ingest:
    """Turns raw MQTT messages into points and writes them in batches; acks after the write."""

    def __init__(self, cfg, writer: PointWriter, quarantine: Quarantine, ack=None,
                 batch_size: int = 5000, flush_s: float = 0.2):  # points a write (InfluxDB's best size here)
        limits = cfg.limits.ingest
        self.admission = Admission(cfg)
        self.writer = writer
        self.quarantine = quarantine
        self.ack = ack or (lambda mid, qos: None)
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.stats = IngestStats()
        self.gateway_sites = {g.id: g.site for g in cfg.gateways}
        self.seen: dict[str, float] = {}  # gateway → when ingest last took a message of it
        self.queue: Backlog[_Pending] = Backlog(limits.queue_messages, int(limits.queue_mb * MB), limits.routine_qos0_messages)
        self.metrics_port: int | None = None
        self.receipts: Receipts | None = None  # tells the gateways what was stored (broker/receipts.py)
        self.trend: MinuteTrend | None = None  # the 1-minute trend, when this process sees the whole stream
        self._dropped_logged = 0.0

    @property
    def backlog(self) -> int:
        return len(self.queue)

    def figures(self) -> IngestStats:
        """The stats with the queue's, the quarantine's and the checks' own counters filled in."""
        s = self.stats
        s.dropped, s.waits, s.queue_bytes = self.queue.dropped, self.queue.waits, self.queue.bytes
        s.quarantine_dropped, s.quarantine_bytes = self.quarantine.dropped, self.quarantine.bytes
        s.clock_flagged, s.seq_regressions = self.admission.clock_flagged, self.admission.sequences.regressions
        if self.trend is not None:
            s.trend_written, s.trend_recomputed = self.trend.written, self.trend.redone
        return s

    # called on the MQTT network thread: never raises; waits only for room for a QoS 1 message
    def receive(self, topic: str, payload: bytes, mid: int = 0, qos: int = 0, retained: bool = False) -> None:
        self.stats.received += 1
        is_routine = routine(topic)
        if qos == 0 and not self.queue.takes_qos0(is_routine):
            self.queue.dropped += 1  # a QoS 0 flood while the writer cannot keep up: costs no parsing
            self._log_dropped()
            return
        points: list = []
        try:
            found = self.admission.points(topic, payload, retained)
            self.seen[topic.split("/", 4)[3]] = time.time()  # sw/v1/{site}/{gateway}/…: its topic was valid
        except ContractError as exc:
            found = [self._refuse(topic, payload, exc.reason, exc.detail)]
        except Exception as exc:  # a bug in validation must cost one message, not the service
            log.exception("unexpected error validating a message on %r", topic[:200])
            found = [self._refuse(topic, payload, "internal_error", repr(exc))]
        batched = topic.split("/")[4:] == [MessageClass.READINGS.value]
        if all(type(one) is Point for one in found):  # all taken (the express lane's readings, and most others)
            points, items = found, range(len(found)) if batched else None
            seqs = [pt.fields["seq"] for pt in found if "seq" in pt.fields] if found else None
        else:
            points, kept_items, seqs = [], [], None
            for i, one in enumerate(found):
                if isinstance(one, Refused):  # one item of a batch: it alone goes to the quarantine
                    self._refuse(one.topic, one.item, one.reason, one.detail)
                elif one is not None:
                    points.append(one)
                    kept_items.append(i)
            items = kept_items if batched else None
        if not points and qos == 0:
            return  # refused or not stored, and nothing to acknowledge
        # a refused one is in the quarantine already; a QoS 1 one keeps its payload for the receipt (the
        # gateway must not send again what the centre will always refuse)
        kept = payload if points or qos > 0 else b""
        pending = _Pending(points, items, mid, qos, topic, kept, seqs)
        cost = len(kept) + len(topic) + ENTRY_BYTES * max(1, len(points))
        if not self.queue.put(pending, cost, qos, is_routine) and not self.queue.closed:
            self._log_dropped()  # not when stopping: then nothing is taken and the broker keeps it

    def _log_dropped(self) -> None:
        now = time.monotonic()
        if now - self._dropped_logged >= 10:
            self._dropped_logged = now
            log.warning("ingest queue full (%d messages, %.1f MB): QoS 0 messages dropped so far: %d",
                        len(self.queue), self.queue.bytes / MB, self.queue.dropped)

    def _refuse(self, topic: str, payload: bytes, reason: str, detail: str) -> None:
        self.stats.quarantined += 1
        try:
            self.quarantine.add(topic, payload, reason, detail)
        except Exception:  # the quarantine's disk is full or broken: still count, still ack
            log.exception("could not keep a refused message in the quarantine")

    def run(self, stop: threading.Event) -> None:
        """The writer loop: gather a batch, write it (retrying with backoff), then ack it."""
        while not stop.is_set():
            batch = self._gather(stop)
            if batch:
                self._write(batch, stop)
            elif self.trend is not None:  # a quiet stream: the minutes of sensors gone quiet are due
                self._write_trend(self.trend.add(()))
            if self.receipts is not None:
                self.receipts.flush()  # due ones, at most every_s apart: a gateway waits ~1 s, not a beat

    def _gather(self, stop: threading.Event) -> list[_Pending]:
        first = self.queue.get(timeout=0.2)
        if first is None:
            return []
        batch = [first]
        points = len(first.points)
        deadline = time.monotonic() + self.flush_s
        while points < self.batch_size:  # counted in points: a batched message brings many
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # a pause in the stream ends the batch: the broker's window may be full of what we hold
            item = self.queue.get(timeout=min(remaining, LINGER_S))
            if item is None:
                break
            batch.append(item)
            points += len(item.points)
        return batch

    def _outside_retention(self, batch: list[_Pending]) -> None:
        """Points the database would drop as older than their retention policy (a gateway with a
        wrong clock, a spool replayed after a month) go to the quarantine instead."""
        now_ms = time.time() * 1000
        for p in batch:
            for k, point in enumerate(p.points):
                limit = RETENTION_S.get(point.policy) if point is not None else None
                if limit is not None and now_ms - point.time_ms > (limit - RETENTION_MARGIN_S) * 1000:
                    p.points[k] = self._refuse(p.topic, p.evidence(k), "beyond_retention",
                                               f"timestamp older than the '{point.policy}' retention of {limit // 86400} days")

    def _store(self, batch: list[_Pending]) -> None:
        """Write the points of ``batch``. The ones InfluxDB refuses — a whole batch refused, or a
        "partial write" that does not say which points it dropped (and may count them wrong) — are
        found by halving (:meth:`_find_refused`)."""
        points = [pt for p in batch for pt in p.points if pt is not None]
        if not points:
            return
        try:
            self.writer.write(points)
        except PointsRejected as exc:
            self._find_refused([(p, k) for p in batch for k, pt in enumerate(p.points) if pt is not None], exc)

    def _find_refused(self, slots: list[tuple[_Pending, int]], exc: PointsRejected) -> None:
        """The half without refused points is written whole (again: writes are idempotent); each
        refused point goes to the quarantine with InfluxDB's reason."""
        if len(slots) == 1:
            p, k = slots[0]
            p.points[k] = self._refuse(p.topic, p.evidence(k), "rejected_by_database", str(exc)[:500])
            return
        self.stats.write_errors += 1
        log.warning("InfluxDB refused points of a batch of %d (%s); finding them", len(slots), str(exc)[:300])
        half = len(slots) // 2
        for part in (slots[:half], slots[half:]):
            again = None
            try:
                self.writer.write([p.points[k] for p, k in part])
            except PointsRejected as refused:
                again = refused
            if again is not None:  # outside the handler: no chain of exceptions (and their frames) per level
                self._find_refused(part, again)

    def _write(self, batch: list[_Pending], stop: threading.Event) -> None:
        self._outside_retention(batch)
        delay = 0.2
        while True:
            try:  # InfluxDB down halfway through: the points it refused stay refused, the rest is retried
                self._store(batch)
                break
            except Exception as exc:  # InfluxDB down or refusing: keep the batch, back off, retry
                self.stats.write_errors += 1
                log.warning("InfluxDB write of %d message(s) failed (%s); retrying in %.1f s",
                            len(batch), str(exc)[:200], delay)
                if stop.wait(delay):
                    return  # not acked: the broker redelivers them to the next ingest
                delay = min(delay * 2, 5.0)
        written = [pt for p in batch for pt in p.points if pt is not None]
        self.stats.written += len(written)
        self.stats.batches += 1
        self.stats.last_batch = len(written)
        if written:
            self.stats.lag_s = max(0.0, time.time() - max(pt.time_ms for pt in written) / 1000)
        if self.trend is not None:
            self._write_trend(self.trend.add(written))
        for p in batch:
            if p.qos > 0:
                self.ack(p.mid, p.qos)
            if self.receipts is not None:
                self.receipts.note(p.topic, p.payload, p.seqs)
        if self.receipts is not None:
            self.receipts.flush()


    def _write_trend(self, points: list[Point]) -> None:
        """The minutes just completed; what InfluxDB does not take is recomputed later instead."""
        if not points:
            return
        try:
            self.writer.write(points)
        except Exception as exc:
            self.trend.failed(points)
            log.warning("%d trend point(s) not written (%s); recomputed later", len(points), str(exc)[:200])


@dataclass
class IngestOptions:
    shared_group: str | None = None  # several ingest processes share the stream ($share/GROUP/…)
    instance: str = ""               # distinguishes the processes of one group (client id, metrics tag)
    metrics_port: int | None = None  # serve /metrics here (0: a free port)
    metrics_every_s: float = 10.0    # write the `pipeline` measurement this often
    beat_s: float | None = None      # heartbeat and canary period; None: supervision.beat_s of the config
    client: str = "stream"           # the MQTT link: "stream" (core/mqtt_stream.py, MQTT 5) or "paho" (MQTT 3.1.1)


def run_ingest(cfg, address: BrokerAddress, influx_url: str, database: str, quarantine_path: Path,
               stop: threading.Event, writer: PointWriter | None = None,
               options: IngestOptions | None = None, ready: threading.Event | None = None) -> Ingest:
    options = options or IngestOptions()
    collector.tune()
    writer = writer or InfluxV1Writer(influx_url, database)
    alone = options.shared_group is None  # sees every sensor's whole stream: makes the trend itself
    _ensure_schema(writer, stop, trend_query=not alone)
    quarantine = Quarantine(quarantine_path, "ingest", int(cfg.limits.ingest.quarantine_mb * MB))
    holder: dict[str, MqttLink | StreamLink] = {}
    ingest = Ingest(cfg, writer, quarantine, ack=lambda mid, qos: holder["link"].ack(mid, qos))
    client_id = CLIENT_ID + (f"-{options.instance}" if options.instance else "")
    topic_filter = subscription() if not options.shared_group else f"$share/{options.shared_group}/{subscription()}"
    beacon = Beacon("ingest", options.instance or "main")
    beat_s = options.beat_s or cfg.supervision.beat_s
    canary = Canary(writer, client_id, beat_s)

    def on_connect(link: MqttLink) -> None:
        link.subscribe(topic_filter, qos=1)
        beacon.online(link)
        if ready is not None:
            ready.set()

    if options.client == "paho":
        link = MqttLink(address, client_id, clean_start=False, manual_ack=True, on_connect=on_connect,
                        will=beacon.will(), on_message=lambda t, p, m: ingest.receive(t, p, m.mid, m.qos, m.retain))
    else:  # the broker keeps at most as many unacknowledged messages with us as the queue holds
        link = StreamLink(address, client_id, will=beacon.will(), on_connect=on_connect, on_message=ingest.receive,
                          receive_max=cfg.limits.ingest.queue_messages)
    holder["link"] = link
    ingest.receipts = Receipts(lambda t, b: link.publish(t, b, MessageClass.CMD), ingest.admission.inventory.gateway_site)
    if alone:
        ingest.trend = start_trend(writer, stop)
    link.start(wait=None)
    log.info("ingest %s: MQTT %s:%d %s → InfluxDB %s/%s", client_id, address.host, address.port,
             topic_filter, influx_url, database)
    metrics = None
    if options.metrics_port is not None:
        metrics = MetricsServer(lambda: prometheus_text("ingest", ingest.figures().values(ingest.backlog, link.subscribed.is_set()),
                                                        {"quarantined_by_reason_total": dict(quarantine.counts)}),
                                port=options.metrics_port)
        log.info("ingest: metrics at http://127.0.0.1:%d/metrics", metrics.port)
        ingest.metrics_port = metrics.port
    writer_thread = threading.Thread(target=ingest.run, args=(stop,), name="influx-writer", daemon=True)
    writer_thread.start()
    threading.Thread(target=canary.run, args=(stop,), name="influx-canary", daemon=True).start()
    last_report = last_metrics = time.monotonic()
    last_layout = _write_layout(writer, cfg)
    while not stop.wait(beat_s):
        s = ingest.figures()
        beacon.beat(link, {**canary.info(), "received": s.received, "written": s.written,
                           "queue": ingest.backlog, "lag_s": round(s.lag_s, 3), "dropped": s.dropped})
        if time.monotonic() - last_metrics >= options.metrics_every_s:
            last_metrics = time.monotonic()
            _write_pipeline(writer, ingest, client_id, link.subscribed.is_set(), quarantine.counts)
        if time.monotonic() - last_layout >= REFRESH_S:
            last_layout = _write_layout(writer, cfg)
        if time.monotonic() - last_report >= 60:
            last_report = time.monotonic()
            log.info("ingest: received %d, written %d, quarantined %d, write errors %d, QoS 0 dropped %d",
                     s.received, s.written, s.quarantined, s.write_errors, s.dropped)
    writer_thread.join(timeout=10)
    ingest.receipts.flush(force=True)
    ingest.queue.close()  # a QoS 1 message waiting for room is not acknowledged: the broker keeps it
    beacon.shutdown(link)
    link.stop()
    if metrics is not None:
        metrics.close()
    writer.close()
    quarantine.close()
    return ingest


def _write_layout(writer: PointWriter, cfg) -> float:
    """The organisation and the sources of each resolution (broker/directory.py), best effort.
    Returns when it was tried: a failure is retried at the next refresh, not at once."""
    try:
        writer.write(layout_points(cfg, int(time.time() * 1000)))
    except Exception as exc:
        log.warning("organisation directory not written (%s); dashboards' choices may be out of date", exc)
    return time.monotonic()


def _write_pipeline(writer: PointWriter, ingest: Ingest, client_id: str, subscribed: bool,
                    refused: dict[str, int] | None = None) -> None:
    """The pipeline's own figures as points, best effort: a failure here must not stop ingest.
    ``pipeline`` holds the counters; ``pipeline_quarantine`` the refusals by reason (a bounded set)."""
    now_ms = int(time.time() * 1000)
    tags = {"service": "ingest", "instance": client_id}
    fields = {k: float(v) for k, v in ingest.figures().values(ingest.backlog, subscribed).items()}
    points = [Point("pipeline", tags, fields, now_ms)]
    points += [Point("pipeline_quarantine", {**tags, "reason": reason}, {"total": float(n)}, now_ms)
               for reason, n in sorted((refused or {}).items())]
    # how long since each gateway was last heard (never: since ingest started), so a silent one stands out;
    # per instance: processes sharing the stream each see part of it (the dashboards take the youngest)
    points += [Point("gateway_age", {**tags, "site": site, "gateway": gw},
                     {"age_s": round(now_ms / 1000 - ingest.seen.get(gw, ingest.stats.started), 3)}, now_ms)
               for gw, site in sorted(ingest.gateway_sites.items())]
    try:
        writer.write(points)
    except Exception as exc:
        log.debug("pipeline metrics not written: %s", exc)


def _db_unavailable() -> tuple[type[BaseException], ...]:
    """Errors that mean "the database is not there yet" (as opposed to a bug): worth a retry."""
    from influxdb.exceptions import InfluxDBServerError
    from requests.exceptions import RequestException
    return (RequestException, InfluxDBServerError)


def _ensure_schema(writer: PointWriter, stop: threading.Event, trend_query: bool = True) -> None:
    delay = 0.5
    while True:
        try:
            writer.ensure_schema(trend_query)
            return
        except (OSError, ConnectionError) + _db_unavailable() as exc:
            log.warning("InfluxDB not ready (%s); retrying in %.1f s", str(exc)[:200], delay)
            if stop.wait(delay):
                return
            delay = min(delay * 2, 10)
