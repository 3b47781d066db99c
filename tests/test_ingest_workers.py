"""`stationwatch ingest --workers N`: N ingest processes on one shared subscription, kept running by
the command, on the real broker and database. The stream is spread over them, batched and single
readings alike; a worker SIGKILLed mid-stream is started again under its name and nothing is lost
or doubled; SIGTERM stops them all cleanly."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from stationwatch.broker.influx import InfluxV1Writer
from stationwatch.broker.stack import LocalMosquitto, free_port
from stationwatch.core.contract import MessageClass, topic
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.wire import batch_payload

from support import EXAMPLES, wait_for

pytestmark = pytest.mark.e2e
SITE, GW = "sl-station", "gw-sl-main"
SENSORS = ["t-dorm-m1", "t-dorm-m2", "t-dorm-f1", "t-minors-1", "t-med-obs", "t-hall"]
PER_BATCH = 6


@pytest.fixture
def mosquitto(tmp_path):
    with LocalMosquitto(tmp_path / "mosquitto") as broker:
        yield broker


def _metrics(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {m[0]: float(m[1]) for m in re.findall(r"^stationwatch_ingest_(\w+) ([\d.e+-]+)$", text, re.M)}


def _publish(link: MqttLink, first: int, batches: int, base: float) -> None:
    infos = []
    for b in range(first, first + batches):
        items = [{"sensor": s, "ts": base + b + i * 0.001, "value": 20.0 + i, "unit": "°C", "quality": "ok"}
                 for i, s in enumerate(SENSORS)]
        infos.append(link.publish(topic(SITE, GW, MessageClass.READINGS), batch_payload(base + b, b * PER_BATCH, items),
                                  MessageClass.READINGS))
    for info in infos:
        info.wait_for_publish(30)


def _stored(writer) -> list[int]:
    return sorted(r["seq"] for r in writer.query('SELECT "seq", "value" FROM "reading"').get_points())


def _worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_workers_share_the_stream_and_a_killed_one_is_restarted_losing_nothing(mosquitto, influxdb, tmp_path):
    db, prefix, base_port = f"wk_{uuid.uuid4().hex[:6]}", f"wk{uuid.uuid4().hex[:4]}-", free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stationwatch.cli", "ingest", "-c", str(EXAMPLES / "city-station.yaml"),
                             "--broker", f"{mosquitto.host}:{mosquitto.port}", "--influx", influxdb.url, "--database", db,
                             "--quarantine", str(tmp_path / "q.db"), "--workers", "2", "--instance", prefix,
                             "--metrics-port", str(base_port)],
                            stdout=open(tmp_path / "ingest.log", "ab"), stderr=subprocess.STDOUT)
    ports = [base_port + 1, base_port + 2]
    link = MqttLink(BrokerAddress(mosquitto.host, mosquitto.port), f"pub-{uuid.uuid4().hex[:6]}").start()
    writer = InfluxV1Writer(influxdb.url, db)
    base = time.time() - 7200
    try:
        wait_for(lambda: all(_metrics(p).get("subscribed") == 1 for p in ports), 60, what="both workers subscribed")
        _publish(link, 0, 300, base)
        wait_for(lambda: len(_stored(writer)) >= 300 * PER_BATCH, 60, interval=0.5, what="the first 300 batches")
        received = [_metrics(p)["received_total"] for p in ports]
        assert min(received) >= 50, f"the stream is not shared: {received}"
        [victim, _other] = _worker_pids(proc.pid)
        os.kill(victim, signal.SIGKILL)  # mid-stream: what it held unacknowledged stays in its session
        _publish(link, 300, 300, base)
        wait_for(lambda: len(_worker_pids(proc.pid)) == 2 and victim not in _worker_pids(proc.pid), 30,
                 what="the killed worker started again")
        wait_for(lambda: _stored(writer) == list(range(600 * PER_BATCH)), 90, interval=0.5,
                 what="every item stored exactly once")
    finally:
        link.stop()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "ingest.log").read_text(errors="replace")[-3000:]
    assert _worker_pids(proc.pid) == []
