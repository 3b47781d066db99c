"""The cycle collector as the services run it (core/collector.py): held off while a config loads,
and run by the alert engine between commits rather than inside one."""
from __future__ import annotations

import gc
import weakref

import pytest

from stationwatch.core import collector
from stationwatch.core.collector import FULL_EVERY_S, FULL_OVERDUE, MIDDLE_EVERY, Pace


class Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the collector frees it


@pytest.fixture
def manual_collector():
    """No automatic pass during the test: what runs is what Pace chose."""
    was = gc.isenabled()
    gc.disable()
    gc.collect()
    yield
    if was:
        gc.enable()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_paused_holds_the_collector_off_and_gives_it_back_as_it_was():
    assert gc.isenabled()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "an inner pause must not re-enable what the outer one holds"
    assert gc.isenabled()
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled(), "a collector disabled before stays disabled"
    finally:
        gc.enable()


def test_paused_gives_the_collector_back_when_the_load_fails():
    with pytest.raises(ValueError):
        with collector.paused():
            raise ValueError("bad config")
    assert gc.isenabled()


def test_a_paced_service_never_starts_a_full_pass_on_its_own():
    collector.tune(paced=True)
    try:
        assert gc.get_threshold()[0] == collector.YOUNG
        assert gc.get_threshold()[2] >= 10 ** 9
        collector.tune()
        assert gc.get_threshold()[2] == 100
    finally:
        gc.unfreeze()


def test_between_frees_the_cycles_of_the_last_commit(manual_collector):
    pace = Pace(FakeClock())
    dead = weakref.ref(Node())
    assert dead() is not None, "the cycle outlives its last reference without a pass"
    assert pace.between() == 0
    assert dead() is None
    assert pace.passes == [1, 0, 0]


def test_between_runs_the_middle_generation_every_so_many_young_passes(manual_collector):
    pace = Pace(FakeClock())
    generations = [pace.between() for _ in range(3 * (MIDDLE_EVERY + 1))]
    assert generations.count(1) == 3 and generations.count(2) == 0
    assert generations[MIDDLE_EVERY] == 1 and set(generations[:MIDDLE_EVERY]) == {0}


def test_a_full_pass_waits_for_its_time_and_for_no_alarm_waiting(manual_collector):
    clock = FakeClock()
    pace = Pace(clock)
    clock.now += FULL_EVERY_S - 1
    assert pace.between() != 2, "too early"
    clock.now += 2
    assert pace.between(urgent_waiting=True) != 2, "an alarm is waiting: the full pass is put off"
    assert pace.between() == 2
    assert pace.between() != 2, "one full pass, then the next one waits its time again"
    assert pace.figures()["passes"][2] == 1 and pace.figures()["slowest_ms"][2] >= 0


def test_a_full_pass_put_off_too_long_runs_even_with_an_alarm_waiting(manual_collector):
    clock = FakeClock()
    pace = Pace(clock)
    clock.now += FULL_EVERY_S * FULL_OVERDUE
    node = Node()
    old = weakref.ref(node)
    gc.collect(1)  # still referenced: moved to the oldest generation, where only a full pass looks
    del node
    gc.collect(1)
    assert old() is not None
    assert pace.between(urgent_waiting=True) == 2
    assert old() is None
