"""The alert engine's memory: a new engine on the file an earlier one wrote goes on with its alerts,
their dedup, its timers and counts, and a store of the first engine's schema is upgraded without
losing a row. Driven like test_alert_rules.py: wire messages through AlertEngine.handle/tick over a
real SQLite store in tmp_path."""
from __future__ import annotations

from stationwatch.alerts.engine import AlertEngine

from support.alerts import HOLD, T0, active, settle


def test_alerts_and_dedup_survive_a_new_engine_on_the_same_file(city_config, tmp_path, wire):
    first = AlertEngine(city_config, tmp_path / "alerts.db", clock=lambda: T0)
    first.handle(*wire.event("boiler-fault", "alarm"))
    first.close()
    second = AlertEngine(city_config, tmp_path / "alerts.db", clock=lambda: T0 + 10)
    second.handle(*wire.event("boiler-fault", "alarm", ts=T0 + 5))
    [boiler] = second.store.alerts()
    assert boiler.count == 2
    second.handle(*wire.event("boiler-fault", "normal", ts=T0 + 9))  # the new engine can clear it too
    settle(second, T0 + 10 + HOLD)
    assert second.store.alerts() == []
    second.close()


def test_a_second_detector_after_an_engine_restart_still_confirms_the_fire(city_config, tmp_path, wire):
    first = AlertEngine(city_config, tmp_path / "alerts.db", clock=lambda: T0)
    [pre] = first.handle(*wire.event("smk-minors-a", "alarm"))
    first.close()
    second = AlertEngine(city_config, tmp_path / "alerts.db", clock=lambda: T0 + 20)
    [fire] = second.handle(*wire.event("smk-minors-b", "alarm", ts=T0 + 20))
    assert (fire.id, pre.severity, fire.severity) == (pre.id, "pre_alarm", "critical")
    second.close()


def test_timers_and_counts_survive_a_restart(city_config, tmp_path, wire):
    first = AlertEngine(city_config, tmp_path / "alerts.db", clock=lambda: T0)
    first.handle(*wire.reading("t-dorm-f1", 16.0))  # cold since T0
    first.handle(*wire.event("door-store", "open"))  # open since T0
    for i in range(2):
        first.handle(*wire.heartbeat("cam-med-obs", False, ts=T0 + 60 * i))
    first.close()  # as good as a kill: everything was committed with its message
    second = AlertEngine(city_config, tmp_path / "alerts.db", clock=lambda: T0 + 1800)
    second.handle(*wire.reading("t-dorm-f1", 16.0, ts=T0 + 1800))
    second.handle(*wire.heartbeat("cam-med-obs", False, ts=T0 + 120))
    second.tick(T0 + 1800)
    found = {a.rule: a.state for a in active(second) if a.detail.get("reason") != "stale"}
    assert found == {"cold_room": "firing", "camera_offline": "firing", "door_held_open": "firing"}
    second.close()


V1_SCHEMA = """
CREATE TABLE alerts (id INTEGER PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL, site TEXT NOT NULL,
    room TEXT, zone TEXT, severity TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'firing', title_zh TEXT NOT NULL,
    title_en TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}', count INTEGER NOT NULL DEFAULT 1,
    drill INTEGER NOT NULL DEFAULT 0, first_at REAL NOT NULL, last_at REAL NOT NULL, created_at REAL NOT NULL,
    acknowledged_at REAL, acknowledged_by TEXT, resolved_at REAL, resolved_by TEXT, resolution TEXT);
CREATE UNIQUE INDEX alerts_one_active ON alerts (rule, subject) WHERE state != 'resolved';
CREATE TABLE deliveries (id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id),
    contact TEXT NOT NULL, channel TEXT NOT NULL, severity TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, at REAL NOT NULL);
INSERT INTO alerts (rule, subject, site, severity, state, title_zh, title_en, first_at, last_at, created_at,
    resolved_at, resolved_by, resolution) VALUES
    ('fire', 'sl-station/kitchen', 'sl-station', 'pre_alarm', 'resolved', '火灾预警', 'Fire pre-alarm', 1, 1, 1, 2,
     '张三', 'dismissed'),
    ('boiler_fault', 'sl-station/boiler-fault', 'sl-station', 'major', 'firing', '锅炉故障', 'Boiler fault', 3, 3, 3,
     NULL, NULL, NULL);
"""


def test_a_store_written_by_the_first_engine_is_upgraded_without_losing_a_row(city_config, tmp_path, wire):
    import sqlite3
    with sqlite3.connect(tmp_path / "alerts.db") as db:
        db.executescript(V1_SCHEMA)
    engine = AlertEngine(city_config, tmp_path / "alerts.db", clock=lambda: T0)
    try:
        old = {a.rule: a for a in engine.store.alerts(include_resolved=True)}
        assert (old["fire"].state, old["boiler_fault"].state) == ("dismissed", "firing")
        engine.handle(*wire.event("boiler-fault", "alarm"))  # dedup still holds across the upgrade
        engine.handle(*wire.event("smk-kitchen", "alarm"))
        assert engine.store.get(old["boiler_fault"].id).count == 2
        assert len(engine.store.alerts(rule="fire")) == 1
    finally:
        engine.close()


def test_a_devices_last_heard_time_is_stored_again_only_once_it_lags_15_s(city_config, tmp_path, wire):
    """`seen` changes with every message; the store gets it when it lags by SEEN_LAG_S (a country's
    readings would otherwise be a store write each), while the engine's own timers use the exact time."""
    from stationwatch.alerts.memory import SEEN_LAG_S
    db = tmp_path / "a.db"
    engine = AlertEngine(city_config, db, clock=lambda: T0)
    stored = lambda: AlertEngine(city_config, db, clock=lambda: T0).situation.mem.get("seen", "t-hall")  # noqa: E731
    for i, at in enumerate([T0, T0 + 10.0, T0 + SEEN_LAG_S + 1]):
        engine.handle(*wire.reading("t-hall", 21.0, ts=at), now=at)
        assert engine.situation.mem.get("seen", "t-hall") == at  # the engine's own: exact
        assert stored() == (T0 if i < 2 else at)  # the store's: 10 s behind is close enough, 31 s is not


def test_last_heard_times_are_stored_one_entry_per_gateway_and_old_rows_are_rewritten(city_config, tmp_path, wire):
    """A country's 128,000 devices' last-heard times were a store row each; they are one entry per
    gateway now, and a store written the old way is rewritten at the engine's first commit."""
    db = tmp_path / "a.db"
    engine = AlertEngine(city_config, db, clock=lambda: T0)
    engine.store.save_memory({("seen", "t-hall"): T0 - 50.0, ("seen", "smk-kitchen"): T0 - 40.0})  # the old way
    engine.close()
    engine = AlertEngine(city_config, db, clock=lambda: T0)
    assert engine.situation.mem.get("seen", "t-hall") == T0 - 50.0  # read the old way
    engine.handle(*wire.reading("t-dorm-m1", 21.0, ts=T0), now=T0)
    rows = {(r["ns"], r["key"]) for r in engine.store.query("SELECT ns, key FROM memory WHERE ns LIKE 'seen%'")}
    assert rows == {("seen_of", "gw-sl-main")}
    again = AlertEngine(city_config, db, clock=lambda: T0)
    assert {d: again.situation.mem.get("seen", d) for d in ("t-hall", "smk-kitchen", "t-dorm-m1")} == {
        "t-hall": T0 - 50.0, "smk-kitchen": T0 - 40.0, "t-dorm-m1": T0}
    again.close()
    engine.close()


def test_memory_entries_come_back_as_they_were_written(store_path):
    """The memory's rows are encoded by msgspec where it writes what json would, by json elsewhere."""
    from stationwatch.alerts.store import Store
    store = Store(store_path)
    entries = {("last", "gw-a"): {"t-hall": [20.5, 1796170000.125, "ok", "°C"], "smk": [None, 1.0, "fault", ""]},
               ("seen_of", "gw-a"): {"t-hall": 1796170000.5}, ("odd", "nan"): [float("nan"), 1],
               ("odd", "inf"): {"x": float("inf")}, ("odd", "text"): "宿舍 \"quoted\" \\ line\nbreak",
               ("odd", "ints"): {"1": 2, "big": 2 ** 53}}
    store.save_memory(entries)
    back = Store(store_path).load_memory()
    assert back["last"]["gw-a"] == entries[("last", "gw-a")] and back["seen_of"]["gw-a"] == {"t-hall": 1796170000.5}
    assert back["odd"]["nan"][0] != back["odd"]["nan"][0] and back["odd"]["nan"][1] == 1, "NaN stays NaN, not null"
    assert back["odd"]["inf"] == {"x": float("inf")}
    assert back["odd"]["text"] == entries[("odd", "text")] and back["odd"]["ints"] == {"1": 2, "big": 2 ** 53}
