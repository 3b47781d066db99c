"""Ingest: MQTT → InfluxDB, batched, at least once end to end.

A message is acknowledged to the broker (PUBACK, paho's manual acknowledgement) only after
InfluxDB has accepted the batch holding it; if InfluxDB is slow or down, unacknowledged
messages stay with the broker, whose in-flight window then stops sending — that is the
back-pressure. Writes are idempotent (see :mod:`.influx`), so a redelivered message overwrites
its own point. Refused messages go to the quarantine and are acknowledged, never written.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .contract import ContractError, Inventory, parse, subscription
from .influx import InfluxV1Writer, Point, PointWriter, to_point
from .mqtt import BrokerAddress, MqttLink
from .quarantine import Quarantine

log = logging.getLogger(__name__)

CLIENT_ID = "stationwatch-ingest"


@dataclass
class IngestStats:
    received: int = 0
    written: int = 0
    quarantined: int = 0
    write_errors: int = 0
    batches: int = 0
    last_batch: int = 0
    started: float = field(default_factory=time.time)


@dataclass
class _Pending:
    point: Point | None
    mid: int
    qos: int


class Ingest:
    """Turns raw MQTT messages into points and writes them in batches; acks after the write."""

    def __init__(self, cfg, writer: PointWriter, quarantine: Quarantine, ack=None,
                 batch_size: int = 2000, flush_s: float = 0.2):
        self.inventory = Inventory(cfg)
        self.writer = writer
        self.quarantine = quarantine
        self.ack = ack or (lambda mid, qos: None)
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.stats = IngestStats()
        self._queue: queue.Queue[_Pending] = queue.Queue()

    # called on the MQTT network thread: never blocks, never raises
    def receive(self, topic: str, payload: bytes, mid: int = 0, qos: int = 0) -> None:
        self.stats.received += 1
        try:
            msg = parse(topic, payload)
            device = self.inventory.check(msg)
            point = to_point(msg, device)
        except ContractError as exc:
            self.stats.quarantined += 1
            self.quarantine.add(topic, payload, exc.reason, exc.detail)
            point = None
        self._queue.put(_Pending(point, mid, qos))

    def run(self, stop: threading.Event) -> None:
        """The writer loop: gather a batch, write it (retrying with backoff), then ack it."""
        while not stop.is_set():
            batch = self._gather(stop)
            if batch:
                self._write(batch, stop)

    def _gather(self, stop: threading.Event) -> list[_Pending]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.flush_s
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[_Pending], stop: threading.Event) -> None:
        points = [p.point for p in batch if p.point is not None]
        delay = 0.2
        while points:
            try:
                self.writer.write(points)
                break
            except Exception as exc:  # InfluxDB down or refusing: keep the batch, back off, retry
                self.stats.write_errors += 1
                log.warning("InfluxDB write of %d point(s) failed (%s); retrying in %.1f s",
                            len(points), str(exc)[:200], delay)
                if stop.wait(delay):
                    return  # not acked: the broker redelivers them to the next ingest
                delay = min(delay * 2, 5.0)
        self.stats.written += len(points)
        self.stats.batches += 1
        self.stats.last_batch = len(points)
        for p in batch:
            if p.qos > 0:
                self.ack(p.mid, p.qos)


def run_ingest(cfg, address: BrokerAddress, influx_url: str, database: str, quarantine_path: Path,
               stop: threading.Event, writer: PointWriter | None = None) -> Ingest:
    writer = writer or InfluxV1Writer(influx_url, database)
    _ensure_schema(writer, stop)
    quarantine = Quarantine(quarantine_path, "ingest")
    holder: dict[str, MqttLink] = {}
    ingest = Ingest(cfg, writer, quarantine, ack=lambda mid, qos: holder["link"].ack(mid, qos))

    def on_connect(link: MqttLink) -> None:
        link.subscribe(subscription(), qos=1)

    link = MqttLink(address, CLIENT_ID, clean_start=False, manual_ack=True, on_connect=on_connect,
                    on_message=lambda t, p, m: ingest.receive(t, p, m.mid, m.qos))
    holder["link"] = link
    link.start(wait=None)
    log.info("ingest: MQTT %s:%d → InfluxDB %s/%s", address.host, address.port, influx_url, database)
    writer_thread = threading.Thread(target=ingest.run, args=(stop,), name="influx-writer", daemon=True)
    writer_thread.start()
    last_report = time.monotonic()
    while not stop.wait(1.0):
        if time.monotonic() - last_report >= 30:
            last_report = time.monotonic()
            s = ingest.stats
            log.info("ingest: received %d, written %d, quarantined %d, write errors %d",
                     s.received, s.written, s.quarantined, s.write_errors)
    writer_thread.join(timeout=10)
    link.stop()
    writer.close()
    quarantine.close()
    return ingest


def _db_unavailable() -> tuple[type[BaseException], ...]:
    """Errors that mean "the database is not there yet" (as opposed to a bug): worth a retry."""
    from influxdb.exceptions import InfluxDBServerError
    from requests.exceptions import RequestException
    return (RequestException, InfluxDBServerError)


def _ensure_schema(writer: PointWriter, stop: threading.Event) -> None:
    delay = 0.5
    while True:
        try:
            writer.ensure_schema()
            return
        except (OSError, ConnectionError) + _db_unavailable() as exc:
            log.warning("InfluxDB not ready (%s); retrying in %.1f s", str(exc)[:200], delay)
            if stop.wait(delay):
                return
            delay = min(delay * 2, 10)
