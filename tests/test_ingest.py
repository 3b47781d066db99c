"""Ingest against the real Mosquitto and InfluxDB started by the suite: readings arrive, bad
input is quarantined and counted without stopping the flow, replays do not duplicate."""
from __future__ import annotations

import itertools
import threading
import time
import uuid

import pytest

from stationwatch.broker.influx import InfluxV1Writer
from stationwatch.broker.ingest import IngestOptions, run_ingest
from stationwatch.core.contract import Event, MessageClass, Reading, encode, topic
from stationwatch.core.mqtt import MqttLink

from support import wait_for

SITE, GW = "sl-station", "gw-sl-main"
PROBES = itertools.count(10**9)  # a gateway has one seq counter: the probes take numbers no test uses


@pytest.fixture
def mosquitto(tmp_path):
    """A broker of this test's own: the suite's shared one carries other tests' retained status
    and sessions, and these tests count every message the ingest receives."""
    from stationwatch.broker.stack import LocalMosquitto
    with LocalMosquitto(tmp_path / "mosquitto") as broker:
        yield broker

@pytest.fixture
def running_ingest(city_config, broker_address, influxdb, tmp_path):
    database = f"t_{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("ingest", run_ingest(
        city_config, broker_address, influxdb.url, database, tmp_path / "q.db", stop,
        options=IngestOptions(metrics_every_s=0.3, instance=database))), daemon=True)
    thread.start()
    writer = InfluxV1Writer(influxdb.url, database)
    # the ingest's persistent session exists once the database does and its subscription is live
    wait_for(lambda: any(d["name"] == database for d in writer._client.get_list_database()), what="database")
    yield writer, tmp_path / "q.db"
    stop.set()
    thread.join(timeout=15)
    assert not thread.is_alive(), "ingest did not stop on request"


@pytest.fixture
def publisher(broker_address):
    link = MqttLink(broker_address, f"test-pub-{uuid.uuid4().hex[:6]}").start()
    yield link
    link.stop()


def _count(writer, sql):
    rows = list(writer.query(sql).get_points())
    return rows[0]["count"] if rows else 0


def _publish_all(link, items):
    infos = [link.publish(t, p, k) for t, p, k in items]
    for info in infos:
        info.wait_for_publish(10)


def _ready(writer, link):
    """Publish a probe reading until the ingest has written one (its subscription is live)."""
    def probe():
        body = Reading(v=1, ts=time.time(), seq=next(PROBES), value=1.0, unit="°C")
        link.publish(topic(SITE, GW, MessageClass.READING, "t-hall"), encode(body), MessageClass.READING).wait_for_publish(5)
        return _count(writer, 'SELECT count("value") FROM "reading" WHERE sensor=\'t-hall\'')
    wait_for(probe, timeout=20, interval=0.5, what="ingest subscription")


def test_readings_arrive_in_influxdb_queryable_with_influxql(running_ingest, publisher, city_config):
    writer, _ = running_ingest
    _ready(writer, publisher)
    base = time.time() - 60
    sensors = [s for s in city_config.sensors if s.kind == "temperature"]
    items = []
    seq = itertools.count()
    for i in range(50):
        for s in sensors:
            body = Reading(v=1, ts=base + i * 0.5, seq=next(seq), value=20.0 + i / 100, unit="°C")
            items.append((topic(SITE, GW, MessageClass.READING, s.id), encode(body), MessageClass.READING))
    _publish_all(publisher, items)
    for s in sensors:
        wait_for(lambda: _count(writer, f'SELECT count("value") FROM "reading" WHERE sensor=\'{s.id}\'') >= 50,
                 what=f"50 readings of {s.id}")
    row = list(writer.query('SELECT last("value"), room, kind FROM "reading" WHERE sensor=\'t-dorm-m1\'').get_points())[0]
    assert row["room"] == "dorm-m1" and row["kind"] == "temperature"
    assert row["last"] == pytest.approx(20.49)


def test_events_go_to_the_long_retention_policy(running_ingest, publisher):
    writer, _ = running_ingest
    _ready(writer, publisher)
    body = Event(v=1, ts=time.time(), seq=1, state="alarm")
    _publish_all(publisher, [(topic(SITE, GW, MessageClass.EVENT, "smk-kitchen"), encode(body), MessageClass.EVENT)])
    rows = wait_for(lambda: list(writer.query('SELECT * FROM "records"."event" WHERE device=\'smk-kitchen\'').get_points()),
                    what="the smoke event")
    assert rows[0]["state"] == "alarm" and rows[0]["room"] == "kitchen"


def test_malformed_messages_are_quarantined_and_valid_ones_all_arrive(running_ingest, publisher):
    writer, qpath = running_ingest
    _ready(writer, publisher)
    base = time.time() - 120
    bad = [
        (topic(SITE, GW, MessageClass.READING, "t-hall"), b"not json at all", "not_json"),
        (topic(SITE, GW, MessageClass.READING, "t-hall"), b'{"v":1,"ts":"yesterday","seq":1,"value":3}', "bad_schema"),
        (topic(SITE, GW, MessageClass.READING, "no-such-sensor"), encode(Reading(v=1, ts=base, seq=1, value=1.0)), "unknown_device"),
        (topic("other-site", GW, MessageClass.READING, "t-hall"), encode(Reading(v=1, ts=base, seq=1, value=1.0)), "wrong_site"),
        ("sw/v1/sl-station/gw-sl-main/bogus/t-hall", b"{}", "bad_topic"),
        (topic(SITE, GW, MessageClass.READING, "t-hall"), b'{"v":9,"ts":1,"seq":1}', "bad_version"),
        (topic(SITE, GW, MessageClass.READING, "t-hall"), b'[1,2,3]', "bad_schema"),
        (topic(SITE, GW, MessageClass.READING, "t-hall"), b'\xff\xfe\x00', "not_json"),
    ]
    items = []
    for i in range(100):
        body = Reading(v=1, ts=base + i * 0.01, seq=1000 + i, value=float(i), unit="°C")
        items.append((topic(SITE, GW, MessageClass.READING, "t-med-obs"), encode(body), MessageClass.READING))
        t, p, _ = bad[i % len(bad)]
        items.append((t, p, MessageClass.READING))
    _publish_all(publisher, items)
    wait_for(lambda: _count(writer, 'SELECT count("value") FROM "reading" WHERE sensor=\'t-med-obs\' AND time < now() - 100s') >= 100,
             what="all 100 valid readings")
    import sqlite3
    with sqlite3.connect(qpath) as db:
        reasons = dict(wait_for(lambda: db.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason").fetchall()
                                if db.execute("SELECT count(*) FROM quarantine").fetchone()[0] >= 100 else None,
                                what="100 quarantined messages"))
        raw = db.execute("SELECT payload, topic FROM quarantine WHERE reason='not_json' LIMIT 1").fetchone()
    assert set(reasons) == {r for _, _, r in bad}
    assert sum(reasons.values()) == 100
    assert raw[0] in (b"not json at all", b"\xff\xfe\x00")  # raw bytes kept for inspection


def test_a_replayed_message_overwrites_instead_of_duplicating(running_ingest, publisher):
    writer, _ = running_ingest
    _ready(writer, publisher)
    body = Reading(v=1, ts=time.time() - 30, seq=77, value=19.5, unit="°C")
    item = (topic(SITE, GW, MessageClass.READING, "t-dorm-f1"), encode(body), MessageClass.READING)
    _publish_all(publisher, [item, item, item])
    marker = Reading(v=1, ts=time.time(), seq=78, value=19.6, unit="°C")
    _publish_all(publisher, [(topic(SITE, GW, MessageClass.READING, "t-dorm-f1"), encode(marker), MessageClass.READING)])
    wait_for(lambda: _count(writer, 'SELECT count("value") FROM "reading" WHERE sensor=\'t-dorm-f1\' AND seq=78'), what="marker")
    assert _count(writer, 'SELECT count("value") FROM "reading" WHERE sensor=\'t-dorm-f1\' AND seq=77') == 1


def test_the_pipeline_charts_itself_in_influxdb(running_ingest, publisher):
    writer, _ = running_ingest
    _ready(writer, publisher)
    rows = wait_for(lambda: [r for r in writer.query('SELECT * FROM "pipeline" WHERE "service" = \'ingest\'').get_points()
                             if r["written_total"] >= 1], what="a pipeline point counting the write")
    assert rows[-1]["subscribed"] == 1 and rows[-1]["quarantined_total"] == 0


def test_a_reading_older_than_its_retention_is_quarantined_and_does_not_jam_the_stream(running_ingest, publisher):
    """InfluxDB drops points older than their retention policy and answers 400 ("partial write");
    a spool replayed after 40 days must not stop every later reading from being stored."""
    writer, qpath = running_ingest
    _ready(writer, publisher)
    old = time.time() - 40 * 86400  # raw readings are kept 30 days
    items = [(topic(SITE, GW, MessageClass.READING, "t-dorm-m2"),
              encode(Reading(v=1, ts=old + i, seq=500 + i, value=5.0, historical=True)), MessageClass.READING) for i in range(5)]
    items.append((topic(SITE, GW, MessageClass.EVENT, "door-store"),
                  encode(Event(v=1, ts=old, seq=600, state="open", historical=True)), MessageClass.EVENT))
    items.append((topic(SITE, GW, MessageClass.READING, "t-dorm-m2"), encode(Reading(v=1, ts=time.time(), seq=601, value=21.0)), MessageClass.READING))
    _publish_all(publisher, items)
    wait_for(lambda: _count(writer, 'SELECT count("value") FROM "reading" WHERE sensor=\'t-dorm-m2\' AND seq=601'),
             what="the fresh reading after the stale ones")
    # events are alarm records, kept 400 days: a 40-day-old one is still stored
    assert list(writer.query('SELECT * FROM "records"."event" WHERE device=\'door-store\'').get_points())
    import sqlite3
    with sqlite3.connect(qpath) as db:
        assert db.execute("SELECT count(*) FROM quarantine WHERE reason='beyond_retention'").fetchone()[0] == 5
