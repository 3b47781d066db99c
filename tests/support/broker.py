"""Helpers the broker tests share: a config of two sites, each with a gateway and a smoke detector,
for the generated accounts and ACL (a gateway speaks only for its own site); ingest run as its own
process, as `stationwatch ingest` runs (IngestProcess), with its metrics and memory."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
import uuid

from stationwatch.broker.stack import free_port

from . import EXAMPLES, wait_for

TWO_SITES = {
    "name": "two sites",
    "bureaus": [{"id": "city", "name": "市民政局", "level": "city"}],
    "sites": [
        {"id": "site-a", "name": "甲站", "bureau": "city", "rooms": [{"id": "dorm", "name": "宿舍", "kind": "dormitory"}]},
        {"id": "site-b", "name": "乙站", "bureau": "city", "rooms": [{"id": "dorm", "name": "宿舍", "kind": "dormitory"}]},
    ],
    "gateways": [{"id": "gw-a", "name": "A", "site": "site-a"}, {"id": "gw-b", "name": "B", "site": "site-b"}],
    "sensors": [
        {"id": "smk-a", "name": "A 感烟", "kind": "smoke", "gateway": "gw-a", "room": "dorm"},
        {"id": "smk-b", "name": "B 感烟", "kind": "smoke", "gateway": "gw-b", "room": "dorm"},
    ],
}


class IngestProcess:
    """`stationwatch ingest` in a process of its own, with its metrics on a free port."""

    def __init__(self, broker, influx_url, database, tmp_path, name="ingest", extra=(), instance=None, config=None):
        self.metrics_port = free_port()
        self.log = tmp_path / f"{name}-{uuid.uuid4().hex[:4]}.log"
        self.quarantine = tmp_path / f"quarantine-{name}.db"
        self.args = [sys.executable, "-m", "stationwatch.cli", "ingest", "-c", str(config or EXAMPLES / "city-station.yaml"),
                     "--broker", f"{broker.host}:{broker.port}", "--influx", influx_url, "--database", database,
                     "--quarantine", str(self.quarantine), "--metrics-port", str(self.metrics_port),
                     # an own persistent session per test: the suite's broker is shared
                     *(["--instance", instance or database] if "--instance" not in extra else []), *extra]
        self.proc = subprocess.Popen(self.args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_for(lambda: (self.metrics() or {}).get("subscribed") == 1, timeout=30, what="ingest subscribed")

    def metrics(self) -> dict[str, float] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            return None
        return {m[0]: float(m[1]) for m in re.findall(r"^stationwatch_ingest_(\w+) ([\d.e+-]+)$", text, re.M)}

    def rss_mb(self) -> float:
        """The process's resident memory now (VmRSS)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        return self.proc.returncode


class IngestThread:
    """`run_ingest` in a thread of the test process on a database of its own (named after a fresh
    uuid), until the ``with`` block ends: ``(broker address, a writer on its database, quarantine path)``.
    ``prepare(writer)`` runs before ingest starts (a database as an earlier setup left it)."""

    def __init__(self, cfg, mosquitto, influxdb, tmp_path, prepare=None):
        self.cfg, self.mosquitto, self.influxdb, self.tmp_path = cfg, mosquitto, influxdb, tmp_path
        self.prepare = prepare

    def __enter__(self):
        import threading

        from stationwatch.broker.influx import InfluxV1Writer
        from stationwatch.broker.ingest import IngestOptions, run_ingest
        from stationwatch.core.mqtt import BrokerAddress
        database = f"t_{uuid.uuid4().hex[:8]}"
        self.writer = InfluxV1Writer(self.influxdb.url, database)
        if self.prepare is not None:
            self.prepare(self.writer)
        self.stop, ready = threading.Event(), threading.Event()
        address = BrokerAddress(self.mosquitto.host, self.mosquitto.port)
        self.thread = threading.Thread(target=run_ingest, args=(self.cfg, address, self.influxdb.url, database,
                                                                self.tmp_path / "q.db", self.stop),
                                       kwargs={"options": IngestOptions(instance=database), "ready": ready}, daemon=True)
        self.thread.start()
        assert ready.wait(30), "ingest did not subscribe"
        return address, self.writer, self.tmp_path / "q.db"

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(15)
        self.writer.close()
