"""Ingest benchmark: in one run, the ceilings (a bare paho subscriber's QoS 1 rate; InfluxDB
1.x's batched write rate) and StationWatch ingest's sustained rate with zero loss.

    .venv/bin/python tests/benchmarks/bench_ingest.py [--messages 100000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, publish_in_process, write_section  # noqa: E402

from stationwatch.broker.influx import InfluxV1Writer, Point  # noqa: E402
from stationwatch.broker.ingest import IngestOptions, run_ingest  # noqa: E402
from stationwatch.broker.stack import LocalInfluxDB, LocalMosquitto  # noqa: E402
from stationwatch.core.config import load_config  # noqa: E402
from stationwatch.core.contract import MessageClass, Reading, encode, subscription, topic  # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
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
    lost = args.messages - stored
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
"""
    write_section("ingest", text)
    print(text)


if __name__ == "__main__":
    main()
