"""Every panel of the generated dashboards, proved on real data: the production gateway agent on the
simulated station plays its scenarios through Mosquitto into ingest and the alert engine (which feeds
its history to InfluxDB), then every variable, panel target and annotation query of every dashboard
is run against the suite's InfluxDB with Grafana's macros expanded as Grafana expands them
(dashboards/runner.py). A query that answers nothing fails, naming the dashboard and the panel.
No Grafana runs here (it cannot be installed on these machines): the queries are what is proved."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import yaml
from influxdb import InfluxDBClient

from stationwatch.alerts.runner import run_engine
from stationwatch.alerts.history import InfluxSink
from stationwatch.alerts.store import Store
from stationwatch.broker.ingest import IngestOptions, run_ingest
from stationwatch.core.config import parse_config
from stationwatch.core.mqtt import MqttLink
from stationwatch.dashboards.boards import boards
from stationwatch.dashboards.runner import Runner, TimeRange, influx_query, panels
from stationwatch.gateway.simulation import SimulatedStation

from support import EXAMPLES, wait_for

pytestmark = pytest.mark.e2e

# sensors the city example lacks, so every heating panel has something to show
HEATING = [
    {"id": "return-main", "name": "供暖回水温度", "kind": "return_temperature", "room": "boiler"},
    {"id": "press-main", "name": "供暖系统水压", "kind": "pressure", "room": "boiler", "low_bar": 1.0},
    {"id": "pump-main", "name": "循环泵", "kind": "pump_running", "room": "boiler"},
]


def played_config(gw_id: str, receiver_port: int):
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["gateways"][0]["id"] = gw_id
    data["sensors"] += [dict(s, gateway=gw_id) for s in HEATING]
    for device in data["sensors"] + data["cameras"]:
        device["gateway"] = gw_id
    for camera in data["cameras"]:  # a heartbeat every 10 s: camera charts group by 10 s, not by the minute
        camera["heartbeat_s"] = 10
    for contact in data["contacts"]:
        contact["channels"] = [f"json://127.0.0.1:{receiver_port}/{contact['id']}"]
    data["rules"] = {"cold_for_s": 2, "supply_for_s": 2, "resolve_hold_s": 1,
                     "heating_season_start": "01-01", "heating_season_end": "12-31"}
    return parse_config(data)


class Played:
    """The whole pipeline on one simulated station, the scenarios played, the data in InfluxDB."""

    def __init__(self, tmp, address, influx_url: str, receiver):
        self.gw = f"gw-db-{uuid.uuid4().hex[:6]}"
        self.cfg = played_config(self.gw, receiver.port)
        self.database = f"dash_{uuid.uuid4().hex[:8]}"
        self.client = InfluxDBClient(port=int(influx_url.rsplit(":", 1)[1]), database=self.database)
        self.address, self.influx_url, self.tmp = address, influx_url, tmp
        self.stop = threading.Event()
        self.db = tmp / "alerts.db"
        self.threads = [
            threading.Thread(target=run_ingest, daemon=True, args=(
                self.cfg, address, influx_url, self.database, tmp / "q.db", self.stop),
                kwargs={"options": IngestOptions(metrics_every_s=1, instance=self.database)}),
            threading.Thread(target=run_engine, daemon=True, args=(self.cfg, address, self.db, self.stop), kwargs={
                "client_id": f"alerts-{self.database}", "tick_s": 0.1, "beat_s": 0.5,
                "history": InfluxSink(influx_url, self.database)})]
        self.station: SimulatedStation | None = None

    def rows(self, sql: str) -> list[dict]:
        return list(self.client.query(sql, epoch="ms").get_points())

    def start(self) -> "Played":
        self.started_ms = int(time.time() * 1000)
        for t in self.threads:
            t.start()
        wait_for(lambda: any(d["name"] == self.database for d in self.client.get_list_database()), 30,
                 what="ingest to create the database")
        self.store = Store(self.db)
        self.station = SimulatedStation(self.cfg, self.cfg.gateways[0], self.address, speed=60,
                                        spool_path=self.tmp / "spool.db").start()
        wait_for(lambda: [g for g in self.store.gateways() if g["gateway"] == self.gw and g["state"] == "online"], 20,
                 what="the engine to see the gateway")
        return self

    def alert(self, rule: str, **match):
        return wait_for(lambda: [a for a in self.store.alerts(include_resolved=True) if a.rule == rule
                                 and all(getattr(a, k) == v for k, v in match.items())], 30, what=f"a {rule} alert")[0]

    def play_all(self) -> None:
        self.station.play("heating-failure", speed=300)
        # the minors' dormitory: away from the fire zone the fire scenario heats up next
        wait_for(lambda: self.rows('SELECT "value" FROM "reading" WHERE "sensor" = \'t-minors-1\' AND "value" < 17.5'
                                   ' LIMIT 1'), 40, what="a sleeping room well below 18 °C in InfluxDB")
        self.station.play("fire", speed=4)
        self.fire = self.alert("fire", severity="critical")
        self.store.acknowledge(self.fire.id, "值班员 张三", "已到场处置 / on site")
        self.station.play("night-exit", speed=30)
        self.alert("night_exit")
        self.station.play("camera-offline", speed=60)
        self.alert("camera_offline", state="resolved")
        link = MqttLink(self.address, f"garbage-{uuid.uuid4().hex[:6]}").start()
        link.client.publish(f"sw/v1/sl-station/{self.gw}/reading/t-hall", b"not json", qos=1).wait_for_publish(5)
        link.stop()
        self.station.play("gateway-power-loss", speed=10)
        wait_for(lambda: self.rows('SELECT "seq" FROM "reading" WHERE "historical" = true LIMIT 1'), 40,
                 what="readings replayed from the spool")
        for sql, what in (('SELECT "state" FROM "records"."alert" WHERE "action" = \'acknowledge\'', "the ack annotation"),
                          ('SELECT "state" FROM "records"."alert" WHERE "action" = \'resolve\'', "a resolve annotation"),
                          ('SELECT * FROM "pipeline_quarantine" LIMIT 1', "a refusal by reason"),
                          ('SELECT * FROM "notification" WHERE "sent_total" > 0 LIMIT 1', "a delivered notification"),
                          ('SELECT * FROM "trend"."reading_1m" LIMIT 1', "1-minute trends (ingest's, broker/trend.py)")):
            wait_for(lambda: self.rows(sql), 150, interval=0.5, what=what)
        wait_for(lambda: len(self.rows('SELECT "batches_total" FROM "pipeline" WHERE "service" = \'alerts\'')) >= 3, 40,
                 what="the engine's figures")
        self.ended_ms = int(time.time() * 1000)

    def close(self) -> None:
        if self.station is not None:
            self.station.stop()
        self.stop.set()
        for t in self.threads:
            t.join(20)
        self.client.close()


@pytest.fixture(scope="module")
def played(tmp_path_factory, mosquitto, influxdb):
    from support import Receiver
    from stationwatch.core.mqtt import BrokerAddress
    with Receiver() as receiver:
        run = Played(tmp_path_factory.mktemp("played"), BrokerAddress(mosquitto.host, mosquitto.port), influxdb.url,
                     receiver).start()
        try:
            run.play_all()
            yield run
        finally:
            run.close()


@pytest.fixture(scope="module")
def results(played):
    """Every target of every dashboard over the time the scenarios played, by (dashboard uid, panel title)."""
    window = TimeRange(played.started_ms - 60_000, played.ended_ms + 5_000)
    out = {}
    for board in boards(played.cfg):
        runner = Runner(board.model, influx_query(played.client), window)
        out[board.uid] = {"runner": runner, "panels": {p["title"]: runner.run(p) for p in panels(board.model)},
                          "annotations": runner.annotations()}
    return out


def _values(series) -> list:
    return [v for v in series.column() if v is not None]


def test_every_variable_of_every_dashboard_offers_a_choice(results):
    empty = [f"{uid}: ${name}" for uid, r in results.items() for name, options in r["runner"].options.items() if not options]
    assert not empty, "variables that offer nothing: " + ", ".join(empty)
    station = results["sw-station-sl-mz"]["runner"]
    assert station.values["site"] == ["sl-station"] and "dorm-f1" in station.values["room"]
    assert station.values["source"] == ['"raw"."reading"'], "a short range reads the raw readings"


def test_every_panel_target_and_annotation_answers_with_data(results):
    silent = []
    for r in results.values():
        for targets in [*r["panels"].values(), r["annotations"]]:
            for t in targets:
                if not any(_values(s) for s in t.series):
                    silent.append(f"{t.where} answered nothing:\n      {t.query}")
    assert not silent, "queries without data:\n  " + "\n  ".join(silent)


def _panel(results, uid: str, english: str):
    return next(t for title, targets in results[uid]["panels"].items() if english in title for t in targets)


def test_the_fire_zones_detectors_show_the_alarm_and_the_others_do_not(results, played):
    target = _panel(results, "sw-station-sl-mz", "Fire detectors")
    by_sensor = {s.name: _values(s) for s in target.series}
    detectors = set(played.fire.detail["detectors"])
    assert len(detectors) == 2 and detectors <= set(by_sensor)
    assert all(max(by_sensor[d]) == 1 for d in detectors), "both detectors of the fire zone show the alarm"
    assert any(max(v) == 0 for d, v in by_sensor.items() if d not in detectors), "a quiet detector stays normal"


def test_a_sleeping_room_is_seen_crossing_18_degrees(results):
    target = _panel(results, "sw-station-sl-mz", "Rooms where people sleep")
    crossed = [s.name for s in target.series if _values(s) and max(_values(s)) >= 18 > min(_values(s))]
    assert "t-minors-1" in crossed, f"no room crossed 18 °C: {[(s.name, min(_values(s)), max(_values(s))) for s in target.series]}"


def test_the_offline_camera_shows_its_gap_and_the_others_stay_online(results):
    target = _panel(results, "sw-station-sl-mz", "Cameras online")
    assert "GROUP BY time(10s)" in target.query, "never finer than one heartbeat period (from the config)"
    by_camera = {s.name: _values(s) for s in target.series}
    assert 0 in by_camera["cam-med-obs"] and 1 in by_camera["cam-med-obs"], "online, then offline"
    assert all(set(v) == {1} for c, v in by_camera.items() if c != "cam-med-obs")


def test_the_alert_history_reaches_the_charts_as_annotations(results, played):
    annotations = {t.panel: t for t in results["sw-station-sl-mz"]["annotations"]}
    acked = annotations["annotation 已确认 acknowledged"].series[0]
    text = acked.columns.index("text")
    assert any(f"#{played.fire.id}" in row[text] and "值班员 张三" in row[text] for row in acked.values)
    opened = annotations["annotation 告警产生 alarms opened"].series[0]
    assert {"fire", "night_exit", "cold_room"} <= {row[opened.columns.index("rule")] for row in opened.values}


def test_the_city_overview_counts_the_cold_rooms_and_times_the_gateway(results, played):
    cold = _panel(results, "sw-city-sl-mz", "Sleeping rooms below")
    assert [max(_values(s)) for s in cold.series if s.name == "sl-station"][0] >= 1
    age = _panel(results, "sw-city-sl-mz", "Age of each gateway")
    assert [s for s in age.series if s.name == played.gw and _values(s)[-1] < played.cfg.rules.sensor_stale_s]


def test_a_long_range_reads_the_one_minute_trends(played):
    station = next(b for b in boards(played.cfg) if b.uid == "sw-station-sl-mz")
    runner = Runner(station.model, influx_query(played.client), TimeRange(played.ended_ms - 2 * 86400_000, played.ended_ms))
    assert runner.values["source"] == ['"trend"."reading_1m"']
    rooms = next(p for p in panels(station.model) if "Rooms where people sleep" in p["title"])
    target = runner.run(rooms)[0]
    assert '"trend"."reading_1m"' in target.query and "GROUP BY time(5m)" in target.query
    assert any(_values(s) for s in target.series), f"nothing from the trend: {target.query}"


def test_each_dashboard_renders_as_a_picture_from_its_answers(results, played, tmp_path):
    from stationwatch.dashboards.render import render
    for board in boards(played.cfg):
        path = render(board.model, results[board.uid]["runner"], tmp_path / f"{board.uid}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000, board.uid
