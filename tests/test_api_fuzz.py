"""Schemathesis over the API's own OpenAPI, against `stationwatch serve` as a real process on a real
alert store filled by the engine from wire messages (fires, a pre-alarm, a boiler fault, a resolved
camera alert, a drill, a maintenance window) while `stationwatch alerts` runs on it (so /health is
healthy and the engine writes while the API is hammered), signed in as an admin and, in a second
run, as the station's duty officer. Every check: no 500, every status code and body as documented,
invalid input refused, valid input accepted. Bounded by examples per operation and a time budget.

Allowances, written in SCHEMATHESIS below, for what JSON Schema cannot say: a schema-valid maintenance
window may still be refused with 422 (its room and devices must be in its site and it must end after it
starts); so may a hazard entry (its room must be in its site, its deadline in the future) and a
verification that fails it (a rejection needs its reason); a report asked of an API started without
InfluxDB answers 503, as documented. One worker: hypothesis describing its strategies from two threads at once
trips CPython 3.11's AST recursion check (a runtime error of the tool, not of the API)."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from stationwatch.alerts.auth import token_hash
from stationwatch.alerts.engine import AlertEngine
from stationwatch.alerts.silences import Silences
from stationwatch.broker.stack import free_port
from stationwatch.core.config import load_config
from stationwatch.core.mqtt import MqttLink

from support import EXAMPLES, wait_for
from support.alerts import SITE, Wire

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "stationwatch.cli"]
TOKENS = {"admin": "fuzz-admin-token-0123456789", "zhangsan": "fuzz-staff-token-0123456789"}
USERS = [{"id": "admin", "name": "管理员", "role": "admin", "token_sha256": token_hash(TOKENS["admin"])},
         {"id": "zhangsan", "name": "值班员 张三", "role": "staff", "sites": [SITE],
          "token_sha256": token_hash(TOKENS["zhangsan"])}]
SCHEMATHESIS = """
# one path per block (a block's include-* keys are alternatives, not all required)
[[operations]]
include-path = "/api/maintenance"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path-regex = "^/api/hazards"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path = "/api/reports"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "503"]
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""


def seed(cfg_path: Path, db: Path) -> None:
    """Real alerts, written by the engine from the messages a gateway sends."""
    now, wire = time.time(), Wire()
    engine = AlertEngine(load_config(cfg_path), db)
    engine.watching = False
    try:
        engine.handle(*wire.event("smk-med-obs", "alarm", ts=now))
        engine.handle(*wire.event("smk-dorm-f1a", "alarm", ts=now))
        engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=now + 1))
        engine.handle(*wire.event("boiler-fault", "alarm", ts=now + 2))
        engine.handle(*wire.event("smk-store", "alarm", ts=now + 3, drill=True))
        for i in range(3):
            engine.handle(*wire.heartbeat("cam-hall", False, ts=now + 60 * i))
        engine.handle(*wire.heartbeat("cam-hall", True, ts=now + 200))
        engine.tick(now + 120)
        Silences(engine.cfg, engine.store).create(SITE, "kitchen", [], now, now + 3600, "检修", "admin")
    finally:
        engine.close()


def answering(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.fixture
def served(tmp_path, mosquitto, broker_address):
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["users"], data["api"] = USERS, {"environment": "production"}
    cfg = tmp_path / "station.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    db, port, client_id = tmp_path / "alerts.db", free_port(), f"alerts-fuzz-{uuid.uuid4().hex[:8]}"
    seed(cfg, db)
    common = ["-c", str(cfg), "--db", str(db)]
    procs = [subprocess.Popen(CLI + args, stdout=open(tmp_path / f"{name}.log", "wb"), stderr=subprocess.STDOUT,
                              start_new_session=True) for name, args in (
        ("serve", ["serve", *common, "--port", str(port)]),
        ("alerts", ["alerts", *common, "--broker", f"{mosquitto.host}:{mosquitto.port}", "--client-id", client_id]))]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answering(url + "/health") == 200, 60, what="the API up and the engine beating")
        yield url, tmp_path, tmp_path / "serve.log"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(20)
        MqttLink(broker_address, client_id, clean_start=True).start().stop()  # drop the engine's session


@pytest.mark.parametrize("user", sorted(TOKENS))
def test_schemathesis_finds_no_server_error_and_no_schema_violation(served, user):
    url, tmp, log = served
    report, config = tmp / f"report-{user}", tmp / "schemathesis.toml"
    config.write_text(SCHEMATHESIS, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{url}/openapi.json",
         "--checks", "all",
         "-H", f"Authorization: Bearer {TOKENS[user]}", "--phases", "examples,coverage,fuzzing",
         "--max-examples", "40", "--max-time", "45", "--seed", "15", "--workers", "1",
         "--generation-database", "none", "--no-color", "--report", "ndjson", "--report-dir", str(report)],
        capture_output=True, text=True, timeout=240, cwd=tmp)
    (report / "schemathesis.txt").write_text(run.stdout + run.stderr, encoding="utf-8")
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
    assert "Internal Server Error" not in log.read_text(errors="replace")
