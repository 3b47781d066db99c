"""Who watches the watchers, against the real parts: every service as its own process (the CLI) on
a Mosquitto and an InfluxDB of the test's own (they are stopped and killed here), notices to a
real HTTP receiver. Graces are compressed by config (seconds instead of tens of seconds)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from stationwatch.alerts.store import Store
from stationwatch.broker.stack import LocalInfluxDB, LocalMosquitto
from stationwatch.core.contract import MessageClass, topic
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.wire import payload

from support import EXAMPLES, wait_for

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "stationwatch.cli"]
SITE, GW = "sl-station", "gw-sl-main"
GRACE = 4.0  # every hop's grace here


class Proc:
    """A `stationwatch …` service in a process of its own."""

    def __init__(self, name: str, args: list[str], tmp: Path):
        self.name, self.args, self.log = name, CLI + args, tmp / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Proc":
        self.proc = subprocess.Popen(self.args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def kill(self) -> float:
        """SIGKILL; returns when it was killed."""
        at = time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        return at

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def station_yaml(tmp: Path, receiver_port: int, **supervision) -> Path:
    """The example station; every notice to the receiver (/staff, /leader, /bureau; the watcher's
    backup channel /backup), the graces compressed."""
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    url = lambda path: [f"json://127.0.0.1:{receiver_port}/{path}"]  # noqa: E731
    data["contacts"] = [
        {"id": "duty-staff", "name": "值班员", "role": "staff", "sites": [SITE], "channels": url("staff")},
        {"id": "leader", "name": "带班领导", "role": "leader", "sites": [SITE], "channels": url("leader")},
        {"id": "bureau", "name": "市民政局", "role": "bureau", "bureau": "sl-mz", "channels": url("bureau")}]
    data["routing"] = {"notify": ["duty-staff"], "backoff_s": [0.2]}
    data["rules"] = {"resolve_hold_s": 1, "sensor_stale_s": 3, "stale_intervals": 3}
    data["supervision"] = {"beat_s": 0.5, "grace_s": {h: GRACE for h in
                                                      ("ingest", "influxdb", "broker", "api", "watcher", "alerts", "dispatcher")},
                           "reconnect_grace_s": GRACE, "gateway_return_s": GRACE, "patrol_interval_s": 10,
                           "patrol_timeout_s": 2,
                           "backup": {"urls": [f"json://127.0.0.1:{receiver_port}/backup"], "remind_s": 3,
                                      "rate_per_minute": 30, "planned_grace_s": 60}, **supervision}
    path = tmp / "station.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def broker(tmp_path):
    with LocalMosquitto(tmp_path / "mosquitto") as m:
        yield m


def engine(tmp: Path, cfg: Path, broker: LocalMosquitto, metrics_port: int | None = None) -> Proc:
    return Proc("alerts", ["alerts", "-c", str(cfg), "--broker", f"{broker.host}:{broker.port}",
                           "--db", str(tmp / "alerts.db"),
                           *(["--metrics-port", str(metrics_port)] if metrics_port else [])], tmp)


def metrics(port: int) -> str | None:
    """A service's /metrics text, or None while it does not answer yet."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return None


def alerts_of(db: Path, rule: str, subject: str | None = None) -> list:
    store = Store(db)
    try:
        return [a for a in store.alerts(include_resolved=True) if a.rule == rule
                and (subject is None or a.subject == subject)]
    finally:
        store.close()


def posts(receiver, path: str) -> list[dict]:
    return [r["json"] for r in receiver.received() if r["path"] == f"/{path}"]


# ---- one hop at a time ------------------------------------------------------------------------

def test_a_killed_ingest_is_an_alarm_dated_from_its_last_beat_and_clears_when_it_is_back(
        tmp_path, broker, influxdb, receiver):
    cfg = station_yaml(tmp_path, receiver.port)
    database = f"sup_{uuid.uuid4().hex[:8]}"
    ingest_args = ["ingest", "-c", str(cfg), "--broker", f"{broker.host}:{broker.port}", "--influx", influxdb.url,
                   "--database", database, "--quarantine", str(tmp_path / "q.db")]
    from stationwatch.broker.stack import free_port
    port = free_port()
    ingest, alerts = Proc("ingest", ingest_args, tmp_path).start(), engine(tmp_path, cfg, broker, port).start()
    db = tmp_path / "alerts.db"
    try:
        wait_for(lambda: db.exists() and Store(db).last_beat("ingest:main"), 30, what="the engine to hear ingest")
        text = wait_for(lambda: metrics(port), 10, what="the engine's /metrics")
        assert 'stationwatch_alerts_hop_last_beat_age_seconds{hop="ingest"}' in text
        killed = ingest.kill()
        silent = wait_for(lambda: alerts_of(db, "pipeline_silent", "centre/ingest"), GRACE + 10,
                          what="pipeline_silent for ingest within the grace + 10 s")[0]
        assert silent.site == "centre" and silent.severity == "major"
        assert killed - 2.0 < silent.first_at <= killed, "dated from the last heartbeat, not from detection"
        assert silent.detail["hop"] == "ingest"
        told = wait_for(lambda: posts(receiver, "staff"), 10, what="the duty staff told")
        assert any("入库服务" in p["title"] for p in told)
        from fastapi.testclient import TestClient

        from stationwatch.alerts.api import create_app
        from stationwatch.core.config import load_config
        with TestClient(create_app(load_config(cfg), db)) as client:
            health = client.get("/health").json()
        assert health["status"] == "degraded" and any("ingest" in p for p in health["problems"])
        assert {h["hop"]: h["alive"] for h in health["pipeline"]}["ingest"] is False, "the board's banner names it"
        ingest = Proc("ingest-again", ingest_args, tmp_path).start()
        wait_for(lambda: alerts_of(db, "pipeline_silent", "centre/ingest")[0].state == "resolved", 30,
                 what="resolved when ingest is back")
        outages = Store(db).outages()
        assert [o["hop"] for o in outages] == ["ingest"] and outages[0]["ended_at"] is not None
    finally:
        ingest.stop()
        alerts.stop()


def test_a_stopped_influxdb_is_an_alarm_of_its_own_and_ingest_keeps_its_readings(tmp_path, broker, receiver):
    cfg = station_yaml(tmp_path, receiver.port)
    influx = LocalInfluxDB(tmp_path / "influxdb").start()
    ingest = Proc("ingest", ["ingest", "-c", str(cfg), "--broker", f"{broker.host}:{broker.port}", "--influx",
                             influx.url, "--quarantine", str(tmp_path / "q.db")], tmp_path).start()
    alerts = engine(tmp_path, cfg, broker).start()
    db = tmp_path / "alerts.db"
    try:
        wait_for(lambda: db.exists() and (Store(db).last_beat("ingest:main") or (0, {}))[1].get("influx_ok"), 60,
                 what="ingest's canary through InfluxDB")
        influx.stop()
        stopped = time.time()  # InfluxDB answers until its stop returns: a canary may get through until then
        silent = wait_for(lambda: alerts_of(db, "pipeline_silent", "centre/influxdb"), GRACE + 10,
                          what="pipeline_silent for InfluxDB")[0]
        assert silent.first_at <= stopped and silent.detail["hop"] == "influxdb"
        assert not alerts_of(db, "pipeline_silent", "centre/ingest"), "ingest itself is alive: one cause, one alarm"
        influx = LocalInfluxDB(tmp_path / "influxdb", port=influx.port).start()
        wait_for(lambda: alerts_of(db, "pipeline_silent", "centre/influxdb")[0].state == "resolved", 60,
                 what="resolved when InfluxDB is back")
    finally:
        ingest.stop()
        alerts.stop()
        influx.stop()


def test_a_killed_engine_reaches_the_backup_channel_with_reminders_and_its_chain_resumes(tmp_path, broker, receiver):
    cfg = station_yaml(tmp_path, receiver.port)
    data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    level = lambda name, targets: {"name": name, "targets": targets, "ack_s": 3}  # noqa: E731
    data["routing"]["policies"] = [{"id": "emergency", "levels": [level("值班人员", ["staff"]), level("带班领导", ["leader"]),
                                                                   level("民政局", ["bureau"])]}]
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    db = tmp_path / "alerts.db"
    alerts = engine(tmp_path, cfg, broker).start()
    watcher = Proc("watcher", ["watch", "-c", str(cfg), "--db", str(db), "--broker", f"{broker.host}:{broker.port}"],
                   tmp_path).start()
    gw = MqttLink(BrokerAddress(broker.host, broker.port), "test-gw").start()
    try:
        wait_for(lambda: db.exists() and Store(db).last_beat("alerts"), 30, what="the engine beating")
        gw.publish(topic(SITE, GW, MessageClass.EVENT, "smk-kitchen"),
                   payload(time.time(), 1, state="alarm", value=1.0, drill=False), MessageClass.EVENT).wait_for_publish(5)
        fire = wait_for(lambda: alerts_of(db, "fire"), 15, what="the pre-alarm")[0]
        killed = alerts.kill()
        notice = wait_for(lambda: [p for p in posts(receiver, "backup") if p["watched"] == "alerts"], GRACE + 10,
                          what="the watcher's notice on the backup channel")[0]
        assert time.time() - killed < GRACE + 10 and "告警引擎停止运行" in notice["title"]
        wait_for(lambda: [p for p in posts(receiver, "backup") if p.get("kind") == "reminder"], 10,
                 what="a reminder while the engine stays down")
        # the scenario needs time to pass: two deadlines (3 s each) run out while the engine is down
        wait_for(lambda: time.time() - fire.first_at > 7, 15, what="two deadlines passed")
        restarted = time.time()
        alerts = engine(tmp_path, cfg, broker).start()
        wait_for(lambda: [p for p in posts(receiver, "backup") if p.get("kind") == "back"], 30,
                 what="the watcher: the engine is back")
        breaches = wait_for(lambda: (lambda b: b if len(b) >= 2 else None)(
            Store(db).breaches(fire.id)), 20, what="the missed deadlines recorded")
        assert [b["level"] for b in breaches][:2] == [0, 1], "every level in order, none skipped"
        assert any(b["at"] >= restarted for b in breaches), "deadlines missed while it was down, handled after"
        wait_for(lambda: posts(receiver, "bureau"), 20, what="the climb reaching the bureau")
    finally:
        gw.stop()
        watcher.stop()
        alerts.stop()


def test_a_stopped_broker_reaches_the_backup_channel_and_is_in_the_store_once_it_is_back(tmp_path, receiver):
    mosquitto = LocalMosquitto(tmp_path / "mosquitto").start()
    cfg = station_yaml(tmp_path, receiver.port)
    db = tmp_path / "alerts.db"
    alerts = engine(tmp_path, cfg, mosquitto).start()
    watcher = Proc("watcher", ["watch", "-c", str(cfg), "--db", str(db), "--broker",
                               f"{mosquitto.host}:{mosquitto.port}"], tmp_path).start()
    try:
        wait_for(lambda: db.exists() and Store(db).last_beat("alerts"), 30, what="the engine beating")
        wait_for(lambda: "watcher" in {r["service"] for r in Store(db).query("SELECT service FROM heartbeat")}, 30,
                 what="the watcher beating")
        stopped = time.time()
        mosquitto.stop()
        notice = wait_for(lambda: [p for p in posts(receiver, "backup") if p["watched"] == "broker"], GRACE + 10,
                          what="the watcher's notice that the broker is gone")[0]
        assert "消息服务器" in notice["title"]
        mosquitto = LocalMosquitto(tmp_path / "mosquitto", port=mosquitto.port).start()
        silent = wait_for(lambda: alerts_of(db, "pipeline_silent", "centre/broker"), 30,
                          what="the broker's outage in the store")[0]
        assert silent.severity == "critical" and silent.first_at <= stopped + 1.0
        wait_for(lambda: alerts_of(db, "pipeline_silent", "centre/broker")[0].state == "resolved", 30,
                 what="resolved once the broker is back")
    finally:
        watcher.stop()
        alerts.stop()
        mosquitto.stop()


# ---- the patrol and the gateways' births and deaths ---------------------------------------------

class ScriptedGateway:
    """A gateway played by the test on the wire: birth and will with sessions, patrol answers as asked."""

    def __init__(self, broker, gw: str, *, answer: bool = True, clock_offset: float = 0.0, version: str | None = None,
                 session: int = 1):
        self.gw, self.answer, self.offset, self.version, self.session = gw, answer, clock_offset, version, session
        self.status_topic = topic(SITE, gw, MessageClass.STATUS)
        will = payload(time.time(), state="offline", config_version=None, drivers=[], reason="will", session=session)
        self.link = MqttLink(BrokerAddress(broker.host, broker.port), gw, will=(self.status_topic, will),
                             on_connect=self._born, on_message=self._command).start()

    def _born(self, link) -> None:
        link.subscribe(topic(SITE, self.gw, MessageClass.CMD, "+"), 1)
        link.publish(self.status_topic, payload(time.time(), state="online", config_version=self.version, drivers=[],
                                                reason=None, session=self.session), MessageClass.STATUS)

    def _command(self, topic_name, body, _msg) -> None:
        cmd = json.loads(body)
        if cmd.get("name") == "patrol" and self.answer:
            self.link.publish(topic(SITE, self.gw, MessageClass.PATROL),
                              payload(time.time() + self.offset, request=cmd["args"]["id"], config_version=self.version,
                                      drivers=["gpio:1"], session=self.session), MessageClass.PATROL)

    def stop(self) -> None:
        self.link.stop()


def test_the_patrol_finds_a_silent_gateway_a_wrong_clock_and_a_stale_config(tmp_path, broker, receiver):
    from stationwatch.core.config import config_version
    cfg = station_yaml(tmp_path, receiver.port)
    data = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    data["gateways"] = [{"id": g, "name": g, "site": SITE} for g in ("gw-mute", "gw-skew", "gw-stale", "gw-good")]
    data["sensors"], data["cameras"] = [], []
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    central = config_version(cfg)
    gateways = [ScriptedGateway(broker, "gw-mute", answer=False, version=central),
                ScriptedGateway(broker, "gw-skew", clock_offset=30.0, version=central),
                ScriptedGateway(broker, "gw-stale", version="0123456789ab"),
                ScriptedGateway(broker, "gw-good", version=central)]
    db = tmp_path / "alerts.db"
    alerts = engine(tmp_path, cfg, broker).start()
    try:
        found = wait_for(lambda: (lambda a: a if len(a) >= 3 else None)(alerts_of(db, "gateway_patrol")), 30,
                         what="three patrol findings")
        by_subject = {a.subject: a for a in found}
        assert set(by_subject) == {f"{SITE}/gw-mute/missed", f"{SITE}/gw-skew/clock", f"{SITE}/gw-stale/config"}
        assert by_subject[f"{SITE}/gw-skew/clock"].detail["offset_s"] == pytest.approx(30.0, abs=1.0)
        assert by_subject[f"{SITE}/gw-stale/config"].detail["central_version"] == central
        assert all(a.severity == "warning" for a in found)
        assert not [a for a in found if "gw-good" in a.subject]
    finally:
        alerts.stop()
        for g in gateways:
            g.stop()


def test_a_late_will_does_not_kill_a_reborn_gateway_and_a_goodbye_not_followed_by_a_return_does(
        tmp_path, broker, receiver):
    cfg = station_yaml(tmp_path, receiver.port)
    db = tmp_path / "alerts.db"
    alerts = engine(tmp_path, cfg, broker).start()
    wire = MqttLink(BrokerAddress(broker.host, broker.port), "test-wire").start()
    status = topic(SITE, GW, MessageClass.STATUS)

    def say(**body) -> float:
        at = time.time()
        wire.publish(status, payload(at, config_version=None, drivers=[], **body), MessageClass.STATUS).wait_for_publish(5)
        return at

    def read_up_to(at: float, state: str) -> None:
        wait_for(lambda: [g for g in Store(db).gateways() if g["state"] == state and g["at"] >= at], 10,
                 what=f"the engine to read the {state} status")
    try:
        first = wait_for(lambda: db.exists() and Store(db).last_beat("alerts"), 30, what="the engine beating")[0]
        read_up_to(say(state="online", reason=None, session=7), "online")
        # past the broker's reconnect grace: a will now counts at once (a held will would hide the check)
        wait_for(lambda: time.time() > first + GRACE + 1, GRACE + 5, what="the engine's link settled")
        say(state="offline", reason="will", session=6)  # the will of the connection before, delivered late
        read_up_to(say(state="online", reason=None, session=7), "online")  # a birth after it: the will was read
        assert not alerts_of(db, "gateway_offline"), "a stale will is no death"
        say(state="offline", reason="will", session=7)  # the will of the connection that lives: a real death
        lost = wait_for(lambda: alerts_of(db, "gateway_offline"), 10, what="the gateway lost at once")[0]
        assert (lost.severity, lost.detail["reason"]) == ("critical", "will")
        read_up_to(say(state="online", reason=None, session=8), "online")
        wait_for(lambda: alerts_of(db, "gateway_offline")[0].state == "resolved", 15, what="back online")
        bye = say(state="offline", reason="shutdown", session=8)
        gone = wait_for(lambda: [a for a in alerts_of(db, "gateway_offline") if a.detail["reason"] == "shutdown"],
                        GRACE + 15, what="a gateway that said goodbye and did not come back")[0]
        assert gone.severity == "critical" and gone.detail["last_heard"] == pytest.approx(bye, abs=1.0)
    finally:
        wire.publish(status, b"", MessageClass.STATUS).wait_for_publish(5)
        wire.stop()
        alerts.stop()


# ---- one cause, one alarm ------------------------------------------------------------------------

def test_a_broker_outage_is_one_alarm_and_a_gateway_that_died_meanwhile_is_lost_after_the_grace(tmp_path, receiver):
    """Broker SIGKILLed for 60 s with one gateway alive and one that dies meanwhile; then a planned
    restart (SIGTERM). Sensors report every second and cameras beat every 2 s, so without the
    attribution to the broker the outage would raise their silence many times over."""
    from stationwatch.core.config import load_config
    from stationwatch.gateway.simulation import SimulatedStation
    mosquitto = LocalMosquitto(tmp_path / "mosquitto").start()
    cfg_path = station_yaml(tmp_path, receiver.port, reconnect_grace_s=15)
    data = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    data["gateways"].append({"id": "gw-b", "name": "后楼网关", "site": SITE})
    keep = ["smk-dorm-m1", "t-dorm-m1", "t-hall", "door-exit-main"]
    data["sensors"] = [{**s, "interval_s": 1} for s in data["sensors"] if s["id"] in keep] + [
        {"id": "t-store", "name": "仓库 室温", "kind": "temperature", "gateway": "gw-b", "room": "store", "interval_s": 1}]
    data["cameras"] = [{**c, "heartbeat_s": 2} for c in data["cameras"] if c["id"] in ("cam-hall", "cam-med-obs")]
    cfg_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cfg = load_config(cfg_path)
    address = BrokerAddress(mosquitto.host, mosquitto.port)
    db = tmp_path / "alerts.db"
    alerts = engine(tmp_path, cfg_path, mosquitto).start()
    from stationwatch.core.config import config_version
    station = SimulatedStation(cfg, cfg.gateway(GW), address, spool_path=tmp_path / "a.spool.db",
                               config_version=config_version(cfg_path)).start()
    doomed = Proc("gw-b", ["simulate", "-c", str(cfg_path), "--broker", f"{mosquitto.host}:{mosquitto.port}",
                           "--gateway", "gw-b", "--standalone", "--spool", str(tmp_path / "b.spool.db")], tmp_path).start()
    try:
        wait_for(lambda: db.exists() and {g["gateway"] for g in Store(db).gateways() if g["state"] == "online"}
                 == {GW, "gw-b"}, 30, what="both gateways online at the engine")
        wait_for(lambda: Store(db).last_beat("alerts")[1].get("watching"), 15, what="the engine watching")
        mosquitto.kill()
        down_at = time.time()
        wait_for(lambda: alerts_of(db, "pipeline_silent", "centre/broker"), GRACE + 10, what="the broker alarm")
        doomed.kill()  # a gateway that dies while nobody can hear it
        wait_for(lambda: time.time() - down_at >= 60, 70, what="60 s of outage")
        mosquitto = LocalMosquitto(tmp_path / "mosquitto", port=mosquitto.port).start()
        lost = wait_for(lambda: alerts_of(db, "gateway_offline", f"{SITE}/gw-b"), 60,
                        what="the dead gateway lost once the grace is over")[0]
        assert lost.severity == "critical" and lost.first_at < down_at, "dated from its last message"
        wait_for(lambda: alerts_of(db, "pipeline_silent", "centre/broker")[0].state == "resolved", 30,
                 what="the broker alarm resolved")
        # a planned restart: SIGTERM, and the broker is back at once
        mosquitto.stop()
        mosquitto = LocalMosquitto(tmp_path / "mosquitto", port=mosquitto.port).start()
        wait_for(lambda: [g for g in Store(db).gateways() if g["gateway"] == GW and g["state"] == "online"
                          and g["at"] > time.time() - 30], 30, what="the live gateway reborn after the restart")
        wait_for(lambda: Store(db).last_beat("alerts")[0] > time.time() - 1 and time.time() - down_at > 60 + 40, 60,
                 what="the reconnect grace over after the restart")
        assert len(alerts_of(db, "pipeline_silent", "centre/broker")) == 1, "one broker alarm"
        assert alerts_of(db, "gateway_offline", f"{SITE}/{GW}") == [], "the live gateway was never paged as lost"
        symptoms = [a for a in alerts_of(db, "sensor_fault") + alerts_of(db, "camera_offline")]
        assert symptoms == [], [(a.rule, a.subject) for a in symptoms]
    finally:
        doomed.stop()
        station.stop()
        alerts.stop()
        mosquitto.stop()


# ---- the watcher's decisions and the services' /metrics, in-process -------------------------------

def test_the_watcher_tells_once_reminds_keeps_to_its_rate_and_says_when_it_is_back(tmp_path, receiver):
    from stationwatch.alerts.watcher import Watcher
    from stationwatch.core.config import load_config
    cfg = load_config(station_yaml(tmp_path, receiver.port, backup={"urls": ["json://127.0.0.1:9/x"], "remind_s": 10,
                                                                       "rate_per_minute": 2}))
    db = tmp_path / "alerts.db"
    store = Store(db)
    now = [1_800_000_000.0]
    watcher = Watcher(cfg, db, clock=lambda: now[0])
    store.beat("alerts", {}, at=now[0])
    store.beat("dispatcher", {}, at=now[0])
    assert watcher.check() == [], "both alive"
    now[0] += GRACE + 1  # neither beats any more: two notices, within the rate of 2 a minute
    first = watcher.check()
    assert sorted(n["watched"] for n in first) == ["alerts", "dispatcher"]
    assert all(n["type"] == "failure" and n["kind"] == "down" for n in first)
    now[0] += 10  # reminders are due, but the minute's rate is spent: they wait
    assert watcher.check() == []
    now[0] += 50
    reminders = watcher.check()
    assert [n["kind"] for n in reminders] == ["reminder", "reminder"]
    store.beat("alerts", {}, at=now[0])
    store.beat("dispatcher", {}, at=now[0])
    now[0] += 61
    store.beat("alerts", {}, at=now[0])
    store.beat("dispatcher", {}, at=now[0])
    back = watcher.check()
    assert sorted((n["watched"], n["kind"]) for n in back) == [("alerts", "back"), ("dispatcher", "back")]
    assert all("恢复" in n["title"] for n in back)
    store.close()


def test_every_service_serves_metrics_with_the_hop_heartbeats(tmp_path, receiver):
    from fastapi.testclient import TestClient

    from stationwatch.alerts.api import create_app
    from stationwatch.core.config import load_config
    cfg = load_config(station_yaml(tmp_path, receiver.port))
    db = tmp_path / "alerts.db"
    store = Store(db)
    store.beat("alerts", {}, at=time.time() - 12)
    store.beat("ingest:main", {}, at=time.time() - 3)
    with TestClient(create_app(cfg, db)) as client:
        wait_for(lambda: store.last_beat("api"), 5, what="the API's own heartbeat row")
        text = client.get("/metrics").text
    ages = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("stationwatch_api_beat_age_seconds{")}
    assert ages["alerts"] == pytest.approx(12, abs=2) and ages["ingest:main"] == pytest.approx(3, abs=2)
    assert ages["api"] < 5
    assert "# TYPE stationwatch_api_beat_age_seconds gauge" in text
    assert 'stationwatch_api_open_alerts{severity="critical"}' in text
    store.close()
