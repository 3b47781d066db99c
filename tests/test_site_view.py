"""The site view of the duty board's API (``GET /api/sites/{site}``): each room with what its devices
said last, stale and faulty ones marked, and the gateways with their config version against the
centre's — from the memory the real engine keeps in the real SQLite store; and what the alert list
tells the board of a measured alert's value now and of a missed deadline."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from stationwatch.alerts.api import create_app
from stationwatch.alerts.engine import AlertEngine
from stationwatch.core.contract import MessageClass, Status, encode, topic

from support.alerts import GW, SITE, T0, Clock, Wire, config_with
from support.board import INSPECTOR, STAFF, USERS


@pytest.fixture
def world(tmp_path):
    now = time.time()
    cfg = config_with(users=USERS, api={"environment": "production"})
    clock, wire = Clock(now - 500), Wire()
    engine = AlertEngine(cfg, tmp_path / "alerts.db", clock=clock)
    engine.watching = False
    engine.handle(topic(SITE, GW, MessageClass.STATUS),
                  encode(Status(v=1, ts=clock.t, state="online", config_version="cfg-old")))
    engine.handle(*wire.reading("t-dorm-m1", 18.0, ts=clock.t))  # heard 500 s ago: stale
    clock.at(now)
    engine.handle(*wire.reading("t-dorm-f1", 19.5, ts=now))
    engine.handle(*wire.reading("t-hall", None, ts=now, quality="fault"))
    engine.handle(*wire.event("door-store", "open", ts=now))
    app = create_app(cfg, tmp_path / "alerts.db")
    app.state.config_version = "cfg-new"
    with TestClient(app) as client:
        yield client
    engine.close()


def view(client, token=STAFF, site=SITE):
    return client.get(f"/api/sites/{site}", headers={"Authorization": f"Bearer {token}"})


def test_each_room_shows_its_devices_last_values_with_stale_and_faulty_ones_marked(world):
    body = view(world).json()
    devices = {d["id"]: d for room in body["rooms"] for d in room["devices"]}
    rooms = {r["id"]: r for r in body["rooms"]}
    assert body["name"] == "示例市救助管理站" and "dorm-f1" in rooms and "t-dorm-f1" in {d["id"] for d in rooms["dorm-f1"]["devices"]}
    assert (devices["t-dorm-f1"]["value"], devices["t-dorm-f1"]["unit"]) == (19.5, "°C")
    assert not devices["t-dorm-f1"]["stale"] and not devices["t-dorm-f1"]["fault"]
    assert devices["t-dorm-m1"]["value"] == 18.0 and devices["t-dorm-m1"]["stale"], "500 s without data (limit 100 s)"
    assert devices["t-hall"]["fault"] and devices["t-hall"]["quality"] == "fault" and devices["t-hall"]["alerts"]
    assert rooms["hall"]["alerts"] == 1
    assert devices["door-store"]["state"] == "open"


def test_a_gateway_shows_its_state_and_a_config_version_other_than_the_centres(world):
    [gw] = view(world).json()["gateways"]
    assert (gw["id"], gw["state"]) == (GW, "online")
    assert (gw["config_version"], gw["central_version"], gw["config_ok"]) == ("cfg-old", "cfg-new", False)


def test_the_site_view_is_for_the_callers_sites_only(world):
    assert view(world, INSPECTOR).status_code == 200  # an inspector reads
    assert view(world, site="hy-station").status_code == 403  # not theirs (nor does it say whether it exists)
    assert view(world, token="nobody").status_code == 401
    assert view(world, site="Bad Site!").status_code == 422


def test_a_cold_room_alert_carries_the_rooms_temperature_now_not_when_it_began(tmp_path):
    now = T0 + 60  # a winter afternoon: the heating season
    cfg = config_with(users=USERS, api={"environment": "production"})
    clock, wire = Clock(now - 60), Wire()
    engine = AlertEngine(cfg, tmp_path / "alerts.db", clock=clock)
    engine.watching = False
    try:
        [cold] = engine.handle(*wire.reading("t-dorm-f1", 12.0, ts=clock.t))
        clock.at(now)
        engine.handle(*wire.reading("t-dorm-f1", 10.5, ts=now))
        with TestClient(create_app(cfg, tmp_path / "alerts.db")) as client:
            shown = client.get("/api/alerts", headers={"Authorization": f"Bearer {STAFF}"}).json()
            detail = client.get(f"/api/alerts/{cold.id}", headers={"Authorization": f"Bearer {STAFF}"}).json()
    finally:
        engine.close()
    [alert] = [a for a in shown if a["id"] == cold.id]
    assert alert["rule"] == "cold_room" and "12.0 °C" in alert["title_zh"]  # the title: when it began
    assert alert["current"] == {"value": 10.5, "unit": "°C", "at": now}
    assert detail["current"]["value"] == 10.5


def test_a_missed_deadline_is_reported_as_overdue_never_as_a_negative_countdown(tmp_path):
    hour_ago = time.time() - 3600
    cfg = config_with(users=USERS, api={"environment": "production"})
    engine = AlertEngine(cfg, tmp_path / "alerts.db", clock=Clock(hour_ago))
    engine.watching = False
    try:
        [alarm] = engine.handle(*Wire().event("smk-kitchen", "alarm", ts=hour_ago))
        with TestClient(create_app(cfg, tmp_path / "alerts.db")) as client:
            [shown] = client.get("/api/alerts", headers={"Authorization": f"Bearer {STAFF}"}).json()
    finally:
        engine.close()
    esc = shown["escalation"]
    assert shown["id"] == alarm.id and esc["due_at"] < time.time() - 2000  # its first level's deadline, long gone
    assert esc["due_in_s"] == 0 and esc["overdue_s"] > 2000 and not esc["stopped"]
