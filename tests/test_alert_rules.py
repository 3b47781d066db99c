"""The alert rules, driven through AlertEngine.handle/tick with messages encoded exactly as a
gateway puts them on the wire (core.contract), over a real SQLite store in tmp_path, on an
injected clock. The helpers the alert tests share (Wire, Clock, config_with) are in support/alerts.py;
what the engine remembers across a restart is in test_alert_memory.py."""
from __future__ import annotations

from datetime import datetime

import pytest

from stationwatch.alerts.engine import AlertEngine
from stationwatch.core.contract import MessageClass, encode, topic
from stationwatch.sensors.kinds import KINDS

from support.alerts import GW, HOLD, JULY, SHANGHAI, SITE, T0, active, config_with, settle


@pytest.fixture
def engine(city_config, tmp_path, clock):
    e = AlertEngine(city_config, tmp_path / "alerts.db", clock=clock)
    yield e
    e.close()


def actions(engine, alert_id):
    return [t["action"] for t in engine.store.trail(alert_id) if t["action"] != "notify"]


# ---- fire (GB 50116 §4.1.6, GB 4716) ----------------------------------------------------------
def test_one_smoke_detector_raises_a_pre_alarm_for_its_zone(engine, wire):
    engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    [fire] = active(engine, "fire")
    assert (fire.subject, fire.severity, fire.zone, fire.room, fire.state) == (
        f"{SITE}/z-dorm-west", "pre_alarm", "z-dorm-west", "dorm-f1", "firing")
    assert "火灾预警" in fire.title_zh and "女宿舍一" in fire.title_zh and "pre-alarm" in fire.title_en


def test_second_detector_in_the_zone_escalates_the_same_alert_to_critical(engine, wire):
    engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    [first] = active(engine, "fire")
    engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=T0 + 5))
    [fire] = active(engine, "fire")
    assert fire.id == first.id and fire.severity == "critical"
    assert "火警确认" in fire.title_zh and fire.detail["detectors"] == ["smk-dorm-f1a", "smk-dorm-f1b"]
    assert actions(engine, fire.id) == ["raise", "escalate"]
    [rise] = [t for t in engine.store.trail(fire.id) if t["action"] == "escalate"]
    assert "pre_alarm → critical" in rise["note"] and rise["actor"] == "engine"


def test_smoke_and_heat_in_one_zone_confirm_a_fire_across_rooms(engine, wire):
    engine.handle(*wire.event("smk-dorm-m2", "alarm"))  # dorm-m2 and dorm-m1 share zone z-dorm-east
    engine.handle(*wire.reading("heat-dorm-m1", 58.0, ts=T0 + 3))
    [fire] = active(engine, "fire")
    assert fire.severity == "critical" and fire.subject == f"{SITE}/z-dorm-east"


def test_detectors_in_different_zones_do_not_confirm_each_other(engine, wire):
    engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    engine.handle(*wire.event("smk-minors-a", "alarm"))
    fires = active(engine, "fire")
    assert sorted(a.subject for a in fires) == [f"{SITE}/z-dorm-west", f"{SITE}/z-minors"]
    assert {a.severity for a in fires} == {"pre_alarm"}


def test_a_fault_on_one_detector_never_hides_another_detectors_alarm(engine, wire):
    engine.handle(*wire.event("smk-dorm-f1a", "fault"))
    engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=T0 + 1))
    [fire] = active(engine, "fire")
    [fault] = active(engine, "sensor_fault")
    assert fire.severity == "pre_alarm" and fire.detail["detectors"] == ["smk-dorm-f1b"]
    assert fault.subject == f"{SITE}/smk-dorm-f1a" and fault.severity == "warning"


def test_a_detector_in_alarm_that_then_faults_still_counts(engine, wire):
    engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    engine.handle(*wire.event("smk-dorm-f1a", "fault", ts=T0 + 1))
    engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=T0 + 2))
    assert [a.severity for a in active(engine, "fire")] == ["critical"]


def test_heat_reading_at_the_static_threshold_is_a_pre_alarm_below_it_nothing(engine, wire):
    engine.handle(*wire.reading("heat-kitchen", 53.9))
    assert active(engine, "fire") == []
    engine.handle(*wire.reading("heat-kitchen", 54.0, ts=T0 + 10))
    [fire] = active(engine, "fire")
    assert fire.severity == "pre_alarm" and fire.detail["signal"] == "static"


def test_heat_rising_fast_is_a_pre_alarm_before_the_static_threshold(engine, wire):
    for i, value in enumerate((30.0, 33.5, 37.0)):  # 7 °C in 20 s: 21 °C/min ≥ 10 °C/min (class A1R)
        engine.handle(*wire.reading("heat-kitchen", value, ts=T0 + 10 * i))
    [fire] = active(engine, "fire")
    assert fire.severity == "pre_alarm" and fire.detail["signal"] == "rate_of_rise"
    assert "温升速率过快" in fire.title_zh


def test_slow_warming_is_not_a_rate_of_rise(engine, wire):
    for i in range(8):  # 0.5 °C every 10 s: 3 °C/min
        engine.handle(*wire.reading("heat-kitchen", 30.0 + 0.5 * i, ts=T0 + 10 * i))
    assert active(engine, "fire") == []


def test_heat_detector_counts_until_it_is_back_below_the_hysteresis(engine, wire):
    zone = f"{SITE}|kitchen|0"
    engine.handle(*wire.reading("heat-kitchen", 55.0))
    engine.handle(*wire.reading("heat-kitchen", 52.5, ts=T0 + 300))  # 54 − 2 < 52.5 < 54: still in alarm
    assert "heat-kitchen" in engine.situation.mem.get("zone", zone)
    engine.handle(*wire.reading("heat-kitchen", 51.5, ts=T0 + 600))
    assert engine.situation.mem.get("zone", zone) is None


def test_fire_stays_until_a_person_closes_it_then_a_new_alarm_is_a_new_alert(engine, wire):
    engine.handle(*wire.event("smk-kitchen", "alarm"))
    engine.handle(*wire.event("smk-kitchen", "normal", ts=T0 + 60))
    [fire] = active(engine, "fire")
    engine.store.dismiss(fire.id, actor="值班员 张三", reason="厨房油烟，已复核")
    assert active(engine, "fire") == []
    engine.handle(*wire.event("smk-kitchen", "alarm", ts=T0 + 600))
    [again] = active(engine, "fire")
    assert again.id != fire.id
    closed = engine.store.get(fire.id)
    assert (closed.state, closed.resolution, closed.resolved_by) == ("dismissed", "dismissed", "值班员 张三")


def test_repeated_alarm_is_deduplicated_into_one_alert_with_a_count(engine, wire):
    for i in range(3):
        engine.handle(*wire.event("smk-store", "alarm", ts=T0 + i))
    [fire] = active(engine, "fire")
    assert fire.count == 3 and fire.last_at == T0 + 2 and fire.first_at == T0


def test_a_drill_alarm_is_marked_and_kept_apart_from_a_real_one(engine, wire):
    engine.handle(*wire.event("smk-store", "alarm", drill=True))
    engine.handle(*wire.event("smk-store", "alarm", ts=T0 + 1))
    drill, real = sorted(active(engine, "fire"), key=lambda a: not a.drill)
    assert drill.drill and "演练" in drill.title_zh
    assert not real.drill and real.id != drill.id
    counts = engine.store.counts()
    assert (counts["active"], counts["drills"], counts["pre_alarm"]) == (1, 1, 1)


# ---- doors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("hour, alerts", [(2, 1), (23, 1), (14, 0), (6, 0)])
def test_exit_door_opened_in_the_night_window_of_the_site(engine, wire, clock, hour, alerts):
    ts = datetime(2025, 1, 16, hour, 0, tzinfo=SHANGHAI).timestamp()  # 02:00 local is 18:00 UTC
    engine.handle(*wire.event("door-exit-main", "open", ts=ts), now=clock.at(ts))
    found = active(engine, "night_exit")
    assert len(found) == alerts
    if alerts:
        assert found[0].severity == "major" and "走失" in found[0].title_zh


def test_inner_door_at_night_and_closing_an_exit_raise_nothing(engine, wire, clock):
    night = clock.at(datetime(2025, 1, 16, 2, 0, tzinfo=SHANGHAI).timestamp())
    engine.handle(*wire.event("door-minors", "open", ts=night))
    engine.handle(*wire.event("door-exit-back", "closed", ts=night))
    assert active(engine, "night_exit") == []


def test_night_exit_is_not_cleared_by_the_door_closing(engine, wire, clock):
    night = clock.at(datetime(2025, 1, 16, 2, 0, tzinfo=SHANGHAI).timestamp())
    engine.handle(*wire.event("door-exit-back", "open", ts=night))
    engine.handle(*wire.event("door-exit-back", "closed", ts=night + 30), now=clock.at(night + 30))
    settle(engine, clock.at(night + 3600))
    assert len(active(engine, "night_exit")) == 1


def test_a_door_held_open_warns_after_the_limit_and_clears_when_closed(engine, wire, clock):
    engine.handle(*wire.event("door-store", "open"))
    engine.tick(clock.at(T0 + 299))
    assert active(engine, "door_held_open") == []
    engine.tick(clock.at(T0 + 301))
    [held] = active(engine, "door_held_open")
    assert held.severity == "warning" and "仓库门" in held.title_zh and held.first_at == T0
    engine.tick(clock.at(T0 + 400))
    assert engine.store.get(held.id).count == 1  # one alert, not one per tick
    engine.handle(*wire.event("door-store", "closed", ts=T0 + 500), now=clock.at(T0 + 500))
    engine.tick(clock.at(T0 + 500 + HOLD))
    assert active(engine, "door_held_open") == []
    assert engine.store.get(held.id).resolution == "auto"


# ---- sensor faults ----------------------------------------------------------------------------
def test_faulty_reading_raises_sensor_fault_and_a_good_one_resolves_it_after_the_hold(engine, wire, clock):
    engine.handle(*wire.reading("t-dorm-m1", None, quality="fault"))
    [fault] = active(engine, "sensor_fault")
    assert fault.detail["reason"] == "fault"
    engine.handle(*wire.reading("t-dorm-m1", 20.5, ts=T0 + 10), now=clock.at(T0 + 10))
    assert active(engine, "sensor_fault")[0].clearing_since == T0 + 10  # clear, but not for long enough yet
    settle(engine, clock.at(T0 + 10 + HOLD))
    assert active(engine, "sensor_fault") == []
    assert engine.store.get(fault.id).resolution == "auto"


def test_value_outside_the_physical_range_is_a_fault_not_an_alarm(engine, wire):
    engine.handle(*wire.reading("heat-boiler", 400.0))
    assert active(engine, "fire") == []
    assert [a.detail["reason"] for a in active(engine, "sensor_fault")] == ["out_of_range"]


def test_a_silent_sensor_becomes_stale_unless_its_gateway_is_known_offline(engine, wire):
    for sensor in engine.cfg.sensors:
        engine.handle(*wire.reading(sensor.id, 0.0 if KINDS[sensor.kind].binary else 20.0), now=T0)
    engine.handle(*wire.reading("t-dorm-m1", 20.0), now=T0 + 90)
    engine.tick(T0 + 99)
    assert active(engine, "sensor_fault") == []
    engine.tick(T0 + 101)  # every sensor but t-dorm-m1 (and t-outdoor: interval 60 s → 120 s) is stale
    stale = {a.detail["device"] for a in active(engine, "sensor_fault")}
    assert "smk-dorm-m1" in stale and "t-dorm-m1" not in stale and "t-outdoor" not in stale
    engine.handle(*wire.reading("smk-dorm-m1", 0.0), now=T0 + 102)
    engine.tick(T0 + 102 + HOLD)
    assert f"{SITE}/smk-dorm-m1" not in {a.subject for a in active(engine, "sensor_fault")}


def test_stale_sensors_and_faults_are_inhibited_while_their_gateway_is_lost(engine, wire):
    engine.handle(*wire.status("offline", "will"), now=T0)
    engine.tick(T0 + 1000)
    engine.handle(*wire.event("smk-kitchen", "fault"), now=T0 + 1001)  # a symptom of the lost gateway
    assert active(engine, "sensor_fault") == [] and active(engine, "camera_offline") == []
    assert len(active(engine, "gateway_offline")) == 1
    engine.handle(*wire.event("smk-kitchen", "alarm"), now=T0 + 1002)  # an alarm is never inhibited
    assert len(active(engine, "fire")) == 1


# ---- cameras ----------------------------------------------------------------------------------
def test_camera_offline_after_the_configured_number_of_failed_probes(engine, wire, clock):
    for i in range(2):
        engine.handle(*wire.heartbeat("cam-med-obs", False, ts=T0 + 60 * i))
    assert active(engine, "camera_offline") == []
    engine.handle(*wire.heartbeat("cam-med-obs", False, ts=T0 + 120))
    [cam] = active(engine, "camera_offline")
    assert cam.severity == "major" and cam.room == "med-obs" and "医疗观察室" in cam.title_zh
    engine.handle(*wire.heartbeat("cam-med-obs", True, ts=T0 + 180), now=clock.at(T0 + 180))
    settle(engine, clock.at(T0 + 180 + HOLD))
    assert active(engine, "camera_offline") == []


def test_a_blind_kitchen_camera_is_a_warning_the_observation_room_a_major_hazard(engine, wire):
    for i in range(3):
        engine.handle(*wire.heartbeat("cam-kitchen", False, ts=T0 + 60 * i))
    [cam] = active(engine, "camera_offline")
    assert cam.severity == "warning"


def test_camera_without_heartbeat_for_misses_times_interval_is_offline(engine, wire):
    for cam in engine.cfg.cameras:
        engine.handle(*wire.heartbeat(cam.id, True), now=T0 + 100)
    engine.tick(T0 + 280)  # 3 × 60 s since the last heartbeat of every camera at T0+100 is T0+280
    assert active(engine, "camera_offline") == []
    engine.tick(T0 + 281)
    assert len(active(engine, "camera_offline")) == len(engine.cfg.cameras)
    engine.handle(*wire.heartbeat("cam-hall", True), now=T0 + 290)
    engine.tick(T0 + 290 + HOLD)
    assert f"{SITE}/cam-hall" not in {a.subject for a in active(engine, "camera_offline")}


def test_a_flapping_camera_stays_one_alert_and_its_notices_are_damped(engine, wire, clock):
    def cycle(base):  # three failed probes, then answering again long enough to resolve
        for i in range(3):
            engine.handle(*wire.heartbeat("cam-hall", False, ts=base + 60 * i), now=clock.at(base + 60 * i))
        engine.handle(*wire.heartbeat("cam-hall", True, ts=base + 180), now=clock.at(base + 180))
        settle(engine, clock.at(base + 180 + HOLD))

    for n in range(4):
        cycle(T0 + 300 * n)  # back every 5 min, well inside the 15 min flap window
    [cam] = engine.store.alerts(include_resolved=True, rule="camera_offline")
    assert cam.flaps == 3 and [a for a in actions(engine, cam.id) if a == "reopen"] == ["reopen"] * 3
    kinds = [r["kind"] for r in engine.store.query("SELECT kind FROM outbox ORDER BY id")]
    assert kinds == ["new", "resolved", "recurred", "resolved", "flapping"]  # then quiet


def test_back_after_the_flap_window_is_a_new_alert(engine, wire, clock):
    for base in (T0, T0 + 3600):
        for i in range(3):
            engine.handle(*wire.heartbeat("cam-hall", False, ts=base + 60 * i), now=clock.at(base + 60 * i))
        engine.handle(*wire.heartbeat("cam-hall", True, ts=base + 180), now=clock.at(base + 180))
        settle(engine, clock.at(base + 180 + HOLD))
    assert len(engine.store.alerts(include_resolved=True, rule="camera_offline")) == 2


# ---- gateways ---------------------------------------------------------------------------------
def test_gateway_lost_is_critical_dated_by_the_wills_arrival_and_clears_when_back(engine, wire, clock):
    engine.handle(*wire.status("online"))
    # the will carries the time the gateway connected (T0); it arrives an hour later
    engine.handle(*wire.status("offline", "will", ts=T0), now=clock.at(T0 + 3600))
    [gw] = active(engine, "gateway_offline")
    assert gw.severity == "critical" and gw.subject == f"{SITE}/{GW}"
    assert gw.first_at == T0 + 3600 and gw.detail["connected_ts"] == T0
    engine.handle(*wire.status("online", ts=T0 + 3700), now=clock.at(T0 + 3700))
    settle(engine, clock.at(T0 + 3700 + HOLD))
    assert active(engine, "gateway_offline") == []
    assert engine.store.gateways()[0]["state"] == "online"


def test_a_retained_will_delivered_again_is_no_news(engine, wire, clock):
    will = wire.status("offline", "will")
    engine.handle(*will)
    [gw] = active(engine, "gateway_offline")
    engine.store.resolve(gw.id, "值班员 张三", "网关已断电检修")
    engine.handle(*will, now=clock.at(T0 + 60))  # the broker sends the retained will again on resubscribe
    assert active(engine, "gateway_offline") == []


def test_clean_gateway_shutdown_raises_nothing_but_is_recorded(engine, wire):
    engine.handle(*wire.status("offline", "shutdown"))
    assert active(engine) == []
    [gw] = engine.store.gateways()
    assert (gw["gateway"], gw["state"], gw["reason"]) == (GW, "offline", "shutdown")


# ---- heating and heat -------------------------------------------------------------------------
def test_cold_sleeping_room_is_pending_then_warns_escalates_when_freezing_steps_down_and_clears(engine, wire, clock):
    engine.handle(*wire.reading("t-dorm-f1", 16.0))
    [pending] = active(engine, "cold_room")
    assert pending.state == "pending" and "观察中" in pending.title_zh
    engine.handle(*wire.reading("t-dorm-f1", 16.0, ts=T0 + 1799))
    assert active(engine, "cold_room")[0].state == "pending"
    engine.handle(*wire.reading("t-dorm-f1", 15.5, ts=T0 + 1800))
    [cold] = active(engine, "cold_room")
    assert (cold.id, cold.state, cold.severity, cold.subject) == (pending.id, "firing", "warning", f"{SITE}/dorm-f1")
    engine.handle(*wire.reading("t-dorm-f1", 4.0, ts=T0 + 1900))
    engine.handle(*wire.reading("t-dorm-f1", 4.0, ts=T0 + 2200))
    [freezing] = active(engine, "cold_room")
    assert freezing.id == cold.id and freezing.severity == "critical"
    engine.handle(*wire.reading("t-dorm-f1", 10.0, ts=T0 + 2300))  # out of the frost band, still cold
    assert active(engine, "cold_room")[0].severity == "warning"
    engine.handle(*wire.reading("t-dorm-f1", 19.0, ts=T0 + 4000), now=clock.at(T0 + 4000))
    settle(engine, clock.at(T0 + 4000 + HOLD))
    assert active(engine, "cold_room") == []
    assert actions(engine, cold.id) == ["pending", "fire", "escalate", "deescalate", "resolve"]


def test_a_cold_spell_shorter_than_the_duration_expires_without_a_notice(engine, wire):
    engine.handle(*wire.reading("t-dorm-f1", 17.0))
    engine.handle(*wire.reading("t-dorm-f1", 17.4, ts=T0 + 60))  # inside the hysteresis: still cold
    assert active(engine, "cold_room")[0].state == "pending"
    engine.handle(*wire.reading("t-dorm-f1", 18.6, ts=T0 + 120))
    [expired] = engine.store.alerts(include_resolved=True, rule="cold_room")
    assert (expired.state, expired.resolution) == ("resolved", "expired")
    assert engine.store.query("SELECT * FROM outbox") == []


def test_public_room_is_only_critical_below_the_any_room_minimum(engine, wire):
    for ts in (T0, T0 + 3600):
        engine.handle(*wire.reading("t-hall", 10.0, ts=ts))
    assert active(engine, "cold_room") == []


def test_outside_the_heating_season_a_cool_room_is_fine_and_a_hot_one_warns(engine, wire, clock):
    for ts in (JULY, JULY + 1800):
        engine.handle(*wire.reading("t-dorm-m1", 16.0, ts=ts), now=clock.at(ts))
        engine.handle(*wire.reading("t-dorm-m2", 33.0, ts=ts), now=clock.at(ts))
    assert active(engine, "cold_room") == []
    [hot] = active(engine, "hot_room")
    assert hot.severity == "warning" and hot.room == "dorm-m2" and "防中暑" in hot.title_zh


def test_in_the_heating_season_a_hot_room_is_not_a_summer_alert(engine, wire):
    for ts in (T0, T0 + 1800):
        engine.handle(*wire.reading("t-dorm-m2", 33.0, ts=ts))
    assert active(engine, "hot_room") == []


def test_the_heating_season_is_set_per_city(tmp_path, wire):
    # a southern city heats only in January: on 1 February a cold dormitory is no heating alert
    cfg = config_with(rules={"heating_seasons": {"sl-mz": {"start": "01-01", "end": "01-31"}}})
    feb = datetime(2025, 2, 1, 14, 0, tzinfo=SHANGHAI).timestamp()
    engine = AlertEngine(cfg, tmp_path / "alerts.db", clock=lambda: feb)
    try:
        for ts in (feb, feb + 1800):
            engine.handle(*wire.reading("t-dorm-m1", 15.0, ts=ts))
        assert active(engine, "cold_room") == []
    finally:
        engine.close()


def test_supply_water_too_cold_while_it_is_cold_outside(engine, wire):
    engine.handle(*wire.reading("t-outdoor", -6.0))
    engine.handle(*wire.reading("supply-main", 35.0))
    assert active(engine, "supply_cold")[0].state == "pending"
    engine.handle(*wire.reading("supply-main", 33.0, ts=T0 + 900))
    [supply] = active(engine, "supply_cold")
    assert (supply.state, supply.severity) == ("firing", "major") and "室外 -6.0 °C" in supply.title_zh


def test_cool_supply_water_on_a_mild_day_is_no_alert(engine, wire):
    engine.handle(*wire.reading("t-outdoor", 12.0))
    for ts in (T0, T0 + 1000):
        engine.handle(*wire.reading("supply-main", 35.0, ts=ts))
    assert active(engine, "supply_cold") == []


def test_boiler_fault_is_major_and_clears_with_the_contact(engine, wire, clock):
    engine.handle(*wire.event("boiler-fault", "alarm"))
    [boiler] = active(engine, "boiler_fault")
    assert boiler.severity == "major" and boiler.room == "boiler"
    engine.handle(*wire.event("boiler-fault", "normal", ts=T0 + 60), now=clock.at(T0 + 60))
    settle(engine, clock.at(T0 + 60 + HOLD))
    assert active(engine, "boiler_fault") == []


# ---- input that is not for the rules -------------------------------------------------------
def test_commands_to_gateways_and_malformed_input_never_stop_the_engine(engine, wire):
    from stationwatch.core.contract import Command
    cmd = encode(Command(v=1, ts=T0, name="scenario", args={"name": "fire"}))
    assert engine.handle(topic(SITE, GW, MessageClass.CMD, "scenario"), cmd) == []
    assert engine.handle(topic(SITE, GW, MessageClass.EVENT, "smk-kitchen"), b"\xff") == []
    engine.handle(*wire.event("smk-kitchen", "alarm"))
    assert [a.rule for a in active(engine)] == ["fire"]
    assert engine.stats.quarantined == 1 and dict(engine.quarantine.counts) == {"not_json": 1}
