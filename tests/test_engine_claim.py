"""One alert engine per store and per MQTT client id: `stationwatch alerts` as real processes on the
suite's Mosquitto. A second engine on the same store, or with a client id a live engine uses, exits
with status 2 and says why; the first keeps its session and still confirms a two-detector fire. A
SIGKILLed engine does not block its own restart, a retained "online" beat nobody refreshes does
not keep the next engine out, and an engine started while the broker is down works and connects
once it is back."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from stationwatch.alerts.claim import LISTEN_S, lock_path
from stationwatch.alerts.store import ENGINE, Store
from stationwatch.broker.stack import LocalMosquitto, free_port
from stationwatch.core.contract import MessageClass
from stationwatch.core.mqtt import MqttLink
from stationwatch.core.wire import payload, service_topic

from support import EXAMPLES, wait_for
from support.alerts import SITE, Wire, send, wait_subscribed

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "stationwatch.cli"]
CONFIG = EXAMPLES / "city-station.yaml"


class Engine:
    """`stationwatch alerts` in a process of its own."""

    def __init__(self, mosquitto, db: Path, client_id: str):
        self.db, self.log = db, db.with_name(f"{db.stem}-{uuid.uuid4().hex[:4]}.log")
        self.proc = subprocess.Popen(CLI + ["alerts", "-c", str(CONFIG), "--broker", f"{mosquitto.host}:{mosquitto.port}",
                                            "--db", str(db), "--client-id", client_id],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def connected_since(self, at: float) -> bool:
        """Its heartbeat in the store is newer than ``at`` and says it is connected to the broker."""
        store = Store(self.db)
        try:
            beat = store.last_beat(ENGINE)
        finally:
            store.close()
        return beat is not None and beat[0] > at and beat[1].get("connected") is True

    def refused(self) -> str:
        """Waits for the process to exit; its status must be 2. Returns what it said."""
        assert self.proc.wait(60) == 2, self.log.read_text(errors="replace")
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def engines(mosquitto, broker_address):
    """Call with (db, client id) for an engine process; all are stopped afterwards and their
    persistent sessions dropped from the shared broker."""
    started: list[tuple[Engine, str]] = []

    def start(db: Path, client_id: str) -> Engine:
        started.append((Engine(mosquitto, db, client_id), client_id))
        return started[-1][0]
    yield start
    for engine, _ in started:
        engine.stop()
    for client_id in {c for _, c in started}:
        MqttLink(broker_address, client_id, clean_start=True).start().stop()  # the session goes with it


def unique_id() -> str:
    return f"alerts-claim-{uuid.uuid4().hex[:8]}"


def test_a_second_engine_on_the_same_store_refuses_to_start_and_names_the_store_and_its_holder(tmp_path, engines):
    db = tmp_path / "alerts.db"
    first = engines(db, unique_id())
    wait_for(lambda: first.connected_since(0), 30, what="the first engine connected")
    second = engines(db, unique_id()).refused()
    assert f"告警库 {db.resolve()}" in second and f"alert store {db.resolve()} is in use" in second
    assert f"pid {first.proc.pid}" in second and "one engine per store" in second and "Traceback" not in second
    (tmp_path / "same.db").symlink_to(db)  # another name for the same file is the same store
    assert "one engine per store" in engines(tmp_path / "same.db", unique_id()).refused()
    refused_at = time.time()
    wait_for(lambda: first.connected_since(refused_at), 15, what="the first engine beating on")


def test_a_killed_engine_does_not_block_its_own_restart(tmp_path, engines):
    db, client_id = tmp_path / "alerts.db", unique_id()
    first = engines(db, client_id)
    wait_for(lambda: first.connected_since(0), 30, what="the engine connected")
    first.kill()
    killed_at = time.time()
    again = engines(db, client_id)
    wait_for(lambda: again.connected_since(killed_at), 30, what="the restarted engine connected")
    assert f'"pid": {again.proc.pid}' in lock_path(db).read_text()


def test_a_second_engine_with_a_live_client_id_refuses_and_the_first_keeps_every_detector(
        tmp_path, engines, publisher):
    client_id = unique_id()
    first = engines(tmp_path / "one.db", client_id)
    wait_for(lambda: first.connected_since(0), 30, what="the first engine connected")
    said = engines(tmp_path / "two.db", client_id).refused()
    assert f"客户端编号 {client_id}" in said and f"MQTT client id '{client_id}'" in said
    assert "split a zone's detectors" in said and "--client-id" in said and "Traceback" not in said
    store, wire = Store(tmp_path / "one.db"), Wire()
    try:
        wait_subscribed(store, publisher, wire)
        now = time.time()
        send(publisher, wire.event("smk-dorm-f1a", "alarm", ts=now))
        send(publisher, wire.event("smk-dorm-f1b", "alarm", ts=now + 1))
        fire = wait_for(lambda: [a for a in store.alerts() if a.rule == "fire" and a.severity == "critical"], 15,
                        what="both detectors reaching the one engine: a confirmed fire")
        assert fire[0].site == SITE and set(fire[0].detail["detectors"]) == {"smk-dorm-f1a", "smk-dorm-f1b"}
    finally:
        send(publisher, wire.event("smk-dorm-f1a", "normal", ts=time.time()))
        send(publisher, wire.event("smk-dorm-f1b", "normal", ts=time.time()))
        store.close()


def test_a_retained_online_beat_nobody_refreshes_does_not_keep_the_engine_out(tmp_path, engines, broker_address):
    """The central server lost power: the broker kept the last 'online' beat and never published the will."""
    client_id = unique_id()
    ghost = MqttLink(broker_address, f"test-ghost-{uuid.uuid4().hex[:6]}").start()
    ghost.publish(service_topic("alerts", client_id), payload(time.time() - 60, state="online", session=1, count=9),
                  MessageClass.STATUS).wait_for_publish(5)
    try:
        started_at = time.time()
        engine = engines(tmp_path / "alerts.db", client_id)
        wait_for(lambda: engine.connected_since(started_at), 30 + LISTEN_S, what="the engine connected")
        assert "taken as gone" in engine.log.read_text(errors="replace")
    finally:
        ghost.publish(service_topic("alerts", client_id), b"", MessageClass.STATUS).wait_for_publish(5)
        ghost.stop()


def test_an_engine_started_while_the_broker_is_down_works_and_connects_once_it_is_back(tmp_path):
    broker = LocalMosquitto(tmp_path / "mosquitto", port=free_port())  # not started yet: the broker is down
    engine = Engine(broker, tmp_path / "alerts.db", unique_id())
    try:
        store = Store(tmp_path / "alerts.db")
        try:  # the engine beats in its store (the watcher and /health read it) without the broker
            wait_for(lambda: (store.last_beat(ENGINE) or (0, {}))[1].get("connected") is False, 30,
                     what="the engine beating, not connected")
        finally:
            store.close()
        with broker:
            back = time.time()
            wait_for(lambda: engine.connected_since(back), 30, what="the engine connected once the broker is back")
    finally:
        engine.stop()
