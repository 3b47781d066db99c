"""The HTTP API over a real SQLite alert store, filled by the engine from wire messages."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from stationwatch.alerts.api import create_app
from stationwatch.alerts.engine import AlertEngine
from test_alert_rules import T0, Wire


@pytest.fixture
def filled(city_config, tmp_path):
    """A store with a confirmed fire, a boiler fault, and a resolved camera alert."""
    db, wire = tmp_path / "alerts.db", Wire()
    engine = AlertEngine(city_config, db, clock=lambda: T0)
    engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=T0 + 3))
    engine.handle(*wire.event("boiler-fault", "alarm", ts=T0 + 10))
    for i in range(3):
        engine.handle(*wire.heartbeat("cam-hall", False, ts=T0 + 60 * i))
    engine.handle(*wire.heartbeat("cam-hall", True, ts=T0 + 200))
    yield engine, db
    engine.close()


@pytest.fixture
def client(city_config, filled):
    with TestClient(create_app(city_config, filled[1])) as c:
        yield c


def test_active_alerts_newest_first_with_chinese_and_english_titles(client):
    alerts = client.get("/api/alerts").json()
    assert [a["rule"] for a in alerts] == ["boiler_fault", "fire"]
    fire = alerts[1]
    assert fire["severity"] == "critical" and fire["severity_zh"] == "严重"
    assert fire["title_zh"].startswith("火警确认") and fire["title_en"].startswith("Fire confirmed")
    assert (fire["site_name"], fire["room_name"]) == ("示例市救助管理站", "女宿舍一")
    assert fire["first_at_local"] == "2025-01-15T14:00:00+08:00"


def test_filters_and_all_include_resolved(client):
    assert [a["rule"] for a in client.get("/api/alerts", params={"severity": "major"}).json()] == ["boiler_fault"]
    assert client.get("/api/alerts", params={"site": "sl-station", "state": "firing"}).json()[0]["id"]
    everything = client.get("/api/alerts", params={"all": "true"}).json()
    assert {a["rule"] for a in everything} == {"fire", "boiler_fault", "camera_offline"}
    [resolved] = client.get("/api/alerts", params={"state": "resolved"}).json()
    assert resolved["rule"] == "camera_offline" and resolved["resolution"] == "auto"


@pytest.mark.parametrize("params, field, says", [
    ({"severity": "urgent"}, "severity", "critical"),
    ({"state": "open"}, "state", "firing"),
    ({"site": "nowhere"}, "site", "unknown site 'nowhere'"),
    ({"limit": "0"}, "limit", "greater than or equal to 1"),
])
def test_bad_query_values_are_refused_with_the_field_and_the_allowed_values(client, params, field, says):
    response = client.get("/api/alerts", params=params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", field] and says in error["msg"]


def test_one_alert_with_its_audit_trail(client):
    fire = next(a for a in client.get("/api/alerts").json() if a["rule"] == "fire")
    detail = client.get(f"/api/alerts/{fire['id']}").json()
    assert [t["action"] for t in detail["audit"]] == ["raise", "escalate"]
    assert detail["deliveries"] == [] and detail["detail"]["detectors"] == ["smk-dorm-f1a", "smk-dorm-f1b"]
    missing = client.get("/api/alerts/9999")
    assert missing.status_code == 404 and "9999" in missing.json()["detail"]
    assert client.get("/api/alerts/abc").status_code == 422


def test_health_is_degraded_without_an_engine_heartbeat_and_ok_with_a_fresh_one(client, filled):
    engine, _ = filled
    dead = client.get("/health")
    assert dead.status_code == 503
    assert dead.json()["status"] == "degraded" and dead.json()["engine"]["alive"] is False
    assert any("alert engine not running" in p for p in dead.json()["problems"])
    engine.beat(connected=True)
    ok = client.get("/health").json()
    assert ok["status"] == "ok" and ok["store"] is True and ok["engine"]["last_seen_s"] < 5
    assert ok["counts"]["active"] == 2 and ok["counts"]["critical"] == 1
    engine.store.beat(at=time.time() - 60)  # an engine that stopped a minute ago
    late = client.get("/health").json()
    assert late["status"] == "degraded" and "60 s" in late["problems"][0]


def test_board_page_and_openapi_docs_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "值班看板" in page.text and "api/alerts" in page.text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/api/alerts", "/api/alerts/{alert_id}"} <= set(paths)


def test_an_empty_store_answers_an_empty_list(city_config, tmp_path):
    with TestClient(create_app(city_config, tmp_path / "fresh.db")) as c:
        assert c.get("/api/alerts").json() == []
        assert c.get("/health").json()["counts"]["active"] == 0
