"""Local-first safety: a smoke or heat alarm drives the buzzer, relay and LED on the gateway's own
GPIOs (gpiozero MockFactory pins) within a second with no broker at all, until it is silenced on
site (button) or acknowledged centrally (``ack``/``silence`` command over the real Mosquitto)."""
from __future__ import annotations

import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory

from stationwatch.core.contract import Command, MessageClass, encode, parse, topic
from stationwatch.core.mqtt import MqttLink
from stationwatch.gateway.agent import Agent
from stationwatch.gateway.alarm import LocalAlarm
from stationwatch.gateway.service import run_agent
from stationwatch.gateway.spool import Spool
from stationwatch.sensors.base import Sample

from support import wait_for
from support.gateway import BUTTON, NOWHERE, OUTPUTS, SMOKE_PIN, SmokeContact, gateway_of, outputs


class Thermometer:
    """An analog heat detector read by polling; the test sets its value."""

    def __init__(self, sensor: str, value: float = 25.0):
        self.sensor, self.value = sensor, value

    def read(self, now: float) -> list[Sample]:
        return [Sample(self.sensor, self.value, "ok", now)]

    def close(self) -> None:
        pass


def test_smoke_edge_sounds_the_alarm_within_a_second_with_no_broker_and_the_button_silences_it(city_config, tmp_path):
    cfg, gw = gateway_of(city_config, tmp_path)
    factory = MockFactory()
    smoke = SmokeContact("smk-dorm-m1", SMOKE_PIN, factory)
    stop, ready = threading.Event(), threading.Event()
    runner = threading.Thread(target=run_agent, args=(cfg, gw, NOWHERE, stop),
                              kwargs={"drivers": [smoke], "pin_factory": factory, "ready": ready}, daemon=True)
    runner.start()
    try:
        assert ready.wait(10)
        assert outputs(factory) == (False, False, False)
        factory.pin(SMOKE_PIN).drive_high()  # the detector's relay closes
        wait_for(lambda: outputs(factory) == (True, True, True), 1.0, what="buzzer, relay and LED on")

        factory.pin(BUTTON).drive_low()  # silence pressed on site
        wait_for(lambda: outputs(factory) == (False, False, True), 1.0, what="silenced; LED still lit")
        factory.pin(BUTTON).drive_high()

        factory.pin(SMOKE_PIN).drive_low()  # smoke gone: all dark
        wait_for(lambda: outputs(factory) == (False, False, False), 1.0, what="all outputs off")
        factory.pin(SMOKE_PIN).drive_high()  # a new alarm sounds again after a silence
        wait_for(lambda: outputs(factory) == (True, True, True), 1.0, what="sounding again")
    finally:
        stop.set()
        runner.join(30)
    # the events waited in the spool, as historical: the network was down the whole time
    with Spool(tmp_path / "spool.db") as spool:
        rows = [r for r in spool.pending({}, 100) if r.kind is MessageClass.EVENT]
    assert [parse(r.topic, r.payload).body.state for r in rows] == ["alarm", "normal", "alarm"]
    assert all(r.historical for r in rows)


def test_a_heat_detector_read_by_polling_sounds_the_alarm_and_clears_below_the_hysteresis(city_config, tmp_path):
    cfg, gw = gateway_of(city_config, tmp_path, interval_s=0.05)
    factory = MockFactory()
    heat = Thermometer("heat-kitchen")
    alarm = LocalAlarm(OUTPUTS, BUTTON, factory)
    with Spool(tmp_path / "spool.db") as spool, Agent(cfg, gw, NOWHERE, [heat], spool=spool, alarm=alarm):
        heat.value = 54.0  # GB 4716 static threshold
        wait_for(lambda: outputs(factory) == (True, True, True), 2.0, what="heat alarm")
        heat.value = 53.0  # inside the hysteresis band: still in alarm
        wait_for(lambda: spool.stats.spooled["reading"] >= 5, 5, what="more polls")
        assert alarm.sounding
        heat.value = 51.9
        wait_for(lambda: outputs(factory) == (False, False, False), 2.0, what="heat alarm cleared")
    alarm.close()


def test_a_door_opening_is_an_event_but_does_not_sound_the_alarm(city_config, tmp_path):
    cfg, gw = gateway_of(city_config, tmp_path)
    factory = MockFactory()
    door = SmokeContact("door-exit-main", SMOKE_PIN, factory)  # same contact, a door's sensor id
    door.sample = lambda: Sample("door-exit-main", float(door.input.is_active), "ok", time.time(),
                                 "open" if door.input.is_active else "closed")
    alarm = LocalAlarm(OUTPUTS, BUTTON, factory)
    with Spool(tmp_path / "spool.db") as spool, Agent(cfg, gw, NOWHERE, [door], spool=spool, alarm=alarm):
        factory.pin(SMOKE_PIN).drive_high()
        wait_for(lambda: spool.stats.spooled["event"] >= 1, 5, what="the door event")
        assert outputs(factory) == (False, False, False) and not alarm.active
    alarm.close()


@pytest.mark.parametrize("command", ["ack", "silence"])
def test_a_central_command_silences_the_local_alarm(city_config, tmp_path, broker_address, forget_status, command):
    cfg, gw = gateway_of(city_config, tmp_path)
    forget_status(gw)
    factory = MockFactory()
    smoke = SmokeContact("smk-dorm-m1", SMOKE_PIN, factory)
    alarm = LocalAlarm(OUTPUTS, BUTTON, factory)
    centre = MqttLink(broker_address, f"test-centre-{command}").start()
    with Spool(tmp_path / "spool.db") as spool, \
            Agent(cfg, gw, broker_address, [smoke], spool=spool, alarm=alarm) as agent:
        assert agent.link.subscribed.wait(10), "the agent did not subscribe to its commands"
        factory.pin(SMOKE_PIN).drive_high()
        wait_for(lambda: outputs(factory) == (True, True, True), 1.0, what="alarm sounding")
        cmd = Command(v=1, ts=time.time(), name=command)
        centre.publish(topic(gw.site, gw.id, MessageClass.CMD, command), encode(cmd), MessageClass.CMD).wait_for_publish(5)
        wait_for(lambda: outputs(factory) == (False, False, True), 5, what=f"silenced by '{command}'")
        assert agent.stats["commands"] == 1
    centre.stop()
    alarm.close()


def test_config_refuses_alarm_gpios_used_twice_or_taken_by_a_sensor(city_config_path):
    import yaml

    from stationwatch.core.config import ConfigError, parse_config
    data = yaml.safe_load(city_config_path.read_text(encoding="utf-8"))
    data["gateways"][0]["agent"] = {"outputs": {"buzzer": 17, "relay": 17, "led": 22}, "silence_button": 5,
                                    "alarm_kinds": ["smoke", "fire"]}
    data["sensors"][0]["source"] = {"driver": "gpio", "pin": 5}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    problems = {p.path: p.message for p in err.value.problems}
    assert "used twice" in problems["gateways[0].agent.outputs.buzzer"]
    assert "used twice" in problems["gateways[0].agent.outputs.relay"]
    assert "smk-dorm-m1" in problems["gateways[0].agent.silence_button"]
    assert "unknown sensor kind 'fire'" in problems["gateways[0].agent.alarm_kinds[1]"]
    assert "gateways[0].agent.outputs.led" not in problems
