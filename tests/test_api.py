"""The HTTP API over a real SQLite alert store, filled by the engine from wire messages: listing and
filtering, one alert with its trail, the lifecycle actions, health, stats. Who may do what is in
test_auth.py; here the caller is the station's duty officer, or the anonymous wall board."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from stationwatch.alerts.api import create_app
from stationwatch.alerts.auth import token_hash
from stationwatch.alerts.engine import AlertEngine

from support.alerts import HOLD, T0, Wire, config_with

STAFF = "test-staff-token-0001"
USERS = [{"id": "zhangsan", "name": "值班员 张三", "role": "staff", "sites": ["sl-station"],
          "token_sha256": token_hash(STAFF)}]
AS_STAFF = {"Authorization": f"Bearer {STAFF}"}


@pytest.fixture
def cfg():
    return config_with(users=USERS)


@pytest.fixture
def filled(cfg, store_path):
    """A store with a confirmed fire, a boiler fault, and a camera alert that has resolved (SQLite, then
    PostgreSQL: the API reads the store the engines write)."""
    db, wire = store_path, Wire()
    engine = AlertEngine(cfg, db, clock=lambda: T0)
    engine.watching = False
    engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=T0 + 3))
    engine.handle(*wire.event("boiler-fault", "alarm", ts=T0 + 10))
    for i in range(3):
        engine.handle(*wire.heartbeat("cam-hall", False, ts=T0 + 60 * i))
    engine.handle(*wire.heartbeat("cam-hall", True, ts=T0 + 200), now=T0)
    engine.tick(T0 + HOLD)
    yield engine, db
    engine.close()


@pytest.fixture
def client(cfg, filled):
    with TestClient(create_app(cfg, filled[1])) as c:
        yield c


def by_rule(client, rule, **params):
    return next(a for a in client.get("/api/alerts", params=params).json() if a["rule"] == rule)


def test_active_alerts_newest_first_with_chinese_and_english_titles(client):
    alerts = client.get("/api/alerts").json()  # the local wall board reads without a token
    assert [a["rule"] for a in alerts] == ["boiler_fault", "fire"]
    fire = alerts[1]
    assert fire["severity"] == "critical" and fire["severity_zh"] == "严重" and fire["state_zh"] == "告警中"
    assert fire["title_zh"].startswith("火警确认") and fire["title_en"].startswith("Fire confirmed")
    assert (fire["site_name"], fire["room_name"], fire["rule_zh"]) == ("示例市救助管理站", "女宿舍一", "火警")
    assert fire["first_at_local"] == "2025-01-15T14:00:00+08:00"
    assert fire["escalation"]["policy"] == "emergency" and fire["escalation"]["level"] == 0
    assert fire["escalation"]["level_name"].startswith("值班人员")


def test_filters_and_all_include_closed_alerts(client):
    assert [a["rule"] for a in client.get("/api/alerts", params={"severity": "major"}).json()] == ["boiler_fault"]
    assert client.get("/api/alerts", params={"site": "sl-station", "state": "firing"}).json()[0]["id"]
    assert [a["rule"] for a in client.get("/api/alerts", params={"rule": "fire"}).json()] == ["fire"]
    assert client.get("/api/alerts", params={"drill": "true"}).json() == []
    everything = client.get("/api/alerts", params={"all": "true"}).json()
    assert {a["rule"] for a in everything} == {"fire", "boiler_fault", "camera_offline"}
    [resolved] = client.get("/api/alerts", params={"state": "resolved"}).json()
    assert resolved["rule"] == "camera_offline" and resolved["resolution"] == "auto"
    assert client.get("/api/alerts", params={"since": T0 + 5, "all": "true"}).json()[0]["rule"] == "camera_offline"


@pytest.mark.parametrize("params, field, says", [
    ({"severity": "urgent"}, "severity", "critical"),
    ({"state": "open"}, "state", "firing"),
    ({"rule": "flood"}, "rule", "fire"),
    ({"site": "No Site!"}, "site", "should match pattern"),
    ({"since": "nan"}, "since", "finite number"),
    ({"until": "1e400"}, "until", "finite number"),
    ({"limit": "0"}, "limit", "greater than or equal to 1"),
])
def test_bad_query_values_are_refused_with_the_field_and_the_allowed_values(client, params, field, says):
    response = client.get("/api/alerts", params=params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", field] and says in error["msg"]
    zh, _, en = error["msg"].partition(" / ")  # the field, then Chinese, then English
    assert zh.startswith(f"{field}: ") and not zh.isascii() and en


def test_an_unknown_site_is_answered_like_another_sites_and_no_answer_lists_the_sites(client):
    for path in ("/api/alerts", "/api/stats"):
        response = client.get(path, params={"site": "nowhere"})
        assert response.status_code == 403 and "nowhere" in response.json()["detail"]
        assert "sl-station" not in response.text and "does not exist or is not yours" in response.text


def test_one_alert_with_its_audit_trail_escalation_and_deliveries(client):
    fire = by_rule(client, "fire")
    detail = client.get(f"/api/alerts/{fire['id']}").json()
    assert [t["action"] for t in detail["audit"] if t["action"] != "notify"] == ["raise", "escalate"]
    assert detail["deliveries"] == [] and detail["detail"]["detectors"] == ["smk-dorm-f1a", "smk-dorm-f1b"]
    assert detail["escalation"]["notified"] == [0, 2]  # the station, and the bureau at once
    assert client.get(f"/api/alerts/{fire['id']}/audit").json() == detail["audit"]
    missing = client.get("/api/alerts/9999")
    assert missing.status_code == 404 and "9999" in missing.json()["detail"]
    assert client.get("/api/alerts/abc").status_code == 422


def test_acknowledge_records_who_and_why_and_stops_the_climb(client, filled):
    fire = by_rule(client, "fire")
    acked = client.post(f"/api/alerts/{fire['id']}/acknowledge", json={"note": "已到场"}, headers=AS_STAFF)
    assert acked.status_code == 200
    body = acked.json()
    assert (body["state"], body["acknowledged_by"], body["escalation"]) == ("acknowledged", "zhangsan（值班员 张三）", None)
    trail = client.get(f"/api/alerts/{fire['id']}/audit").json()
    assert (trail[-1]["action"], trail[-1]["actor"], trail[-1]["note"]) == ("acknowledge", "zhangsan（值班员 张三）", "已到场")
    again = client.post(f"/api/alerts/{fire['id']}/acknowledge", json={}, headers=AS_STAFF)
    assert again.status_code == 409
    assert "已确认" in again.json()["detail"] and "cannot acknowledge" in again.json()["detail"]
    told = filled[0].store.query("SELECT contact, kind FROM outbox WHERE kind='acknowledged'")
    assert {r["contact"] for r in told} == {"duty-staff", "bureau-officer"}  # those told hear who took it


def test_dismiss_needs_a_reason_and_resolve_closes_with_a_note(client):
    boiler = by_rule(client, "boiler_fault")
    for body in ({}, {"reason": "  "}):
        no_reason = client.post(f"/api/alerts/{boiler['id']}/dismiss", json=body, headers=AS_STAFF)
        assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["loc"] == ["body", "reason"]
    done = client.post(f"/api/alerts/{boiler['id']}/resolve", json={"note": "已更换控制板"}, headers=AS_STAFF).json()
    assert (done["state"], done["resolved_by"]) == ("resolved", "zhangsan（值班员 张三）")
    assert client.post(f"/api/alerts/{boiler['id']}/dismiss", json={"reason": "误触"}, headers=AS_STAFF).status_code == 409
    fire = by_rule(client, "fire")  # confirmed: closed by a leader or above (test_auth.py)
    assert client.post(f"/api/alerts/{fire['id']}/resolve", json={"note": "明火已扑灭"}, headers=AS_STAFF).status_code == 403
    assert [a["rule"] for a in client.get("/api/alerts").json()] == ["fire"]


def test_stats_count_drills_apart(client, filled):
    engine, _ = filled
    engine.handle(*Wire().event("smk-store", "alarm", drill=True))
    stats = client.get("/api/stats").json()
    assert (stats["critical"], stats["major"], stats["active"], stats["drills"]) == (1, 1, 2, 1)


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
    assert ok["outbox"]["queued"] > 0  # nobody is dispatching in this test
    engine.store.beat(at=time.time() - 60)  # an engine that stopped a minute ago
    late = client.get("/health").json()
    assert late["status"] == "degraded" and "60 s" in late["problems"][0]


def test_board_page_and_openapi_docs_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "值班看板" in page.text and "api/alerts" in page.text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/api/alerts", "/api/alerts/{alert_id}", "/api/alerts/{alert_id}/acknowledge",
            "/api/alerts/{alert_id}/audit", "/api/me", "/api/maintenance", "/api/stats"} <= set(paths)


def test_an_empty_store_answers_an_empty_list(cfg, tmp_path):
    with TestClient(create_app(cfg, tmp_path / "fresh.db")) as c:
        assert c.get("/api/alerts").json() == []
        assert c.get("/health").json()["counts"]["active"] == 0
