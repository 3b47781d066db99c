"""The gateway's runtime plan and the lean runtime `stationwatch gateway` execs into.

- The runtime reads the same hardware the same way from the plan as the drivers do from the
  validated config (GPIO through MockFactory, 1-Wire files, Modbus over a pty to a real
  pymodbus server, cameras against a local RTSP listener).
- The runtime process carries none of the validation machinery (the RSS budget depends on it).
- `stationwatch gateway` runs in one process (systemd's notify and watchdog follow the PID) and,
  when the YAML is broken at a restart, keeps the gateway running on the last good plan.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
import yaml
from gpiozero.pins.mock import MockFactory

from stationwatch.core.config import parse_config
from stationwatch.core.contract import MessageClass, parse, topic
from stationwatch.core.mqtt import MqttLink
from stationwatch.gateway.plan import PlanError, compile_plan, load_plan, plan_path, write_plan
from stationwatch.sensors.base import build_drivers

from modbus_line import HEATING, TH, Line, Server
from support import EXAMPLES, wait_for

W1_ADDRESS = "28-00000abcdef0"
W1_GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
HEAVY = ("pydantic", "yaml", "typer", "click", "rich", "fastapi")


def wired_station(tmp_path, line_port: str | None = None) -> dict:
    """The city example with real sources: a smoke contact on GPIO5, a door reed on GPIO6 (NC),
    a DS18B20, and (with a line) two Modbus points on one RS-485 bus."""
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    by_id = {s["id"]: s for s in data["sensors"]}
    by_id["smk-dorm-m1"]["source"] = {"driver": "gpio", "pin": 5}
    door = next(s for s in data["sensors"] if s["kind"] == "door")
    door["source"] = {"driver": "gpio", "pin": 6, "wiring": "nc"}
    by_id["t-dorm-m2"]["source"] = {"driver": "onewire", "address": W1_ADDRESS}
    if line_port is not None:
        data["gateways"][0]["buses"] = [{"id": "rs485-1", "port": line_port, "timeout_s": 0.2}]
        by_id["t-dorm-m1"]["source"] = {"driver": "modbus", "bus": "rs485-1", "unit": TH,
                                        "register_map": "th-transmitter", "point": "temperature"}
        by_id["supply-main"]["source"] = {"driver": "modbus", "bus": "rs485-1", "unit": HEATING,
                                          "register_map": "heating-controller", "point": "supply_temperature"}
    data["gateways"][0]["agent"] = {"spool_path": str(tmp_path / "spool.db")}
    return data


def read_all(cfg, gw, w1_base, register_maps=None) -> dict:
    """Build the gateway's drivers on a fresh MockFactory, close the smoke contact, read for a
    minute of poll times; what each sensor said last."""
    factory = MockFactory()
    alive = {scheme: (lambda url, timeout: None) for scheme in ("rtsp", "http", "tcp", "onvif")}
    drivers = build_drivers(cfg, gw, pin_factory=factory, onewire_base=w1_base, probe=alive,
                            register_maps=register_maps)
    try:
        factory.pin(5).drive_low()  # the detector's relay closes: NO contact to GND, pull-up
        got = {}
        for step in range(61):
            for d in drivers:
                got.update({s.sensor: (s.value, s.quality, s.state) for s in d.read(1_795_614_042.0 + step)})
        return got
    finally:
        for d in drivers:
            d.close()


@pytest.fixture
def w1(tmp_path):
    (tmp_path / "w1" / W1_ADDRESS).mkdir(parents=True)
    (tmp_path / "w1" / W1_ADDRESS / "w1_slave").write_text(W1_GOOD)
    return tmp_path / "w1"


def test_the_plan_reads_every_driver_family_exactly_as_the_validated_config_does(tmp_path, w1):
    line = Line()
    server = Server(line.server_port, {TH: [456, 215], HEATING: [653, 481, 0, 150] + [0] * 12 + [0b01]})
    try:
        cfg = parse_config(wired_station(tmp_path, line.client_port))
        gw = cfg.gateways[0]
        write_plan(compile_plan(cfg, gw, "v-test"), plan_path(gw.agent.spool_path))
        plan = load_plan(plan_path(gw.agent.spool_path))
        from_config = read_all(cfg, gw, w1)
        from_plan = read_all(plan, plan.gateway, w1, plan.register_maps)
    finally:
        server.close()
        line.close()
    sensors = {s.id for s in cfg.sensors}  # cameras' latency and the Pi's health vary between reads
    assert {k: v for k, v in from_plan.items() if k in sensors} == {k: v for k, v in from_config.items() if k in sensors}
    assert {k: v[1:] for k, v in from_plan.items()} == {k: v[1:] for k, v in from_config.items()}
    assert from_plan["smk-dorm-m1"] == (1.0, "ok", "alarm")
    assert from_plan["t-dorm-m2"] == (23.125, "ok", None)
    assert from_plan["t-dorm-m1"][:2] == (pytest.approx(21.5), "ok")
    assert from_plan["supply-main"][:2] == (pytest.approx(65.3), "ok")
    assert sum(1 for v in from_plan.values() if v[2] == "online") == len(plan.cameras) == 9
    assert plan.config_version == "v-test" and set(plan.register_maps) == {"th-transmitter", "heating-controller"}


def test_the_runtime_process_loads_no_validation_machinery():
    modules = ["stationwatch.gateway.runtime", "stationwatch.gateway.agent"] + \
        [f"stationwatch.sensors.{m}" for m in ("contact", "analog", "onewire", "modbus", "camera", "health")]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + \
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []


def test_a_plan_that_is_not_one_is_refused_with_the_file_named(tmp_path):
    bad = tmp_path / "spool.plan.json"
    bad.write_text('{"format": 99}')
    with pytest.raises(PlanError, match=f"{bad}.*format"):
        load_plan(bad)
    bad.write_text("{not json")
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(bad)
    proc = subprocess.run([sys.executable, "-m", "stationwatch.gateway.runtime", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "cannot read the gateway plan" in proc.stderr


def start_gateway(cfg_file, broker_address, w1_base):
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    return subprocess.Popen([sys.executable, "-m", "stationwatch.cli", "gateway", "-c", str(cfg_file),
                             "--broker", f"{broker_address.host}:{broker_address.port}",
                             "--onewire-base", str(w1_base)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def birth_watch(broker_address, cfg):
    """A subscriber to the gateway's status; returns (link, list of births seen)."""
    gw = cfg.gateways[0]
    births: list = []
    seen = threading.Event()

    def on_message(t, p, _m):
        msg = parse(t, p)
        if msg.body.state == "online":
            births.append(msg.body)
            seen.set()
    link = MqttLink(broker_address, f"plan-watch-{os.getpid()}-{id(births)}", on_message=on_message).start()
    link.subscribe_wait(topic(gw.site, gw.id, MessageClass.STATUS))
    return link, births


def test_gateway_command_runs_in_one_process_and_survives_a_broken_config_on_its_last_good_plan(
        tmp_path, w1, broker_address):
    data = wired_station(tmp_path)
    data["gateways"][0]["id"] = gw_id = f"gw-plan-{os.getpid()}"
    for item in data["sensors"] + data["cameras"]:
        item["gateway"] = gw_id
    cfg_file = tmp_path / "station.yaml"
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cfg = parse_config(data)
    watch, births = birth_watch(broker_address, cfg)
    try:
        first = start_gateway(cfg_file, broker_address, w1)
        try:
            wait_for(lambda: births, 60, what="birth of the gateway started from a good config")
            cmdline = open(f"/proc/{first.pid}/cmdline", "rb").read().split(b"\0")
            assert b"stationwatch.gateway.runtime" in cmdline  # the same PID became the runtime
        finally:
            first.terminate()
            rc = first.wait(30)
            assert rc == 0, first.stderr.read()[-3000:]
        good_version = births[-1].config_version
        assert good_version and plan_path(tmp_path / "spool.db").exists()

        cfg_file.write_text(cfg_file.read_text(encoding="utf-8").replace("kind: smoke", "kind: smoek", 1),
                            encoding="utf-8")
        births.clear()
        second = start_gateway(cfg_file, broker_address, w1)
        try:
            wait_for(lambda: births, 60, what="birth of the gateway started from its last good plan")
        finally:
            second.terminate()
            assert second.wait(30) == 0
        assert births[-1].config_version == good_version
        err = second.stderr.read()
        assert "smoek" in err and "last good plan" in err  # says what is wrong, and what it does about it
    finally:
        watch.stop()


def test_gateway_command_with_a_broken_config_and_no_plan_refuses_to_start(tmp_path):
    data = wired_station(tmp_path)
    data["sensors"][0]["kind"] = "smoek"
    cfg_file = tmp_path / "station.yaml"
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "stationwatch.cli", "gateway", "-c", str(cfg_file),
                           "--spool", str(tmp_path / "spool.db")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "sensors[0].kind" in proc.stderr and "no last good plan" in proc.stderr


def test_plan_is_replaced_atomically_and_beside_the_spool(tmp_path):
    cfg = parse_config(wired_station(tmp_path))
    path = plan_path(tmp_path / "spool.db")
    assert path == tmp_path / "spool.plan.json"
    write_plan(compile_plan(cfg, cfg.gateways[0], "one"), path)
    write_plan(compile_plan(cfg, cfg.gateways[0], "two"), path)
    assert load_plan(path).config_version == "two"
    assert sorted(p.name for p in tmp_path.iterdir() if "plan" in p.name) == ["spool.plan.json"]
