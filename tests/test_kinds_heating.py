"""The sensor kinds for heat detector contacts and the heating plant — heat_alarm, pump_running,
return_temperature, pressure, humidity: config, gateway states, and the alert rules driven through
AlertEngine.handle (real SQLite in tmp_path, injected clock) and once through the real Mosquitto."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest
import yaml

from stationwatch.alerts.engine import AlertEngine
from stationwatch.core.agent_settings import AgentSettings
from stationwatch.core.config import ConfigError, parse_config
from stationwatch.core.policy import RuleSettings
from stationwatch.gateway.states import state_rule
from stationwatch.sensors.kinds import KINDS

from support import EXAMPLES, wait_for
from support.alerts import (
    GW,
    HOLD,
    JULY,
    SHANGHAI,
    SITE,
    T0,
    Clock,
    RunningEngine,
    Wire,
    active,
    send,
    settle,
    wait_subscribed,
)

NEW_SENSORS = [
    {"id": "heat-dorm-f1", "name": "女宿舍一 感温报警", "kind": "heat_alarm", "gateway": GW, "room": "dorm-f1"},
    {"id": "heat-minors", "name": "未成年人宿舍 感温报警", "kind": "heat_alarm", "gateway": GW, "room": "minors-1"},
    {"id": "pump-main", "name": "供暖循环泵", "kind": "pump_running", "gateway": GW, "room": "boiler"},
    {"id": "return-main", "name": "供暖回水温度", "kind": "return_temperature", "gateway": GW, "room": "boiler"},
    {"id": "pressure-main", "name": "供暖系统水压", "kind": "pressure", "gateway": GW, "room": "boiler",
     "low_bar": 1.0},
    {"id": "pressure-aux", "name": "补水箱水压", "kind": "pressure", "gateway": GW, "room": "boiler"},
    {"id": "rh-dorm-m1", "name": "男宿舍一 湿度", "kind": "humidity", "gateway": GW, "room": "dorm-m1"},
]


def city_data() -> dict:
    return yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))


def heating_config(**rules):
    data = city_data()
    data["sensors"] += [dict(s) for s in NEW_SENSORS]
    if rules:
        data.setdefault("rules", {}).update(rules)
    return parse_config(data)


@pytest.fixture
def engine(tmp_path, clock):
    e = AlertEngine(heating_config(), tmp_path / "alerts.db", clock=clock)
    yield e
    e.close()


# ---- the kinds and their config ---------------------------------------------------------------
def test_the_new_kinds_are_rows_with_units_ranges_and_states():
    assert (KINDS["heat_alarm"].binary, KINDS["heat_alarm"].active_state, KINDS["heat_alarm"].idle_state) == (
        True, "alarm", "normal")
    assert (KINDS["pump_running"].active_state, KINDS["pump_running"].idle_state) == ("running", "stopped")
    assert {k: (KINDS[k].unit, KINDS[k].low, KINDS[k].high) for k in ("return_temperature", "pressure", "humidity")} \
        == {"return_temperature": ("°C", -10, 130), "pressure": ("bar", 0, 16), "humidity": ("%RH", 0, 100)}


def test_a_config_with_each_new_kind_validates():
    cfg = heating_config()
    by_id = {s.id: s for s in cfg.sensors}
    assert {by_id[s["id"]].kind for s in NEW_SENSORS} == {
        "heat_alarm", "pump_running", "return_temperature", "pressure", "humidity"}
    assert by_id["pressure-main"].low_bar == 1.0 and by_id["pressure-aux"].low_bar is None


@pytest.mark.parametrize("sensor, field", [
    ({**NEW_SENSORS[4], "low_bar": 40}, "low_bar"),  # more than the 16 bar a heating system is built for
    ({**NEW_SENSORS[0], "threshold_c": 54}, "threshold_c"),  # the analog heat detector's field on a contact
    ({**NEW_SENSORS[2], "exit": True}, "exit"),  # a door's field on a pump
])
def test_a_wrong_field_on_a_new_kind_is_named_in_the_error(sensor, field):
    data = city_data()
    data["sensors"].append(sensor)
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert [p.path for p in err.value.problems] == [f"sensors[{len(data['sensors']) - 1}].{field}"]


def test_a_misspelt_kind_is_named_at_the_kind_field():
    data = city_data()
    data["sensors"].append({**NEW_SENSORS[2], "kind": "pump"})
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    [problem] = err.value.problems
    assert problem.path == f"sensors[{len(data['sensors']) - 1}].kind" and "pump_running" in problem.message


def test_contacts_of_the_new_kinds_can_be_wired_to_gpio_and_the_di_module():
    data = city_data()
    data["gateways"][0]["buses"] = [{"id": "rs485-1", "port": "/dev/serial/by-id/usb-di-module"}]
    data["sensors"] += [
        {**NEW_SENSORS[0], "source": {"driver": "gpio", "pin": 19, "wiring": "nc"}},
        {**NEW_SENSORS[2], "source": {"driver": "gpio", "pin": 21, "wiring": "no"}},
        {**NEW_SENSORS[1], "interval_s": 1,
         "source": {"driver": "modbus", "bus": "rs485-1", "unit": 7, "register_map": "di-8ch", "point": "di1"}},
        {**NEW_SENSORS[4], "source": {"driver": "modbus", "bus": "rs485-1", "unit": 3,
                                      "register_map": "heating-controller", "point": "pressure"}},
        {**NEW_SENSORS[3], "source": {"driver": "onewire", "address": "28-00000abcdef1"}},
    ]
    parse_config(data)  # no problem
    data["sensors"][-1]["source"] = {"driver": "modbus", "bus": "rs485-1", "unit": 7, "register_map": "di-8ch",
                                     "point": "di2"}  # a contact cannot feed a temperature
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert [p.path for p in err.value.problems] == [f"sensors[{len(data['sensors']) - 1}].source.point"]


def test_the_local_alarm_sounds_for_heat_contacts_by_default():
    assert "heat_alarm" in AgentSettings().alarm_kinds


def test_gateway_states_of_the_new_kinds():
    cfg = heating_config()
    by_id = {s.id: s for s in cfg.sensors}
    heat, pump, pressure = by_id["heat-dorm-f1"], by_id["pump-main"], by_id["pressure-main"]
    assert state_rule("heat_alarm")(heat, 1.0, None) == "alarm"
    assert state_rule("heat_alarm")(heat, 0.0, "alarm") == "normal"
    assert state_rule("pump_running")(pump, 1.0, None) == "running"
    assert state_rule("pump_running")(pump, 0.0, "running") == "stopped"
    assert state_rule("pressure")(pressure, 0.4, None) is None  # analog: the rules judge, not the gateway
    assert state_rule("pressure")(pressure, 1.5, "fault") == "normal"


# ---- heat_alarm: a fire detector like smoke (GB 50116 §4.1.6) --------------------------------
def test_one_heat_contact_is_a_pre_alarm_for_its_zone(engine, wire):
    engine.handle(*wire.event("heat-dorm-f1", "alarm"))
    [fire] = active(engine, "fire")
    assert (fire.subject, fire.severity, fire.room, fire.state) == (
        f"{SITE}/z-dorm-west", "pre_alarm", "dorm-f1", "firing")
    assert "火灾预警" in fire.title_zh and fire.detail["signal"] == "heat_alarm"


def test_heat_contact_and_smoke_in_one_zone_confirm_a_fire(engine, wire):
    engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    engine.handle(*wire.event("heat-dorm-f1", "alarm", ts=T0 + 4))
    [fire] = active(engine, "fire")
    assert fire.severity == "critical" and fire.detail["detectors"] == ["heat-dorm-f1", "smk-dorm-f1a"]
    assert "火警确认" in fire.title_zh


def test_a_heat_contact_reading_counts_like_its_event_and_its_reset_uncounts_it(engine, wire):
    engine.handle(*wire.reading("heat-minors", 1.0))
    engine.handle(*wire.event("heat-minors", "normal", ts=T0 + 2))  # reset at the panel
    engine.handle(*wire.event("smk-minors-a", "alarm", ts=T0 + 4))
    [fire] = active(engine, "fire")
    assert fire.severity == "pre_alarm" and fire.detail["detectors"] == ["smk-minors-a"]


def test_a_heat_contact_fault_is_a_sensor_fault_never_a_fire(engine, wire):
    engine.handle(*wire.event("heat-dorm-f1", "fault"))
    assert active(engine, "fire") == [] and [a.subject for a in active(engine, "sensor_fault")] == [
        f"{SITE}/heat-dorm-f1"]


def test_heat_contact_and_smoke_confirm_a_fire_through_the_broker(broker_address, publisher, tmp_path):
    db, wire = tmp_path / "alerts.db", Wire()
    cfg = heating_config()
    from stationwatch.alerts.store import Store
    store = Store(db)
    with RunningEngine(cfg, broker_address, db, f"alerts-{uuid.uuid4().hex[:8]}"):
        wait_subscribed(store, publisher, wire)
        send(publisher, wire.event("heat-dorm-f1", "alarm"))
        send(publisher, wire.event("smk-dorm-f1b", "alarm", ts=T0 + 2))
        [fire] = wait_for(lambda: [a for a in store.alerts() if a.rule == "fire" and a.severity == "critical"],
                          15, what="confirmed fire from a heat contact and a smoke detector")
    assert fire.subject == f"{SITE}/z-dorm-west" and "heat-dorm-f1" in fire.detail["detectors"]


# ---- pump_running: a stopped pump in the heating season ---------------------------------------
def test_a_stopped_pump_is_pending_then_major_after_the_hold_and_clears_when_it_runs(engine, wire, clock):
    hold = RuleSettings().pump_stopped_for_s
    engine.handle(*wire.event("pump-main", "running"))
    engine.handle(*wire.event("pump-main", "stopped", ts=T0 + 10))
    [pump] = active(engine, "pump_stopped")
    assert (pump.state, pump.severity, pump.room) == ("pending", "major", "boiler")
    engine.handle(*wire.reading("pump-main", 0.0, ts=T0 + 10 + hold))  # the contact's periodic reading
    [pump] = active(engine, "pump_stopped")
    assert pump.state == "firing" and "循环泵停运" in pump.title_zh and "供暖中断" in pump.title_zh
    assert "Circulation pump stopped" in pump.title_en
    t = clock.at(T0 + 20 + hold)
    engine.handle(*wire.event("pump-main", "running", ts=t), now=t)
    settle(engine, clock.at(t + HOLD))
    assert active(engine, "pump_stopped") == []


def test_a_short_pump_changeover_raises_no_notice(engine, wire):
    engine.handle(*wire.event("pump-main", "stopped"))
    assert active(engine, "pump_stopped")[0].state == "pending"
    engine.handle(*wire.event("pump-main", "running", ts=T0 + 30))  # the standby pump took over
    engine.handle(*wire.reading("pump-main", 1.0, ts=T0 + 600))
    [expired] = engine.store.alerts(include_resolved=True, rule="pump_stopped")
    assert (expired.state, expired.resolution) == ("resolved", "expired")
    assert engine.store.query("SELECT * FROM outbox") == []


def test_a_stopped_pump_outside_the_heating_season_is_no_alert(tmp_path, wire):
    engine = AlertEngine(heating_config(), tmp_path / "alerts.db", clock=lambda: JULY)
    try:
        for ts in (JULY, JULY + 3600):
            engine.handle(*wire.reading("pump-main", 0.0, ts=ts))
        assert active(engine, "pump_stopped") == []
    finally:
        engine.close()


def test_the_pump_hold_follows_the_citys_heating_season(tmp_path, wire):
    cfg = heating_config(heating_seasons={"sl-mz": {"start": "12-01", "end": "02-28"}}, pump_stopped_for_s=0)
    clock = Clock(datetime(2024, 11, 20, 3, 0, tzinfo=SHANGHAI).timestamp())
    engine = AlertEngine(cfg, tmp_path / "alerts.db", clock=clock)
    try:
        engine.handle(*wire.event("pump-main", "stopped", ts=clock.t))
        assert active(engine, "pump_stopped") == []
        engine.handle(*wire.event("pump-main", "stopped", ts=T0), now=clock.at(T0))  # in January: at once (hold 0)
        [pump] = active(engine, "pump_stopped")
        assert pump.state == "firing"
    finally:
        engine.close()


# ---- pressure, return water, humidity ---------------------------------------------------------
def test_pressure_below_the_sensors_low_bar_is_major_after_the_hold(engine, wire, clock):
    hold = RuleSettings().pressure_for_s
    engine.handle(*wire.reading("pressure-main", 0.7))
    assert active(engine, "pressure_low")[0].state == "pending"
    engine.handle(*wire.reading("pressure-main", 0.65, ts=T0 + hold))
    [low] = active(engine, "pressure_low")
    assert (low.state, low.severity) == ("firing", "major") and "低于 1 bar" in low.title_zh
    t = clock.at(T0 + hold + 60)
    engine.handle(*wire.reading("pressure-main", 1.05, ts=t), now=t)  # inside the hysteresis: still low
    settle(engine, clock.at(t + HOLD))
    assert active(engine, "pressure_low")
    t = clock.at(t + HOLD + 1)
    engine.handle(*wire.reading("pressure-main", 1.5, ts=t), now=t)  # refilled
    settle(engine, clock.at(t + HOLD))
    assert active(engine, "pressure_low") == []


def test_without_low_bar_pressure_return_water_and_humidity_are_only_readings(engine, wire):
    for ts in (T0, T0 + 3600):
        engine.handle(*wire.reading("pressure-aux", 0.2, ts=ts))
        engine.handle(*wire.reading("return-main", 15.0, ts=ts))
        engine.handle(*wire.reading("rh-dorm-m1", 92.0, ts=ts))
    assert active(engine) == []


def test_new_analog_values_outside_their_range_are_sensor_faults(engine, wire):
    engine.handle(*wire.reading("pressure-main", 25.0))
    engine.handle(*wire.reading("rh-dorm-m1", 104.0))
    faults = active(engine, "sensor_fault")
    assert sorted(a.detail["device"] for a in faults) == ["pressure-main", "rh-dorm-m1"]
    assert {a.detail["reason"] for a in faults} == {"out_of_range"} and active(engine, "pressure_low") == []
