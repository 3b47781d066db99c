"""The gateway's disk spool: order, seq that never goes back, the bounded drop policy (routine
telemetry oldest first, events never), historical flags on replay, and forwarding to the real
Mosquitto with removal on PUBACK."""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

import pytest

from stationwatch.core.contract import MessageClass, parse, topic
from stationwatch.core.mqtt import MqttLink
from stationwatch.core.wire import payload
from stationwatch.gateway.forwarder import Forwarder
from stationwatch.gateway.spool import ROW_OVERHEAD, Outgoing, Spool, SpoolError

from support import wait_for

SITE, GW = "spool-test", "gw-spool-test"  # topics of its own on the shared broker


def reading(sensor: str = "t-dorm-m1", value: float = 21.5) -> Outgoing:
    return Outgoing(MessageClass.READING, topic(SITE, GW, MessageClass.READING, sensor),
                    lambda seq: payload(time.time(), seq, value=value, unit="°C", quality="ok"))


def event(device: str = "smk-dorm-m1", state: str = "alarm") -> Outgoing:
    return Outgoing(MessageClass.EVENT, topic(SITE, GW, MessageClass.EVENT, device),
                    lambda seq: payload(time.time(), seq, state=state, value=1.0))


def heartbeat(camera: str = "cam-hall") -> Outgoing:
    return Outgoing(MessageClass.HEARTBEAT, topic(SITE, GW, MessageClass.HEARTBEAT, camera),
                    lambda seq: payload(time.time(), seq, online=True, latency_ms=12.0))


def bodies(spool: Spool, limit: int = 100_000):
    return [(row, json.loads(row.payload)) for row in spool.pending({}, limit)]


def test_events_go_first_then_routine_telemetry_each_in_spool_order(tmp_path):
    with Spool(tmp_path / "spool.db") as spool:
        spool.append([reading("a"), reading("b"), heartbeat()], offline=False)
        spool.append([event("smk-1"), reading("a")], offline=False)
        spool.append([event("smk-1", "normal")], offline=False)
        rows = spool.pending({}, 100)
    assert [(r.kind, r.seq) for r in rows] == [
        (MessageClass.EVENT, 3), (MessageClass.EVENT, 5),
        (MessageClass.READING, 0), (MessageClass.READING, 1), (MessageClass.HEARTBEAT, 2), (MessageClass.READING, 4)]
    assert all(parse(r.topic, r.payload).body.seq == r.seq for r in rows)


def test_seq_never_goes_backwards_even_when_everything_was_sent(tmp_path):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        assert spool.last_seq == -1
        assert spool.append([reading()] * 5, offline=False) == [0, 1, 2, 3, 4]
        assert spool.sent([r.id for r in spool.pending({}, 10)]) == 5
        assert spool.rows == 0
    with Spool(path) as spool:
        assert spool.last_seq == 4
        assert spool.append([event()], offline=False) == [5]
        assert spool.pending({}, 10)[0].id > 5  # ids are not reused either


def test_one_spool_file_one_agent(tmp_path):
    with Spool(tmp_path / "spool.db"):
        with pytest.raises(SpoolError, match="in use"):
            Spool(tmp_path / "spool.db")


def test_when_full_the_oldest_routine_telemetry_goes_first_and_events_never(tmp_path, caplog):
    size = len(reading().topic) + len(b"x" * 100) + ROW_OVERHEAD  # about one reading
    with Spool(tmp_path / "spool.db", max_bytes=40 * size) as spool:
        spool.append([event("smk-1")], offline=True)
        for i in range(200):
            spool.append([reading(f"t-{i}") if i % 10 else heartbeat(f"cam-{i}")], offline=True)
        spool.append([event("smk-1", "normal")], offline=True)
        kept = bodies(spool)
        assert spool.bytes <= spool.max_bytes
        events = [row.seq for row, _ in kept if row.kind is MessageClass.EVENT]
        routine = [row.seq for row, _ in kept if row.kind is not MessageClass.EVENT]
        assert events == [0, 201]
        assert routine == list(range(routine[0], 201))  # the newest ones, none missing in between
        assert spool.stats.dropped[MessageClass.READING.value] + spool.stats.dropped[MessageClass.HEARTBEAT.value] == routine[0] - 1
        assert spool.stats.dropped[MessageClass.HEARTBEAT.value] > 0
        assert MessageClass.EVENT.value not in spool.stats.dropped

        # only events left: the spool grows past its budget and says so loudly, dropping nothing
        spool.sent([row.id for row, _ in kept])
        with caplog.at_level(logging.ERROR, logger="stationwatch.gateway.spool"):
            for i in range(100):
                spool.append([event(f"smk-{i}")], offline=True)
        assert spool.rows == 100 and spool.bytes > spool.max_bytes
        assert MessageClass.EVENT.value not in spool.stats.dropped
        assert any("OVER BUDGET" in r.message for r in caplog.records)


def test_messages_spooled_offline_or_left_from_an_earlier_run_are_historical(tmp_path):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        spool.append([reading("live")], offline=False)
        spool.append([reading("outage"), event()], offline=True)
        flags = {body.get("state", row.topic.rsplit("/", 1)[1]): (row.historical, body["historical"])
                 for row, body in bodies(spool)}
        assert flags == {"live": (False, False), "outage": (True, True), "alarm": (True, True)}
        spool.sent([row.id for row, _ in bodies(spool) if row.topic.endswith("/outage")])
        assert spool.stats.replayed == 1 and spool.stats.sent == {"reading": 1}
    with Spool(path) as spool:  # after a restart, whatever is still spooled is a replay
        spool.append([reading("new")], offline=False)
        flags = {row.topic.rsplit("/", 1)[1]: body["historical"] for row, body in bodies(spool) if row.kind is MessageClass.READING}
        assert flags == {"live": True, "new": False}
        assert all(parse(row.topic, row.payload) for row, _ in bodies(spool))  # still valid contract messages


def test_a_message_that_cannot_be_encoded_is_skipped_without_losing_the_batch(tmp_path, caplog):
    bad = Outgoing(MessageClass.READING, topic(SITE, GW, MessageClass.READING, "t-bad"),
                   lambda seq: payload(time.time(), seq, value=float("nan")))
    with Spool(tmp_path / "spool.db") as spool:
        assert spool.append([reading("a"), bad, reading("b")], offline=False) == [0, 1]
        assert [r.topic.rsplit("/", 1)[1] for r in spool.pending({}, 10)] == ["a", "b"]


def test_a_damaged_spool_file_is_moved_aside_and_the_agent_goes_on(tmp_path, caplog):
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not a database" * 100)
    with Spool(path) as spool:
        assert spool.append([event()], offline=True) == [0]
    assert list(tmp_path.glob("spool.db.damaged-*"))
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_forwarder_sends_in_order_and_removes_each_message_on_its_puback(tmp_path, broker_address):
    got: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def on_message(t, payload, _m):
        with lock:
            got.append((t, json.loads(payload)))

    sub = MqttLink(broker_address, "test-spool-sub", on_message=on_message).start()
    sub.subscribe_wait(f"sw/v1/{SITE}/{GW}/+/+")  # readings and events; no retained status
    with Spool(tmp_path / "spool.db") as spool:
        spool.append([reading(f"t-{i % 7}", i) for i in range(2000)], offline=True)
        spool.append([event()], offline=True)
        link = MqttLink(broker_address, GW)
        forwarder = Forwarder(spool, link, window=300)
        link.start()
        forwarder.start()
        try:
            assert forwarder.drain(30), f"{spool.rows} message(s) still spooled"
            wait_for(lambda: len(got) >= 2001, 10, what="all messages at the subscriber")
        finally:
            forwarder.stop()
            link.stop()
            sub.stop()
        assert spool.rows == 0 and spool.bytes == 0
        assert spool.stats.sent == {"reading": 2000, "event": 1} and spool.stats.replayed == 2001
    assert got[0][1]["state"] == "alarm"  # the event overtakes the readings spooled before it
    values = [body["value"] for _, body in got[1:]]
    assert values == list(range(2000)) and all(body["historical"] for _, body in got)


def test_a_receipt_removes_exactly_the_seqs_it_names(tmp_path):
    with Spool(tmp_path / "spool.db") as spool:
        spool.append([reading()] * 6 + [event()] + [reading()] * 3, offline=False)
        spool.sent([r.id for r in spool.pending({}, 100)])  # not end to end yet: the PUBACK removed them
        spool.append([reading()] * 10, offline=False)        # seqs 10..19
        spool.stored([(10, 10)])                              # the first receipt: end to end from now on
        spool.sent([r.id for r in spool.pending({}, 100)])    # acknowledged by the broker, kept for the centre
        assert spool.rows == 9
        assert spool.stored([(12, 14), (19, 25)]) == 4
        left = [r.seq for r in spool.pending({}, 100)]
        assert spool.rows == 5 and left == [], "still waiting for the centre, not sent again"
        assert spool.requeue(time.time() + 1) and sorted(r.seq for r in spool.pending({}, 100)) == [11, 15, 16, 17, 18]


def test_a_spool_from_before_ids_followed_seqs_is_renumbered_once_in_order(tmp_path):
    """Spools written by earlier gateways numbered rows on their own; opening one renumbers it
    and keeps every message, its order and the seq counter."""
    path = tmp_path / "spool.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE message (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
            class TEXT NOT NULL, seq INTEGER NOT NULL, priority INTEGER NOT NULL, historical INTEGER NOT NULL,
            size INTEGER NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('next_seq', 500), ('next_session', 3);""")
    for n, seq in enumerate([300, 301, 305, 1, 2, 499]):  # ids 1..6; 3 ids collide with seq + 1 on the way
        db.execute("INSERT INTO message (topic, payload, class, seq, priority, historical, size) VALUES "
                   "(?, ?, 'reading', ?, 0, 0, 100)", (f"t/{n}", payload(1.79e9, seq, value=1.0, unit="°C"), seq))
    db.commit()
    db.close()
    with Spool(path) as spool:
        rows = spool.pending({}, 100)
        assert [r.topic for r in rows] == ["t/3", "t/4", "t/0", "t/1", "t/2", "t/5"], "seq order"
        assert all(r.id == r.seq + 1 for r in rows)
        assert spool.last_seq == 499
        spool.stored([(300, 305)])
        assert [r.seq for r in spool.pending({}, 100)] == [1, 2, 499]
    with Spool(path) as spool:  # once: a second open changes nothing
        assert [r.seq for r in spool.pending({}, 100)] == [1, 2, 499]
