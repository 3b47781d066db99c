"""`make demo`: the whole system on one machine — Mosquitto and InfluxDB with their own data
directories on free ports, the simulated station, ingest, the alert engine, the API and duty
board, and a local inbox that shows the notifications the duty staff would receive.
Stops everything cleanly on Ctrl-C.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from stationwatch.broker.stack import LocalInfluxDB, LocalMosquitto, StackError, free_port

log = logging.getLogger("stationwatch.demo")

ENDPOINTS_FILE = "endpoints.json"
DEMO_DIR = Path(".demo")


def demo_endpoints(workdir: Path = DEMO_DIR) -> dict | None:
    """What a running demo wrote about itself (broker, config), so `stationwatch simulate` run
    from the project folder finds the demo's broker without flags."""
    path = workdir / ENDPOINTS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if _alive(data.get("pid")) else None


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (TypeError, ValueError, OSError):
        return False


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "Child":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")
        # own process group: Ctrl-C reaches the demo, which then stops the children in order
        self.proc = subprocess.Popen([sys.executable, "-m", "stationwatch.cli", *self.args],
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Inbox:
    """A local webhook receiver standing in for the duty staff's chat robot: prints each alarm push."""

    def __init__(self, log_path: Path):
        self.count = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.count += 1
                try:
                    data = json.loads(body)
                    text = f"{data.get('title', '')}\n{data.get('message', '')}".strip()
                except ValueError:
                    text = body.decode(errors="replace")
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(f"--- {time.strftime('%H:%M:%S')}\n{text}\n")
                print(f"\n📣 推送 / notification #{outer.count}:\n{text}\n", flush=True)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# the demo gateway's buzzer, relay, LED and silence button (hardware/wiring.md §7), unless the config wires its own
DEMO_ALARM = {"outputs": {"buzzer": 17, "relay": 27, "led": 22}, "silence_button": 12}


def _demo_config(source: Path, target: Path, inbox_port: int, api_port: int) -> None:
    """The demo's copy of the config: every contact's pushes go to the local inbox, so each level
    of the reporting chain shows up in the demo's terminal, and the notices link to this board."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    for contact in data.get("contacts") or []:
        contact["channels"] = [f"json://127.0.0.1:{inbox_port}/{contact.get('id', 'notify')}"]
    data.setdefault("routing", {})["board_url"] = f"http://127.0.0.1:{api_port}/"
    # every hop of the demo's pipeline is supervised from the start; the watcher's backup channel
    # is the inbox too (its notices show in the terminal as 推送 … /backup)
    supervision = data.setdefault("supervision", {})
    supervision.setdefault("expect", ["ingest", "influxdb", "api", "watcher"])
    supervision.setdefault("backup", {}).setdefault("urls", [f"json://127.0.0.1:{inbox_port}/backup"])
    for gateway in data.get("gateways") or []:  # the local alarm of hardware/wiring.md §7, on mock pins
        agent = gateway.setdefault("agent", {})
        taken = {(s.get("source") or {}).get(k) for s in data.get("sensors") or []
                 if s.get("gateway") == gateway.get("id") for k in ("pin", "supervision_pin")}
        alarm_pins = {*DEMO_ALARM["outputs"].values(), DEMO_ALARM["silence_button"]}
        if not agent.get("outputs") and agent.get("silence_button") is None and not taken & alarm_pins:
            agent.update(DEMO_ALARM)
    target.write_text("# generated by `stationwatch demo` from " + str(source) + "\n" +
                      yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _wait_http(url: str, timeout: float, child: Child) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise StackError(f"{child.name} exited:\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise StackError(f"{child.name} did not answer at {url} within {timeout:.0f} s")


# what a run leaves in the work folder, forgotten by --fresh
STATE = ("alerts.db", "alerts.db-wal", "alerts.db-shm", "alerts.quarantine.db", "ingest-quarantine.db",
         "influxdb", "mosquitto", "gateway", "notifications.log", "logs")


def _forget(workdir: Path) -> None:
    for name in STATE:
        path = workdir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _port(wanted: int) -> int:
    """``wanted`` if it is free, else a free port (0: any free port)."""
    if wanted:
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            chosen = free_port()
            print(f"端口 {wanted} 已被占用，改用 {chosen} / port {wanted} is taken: the duty board uses {chosen}",
                  flush=True)
            return chosen
    return free_port()


def _open_alerts(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM alerts WHERE state IN ('pending', 'firing', 'acknowledged')"
                            ).fetchone()[0]


def run_demo(config: Path, workdir: Path, port: int, speed: float, stop: threading.Event,
             fresh: bool = False) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    lock = open(workdir / "demo.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"错误 / error: a demo is already running with {workdir}/ — stop it first (Ctrl-C)", file=sys.stderr)
        return 1
    if fresh:
        _forget(workdir)
    kept = _open_alerts(workdir / "alerts.db") if (workdir / "alerts.db").exists() else None
    logs = workdir / "logs"
    inbox = Inbox(workdir / "notifications.log")
    demo_cfg = workdir / "config.yaml"
    port = _port(port)
    _demo_config(config, demo_cfg, inbox.port, port)
    mosquitto, influx = LocalMosquitto(workdir / "mosquitto"), LocalInfluxDB(workdir / "influxdb")
    children: list[Child] = []
    try:
        print("启动 Mosquitto 与 InfluxDB / starting Mosquitto and InfluxDB …", flush=True)
        mosquitto.start()
        influx.start()
        broker = f"{mosquitto.host}:{mosquitto.port}"
        common = ["--config", str(demo_cfg)]
        children = [
            Child("ingest", ["ingest", *common, "--broker", broker, "--influx", influx.url,
                             "--quarantine", str(workdir / "ingest-quarantine.db")], logs / "ingest.log"),
            Child("alerts", ["alerts", *common, "--broker", broker, "--db", str(workdir / "alerts.db"),
                             "--influx", influx.url], logs / "alerts.log"),
            Child("api", ["serve", *common, "--db", str(workdir / "alerts.db"), "--port", str(port),
                          "--influx", influx.url], logs / "api.log"),
            Child("gateway", ["simulate", *common, "--broker", broker, "--speed", str(speed),
                              "--spool", str(workdir / "gateway" / "spool.db")], logs / "gateway.log"),
            Child("reports", ["report", "schedule", *common, "--db", str(workdir / "alerts.db"), "--influx", influx.url],
                  logs / "reports.log"),  # monthly reports on the 1st (docs/reports.md)
            # last to start, first to stop (children stop in reverse): a demo stopped with Ctrl-C pages nobody
            Child("watcher", ["watch", *common, "--db", str(workdir / "alerts.db"), "--broker", broker],
                  logs / "watcher.log"),
        ]
        for child in children:
            child.start()
        _wait_http(f"http://127.0.0.1:{port}/health", 30, children[2])
        (workdir / ENDPOINTS_FILE).write_text(json.dumps({
            "pid": os.getpid(), "broker": broker, "config": str(demo_cfg.resolve()),
            "influx": influx.url, "api": f"http://127.0.0.1:{port}"}))
        _banner(port, broker, influx.url, workdir, speed, kept)
        _grafana_banner(_provision(demo_cfg, workdir / "grafana", influx.url), demo_cfg, influx.url)
        while not stop.wait(1.0):
            for child in children:
                if child.proc.poll() is not None:
                    print(f"\n错误 / error: {child.name} stopped (exit {child.proc.returncode}); last lines of "
                          f"{child.log_path}:\n{child.tail()}", file=sys.stderr)
                    return 1
        print("\n正在停止 / stopping …", flush=True)
        return 0
    except StackError as exc:
        print(f"错误 / error: {exc}", file=sys.stderr)
        return 1
    finally:
        (workdir / ENDPOINTS_FILE).unlink(missing_ok=True)
        for child in reversed(children):
            child.stop()
        influx.stop()
        mosquitto.stop()
        inbox.close()
        lock.close()


def _provision(config: Path, out: Path, influx_url: str) -> Path:
    """The Grafana provisioning folder for the demo's InfluxDB (`stationwatch dashboards build`)."""
    from stationwatch.core.config import load_config
    from stationwatch.dashboards.boards import boards
    from stationwatch.dashboards.provisioning import InfluxTarget, write_provisioning
    return write_provisioning(out, boards(load_config(config)), InfluxTarget(influx_url)).root


def _grafana_banner(folder: Path, config: Path, influx_url: str) -> None:
    print(f"""  Grafana 看板 dashboards  {folder}/   (站点总览、城市总览、管道健康)
    让 Grafana 读取 / point a Grafana at it:  GF_PATHS_PROVISIONING={folder} grafana server
    或上传 / or upload:  STATIONWATCH_GRAFANA_TOKEN=… .venv/bin/stationwatch dashboards push \\
                           --config {config} --grafana http://127.0.0.1:3000 --influx {influx_url}
""", flush=True)


def _banner(port: int, broker: str, influx_url: str, workdir: Path, speed: float, kept: int | None) -> None:
    api = f"http://127.0.0.1:{port}"
    memory = ("  数据 data: 全新开始 / a fresh start" if kept is None else
              f"  数据 data: 保留了上次运行的告警（{kept} 条未关闭）/ the alerts of earlier runs are kept ({kept} open);\n"
              f"             全新开始 start clean: make demo-fresh  (stationwatch demo --fresh)")
    print(f"""
StationWatch 演示已启动 / demo is running — Ctrl-C 停止 / to stop

  值班看板 duty board      {api}/
  告警接口 active alerts   {api}/api/alerts
  接口文档 API docs        {api}/docs
  MQTT broker              {broker}
  InfluxDB (v1 API)        {influx_url}   database "stationwatch"
  日志 logs                {workdir}/logs/   推送 notifications: {workdir}/notifications.log
  模拟网关 gateway         生产网关代理，节奏加快 {speed:g} 倍 / the production agent, {speed:g}× its real rhythm
{memory}

  触发场景 play a scenario (in another terminal, from this folder):
    .venv/bin/stationwatch simulate --scenario fire
    (heating-failure | night-exit | camera-offline | gateway-power-loss)

  查询读数 query readings:
    curl -sG {influx_url}/query --data-urlencode db=stationwatch \\
         --data-urlencode "q=SELECT last(value) FROM reading GROUP BY sensor"
""", flush=True)
