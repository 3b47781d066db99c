"""A power cut of the central server: the broker (which saves its queues to disk only every 30 s)
and ingest SIGKILLed together in the middle of a stream. Every reading the gateway took must reach
InfluxDB: the gateway's spool keeps a reading until ingest says it stored it (``cmd/stored``), not
merely until the broker's PUBACK, and sends again what the broker acknowledged but lost."""
from __future__ import annotations

import signal
import subprocess
import sys
import uuid

import pytest

from stationwatch.broker.influx import InfluxV1Writer
from stationwatch.broker.stack import LocalMosquitto
from stationwatch.core.agent_settings import AgentSettings
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.gateway.agent import Agent
from stationwatch.gateway.spool import Spool
from stationwatch.sensors.base import Sample

from support import EXAMPLES, wait_for

pytestmark = pytest.mark.e2e


class Thermometers:
    family = "onewire"

    def __init__(self, sensors: list[str]):
        self.sensors = sensors

    def read(self, now: float) -> list[Sample]:
        return [Sample(s, 21.0, "ok", now) for s in self.sensors]

    def close(self) -> None:
        pass


def ingest(tmp_path, broker, influxdb, database: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stationwatch.cli", "ingest", "-c", str(EXAMPLES / "city-station.yaml"),
                             "--broker", f"{broker.host}:{broker.port}", "--influx", influxdb.url, "--database", database,
                             "--quarantine", str(tmp_path / "q.db"), "--instance", database],
                            stdout=open(tmp_path / "ingest.log", "ab"), stderr=subprocess.STDOUT)


def stored_seqs(writer: InfluxV1Writer) -> set[int]:
    return {int(r["seq"]) for r in writer.query('SELECT "seq" FROM "reading" WHERE "gateway" = \'gw-sl-main\'').get_points()}


def test_a_central_power_cut_loses_no_reading_the_gateway_took(tmp_path, influxdb, city_config):
    broker = LocalMosquitto(tmp_path / "mosquitto").start()
    database = f"e2e_ack_{uuid.uuid4().hex[:8]}"
    writer = InfluxV1Writer(influxdb.url, database)
    gw = city_config.gateways[0].model_copy(update={"agent": AgentSettings(
        spool_path=str(tmp_path / "spool.db"), store_timeout_s=5, drain_s=30)})
    sensors = [s.id for s in city_config.sensors if s.kind == "temperature"]
    cfg = city_config.model_copy(update={"gateways": [gw], "cameras": [], "sensors": [
        s.model_copy(update={"interval_s": 0.05}) for s in city_config.sensors if s.id in sensors]})
    proc = ingest(tmp_path, broker, influxdb, database)
    # ingest's persistent session must exist before the gateway speaks (as it does in any deployment
    # past its first start): what is published before anyone subscribed is dropped by the broker
    beats: list = []
    watch = MqttLink(BrokerAddress(broker.host, broker.port), "test-watch-ingest",
                     on_connect=lambda link: link.subscribe(f"sw/svc/v1/ingest/{database}/beat", 1),
                     on_message=lambda t, b, m: beats.append(b)).start()
    wait_for(lambda: any(b"online" in b for b in beats), 30, what="ingest subscribed (its first beat)")
    watch.stop()
    spool = Spool(gw.agent.spool_path, max_bytes=1 << 40)
    agent = Agent(cfg, gw, BrokerAddress(broker.host, broker.port), [Thermometers(sensors)], spool=spool).start()
    try:
        wait_for(lambda: spool.e2e and spool.stats.stored > 200, 60, what="ingest's receipts reaching the gateway")
        broker.kill()  # the power cut: both at once, the broker's last 30 s of queues never saved
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        taken = spool.last_seq
        broker = LocalMosquitto(tmp_path / "mosquitto", port=broker.port).start()
        proc = ingest(tmp_path, broker, influxdb, database)
        wait_for(lambda: agent.born.is_set() and agent.stats["births"] >= 2, 30, what="the gateway back online")
        wait_for(lambda: set(range(taken + 1)) <= stored_seqs(writer), 90,
                 what="every reading taken before the cut in InfluxDB")
    finally:
        agent.stop()
        spool.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        broker.stop()
    last = spool.last_seq
    missing = set(range(last + 1)) - stored_seqs(writer)
    assert not missing, f"{len(missing)} of {last + 1} readings lost: {sorted(missing)[:20]}"
    assert spool.rows == 0, "the clean stop waited until the centre had stored everything"
