"""The skeleton scenarios through the real broker: the simulated station (the production gateway agent
on a simulated building) plays each one in-process, the
alert engine (run_engine) evaluates the live MQTT stream, and notices go through apprise to a real
HTTP receiver — one path per level of the reporting chain. Deadlines are compressed by config.

Each scenario must produce the right alerts with the right severity and escalation path; an
unacknowledged critical alert climbs to the bureau within its deadlines; an acknowledged one stops."""
from __future__ import annotations

import time
import uuid

import pytest
import yaml

from stationwatch.alerts.store import Store
from stationwatch.core.config import parse_config
from stationwatch.gateway.simulation import SimulatedStation

from support import EXAMPLES, wait_for
from support.alerts import RunningEngine

ACK_S = 2.0
pytestmark = pytest.mark.e2e


def scenario_config(gw_id: str, port: int):
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["gateways"][0]["id"] = gw_id
    for device in data["sensors"] + data["cameras"]:
        device["gateway"] = gw_id
    url = lambda path: [f"json://127.0.0.1:{port}/{path}"]  # noqa: E731
    data["contacts"] = [
        {"id": "staff", "name": "值班员", "role": "staff", "sites": ["sl-station"], "channels": url("staff")},
        {"id": "leader", "name": "带班领导", "role": "leader", "sites": ["sl-station"], "channels": url("leader")},
        {"id": "bureau", "name": "市民政局", "role": "bureau", "bureau": "sl-mz", "channels": url("bureau")},
        {"id": "province", "name": "省民政厅", "role": "bureau", "bureau": "gd-mz", "channels": url("province")}]
    level = lambda name, targets, at_once=False: {"name": name, "targets": targets, "ack_s": ACK_S,  # noqa: E731
                                                  "at_once": at_once}
    chain = [level("值班人员", ["staff"]), level("带班领导", ["leader"]), level("民政局", ["bureau"]),
             level("省厅", ["bureau_up"])]
    data["routing"] = {"notify": [], "backoff_s": [0.1], "policies": [
        {"id": "emergency", "rules": ["fire", "night_exit"], "severities": ["critical"],
         "levels": [chain[0], chain[1], {**chain[2], "at_once": True}, chain[3]]},
        {"id": "routine", "severities": ["warning"], "levels": chain[:2]},
        {"id": "default", "levels": chain}]}
    # the scenarios run for seconds: the durations shrink, and the season covers the whole year
    data["supervision"] = {"reconnect_grace_s": 2}  # the engine starts with the scene: wills count 2 s after
    data["rules"] = {"cold_for_s": 2, "supply_for_s": 2, "sleeping_room_min_c": 19.5, "resolve_hold_s": 1,
                     "heating_season_start": "01-01", "heating_season_end": "12-31"}
    return parse_config(data)


class Scene:
    """One scenario's world: engine thread, store, receiver, simulated gateway."""

    def __init__(self, tmp_path, broker_address, receiver, speed: float = 10.0):
        self.speed = speed  # the gateway's own pace, to which it returns when a scenario ends
        self.gw_id = f"gw-sc-{uuid.uuid4().hex[:6]}"
        self.cfg = scenario_config(self.gw_id, receiver.port)
        self.db, self.receiver, self.address = tmp_path / "alerts.db", receiver, broker_address
        self.store = Store(self.db)
        self.engine = RunningEngine(self.cfg, broker_address, self.db, f"alerts-{uuid.uuid4().hex[:8]}")
        self.gateway: SimulatedStation | None = None
        self.spool = tmp_path / "spool.db"

    def __enter__(self):
        self.engine.__enter__()
        self.gateway = SimulatedStation(self.cfg, self.cfg.gateways[0], self.address, speed=self.speed,
                                        spool_path=self.spool).start()
        wait_for(lambda: [g for g in self.store.gateways() if g["gateway"] == self.gw_id and g["state"] == "online"],
                 15, what="the engine to see the gateway's birth")
        return self

    def __exit__(self, *exc):
        self.gateway.stop()
        self.engine.__exit__(*exc)
        self.store.close()

    def alerts(self, rule=None, **kw):
        return [a for a in self.store.alerts(**kw) if rule is None or a.rule == rule]

    def path(self, alert_id):
        """(contact, level, kind) of every notice queued for the alert, in order."""
        return [tuple(r) for r in self.store.query("SELECT contact, level, kind FROM outbox WHERE alert_id=?"
                                                   " ORDER BY id", (alert_id,))]

    def got(self, path):
        return [r for r in self.receiver.received() if r["path"] == f"/{path}"]


@pytest.fixture
def scene(request, tmp_path, broker_address, receiver):
    with Scene(tmp_path, broker_address, receiver, getattr(request, "param", 10.0)) as s:
        yield s


def test_fire_pre_alarm_then_confirmed_and_unacknowledged_it_climbs_to_the_bureau(scene):
    started = time.monotonic()
    scene.gateway.play("fire", speed=4)  # the second detector 8 simulated seconds later: 2 s
    pre = wait_for(lambda: scene.alerts("fire"), 10, what="the pre-alarm")[0]
    fire = wait_for(lambda: [a for a in scene.alerts("fire") if a.severity == "critical"], 15,
                    what="the confirmed fire")[0]
    assert fire.id == pre.id and fire.subject == "sl-station/z-dorm-west" and len(fire.detail["detectors"]) == 2
    assert wait_for(lambda: scene.got("bureau"), 5, what="the bureau told at once")  # in parallel with the station
    wait_for(lambda: ("bureau", 2, "escalation") in scene.path(fire.id), 3 * ACK_S + 5,
             what="the bureau reached by escalation within the deadlines")
    assert time.monotonic() - started < 3 * ACK_S + 10
    path = scene.path(fire.id)
    assert path[0] == ("staff", 0, "new")  # the pre-alarm: the staff on duty
    assert {("staff", 0, "escalated"), ("bureau", 2, "new")} <= set(path)  # the fire: at once to the bureau
    climb = [(c, lv) for c, lv, kind in path if kind == "escalation"]
    assert climb[:2] == [("leader", 1), ("bureau", 2)]
    assert [b["level"] for b in scene.store.query("SELECT level FROM breaches WHERE alert_id=?", (fire.id,))][:2] == [0, 1]


def test_heating_failure_raises_boiler_supply_and_cold_rooms_and_an_acknowledged_one_stops(scene):
    scene.gateway.play("heating-failure", speed=300)
    boiler = wait_for(lambda: scene.alerts("boiler_fault"), 10, what="the boiler fault")[0]
    scene.store.acknowledge(boiler.id, "staff（值班员）", "已联系锅炉维修")
    supply = wait_for(lambda: [a for a in scene.alerts("supply_cold") if a.state != "pending"], 20,
                      what="supply water too cold while cold outside")[0]
    colds = wait_for(lambda: [a for a in scene.alerts("cold_room") if a.state == "firing"], 20,
                     what="sleeping rooms below the minimum")
    assert (boiler.severity, supply.severity) == ("major", "major")
    assert {a.severity for a in colds} == {"warning"}
    rooms = {r.id for r in scene.cfg.site("sl-station").rooms if r.people_sleep}
    assert {a.room for a in colds} <= rooms
    wait_for(lambda: ("leader", 1, "escalation") in scene.path(colds[0].id), 3 * ACK_S, what="the cold room climbing")
    assert scene.path(colds[0].id)[0] == ("staff", 0, "new")
    assert scene.store.query("SELECT * FROM breaches WHERE alert_id=?", (boiler.id,)) == []  # acknowledged in time
    assert [k for _, _, k in scene.path(boiler.id)] == ["new"]


def test_night_exit_is_a_possible_missing_resident_and_confirmed_reaches_the_bureau_at_once(scene):
    scene.gateway.play("night-exit", speed=30)
    exit_alert = wait_for(lambda: scene.alerts("night_exit"), 10, what="the night exit")[0]
    assert exit_alert.severity == "major" and exit_alert.detail["local_time"] == "02:00"
    assert "走失" in exit_alert.title_zh and scene.path(exit_alert.id)[0] == ("staff", 0, "new")
    scene.store.confirm(exit_alert.id, "staff（值班员）", "清点人数，少一人")  # a resident is missing
    wait_for(lambda: ("bureau", 2, "new") in scene.path(exit_alert.id), 5, what="the bureau told at once")
    assert scene.store.get(exit_alert.id).severity == "critical"


@pytest.mark.parametrize("scene", [120.0], indirect=True)  # heartbeats keep coming after the scenario
def test_camera_offline_is_major_in_the_observation_room_and_resolves_when_back(scene):
    scene.gateway.play("camera-offline", speed=120)
    cam = wait_for(lambda: scene.alerts("camera_offline"), 15, what="the camera offline")[0]
    assert (cam.severity, cam.room, cam.detail["device"]) == ("major", "med-obs", "cam-med-obs")
    assert scene.path(cam.id)[0] == ("staff", 0, "new")
    wait_for(lambda: scene.store.get(cam.id).state == "resolved", 20, what="the camera back")
    assert [k for _, _, k in scene.path(cam.id)][-1] == "resolved"


def test_gateway_power_loss_is_critical_from_the_will_and_clears_without_fault_noise(scene):
    scene.gateway.play("gateway-power-loss", speed=3)  # 10 s without power: longer than a will takes to confirm
    lost = wait_for(lambda: scene.alerts("gateway_offline"), 10, what="the will turned into an alert")[0]
    assert lost.severity == "critical" and lost.detail["reason"] == "will"
    assert lost.first_at > lost.detail["connected_ts"]  # dated by arrival, not by the will's own ts
    assert scene.path(lost.id)[0] == ("staff", 0, "new")
    wait_for(lambda: scene.store.get(lost.id).state == "resolved", 20, what="the gateway back online")
    assert scene.alerts("sensor_fault", include_resolved=True) == []
    assert scene.alerts("camera_offline", include_resolved=True) == []
