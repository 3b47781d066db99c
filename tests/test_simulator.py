"""The simulated station — the production gateway agent on a simulated building — against the real
Mosquitto started by the suite: what a subscriber (the ingest, the alert engine, a person with
mosquitto_sub) sees on the wire.

Every test runs its own gateway id, so retained status messages of one test never reach another."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime

import pytest

from stationwatch.core.config import config_version
from stationwatch.core.contract import Command, MessageClass, encode, topic
from stationwatch.core.mqtt import MqttLink
from stationwatch.gateway.scenarios import SCENARIOS
from stationwatch.gateway.simulation import ACTIONS
from stationwatch.gateway.simulator import SimulationError, check_scenario, pick_gateway, request_scenario, run_gateway
from stationwatch.sensors.kinds import KINDS

from support import wait_for
from support.simulator import city, small

# ---- the steady state --------------------------------------------------------------------------

PLAUSIBLE = {  # kind → what a winter day in a heated building reads (°C)
    "temperature": (18.5, 23.5), "heat": (18.5, 23.5), "outdoor_temperature": (-6.0, 1.0),
    "supply_temperature": (54.0, 61.0),
}


def test_every_sensor_and_camera_reports_valid_messages_with_one_rising_seq(run, record):
    cfg = city("all")
    rec = record(cfg)
    gw = run(cfg, speed=20, version="abc123")
    wait_for(lambda: all(len(rec.of(MessageClass.READING, s.id)) >= 2 for s in cfg.sensors)
             and all(rec.of(MessageClass.HEARTBEAT, c.id) for c in cfg.cameras), timeout=15,
             what="two readings of every sensor and a heartbeat of every camera")
    gw.stop()
    wait_for(lambda: ("offline", "shutdown") in rec.statuses(), what="clean shutdown status")

    assert rec.refused == []
    birth = rec.bodies(MessageClass.STATUS)[0]
    assert (birth.state, birth.config_version) == ("online", "abc123")
    assert birth.drivers == ["camera:1", "health:1", "simulated:1"]  # the production driver families
    for sensor in cfg.sensors:
        kind = KINDS[sensor.kind]
        for reading in rec.bodies(MessageClass.READING, sensor.id):
            assert reading.unit == kind.unit and reading.quality == "ok" and not reading.historical
            low, high = PLAUSIBLE.get(sensor.kind, (0, 1))
            assert low <= reading.value <= high, (sensor.id, reading.value)
            if kind.binary:
                assert reading.value in (0.0, 1.0)
            assert abs(reading.ts - time.time()) < 30
    assert all(hb.online for hb in rec.bodies(MessageClass.HEARTBEAT))
    seqs = [m.body.seq for m in rec.all() if m.kind in (MessageClass.READING, MessageClass.EVENT, MessageClass.HEARTBEAT)]
    assert len(seqs) == len(set(seqs)), "duplicate seq"
    acked = [m.body.seq for m in rec.all() if m.kind is MessageClass.READING]  # QoS 1 keeps publish order
    assert acked == sorted(acked)


def test_birth_is_retained_for_late_subscribers_and_shutdown_replaces_it(run, record):
    cfg = small("birth", [{"id": "t-dorm", "kind": "temperature", "room": "dorm"}])
    gw = run(cfg, version="v1")
    late = record(cfg)
    wait_for(lambda: late.statuses(), what="retained birth")
    first = late.all().index(late.of(MessageClass.STATUS)[0])
    assert late.statuses()[0] == ("online", None) and late.retained[first], "birth is retained"
    gw.stop()
    wait_for(lambda: late.statuses()[-1] == ("offline", "shutdown"), what="shutdown status")
    later = record(cfg)
    wait_for(lambda: later.statuses() == [("offline", "shutdown")], what="retained shutdown status")


# ---- scenarios -------------------------------------------------------------------------------

def test_fire_raises_two_smoke_alarms_in_one_dormitory_zone_and_the_room_heats_up(run, record):
    cfg = city("fire")
    site = cfg.sites[0]
    rec = record(cfg)
    gw = run(cfg, speed=50)
    play = gw.play("fire", speed=50)
    assert play.wait(10)
    alarms = [m for m in rec.of(MessageClass.EVENT) if m.body.state == "alarm" and cfg.sensor(m.device).kind == "smoke"]
    assert len(alarms) == 2 and alarms[0].device != alarms[1].device
    rooms = [site.room(cfg.sensor(m.device).room) for m in alarms]
    assert rooms[0].fire_zone == rooms[1].fire_zone and rooms[0].kind == "dormitory"
    assert 0 < alarms[1].body.ts - alarms[0].body.ts < 8 / 50 + 1.0  # t=0 and t=8 s, compressed
    room_temp = next(s.id for s in cfg.sensors if s.kind == "temperature" and s.room == rooms[0].id)
    wait_for(lambda: max((r.value for r in rec.bodies(MessageClass.READING, room_temp)), default=0) > 26, what="the fire room heating up")
    assert not [m for m in rec.of(MessageClass.EVENT) if m.body.state == "normal"], "a fire must not reset by itself"
    assert all(r.value == 1.0 for r in rec.bodies(MessageClass.READING, alarms[0].device)[-2:])


def test_heat_detector_alarms_at_its_threshold_during_a_fire(run, record):
    cfg = small("heat", [{"id": "smk-a", "kind": "smoke", "room": "dorm"},
                         {"id": "smk-b", "kind": "smoke", "room": "dorm"},
                         {"id": "heat-dorm", "kind": "heat", "room": "dorm", "threshold_c": 40, "interval_s": 2}])
    rec = record(cfg)
    gw = run(cfg)
    gw.play("fire", speed=20)
    alarm = wait_for(lambda: [m.body for m in rec.of(MessageClass.EVENT, "heat-dorm") if m.body.state == "alarm"],
                     what="heat alarm")[0]
    assert alarm.value >= 40
    readings = sorted(rec.bodies(MessageClass.READING, "heat-dorm"), key=lambda r: r.seq)
    first_hot = next(r for r in readings if r.value >= 40)
    assert [r.value for r in readings if r.seq < first_hot.seq] and \
        max(r.value for r in readings if r.seq < first_hot.seq) < 40
    assert (first_hot.value, first_hot.seq) == (alarm.value, alarm.seq + 1), \
        "the alarm comes with the first reading at 40 °C, just before it"


def test_heating_failure_cools_water_and_sleeping_rooms_and_flags_the_boiler(run, record):
    cfg = small("heating", [
        {"id": "t-out", "kind": "outdoor_temperature", "room": "yard", "interval_s": 60},
        {"id": "supply", "kind": "supply_temperature", "room": "boiler", "interval_s": 60},
        {"id": "t-dorm", "kind": "temperature", "room": "dorm", "interval_s": 60},
        {"id": "t-hall", "kind": "temperature", "room": "hall", "interval_s": 60},
        {"id": "boiler-fault", "kind": "boiler_fault", "room": "boiler", "interval_s": 60}])
    rec = record(cfg)
    gw = run(cfg, speed=200)
    wait_for(lambda: rec.of(MessageClass.READING, "supply"), what="a first supply reading")
    gw.play("heating-failure", speed=600)
    wait_for(lambda: [e for e in rec.bodies(MessageClass.EVENT, "boiler-fault") if e.state == "alarm"], what="boiler fault")

    def last(sensor: str) -> float:
        return rec.bodies(MessageClass.READING, sensor)[-1].value
    wait_for(lambda: last("supply") < 30 and last("t-dorm") < 16 and last("t-out") < -7, timeout=15,
             what="supply water < 30 °C, dormitory < 16 °C, outdoor < −7 °C")
    supply = [r.value for r in rec.bodies(MessageClass.READING, "supply")]
    assert supply[0] > 55 and len(supply) > 20, "the decline is visible reading by reading"
    assert last("t-hall") > 19, "only sleeping rooms are modelled as cooling"


def test_night_exit_events_read_two_oclock_local_time(run, record):
    cfg = city("night")
    tz = cfg.sites[0].tz
    rec = record(cfg)
    gw = run(cfg)
    assert gw.play("night-exit", speed=100).wait(5)
    door = next(s.id for s in cfg.sensors if s.kind == "door" and s.exit)
    events = wait_for(lambda: len(rec.bodies(MessageClass.EVENT, door)) >= 2 and rec.bodies(MessageClass.EVENT, door), what="door events")
    opened, closed = (datetime.fromtimestamp(e.ts, tz) for e in events)
    assert [e.state for e in events] == ["open", "closed"]
    assert (opened.hour, opened.minute, opened.second) == (2, 0, 0)
    assert (closed.hour, closed.minute) == (2, 1) and events[1].ts - events[0].ts == pytest.approx(60)
    assert 0 <= time.time() - events[0].ts <= 24 * 3600, "the most recent 02:00"
    assert events[0].seq < events[1].seq


def test_camera_offline_sends_offline_heartbeats_then_recovers(run, record):
    cfg = small("cam", [{"id": "t-dorm", "kind": "temperature", "room": "dorm", "interval_s": 60}],
                cameras=[{"id": "cam-hall", "room": "hall"}, {"id": "cam-obs", "room": "obs"}])
    rec = record(cfg)
    gw = run(cfg, speed=100)
    play = gw.play("camera-offline", speed=100)  # down for 6 s, probed every 0.6 s
    wait_for(lambda: any(not hb.online for hb in rec.bodies(MessageClass.HEARTBEAT, "cam-obs")), what="offline heartbeat")
    assert play.wait(10)
    wait_for(lambda: rec.bodies(MessageClass.HEARTBEAT, "cam-obs")[-1].online, what="camera back online")
    assert all(hb.online for hb in rec.bodies(MessageClass.HEARTBEAT, "cam-hall"))
    offline = [hb for hb in rec.bodies(MessageClass.HEARTBEAT, "cam-obs") if not hb.online]
    assert len(offline) >= 3, "offline is reported at the heartbeat rhythm"


def test_gateway_power_loss_gives_will_then_birth_then_historical_readings(run, record):
    cfg = small("power", [{"id": "t-dorm", "kind": "temperature", "room": "dorm", "interval_s": 2},
                          {"id": "smk-a", "kind": "smoke", "room": "dorm", "interval_s": 2}],
                cameras=[{"id": "cam-obs", "room": "obs", "heartbeat_s": 2}])
    rec = record(cfg)
    gw = run(cfg, speed=20)
    wait_for(lambda: rec.of(MessageClass.READING), what="live readings")
    assert gw.play("gateway-power-loss", speed=20).wait(10)
    wait_for(lambda: [m for m in rec.of(MessageClass.READING) if m.body.historical], what="historical readings")
    wait_for(lambda: not rec.of(MessageClass.READING)[-1].body.historical, what="live readings again")
    seen = rec.all()
    kinds = [(m.kind, getattr(m.body, "state", None), getattr(m.body, "reason", None)) for m in seen]
    will = kinds.index((MessageClass.STATUS, "offline", "will"))
    rebirth = kinds.index((MessageClass.STATUS, "online", None), will)
    historical = [i for i, m in enumerate(seen) if getattr(m.body, "historical", False)]
    assert will < rebirth < historical[0]
    assert len([i for i in historical if seen[i].kind is MessageClass.READING]) >= 10, \
        "30 simulated seconds of readings every 2 s were kept"
    # the agent kept polling while cut off: what it read then (camera probes too) waited in its spool
    assert {MessageClass.READING, MessageClass.HEARTBEAT} <= {seen[i].kind for i in historical}
    seqs = [m.body.seq for m in rec.all() if m.kind is MessageClass.READING]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), "the kept readings fill the gap in order"


# ---- commands --------------------------------------------------------------------------------

def test_request_scenario_reaches_the_running_gateway(run, record, broker_address):
    cfg = city("cmd")
    rec = record(cfg)
    gw = run(cfg, speed=20)
    wait_for(lambda: rec.statuses(), what="birth")
    request_scenario(cfg, broker_address, cfg.gateways[0], "night-exit", speed=200)
    door = next(s.id for s in cfg.sensors if s.kind == "door" and s.exit)
    wait_for(lambda: [e.state for e in rec.bodies(MessageClass.EVENT, door)] == ["open", "closed"], what="door opened and closed")
    assert [p.scenario.name for p in gw.plays] == ["night-exit"] and gw.plays[0].speed == 200


def test_invalid_commands_are_ignored_and_the_gateway_keeps_going(run, record, broker_address):
    cfg = small("badcmd", [{"id": "door-exit", "kind": "door", "exit": True, "room": "hall"}])
    rec = record(cfg)
    gw = run(cfg)
    gw_id = cfg.gateways[0].id
    sender = MqttLink(broker_address, f"test-cmd-{uuid.uuid4().hex[:6]}").start()
    try:
        bad = [("scenario", b"not json"),
               ("scenario", encode(Command(v=1, ts=time.time(), name="scenario", args={"name": "flood"}))),
               ("scenario", encode(Command(v=1, ts=time.time(), name="scenario", args={"name": "fire", "speed": "x"}))),
               ("scenario", encode(Command(v=1, ts=time.time(), name="scenario", args={"name": "fire"}))),  # no smoke here
               ("reboot", encode(Command(v=1, ts=time.time(), name="reboot")))]
        good = encode(Command(v=1, ts=time.time(), name="scenario", args={"name": "night-exit", "speed": 200}))
        for name, payload in [*bad, ("scenario", good)]:
            sender.publish(topic("t-site", gw_id, MessageClass.CMD, name), payload, MessageClass.CMD).wait_for_publish(5)
    finally:
        sender.stop()
    wait_for(lambda: len(rec.bodies(MessageClass.EVENT, "door-exit")) == 2, what="the valid command played")
    assert [p.scenario.name for p in gw.plays] == ["night-exit"]


def test_request_scenario_without_a_running_gateway_says_how_to_start_one(run, broker_address):
    never = city("never")
    with pytest.raises(SimulationError, match="stationwatch simulate"):
        request_scenario(never, broker_address, never.gateways[0], "fire", timeout=0.5)
    stopped = city("stopped")
    run(stopped).stop()
    with pytest.raises(SimulationError, match="no simulated gateway"):
        request_scenario(stopped, broker_address, stopped.gateways[0], "fire")


def test_run_gateway_plays_a_standalone_scenario_and_stops_cleanly(broker_address, record):
    cfg = city("standalone")
    rec = record(cfg)
    stop = threading.Event()
    thread = threading.Thread(target=run_gateway, args=(cfg, cfg.gateways[0], broker_address, stop),
                              kwargs={"speed": 100, "scenario": "night-exit", "config_version": "x"}, daemon=True)
    thread.start()
    door = next(s.id for s in cfg.sensors if s.kind == "door" and s.exit)
    wait_for(lambda: len(rec.bodies(MessageClass.EVENT, door)) == 2, what="door events")
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    wait_for(lambda: rec.statuses()[-1] == ("offline", "shutdown"), what="shutdown status")


# ---- user errors -------------------------------------------------------------------------------

def test_unknown_gateway_and_scenario_name_the_valid_choices(city_config):
    assert pick_gateway(city_config, None).id == "gw-sl-main"
    with pytest.raises(SimulationError, match="gw-sl-main"):
        pick_gateway(city_config, "gw-nowhere")
    with pytest.raises(SimulationError, match="fire.*heating-failure.*night-exit"):
        check_scenario("flood")


def test_scenario_without_its_devices_is_refused(run):
    gw = run(small("nodev", [{"id": "t-dorm", "kind": "temperature", "room": "dorm"}]))
    for name in ("fire", "night-exit", "camera-offline"):
        with pytest.raises(SimulationError, match="needs"):
            gw.play(name)


def test_config_version_is_a_short_stable_hash(city_config_path, tmp_path):
    version = config_version(city_config_path)
    assert len(version) == 12 and version == config_version(city_config_path)
    copy = tmp_path / "c.yaml"
    copy.write_bytes(city_config_path.read_bytes() + b"\n# changed\n")
    assert config_version(copy) != version


def test_every_scenario_step_is_an_action_the_gateway_knows():
    assert {step.action for s in SCENARIOS.values() for step in s.steps} <= set(ACTIONS)


def test_a_clean_stop_publishes_shutdown_and_no_will(broker_address, city_config_path, city_config, tmp_path):
    """A stopped gateway is quiet, not dead: after its shutdown status the broker must not
    publish its last will (the alert engine would page the duty staff for a lost gateway).
    Run as a process, because a will is sent when the process exits without DISCONNECT."""
    import signal
    import subprocess
    import sys
    import time as _t
    import uuid

    from stationwatch.core.contract import MessageClass, Status, encode, parse, topic
    from stationwatch.core.mqtt import MqttLink
    gw = city_config.gateways[0]
    status_topic = topic(gw.site, gw.id, MessageClass.STATUS)
    statuses: list[str] = []
    watch = MqttLink(broker_address, f"watch-{uuid.uuid4().hex[:6]}",
                     on_message=lambda t, p, m: statuses.append(parse(t, p).body.reason or "online")
                     if p and not m.retain else None).start()  # retained: left by an earlier test
    watch.subscribe_wait(status_topic)
    for _ in range(3):
        n = len(statuses)
        proc = subprocess.Popen([sys.executable, "-m", "stationwatch.cli", "simulate", "-c", str(city_config_path),
                                 "--broker", f"{broker_address.host}:{broker_address.port}", "--speed", "5",
                                 "--spool", str(tmp_path / "spool.db")])
        wait_for(lambda: "online" in statuses[n:], timeout=20, what="birth")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    # a will would follow the shutdown at once; a marker published afterwards orders the check
    probe = MqttLink(broker_address, f"probe-{uuid.uuid4().hex[:6]}").start()
    probe.publish(status_topic, encode(Status(v=1, ts=_t.time(), state="online", reason="probe")), MessageClass.STATUS).wait_for_publish(5)
    wait_for(lambda: statuses[-1] == "probe", what="the marker")
    probe.stop()
    watch.stop()
    assert statuses.count("shutdown") == 3 and "will" not in statuses, statuses
