"""The national fleet (gateway/fleet.py): a small run through the real broker into the real ingest —
every message it sends is accepted (none quarantined), every reading is stored, and the events of
its scenarios arrive as the alert engine would read them."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from stationwatch.broker.influx import InfluxV1Writer
from stationwatch.broker.ingest import IngestOptions, run_ingest
from stationwatch.gateway.fleet import SENSORS_PER_SITE, Fleet, RawPublisher, write_config

from support import wait_for

SITES = 5


@pytest.fixture
def mosquitto(tmp_path):
    """A broker of this test's own: the count of stored readings must be the fleet's alone."""
    from stationwatch.broker.stack import LocalMosquitto
    with LocalMosquitto(tmp_path / "mosquitto") as broker:
        yield broker


def _count(writer, sql) -> int:
    rows = list(writer.query(sql).get_points())
    return rows[0]["count"] if rows else 0


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_a_small_fleet_run_is_accepted_and_stored_whole(mosquitto, broker_address, influxdb, tmp_path, batched):
    cfg = write_config(SITES, tmp_path / "national.yaml")
    assert len(cfg.sensors) == SITES * SENSORS_PER_SITE
    database = f"t_{uuid.uuid4().hex[:8]}"
    stop, ready = threading.Event(), threading.Event()
    held = {}
    thread = threading.Thread(target=lambda: held.setdefault("ingest", run_ingest(
        cfg, broker_address, influxdb.url, database, tmp_path / "q.db", stop,
        options=IngestOptions(metrics_every_s=0.5), ready=ready)), daemon=True)
    thread.start()
    assert ready.wait(30), "ingest did not subscribe"
    writer = InfluxV1Writer(influxdb.url, database)

    pub = RawPublisher(broker_address.host, broker_address.port, "fleet-test")
    fleet = Fleet(SITES, pub, scenario_every_s=None, cycle_s=1.0, batched=batched)
    fire = fleet.fire("fire", fleet.sites[0])
    exit_ = fleet.fire("night-exit", fleet.sites[1])
    fleet.fire("cold-room", fleet.sites[2])
    fleet.fire("camera-offline", fleet.sites[3])
    out = fleet.run(3.0)
    assert pub.wait_acked(30), f"broker acknowledged {pub.acked} of {pub.sent}"
    pub.close()
    assert out["reading"] >= 2 * SITES * SENSORS_PER_SITE  # every site read at least twice in 3 s at a 1 s cycle
    if batched:  # one message a site a cycle, besides events, heartbeats and births
        assert out["messages"] - out["event"] - out["heartbeat"] - out["status"] == out["reading"] // SENSORS_PER_SITE

    wait_for(lambda: _count(writer, 'SELECT count("value") FROM "reading"') >= out["reading"], timeout=30,
             what=f"{out['reading']} readings stored")
    stop.set()
    thread.join(15)
    ingest = held["ingest"]
    assert ingest.stats.quarantined == 0, "the fleet sent messages ingest refused"
    # every message written (ingest also hears its own receipts to the gateways, which it does not store)
    assert ingest.stats.written == sum(out[k] for k in ("reading", "event", "heartbeat", "status"))
    assert _count(writer, 'SELECT count("value") FROM "reading"') == out["reading"]

    events = {(r["device"], r["state"]) for r in writer.query(
        'SELECT "state", "device" FROM "records"."event"').get_points()}
    assert fire.events[0] in events  # the first detector (the second follows 8 s later)
    assert set(exit_.events) <= events  # the exit door, opened and closed at 02:00 on the gateway's clock
    cold = list(writer.query(f"SELECT last(\"value\") FROM \"reading\" WHERE \"site\" = '{fleet.sites[2].id}' "
                             "AND \"kind\" = 'temperature' AND \"value\" < 15").get_points())
    assert cold, "the cold room's readings did not arrive"
    offline = _count(writer, f"SELECT count(\"online\") FROM \"heartbeat\" WHERE \"online\" = false")
    assert offline >= 1, "the offline camera's heartbeat did not arrive"


@pytest.mark.parametrize("fields", [dict(value=20.5, unit="°C", quality="ok"), dict(value=0.0, unit="", quality="ok"),
                                    dict(online=False, latency_ms=None), dict(online=True, latency_ms=12.0)])
def test_the_fleets_bodies_are_byte_for_byte_what_a_gateway_sends(fields):
    from stationwatch.core.contract import parse
    from stationwatch.core.wire import payload
    from stationwatch.gateway.fleet import Template
    ts, seq = time.time(), 123_457
    body = Template(**fields).render(ts, seq)
    assert body == payload(ts, seq, **fields)
    kind = "reading" if "value" in fields else "heartbeat"
    assert parse(f"sw/v1/n0000/gw-n0000/{kind}/d", body).body.seq == seq


def test_a_burst_larger_than_the_window_goes_out_whole(mosquitto):
    """After a stalled tick the fleet hands over more due readings than its unacknowledged window;
    they go out in slices instead of waiting for room the window can never have."""
    pub = RawPublisher(mosquitto.host, mosquitto.port, "fleet-burst", window=100)
    pub.send([pub.packet(f"sw/v1/n0000/gw-n0000/reading/d{i % 7}", b"{}") for i in range(1000)])
    assert pub.wait_acked(30), f"broker acknowledged {pub.acked} of {pub.sent}"
    assert pub.acked == 1000
    pub.close()


class _Discard:
    """A publisher that keeps nothing: the scenarios' choice of sites is what is looked at."""

    def packet(self, topic_name, body, qos=1, retain=False):
        return b""


def test_scenarios_go_to_sites_none_has_been_at_while_there_are_some():
    """A fire at a site whose fire alert is still open is that alert again (no new notice): the
    benchmark's latency would count it as unanswered. Each scenario takes a fresh site while one is left."""
    fleet = Fleet(SITES, _Discard(), scenario_every_s=None)
    fleet.fire("fire", fleet.sites[-1])  # as the benchmark's warm-up
    first = [fleet.fire("fire").site for _ in range(SITES - 1)]
    assert len(set(first)) == SITES - 1 and fleet.sites[-1].id not in first
    again = fleet.fire("cold-room").site  # every site has had one: any site
    assert again in {s.id for s in fleet.sites}
