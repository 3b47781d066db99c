"""The 1-minute trend ingest makes from the readings it stores (broker/trend.py): each minute of each
sensor is the mean, min and max of its readings, on the real Mosquitto and InfluxDB; what memory
cannot know (the first minute after a start, readings replayed from a spool or late) is recomputed
from the stored readings; ingest drops the continuous query it replaces, and a shared ingest keeps it."""
from __future__ import annotations

import json
import random
import time
import uuid

import pytest

from stationwatch.broker import trend as trend_mod
from stationwatch.broker.influx import TREND_POLICY, InfluxV1Writer, Point
from stationwatch.broker.trend import MINUTE_MS, MinuteTrend, Recomputer
from stationwatch.core.contract import MessageClass, topic
from stationwatch.core.mqtt import MqttLink
from stationwatch.core.wire import batch_payload

from support import wait_for
from support.broker import IngestThread

SITE, GW = "sl-station", "gw-sl-main"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def reading(sensor: str, ms: int, value: float | None, site: str = SITE, room: str = "hall", **extra) -> Point:
    fields = {"quality": "ok" if value is not None else "fault", "seq": ms // 1000, "historical": False, **extra}
    if value is not None:
        fields["value"] = value
    return Point("reading", {"site": site, "gateway": GW, "room": room, "sensor": sensor, "kind": "temperature"},
                 fields, ms)


M = 29_000_000  # a minute number (2025-02)


def minute_of(sensor: str, minute: int, values: list[float | None], **kw) -> list[Point]:
    return [reading(sensor, minute * MINUTE_MS + i * 10_000, v, **kw) for i, v in enumerate(values)]


def summary(points: list[Point]) -> dict[tuple[str, int], tuple[float, float, float]]:
    return {(p.tags["sensor"], p.time_ms // MINUTE_MS): (round(p.fields["value"], 9), p.fields["min"], p.fields["max"])
            for p in points}


def test_a_minute_is_written_when_the_next_begins_and_the_first_after_a_start_is_recomputed():
    clock = Clock()
    t = MinuteTrend(clock)
    assert t.add(minute_of("t1", M, [20.0, 21.0, 19.0, 22.0, None, 20.5])) == []
    done = t.add(minute_of("t1", M + 1, [18.0, 18.5]))
    assert done == [], "the first minute after a start may miss readings the ingest before took"
    done = t.add(minute_of("t1", M + 2, [17.0]))
    assert summary(done) == {("t1", M + 1): (18.25, 18.0, 18.5)}
    assert done[0].policy == TREND_POLICY and done[0].measurement == "reading_1m"
    assert done[0].tags == {"site": SITE, "gateway": GW, "room": "hall", "sensor": "t1", "kind": "temperature"}
    clock.now += trend_mod.REDO_QUIET_S
    assert t.due() == [(SITE, M * MINUTE_MS, (M + 1) * MINUTE_MS)]
    assert t.due() == [], "handed out once"


def test_a_sensor_first_heard_well_after_the_start_has_its_first_minute_from_memory():
    clock = Clock()
    started = M * MINUTE_MS - trend_mod.START_MARGIN_MS - MINUTE_MS  # ingest has run long enough
    t = MinuteTrend(clock, started_ms=started)
    t.add(minute_of("t1", M, [4.0, 6.0]) + minute_of("t2", M - 1, [1.0]))  # t2: a minute within the margin
    done = t.add(minute_of("t1", M + 1, [1.0]) + minute_of("t2", M, [1.0]))
    assert summary(done) == {("t1", M): (5.0, 4.0, 6.0)}
    clock.now += trend_mod.REDO_QUIET_S
    assert t.due() == [(SITE, (M - 1) * MINUTE_MS, M * MINUTE_MS)]


def test_values_of_a_minute_give_its_mean_min_and_max():
    rng = random.Random(7)
    t = MinuteTrend(Clock())
    t.add(minute_of("t1", M, [1.0]))
    values = [round(rng.uniform(-30, 60), 2) for _ in range(6)]
    t.add(minute_of("t1", M + 1, values))
    (p,) = t.add(minute_of("t1", M + 2, [0.0]))
    assert p.fields["value"] == pytest.approx(sum(values) / len(values))
    assert (p.fields["min"], p.fields["max"]) == (min(values), max(values))


def test_a_quiet_sensor_has_its_minute_written_and_a_reading_of_it_after_that_is_recomputed():
    clock = Clock()
    t = MinuteTrend(clock)
    t.add(minute_of("t1", M, [1.0]))
    t.add(minute_of("t1", M + 1, [5.0, 7.0]))
    clock.now += trend_mod.QUIET_S - 1
    assert t.sweep() == []
    t.due()  # the first minute's recomputation, not looked at here
    clock.now += 1
    assert summary(t.sweep()) == {("t1", M + 1): (6.0, 5.0, 7.0)}
    assert t.sweep() == [], "written once"
    t.add([reading("t1", (M + 1) * MINUTE_MS + 55_000, 40.0)])  # the rest of that minute, delayed
    clock.now += trend_mod.REDO_QUIET_S
    assert t.due() == [(SITE, (M + 1) * MINUTE_MS, (M + 2) * MINUTE_MS)]
    done = t.add(minute_of("t1", M + 5, [3.0])) + t.add(minute_of("t1", M + 6, [3.0]))
    assert summary(done) == {("t1", M + 5): (3.0, 3.0, 3.0)}, "after the pause the sensor's minutes are whole again"


def test_late_and_replayed_readings_send_their_minutes_to_be_recomputed_and_leave_the_open_minute_alone():
    clock = Clock()
    t = MinuteTrend(clock)
    t.add(minute_of("t1", M, [1.0]) + minute_of("t1", M + 1, [2.0]) + minute_of("t1", M + 2, [4.0]))
    t.add([reading("t1", (M + 1) * MINUTE_MS + 30_000, 90.0)])  # out of order
    t.add(minute_of("t2", M - 600, [9.0, 9.5], historical=True))  # a spool replayed, ten hours back
    t.add(minute_of("t2", M - 120, [9.0], historical=True))
    clock.now += trend_mod.REDO_QUIET_S
    due = sorted(t.due())
    assert due == [(SITE, (M - 600) * MINUTE_MS, (M - 600) * MINUTE_MS + trend_mod.REDO_SPAN_MS),
                   (SITE, (M - 600) * MINUTE_MS + trend_mod.REDO_SPAN_MS, (M + 2) * MINUTE_MS)]
    (p,) = t.add(minute_of("t1", M + 3, [0.0]))
    assert summary([p]) == {("t1", M + 2): (4.0, 4.0, 4.0)}, "the late reading did not enter another minute"


def test_a_reading_replayed_into_the_open_minute_sends_that_minute_to_be_recomputed_once_it_closes():
    clock = Clock()
    t = MinuteTrend(clock)
    t.add(minute_of("t1", M, [1.0]) + minute_of("t1", M + 1, [2.0, 4.0]))
    clock.now += trend_mod.REDO_QUIET_S
    t.due()  # the first minute's
    t.add([reading("t1", (M + 1) * MINUTE_MS + 20_000, 9.0, historical=True)])  # a 20 s blip, replayed
    clock.now += trend_mod.REDO_QUIET_S
    assert t.due() == [], "not before the minute closes: its point from memory would overwrite the recomputed one"
    assert t.add(minute_of("t1", M + 2, [3.0])) == [], "the replay may repeat a stored reading: not counted from memory"
    clock.now += trend_mod.REDO_QUIET_S
    assert t.due() == [(SITE, (M + 1) * MINUTE_MS, (M + 2) * MINUTE_MS)]


def test_a_site_still_replaying_waits_and_sites_are_apart():
    clock = Clock()
    t = MinuteTrend(clock)
    t.add(minute_of("t1", M, [1.0], historical=True, site="a"))
    clock.now += trend_mod.REDO_QUIET_S - 1
    t.add(minute_of("t1", M + 1, [1.0], historical=True, site="a"))
    t.add(minute_of("t1", M, [1.0], historical=True, site="b"))
    clock.now += 1
    assert t.due() == []
    clock.now += trend_mod.REDO_QUIET_S
    assert sorted(t.due()) == [("a", M * MINUTE_MS, (M + 2) * MINUTE_MS), ("b", M * MINUTE_MS, (M + 1) * MINUTE_MS)]


def test_a_sensor_moved_to_another_room_starts_a_new_series():
    t = MinuteTrend(Clock())
    t.add(minute_of("t1", M, [1.0]) + minute_of("t1", M + 1, [2.0]))
    done = t.add([reading("t1", (M + 1) * MINUTE_MS + 20_000, 8.0, room="dorm")])  # a new config, mid-minute
    assert summary(done) == {("t1", M + 1): (2.0, 2.0, 2.0)} and done[0].tags["room"] == "hall"


def test_points_not_written_and_recomputations_that_fail_are_tried_again():
    clock = Clock()
    t = MinuteTrend(clock)
    t.failed([Point("reading_1m", {"site": "a", "sensor": "t1"}, {"value": 1.0}, M * MINUTE_MS, TREND_POLICY)])
    clock.now += trend_mod.REDO_QUIET_S
    calls: list = []

    def downsample(start, end, site):
        calls.append((site, start, end))
        if len(calls) == 1:
            raise ConnectionError("InfluxDB away")

    r = Recomputer(t, downsample)
    assert r.once() == 0 and r.failures == 1
    clock.now += trend_mod.REDO_QUIET_S
    assert r.once() == 1
    assert calls == [("a", M * MINUTE_MS, (M + 1) * MINUTE_MS)] * 2


def test_other_points_pass_by():
    t = MinuteTrend(Clock())
    t.add([Point("event", {"site": SITE, "device": "s1"}, {"state": "alarm"}, M * MINUTE_MS),
           Point("reading", {"site": SITE, "sensor": "x"}, {"value": 1.0}, M * MINUTE_MS, "records")])
    t.add([reading("t1", (M + 5) * MINUTE_MS, 1.0), None])
    assert t.sweep(1e12) == [] and t.written == 0


# --- on the real parts ---------------------------------------------------------------------------------------------

@pytest.fixture
def quick(monkeypatch):
    for name, value in (("REDO_QUIET_S", 0.3), ("REDO_EVERY_S", 0.2), ("QUIET_S", 1.5), ("SWEEP_S", 0.2)):
        monkeypatch.setattr(trend_mod, name, value)


@pytest.fixture
def ingest(city_config, mosquitto, influxdb, tmp_path, quick):
    # the database as an earlier setup left it: with the continuous query
    with IngestThread(city_config, mosquitto, influxdb, tmp_path, prepare=lambda w: w.ensure_schema()) as (address, writer, _):
        link = MqttLink(address, GW).start()
        yield link, writer
        link.stop()


def send(link, items: list[dict], seq: int, historical: bool = False) -> None:
    body = batch_payload(items[-1]["ts"], seq, items)
    if historical:  # as the spool replays it
        body = json.dumps({**json.loads(body), "historical": True}).encode()
    link.publish(topic(SITE, GW, MessageClass.READINGS), body, MessageClass.READINGS).wait_for_publish(5)


def stored_trend(writer) -> dict[tuple[str, int], tuple[float, float, float]]:
    rows = writer.query('SELECT "value", "min", "max", "sensor" FROM "trend"."reading_1m"').get_points()
    return {(r["sensor"], r["time"] // MINUTE_MS): (round(r["value"], 6), r["min"], r["max"]) for r in rows}


def test_ingest_writes_every_minute_of_every_sensor_and_drops_the_continuous_query(ingest, city_config):
    link, writer = ingest
    sensors = [s.id for s in city_config.sensors if s.gateway == GW and s.kind == "temperature"][:3]
    rng = random.Random(3)
    first = int(time.time() * 1000) // MINUTE_MS - 10  # ten minutes back: live readings, taken as late
    expected: dict[tuple[str, int], list[float]] = {}
    seq = 1
    for minute in range(first, first + 4):
        for k in range(6):  # a poll every 10 s
            items = []
            for s in sensors:
                value = round(rng.uniform(15, 25), 1)
                items.append({"sensor": s, "ts": (minute * MINUTE_MS + k * 10_000) / 1000, "value": value,
                              "unit": "°C", "quality": "ok"})
                expected.setdefault((s, minute), []).append(value)
            items.append({"sensor": sensors[0], "ts": (minute * MINUTE_MS + k * 10_000 + 5_000) / 1000,
                          "value": None, "unit": "°C", "quality": "fault"})  # no value: not in the mean
            send(link, items, seq)
            seq += len(items)
    want = {key: (round(sum(v) / len(v), 6), min(v), max(v)) for key, v in expected.items()}
    # the first minute recomputed from the stored readings, the middle ones from memory, the last once quiet
    got = wait_for(lambda: (t := stored_trend(writer)) == want and t, 30, interval=0.3,
                   what="every sensor's four minutes in trend.reading_1m")
    assert len(got) == 12
    cqs = writer.query("SHOW CONTINUOUS QUERIES").get_points(measurement=writer.database)
    assert not any(q["name"] == "reading_1m" for q in cqs), "the continuous query would write the same minutes"


def test_a_spool_replayed_reaches_the_trend(ingest, city_config):
    link, writer = ingest
    sensor = next(s.id for s in city_config.sensors if s.gateway == GW and s.kind == "temperature")
    hour_ago = int(time.time() * 1000) // MINUTE_MS - 60
    values = [10.0, 12.0, 14.0]
    items = [{"sensor": sensor, "ts": (hour_ago * MINUTE_MS + i * 20_000) / 1000, "value": v, "unit": "°C",
              "quality": "ok"} for i, v in enumerate(values)]
    send(link, items, 500, historical=True)
    wait_for(lambda: stored_trend(writer).get((sensor, hour_ago)) == (12.0, 10.0, 14.0), 30, interval=0.3,
             what="the replayed minute in trend.reading_1m")


def test_a_shared_ingest_keeps_the_continuous_query_and_a_single_one_drops_it(influxdb):
    w = InfluxV1Writer(influxdb.url, f"cq_{uuid.uuid4().hex[:8]}")

    def cq() -> bool:
        return any(q["name"] == "reading_1m" for q in w.query("SHOW CONTINUOUS QUERIES").get_points(measurement=w.database))

    w.ensure_schema(trend_query=False)
    assert not cq()
    w.ensure_schema(trend_query=True)
    w.ensure_schema(trend_query=True)
    assert cq()
    w.ensure_schema(trend_query=False)
    w.ensure_schema(trend_query=False)
    assert not cq()
    w.close()


def test_the_recomputation_of_one_site_leaves_the_others(influxdb):
    w = InfluxV1Writer(influxdb.url, f"rs_{uuid.uuid4().hex[:8]}")
    w.ensure_schema(trend_query=False)
    M = int(time.time() * 1000) // MINUTE_MS - 30  # within the raw policy's 30 days
    w.write([reading("t1", M * MINUTE_MS, 1.0, site="a"), reading("t1", M * MINUTE_MS + 10_000, 3.0, site="a"),
             reading("t1", M * MINUTE_MS, 5.0, site="b'x")])
    w.downsample(M * MINUTE_MS, (M + 1) * MINUTE_MS, site="a")
    rows = list(w.query('SELECT "value", "min", "max", "site" FROM "trend"."reading_1m"').get_points())
    assert [(r["site"], r["value"], r["min"], r["max"]) for r in rows] == [("a", 2.0, 1.0, 3.0)]
    w.downsample(M * MINUTE_MS, (M + 1) * MINUTE_MS, site="b'x")  # a quote in a name does not break the query
    rows = list(w.query('SELECT "value", "site" FROM "trend"."reading_1m"').get_points())
    assert sorted(r["site"] for r in rows) == ["a", "b'x"]
    w.close()
