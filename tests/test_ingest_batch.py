"""Batched readings (``readings``) through ingest, on the real Mosquitto and InfluxDB: every item is
stored as the single reading of its sensor would be, a malformed item goes to the quarantine alone
with its place and its content, and the receipt names every item's seq so the gateway can let the
batch go."""
from __future__ import annotations

import json
import sqlite3
import time
import uuid

import pytest

from stationwatch.broker.stack import LocalMosquitto
from stationwatch.core.contract import MessageClass, Reading, encode, topic
from stationwatch.core.mqtt import MqttLink
from stationwatch.core.wire import batch_payload, parse_command

from support import wait_for
from support.broker import IngestThread

SITE, GW = "sl-station", "gw-sl-main"


@pytest.fixture
def mosquitto(tmp_path):
    with LocalMosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def ingest(city_config, mosquitto, influxdb, tmp_path):
    with IngestThread(city_config, mosquitto, influxdb, tmp_path) as running:
        yield running


def _rows(writer, sql):
    return list(writer.query(sql).get_points())


def test_a_batch_is_stored_as_its_readings_and_a_bad_item_is_quarantined_alone(ingest, city_config):
    address, writer, qpath = ingest
    receipts: list = []
    gateway = MqttLink(address, GW, on_message=lambda t, p, m: receipts.append(parse_command(t, p))).start()
    gateway.subscribe_wait(topic(SITE, GW, MessageClass.CMD, "+"), 1)
    now = time.time()
    sensors = [s.id for s in city_config.sensors if s.gateway == GW and s.kind == "temperature"]
    items = [{"sensor": s, "ts": now - 5 + i * 0.01, "value": 20.0 + i, "unit": "°C", "quality": "ok"}
             for i, s in enumerate(sensors)]
    body = json.loads(batch_payload(now, 100, items))
    body["items"].insert(1, {"sensor": sensors[0], "ts": now, "seq": 100 + len(items), "value": "warm", "unit": "°C"})
    body["items"].insert(3, {"sensor": "t-nowhere", "ts": now, "seq": 101 + len(items), "value": 1.0, "unit": "°C"})
    gateway.publish(topic(SITE, GW, MessageClass.READINGS), json.dumps(body).encode(),
                    MessageClass.READINGS).wait_for_publish(5)
    # and one single reading, to compare the stored forms
    single = Reading(v=1, ts=now - 4, seq=200, value=30.0, unit="°C")
    gateway.publish(topic(SITE, GW, MessageClass.READING, sensors[0]), encode(single), MessageClass.READING)

    stored = wait_for(lambda: (r := _rows(writer, 'SELECT * FROM "reading"')) and len(r) >= len(items) + 1 and r,
                      timeout=30, what="every good item and the single reading")
    by_seq = {r["seq"]: r for r in stored}
    assert sorted(by_seq) == [*range(100, 100 + len(items)), 200]  # the two bad items are not stored
    for i, s in enumerate(sensors):
        row = by_seq[100 + i]
        assert (row["sensor"], row["value"], row["quality"], row["historical"]) == (s, 20.0 + i, "ok", False)
        assert row["room"] == city_config.sensor(s).room and row["kind"] == "temperature"
    assert {k for k, v in by_seq[200].items() if v is not None} == {k for k, v in by_seq[100].items() if v is not None}

    with sqlite3.connect(qpath) as db:
        refused = wait_for(lambda: (r := db.execute("SELECT reason, detail, payload, topic FROM quarantine ORDER BY id")
                                    .fetchall()) and len(r) >= 2 and r, timeout=30,
                         what="the two bad items quarantined")
    assert [(r[0], r[1].split(":")[0]) for r in refused] == [("bad_schema", "items[1].value"),
                                                             ("unknown_device", "items[3]")]
    assert json.loads(refused[0][2])["value"] == "warm" and json.loads(refused[1][2])["sensor"] == "t-nowhere"
    assert refused[0][3] == topic(SITE, GW, MessageClass.READINGS)

    # the receipt names every seq of the batch, the refused items' too (kept in the quarantine: done)
    def named():
        seqs = {n for cmd in receipts if cmd.name == "stored" for lo, hi in cmd.args["seqs"] for n in range(lo, hi + 1)}
        return seqs >= set(range(100, 102 + len(items))) | {200}
    wait_for(named, timeout=30, what="a receipt naming every item")
    gateway.stop()


def test_a_replayed_batch_overwrites_its_points(ingest, city_config):
    address, writer, _ = ingest
    link = MqttLink(address, f"pub-{uuid.uuid4().hex[:6]}").start()
    now = time.time() - 600
    items = [{"sensor": "t-hall", "ts": now, "value": 18.5, "unit": "°C", "quality": "ok"},
             {"sensor": "t-dorm-m1", "ts": now, "value": 19.5, "unit": "°C", "quality": "ok"}]
    live = batch_payload(now, 7, items)
    replay = live.replace(b'"historical":false', b'"historical":true', 1)
    for body in (live, replay):
        link.publish(topic(SITE, GW, MessageClass.READINGS), body, MessageClass.READINGS).wait_for_publish(5)
    marker = Reading(v=1, ts=time.time(), seq=9, value=1.0, unit="°C")
    link.publish(topic(SITE, GW, MessageClass.READING, "t-hall"), encode(marker), MessageClass.READING)
    wait_for(lambda: _rows(writer, 'SELECT * FROM "reading" WHERE seq = 9'), timeout=30, what="the marker after the replay")
    rows = _rows(writer, 'SELECT * FROM "reading" WHERE seq < 9')
    assert sorted((r["sensor"], r["historical"]) for r in rows) == [("t-dorm-m1", True), ("t-hall", True)]
    link.stop()


def test_an_item_older_than_its_retention_is_quarantined_alone_with_the_item(ingest):
    """A spool replayed after 40 days: the raw policy keeps readings 30 days, so that item goes to
    the quarantine (InfluxDB would drop it) and the fresh items of the same batch are stored."""
    address, writer, qpath = ingest
    link = MqttLink(address, f"pub-{uuid.uuid4().hex[:6]}").start()
    now, old = time.time(), time.time() - 40 * 86400
    items = [{"sensor": "t-hall", "ts": now - 60, "value": 18.5, "unit": "°C", "quality": "ok"},
             {"sensor": "t-dorm-m1", "ts": old, "value": 3.5, "unit": "°C", "quality": "ok"},
             {"sensor": "t-dorm-m2", "ts": now - 60, "value": 19.5, "unit": "°C", "quality": "ok"}]
    body = batch_payload(now, 50, items).replace(b'"historical":false', b'"historical":true', 1)
    link.publish(topic(SITE, GW, MessageClass.READINGS), body, MessageClass.READINGS).wait_for_publish(5)
    rows = wait_for(lambda: (r := _rows(writer, 'SELECT * FROM "reading"')) and len(r) >= 2 and r, timeout=30,
                    what="the fresh items")
    assert sorted(r["seq"] for r in rows) == [50, 52]
    with sqlite3.connect(qpath) as db:
        [(reason, payload)] = wait_for(lambda: db.execute("SELECT reason, payload FROM quarantine").fetchall(),
                                       timeout=30, what="the old item quarantined")
    assert reason == "beyond_retention" and json.loads(payload) == {**items[1], "seq": 51}
    link.stop()
