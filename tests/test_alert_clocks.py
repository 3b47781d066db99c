"""Gateways whose clocks lie, through AlertEngine.handle on an injected engine clock (the arrival
time): the night-exit rule and the heating season go by the corrected time, a delayed or replayed
message keeps its own, rate of rise survives the clock stepping back. The same over the real broker
with the engine as `stationwatch alerts` runs it is the last test."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml

from stationwatch.alerts.engine import AlertEngine
from stationwatch.alerts.store import Store
from stationwatch.core.contract import Event, MessageClass, encode, topic

from support import EXAMPLES, wait_for
from support.alerts import GW, JULY, SHANGHAI, SITE, T0, RunningEngine, active, config_with, send, wait_subscribed

NIGHT = datetime(2025, 1, 16, 2, 0, tzinfo=SHANGHAI).timestamp()  # 02:00 at the site
NINE_HOURS = 9 * 3600


@pytest.fixture
def engine(city_config, tmp_path, clock):
    e = AlertEngine(city_config, tmp_path / "alerts.db", clock=clock)
    yield e
    e.close()


def _readings(engine, wire, clock, start: float, skew: float, seconds: float, sensor: str = "t-hall") -> float:
    """A reading every 10 s from ``start`` (engine time) on a gateway clock ``skew`` off; returns the engine time after."""
    t = start
    while t < start + seconds:
        engine.handle(*wire.reading(sensor, 20.0, ts=t + skew), now=clock.at(t))
        t += 10
    return t


def test_a_gateway_clock_nine_hours_ahead_still_raises_the_night_exit(engine, wire, clock):
    """02:00 at the site, the gateway says 11:00: before, the rule saw daytime and stayed silent."""
    engine.handle(*wire.event("door-exit-main", "open", ts=NIGHT + NINE_HOURS), now=clock.at(NIGHT))
    [alert] = active(engine, "night_exit")
    assert "02:00" in alert.title_zh and alert.first_at == NIGHT
    assert alert.detail["gateway_ts"] == NIGHT + NINE_HOURS and alert.detail["clock_corrected_s"] == -NINE_HOURS
    assert engine.situation.clock_corrected == 1


def test_a_gateway_clock_behind_counts_once_it_has_been_behind_for_confirm_s(engine, wire, clock):
    """A message behind its arrival may only have been delayed; a gateway whose messages all come in
    nine hours behind for ``limits.clock.confirm_s`` (30 s) has its clock gone back."""
    t = _readings(engine, wire, clock, NIGHT - 120, 0.0, 60)           # a good clock first
    t = _readings(engine, wire, clock, t, -NINE_HOURS, 40)             # then it goes back 9 h
    engine.handle(*wire.event("door-exit-main", "open", ts=t - NINE_HOURS), now=clock.at(t))
    [alert] = active(engine, "night_exit")
    assert alert.first_at == t and alert.detail["clock_corrected_s"] == NINE_HOURS


def test_a_delayed_message_from_a_good_clock_keeps_its_own_time(engine, wire, clock):
    """An engine that was away gets the exit door's "open" of 02:00 at 14:00: still a night exit, of 02:00."""
    day = NIGHT + 12 * 3600
    t = _readings(engine, wire, clock, day - 60, 0.0, 60)
    engine.handle(*wire.event("door-exit-main", "open", ts=NIGHT), now=clock.at(t))
    [alert] = active(engine, "night_exit")
    assert alert.first_at == NIGHT and "gateway_ts" not in alert.detail


def test_a_replayed_night_exit_keeps_its_time_even_from_a_gateway_known_to_be_off(engine, wire, clock):
    day = NIGHT + 12 * 3600
    t = _readings(engine, wire, clock, day - 60, NINE_HOURS, 60)  # the clock is 9 h ahead, and known
    replay = Event(v=1, ts=NIGHT, seq=999, state="open", historical=True)
    engine.handle(topic(SITE, GW, MessageClass.EVENT, "door-exit-main"), encode(replay), now=clock.at(t))
    [alert] = active(engine, "night_exit")
    assert alert.first_at == NIGHT and alert.detail["historical"]


def test_the_heating_season_goes_by_the_corrected_time(engine, wire, clock):
    """January at the centre, July on the gateway's clock: the sleeping room at 16 °C is still cold."""
    skew = JULY - T0
    for dt in (0, 900, 1800):
        engine.handle(*wire.reading("t-dorm-f1", 16.0, ts=T0 + dt + skew), now=clock.at(T0 + dt))
    [cold] = active(engine, "cold_room")
    assert cold.severity == "warning" and cold.detail["clock_corrected_s"] == pytest.approx(-skew)


def test_rate_of_rise_survives_the_gateway_clock_stepping_back(engine, wire, clock):
    """NTP corrects a clock an hour fast while a kitchen fire starts: the rise counts on the new clock
    within three readings. Before, the readings from "later" held the rule off for 32 readings."""
    t = T0
    for _ in range(6):  # steady, on a clock an hour fast
        engine.handle(*wire.reading("heat-kitchen", 25.0, ts=t + 3600), now=clock.at(t))
        t += 10
    for i in range(3):  # the clock is right now, and the heat rises 12 °C a minute
        engine.handle(*wire.reading("heat-kitchen", 25.0 + 2 * i, ts=t), now=clock.at(t))
        t += 10
    [fire] = active(engine, "fire")
    assert fire.severity == "pre_alarm" and fire.detail["signal"] == "rate_of_rise"


def _night_zone(now: datetime) -> str:
    """A fixed-offset zone where it is 03:xx now, so that the engine's real clock reads night there."""
    hours = (3 - now.hour) % 24
    hours = hours - 24 if hours > 14 else hours  # Etc/GMT-14 … Etc/GMT+12
    return f"Etc/GMT{-hours:+d}" if hours else "Etc/GMT"


def test_over_the_broker_a_skewed_gateway_still_raises_the_night_exit(broker_address, publisher, wire, tmp_path):
    """The engine as `stationwatch alerts` runs it, on the real broker and the real clock, at a site
    where it is night now; the gateway's clock is nine hours ahead, so its "open" says daytime."""
    now = datetime.now(timezone.utc)
    zone = _night_zone(now)
    assert now.astimezone(ZoneInfo(zone)).hour == 3
    sites = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))["sites"]
    cfg = config_with(sites=[{**s, "timezone": zone} for s in sites])
    with RunningEngine(cfg, broker_address, tmp_path / "alerts.db", f"clock-{tmp_path.name[-8:]}"):
        store = Store(tmp_path / "alerts.db")
        try:
            wait_subscribed(store, publisher, wire)
            send(publisher, wire.event("door-exit-main", "open", ts=(now + timedelta(hours=9)).timestamp()))
            [alert] = wait_for(lambda: [a for a in store.alerts() if a.rule == "night_exit"], 15, what="the night exit")
            assert alert.detail["clock_corrected_s"] == pytest.approx(-NINE_HOURS, abs=60)
        finally:
            store.close()
