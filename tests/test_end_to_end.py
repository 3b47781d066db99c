"""The whole flow as separate processes, on the real Mosquitto and InfluxDB the suite started:
the production gateway agent on the simulated station → its spool → MQTT → ingest → InfluxDB,
and → alert engine → SQLite → webhook + API.
And `stationwatch demo` itself, started and stopped as a user would."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from stationwatch.broker.influx import InfluxV1Writer
from stationwatch.core.contract import MessageClass, parse
from stationwatch.core.mqtt import MqttLink

from support import EXAMPLES, wait_for

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "stationwatch.cli"]
FIRE_BUDGET_S = 10.0  # GB 26875.1 §4.1.2.1: a fire alarm reaches the monitoring centre within 10 s


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class Proc:
    def __init__(self, name: str, args: list[str], logdir: Path, cwd: Path | None = None):
        self.name = name
        self.log = logdir / f"{name}.log"
        self.proc = subprocess.Popen(CLI + args, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     cwd=cwd, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 20) -> int:
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop on {sig!r}:\n{self.log.read_text(errors='replace')[-3000:]}")
        return self.proc.returncode

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def system(tmp_path, mosquitto, influxdb, receiver):
    """ingest + alerts + API as their own processes, with the duty staff's channel on `receiver`."""
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    for contact in data["contacts"]:
        if contact["id"] in data["routing"]["notify"]:
            contact["channels"] = [f"json://127.0.0.1:{receiver.port}/duty"]
    data["supervision"] = {"reconnect_grace_s": 2}  # the engine starts with the test: wills count 2 s after
    cfg = tmp_path / "station.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    broker = f"127.0.0.1:{mosquitto.port}"
    database = f"e2e_{uuid.uuid4().hex[:8]}"
    from stationwatch.broker.stack import free_port
    port = free_port()
    procs = [
        Proc("ingest", ["ingest", "-c", str(cfg), "--broker", broker, "--influx", influxdb.url,
                        "--database", database, "--quarantine", str(tmp_path / "q.db"), "--instance", database], tmp_path),
        Proc("alerts", ["alerts", "-c", str(cfg), "--broker", broker, "--db", str(tmp_path / "alerts.db"),
                        "--client-id", f"alerts-{database}"], tmp_path),  # an own session: the broker is shared
        Proc("api", ["serve", "-c", str(cfg), "--db", str(tmp_path / "alerts.db"), "--port", str(port)], tmp_path),
    ]
    api = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return _get(f"{api}/health")
        except OSError:
            assert all(p.alive() for p in procs), "\n".join(p.text()[-2000:] for p in procs)
            return None
    wait_for(healthy, timeout=30, what="the API")
    writer = InfluxV1Writer(influxdb.url, database)
    wait_for(lambda: any(d["name"] == database for d in writer._client.get_list_database()), timeout=30,
             what="ingest to create its database")
    yield {"cfg": cfg, "broker": broker, "api": api, "writer": writer, "procs": procs, "tmp": tmp_path,
           "receiver": receiver, "mosquitto": mosquitto}
    for p in procs:
        assert p.stop() == 0 or p.proc.returncode in (0, -signal.SIGTERM), f"{p.name} exit {p.proc.returncode}:\n{p.text()[-3000:]}"


def _first_smoke_alarm_watch(mosquitto):
    """Record when the first smoke alarm event passes through the broker, and every seq of the gateway."""
    seen: dict[str, object] = {"seqs": []}

    def on_message(topic, payload, _):
        msg = parse(topic, payload)
        if hasattr(msg.body, "seq"):
            seen["seqs"].append(msg.body.seq)
        if msg.kind is MessageClass.EVENT and getattr(msg.body, "state", "") == "alarm":
            seen.setdefault("at", time.monotonic())
            seen.setdefault("alarm_seq", msg.body.seq)
    from stationwatch.core.mqtt import BrokerAddress
    link = MqttLink(BrokerAddress(mosquitto.host, mosquitto.port), f"watch-{uuid.uuid4().hex[:6]}",
                    on_connect=lambda l: l.subscribe("sw/v1/sl-station/gw-sl-main/#"), on_message=on_message).start()
    return link, seen


def _spool_next_seq(spool: Path) -> tuple[int, int]:
    """(next seq, messages still waiting) of a gateway's spool file, read after the gateway stopped."""
    import sqlite3
    with sqlite3.connect(spool) as db:
        return (db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0],
                db.execute("SELECT count(*) FROM message").fetchone()[0])


def test_fire_scenario_reaches_the_api_and_the_webhook_within_the_budget(system):
    link, seen = _first_smoke_alarm_watch(system["mosquitto"])
    spool = system["tmp"] / "gateway-spool.db"
    sim = Proc("gateway", ["simulate", "-c", str(system["cfg"]), "--broker", system["broker"],
                           "--standalone", "--scenario", "fire", "--speed", "1", "--spool", str(spool)], system["tmp"])
    try:
        wait_for(lambda: seen.get("at"), timeout=30, what="the first smoke alarm on the broker")
        fire = wait_for(lambda: [a for a in _get(f"{system['api']}/api/alerts") if a["rule"] == "fire"],
                        timeout=FIRE_BUDGET_S, what="the fire alert at /api/alerts within 10 s")[0]
        assert fire["site"] == "sl-station"
        # the second detector in the zone confirms the fire: the same alert becomes critical
        wait_for(lambda: [a for a in _get(f"{system['api']}/api/alerts") if a["rule"] == "fire"
                          and a["severity"] == "critical" and a["id"] == fire["id"]],
                 timeout=30, what="the fire to be confirmed by a second detector")
        posts = wait_for(lambda: system["receiver"].received(), timeout=FIRE_BUDGET_S, what="the push to the duty staff")
        text = json.dumps(posts[0]["json"], ensure_ascii=False)
        assert "示例市救助管理站" in text or "火" in text

        # the readings are in InfluxDB and can be queried with InfluxQL
        writer = system["writer"]
        rows = wait_for(lambda: list(writer.query(
            'SELECT count("value") FROM "reading" WHERE "kind" = \'temperature\' GROUP BY "sensor"').get_points()) and
            list(writer.query('SELECT count("value") FROM "reading" GROUP BY "sensor"').items()),
            timeout=30, what="readings in InfluxDB")
        assert len(rows) >= 10
        devices = wait_for(lambda: (lambda d: d if len(d) >= 2 else None)({e["device"] for e in writer.query(
            'SELECT * FROM "records"."event" WHERE "kind" = \'smoke\' AND "state" = \'alarm\'').get_points()}),
            timeout=10, what="both smoke alarms in InfluxDB")
        assert len(devices) == 2
        assert all(p.alive() for p in system["procs"])
    finally:
        sim.stop(signal.SIGINT)
        link.stop()
    # the smoke alarm left through the production agent's spool: the spool gave out every seq seen
    next_seq, waiting = _spool_next_seq(spool)
    assert waiting == 0, "a clean stop sends what the spool holds"
    assert seen["alarm_seq"] in seen["seqs"] and max(seen["seqs"]) == next_seq - 1
    assert sorted(set(seen["seqs"])) == list(range(min(seen["seqs"]), next_seq)), "one counter, no gap"


def test_a_power_cut_of_the_uplink_loses_nothing_and_the_buffered_readings_arrive_historical(system):
    """`gateway-power-loss` drops the agent's link without a DISCONNECT: the broker publishes the will,
    the engine pages the lost gateway; what the agent read meanwhile waits in its spool and reaches
    InfluxDB flagged historical after the rebirth."""
    spool = system["tmp"] / "gateway-spool.db"
    sim = Proc("gateway", ["simulate", "-c", str(system["cfg"]), "--broker", system["broker"], "--standalone",
                           "--scenario", "gateway-power-loss", "--speed", "2", "--spool", str(spool)], system["tmp"])
    writer = system["writer"]
    try:
        lost = wait_for(lambda: [a for a in _get(f"{system['api']}/api/alerts?all=true") if a["rule"] == "gateway_offline"],
                        timeout=30, what="the lost gateway paged")[0]
        assert lost["severity"] == "critical"
        rows = wait_for(lambda: list(writer.query(
            'SELECT "value", "seq" FROM "reading" WHERE "historical" = true').get_points()),
            timeout=30, what="historical readings in InfluxDB")
        assert len({r["seq"] for r in rows}) >= 10, "15 s of a 26-sensor station read every 5 s were kept"
        wait_for(lambda: [g for g in _get(f"{system['api']}/health")["gateways"]
                          if g["gateway"] == "gw-sl-main" and g["state"] == "online" and g["at"] > lost["first_at"]],
                 timeout=30, what="the engine to see the gateway back online")
    finally:
        sim.stop(signal.SIGINT)
    live = list(writer.query('SELECT "seq" FROM "reading" WHERE "historical" = false').get_points())
    unnumbered = [r for r in rows + live if r["seq"] is None]  # seen once in CI: show the whole point
    assert not unnumbered, (unnumbered[:3], list(writer.query(
        f'SELECT * FROM "reading" WHERE time = {unnumbered[0]["time"]}ms').get_points()))
    seqs = sorted({r["seq"] for r in rows} | {r["seq"] for r in live})
    assert seqs and len(seqs) == len(set(seqs)), "each reading stored once"


def test_malformed_messages_leave_every_service_running(system):
    from stationwatch.core.mqtt import BrokerAddress
    m = system["mosquitto"]
    link = MqttLink(BrokerAddress(m.host, m.port), f"fuzz-{uuid.uuid4().hex[:6]}").start()
    garbage = [
        ("sw/v1/sl-station/gw-sl-main/event/smk-kitchen", b"\x00\xff garbage"),
        ("sw/v1/sl-station/gw-sl-main/event/smk-kitchen", b'{"v":1,"ts":"soon","seq":1,"state":"alarm"}'),
        ("sw/v1/sl-station/gw-sl-main/event/no-such-sensor", b'{"v":1,"ts":1790000000,"seq":1,"state":"alarm"}'),
        ("sw/v1/sl-station/gw-sl-main/status", b"[]"),
        ("sw/v1/sl-station/gw-sl-main/reading/t-hall", b'{"v":1,"ts":1790000000,"seq":1,"value":1e400}'),
        ("sw/v1/sl-station/gw-sl-main/heartbeat/cam-hall", b"{" * 5000),
    ]
    for _ in range(20):
        for t, p in garbage:
            link.client.publish(t, p, qos=1).wait_for_publish(5)
    link.stop()
    # a valid smoke alarm sent after the garbage is still processed
    sim = Proc("gateway", ["simulate", "-c", str(system["cfg"]), "--broker", system["broker"],
                           "--standalone", "--scenario", "fire", "--speed", "4"], system["tmp"])
    try:
        wait_for(lambda: [a for a in _get(f"{system['api']}/api/alerts") if a["rule"] == "fire"],
                 timeout=30, what="the fire alert after the garbage")
        assert all(p.alive() for p in system["procs"]), "a service died on malformed input"
        import sqlite3
        with sqlite3.connect(system["tmp"] / "q.db") as db:
            n = wait_for(lambda: db.execute("SELECT count(*) FROM quarantine").fetchone()[0] >= len(garbage) * 20 and
                         db.execute("SELECT count(*) FROM quarantine").fetchone()[0], what="ingest quarantine")
        assert n >= len(garbage) * 20
    finally:
        sim.stop(signal.SIGINT)


def test_make_demo_stack_comes_up_plays_a_scenario_and_stops_cleanly(tmp_path):
    """`stationwatch demo` (what `make demo` runs) starts its own broker and database; a user's
    `stationwatch simulate --scenario fire` in the same folder finds it; Ctrl-C stops it all."""
    demo = Proc("demo", ["demo", "--config", str(EXAMPLES / "city-station.yaml"), "--port", "0"], tmp_path, cwd=tmp_path)
    endpoints = tmp_path / ".demo" / "endpoints.json"
    try:
        wait_for(lambda: endpoints.exists() or not demo.alive(), timeout=90, what="the demo to come up")
        assert demo.alive(), demo.text()[-3000:]
        info = json.loads(endpoints.read_text())
        assert "值班看板" in wait_for(lambda: "值班看板" in demo.text() and demo.text(), timeout=10, what="the banner")
        grafana = tmp_path / ".demo" / "grafana"
        wait_for(lambda: f"GF_PATHS_PROVISIONING={grafana.resolve()}" in demo.text(), timeout=10,
                 what="how to point a Grafana at the provisioning folder")
        assert info["influx"] in (grafana / "datasources" / "stationwatch-influxdb.yaml").read_text()
        assert (grafana / "dashboards" / "sw-sl-mz" / "sw-station-sl-mz.json").exists()
        run = subprocess.run(CLI + ["simulate", "--scenario", "fire"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        wait_for(lambda: [a for a in _get(f"{info['api']}/api/alerts") if a["rule"] == "fire"],
                 timeout=FIRE_BUDGET_S + 5, what="the fire alert from the demo")
        wait_for(lambda: "推送 / notification #" in demo.text(), timeout=15, what="the push shown in the demo's terminal")
        # every hop beats and the watcher runs: the supervision sees the whole pipeline
        health = _get(f"{info['api']}/health")
        assert health["status"] == "ok", health
        assert "watcher" in (tmp_path / ".demo" / "logs" / "watcher.log").read_text(errors="replace")
        wait_for(lambda: not [a for a in _get(f"{info['api']}/api/alerts") if a["rule"] in ("pipeline_silent",
                 "gateway_patrol", "gateway_offline")] and demo.text(), timeout=5, what="no supervision alarm")
        pushes = demo.text().count("推送 / notification #")
    finally:
        code = demo.stop(signal.SIGINT, timeout=60)
    assert code == 0, demo.text()[-3000:]
    assert demo.text().count("推送 / notification #") == pushes, "stopping the demo with Ctrl-C pages nobody"
    assert not endpoints.exists()
    host, port = info["broker"].split(":")
    import socket
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()
