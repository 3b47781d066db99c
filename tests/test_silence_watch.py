"""The silence rules look at a country's devices only when one may be due (alerts/liveness.py
SilenceWatch) — and must raise every silence exactly when looking at every device on every tick
would. Two engines take the same messages and ticks, one as shipped (its safety net of a full look
every 30 s switched off, so that only the watch's own reasoning is tried) and one that looks at every
device on every tick; they must hold the same alerts and memory after every step: devices falling
silent one by one, gateways lost, back, shut down and patrolled, a silent sensor speaking again."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationwatch.alerts import liveness

from support.alerts import Twins

SENSORS = ["t-hall", "t-dorm-m1", "smk-dorm-m1", "door-store", "t-outdoor", "supply-main"]
CAMERAS = ["cam-hall", "cam-exit-main"]


class Pair(Twins):
    def __init__(self, tmp_path, cfg):
        super().__init__(tmp_path, cfg, lambda engine: setattr(engine.situation.silence, "parts",
                                                               lambda sit, kind, n_parts, now: list(range(n_parts))))

    def heartbeat(self, camera: str) -> None:
        self.send(self.wire.heartbeat(camera, True, ts=self.clock.t))

    def status(self, state: str, reason: str | None = None) -> None:
        self.send(self.wire.status(state, reason, ts=self.clock.t))


@pytest.fixture(autouse=True)
def no_safety_net(monkeypatch):
    monkeypatch.setattr(liveness, "FULL_SCAN_S", float("inf"))


def step_through(pair: Pair, seconds: float, every: float = 1.0) -> None:
    end = pair.clock.t + seconds
    while pair.clock.t < end:
        pair.clock.t += every
        pair.tick()
        pair.same()


@pytest.fixture(params=[liveness.PART_SIZE, 2], ids=["one part", "parts of two"])
def part_size(request, monkeypatch):
    """As shipped, the example station's devices are one part; in parts of two (one looked at a tick
    beyond those due by time) they stand for a country's 32 parts of 4,096."""
    monkeypatch.setattr(liveness, "PART_SIZE", request.param)
    monkeypatch.setattr(liveness, "PARTS_PER_TICK", 1)
    return request.param


def test_sensors_falling_silent_one_by_one_are_each_raised_on_time(tmp_path, city_config, part_size):
    pair = Pair(tmp_path, city_config)
    pair.status("online")
    for i, sensor in enumerate(SENSORS):
        pair.clock.t += 7 * i
        pair.reading(sensor, 0.0)
    step_through(pair, 200)
    silent = {a.subject.split("/")[-1] for a in pair.rest.store.alerts() if a.rule == "sensor_fault"}
    assert set(SENSORS) <= silent
    assert pair.rest.situation.silence._due[("sensor", 0)] > pair.clock.t  # it does skip looking meanwhile
    pair.close()


def test_a_silent_sensor_that_speaks_again_is_watched_again(tmp_path, city_config, part_size):
    pair = Pair(tmp_path, city_config)
    pair.status("online")
    pair.reading("t-hall", 20.5)
    step_through(pair, 150, every=5)
    pair.reading("t-hall", 20.5)  # back: its silence flag goes, and the next silence counts again
    step_through(pair, 150, every=5)
    raised = [a for a in pair.rest.store.alerts(include_resolved=True)
              if a.rule == "sensor_fault" and a.subject.endswith("t-hall")]
    assert raised
    pair.close()


STEP = st.one_of(
    st.tuples(st.just("reading"), st.sampled_from(SENSORS)),
    st.tuples(st.just("heartbeat"), st.sampled_from(CAMERAS)),
    st.tuples(st.just("again")),
    st.tuples(st.just("time"), st.sampled_from([1.0, 5.0, 20.0, 45.0, 95.0, 130.0])),
    st.tuples(st.just("status"), st.sampled_from([("online", None), ("offline", "will"), ("offline", "shutdown")])),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=5, max_size=50))
def test_generated_sequences_raise_the_same_silences_as_looking_every_tick(tmp_path_factory, city_config, steps):
    pair = Pair(tmp_path_factory.mktemp("silence"), city_config)
    try:
        pair.status("online")
        for step in steps:
            if step[0] == "reading":
                pair.reading(step[1], 0.0)
            elif step[0] == "heartbeat":
                pair.heartbeat(step[1])
            elif step[0] == "again":
                pair.again()
            elif step[0] == "status":
                pair.status(*step[1])
            else:
                step_through(pair, step[1], every=max(1.0, step[1] / 5))
            pair.same()
    finally:
        pair.close()


def test_in_parts_a_gateway_back_from_a_will_has_its_silent_sensors_raised_within_a_tick_per_part(
        tmp_path, city_config, monkeypatch):
    """A change of what excuses silence (a gateway's state) reaches every part, one part a tick."""
    monkeypatch.setattr(liveness, "PART_SIZE", 2)
    monkeypatch.setattr(liveness, "PARTS_PER_TICK", 1)
    pair = Pair(tmp_path, city_config)
    pair.status("online")
    for sensor in SENSORS:
        pair.reading(sensor, 0.0)
    pair.status("offline", "will")
    pair.clock.t += 300  # every sensor is past its limit, excused while its gateway is lost
    pair.tick()
    pair.status("online")
    pair.reading("t-hall", 0.0)  # the gateway speaks again; the others stay silent
    n_parts = -(-len(city_config.sensors) // 2)
    for _ in range(300):
        pair.clock.t += 1
        pair.tick()
    def raised(engine):
        return {a.subject.split("/")[-1]: a.first_at for a in engine.store.alerts() if a.rule == "sensor_fault"}
    rest, reference = raised(pair.rest), raised(pair.full)
    assert set(SENSORS) - {"t-hall"} <= set(reference), reference
    assert set(rest) == set(reference)
    late = {s: rest[s] - reference[s] for s in rest}
    assert all(0 <= d <= n_parts for d in late.values()), late  # a tick per part at most
    pair.close()
