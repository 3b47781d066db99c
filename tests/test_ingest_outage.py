"""Lossless ingest under failure, with ingest as its own process (the CLI), on the real broker
and database: InfluxDB down for 60 s mid-stream, ingest SIGKILLed mid-stream, and 100,000
malformed messages interleaved with valid ones. Every valid reading must arrive exactly once."""
from __future__ import annotations

import json
import random
import signal
import time
import uuid

import pytest

from stationwatch.broker.influx import InfluxV1Writer
from stationwatch.core.contract import MessageClass, Reading, encode, topic

from support.own_stack import mosquitto, own_influx, publisher  # noqa: F401  (fixtures)
from support import wait_for
from support.broker import IngestProcess

pytestmark = pytest.mark.e2e
SITE, GW = "sl-station", "gw-sl-main"
SENSORS = ["t-dorm-m1", "t-dorm-m2", "t-dorm-f1", "t-minors-1", "t-med-obs", "t-hall", "supply-main", "heat-kitchen"]


def _reading(i: int, base: float):
    sensor = SENSORS[i % len(SENSORS)]
    body = Reading(v=1, ts=base + i * 0.001, seq=i, value=20 + (i % 100) / 10, unit="°C")
    return topic(SITE, GW, MessageClass.READING, sensor), encode(body)


def _stream(link, n, base, pace_s=0.0, start=0):
    infos = []
    for i in range(start, start + n):
        t, p = _reading(i, base)
        infos.append(link.publish(t, p, MessageClass.READING))
        if pace_s and i % 100 == 0:
            time.sleep(pace_s)  # pacing the producer, not synchronisation
    for info in infos:
        info.wait_for_publish(30)


def _exactly_once(writer, n):
    rows = list(writer.query('SELECT count("value") AS n FROM "reading" GROUP BY "sensor"').get_points())
    total = sum(r["n"] for r in rows)
    if total != n:
        return None
    seqs = [r["seq"] for r in writer.query('SELECT "seq" FROM "reading"').get_points()]
    return sorted(seqs) == list(range(n))



def test_influxdb_down_for_60_s_while_10000_readings_stream(mosquitto, own_influx, publisher, tmp_path):
    db = f"outage_{uuid.uuid4().hex[:6]}"
    ingest = IngestProcess(mosquitto, own_influx.url, db, tmp_path)
    writer = InfluxV1Writer(own_influx.url, db)
    base = time.time() - 3600
    try:
        _stream(publisher, 1000, base)
        wait_for(lambda: ingest.metrics()["written_total"] >= 1000, timeout=30, what="first 1000 written")
        own_influx.stop()
        down_at = time.monotonic()
        _stream(publisher, 9000, base, pace_s=0.05, start=1000)  # streams while the database is away
        m = ingest.metrics()
        assert m["written_total"] < 10000  # they are waiting, not lost
        wait_for(lambda: time.monotonic() - down_at >= 60, timeout=90, interval=1, what="60 s of outage")
        assert ingest.metrics()["write_errors_total"] > 0
        own_influx.start()
        assert wait_for(lambda: _exactly_once(writer, 10000), timeout=120, interval=1,
                        what="all 10,000 readings exactly once")
        assert ingest.proc.poll() is None
    finally:
        assert ingest.stop() == 0


def test_ingest_killed_mid_stream_and_restarted_loses_nothing(mosquitto, influxdb, publisher, tmp_path):
    db = f"kill_{uuid.uuid4().hex[:6]}"
    ingest = IngestProcess(mosquitto, influxdb.url, db, tmp_path)
    writer = InfluxV1Writer(influxdb.url, db)
    base = time.time() - 7200
    try:
        _stream(publisher, 3000, base)
        wait_for(lambda: ingest.metrics()["written_total"] >= 1000, timeout=30, what="some written")
        ingest.stop(signal.SIGKILL)
        _stream(publisher, 7000, base, start=3000)  # while no ingest runs: the broker keeps them
        ingest = IngestProcess(mosquitto, influxdb.url, db, tmp_path, name="ingest-restarted")
        assert wait_for(lambda: _exactly_once(writer, 10000), timeout=120, interval=0.5,
                        what="all 10,000 readings exactly once after the restart")
    finally:
        ingest.stop()


def _garbage(rng: random.Random, i: int) -> tuple[str, bytes]:
    device = rng.choice(SENSORS + ["ghost", "", "x" * 300, "点"])
    cls = rng.choice(["reading", "event", "heartbeat", "status", "cmd", "bogus", ""])
    topics = [f"sw/v1/{SITE}/{GW}/{cls}/{device}", f"sw/v1/{rng.choice(['other', SITE, ''])}/{rng.choice([GW, 'gw-x'])}/{cls}/{device}",
              f"sw/v1/{SITE}/{GW}/reading/{device}/extra", f"sw/v1/{SITE}/{GW}"]
    payloads = [
        rng.randbytes(rng.randint(0, 64)),
        json.dumps({"v": 1, "ts": rng.choice([None, "x", -1, 1e30, 1.79e9]), "seq": rng.choice([-1, "a", 1.5, None]),
                    "value": rng.choice([None, "hot", [], {}])}).encode(),
        json.dumps(rng.choice([[], "s", 1, None, {"v": 2}, {"v": 1}])).encode(),
        b"[" * rng.randint(1, 3000),
        b'{"v":1,"ts":1790000000,"seq":1,"value":NaN}',
        encode(Reading(v=1, ts=1.79e9, seq=i, value=1.0)) if device not in SENSORS else b"{}",
    ]
    return rng.choice(topics), rng.choice(payloads)


def test_100000_malformed_messages_are_quarantined_and_valid_readings_all_arrive(mosquitto, influxdb, publisher, tmp_path):
    db = f"fuzz_{uuid.uuid4().hex[:6]}"
    ingest = IngestProcess(mosquitto, influxdb.url, db, tmp_path)
    writer = InfluxV1Writer(influxdb.url, db)
    rng = random.Random(20261125)
    base = time.time() - 10800
    valid = 2000
    try:
        infos = []
        sent_bad = 0
        for i in range(100_000):
            t, p = _garbage(rng, i)
            infos.append(publisher.client.publish(t, p, qos=1))  # QoS 0 may be dropped by design
            sent_bad += 1
            if i % 50 == 0:
                t, p = _reading(i // 50, base)
                infos.append(publisher.publish(t, p, MessageClass.READING))
            if len(infos) >= 2000:
                for info in infos:
                    info.wait_for_publish(30)
                infos.clear()
        for info in infos:
            info.wait_for_publish(30)
        assert wait_for(lambda: _exactly_once(writer, valid), timeout=120, interval=1, what="every valid reading")
        m = wait_for(lambda: (lambda m: m if m["received_total"] >= sent_bad + valid else None)(ingest.metrics()),
                     timeout=60, interval=0.5, what="ingest to have seen every message")
        # received may also count retained gateway status left on the shared broker by other tests
        assert m["quarantined_total"] == sent_bad
        assert m["received_total"] - m["quarantined_total"] >= valid
        assert ingest.proc.poll() is None
    finally:
        assert ingest.stop() == 0


def test_two_ingest_processes_share_the_stream_and_each_reading_lands_once(mosquitto, influxdb, publisher, tmp_path):
    db = f"shared_{uuid.uuid4().hex[:6]}"
    group = f"ingest{uuid.uuid4().hex[:4]}"
    ingests = [IngestProcess(mosquitto, influxdb.url, db, tmp_path, name=f"i{n}", extra=["--shared", group, "--instance", f"n{n}"])
               for n in range(2)]
    writer = InfluxV1Writer(influxdb.url, db)
    try:
        _stream(publisher, 4000, time.time() - 14400)
        assert wait_for(lambda: _exactly_once(writer, 4000), timeout=60, interval=0.5, what="4000 readings once")
        received = [i.metrics()["received_total"] for i in ingests]
        # each also receives retained gateway status other tests left on the broker
        assert sum(received) >= 4000 and min(received) >= 1000, received
    finally:
        for i in ingests:
            assert i.stop() == 0
