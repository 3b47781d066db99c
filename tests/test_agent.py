"""The gateway agent against the real Mosquitto: birth and death (SIGKILL → will, clean stop →
shutdown), seq across restarts, faults, and a broker outage in the middle of a stream after which
every reading arrives exactly once, in order, the missed ones flagged historical."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

from stationwatch.broker.stack import LocalMosquitto, free_port
from stationwatch.core.contract import MessageClass, parse, subscription, topic
from stationwatch.core.mqtt import BrokerAddress
from stationwatch.gateway.agent import Agent
from stationwatch.gateway.service import run_agent
from stationwatch.gateway.spool import Spool
from stationwatch.sensors.base import Sample

from support import wait_for
from support.agent import Collector, Thermometer, station, temperature_sensors


# ---- birth and death, with the agent in its own process -------------------------------------
AGENT = r"""
import json, signal, sys, threading
from stationwatch.core.config import parse_config
from stationwatch.core.mqtt import BrokerAddress
from stationwatch.gateway.service import run_agent

class Thermometer:
    family = "onewire"
    def __init__(self, sensor): self.sensor = sensor
    def read(self, now): return [type("S", (), dict(sensor=self.sensor, value=21.5, quality="ok", ts=now, state=None))]
    def close(self): pass

cfg_json, host, port, spool = sys.argv[1:5]
cfg = parse_config(json.loads(cfg_json))
gw = cfg.gateways[0]
drivers = [Thermometer(s.id) for s in cfg.sensors if s.kind == "temperature"]
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
run_agent(cfg, gw, BrokerAddress(host, int(port)), stop, config_version="cfg-v7", drivers=drivers, spool_path=spool)
"""


def start_agent_process(cfg, address: BrokerAddress, spool_path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", AGENT, cfg.model_dump_json(), address.host, str(address.port),
                             str(spool_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_birth_carries_version_and_inventory_sigkill_leaves_the_will_clean_stop_says_shutdown(
        city_config, broker_address, tmp_path, forget_status):
    cfg, gw = station(city_config, tmp_path, gw_id="gw-birth-test")
    forget_status(gw)
    status_topic = topic(gw.site, gw.id, MessageClass.STATUS)
    centre = Collector(broker_address, "test-birth-centre", f"sw/v1/{gw.site}/{gw.id}/#")
    n_temp = len(temperature_sensors(cfg))

    def last_status():
        statuses = centre.statuses()
        return statuses[-1] if statuses else None

    def readings() -> list[int]:
        return [body["seq"] for t, body, _ in centre.messages() if "/reading/" in t]

    agent = start_agent_process(cfg, broker_address, tmp_path / "spool.db")
    try:
        birth = wait_for(lambda: (s := last_status()) and s["state"] == "online" and s, 15, what="birth")
        assert parse(status_topic, json.dumps(birth).encode()).body.state == "online"
        assert birth["config_version"] == "cfg-v7" and birth["drivers"] == [f"onewire:{n_temp}"]
        wait_for(lambda: len(readings()) >= n_temp, 15, what="first readings")
        os.kill(agent.pid, signal.SIGKILL)  # power cut: no goodbye
        agent.wait()
        will = wait_for(lambda: (s := last_status()) and s["state"] == "offline" and s, 10, what="the will")
        assert will["reason"] == "will"
        first_run = readings()

        agent = start_agent_process(cfg, broker_address, tmp_path / "spool.db")
        wait_for(lambda: last_status()["state"] == "online", 15, what="birth after restart")
        wait_for(lambda: len(readings()) >= len(first_run) + n_temp, 15, what="readings after restart")
        agent.send_signal(signal.SIGTERM)  # clean stop
        assert agent.wait(30) == 0, agent.stderr.read().decode()[-2000:]
        bye = wait_for(lambda: (s := last_status()) and s["state"] == "offline" and s, 10, what="shutdown status")
        assert bye["reason"] == "shutdown"
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()
        agent.stderr.close()
        centre.link.stop()
    second_run = readings()[len(first_run):]
    assert min(second_run) > max(first_run)  # seq never goes backwards across a kill and restart
    retained = Collector(broker_address, "test-birth-late", status_topic)  # a late subscriber sees the last word
    wait_for(lambda: retained.statuses(), 5, what="retained status")
    assert retained.statuses()[-1]["reason"] == "shutdown"
    retained.link.stop()


# ---- faults -------------------------------------------------------------------------------------
def test_a_driver_that_fails_makes_its_sensor_a_fault_and_recovery_is_an_event(city_config, tmp_path):
    cfg, gw = station(city_config, tmp_path, interval_s=0.05)
    thermo = Thermometer("t-dorm-m1")
    nowhere = BrokerAddress("127.0.0.1", free_port())
    with Spool(tmp_path / "spool.db") as spool, Agent(cfg, gw, nowhere, [thermo], spool=spool):
        wait_for(lambda: spool.stats.spooled["reading"] >= 2, 5, what="readings")
        thermo.broken = True
        wait_for(lambda: spool.stats.spooled["event"] >= 1, 5, what="fault event")
        thermo.broken = False
        wait_for(lambda: spool.stats.spooled["event"] >= 2, 5, what="recovery event")
        messages = [parse(r.topic, r.payload).body for r in spool.pending({}, 10_000)]
    events = [m.state for m in messages if hasattr(m, "state")]
    assert events == ["fault", "normal"]
    faulty = [m for m in messages if getattr(m, "quality", None) == "fault"]
    assert faulty and all(m.value is None for m in faulty)  # a fault is never a made-up number



class RacingDoor:
    """A door contact whose poll the test holds in the middle of reading, while the contact opens and
    its edge is reported: the poll then returns what it saw before the edge."""
    family = "gpio"

    def __init__(self, sensor: str):
        from stationwatch.sensors.kinds import KINDS
        self.sensor, self.kind = sensor, KINDS["door"]
        self.open = False
        self.reading, self.release = threading.Event(), threading.Event()
        self.hold = False
        self._callbacks = []

    def on_change(self, callback) -> None:
        self._callbacks.append(callback)

    def read(self, now: float) -> list[Sample]:
        seen = self.open
        if self.hold:
            self.hold = False
            self.reading.set()
            self.release.wait(5)
        return [Sample.binary(self.sensor, self.kind, seen, now)]

    def edge(self, opened: bool) -> None:
        self.open = opened
        for callback in self._callbacks:
            callback(Sample.binary(self.sensor, self.kind, opened, 0.0 + 1_795_000_000))

    def close(self) -> None:
        pass


def test_a_poll_read_before_an_edge_does_not_undo_it(city_config, tmp_path):
    """gpiozero reports an edge in its own thread while a poll may be half way through reading the
    same contact: the older state must not come after the edge as a second change of state."""
    cfg, gw = station(city_config, tmp_path, interval_s=0.05)
    door = RacingDoor("door-exit-main")
    nowhere = BrokerAddress("127.0.0.1", free_port())
    with Spool(tmp_path / "spool.db") as spool, Agent(cfg, gw, nowhere, [door], spool=spool) as agent:
        wait_for(lambda: spool.stats.spooled["reading"] >= 2, 5, what="readings of the closed door")
        door.hold = True
        assert door.reading.wait(5), "a poll started"
        door.edge(True)  # the door opens while that poll is reading
        door.release.set()
        wait_for(lambda: agent.stats["stale_polls"] >= 1, 5, what="the late poll set aside")
        wait_for(lambda: sum(1 for r in spool.pending({}, 10_000) if r.kind is MessageClass.READING
                             and parse(r.topic, r.payload).body.value == 1.0) >= 2, 5, what="readings of the open door")
        messages = [parse(r.topic, r.payload).body for r in spool.pending({}, 10_000)]
    assert [m.state for m in messages if hasattr(m, "state")] == ["open"], "one change, no flap back to closed"

# ---- the broker goes away in the middle of a stream -------------------------------------------
def test_after_a_broker_outage_every_reading_arrives_exactly_once_in_order(city_config, tmp_path):
    cfg, gw = station(city_config, tmp_path, interval_s=0.05, drain_s=20)
    sensors = temperature_sensors(cfg)
    broker = LocalMosquitto(tmp_path / "mosquitto", port=free_port()).start()
    address = BrokerAddress(broker.host, broker.port)
    centre = Collector(address, "test-outage-centre", subscription(MessageClass.READING), clean_start=False)
    drivers = [Thermometer(s, 20.0 + i) for i, s in enumerate(sensors)]
    try:
        with Spool(tmp_path / "spool.db") as spool:
            with Agent(cfg, gw, address, drivers, spool=spool) as agent:
                wait_for(lambda: len(centre.messages()) >= 100, 15, what="live readings")
                broker.stop()  # the broker goes away mid-stream
                wait_for(lambda: not agent.link.connected.is_set(), 10, what="the agent to notice")
                wait_for(lambda: spool.rows >= 300, 20, what="readings piling up in the spool")
                broker.start()  # same port, same persistent sessions
                wait_for(lambda: agent.stats["births"] >= 2, 20, what="the agent to reconnect")
                before = len(centre.messages())
                wait_for(lambda: len(centre.messages()) >= before + 300, 20, what="the stream to resume")
            expected = spool.stats.spooled["reading"]
            assert spool.rows == 0, "the clean stop had time to send everything"
            assert spool.stats.sent["reading"] == expected
            wait_for(lambda: len({body["seq"] for _, body, _dup in centre.messages()}) >= expected, 20,
                     what=f"all {expected} readings at the subscriber")
    finally:
        centre.link.stop()
        broker.stop()
    got = centre.messages()
    # QoS 1 lets the broker redeliver to the subscriber after its own restart, flagged dup with the same
    # seq — and a message it had written to the socket as the broker went down, which the subscriber never
    # read, comes only as that flagged copy. So: each reading's first copy, and no unflagged second one.
    first, seen = [], set()
    for t, body, dup in got:
        if body["seq"] not in seen:
            seen.add(body["seq"])
            first.append((t, body))
    seqs = sorted(body["seq"] for _, body in first)
    assert seqs == list(range(expected)), "a reading is missing"
    unflagged = [body["seq"] for _, body, dup in got if not dup]
    assert len(unflagged) == len(set(unflagged)), "a reading arrived twice without the dup flag"
    for sensor in sensors:
        mine = [body["seq"] for t, body in first if t.endswith(f"/{sensor}")]
        assert mine == sorted(mine) and len(mine) > 20, f"{sensor}: out of order"
    # flagged historical: what was spooled while the link was down — the outage (and the few
    # readings taken at start-up before the first connection); everything else went out live
    historical = [body["seq"] for _, body in first if body["historical"]]
    first_live = next(body["seq"] for _, body in first if not body["historical"])
    outage = [seq for seq in historical if seq > first_live]
    assert len(outage) >= 300 and outage == list(range(outage[0], outage[-1] + 1))
    assert not first[-1][1]["historical"]
    assert spool.stats.replayed == len(historical)


# ---- wired to the real sensor drivers (sensors/base.py build_drivers) ------------------------
def test_run_agent_builds_the_gateways_real_drivers_and_reports_its_cameras(city_config, broker_address, tmp_path,
                                                                          forget_status):
    from gpiozero.pins.mock import MockFactory
    cfg, gw = station(city_config, tmp_path, gw_id="gw-drivers-test")
    forget_status(gw)
    cameras = {c.id for c in cfg.cameras}
    centre = Collector(broker_address, "test-drivers-centre", f"sw/v1/{gw.site}/{gw.id}/#")
    alive = {scheme: (lambda url, timeout: None) for scheme in ("rtsp", "http", "tcp")}  # no network probes
    stop = threading.Event()
    runner = threading.Thread(target=lambda: run_agent(
        cfg, gw, broker_address, stop, config_version="v", pin_factory=MockFactory(),
        spool_path=str(tmp_path / "spool.db"), probe=alive), daemon=True)
    runner.start()
    try:
        beats = lambda: {t.rsplit("/", 1)[1]: body for t, body, _ in centre.messages() if "/heartbeat/" in t}
        wait_for(lambda: set(beats()) == cameras, 15, what="a heartbeat from every camera")
        assert all(body["online"] and body["latency_ms"] is not None for body in beats().values())
        birth = next(s for s in centre.statuses() if s["state"] == "online")
        assert "camera:1" in birth["drivers"]
    finally:
        stop.set()
        runner.join(30)
        centre.link.stop()
    assert centre.statuses()[-1]["reason"] == "shutdown"
