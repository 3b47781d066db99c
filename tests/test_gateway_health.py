"""The gateway's own health and its local alarm on the wire (``health/{metric}``): the agent publishes
the health driver's samples and every change of the local alarm through its spool; ingest stores them
in InfluxDB and quarantines what the contract refuses; the alert engine turns under-voltage, a full
disk … into a maintenance alert for the staff on duty and notes a silenced siren on its fire alert;
the generated broker ACL lets a gateway publish its own health and nothing more.

Against the real Mosquitto and InfluxDB the suite starts; the health driver reads temp files and a
fake command runner through its seams; the alarm and the detector run on gpiozero MockFactory pins."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest
from gpiozero.pins.mock import MockFactory

from stationwatch.alerts.engine import AlertEngine
from stationwatch.broker.accounts import gateway_topics, write_accounts
from stationwatch.broker.influx import InfluxV1Writer
from stationwatch.broker.ingest import IngestOptions, run_ingest
from stationwatch.broker.stack import LocalMosquitto
from stationwatch.broker.tls import make_certs
from stationwatch.core.agent_settings import AgentSettings, AlarmOutputs
from stationwatch.core.config import parse_config
from stationwatch.core.contract import (
    DELIVERY,
    DRILL,
    HEALTH_METRICS,
    LOCAL_ALARM,
    SPOOL,
    ContractError,
    Inventory,
    MessageClass,
    Reading,
    encode,
    parse,
    topic,
)
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.wire import payload
from stationwatch.gateway.agent import Agent
from stationwatch.gateway.alarm import LocalAlarm
from stationwatch.gateway.spool import Spool
from stationwatch.sensors.health import METRICS, GatewayHealth, HealthSeams

from support import ROOT, wait_for
from support.broker import TWO_SITES
from support.gateway import BUTTON, BUZZER, LED, NOWHERE, RELAY, SMOKE_PIN, SmokeContact

SITE, GW = "sl-station", "gw-sl-main"


@pytest.fixture
def mosquitto(tmp_path):
    """A broker of this test's own: these tests use the example gateway's real id (so ingest and the
    engine know it) and must not meet other tests' retained status and sessions."""
    with LocalMosquitto(tmp_path / "mosquitto") as broker:
        yield broker


def station(cfg, tmp_path):
    """The example config with the first gateway's agent settings: a spool in tmp_path, alarm outputs."""
    settings = AgentSettings(spool_path=str(tmp_path / "spool.db"), silence_button=BUTTON,
                             outputs=AlarmOutputs(buzzer=BUZZER, relay=RELAY, led=LED))
    gw = cfg.gateways[0].model_copy(update={"agent": settings})
    return cfg.model_copy(update={"gateways": [gw, *cfg.gateways[1:]]}), gw


def sick_health(tmp_path, gateway: str = GW) -> GatewayHealth:
    """A Pi in trouble: under-voltage and throttled now (and since boot), 5 % disk free, clock not synchronised,
    /proc/meminfo unreadable (its sample is a fault)."""
    (tmp_path / "temp").write_text("48312\n")
    answers = {"vcgencmd": "throttled=0x50005\n", "timedatectl": "NTPSynchronized=no\n"}
    seams = HealthSeams(thermal_path=tmp_path / "temp", meminfo_path=tmp_path / "no-meminfo", disk_path=tmp_path,
                        run=lambda argv: answers[argv[0]], disk_usage=lambda path: (1000, 950, 50))
    return GatewayHealth(gateway, seams)


class Collector:
    """A subscriber that keeps (topic, payload bytes) in arrival order."""

    def __init__(self, address: BrokerAddress, topic_filter: str):
        self.got: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.link = MqttLink(address, f"test-health-{uuid.uuid4().hex[:6]}", on_message=self._on_message,
                             on_connect=lambda link: link.subscribe(topic_filter, 1)).start()
        assert self.link.subscribed.wait(10)

    def _on_message(self, topic_name: str, body: bytes, _msg) -> None:
        with self._lock:
            self.got.append((topic_name, body))

    def messages(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.got)


@pytest.fixture
def running_ingest(city_config, broker_address, influxdb, tmp_path):
    database = f"t_{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    thread = threading.Thread(target=run_ingest, args=(city_config, broker_address, influxdb.url, database,
                                                       tmp_path / "q.db", stop),
                              kwargs={"options": IngestOptions(metrics_every_s=0.3, instance=database)}, daemon=True)
    thread.start()
    writer = InfluxV1Writer(influxdb.url, database)
    wait_for(lambda: any(d["name"] == database for d in writer._client.get_list_database()), what="database")
    probe = MqttLink(broker_address, f"test-probe-{database}").start()
    seq = 10**9  # the probe speaks as the gateway, whose own counter (the agent's spool) starts at 1

    def probed() -> bool:  # the ingest's subscription is live once a probe reading is written
        nonlocal seq
        seq += 1
        body = encode(Reading(v=1, ts=time.time(), seq=seq, value=20.0, unit="°C"))
        probe.publish(topic(SITE, GW, MessageClass.READING, "t-hall"), body, MessageClass.READING).wait_for_publish(5)
        return bool(list(writer.query('SELECT count("value") FROM "reading" WHERE sensor=\'t-hall\'').get_points()))
    wait_for(probed, 15, interval=0.2, what="the ingest to be subscribed")
    probe.stop()
    yield writer, tmp_path / "q.db"
    stop.set()
    thread.join(timeout=15)
    writer.close()


def _rows(writer, sql: str) -> list[dict]:
    return list(writer.query(sql).get_points())


# ---- the contract ---------------------------------------------------------------------------
def test_health_is_qos1_not_retained_and_takes_exactly_the_drivers_metrics_and_local_alarm(city_config):
    assert DELIVERY[MessageClass.HEALTH].qos == 1 and not DELIVERY[MessageClass.HEALTH].retain
    assert HEALTH_METRICS == set(METRICS) | {LOCAL_ALARM, SPOOL, DRILL}  # the agent's own: alarm, spool, drill
    inv = Inventory(city_config)
    now = time.time()
    ok = payload(now, 7, value=1.0, unit="", quality="ok", state="alarm", detail="under-voltage now")
    msg = parse(topic(SITE, GW, MessageClass.HEALTH, "under_voltage"), ok)
    assert inv.check(msg).id == GW and msg.body.state == "alarm"
    for t, body, reason in [
        (topic(SITE, GW, MessageClass.HEALTH, "fan_speed"), ok, "unknown_metric"),
        (topic(SITE, "gw-nope", MessageClass.HEALTH, "under_voltage"), ok, "unknown_gateway"),
        (topic("elsewhere", GW, MessageClass.HEALTH, "under_voltage"), ok, "wrong_site"),
    ]:
        with pytest.raises(ContractError) as info:
            inv.check(parse(t, body))
        assert info.value.reason == reason and info.value.detail
    for t, body, field in [
        (topic(SITE, GW, MessageClass.HEALTH, LOCAL_ALARM), payload(now, 8, state="loud", by="button", detectors=[]), "state"),
        (topic(SITE, GW, MessageClass.HEALTH, LOCAL_ALARM), payload(now, 8, state="silenced", by="BUTTON!"), "by"),
        (topic(SITE, GW, MessageClass.HEALTH, "disk_free"), payload(now, 9, value="full", unit="%"), "value"),
        (topic(SITE, GW, MessageClass.HEALTH, "throttled"), payload(now, 9, value=1.0, state="sounding"), "state"),
    ]:
        with pytest.raises(ContractError) as info:
            parse(t, body)
        assert info.value.reason == "bad_schema" and field in info.value.detail
    with pytest.raises(ContractError) as info:
        parse(f"sw/v1/{SITE}/{GW}/health", ok)
    assert info.value.reason == "bad_topic"


def test_the_gateway_runtime_still_imports_no_pydantic():
    code = ("import sys, stationwatch.gateway.runtime, stationwatch.gateway.agent, stationwatch.gateway.alarm, "
            "stationwatch.sensors.health; assert 'pydantic' not in sys.modules, 'pydantic imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ---- agent → broker → ingest → InfluxDB ----------------------------------------------------
def test_health_samples_published_by_the_agent_arrive_in_influxdb_faults_as_faults(city_config, broker_address,
                                                                                  running_ingest, tmp_path):
    writer, _ = running_ingest
    cfg, gw = station(city_config, tmp_path)
    with Spool(tmp_path / "spool.db") as spool, \
            Agent(cfg, gw, broker_address, [sick_health(tmp_path)], spool=spool) as agent:
        rows = wait_for(lambda: (r := _rows(writer, f"SELECT * FROM \"gateway_health\" WHERE \"gateway\"='{GW}'"))
                        and len({x["metric"] for x in r}) == len(METRICS) and r, 20, what="every health metric")
        assert agent.stats["health"] >= len(METRICS)
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["under_voltage"]["state"] == "alarm" and by_metric["under_voltage"]["value"] == 1.0
    assert "since boot" in by_metric["under_voltage"]["detail"]
    assert by_metric["clock_unsynced"]["state"] == "alarm"
    assert by_metric["disk_free"]["value"] == pytest.approx(5.0)
    assert by_metric["cpu_temperature"]["value"] == pytest.approx(48.312)
    memory = by_metric["memory_available"]
    assert memory["quality"] == "fault" and memory["value"] is None and memory["state"] == "fault"
    assert "no-meminfo" in memory["detail"]
    assert all(r["site"] == SITE for r in rows)


def test_unknown_or_malformed_health_messages_are_quarantined_with_a_reason(broker_address, running_ingest):
    writer, qpath = running_ingest
    now = time.time()
    good = payload(now, 1, value=1.0, unit="", quality="ok", state="alarm", detail=None)
    bad = [
        (topic(SITE, GW, MessageClass.HEALTH, "fan_speed"), good, "unknown_metric"),
        (topic(SITE, "gw-nope", MessageClass.HEALTH, "under_voltage"), good, "unknown_gateway"),
        (topic(SITE, GW, MessageClass.HEALTH, LOCAL_ALARM), payload(now, 2, state="loud", by="button"), "bad_schema"),
        (topic(SITE, GW, MessageClass.HEALTH, "disk_free"), b'{"v":1,"ts":1790000000,"seq":3,"value":"full"}', "bad_schema"),
        (f"sw/v1/{SITE}/{GW}/health/a/b", good, "bad_topic"),
    ]
    link = MqttLink(broker_address, "test-health-bad").start()
    for t, body, _ in bad:
        link.publish(t, body, MessageClass.HEALTH).wait_for_publish(5)
    marker = payload(now, 4, value=42.0, unit="%", quality="ok", state=None, detail=None)
    link.publish(topic(SITE, GW, MessageClass.HEALTH, "disk_free"), marker, MessageClass.HEALTH).wait_for_publish(5)
    link.stop()
    wait_for(lambda: _rows(writer, 'SELECT * FROM "gateway_health" WHERE "metric"=\'disk_free\''), what="the marker")
    with sqlite3.connect(qpath) as db:
        got = wait_for(lambda: (r := db.execute("SELECT topic, reason, detail FROM quarantine").fetchall())
                       and len(r) >= len(bad) and r, what="the refused messages")
    assert sorted((t, reason) for t, reason, _ in got) == sorted((t, reason) for t, _, reason in bad)
    assert all(detail for *_, detail in got)
    assert not _rows(writer, 'SELECT * FROM "gateway_health" WHERE "metric"=\'fan_speed\'')


# ---- the alert engine ------------------------------------------------------------------------
def test_under_voltage_from_the_agent_raises_a_maintenance_alert_for_the_staff_on_duty(city_config, tmp_path):
    """The bytes the agent spooled (its network is down) go through the engine's pipeline."""
    cfg, gw = station(city_config, tmp_path)
    with Spool(tmp_path / "spool.db") as spool, Agent(cfg, gw, NOWHERE, [sick_health(tmp_path)], spool=spool):
        wait_for(lambda: spool.stats.spooled["health"] >= len(METRICS), 10, what="health in the spool")
        sent = [(r.topic, r.payload) for r in spool.pending({}, 100) if r.kind is MessageClass.HEALTH]
    engine = AlertEngine(city_config, tmp_path / "alerts.db")
    try:
        engine.handle_batch(sent)
        alerts = {a.subject.rsplit("/", 1)[1]: a for a in engine.store.alerts() if a.rule == "gateway_health"}
        # 0x50005: under-voltage and throttled now; memory_available is a fault, which says nothing
        assert set(alerts) == {"under_voltage", "throttled", "disk_free", "clock_unsynced"}
        power = alerts["under_voltage"]
        assert power.severity == "warning" and power.site == SITE and "欠压" in power.title_zh
        esc = engine.store.query("SELECT policy FROM escalations WHERE alert_id=?", (power.id,))[0]
        policy = engine.escalator.policies[esc["policy"]]
        assert policy.id != "emergency" and policy.levels[0].targets == ["staff"]
        # the power supply is replaced: a normal sample clears it, resolved after the hold
        t = time.time()
        fine = payload(t, 10_000, value=0.0, unit="", quality="ok", state="normal", detail=None)
        engine.handle(topic(SITE, GW, MessageClass.HEALTH, "under_voltage"), fine, now=t)
        engine.tick(t + cfg.rules.resolve_hold_s + 1)
        assert engine.store.get(power.id).state == "resolved"
        assert engine.store.get(alerts["disk_free"].id).state == "firing"
    finally:
        engine.close()


# ---- the local alarm -------------------------------------------------------------------------
def test_the_silence_button_reaches_the_broker_as_local_alarm_silenced_and_shows_on_the_fire_alert(
        city_config, broker_address, tmp_path):
    cfg, gw = station(city_config, tmp_path)
    factory = MockFactory()
    smoke = SmokeContact("smk-dorm-m1", SMOKE_PIN, factory)
    alarm = LocalAlarm(gw.agent.outputs, BUTTON, factory)
    centre = Collector(broker_address, f"sw/v1/{SITE}/{GW}/+/+")
    local = lambda: [json.loads(b) for t, b in centre.messages() if t.endswith("/health/local_alarm")]  # noqa: E731
    try:
        with Spool(tmp_path / "spool.db") as spool, Agent(cfg, gw, broker_address, [smoke], spool=spool,
                                                          alarm=alarm) as agent:
            assert agent.born.wait(10)
            factory.pin(SMOKE_PIN).drive_high()
            wait_for(lambda: len(local()) >= 1, 10, what="local alarm sounding")
            factory.pin(BUTTON).drive_low()  # silenced on site
            factory.pin(BUTTON).drive_high()
            wait_for(lambda: len(local()) >= 2, 10, what="local alarm silenced")
            assert not alarm.sounding and factory.pin(LED).state  # the LED still shows the condition
            factory.pin(SMOKE_PIN).drive_low()
            wait_for(lambda: len(local()) >= 3, 10, what="local alarm quiet")
    finally:
        centre.link.stop()
        alarm.close()
    states = [(m["state"], m["by"], m["detectors"]) for m in local()]
    assert states == [("sounding", "smk-dorm-m1", ["smk-dorm-m1"]), ("silenced", "button", ["smk-dorm-m1"]),
                      ("quiet", "smk-dorm-m1", [])]
    for t, body in centre.messages():
        parse(t, body)  # all of it is what the contract reads
    # the duty officer sees on the fire alert that the siren in the building was silenced, and how
    engine = AlertEngine(city_config, tmp_path / "alerts.db")
    try:
        engine.handle_batch(centre.messages())
        fire = next(a for a in engine.store.alerts() if a.rule == "fire")
        trail = [(row["actor"], row["action"]) for row in engine.store.trail(fire.id)]
        assert (f"gateway:{GW}", "local_alarm_silenced") in trail
        assert (f"gateway:{GW}", "local_alarm_quiet") in trail
        note = next(row["note"] for row in engine.store.trail(fire.id) if row["action"] == "local_alarm_silenced")
        assert "现场按钮" in note and "button" in note
    finally:
        engine.close()


def test_a_central_ack_is_reported_and_a_broken_listener_never_stops_the_alarm(tmp_path):
    factory = MockFactory()
    alarm = LocalAlarm(AlarmOutputs(buzzer=BUZZER, relay=RELAY, led=LED), BUTTON, factory)
    changes = []
    alarm.on_change(lambda change: 1 / 0)  # a bug in whoever listens
    alarm.on_change(changes.append)
    alarm.update("smk-a", True)
    alarm.update("smk-b", True)  # still sounding: no news
    assert alarm.silence("cmd:ack") and not alarm.silence("button")  # silencing twice is no news either
    alarm.update("smk-a", False)  # smk-b still in alarm: still silenced
    alarm.update("smk-c", True)  # a new detector sounds it again
    alarm.update("smk-b", False)
    alarm.update("smk-c", False)
    assert [(c.state, c.by, c.detectors) for c in changes] == [
        ("sounding", "smk-a", ("smk-a",)), ("silenced", "cmd:ack", ("smk-a", "smk-b")),
        ("sounding", "smk-c", ("smk-b", "smk-c")), ("quiet", "smk-c", ())]
    assert not any(factory.pin(p).state for p in (BUZZER, RELAY, LED))
    alarm.close()


# ---- broker ACL --------------------------------------------------------------------------------
def test_the_acl_lets_a_gateway_publish_its_own_health_and_nothing_new_besides(tmp_path):
    reads, writes = gateway_topics("site-a", "gw-a")
    assert {f"sw/v1/site-a/gw-a/health/{m}" for m in HEALTH_METRICS} <= set(writes)
    assert reads == ("sw/v1/site-a/gw-a/cmd/+",)
    cfg = parse_config(TWO_SITES)
    write_accounts(cfg, tmp_path / "accounts")
    make_certs(tmp_path / "tls", ["localhost", "127.0.0.1"])
    pw = json.loads((tmp_path / "accounts" / "secrets.json").read_text())
    with LocalMosquitto(tmp_path / "data", secure_dir=tmp_path / "accounts", tls_dir=tmp_path / "tls") as broker:
        def link(user: str, **kw) -> MqttLink:  # gateways connect over TLS, services on the loopback
            tls = not user.startswith("stationwatch-")
            address = BrokerAddress(broker.host, broker.tls_port if tls else broker.port, user, pw[user],
                                    str(tmp_path / "tls" / "ca.crt") if tls else None)
            return MqttLink(address, f"{user}-{uuid.uuid4().hex[:6]}", **kw).start()
        got: list[str] = []
        ingest = link("stationwatch-ingest", on_message=lambda t, p, m: got.append(t))
        assert ingest.subscribe_wait("sw/v1/#") == [1]
        gw_a = link("gw-a")
        body = payload(time.time(), 1, value=1.0, unit="", quality="ok", state="alarm", detail=None)
        refused = [topic("site-b", "gw-b", MessageClass.HEALTH, "under_voltage"),  # another gateway's health
                   topic("site-a", "gw-b", MessageClass.HEALTH, "under_voltage"),
                   "sw/v1/site-a/gw-a/health/under_voltage/more",          # one level only
                   "sw/v1/site-a/gw-a/health"]
        own = topic("site-a", "gw-a", MessageClass.HEALTH, "under_voltage")
        for t in [*refused, own]:
            gw_a.publish(t, body, MessageClass.HEALTH).wait_for_publish(5)
        # messages of one client arrive in order: once its own has arrived, a refused one would have too
        wait_for(lambda: own in got, what="gateway A's own health")
        assert got == [own]
        gw_a.stop()
        ingest.stop()
