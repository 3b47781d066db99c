"""Ingest's limits, with ingest as its own process on the real broker and database: its memory
stays bounded during a QoS 0 flood while InfluxDB is down, QoS 1 waits instead of being dropped,
every point InfluxDB refuses reaches the quarantine with InfluxDB's reason, the quarantine keeps to
its size, retained junk and wrong clocks are refused, and the same seq with other content is a
conflict."""
from __future__ import annotations

import itertools
import sqlite3
import time
import uuid

import pytest
import yaml

from stationwatch.broker.influx import InfluxV1Writer, Point
from stationwatch.broker.stack import LocalMosquitto
from stationwatch.core.contract import Event, HealthSample, Heartbeat, MessageClass, Reading, encode, topic
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.quarantine import Quarantine

from support.own_stack import mosquitto, own_influx, publisher  # noqa: F401  (fixtures)
from support import EXAMPLES, wait_for
from support.broker import IngestProcess

pytestmark = pytest.mark.e2e
SITE, GW = "sl-station", "gw-sl-main"
YEAR = 365.25 * 86400


def _config(tmp_path, **limits) -> str:
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["limits"] = limits
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def _quarantine(ingest: IngestProcess) -> dict[str, list[str]]:
    with sqlite3.connect(ingest.quarantine) as db:
        rows = db.execute("SELECT reason, detail FROM quarantine ORDER BY id").fetchall()
    found: dict[str, list[str]] = {}
    for reason, detail in rows:
        found.setdefault(reason, []).append(detail)
    return found


def _reading(seq: int, ts: float, sensor: str = "t-hall", value: float = 20.0, **kw) -> tuple[str, bytes, MessageClass]:
    return topic(SITE, GW, MessageClass.READING, sensor), encode(Reading(v=1, ts=ts, seq=seq, value=value, **kw)), MessageClass.READING


def _by_sensor(writer) -> dict[str, dict]:
    return {r["sensor"]: r for r in writer.query('SELECT * FROM "reading"').get_points()}


def _count(writer, measurement: str = "reading") -> int:
    rows = list(writer.query(f'SELECT count("value") FROM "{measurement}"').get_points())
    return rows[0]["count"] if rows else 0


def _publish(link, items) -> None:
    for info in [link.publish(t, p, k) for t, p, k in items]:
        info.wait_for_publish(30)


# ---- memory ----------------------------------------------------------------------------------------
def test_a_qos0_flood_with_influxdb_down_keeps_ingest_small_and_drops_only_qos0(mosquitto, own_influx, publisher, tmp_path):
    """Before, 300 MB of queued QoS 0 messages; now the queue is bounded, routine QoS 0 is dropped
    with a counter, and every QoS 1 reading sent meanwhile is stored once InfluxDB is back."""
    db = f"flood_{uuid.uuid4().hex[:6]}"
    ingest = IngestProcess(mosquitto, own_influx.url, db, tmp_path)
    try:
        baseline = ingest.rss_mb()
        own_influx.stop()
        now = time.time()
        readings = [_reading(i, now - 60 + i * 0.01, sensor="t-dorm-m1") for i in range(500)]
        _publish(publisher, readings)
        peak = [baseline]
        cameras = ["cam-hall", "cam-med-obs", "cam-kitchen"]
        for start in range(0, 200_000, 10_000):
            for i in range(start, start + 10_000):
                body = Heartbeat(v=1, ts=now, seq=1000 + i, online=True)
                publisher.publish(topic(SITE, GW, MessageClass.HEARTBEAT, cameras[i % 3]), encode(body), MessageClass.HEARTBEAT)
            peak.append(ingest.rss_mb())
        sent = 500 + 200_000

        def seen_all():
            peak.append(ingest.rss_mb())
            m = ingest.metrics()
            return m if m["received_total"] >= sent else None
        m = wait_for(seen_all, timeout=120, interval=0.2, what="ingest to have read the flood")
        assert m["dropped_total"] > 100_000, m
        assert m["queue_depth"] <= 10_000 and m["queue_bytes"] <= 64 * 1024 * 1024
        # the queue is bounded at a few MB; the process must not grow past its start plus 120 MB
        assert max(peak) < baseline + 120, (baseline, max(peak))
        own_influx.start()
        writer = InfluxV1Writer(own_influx.url, db)
        wait_for(lambda: _count(writer) == 500, timeout=120, interval=0.5, what="every QoS 1 reading of the outage")
    finally:
        assert ingest.stop() == 0


@pytest.mark.parametrize("client", ["stream", "paho"])
def test_qos1_waits_for_room_when_the_broker_sends_without_a_window(tmp_path, own_influx, client):
    """With a broker that does not limit in-flight messages, ingest's own queue (and the writer's batch
    in hand) is the bound: nothing is dropped, and all arrive once InfluxDB is back. paho (MQTT 3.1.1) takes what the broker sends,
    so QoS 1 waits for room (the link stops reading); the stream link (MQTT 5) tells the broker its
    receive maximum, the queue's size, so the broker holds the rest and nothing needs to wait."""
    cfg = _config(tmp_path, ingest={"queue_messages": 200, "routine_qos0_messages": 50})
    with LocalMosquitto(tmp_path / "mosquitto", extra_conf="max_inflight_messages 0") as broker:
        pub = MqttLink(BrokerAddress(broker.host, broker.port), "pub-window").start()
        db = f"window_{uuid.uuid4().hex[:6]}"
        ingest = IngestProcess(broker, own_influx.url, db, tmp_path, config=cfg, extra=("--mqtt-client", client))
        try:
            own_influx.stop()
            # more than the writer's batch in hand (5,000 points, retrying) and the queue (200) together
            _publish(pub, [_reading(i, time.time() - 30 + i * 0.001, sensor="t-dorm-m2") for i in range(6000)])
            if client == "paho":
                m = wait_for(lambda: (lambda m: m if m["backpressure_waits_total"] >= 1 else None)(ingest.metrics()),
                             timeout=60, what="a QoS 1 message waiting for room")
            else:  # the window is full: ingest holds all the broker may send (its writer retrying), no more comes
                m = wait_for(lambda: (lambda m: m if m["received_total"] >= 200 else None)(ingest.metrics()),
                             timeout=60, what="the receive maximum taken")
                assert wait_for(ingest.metrics, what="metrics")["received_total"] == 200
                assert m["backpressure_waits_total"] == 0
            assert m["queue_depth"] <= 200 and m["dropped_total"] == 0
            own_influx.start()
            writer = InfluxV1Writer(own_influx.url, db)
            wait_for(lambda: _count(writer) == 6000, timeout=120, interval=0.5, what="all 6000 readings")
        finally:
            assert ingest.stop() == 0
            pub.stop()


# ---- what InfluxDB refuses ---------------------------------------------------------------------------
def test_every_point_influxdb_refuses_reaches_the_quarantine_with_its_reason(mosquitto, influxdb, publisher, tmp_path):
    """A "partial write" says neither which points it dropped nor, with two causes, how many:
    ingest finds each one by halving the batch and quarantines it with InfluxDB's words."""
    db = f"refused_{uuid.uuid4().hex[:6]}"
    writer = InfluxV1Writer(influxdb.url, db)
    writer.ensure_schema()
    now = time.time()
    # the field `value` of gateway_health exists as text in today's shard: every float one conflicts
    writer.write([Point("gateway_health", {"site": SITE, "gateway": GW, "metric": "cpu_temperature"},
                        {"value": "hot"}, int(now * 1000) - 5000)])
    cfg = _config(tmp_path, clock={"ahead_max_s": 400 * YEAR})  # let a year-2263 timestamp through the clock check
    ingest = IngestProcess(mosquitto, influxdb.url, db, tmp_path, config=cfg)
    seq = itertools.count(1)
    try:
        items = [_reading(next(seq), now - 10 + i * 0.01, sensor="t-med-obs", value=float(i)) for i in range(40)]
        for i in range(3):
            body = HealthSample(v=1, ts=now - 5 + i, seq=next(seq), value=50.0 + i, unit="°C")
            items.insert(10 * i + 5, (topic(SITE, GW, MessageClass.HEALTH, "cpu_temperature"), encode(body), MessageClass.HEALTH))
        items.append(_reading(next(seq), 9_300_000_000.0, sensor="t-med-obs"))  # 2264: past InfluxDB's last time
        _publish(publisher, items)
        wait_for(lambda: _count(writer) == 40, timeout=30, what="the 40 good readings")
        found = wait_for(lambda: (lambda q: q if len(q.get("rejected_by_database", [])) == 3 else None)(_quarantine(ingest)),
                         timeout=30, what="the three refused health samples in the quarantine")
        assert all("field type conflict" in d for d in found["rejected_by_database"])
        assert len(found["time_out_of_range"]) == 1 and "2262" in found["time_out_of_range"][0]
        assert set(found) == {"rejected_by_database", "time_out_of_range"}
        assert ingest.metrics()["quarantined_total"] == 4
    finally:
        assert ingest.stop() == 0


def test_the_quarantine_keeps_to_its_size_and_counts_what_it_gave_up(tmp_path):
    q = Quarantine(tmp_path / "q.db", "ingest", max_bytes=200_000)
    for i in range(1000):
        q.add(f"sw/v1/x/y/reading/{i}", bytes(1000), "bad_schema", f"junk {i}")
    assert q.bytes <= 200_000 and q.dropped > 700 and q.counts["bad_schema"] == 1000
    assert q.rows(1)[0]["detail"] == "junk 999"  # the newest are the ones kept
    with sqlite3.connect(tmp_path / "q.db") as db:
        assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 1000 - q.dropped
    q.close()
    again = Quarantine(tmp_path / "q.db", "ingest", max_bytes=200_000)  # the size is known after a restart
    assert again.bytes == q.bytes
    again.close()


# ---- retained junk, clocks, sequences ------------------------------------------------------------
def test_a_retained_reading_is_quarantined_not_stored_again_at_every_start(mosquitto, influxdb, publisher, tmp_path):
    junk = topic(SITE, GW, MessageClass.READING, "t-hall")
    publisher.client.publish(junk, encode(Reading(v=1, ts=time.time(), seq=5, value=99.0)), qos=1, retain=True).wait_for_publish(5)
    ingest = IngestProcess(mosquitto, influxdb.url, f"retained_{uuid.uuid4().hex[:6]}", tmp_path)
    try:
        found = wait_for(lambda: _quarantine(ingest).get("retained"), what="the retained reading in the quarantine")
        assert "retains only status" in found[0]
    finally:
        assert ingest.stop() == 0
        publisher.client.publish(junk, b"", qos=1, retain=True).wait_for_publish(5)


def test_wrong_clocks_are_flagged_or_quarantined_and_replays_may_be_old(mosquitto, influxdb, publisher, tmp_path):
    db = f"clock_{uuid.uuid4().hex[:6]}"
    ingest = IngestProcess(mosquitto, influxdb.url, db, tmp_path)
    writer = InfluxV1Writer(influxdb.url, db)
    now = time.time()
    try:
        _publish(publisher, [
            _reading(1, now + 70 * YEAR, sensor="t-dorm-m1"),        # 70 years ahead: refused
            _reading(2, now - 20 * 86400, sensor="t-dorm-m1"),       # live, 20 days old: refused
            _reading(3, now - 20 * 86400, sensor="t-dorm-f1", historical=True),  # a replay: stored as it is
            _reading(4, now - 7200, sensor="t-dorm-m2"),             # 2 h behind: stored, flagged
            _reading(5, now, sensor="t-hall"),                       # on time
        ])
        rows = wait_for(lambda: (lambda r: r if len(r) == 3 else None)(_by_sensor(writer)), timeout=30,
                        what="the three stored readings")
        assert set(rows) == {"t-dorm-f1", "t-dorm-m2", "t-hall"}
        assert rows["t-dorm-m2"]["skew_s"] == pytest.approx(-7200, abs=30)
        assert rows["t-dorm-f1"]["skew_s"] is None and rows["t-hall"]["skew_s"] is None
        found = _quarantine(ingest)
        assert set(found) == {"clock_ahead", "clock_behind"}
        assert "ahead of its arrival" in found["clock_ahead"][0] and "limits.clock.ahead_max_s" in found["clock_ahead"][0]
        assert ingest.metrics()["clock_flagged_total"] == 1
    finally:
        assert ingest.stop() == 0


def test_the_same_seq_with_other_content_is_a_conflict_and_a_counter_going_back_is_counted(mosquitto, influxdb, publisher, tmp_path):
    db = f"seq_{uuid.uuid4().hex[:6]}"
    ingest = IngestProcess(mosquitto, influxdb.url, db, tmp_path)
    writer = InfluxV1Writer(influxdb.url, db)
    now = time.time() - 600
    door = topic(SITE, GW, MessageClass.EVENT, "door-store")
    try:
        _publish(publisher, [
            _reading(10, now, value=20.0),
            _reading(10, now, value=20.0),                    # redelivered: the same point again
            _reading(10, now, value=20.0, historical=True),   # replayed from the spool: the same message
            _reading(10, now, value=99.0),                    # another message with seq 10: refused
            (door, encode(Event(v=1, ts=now + 1, seq=10, state="open")), MessageClass.EVENT),  # again seq 10
            _reading(11, now + 2, value=21.0),
            _reading(1, now + 300, value=22.0),               # the gateway's counter went back (a new spool)
            _reading(2, now + 310, value=23.0),
        ])
        values = wait_for(lambda: (lambda r: r if len(r) == 4 else None)(
            [(p["seq"], p["value"]) for p in writer.query('SELECT * FROM "reading"').get_points()]),
            timeout=30, what="the four stored readings")
        assert sorted(values) == [(1, 22.0), (2, 23.0), (10, 20.0), (11, 21.0)]
        assert not list(writer.query('SELECT * FROM "records"."event"').get_points())
        found = wait_for(lambda: (lambda q: q if len(q.get("seq_conflict", [])) == 2 else None)(_quarantine(ingest)),
                         what="two conflicts in the quarantine")
        assert "seq 10 of gateway 'gw-sl-main'" in found["seq_conflict"][0]
        assert ingest.metrics()["seq_regressions_total"] == 1
    finally:
        assert ingest.stop() == 0
