"""Who may do what, on which site: every role's allowed and forbidden actions, cross-site attempts,
bureau scopes (a province officer sees the cities below it), 401 for missing or bad tokens, and
settings that refuse demo tokens and anonymous reading outside local use."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml
from fastapi.testclient import TestClient

from stationwatch.alerts.api import create_app
from stationwatch.alerts.auth import new_token, token_hash
from stationwatch.alerts.engine import AlertEngine
from stationwatch.core.config import ConfigError, parse_config
from stationwatch.core.policy import DEMO_TOKENS

from support import EXAMPLES
from support.alerts import T0, Wire
from support.auth import TOKENS, USERS, call, two_city_config  # noqa: F401


@pytest.fixture
def world(tmp_path):
    """Alerts: a pre-alarm and a confirmed fire at sl-station, a pre-alarm at hy-station."""
    cfg = two_city_config()
    engine = AlertEngine(cfg, tmp_path / "alerts.db", clock=lambda: T0)
    engine.watching = False
    sl, hy = Wire(), Wire("hy-station", "gw-hy")
    [pre] = engine.handle(*sl.event("smk-med-obs", "alarm"))
    engine.handle(*sl.event("smk-dorm-f1a", "alarm"))
    [fire] = engine.handle(*sl.event("smk-dorm-f1b", "alarm"))
    [other] = engine.handle(*hy.event("smk-hy", "alarm"))
    with TestClient(create_app(cfg, tmp_path / "alerts.db")) as client:
        yield client, {"pre": pre.id, "fire": fire.id, "other": other.id}
    engine.close()


# action → (method, path template, body); {id} is the alert the action is tried on
ACTIONS = {
    "read": ("GET", "/api/alerts/{id}", None),
    "audit": ("GET", "/api/alerts/{id}/audit", None),
    "acknowledge": ("POST", "/api/alerts/{id}/acknowledge", {"note": "到场"}),
    "resolve": ("POST", "/api/alerts/{id}/resolve", {"note": "已处置"}),
    "dismiss": ("POST", "/api/alerts/{id}/dismiss", {"reason": "误报"}),
    "confirm": ("POST", "/api/alerts/{id}/confirm", {"note": "确有火情"}),
}
EVERYTHING = {"read", "audit", "acknowledge", "resolve", "dismiss", "close_critical", "confirm", "silence"}
ALLOWED = {
    "zhangsan": EVERYTHING - {"close_critical", "silence"},
    "lisi": EVERYTHING,
    "wangwu": EVERYTHING,
    "sheng": EVERYTHING,
    "jiandu": {"read", "audit"},
    "admin": EVERYTHING,
}
SL_ROLES = sorted(ALLOWED)


@pytest.mark.parametrize("user", SL_ROLES)
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_each_role_on_its_own_site(world, user, action):
    client, ids = world
    method, path, body = ACTIONS[action]
    response = call(client, user, method, path.format(id=ids["pre"]), body)
    expected = 200 if action in ALLOWED[user] else 403
    assert response.status_code == expected, response.text
    if expected == 403:
        assert "无权" in response.json()["detail"] and "may not" in response.json()["detail"]


SCOPE = {uid: {"sl-station"} if uid in ("zhangsan", "lisi", "wangwu", "jiandu") else {"hy-station"}
         if uid == "hystaff" else {"sl-station", "hy-station"} for uid in USERS}


@pytest.mark.parametrize("user", sorted(USERS))
@pytest.mark.parametrize("action", ["resolve", "dismiss"])
@pytest.mark.parametrize("where", ["sl-station", "hy-station"])
def test_closing_a_confirmed_fire_takes_a_leader_or_above_of_its_site(world, user, action, where):
    client, ids = world
    fire = ids["fire"] if where == "sl-station" else ids["other"]
    if where == "hy-station":  # checked on site: the pre-alarm there becomes a fire
        assert call(client, "admin", "POST", f"/api/alerts/{fire}/confirm", {"note": "确有火情"}).status_code == 200
    method, path, body = ACTIONS[action]
    response = call(client, user, method, path.format(id=fire), body)
    may = "close_critical" in ALLOWED.get(user, set()) and where in SCOPE[user]
    assert response.status_code == (200 if may else 403), response.text
    after = call(client, "admin", "GET", f"/api/alerts/{fire}").json()
    assert after["state"] == ("resolved" if action == "resolve" else "dismissed") if may else after["state"] == "firing"
    if not may:
        assert after["severity"] == "critical" and "无权" in response.json()["detail"]
        assert where in SCOPE[user] or where not in response.json()["detail"]  # another site is never named


def test_a_dismissal_waiting_on_the_engine_sees_the_rise_to_a_fire_and_is_refused(world, tmp_path):
    """The pre-alarm's second detector is being committed by the engine while staff dismiss it: the
    dismissal decides on what the engine committed, not on what it had read before."""
    client, ids = world
    pre = call(client, "zhangsan", "GET", f"/api/alerts/{ids['pre']}").json()
    assert pre["severity"] == "pre_alarm"
    engine = AlertEngine(two_city_config(), tmp_path / "alerts.db", clock=lambda: T0 + 5)
    engine.watching = False
    answer: list = []
    try:
        with engine.store.tx():  # the engine's batch: the rise is written, not yet committed
            engine.handle(*Wire().event("smk-med-obs-b", "alarm", ts=T0 + 5))
            dismissing = threading.Thread(target=lambda: answer.append(
                call(client, "zhangsan", "POST", f"/api/alerts/{ids['pre']}/dismiss", {"reason": "水汽误报"})))
            dismissing.start()
            dismissing.join(1.0)
            assert dismissing.is_alive(), "the dismissal must wait for the engine's transaction"
        dismissing.join(30)
    finally:
        engine.close()
    assert answer[0].status_code == 403 and "关闭严重告警" in answer[0].json()["detail"]
    after = call(client, "lisi", "GET", f"/api/alerts/{ids['pre']}").json()
    assert (after["state"], after["severity"]) == ("firing", "critical")


@pytest.mark.parametrize("user", SL_ROLES)
def test_maintenance_windows_take_a_leader_or_above(world, user):
    client, _ = world
    response = call(client, user, "POST", "/api/maintenance",
                    {"site": "sl-station", "room": "kitchen", "ends_at": T0 + 3600 * 24 * 3650, "reason": "检修"})
    assert response.status_code == (201 if "silence" in ALLOWED[user] else 403)
    if response.status_code == 201:
        window = response.json()
        assert window["created_by"].startswith(user)
        assert call(client, "zhangsan", "DELETE", f"/api/maintenance/{window['id']}").status_code == 403
        assert call(client, user, "DELETE", f"/api/maintenance/{window['id']}").status_code == 200


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_nobody_acts_on_a_site_that_is_not_theirs(world, action):
    client, ids = world
    method, path, body = ACTIONS[action]
    for user in ("zhangsan", "lisi", "wangwu", "jiandu"):  # all of sl-station / sl-mz
        response = call(client, user, method, path.format(id=ids["other"]), body)
        assert response.status_code == 403, (user, response.text)
        assert "hy-station" not in response.json()["detail"] and "not yours" in response.json()["detail"]
    response = call(client, "hystaff", method, path.format(id=ids["pre"]), body)
    assert response.status_code == 403


def test_lists_show_only_the_callers_sites(world):
    client, ids = world
    sites = lambda user, **p: {a["site"] for a in call(client, user, "GET", "/api/alerts?" +  # noqa: E731
                                                        "&".join(f"{k}={v}" for k, v in p.items())).json()}
    assert sites("zhangsan") == sites("wangwu") == sites("jiandu") == {"sl-station"}
    assert sites("hystaff") == {"hy-station"}
    assert sites("sheng") == sites("admin") == {"sl-station", "hy-station"}
    assert call(client, "zhangsan", "GET", "/api/alerts?site=hy-station").status_code == 403
    assert call(client, "sheng", "GET", "/api/stats").json()["pre_alarm"] == 2
    assert call(client, "hystaff", "GET", "/api/stats?site=sl-station").status_code == 403


def test_me_tells_the_role_sites_and_permissions(world):
    client, _ = world
    me = call(client, "sheng", "GET", "/api/me").json()
    assert (me["role"], me["sites"]) == ("bureau", ["hy-station", "sl-station"])
    assert "close_critical" in me["permissions"]
    assert call(client, "jiandu", "GET", "/api/me").json()["permissions"] == ["read"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer "}])
def test_missing_or_bad_tokens_are_401_in_chinese_and_english(world, headers):
    client, ids = world
    for method, path in (("GET", "/api/alerts"), ("GET", f"/api/alerts/{ids['pre']}"),
                         ("POST", f"/api/alerts/{ids['pre']}/acknowledge"), ("GET", "/api/me")):
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["detail"] == "未登录或令牌无效 / missing or invalid token"
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/health").status_code in (200, 503)  # the pipeline's health stays public


def test_the_audit_trail_signs_every_action_with_the_user(world):
    client, ids = world
    call(client, "zhangsan", "POST", f"/api/alerts/{ids['pre']}/acknowledge", {"note": "到场查看"})
    call(client, "lisi", "POST", f"/api/alerts/{ids['pre']}/dismiss", {"reason": "水汽误报"})
    trail = call(client, "jiandu", "GET", f"/api/alerts/{ids['pre']}/audit").json()
    assert [(t["action"], t["actor"], t["note"]) for t in trail if t["actor"] != "engine"] == [
        ("acknowledge", "zhangsan（zhangsan）", "到场查看"), ("dismiss", "lisi（lisi）", "dismissed: 水汽误报")]


def test_anonymous_reading_is_for_local_use_only(tmp_path):
    with TestClient(create_app(two_city_config("local"), tmp_path / "a.db")) as local:
        assert local.get("/api/alerts").status_code == 200
        assert local.post("/api/alerts/1/acknowledge", json={}).status_code in (403, 404)
    with TestClient(create_app(two_city_config("production"), tmp_path / "b.db")) as prod:
        assert prod.get("/api/alerts").status_code == 401
    with pytest.raises(ConfigError, match="api.anonymous_read"):
        two_city_config("production", anonymous_read=True)


def test_demo_tokens_are_refused_outside_local_use():
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["users"] = [{"id": "demo", "name": "演示", "role": "admin", "token_sha256": token_hash(DEMO_TOKENS[-1])}]
    parse_config({**data, "api": {"environment": "local"}})
    with pytest.raises(ConfigError, match=r"users\[0\].token_sha256.*stationwatch token"):
        parse_config({**data, "api": {"environment": "staging"}})


def test_a_new_token_is_random_and_only_its_hash_goes_in_the_config():
    (one, digest), (two, _) = new_token(), new_token()
    assert one != two and len(one) > 40 and digest == token_hash(one) and one not in digest


def _china_now() -> datetime:
    return datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)  # an expiry without a zone is China time


# each expiry is computed when its test runs (computed at import, a slow run made "+5 min" the past)
@pytest.mark.parametrize("expires, works", [
    (lambda: _china_now().date(), True), (lambda: _china_now().date() - timedelta(days=1), False),  # a date: through that day
    (lambda: _china_now() + timedelta(hours=1), True), (lambda: _china_now() - timedelta(minutes=5), False),
    (lambda: datetime.now(timezone.utc) + timedelta(minutes=5), True)],
    ids=["today", "yesterday", "in an hour", "five minutes ago", "in five minutes, UTC"])
def test_a_token_past_its_expiry_is_refused_and_says_so(tmp_path, expires, works):
    expires = expires()
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["users"] = [{"id": "linshi", "name": "临时值班员", "role": "staff", "sites": ["sl-station"],
                      "token_sha256": token_hash(TOKENS["zhangsan"]), "expires": expires}]
    data["api"] = {"environment": "production"}
    with TestClient(create_app(parse_config(data), tmp_path / "a.db")) as client:
        response = call(client, "zhangsan", "GET", "/api/me")
    assert response.status_code == (200 if works else 401)
    if not works:
        assert "令牌已过期" in response.json()["detail"] and "expired" in response.json()["detail"]


def test_health_tells_a_signed_in_user_only_their_sites(world):
    client, _ = world
    hy = call(client, "hystaff", "GET", "/health").json()
    assert hy["counts"]["pre_alarm"] == 1 and all(g["site"] == "hy-station" for g in hy["gateways"])
    assert call(client, "sheng", "GET", "/health").json()["counts"]["pre_alarm"] == 2
    assert call(client, None, "GET", "/health").json().keys() == {"status", "at"}  # production, no token
