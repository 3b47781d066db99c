"""The alert rules, driven through AlertEngine.handle/tick with messages encoded exactly as a
gateway puts them on the wire (broker.contract), over a real SQLite store in tmp_path."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from stationwatch.alerts.engine import AlertEngine
from stationwatch.broker.contract import Event, Heartbeat, Kind, Reading, Status, encode, topic
from stationwatch.sensors.kinds import KINDS

SITE, GW = "sl-station", "gw-sl-main"
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 1, 15, 14, 0, tzinfo=SHANGHAI).timestamp()  # a winter afternoon, site local time


class Wire:
    """Messages as a gateway sends them: (topic, payload bytes)."""

    def __init__(self, site: str = SITE, gateway: str = GW):
        self.site, self.gateway, self.seq = site, gateway, 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def event(self, device: str, state: str, ts: float = T0, drill: bool = False) -> tuple[str, bytes]:
        body = Event(v=1, ts=ts, seq=self._next(), state=state, drill=drill)
        return topic(self.site, self.gateway, Kind.EVENT, device), encode(body)

    def reading(self, device: str, value: float | None, ts: float = T0, quality: str = "ok") -> tuple[str, bytes]:
        body = Reading(v=1, ts=ts, seq=self._next(), value=value, unit="°C", quality=quality)
        return topic(self.site, self.gateway, Kind.READING, device), encode(body)

    def heartbeat(self, camera: str, online: bool, ts: float = T0) -> tuple[str, bytes]:
        body = Heartbeat(v=1, ts=ts, seq=self._next(), online=online)
        return topic(self.site, self.gateway, Kind.HEARTBEAT, camera), encode(body)

    def status(self, state: str, reason: str | None = None, ts: float = T0) -> tuple[str, bytes]:
        return topic(self.site, self.gateway, Kind.STATUS), encode(Status(v=1, ts=ts, state=state, reason=reason))


@pytest.fixture
def engine(city_config, tmp_path):
    e = AlertEngine(city_config, tmp_path / "alerts.db", clock=lambda: T0)
    yield e
    e.close()


@pytest.fixture
def wire():
    return Wire()


def active(engine, rule=None):
    return [a for a in engine.store.alerts() if rule is None or a.rule == rule]


# ---- fire (GB 50116 §4.1.6) ------------------------------------------------------------------
def test_one_smoke_detector_raises_a_pre_alarm_for_its_zone(engine, wire):
    engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    [fire] = active(engine, "fire")
    assert (fire.subject, fire.severity, fire.zone, fire.room) == (f"{SITE}/z-dorm-west", "pre_alarm",
                                                                   "z-dorm-west", "dorm-f1")
    assert "火灾预警" in fire.title_zh and "女宿舍一" in fire.title_zh and "pre-alarm" in fire.title_en


def test_second_detector_in_the_zone_escalates_the_same_alert_to_critical(engine, wire):
    engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    [first] = active(engine, "fire")
    engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=T0 + 5))
    [fire] = active(engine, "fire")
    assert fire.id == first.id and fire.severity == "critical"
    assert "火警确认" in fire.title_zh and fire.detail["detectors"] == ["smk-dorm-f1a", "smk-dorm-f1b"]
    trail = engine.store.get(fire.id, with_trail=True).audit
    assert [t["action"] for t in trail] == ["raise", "escalate"]
    assert "pre_alarm → critical" in trail[1]["note"]


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
    assert [a.severity for a in active(engine, "fire")] == ["pre_alarm"]


def test_fire_stays_until_a_person_resolves_it_then_a_new_alarm_is_a_new_alert(engine, wire):
    engine.handle(*wire.event("smk-kitchen", "alarm"))
    engine.handle(*wire.event("smk-kitchen", "normal", ts=T0 + 60))
    [fire] = active(engine, "fire")
    engine.store.resolve(fire.id, actor="值班员 张三", note="厨房油烟，已复核", dismissed=True)
    assert active(engine, "fire") == []
    engine.handle(*wire.event("smk-kitchen", "alarm", ts=T0 + 600))
    [again] = active(engine, "fire")
    assert again.id != fire.id
    assert engine.store.get(fire.id).resolution == "dismissed"


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


# ---- night exit -------------------------------------------------------------------------------
@pytest.mark.parametrize("hour, alerts", [(2, 1), (23, 1), (14, 0), (6, 0)])
def test_exit_door_opened_in_the_night_window_of_the_site(engine, wire, hour, alerts):
    ts = datetime(2025, 1, 16, hour, 0, tzinfo=SHANGHAI).timestamp()  # 02:00 local is 18:00 UTC
    engine.handle(*wire.event("door-exit-main", "open", ts=ts))
    found = active(engine, "night_exit")
    assert len(found) == alerts
    if alerts:
        assert found[0].severity == "major" and "走失" in found[0].title_zh


def test_inner_door_at_night_and_closing_an_exit_raise_nothing(engine, wire):
    night = datetime(2025, 1, 16, 2, 0, tzinfo=SHANGHAI).timestamp()
    engine.handle(*wire.event("door-minors", "open", ts=night))
    engine.handle(*wire.event("door-exit-back", "closed", ts=night))
    assert active(engine, "night_exit") == []


def test_night_exit_is_not_cleared_by_the_door_closing(engine, wire):
    night = datetime(2025, 1, 16, 2, 0, tzinfo=SHANGHAI).timestamp()
    engine.handle(*wire.event("door-exit-back", "open", ts=night))
    engine.handle(*wire.event("door-exit-back", "closed", ts=night + 30))
    assert len(active(engine, "night_exit")) == 1


# ---- sensor faults ----------------------------------------------------------------------------
def test_faulty_reading_raises_sensor_fault_and_a_good_one_resolves_it(engine, wire):
    engine.handle(*wire.reading("t-dorm-m1", None, quality="fault"))
    [fault] = active(engine, "sensor_fault")
    assert fault.detail["reason"] == "fault"
    engine.handle(*wire.reading("t-dorm-m1", 20.5, ts=T0 + 10))
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
    assert f"{SITE}/smk-dorm-m1" not in {a.subject for a in active(engine, "sensor_fault")}


def test_stale_sensors_are_inhibited_while_their_gateway_is_offline(engine, wire):
    engine.handle(*wire.status("offline", "will"), now=T0)
    engine.tick(T0 + 1000)
    assert active(engine, "sensor_fault") == [] and active(engine, "camera_offline") == []
    assert len(active(engine, "gateway_offline")) == 1


# ---- cameras ----------------------------------------------------------------------------------
def test_camera_offline_after_the_configured_number_of_failed_probes(engine, wire):
    for i in range(2):
        engine.handle(*wire.heartbeat("cam-med-obs", False, ts=T0 + 60 * i))
    assert active(engine, "camera_offline") == []
    engine.handle(*wire.heartbeat("cam-med-obs", False, ts=T0 + 120))
    [cam] = active(engine, "camera_offline")
    assert cam.severity == "major" and cam.room == "med-obs" and "医疗观察室" in cam.title_zh
    engine.handle(*wire.heartbeat("cam-med-obs", True, ts=T0 + 180))
    assert active(engine, "camera_offline") == []


def test_camera_without_heartbeat_for_misses_times_interval_is_offline(engine, wire):
    engine.handle(*wire.heartbeat("cam-hall", True), now=T0)
    for cam in engine.cfg.cameras:
        engine.handle(*wire.heartbeat(cam.id, True), now=T0 + 100)
    engine.handle(*wire.heartbeat("cam-hall", True), now=T0 + 100)
    engine.tick(T0 + 280)  # 3 × 60 s since the last heartbeat of every camera at T0+100 is T0+280
    assert active(engine, "camera_offline") == []
    engine.tick(T0 + 281)
    assert len(active(engine, "camera_offline")) == len(engine.cfg.cameras)
    engine.handle(*wire.heartbeat("cam-hall", True), now=T0 + 290)
    assert f"{SITE}/cam-hall" not in {a.subject for a in active(engine, "camera_offline")}


# ---- gateways ---------------------------------------------------------------------------------
def test_gateway_lost_without_goodbye_is_critical_and_clears_when_back(engine, wire):
    engine.handle(*wire.status("online"))
    engine.handle(*wire.status("offline", "will", ts=T0 + 30))
    [gw] = active(engine, "gateway_offline")
    assert gw.severity == "critical" and gw.subject == f"{SITE}/{GW}"
    engine.handle(*wire.status("online", ts=T0 + 90))
    assert active(engine, "gateway_offline") == []
    assert engine.store.gateways()[0]["state"] == "online"


def test_clean_gateway_shutdown_raises_nothing_but_is_recorded(engine, wire):
    engine.handle(*wire.status("offline", "shutdown"))
    assert active(engine) == []
    [gw] = engine.store.gateways()
    assert (gw["gateway"], gw["state"], gw["reason"]) == (GW, "offline", "shutdown")


# ---- heating ----------------------------------------------------------------------------------
def test_cold_sleeping_room_warns_after_the_duration_escalates_when_freezing_and_clears(engine, wire):
    engine.handle(*wire.reading("t-dorm-f1", 16.0))
    engine.handle(*wire.reading("t-dorm-f1", 16.0, ts=T0 + 1799))
    assert active(engine, "cold_room") == []
    engine.handle(*wire.reading("t-dorm-f1", 15.5, ts=T0 + 1800))
    [cold] = active(engine, "cold_room")
    assert (cold.severity, cold.subject) == ("warning", f"{SITE}/dorm-f1")
    engine.handle(*wire.reading("t-dorm-f1", 4.0, ts=T0 + 1900))
    engine.handle(*wire.reading("t-dorm-f1", 4.0, ts=T0 + 2200))
    [freezing] = active(engine, "cold_room")
    assert freezing.id == cold.id and freezing.severity == "critical"
    engine.handle(*wire.reading("t-dorm-f1", 19.0, ts=T0 + 4000))
    assert active(engine, "cold_room") == []


def test_public_room_is_only_critical_below_the_any_room_minimum(engine, wire):
    for ts in (T0, T0 + 3600):
        engine.handle(*wire.reading("t-hall", 10.0, ts=ts))
    assert active(engine, "cold_room") == []


def test_boiler_fault_is_major_and_clears_with_the_contact(engine, wire):
    engine.handle(*wire.event("boiler-fault", "alarm"))
    [boiler] = active(engine, "boiler_fault")
    assert boiler.severity == "major" and boiler.room == "boiler"
    engine.handle(*wire.event("boiler-fault", "normal", ts=T0 + 60))
    assert active(engine, "boiler_fault") == []


def test_alerts_and_dedup_survive_a_new_engine_on_the_same_file(city_config, tmp_path, wire):
    first = AlertEngine(city_config, tmp_path / "alerts.db")
    first.handle(*wire.event("boiler-fault", "alarm"))
    first.close()
    second = AlertEngine(city_config, tmp_path / "alerts.db")
    second.handle(*wire.event("boiler-fault", "alarm", ts=T0 + 5))
    [boiler] = second.store.alerts()
    assert boiler.count == 2
    second.handle(*wire.event("boiler-fault", "normal", ts=T0 + 9))  # the new engine can clear it too
    assert second.store.alerts() == []
    second.close()


def test_a_second_detector_after_an_engine_restart_still_confirms_the_fire(city_config, tmp_path, wire):
    first = AlertEngine(city_config, tmp_path / "alerts.db")
    [pre] = first.handle(*wire.event("smk-minors-a", "alarm"))
    first.close()
    second = AlertEngine(city_config, tmp_path / "alerts.db")
    [fire] = second.handle(*wire.event("smk-minors-b", "alarm", ts=T0 + 20))
    assert (fire.id, pre.severity, fire.severity) == (pre.id, "pre_alarm", "critical")
    second.close()
