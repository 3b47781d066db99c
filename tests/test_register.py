"""The hazard register (问题清单) through the API and the command line, over a real SQLite store: the role ×
action matrix with cross-site attempts (every refusal a 403 that says why), the lifecycle with its
sign-off trail, a trail the database will not let anyone alter, bad input named by field, and an
overdue entry climbing the reporting chain as a breach (engine on an injected clock)."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from stationwatch.alerts.api import create_app
from stationwatch.alerts.database import ERRORS, connect
from stationwatch.alerts.engine import AlertEngine
from stationwatch.alerts.register.store import Register
from stationwatch.alerts.store import Store
from stationwatch.cli.main import app as cli

from support.auth import call, two_city_config

SOON = (date.today() + timedelta(days=10)).isoformat()
ENTRY = {"site": "sl-station", "room": "kitchen", "category": "fire", "description": "厨房灭火器过期 / extinguisher expired",
         "deadline": SOON, "path": "更换灭火器 / replace it", "standard": "灭火器在有效期内 / within its date",
         "responsible": "后勤 陈七"}


@pytest.fixture
def world(store_path):
    cfg = two_city_config()
    with TestClient(create_app(cfg, store_path)) as client:
        yield client, cfg, store_path


def create(client, user="wangwu", **changes):
    return call(client, user, "POST", "/api/hazards", {**ENTRY, **changes})


def at_status(client, status):
    """A fresh sl-station entry brought to ``status`` by the roles whose job each step is."""
    hazard = create(client).json()
    steps = {"rectifying": ("zhangsan", "PATCH", "", {"status": "rectifying", "note": "已订购"}),
             "submitted": ("zhangsan", "POST", "/submit", {"note": "已更换"}),
             "verified": ("wangwu", "POST", "/verify", {"passed": True, "note": "现场核实"}),
             "closed": ("wangwu", "POST", "/close", {"note": "销号"})}
    for name, (user, method, suffix, body) in steps.items():
        if hazard["status"] == status:
            break
        hazard = call(client, user, method, f"/api/hazards/{hazard['id']}{suffix}", body).json()
    assert hazard["status"] == status
    return hazard


# action → (status the entry must be in, method, path suffix, body)
ACTIONS = {
    "read": ("open", "GET", "", None),
    "trail": ("open", "GET", "/trail", None),
    "update": ("open", "PATCH", "", {"status": "rectifying", "note": "开始整改"}),
    "terms": ("open", "PATCH", "", {"deadline": (date.today() + timedelta(days=20)).isoformat()}),
    "submit": ("rectifying", "POST", "/submit", {"note": "已更换"}),
    "verify": ("submitted", "POST", "/verify", {"passed": True, "note": "合格"}),
    "close": ("verified", "POST", "/close", {"note": "销号"}),
    "sign": ("open", "POST", "/sign", {"note": "已阅"}),
}
STATION = {"read", "trail", "update", "submit", "sign"}
ALLOWED = {"zhangsan": STATION, "lisi": STATION, "wangwu": set(ACTIONS) - {"submit"}, "sheng": set(ACTIONS) - {"submit"},
           "jiandu": {"read", "trail"}, "admin": set(ACTIONS), "hystaff": set()}  # hystaff: another city's station


@pytest.mark.parametrize("user", sorted(ALLOWED))
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_role_by_action_on_a_sl_station_entry(world, user, action):
    client, _, _ = world
    status, method, suffix, body = ACTIONS[action]
    hazard = at_status(client, status)
    response = call(client, user, method, f"/api/hazards/{hazard['id']}{suffix}", body)
    if action in ALLOWED[user]:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403, response.text
        detail = response.json()["detail"]
        if user == "hystaff":
            assert "不在您的范围内" in detail and "not in your scope" in detail
        else:
            assert "无权" in detail and "may not" in detail and "roles that may" in detail


@pytest.mark.parametrize("user,expected", [("wangwu", 201), ("sheng", 201), ("admin", 201), ("zhangsan", 403),
                                           ("lisi", 403), ("jiandu", 403), ("hystaff", 403)])
def test_only_the_bureau_lists_a_problem(world, user, expected):
    client, _, _ = world
    response = create(client, user)
    assert response.status_code == expected, response.text
    if expected == 403:
        assert "add a hazard" in response.json()["detail"]


def test_the_station_may_not_move_the_deadline_it_is_held_to(world):
    client, _, _ = world
    hazard = create(client).json()
    later = (date.today() + timedelta(days=60)).isoformat()
    response = call(client, "zhangsan", "PATCH", f"/api/hazards/{hazard['id']}", {"deadline": later})
    assert response.status_code == 403
    assert response.json()["detail"].startswith("deadline: ") and "change the deadline" in response.json()["detail"]
    assert call(client, "zhangsan", "GET", f"/api/hazards/{hazard['id']}").json()["deadline_at"] == hazard["deadline_at"]


def test_lists_hold_only_the_callers_sites(world):
    client, _, _ = world
    create(client)
    assert create(client, "sheng", site="hy-station", room="dorm").status_code == 201
    sites = lambda user: {h["site"] for h in call(client, user, "GET", "/api/hazards").json()}  # noqa: E731
    assert sites("jiandu") == {"sl-station"} and sites("hystaff") == {"hy-station"}
    assert sites("sheng") == {"sl-station", "hy-station"}
    refused = call(client, "hystaff", "GET", "/api/hazards?site=sl-station")
    assert refused.status_code == 403 and "sl-station" in refused.json()["detail"]


def test_a_rectification_from_listing_to_closing_is_signed_at_every_step(world):
    client, _, _ = world
    hazard = at_status(client, "submitted")
    rejected = call(client, "wangwu", "POST", f"/api/hazards/{hazard['id']}/verify",
                    {"passed": False, "note": "压力表仍指向红区 / gauge still in the red"}).json()
    assert rejected["status"] == "rectifying"
    call(client, "lisi", "POST", f"/api/hazards/{hazard['id']}/submit", {"note": "再次更换 / replaced again"})
    call(client, "wangwu", "POST", f"/api/hazards/{hazard['id']}/verify", {"note": "合格"})
    closed = call(client, "wangwu", "POST", f"/api/hazards/{hazard['id']}/close", {"note": "销号"}).json()
    assert closed["status"] == "closed" and closed["status_zh"] == "已销号" and closed["closed_at"]
    trail = call(client, "jiandu", "GET", f"/api/hazards/{hazard['id']}/trail").json()
    assert [(t["action"], t["role"], t["status"]) for t in trail] == [
        ("create", "bureau", "open"), ("rectify", "staff", "rectifying"), ("submit", "staff", "submitted"),
        ("reject", "bureau", "rectifying"), ("submit", "leader", "submitted"), ("verify", "bureau", "verified"),
        ("close", "bureau", "closed")]
    assert trail[3]["note"].startswith("压力表") and trail[4]["actor"].startswith("lisi")
    again = call(client, "zhangsan", "POST", f"/api/hazards/{hazard['id']}/submit", {"note": "x"})
    assert again.status_code == 409 and "已销号" in again.json()["detail"]


def test_the_sign_off_trail_cannot_be_altered(world):
    client, _, db_path = world
    hazard = at_status(client, "submitted")
    db = connect(db_path)  # the database itself refuses, whoever asks (SQLite or PostgreSQL)
    with pytest.raises(ERRORS, match="append-only"):
        db.execute("UPDATE hazard_trail SET actor='someone else' WHERE hazard_id=?", (hazard["id"],))
    with pytest.raises(ERRORS, match="append-only"):
        db.execute("DELETE FROM hazard_trail WHERE hazard_id=?", (hazard["id"],))
    db.close()
    trail = call(client, "admin", "GET", f"/api/hazards/{hazard['id']}/trail").json()
    assert [t["actor"].split("（")[0] for t in trail] == ["wangwu", "zhangsan", "zhangsan"]


@pytest.mark.parametrize("changes,field", [
    ({"deadline": "2020-01-01"}, "deadline"), ({"room": "no-such-room"}, "room"), ({"site": "nowhere"}, "site"),
    ({"category": "unicorns"}, "category"), ({"description": ""}, "description"), ({"deadline": "soon"}, "deadline")])
def test_bad_input_is_refused_naming_the_field(world, changes, field):
    client, _, _ = world
    response = create(client, **changes)
    assert response.status_code == 422, response.text
    assert field in [part for e in response.json()["detail"] for part in e["loc"]]


def test_an_overdue_entry_goes_up_the_reporting_chain_as_a_breach(world):
    client, cfg, db_path = world
    register = Register(Store(db_path))
    day = date.today() + timedelta(days=1)
    hazard = create(client, deadline=day.isoformat()).json()
    end_of_day = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo("Asia/Shanghai")).timestamp()
    assert hazard["deadline_at"] == end_of_day, "a date is the end of that day at the site, not its midnight start"
    late = hazard["deadline_at"] + 60
    engine = AlertEngine(cfg, db_path, clock=lambda: late)
    try:
        [alert] = engine.review(late)
        assert alert.rule == "hazard_overdue" and alert.state == "firing" and f"#{hazard['id']}" in alert.title_zh
        [breach] = engine.store.breaches(alert.id)
        assert (breach["reason"], breach["due_at"]) == ("rectification", hazard["deadline_at"])
        told = {r["contact"] for r in engine.store.query("SELECT contact FROM outbox WHERE alert_id=?", (alert.id,))}
        assert told == {"duty-staff"}  # level 0 of the chain: the staff on duty
        shown = call(client, "jiandu", "GET", f"/api/hazards/{hazard['id']}").json()
        assert shown["overdue_at"] == late  # recorded on the engine's clock; `overdue` is judged by the wall clock
        assert [t["action"] for t in register.trail(hazard["id"])][-1] == "overdue"
        call(client, "zhangsan", "POST", f"/api/hazards/{hazard['id']}/submit", {"note": "已更换"})
        engine.hazards.next_scan = 0
        engine.review(late + 120)
        engine.tick(late + 120 + cfg.rules.resolve_hold_s + 1)
        assert engine.store.get(alert.id).state == "resolved"
    finally:
        engine.close()


def test_the_command_line_acts_as_a_user_and_says_why_it_refuses(world, tmp_path):
    _, cfg, db_path = world
    if "://" in str(db_path):
        pytest.skip("`stationwatch hazard` takes a SQLite --db only")
    config = tmp_path / "cfg.yaml"
    import yaml
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True), encoding="utf-8")
    base = ["hazard", "create", "-c", str(config), "--db", str(db_path), "--site", "sl-station", "--category", "heating",
            "--description", "男宿舍一暖气片不热", "--deadline", SOON, "--path", "排气、检修阀门", "--standard", "室温≥18 °C",
            "--responsible", "后勤 陈七"]
    refused = CliRunner().invoke(cli, base + ["--user", "jiandu"])
    assert refused.exit_code == 3 and "may not add a hazard" in refused.output
    made = CliRunner().invoke(cli, base + ["--user", "wangwu"])
    assert made.exit_code == 0, made.output
    listed = CliRunner().invoke(cli, ["hazard", "list", "-c", str(config), "--db", str(db_path), "--user", "jiandu"])
    assert "男宿舍一暖气片不热" in listed.output and "待整改" in listed.output
    bad = CliRunner().invoke(cli, base[:-2] + ["--user", "wangwu", "--deadline", "tomorrow", "--responsible", "x"])
    assert bad.exit_code == 2 and "deadline" in bad.output


def test_hazard_settings_in_the_config_are_checked_naming_the_field():
    from stationwatch.core.config import ConfigError
    from support.alerts import config_with
    with pytest.raises(ConfigError) as err:
        config_with(hazards={"drills_per_month": -1, "evidence": {"unicorn": {
            "category": "magic", "deadline_days": 3, "path": "p", "standard": "s"}}}, reports={"formats": ["docx"]})
    paths = {p.path for p in err.value.problems}
    assert "hazards.drills_per_month" in paths
    with pytest.raises(ConfigError) as err:
        config_with(hazards={"evidence": {"unicorn": {"category": "magic", "deadline_days": 3, "path": "p",
                                                      "standard": "s"}}}, reports={"formats": ["docx"]})
    assert {p.path for p in err.value.problems} == {"hazards.evidence.unicorn", "hazards.evidence.unicorn.category",
                                                    "reports.formats[0]"}


# ---- entries the system raises from its own evidence (engine on an injected clock, wire messages)
from support.alerts import SHANGHAI, Wire, config_with  # noqa: E402


def local(y, mo, d, h, mi=0):
    return datetime(y, mo, d, h, mi, tzinfo=SHANGHAI).timestamp()


@pytest.fixture
def engine(store_path):
    e = AlertEngine(config_with(), store_path, clock=lambda: local(2025, 1, 1, 0))
    e.watching = False  # the example's other devices are silent here
    e.review(local(2025, 1, 1, 0, 1))  # the register starts watching
    yield e
    e.close()


def play(engine, messages):
    for t, message in sorted(messages, key=lambda m: m[0]):
        engine.tick(t)
        engine.handle(*message, now=t)


def listed(engine, at):
    engine.hazards.next_scan = 0
    engine.review(at)
    return {h.evidence["rule"]: h for h in engine.register.list()}


def test_a_sensor_faulty_for_more_than_a_day_and_a_gateway_lost_for_hours_are_listed(engine):
    wire, t0 = Wire(), local(2025, 1, 5, 8)
    play(engine, [(t0, wire.reading("t-dorm-m2", None, ts=t0, quality="fault")),
                  (t0 + 60, wire.status("offline", reason="will", ts=t0 - 86400))])
    assert listed(engine, t0 + 3600) == {}  # a fault of an hour is not yet a repair job; the gateway just went
    found = listed(engine, t0 + 2 * 3600)
    assert set(found) == {"gateway"} and found["gateway"].category == "maintenance"
    found = listed(engine, t0 + 86400 + 600)
    assert set(found) == {"gateway", "sensor_fault"}
    fault = found["sensor_fault"]
    assert (fault.source, fault.category, fault.room, fault.status) == ("system", "maintenance", "dorm-m2", "open")
    assert fault.deadline_at == pytest.approx(fault.created_at + 7 * 86400)  # hazards.evidence.sensor_fault
    assert fault.responsible == "带班领导 李四" and [t["action"] for t in engine.register.trail(fault.id)] == ["create"]
    assert len(listed(engine, t0 + 2 * 86400)) == 2  # listed once, however often the engine looks


def test_a_sleeping_room_cold_on_three_nights_of_the_heating_season_is_listed(engine):
    wire, messages = Wire(), []
    for day in (10, 11, 12):  # 23:00–01:30 at 15 °C, then 20 °C again
        for k in range(0, 160, 5):
            t = local(2025, 1, day, 23) + 60 * k
            messages.append((t, wire.reading("t-dorm-m2", 15.0 if k < 150 else 20.0, ts=t)))
    play(engine, messages)
    engine.tick(local(2025, 1, 13, 3))
    found = listed(engine, local(2025, 1, 13, 9))
    cold = found["cold_nights"]
    assert (cold.category, cold.room) == ("heating", "dorm-m2") and "3 个夜间" in cold.description
    assert cold.evidence["nights"] == ["2025-01-10", "2025-01-11", "2025-01-12"]
    assert found["recurring"].category == "heating"  # and the cold-room alert kept coming back to that room


def test_false_alarms_recurring_in_one_room_are_listed_as_a_fire_safety_problem(engine):
    wire, t0 = Wire(), local(2025, 1, 6, 10)
    for i in range(3):
        t = t0 + i * 86400
        play(engine, [(t, wire.event("smk-kitchen", "alarm", ts=t)), (t + 120, wire.event("smk-kitchen", "normal", ts=t + 120))])
        alert = next(a for a in engine.store.alerts(rule="fire"))
        engine.store.dismiss(alert.id, "zhangsan", "油烟 / cooking fumes")
    found = listed(engine, t0 + 2 * 86400 + 600)
    assert set(found) == {"recurring"}
    entry = found["recurring"]
    assert (entry.category, entry.room, entry.evidence["count"]) == ("fire", "kitchen", 3)
