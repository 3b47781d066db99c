"""Readings at rest (alerts/resting.py): a sensor saying again what it said is noted, not judged
again — and that must never change what the engine decides. Two engines take the same messages on
the same clock, one with the rest and one that runs every reading through the rules; they must
hold the same alerts, the same memory, the same audit trail and the same notices. The cases the
rest has to see through are named first (the night window starting under an open exit door, the
outdoor temperature dropping under a cold supply pipe, a band held long enough, a sensor gone
silent coming back), then hypothesis-generated sequences."""
from __future__ import annotations

from datetime import datetime

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationwatch.core.config import parse_config

from support import EXAMPLES
from support.alerts import GW, SHANGHAI, T0, Twins

EXTRA = [  # beside the example station's: a second thermometer in one room, a pump, a pressure gauge
    {"id": "t-dorm-m1b", "name": "男宿舍一 温度二", "kind": "temperature", "gateway": GW, "room": "dorm-m1"},
    {"id": "pump-main", "name": "供暖循环泵", "kind": "pump_running", "gateway": GW, "room": "boiler"},
    {"id": "pressure-main", "name": "供暖系统水压", "kind": "pressure", "gateway": GW, "room": "boiler", "low_bar": 1.0},
]
VALUES = {  # per sensor: values at rest, near and past every limit, out of range, missing
    "t-dorm-m1": [20.5, 13.9, 14.0, 15.5, 4.5, 30.0, 33.0, -60.0, None],
    "t-dorm-m1b": [20.5, 13.0, 15.6, None],
    "t-hall": [20.5, 4.0, 4.9, 6.0],
    "t-outdoor": [-3.0, 10.0],
    "supply-main": [58.0, 30.0, 20.0],
    "heat-kitchen": [22.0, 22.0, 40.0, 54.0, 60.0],
    "smk-dorm-m1": [0.0, 1.0],
    "smk-dorm-m2": [0.0, 1.0],
    "door-exit-main": [0.0, 1.0],
    "door-store": [0.0, 1.0],
    "boiler-fault": [0.0, 1.0],
    "pump-main": [1.0, 0.0],
    "pressure-main": [2.1, 0.9, 1.05, 1.3],
}
SENSORS = sorted(VALUES)
NIGHT = datetime(2025, 1, 15, 21, 59, 30, tzinfo=SHANGHAI).timestamp()
SEASON_EVE = datetime(2025, 11, 14, 23, 59, tzinfo=SHANGHAI).timestamp()  # the heating season starts 11-15


def config():
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["sensors"] += EXTRA
    data.setdefault("rules", {}).update({"cold_for_s": 120, "hot_for_s": 120, "cold_critical_for_s": 60,
                                         "supply_for_s": 120, "pump_stopped_for_s": 120, "pressure_for_s": 60})
    return parse_config(data)


CFG = config()


class Pair(Twins):
    """Two engines on one clock: ``rest`` as shipped, ``full`` judging every reading by the rules."""

    def __init__(self, tmp_path, t: float = T0):
        super().__init__(tmp_path, CFG, lambda engine: setattr(engine.resting, "judge", lambda obs, is_open, run: run()[0]),
                         t)


@pytest.fixture
def pair(tmp_path):
    p = Pair(tmp_path)
    p.send(p.wire.status("online", ts=T0))
    yield p
    p.close()


def ending(pair: Pair, alert_id: int) -> bool:
    """The alert is resolved, or clearing (its condition gone, the resolve hold running)."""
    alert = pair.rest.store.get(alert_id)
    return alert.state == "resolved" or alert.clearing_since is not None


def cycles(pair: Pair, n: int, step_s: float = 10.0) -> None:
    for _ in range(n):
        pair.clock.t += step_s
        pair.again()
        pair.tick()
        pair.same()


def test_readings_that_say_the_same_again_skip_the_rules_and_change_nothing(pair):
    for sensor in SENSORS:
        pair.reading(sensor, VALUES[sensor][0])
    cycles(pair, 5)
    assert pair.rest.stats.resting > 3 * len(SENSORS) // 2, "sensors at rest were judged again"
    assert pair.full.stats.resting == 0
    assert pair.rest.store.alerts() == [] and pair.full.store.alerts() == []


def test_an_open_exit_door_at_rest_raises_the_night_exit_when_the_night_window_starts(tmp_path):
    pair = Pair(tmp_path, NIGHT - 60)
    pair.send(pair.wire.status("online", ts=pair.clock.t))
    pair.reading("door-exit-main", 1.0)  # open in the evening: no night exit yet
    cycles(pair, 12)  # … across 22:00
    assert [a.rule for a in pair.rest.store.alerts()].count("night_exit") == 1
    pair.close()


def test_a_cool_dormitory_at_rest_is_watched_from_the_first_minute_of_the_heating_season(tmp_path):
    pair = Pair(tmp_path, SEASON_EVE)
    pair.send(pair.wire.status("online", ts=pair.clock.t))
    pair.reading("t-dorm-m1", 15.5)  # below 18 °C, but the season has not begun: nothing
    cycles(pair, 3)
    assert pair.rest.stats.resting >= 2 and pair.rest.store.alerts() == []
    cycles(pair, 6)  # … past midnight
    [cold] = [a for a in pair.rest.store.alerts() if a.rule == "cold_room"]
    assert cold.state == "pending"
    pair.close()


def test_two_thermometers_of_a_room_rest_and_one_turning_cold_is_judged_with_the_other(pair):
    pair.reading("t-dorm-m1b", 20.5)
    pair.reading("t-dorm-m1", 20.5)
    cycles(pair, 3)
    assert pair.rest.stats.resting >= 4
    pair.reading("t-dorm-m1", 13.0)  # the room's band now depends on both: neither rests
    cycles(pair, 15)
    [cold] = [a for a in pair.rest.store.alerts() if a.rule == "cold_room"]
    assert cold.state == "firing"
    pair.reading("t-dorm-m1", 20.5)
    cycles(pair, 10)
    assert ending(pair, cold.id)


def test_a_detector_at_rest_that_reported_a_fault_by_event_clears_it_with_its_next_reading(pair):
    pair.reading("smk-dorm-m1", 0.0)
    cycles(pair, 2)
    pair.send(pair.wire.event("smk-dorm-m1", "fault", ts=pair.clock.t))
    [fault] = [a for a in pair.rest.store.alerts() if a.rule == "sensor_fault" and a.subject.endswith("smk-dorm-m1")]
    cycles(pair, 1)  # the same reading as before the fault: the detector works again
    assert ending(pair, fault.id)


def test_a_closed_door_at_rest_that_an_event_opened_is_closed_again_by_its_next_reading(pair):
    pair.reading("door-store", 0.0)
    cycles(pair, 2)
    pair.send(pair.wire.event("door-store", "open", ts=pair.clock.t))
    cycles(pair, 1)  # it reads closed, as before the event: the door is shut
    assert pair.rest.situation.mem.get("door", "door-store") is None
    pair.clock.t += CFG.rules.door_open_max_s + 60
    pair.tick()
    pair.same()
    assert not [a for a in pair.rest.store.alerts() if a.rule == "door_held_open"]


def test_a_cold_supply_pipe_at_rest_is_raised_once_it_turns_cold_outside(pair):
    pair.reading("t-outdoor", 10.0)
    pair.reading("supply-main", 30.0)  # cold water, mild outside: nothing
    cycles(pair, 3)
    pair.reading("t-outdoor", -3.0)
    cycles(pair, 15)
    assert "supply_cold" in {a.rule for a in pair.rest.store.alerts()}


def test_a_band_held_long_enough_raises_while_the_value_stays_the_same(pair):
    pair.reading("t-dorm-m1", 13.0)
    cycles(pair, 15)
    [cold] = [a for a in pair.rest.store.alerts() if a.rule == "cold_room"]
    assert cold.state == "firing"


def test_a_silent_sensor_at_rest_clears_its_silence_when_it_speaks_again(pair):
    pair.reading("t-hall", 20.5)
    cycles(pair, 2)
    pair.clock.t += 400  # silent past sensor_stale_s: the tick raises it
    pair.tick()
    pair.same()
    assert any(a.rule == "sensor_fault" for a in pair.rest.store.alerts())
    cycles(pair, 10)
    pair.clock.t += 120
    pair.tick()
    pair.same()


STEP = st.one_of(
    st.tuples(st.just("reading"), st.sampled_from(SENSORS), st.integers(0, 8), st.sampled_from(["ok", "ok", "ok", "fault"])),
    st.tuples(st.just("again")),
    st.tuples(st.just("time"), st.sampled_from([1.0, 10.0, 61.0, 150.0, 400.0, 4 * 3600.0, 40 * 86400.0])),
    st.tuples(st.just("skew"), st.sampled_from([0.0, 0.0, 900.0, -7200.0])),
    st.tuples(st.just("event"), st.sampled_from(["smk-dorm-m1", "door-exit-main", "door-store"]),
              st.sampled_from(["alarm", "normal", "open", "closed", "fault"])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=5, max_size=60))
def test_generated_sequences_end_the_same_with_and_without_the_rest(tmp_path_factory, steps):
    pair = Pair(tmp_path_factory.mktemp("rest"))
    try:
        pair.send(pair.wire.status("online", ts=T0))
        for step in steps:
            kind = step[0]
            if kind == "reading":
                _, sensor, i, quality = step
                values = VALUES[sensor]
                pair.reading(sensor, None if quality != "ok" else values[i % len(values)], quality)
            elif kind == "again":
                pair.again()
            elif kind == "time":
                pair.clock.t += step[1]
                pair.tick()
            elif kind == "skew":
                pair.skew = step[1]
            else:
                _, device, state = step
                pair.send(pair.wire.event(device, state, ts=pair.clock.t + pair.skew))
            pair.same()
    finally:
        pair.close()
