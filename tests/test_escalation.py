"""Escalation along the reporting chain, in-process on an injected clock with deadlines compressed
by config: who is told at each level, breaches, reminders, acknowledgement, rosters, maintenance
windows, drills, undeliverable levels — all read back from the durable outbox and breach tables."""
from __future__ import annotations

from datetime import datetime

import pytest

from stationwatch.alerts.channels import Outcome
from stationwatch.alerts.dispatch import Notifier
from stationwatch.alerts.engine import AlertEngine

from support import wait_for
from support.alerts import SHANGHAI, T0, Wire, config_with, settle

CONTACTS = [
    {"id": "duty-staff", "name": "值班员 张三", "role": "staff", "sites": ["sl-station"], "channels": ["json://127.0.0.1:9/duty"]},
    {"id": "duty-night", "name": "夜班值班员 赵六", "role": "staff", "sites": ["sl-station"], "channels": ["json://127.0.0.1:9/night"]},
    {"id": "leader-on-shift", "name": "带班领导 李四", "role": "leader", "sites": ["sl-station"], "channels": ["json://127.0.0.1:9/lead"]},
    {"id": "bureau-officer", "name": "市民政局 王五", "role": "bureau", "bureau": "sl-mz", "channels": ["json://127.0.0.1:9/bureau"]},
    {"id": "province-officer", "name": "省民政厅 值班室", "role": "bureau", "bureau": "gd-mz", "channels": ["json://127.0.0.1:9/prov"]},
    {"id": "city-gov", "name": "市政府总值班室", "role": "admin", "channels": ["json://127.0.0.1:9/gov"]},
]


def level(name, ack_s, targets=(), contacts=(), remind_s=None, at_once=False):
    return {"name": name, "targets": list(targets), "contacts": list(contacts), "ack_s": ack_s,
            "remind_s": remind_s, "at_once": at_once}


POLICIES = [
    {"id": "emergency", "rules": ["fire", "night_exit"], "severities": ["critical"], "levels": [
        level("值班人员", 10, ["staff"], remind_s=4), level("带班领导", 10, ["leader"]),
        level("民政局", 10, ["bureau"], at_once=True), level("市政府与省厅", 10, ["bureau_up"], ["city-gov"])]},
    {"id": "default", "levels": [
        level("值班人员", 20, ["staff"]), level("带班领导", 20, ["leader"]), level("民政局", 20, ["bureau"])]},
]


def chain_config(**extra):
    routing = {"notify": [], "policies": POLICIES, **extra.pop("routing", {})}
    return config_with(contacts=CONTACTS, routing=routing, **extra)


@pytest.fixture
def make(store_path, clock):
    engines = []

    def _make(cfg=None, **kwargs):
        engine = AlertEngine(cfg or chain_config(), store_path, clock=clock, **kwargs)
        engine.watching = False  # the example's other devices are silent in these tests
        engines.append(engine)
        return engine
    yield _make
    for engine in engines:
        engine.close()


def told(engine, alert_id=None):
    """(contact, level, kind) of every queued notice, in order."""
    sql, args = "SELECT contact, level, kind FROM outbox", ()
    if alert_id is not None:
        sql, args = sql + " WHERE alert_id=?", (alert_id,)
    return [tuple(r) for r in engine.store.query(sql + " ORDER BY id", args)]


def breaches(engine, alert_id):
    return [(r["level"], r["reason"], r["due_at"]) for r in
            engine.store.query("SELECT * FROM breaches WHERE alert_id=? ORDER BY id", (alert_id,))]


def confirmed_fire(engine, wire, drill=False):
    engine.handle(*wire.event("smk-dorm-f1a", "alarm", drill=drill))
    [fire] = engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=T0 + 1, drill=drill))
    return fire


def test_a_pre_alarm_tells_the_staff_and_a_confirmed_fire_reaches_the_bureau_at_once(make):
    engine, wire = make(), Wire()
    [pre] = engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    assert told(engine) == [("duty-staff", 0, "new"), ("duty-night", 0, "new")]
    engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=T0 + 1))
    assert told(engine)[2:] == [("duty-staff", 0, "escalated"), ("duty-night", 0, "escalated"),
                                ("bureau-officer", 2, "new")]  # critical: the bureau in parallel with the station
    assert engine.store.get(pre.id, with_trail=True).escalation["policy"] == "emergency"


def test_an_unacknowledged_fire_climbs_level_by_level_each_deadline_a_breach(make, clock):
    engine, wire = make(), Wire()
    fire = confirmed_fire(engine, wire)
    start = clock.t
    settle(engine, clock.at(start + 9.9))
    assert breaches(engine, fire.id) == []
    settle(engine, clock.at(start + 10))
    assert told(engine, fire.id)[-1] == ("leader-on-shift", 1, "escalation")
    settle(engine, clock.at(start + 20))
    assert told(engine, fire.id)[-1] == ("bureau-officer", 2, "escalation")
    settle(engine, clock.at(start + 30))
    assert told(engine, fire.id)[-2:] == [("province-officer", 3, "escalation"), ("city-gov", 3, "escalation")]
    settle(engine, clock.at(start + 40))  # the top missed too: recorded, nothing higher to go to
    assert breaches(engine, fire.id) == [(0, "deadline", start + 10), (1, "deadline", start + 20),
                                         (2, "deadline", start + 30), (3, "deadline", start + 40)]
    esc = engine.store.get(fire.id, with_trail=True).escalation
    assert (esc["level"], esc["due_at"]) == (3, None)


def test_an_acknowledged_alert_stops_climbing(make, clock):
    engine, wire = make(), Wire()
    fire = confirmed_fire(engine, wire)
    settle(engine, clock.at(T0 + 12))  # leader told
    engine.store.acknowledge(fire.id, "leader-on-shift（带班领导 李四）", "已到场，组织疏散")
    before = told(engine, fire.id)
    for t in range(15, 120, 5):
        settle(engine, clock.at(T0 + t))
    assert told(engine, fire.id) == before
    assert [b[0] for b in breaches(engine, fire.id)] == [0]


def test_the_level_reached_is_reminded_while_unacknowledged(make, clock):
    engine, wire = make(), Wire()
    fire = confirmed_fire(engine, wire)
    for t in (3, 4, 5, 8):
        settle(engine, clock.at(T0 + t))
    reminders = [n for n in told(engine, fire.id) if n[2] == "reminder"]
    assert reminders == [("duty-staff", 0, "reminder"), ("duty-night", 0, "reminder")] * 2  # at +4 and +8


def test_after_a_long_outage_every_missed_deadline_is_handled_in_order(make, tmp_path, clock):
    engine, wire = make(), Wire()
    fire = confirmed_fire(engine, wire)
    start = clock.t
    engine.close()
    clock.at(start + 35)  # the engine was away for three deadlines
    again = make()
    settle(again, clock.t)
    assert breaches(again, fire.id) == [(0, "deadline", start + 10), (1, "deadline", start + 20),
                                        (2, "deadline", start + 30)]
    levels = [n[1] for n in told(again, fire.id) if n[2] == "escalation"]
    assert levels == [1, 2, 3, 3]  # leader, bureau, then city government and province: none skipped
    assert again.store.get(fire.id, with_trail=True).escalation["due_at"] == start + 40  # still on schedule


def test_a_major_alert_follows_the_default_chain_not_the_emergency_one(make, clock):
    engine, wire = make(), Wire()
    [boiler] = engine.handle(*wire.event("boiler-fault", "alarm"))
    settle(engine, clock.at(T0 + 20))
    settle(engine, clock.at(T0 + 40))
    assert told(engine, boiler.id) == [("duty-staff", 0, "new"), ("duty-night", 0, "new"),
                                       ("leader-on-shift", 1, "escalation"), ("bureau-officer", 2, "escalation")]


def test_the_duty_roster_decides_which_staff_are_paged(make, clock):
    roster = [{"id": "sl-duty", "sites": ["sl-station"], "shifts": [
        {"start": "08:00", "end": "20:00", "contacts": ["duty-staff", "leader-on-shift"]},
        {"start": "20:00", "end": "08:00", "contacts": ["duty-night", "leader-on-shift"]}]}]
    engine, wire = make(chain_config(rosters=roster)), Wire()
    engine.handle(*wire.event("boiler-fault", "alarm"))  # 14:00
    night = datetime(2025, 1, 16, 2, 0, tzinfo=SHANGHAI).timestamp()
    engine.handle(*wire.event("smk-store", "alarm", ts=night), now=clock.at(night))
    assert [n[0] for n in told(engine) if n[2] == "new"] == ["duty-staff", "duty-night"]


def test_a_maintenance_window_silences_then_the_chain_starts_when_it_ends(make, clock):
    window = [{"site": "sl-station", "room": "boiler", "start": datetime(2025, 1, 15, 13, 0),
               "end": datetime(2025, 1, 15, 14, 30), "reason": "锅炉年检 / boiler inspection"}]
    engine, wire = make(chain_config(maintenance=window)), Wire()
    [boiler] = engine.handle(*wire.event("boiler-fault", "alarm"))
    [smoke] = engine.handle(*wire.event("smk-kitchen", "alarm"))  # another room: not silenced
    assert engine.store.get(boiler.id).silenced_by == "cfg-0"
    assert told(engine, boiler.id) == [] and told(engine, smoke.id)
    settle(engine, clock.at(T0 + 1799))
    assert told(engine, boiler.id) == []
    settle(engine, clock.at(T0 + 1800))  # 14:30: the window is over and the fault is still there
    assert told(engine, boiler.id)[:1] == [("duty-staff", 0, "new")]
    assert engine.store.get(boiler.id).silenced_by is None


def test_a_detector_under_repair_is_silenced_but_never_hides_another_ones_alarm(make, clock):
    engine, wire = make(), Wire()
    engine.silences.create("sl-station", None, ["smk-dorm-f1a"], T0 - 60, T0 + 3600, "更换探测器", "admin")
    [alone] = engine.handle(*wire.event("smk-dorm-f1a", "alarm"))
    assert engine.store.get(alone.id).silenced_by == "api-1" and told(engine, alone.id) == []
    [both] = engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=T0 + 1))
    settle(engine, clock.at(T0 + 2))  # the alert now names a detector not under repair
    assert engine.store.get(both.id).silenced_by is None
    assert ("bureau-officer", 2, "new") in told(engine, both.id)


def test_a_drill_runs_the_whole_chain_marked_and_counted_apart(make, clock):
    engine, wire = make(), Wire()
    fire = confirmed_fire(engine, wire, drill=True)
    settle(engine, clock.at(T0 + 40))
    assert fire.drill and "演练" in fire.title_zh
    assert {n[1] for n in told(engine, fire.id)} == {0, 1, 2, 3}
    drills = engine.store.query("SELECT COUNT(*) n FROM breaches WHERE drill=1")[0]["n"]
    counts = engine.store.counts()
    assert (drills, counts["active"], counts["drills"], counts["drills_total"]) == (4, 0, 1, 1)


def test_a_person_confirming_a_pre_alarm_sends_it_up_as_a_fire(make, clock):
    engine, wire = make(), Wire()
    [pre] = engine.handle(*wire.event("smk-med-obs", "alarm"))
    engine.store.confirm(pre.id, "duty-staff（值班员 张三）", "现场确有明火")
    settle(engine, clock.at(T0 + 1))
    fire = engine.store.get(pre.id, with_trail=True)
    assert fire.severity == "critical" and fire.escalation["policy"] == "emergency"
    assert ("bureau-officer", 2, "new") in told(engine, pre.id)


def test_a_cold_room_stepping_down_moves_to_the_gentler_chain(make, clock):
    policies = [{"id": "frost", "severities": ["critical"], "levels": [level("值班人员", 50, ["staff"]),
                                                                       level("民政局", 50, ["bureau"])]},
                {"id": "routine", "levels": [level("值班人员", 50, ["staff"])]}]
    engine, wire = make(chain_config(routing={"policies": policies})), Wire()
    for ts in (T0, T0 + 300):
        engine.handle(*wire.reading("t-dorm-m1", 3.0, ts=ts))
    [cold] = [a for a in engine.store.alerts() if a.rule == "cold_room"]
    assert engine.store.get(cold.id, with_trail=True).escalation["policy"] == "frost"
    engine.handle(*wire.reading("t-dorm-m1", 8.0, ts=T0 + 1800))  # above 5 °C, below 18 °C for 30 min
    settle(engine, clock.at(T0 + 10))
    esc = engine.store.get(cold.id, with_trail=True).escalation
    assert (esc["policy"], esc["severity"]) == ("routine", "warning")


def test_a_level_with_nobody_to_tell_is_passed_at_once(make):
    contacts = [c for c in CONTACTS if c["role"] != "staff"]  # no staff for the site at all
    engine, wire = make(config_with(contacts=contacts, routing={"notify": [], "policies": POLICIES})), Wire()
    [boiler] = engine.handle(*wire.event("boiler-fault", "alarm"))
    assert told(engine, boiler.id) == [("leader-on-shift", 1, "undeliverable")]
    assert breaches(engine, boiler.id)[0][:2] == (0, "undeliverable")


class Refusing:
    """A channel that refuses everything (a 4xx: no point retrying)."""

    def send(self, url, notice):
        return Outcome(False, False, "error=403 forbidden")


def test_a_level_nobody_could_be_reached_at_is_escalated_as_a_breach(make):
    engine, wire = make(notifier=Notifier(chain_config(), channel=Refusing(), backoff_s=(0.01,))), Wire()
    [boiler] = engine.handle(*wire.event("boiler-fault", "alarm"))
    wait_for(lambda: ("leader-on-shift", 1, "undeliverable") in told(engine, boiler.id), 10,
             what="the leader told after the staff could not be reached")
    assert breaches(engine, boiler.id)[0][:2] == (0, "undeliverable")
    failed = [d for d in engine.store.deliveries(boiler.id) if d["level"] == 0]
    assert {(d["contact"], d["state"]) for d in failed} == {("duty-staff", "failed"), ("duty-night", "failed")}


def test_bad_policy_config_names_every_field_at_fault():
    from stationwatch.core.config import ConfigError
    bad = [{"id": "x", "rules": ["flood"], "levels": [level("值班人员", 60, contacts=["nobody"])]},
           {"id": "y", "levels": [{"name": "空", "ack_s": 60}]}]
    roster = [{"id": "r", "sites": ["sl-station"], "shifts": [{"start": "25:00", "end": "08:00", "contacts": ["ghost"]}]}]
    window = [{"site": "sl-station", "room": "attic", "start": datetime(2025, 1, 2), "end": datetime(2025, 1, 1),
               "reason": "检修"}]
    with pytest.raises(ConfigError) as err:
        config_with(contacts=CONTACTS, routing={"policies": bad}, rosters=roster, maintenance=window)
    paths = {p.path for p in err.value.problems}
    assert {"routing.policies[1].levels[0]", "rosters[0].shifts[0].start"} <= paths  # type errors come first
    with pytest.raises(ConfigError) as err:
        config_with(contacts=CONTACTS, routing={"policies": bad[:1]}, maintenance=window,
                    rosters=[{**roster[0], "shifts": [{**roster[0]["shifts"][0], "start": "20:00"}]}])
    assert {p.path for p in err.value.problems} == {
        "routing.policies[0].rules[0]", "routing.policies[0].levels[0].contacts[0]",
        "rosters[0].shifts[0].contacts[0]", "maintenance[0].room", "maintenance[0].end"}
