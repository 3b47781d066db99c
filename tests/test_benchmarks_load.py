"""`make bench` is not part of `make test`, so a change elsewhere can break a benchmark before anyone
runs it (bench_peer once looked up a line of the MQTT link that had changed, and every benchmark that
imports it stopped at import). Each benchmark must at least load and answer ``--help``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("bench_*.py"))


def test_every_benchmark_is_found():
    assert {"bench_national.py", "bench_peer.py", "bench_ingest.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_loads(script):
    r = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{script} --help failed:\n{r.stderr[-3000:]}"
    assert "usage" in r.stdout.lower(), f"{script} printed no usage:\n{r.stdout[-1000:]}"
