"""The alert engine's own cost per reading at a country's scale, in-process (no broker, no other
process): AlertEngine.handle_batch on the national fleet's `readings` batches (gateway/fleet.py),
2,000 sites × 64 sensors, the engine's clock moving 10 s per cycle as the fleet's does, the cycle
collector tuned as the service tunes it. Once with every value as the last one, once with analog
values drifting (a chance of 0.5 per reading of a 0.1 step), the way real rooms read.

The ceiling measured in the same run: `json.loads` of the same batches, the least any Python
consumer of them does. Reported: µs of CPU per reading (median of the cycles after the first two),
the ratio to that ceiling, and the share of one core 12,800 readings a second take.

    .venv/bin/python tests/benchmarks/bench_engine.py [--sites 2000] [--cycles 6]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, write_section  # noqa: E402

from stationwatch.alerts.engine import AlertEngine  # noqa: E402
from stationwatch.core import collector  # noqa: E402
from stationwatch.core.config import parse_config  # noqa: E402
from stationwatch.gateway.fleet import SENSORS_PER_SITE, Fleet, national_config  # noqa: E402


class Collect:
    """A publisher that keeps (topic, payload) instead of sending."""
    _mid = 0

    def packet(self, topic: str, body: bytes, qos: int = 1, retain: bool = False):
        return topic, body


def run(sites: int, cycles: int, drift: float) -> dict[str, float]:
    raw = national_config(sites)
    raw["supervision"] = {"patrol_timeout_s": 600}
    cfg = parse_config(raw)
    clock = [time.time()]
    with tempfile.TemporaryDirectory() as tmp:
        engine = AlertEngine(cfg, Path(tmp) / "alerts.db", clock=lambda: clock[0])
        collector.tune()
        fleet = Fleet(sites, Collect(), drift=drift, batched=True)
        engine.handle_batch(fleet.births())
        per, ceiling = [], []
        for _ in range(cycles):
            clock[0] += 10.0
            batches = [m for site in fleet.sites for m in fleet.readings(site, clock[0])]
            t0 = time.process_time()
            for i in range(0, len(batches), 60):  # ~4,000 observations a commit, as the service's inbox gives
                engine.handle_batch(batches[i:i + 60])
            engine.tick()
            per.append((time.process_time() - t0) / (sites * SENSORS_PER_SITE) * 1e6)
            t0 = time.process_time()
            for _topic, body in batches:
                json.loads(body)
            ceiling.append((time.process_time() - t0) / (sites * SENSORS_PER_SITE) * 1e6)
        resting = engine.stats.resting / max(1, engine.stats.accepted)
        engine.close()
    us, floor = statistics.median(per[2:] or per), statistics.median(ceiling[2:] or ceiling)
    return {"us": us, "floor": floor, "ratio": us / floor, "cores": us * 12_800 / 1e6, "resting": resting}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=2000)
    ap.add_argument("--cycles", type=int, default=6)
    args = ap.parse_args()
    host = machine()
    rows = {drift: run(args.sites, args.cycles, drift) for drift in (0.0, 0.5)}
    text = f"""## The alert engine's cost per reading (in-process)

Command: `.venv/bin/python tests/benchmarks/bench_engine.py --sites {args.sites} --cycles {args.cycles}`.
Machine: {host}.
Conditions: `AlertEngine.handle_batch` on the national fleet's batches ({args.sites:,} sites × {SENSORS_PER_SITE}
sensors, one `readings` message per site per 10 s cycle), a SQLite store in a temporary directory, 60 batches
a commit, a tick per cycle, the engine's clock moving 10 s a cycle, the cycle collector tuned as the service
does; CPU time (process), median of cycles 3–{args.cycles}. Ceiling: `json.loads` of the same batches.

| analog values | µs a reading | json.loads alone (µs) | ratio | readings at rest | one core's share at 12,800/s |
|---|---|---|---|---|---|
""" + "".join(f"| {'drifting (0.5)' if d else 'as the last'} | {r['us']:.1f} | {r['floor']:.2f} | {r['ratio']:.0f} × | "
              f"{r['resting']:.0%} | {r['cores']:.2f} |\n" for d, r in rows.items())
    write_section("engine", text)
    print(text)


if __name__ == "__main__":
    main()
