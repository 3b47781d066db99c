"""Hostile and unlucky input to the API, over a real SQLite store filled by the engine: numbers out of
range, bad Unicode, non-finite and absurd times, oversized bodies and lists. Each is refused with
the status the OpenAPI documents — 422 naming the field, Chinese first, the input never echoed —
and none answers 500. Anonymous /health outside local use tells only whether the pipeline is alive."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from stationwatch.alerts.api import create_app
from stationwatch.alerts.api_limits import MAX_BODY, MAX_DEVICES
from stationwatch.alerts.auth import token_hash
from stationwatch.alerts.engine import AlertEngine

from support.alerts import T0, Wire, config_with

LEADER, STAFF = "input-leader-token-0001", "input-staff-token-0001"
USERS = [{"id": "lisi", "name": "带班领导 李四", "role": "leader", "sites": ["sl-station"], "token_sha256": token_hash(LEADER)},
         {"id": "zhangsan", "name": "值班员 张三", "role": "staff", "sites": ["sl-station"], "token_sha256": token_hash(STAFF)}]
AS_LEADER = {"Authorization": f"Bearer {LEADER}"}
JSON = {**AS_LEADER, "Content-Type": "application/json"}


@pytest.fixture
def client(tmp_path):
    cfg = config_with(users=USERS, api={"environment": "production"})
    engine = AlertEngine(cfg, tmp_path / "alerts.db", clock=lambda: T0)
    engine.watching = False
    engine.handle(*Wire().event("smk-med-obs", "alarm"))
    with TestClient(create_app(cfg, tmp_path / "alerts.db"), raise_server_exceptions=False) as c:
        yield c
    engine.close()


def refused(response, *loc):
    """A 422 naming the field ``loc``, Chinese first, without the input in it."""
    assert response.status_code == 422, response.text
    [error] = [e for e in response.json()["detail"] if e["loc"] == list(loc)] or response.json()["detail"]
    assert error["loc"] == list(loc) and not error["msg"].split(" / ")[0].isascii(), error
    assert set(error) == {"loc", "msg", "type"}
    return error


@pytest.mark.parametrize("alert_id", [2**63, 2**64 + 7, -(2**63) - 1, 0, 10**40])
def test_alert_ids_out_of_range_are_refused_naming_the_id(client, alert_id):
    for method, path in (("GET", "/api/alerts/{}"), ("GET", "/api/alerts/{}/audit"),
                         ("POST", "/api/alerts/{}/acknowledge")):
        refused(client.request(method, path.format(alert_id), json={}, headers=AS_LEADER), "path", "alert_id")
    assert client.get(f"/api/alerts/{2**63 - 1}", headers=AS_LEADER).status_code == 404  # the largest id: just absent


@pytest.mark.parametrize("raw", ['{"note": "\\ud800"}', '{"note": "火警\\udfff已处置"}', '{"note": "\\udc00\\ud800"}'])
def test_a_note_with_a_lone_surrogate_is_refused_and_nothing_is_recorded(client, raw):
    refused(client.post("/api/alerts/1/acknowledge", content=raw, headers=JSON), "body", "note")
    trail = client.get("/api/alerts/1/audit", headers=AS_LEADER).json()
    assert [t["action"] for t in trail if t["actor"] != "engine"] == []
    refused(client.post("/api/alerts/1/dismiss", content=raw.replace("note", "reason"), headers=JSON), "body", "reason")


@pytest.mark.parametrize("field, value", [("ends_at", "NaN"), ("ends_at", "Infinity"), ("ends_at", "-Infinity"),
                                          ("starts_at", "NaN"), ("ends_at", "1e400"),
                                          ("ends_at", str(time.time() * 1000))])  # milliseconds: a window of 50,000 years
def test_non_finite_or_absurd_window_times_are_refused_naming_the_field(client, field, value):
    body = {"site": '"sl-station"', "room": '"kitchen"', "ends_at": str(T0 + 3600), "reason": '"检修"'} | {field: value}
    raw = "{" + ", ".join(f'"{k}": {v}' for k, v in body.items()) + "}"
    refused(client.post("/api/maintenance", content=raw, headers=JSON), "body", field)
    assert client.get("/api/maintenance", headers=AS_LEADER).json() == []


def test_a_window_ending_before_it_starts_names_ends_at(client):
    error = refused(client.post("/api/maintenance", json={"site": "sl-station", "starts_at": T0, "ends_at": T0 - 1,
                                                          "reason": "检修"}, headers=AS_LEADER), "body", "ends_at")
    assert "结束时间须晚于开始时间" in error["msg"]


def test_a_long_devices_list_is_refused_at_once_naming_the_field(client):
    many = [f"dev-{i}" for i in range(MAX_DEVICES + 1)]
    refused(client.post("/api/maintenance", json={"site": "sl-station", "devices": many, "ends_at": T0 + 60,
                                                  "reason": "检修"}, headers=AS_LEADER), "body", "devices")
    unknown = refused(client.post("/api/maintenance", json={"site": "sl-station", "devices": many[:MAX_DEVICES],
                                                            "ends_at": T0 + 60, "reason": "检修"}, headers=AS_LEADER),
                      "body", "devices")
    assert "dev-0" in unknown["msg"] and "dev-500" not in unknown["msg"]  # named, but not all five hundred


def test_bodies_over_the_limit_are_refused_with_413_with_or_without_a_length(client):
    big = '{"note": "' + "火" * MAX_BODY + '"}'
    sized = client.post("/api/alerts/1/acknowledge", content=big.encode(), headers=JSON)
    assert sized.status_code == 413 and f"{MAX_BODY}" in sized.json()["detail"]

    def chunks():  # no Content-Length: the body streams in pieces
        for _ in range(8):
            yield b" " * (MAX_BODY // 4)
    streamed = client.post("/api/alerts/1/acknowledge", content=chunks(), headers=JSON)
    assert streamed.status_code == 413
    assert client.get("/api/alerts/1", headers=AS_LEADER).json()["state"] == "firing"


@pytest.mark.parametrize("raw", ["[" * 50_000, '{"note": ', "null", '"note"', "\xff\xfe"])
def test_bodies_that_are_not_a_json_object_are_refused_with_422(client, raw):
    response = client.post("/api/alerts/1/acknowledge", content=raw.encode("latin-1"), headers=JSON)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][0] == "body" and error["msg"].startswith("body: ")


def test_anonymous_health_outside_local_use_tells_only_whether_the_pipeline_is_alive(client):
    anonymous = client.get("/health")
    assert anonymous.status_code == 503 and anonymous.json().keys() == {"status", "at"}
    assert anonymous.json()["status"] == "degraded" and "sl-station" not in anonymous.text
    assert client.get("/health", headers={"Authorization": "Bearer not-a-token"}).json().keys() == {"status", "at"}
    signed_in = client.get("/health", headers=AS_LEADER).json()
    assert signed_in["counts"]["pre_alarm"] == 1 and "engine" in signed_in
