"""InfluxDB under the national load, alone: what the database itself costs for 2,000 sites' readings
(128,000 sensors, 12,800 readings a second, the `reading` point ingest writes: four fields, five tags),
in two setups, one after the other in the same run:

- *before*: InfluxDB's own defaults for the cache (`cache-snapshot-memory-size` 25 MB) and the
  continuous query `reading_1m` making the 1-minute trend;
- *shipped*: `broker/influxdb.conf.tmpl` as the project starts it (256 MB) and the trend made from
  the written readings by `broker/trend.py` (`MinuteTrend`), its points written beside them.

Measured: influxd's CPU (utime + stime from /proc) over the run and its busiest 10 s, its RSS at the
end, and the trend's own cost per reading in Python.

    .venv/bin/python tests/benchmarks/bench_influx_load.py [--seconds 150] [--sites 2000]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, write_section  # noqa: E402

from stationwatch.broker import stack  # noqa: E402
from stationwatch.broker.influx import InfluxV1Writer, Point  # noqa: E402
from stationwatch.broker.trend import MinuteTrend, Recomputer  # noqa: E402

TCK = os.sysconf("SC_CLK_TCK")
KINDS = ("temperature", "humidity", "smoke", "door")


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TCK


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def one_setup(tmp: Path, sites: int, seconds: float, shipped: bool) -> dict:
    render = stack._render

    def defaults(name, **kw):  # the same template with InfluxDB's own cache size
        text = render(name, **kw)
        return text if shipped or not name.startswith("influxdb") else text.replace(
            'cache-snapshot-memory-size = "256m"', 'cache-snapshot-memory-size = "25m"')

    stack._render = defaults
    try:
        influx = stack.LocalInfluxDB(tmp / ("shipped" if shipped else "before")).start()
    finally:
        stack._render = render
    try:
        writer = InfluxV1Writer(influx.url, "national")
        writer.ensure_schema(trend_query=not shipped)
        tags = [{"site": f"site-{s:04d}", "gateway": f"gw-{s:04d}", "room": f"r{d % 8}", "sensor": f"s{s:04d}-{d:02d}",
                 "kind": KINDS[d % 4]} for s in range(sites) for d in range(64)]
        trend = MinuteTrend() if shipped else None
        stop = threading.Event()
        if trend is not None:  # the first minutes after the start, recomputed from raw as ingest does
            recompute = Recomputer(trend, InfluxV1Writer(influx.url, "national", timeout=120).downsample)
            threading.Thread(target=recompute.run, args=(stop,), daemon=True).start()
        rate, batch, rng = sites * 64 / 10, 5000, random.Random(1)
        pid = influx.proc.pid
        t0 = time.monotonic()
        c0, last, busiest, sent, seq, trend_s, trend_points = cpu_s(pid), (t0, cpu_s(pid)), 0.0, 0, 0, 0.0, 0
        while time.monotonic() - t0 < seconds:
            due = int((time.monotonic() - t0) * rate)
            while sent < due:
                n, now = min(batch, due - sent), int(time.time() * 1000)
                points = [Point("reading", tags[(sent + k) % len(tags)],
                                {"quality": "ok", "seq": seq + k, "historical": False,
                                 "value": round(20 + rng.random(), 1)}, now) for k in range(n)]
                writer.write(points)
                if trend is not None:
                    t1 = time.perf_counter()
                    done = trend.add(points)
                    trend_s += time.perf_counter() - t1
                    if done:
                        writer.write(done)
                        trend_points += len(done)
                sent, seq = sent + n, seq + n
            time.sleep(0.05)
            if time.monotonic() - last[0] >= 10:
                c, t = cpu_s(pid), time.monotonic()
                busiest = max(busiest, (c - last[1]) / (t - last[0]))
                last = (t, c)
        elapsed = time.monotonic() - t0
        stop.set()
        return {"cores": (cpu_s(pid) - c0) / elapsed, "busiest": busiest, "rss": rss_mb(pid), "sent": sent,
                "rate": sent / elapsed, "trend_us": trend_s / max(1, sent) * 1e6, "trend_points": trend_points,
                "recomputed": trend.redone if trend is not None else 0}
    finally:
        influx.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=150.0)
    args = ap.parse_args()
    host = machine()
    with tempfile.TemporaryDirectory() as tmp:
        before = one_setup(Path(tmp), args.sites, args.seconds, shipped=False)
        shipped = one_setup(Path(tmp), args.sites, args.seconds, shipped=True)
    text = f"""## InfluxDB under the national load

Command: `.venv/bin/python tests/benchmarks/bench_influx_load.py --sites {args.sites} --seconds {args.seconds:g}`.
Machine: {host}.
Conditions: InfluxDB 1.6.7 alone, started fresh for each setup, one after the other; one Python process
writing {args.sites * 64:,} sensors' `reading` points (five tags, four fields, as ingest writes them) at
{args.sites * 64 / 10:,.0f} a second in batches of 5,000 through `InfluxV1Writer`, each sensor once every 10 s.
*Before*: InfluxDB's default cache snapshot size (25 MB) and the continuous query `reading_1m`.
*Shipped*: `broker/influxdb.conf.tmpl` (`cache-snapshot-memory-size = "256m"`), no continuous query, the
trend made by `MinuteTrend` from the written points and written beside them ({shipped['trend_points']:,} trend points from
memory; the first minute after the start recomputed from `raw` by `Recomputer` for {shipped['recomputed']:,} sites, as ingest does).

| measure | before | shipped |
|---|---|---|
| readings written | {before['sent']:,} ({before['rate']:,.0f}/s) | {shipped['sent']:,} ({shipped['rate']:,.0f}/s) |
| influxd CPU over the run, share of one core | {before['cores']:.2f} | **{shipped['cores']:.2f}** |
| influxd's busiest 10 s | {before['busiest']:.2f} | {shipped['busiest']:.2f} |
| influxd RSS at the end | {before['rss']:,.0f} MB | {shipped['rss']:,.0f} MB |
| the trend's cost in Python, per reading | (in InfluxDB) | {shipped['trend_us']:.2f} µs |

Shipped / before, CPU: **{shipped['cores'] / before['cores']:.2f}**.
"""
    write_section("influx-load", text)
    print(text)


if __name__ == "__main__":
    main()
