"""Ingest benchmark: in one run, the ceilings (a bare paho subscriber's QoS 1 rate; InfluxDB
1.x's batched write rate) and StationWatch ingest's sustained rate with zero loss; then ingest's
memory during a QoS 0 flood with InfluxDB stopped, as a ratio to its memory at rest.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--messages 100000] [--flood 200000]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, publish_in_process, write_section  # noqa: E402

from stationwatch.broker.influx import InfluxV1Writer, Point  # noqa: E402
from stationwatch.broker.ingest import IngestOptions, run_ingest  # noqa: E402
from stationwatch.broker.stack import LocalInfluxDB, LocalMosquitto, free_port  # noqa: E402
from stationwatch.core.config import load_config  # noqa: E402
from stationwatch.core.contract import Heartbeat, MessageClass, Reading, encode, subscription, topic  # noqa: E402
from stationwatch.core.mqtt import BrokerAddress, MqttLink  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "city-station.yaml"
SENSORS = ["t-dorm-m1", "t-dorm-m2", "t-dorm-f1", "t-minors-1", "t-med-obs", "t-hall", "supply-main", "heat-kitchen"]


def messages(n: int, base: float) -> list[tuple[str, bytes]]:
    return [(topic("sl-station", "gw-sl-main", MessageClass.READING, SENSORS[i % len(SENSORS)]),
             encode(Reading(v=1, ts=base + i * 0.001, seq=i, value=20 + i % 50 / 10, unit="°C"))) for i in range(n)]


def ceiling_subscribe(address: BrokerAddress, msgs) -> float:
    """A bare paho subscriber that only counts (QoS 1, automatic PUBACK)."""
    got, done = [0], threading.Event()
    first: list[float] = []

    def on_message(t, p, m):
        if not first:
            first.append(time.perf_counter())
        got[0] += 1
        if got[0] == len(msgs):
            done.set()
    link = MqttLink(address, "bench-raw-sub", on_message=on_message).start()
    link.subscribe_wait(subscription(), 1)
    start, _, proc = publish_in_process(address.host, address.port, msgs)
    t0 = time.perf_counter()
    start.set()
    if not done.wait(300):
        raise SystemExit(f"raw subscriber got {got[0]} of {len(msgs)}")
    elapsed = time.perf_counter() - t0
    proc.join()
    link.stop()
    return len(msgs) / elapsed


def ceiling_influx(url: str, n: int, base: float) -> float:
    w = InfluxV1Writer(url, "bench_raw")
    w.ensure_schema()
    points = [Point("reading", {"site": "s", "gateway": "g", "room": "r", "sensor": SENSORS[i % 8], "kind": "temperature"},
                    {"value": 20.5, "quality": "ok", "seq": i, "historical": False}, int((base + i * 0.001) * 1000))
              for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, 5000):
        w.write(points[i:i + 5000])
    return n / (time.perf_counter() - t0)


def ingest_rate(address: BrokerAddress, influx_url: str, msgs, workdir: Path) -> tuple[float, int]:
    cfg = load_config(EXAMPLE)
    stop, ready = threading.Event(), threading.Event()
    holder = {}
    thread = threading.Thread(target=lambda: holder.setdefault("i", run_ingest(
        cfg, address, influx_url, "bench_ingest", workdir / "q.db", stop,
        options=IngestOptions(metrics_every_s=5), ready=ready)), daemon=True)
    thread.start()
    ready.wait(30)
    writer = InfluxV1Writer(influx_url, "bench_ingest")
    time.sleep(0.5)  # let the SUBACK land before the burst (the burst is what is measured)
    start, _, proc = publish_in_process(address.host, address.port, msgs)
    t0 = time.perf_counter()
    start.set()
    n = len(msgs)
    while True:
        rows = list(writer.query('SELECT count("value") FROM "reading"').get_points())
        count = rows[0]["count"] if rows else 0
        if count >= n:
            break
        if time.perf_counter() - t0 > 600:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    proc.join()
    stop.set()
    thread.join(30)
    return n / elapsed, count


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _metrics(port: int) -> dict[str, float]:
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {m[0]: float(m[1]) for m in re.findall(r"^stationwatch_ingest_(\w+) ([\d.e+-]+)$", text, re.M)}


def flood_memory(workdir: Path, n: int) -> dict[str, float]:
    """`stationwatch ingest` as its own process; InfluxDB stopped; ``n`` QoS 0 camera heartbeats.
    RSS (VmRSS) sampled every 0.1 s until ingest has received them all."""
    with LocalMosquitto(workdir / "fm") as broker, LocalInfluxDB(workdir / "fi") as influx:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "stationwatch.cli", "ingest", "-c", str(EXAMPLE), "--broker",
                                 f"{broker.host}:{broker.port}", "--influx", influx.url, "--database", "bench_flood",
                                 "--quarantine", str(workdir / "fq.db"), "--metrics-port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while _metrics(port).get("subscribed") != 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2)  # settled: the canary has run, the interpreter is warm
            rest = _rss_mb(proc.pid)
            influx.stop()
            link = MqttLink(BrokerAddress(broker.host, broker.port), "bench-flood").start()
            now, cams = time.time(), ["cam-hall", "cam-med-obs", "cam-kitchen"]
            peak, t0 = rest, time.perf_counter()
            for i in range(n):
                link.publish(topic("sl-station", "gw-sl-main", MessageClass.HEARTBEAT, cams[i % 3]),
                             encode(Heartbeat(v=1, ts=now, seq=i, online=True)), MessageClass.HEARTBEAT)
                if i % 5000 == 0:
                    peak = max(peak, _rss_mb(proc.pid))
            m: dict[str, float] = {}
            while time.perf_counter() - t0 < 300:
                peak = max(peak, _rss_mb(proc.pid))
                m = _metrics(port)
                if m.get("received_total", 0) >= n:
                    break
                time.sleep(0.1)
            link.stop()
            return {"rest": rest, "peak": peak, "received": m.get("received_total", 0), "dropped": m.get("dropped_total", 0),
                    "queue": m.get("queue_depth", 0), "queue_mb": m.get("queue_bytes", 0) / 2**20}
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--flood", type=int, default=200_000)
    args = ap.parse_args()
    host_info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with LocalMosquitto(tmp / "m") as broker, LocalInfluxDB(tmp / "i") as influx:
            address = BrokerAddress(broker.host, broker.port)
            base = time.time() - 86400
            msgs = messages(args.messages, base)
            raw_sub = ceiling_subscribe(address, msgs)
            raw_influx = ceiling_influx(influx.url, args.messages, base)
            rate, stored = ingest_rate(address, influx.url, msgs, tmp)
        flood = flood_memory(tmp, args.flood)
    lost = args.messages - stored
    growth = flood["peak"] / flood["rest"]
    flood_verdict = "met" if growth <= 1.5 and flood["received"] >= args.flood else "NOT met"
    ratio = rate / raw_sub
    verdict = "met" if ratio >= 0.5 and lost == 0 else "NOT met"
    text = f"""## Ingest (MQTT → InfluxDB)

Command: `make bench` (this part: `.venv/bin/python tests/benchmarks/bench_ingest.py --messages {args.messages}`).
Machine: {host_info}.
Conditions: Mosquitto (project config, `set_tcp_nodelay true`) and InfluxDB 1.6.7 started fresh on this machine;
{args.messages:,} QoS 1 readings from one publisher process; every process on the same 2 cores.

| measure | rate |
|---|---|
| ceiling: bare paho subscriber, QoS 1, counting only | {raw_sub:,.0f} msg/s |
| ceiling: InfluxDB 1.x batched writes (5,000 points a batch) | {raw_influx:,.0f} points/s |
| StationWatch ingest, sustained, ack after write (published → all stored) | {rate:,.0f} msg/s |
| stored / published | {stored:,} / {args.messages:,} (lost: {lost}) |
| **ratio ingest / subscribe ceiling** | **{ratio:.2f}** (goal ≥ 0.5 with zero loss: {verdict}) |

Memory during a QoS 0 flood with InfluxDB down (`--flood {args.flood}`): `stationwatch ingest` as its own
process on a fresh Mosquitto and InfluxDB; InfluxDB stopped; {args.flood:,} QoS 0 camera heartbeats from
one publisher; RSS (VmRSS of the ingest process) sampled every 0.1 s until ingest had received them all.

| measure | value |
|---|---|
| RSS at rest (subscribed, before the flood) | {flood["rest"]:.1f} MB |
| RSS, highest sample during the flood | {flood["peak"]:.1f} MB |
| received / dropped (routine QoS 0 beyond the queue's bound) | {flood["received"]:,.0f} / {flood["dropped"]:,.0f} |
| queue at the end | {flood["queue"]:,.0f} messages, {flood["queue_mb"]:.1f} MB |
| **ratio highest / at rest** | **{growth:.2f}** (goal ≤ 1.5: {flood_verdict}) |
"""
    write_section("ingest", text)
    print(text)


if __name__ == "__main__":
    main()
