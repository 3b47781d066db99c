"""Batched readings in the gateway: the spool gives a ``readings`` batch one seq per item, flips the
replay flag of all its items at once, lets it go on the receipt naming its items and counts them
when a damaged file is salvaged; the agent with ``agent.batch_readings`` sends a poll cycle's
readings as batches through a broker outage, every item exactly once, events still one by one."""
from __future__ import annotations

import json
import sqlite3
import time

from stationwatch.broker.stack import LocalMosquitto, free_port
from stationwatch.core.contract import MessageClass, fan_out, parse, subscription, topic
from stationwatch.core.mqtt import BrokerAddress
from stationwatch.core.wire import batch_payload, payload
from stationwatch.gateway import spool_rescue
from stationwatch.gateway.agent import Agent
from stationwatch.gateway.spool import Outgoing, Spool

from support import wait_for
from support.agent import Collector, Thermometer, station, temperature_sensors

SITE, GW = "spool-test", "gw-spool-test"
BATCH = topic(SITE, GW, MessageClass.READINGS)


def batch(*sensors: str) -> Outgoing:
    items = [{"sensor": s, "ts": time.time(), "value": 20.0 + i, "unit": "°C", "quality": "ok"}
             for i, s in enumerate(sensors)]
    return Outgoing(MessageClass.READINGS, BATCH, lambda seq: batch_payload(time.time(), seq, items), seqs=len(items))


def event(device: str = "smk-dorm-m1") -> Outgoing:
    return Outgoing(MessageClass.EVENT, topic(SITE, GW, MessageClass.EVENT, device),
                    lambda seq: payload(time.time(), seq, state="alarm", value=1.0))


def items(row) -> list:
    return fan_out(parse(row.topic, row.payload))


def test_a_batch_takes_a_seq_per_item_and_the_counter_goes_on_after_it(tmp_path):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        assert spool.append([batch("a", "b", "c"), event(), batch("d", "e")], offline=False) == [0, 3, 4]
        rows = spool.pending({}, 10)
        assert [(r.kind, r.seq) for r in rows] == [(MessageClass.EVENT, 3), (MessageClass.READINGS, 0),
                                                   (MessageClass.READINGS, 4)]
        assert [[m.body.seq for m in items(r)] for r in rows[1:]] == [[0, 1, 2], [4, 5]]
    with Spool(path) as spool:  # the counter is kept past the last item
        assert spool.last_seq == 5 and spool.append([event()], offline=False) == [6]


def test_a_replayed_batch_marks_every_item_historical(tmp_path):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        spool.append([batch("live-1", "live-2")], offline=False)
        spool.append([batch("gone-1", "gone-2")], offline=True)
        flags = [[m.body.historical for m in items(r)] for r in spool.pending({}, 10)]
        assert flags == [[False, False], [True, True]]
    with Spool(path) as spool:  # left over from an earlier run: a replay
        assert [[m.body.historical for m in items(r)] for r in spool.pending({}, 10)] == [[True, True], [True, True]]


def test_the_receipt_naming_a_batchs_items_lets_it_go_and_no_other(tmp_path):
    with Spool(tmp_path / "spool.db") as spool:
        spool.append([batch("a", "b", "c"), batch("d", "e", "f"), batch("g")], offline=False)  # seqs 0-2, 3-5, 6
        spool.sent([r.id for r in spool.pending({}, 10)])
        assert spool.rows == 0, "before any receipt the PUBACK lets them go"
        spool.append([batch("a", "b", "c"), batch("d", "e", "f"), batch("g")], offline=False)  # seqs 7-9, 10-12, 13
        assert spool.stored([(7, 9)]) == 1  # the first receipt: end to end from now on
        spool.sent([r.id for r in spool.pending({}, 10)])  # the broker took the rest: kept for the centre
        assert spool.stored([(4, 5), (14, 20)]) == 0, "seqs of no waiting batch free nothing"
        assert spool.rows == 2 and spool.stored([(10, 13)]) == 2 and spool.rows == 0


def test_salvage_of_a_damaged_spool_keeps_the_counter_past_a_batchs_items(tmp_path):
    path = tmp_path / "spool.db"
    with Spool(path) as spool:
        spool.append([event(), batch("a", "b", "c", "d")], offline=False)  # seqs 0, 1-4
    with sqlite3.connect(path) as db:  # the counter lost with the damage: only the rows speak
        db.execute("UPDATE meta SET value=0 WHERE key='next_seq'")
    saved = spool_rescue.salvage(path)
    assert len(saved.rows) == 2 and saved.next_seq == 5


def test_the_agent_batches_a_poll_cycle_and_replays_batches_after_an_outage(city_config, tmp_path):
    cfg, gw = station(city_config, tmp_path, interval_s=0.1, gw_id="gw-batch-test", drain_s=20, batch_readings=True)
    sensors = temperature_sensors(cfg)
    broker = LocalMosquitto(tmp_path / "mosquitto", port=free_port()).start()
    address = BrokerAddress(broker.host, broker.port)
    centre = Collector(address, "test-batch-centre", subscription(), clean_start=False)
    drivers = [Thermometer(s, 20.0 + i) for i, s in enumerate(sensors)]

    def batches():
        return [(t, body) for t, body, dup in centre.messages() if t.endswith("/readings") and not dup]
    try:
        with Spool(tmp_path / "spool.db") as spool:
            with Agent(cfg, gw, address, drivers, spool=spool) as agent:
                wait_for(lambda: len(batches()) >= 10, 15, what="live batches")
                broker.stop()
                wait_for(lambda: not agent.link.connected.is_set(), 10, what="the agent to notice")
                drivers[0].broken = True  # a fault during the outage: an event, spooled urgent
                wait_for(lambda: spool.rows >= 30, 20, what="batches piling up in the spool")
                broker.start()
                wait_for(lambda: agent.stats["births"] >= 2, 20, what="the agent to reconnect")
                before = len(batches())
                wait_for(lambda: len(batches()) >= before + 30, 20, what="the stream to resume")
            expected = spool.last_seq + 1
            assert spool.rows == 0 and not spool.stats.spooled["reading"], "every reading went in a batch"
    finally:
        centre.link.stop()
        broker.stop()
    got = [(t, body) for t, body, dup in centre.messages() if not dup and "/status" not in t]
    seqs = sorted([it["seq"] for t, body in got if t.endswith("/readings") for it in body["items"]] +
                  [body["seq"] for t, body in got if not t.endswith("/readings")])
    assert seqs == list(range(expected)), "an item is missing or arrived twice"
    assert all(len(body["items"]) >= 2 for t, body in batches())  # several readings of one cycle per message
    faults = [body for t, body in got if t.endswith(f"/event/{sensors[0]}")]
    assert [f["state"] for f in faults] == ["fault"] and faults[0]["historical"] is True  # one message, as before
    replayed = [body for t, body in batches() if body["historical"]]
    assert len(replayed) >= 30 and json.dumps(replayed[0]).count('"historical"') == 1
