"""Drill mode on a real gateway, started and ended from the centre (`stationwatch drill`), and
commands that wait for the gateway's answer: a refusal is an error the person sees."""
from __future__ import annotations

import subprocess
import sys
import threading

from gpiozero.pins.mock import MockFactory

from stationwatch.core.contract import MessageClass, parse
from stationwatch.core.mqtt import MqttLink
from stationwatch.gateway.service import run_agent

from support import EXAMPLES, wait_for
from support.gateway import SMOKE_PIN, SmokeContact, gateway_of

CLI = [sys.executable, "-m", "stationwatch.cli"]


def cli(*args: str, broker) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args) + ["--broker", f"{broker.host}:{broker.port}"],
                          capture_output=True, text=True, timeout=60)


def test_a_drill_marks_every_event_until_it_runs_out_and_a_refusal_is_an_error(city_config, tmp_path, broker_address,
                                                                               forget_status):
    cfg, gw = gateway_of(city_config, tmp_path)
    gw = gw.model_copy(update={"id": "gw-sl-main"})  # the example's gateway, so `stationwatch drill -c` knows it
    cfg = cfg.model_copy(update={"gateways": [gw], "sensors": [s.model_copy(update={"gateway": gw.id})
                                                               for s in cfg.sensors]})
    forget_status(gw)
    factory = MockFactory()
    smoke = SmokeContact("smk-dorm-m1", SMOKE_PIN, factory)
    got: list = []
    centre = MqttLink(broker_address, "test-drill-centre",
                      on_connect=lambda link: link.subscribe(f"sw/v1/{gw.site}/{gw.id}/#", 1),
                      on_message=lambda t, b, _m: got.append(parse(t, b)) if b else None).start()
    wait_for(lambda: centre.subscribed.is_set(), 10, what="the centre subscribed")
    stop, ready = threading.Event(), threading.Event()
    runner = threading.Thread(target=run_agent, args=(cfg, gw, broker_address, stop),
                              kwargs={"drivers": [smoke], "pin_factory": factory, "ready": ready}, daemon=True)
    runner.start()
    config = str(EXAMPLES / "city-station.yaml")

    def events() -> list:
        return [m.body for m in got if m.kind is MessageClass.EVENT and m.device == "smk-dorm-m1"]
    try:
        assert ready.wait(10)
        wait_for(lambda: [m for m in got if m.kind is MessageClass.STATUS and m.body.state == "online"], 10,
                 what="the birth")
        refused = cli("drill", "start", "-c", config, "--gateway", gw.id, "--minutes", "999", broker=broker_address)
        assert refused.returncode == 2 and "refused" in refused.stderr and "240" in refused.stderr
        started = cli("drill", "start", "-c", config, "--gateway", gw.id, "--minutes", "0.05", broker=broker_address)
        assert started.returncode == 0, started.stderr
        assert "drill started" in started.stdout
        factory.pin(SMOKE_PIN).drive_high()
        assert wait_for(events, 10, what="the smoke event")[0].drill is True, "marked as a drill"
        factory.pin(SMOKE_PIN).drive_low()
        wait_for(lambda: [m for m in got if m.kind is MessageClass.HEALTH and m.device == "drill"
                          and m.body.state == "normal"], 15, what="the drill running out by itself (3 s)")
        factory.pin(SMOKE_PIN).drive_high()
        wait_for(lambda: len(events()) >= 3, 10, what="the next smoke event")
        assert events()[-1].drill is False, "after the drill, events are real again"
        ended = cli("drill", "end", "-c", config, "--gateway", gw.id, broker=broker_address)
        assert ended.returncode == 0 and "drill ended" in ended.stdout
    finally:
        stop.set()
        runner.join(30)
        centre.stop()
    gone = cli("drill", "start", "-c", config, "--gateway", gw.id, broker=broker_address)
    assert gone.returncode == 2 and "not online" in gone.stderr, "a gateway that is gone says so"


def test_simulate_reports_a_scenario_the_gateway_refuses(run, broker_address):
    from stationwatch.gateway.simulator import SimulationError, request_scenario

    from support.simulator import small
    cfg = small("refuse", [{"id": "t-dorm", "kind": "temperature", "room": "dorm"}])  # no smoke detector
    run(cfg)
    try:
        request_scenario(cfg, broker_address, cfg.gateways[0], "fire")
    except SimulationError as exc:
        assert "refused" in str(exc) and "smoke" in str(exc)
    else:
        raise AssertionError("a scenario the gateway cannot play must not pass for started")
