"""The alert history fed to InfluxDB (alerts/history.py) on the suite's InfluxDB: transitions of one
millisecond stay apart, an outage of InfluxDB delays the annotations without losing one, and the
figures never carry a channel's token."""
from __future__ import annotations

import uuid

import pytest
from influxdb import InfluxDBClient

from stationwatch.alerts.history import AlertFeed, InfluxSink
from stationwatch.alerts.store import Raised, Store
from stationwatch.broker.stack import free_port

NOW = 1_790_000_000.0


def _raise(store: Store, room: str) -> None:
    store.raise_alert(Raised("cold_room", f"sl-station/{room}", "warning", "sl-station", room, None,
                             "室温过低", "room too cold", {}, NOW), now=NOW)


@pytest.fixture
def database(influxdb):
    name = f"hist_{uuid.uuid4().hex[:8]}"
    client = InfluxDBClient(port=influxdb.port, database=name)
    client.create_database(name)
    for policy in ("raw", "records"):  # kept forever here: the test writes at a fixed past time
        client.create_retention_policy(policy, "INF", "1", database=name, default=policy == "raw")
    yield name, client
    client.drop_database(name)
    client.close()


def test_two_alerts_of_one_millisecond_are_two_annotations_and_a_refeed_adds_none(city_config, influxdb, database, tmp_path):
    name, client = database
    store = Store(tmp_path / "alerts.db", clock=lambda: NOW)
    _raise(store, "dorm-m1")
    _raise(store, "dorm-m2")  # the same tick: the same `now`
    feed = AlertFeed(city_config, tmp_path / "alerts.db", InfluxSink(influxdb.url, name))
    assert feed.follow() == 2
    rows = list(client.query('SELECT * FROM "records"."alert"').get_points())
    assert sorted(r["room"] for r in rows) == ["dorm-m1", "dorm-m2"]
    assert all(r["title"].startswith("告警：室温过低 / raised: room too cold") for r in rows)
    assert feed.follow() == 0, "the cursor moved: nothing is written twice"


def test_an_influxdb_outage_delays_the_history_and_loses_none(city_config, influxdb, database, tmp_path):
    name, client = database
    store = Store(tmp_path / "alerts.db", clock=lambda: NOW)
    _raise(store, "dorm-m1")
    down = AlertFeed(city_config, tmp_path / "alerts.db", InfluxSink(f"http://127.0.0.1:{free_port()}", name, timeout=2))
    with pytest.raises(Exception):
        down.follow()
    assert down.cursor == 0
    alert = store.alerts()[0]
    store.acknowledge(alert.id, "值班员 张三", "已处理")
    back = AlertFeed(city_config, tmp_path / "alerts.db", InfluxSink(influxdb.url, name))
    back.follow()
    actions = [r["action"] for r in client.query('SELECT * FROM "records"."alert"').get_points()]
    assert actions == ["raise", "acknowledge"]


def test_figures_name_a_channel_by_its_scheme_never_its_token(city_config, influxdb, database, tmp_path):
    name, client = database
    store = Store(tmp_path / "alerts.db", clock=lambda: NOW)
    _raise(store, "dorm-m1")
    alert = store.alerts()[0]
    secret = "wecombot://S3CRETKEY"
    store.query("INSERT INTO deliveries (alert_id, contact, channel, severity, state, at) VALUES (?,?,?,?,?,?)",
                (alert.id, "duty-staff", secret, "warning", "failed", NOW))
    AlertFeed(city_config, tmp_path / "alerts.db", InfluxSink(influxdb.url, name), stats=lambda: {"batches": 3}).write_figures(NOW)
    notes = list(client.query('SELECT * FROM "notification"').get_points())
    assert [(n["channel"], n["failed_total"]) for n in notes] == [("wecombot", 1.0)]
    assert "S3CRETKEY" not in str(list(client.query('SELECT * FROM /.*/').get_points()))
    opened = list(client.query('SELECT * FROM "alert_open"').get_points())
    assert [(o["site"], o["warning"], o["critical"]) for o in opened] == [("sl-station", 1.0, 0.0)]
