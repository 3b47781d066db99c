"""Helpers the tests of the gateway's local alarm share: its GPIO pins, a smoke detector's contact on
a gpiozero MockFactory pin, the example station's gateway set up to sound the alarm, the state of
its outputs, and a broker address where nothing listens."""
from __future__ import annotations

import time
from typing import Callable

from gpiozero import DigitalInputDevice

from stationwatch.broker.stack import free_port
from stationwatch.core.agent_settings import AgentSettings, AlarmOutputs
from stationwatch.core.mqtt import BrokerAddress
from stationwatch.sensors.base import Sample

BUZZER, RELAY, LED, BUTTON, SMOKE_PIN = 17, 27, 22, 23, 5
OUTPUTS = AlarmOutputs(buzzer=BUZZER, relay=RELAY, led=LED)


class SmokeContact:
    """A smoke detector's alarm relay on a GPIO input, reported on every edge."""

    def __init__(self, sensor: str, pin: int, factory):
        self.sensor = sensor
        self.input = DigitalInputDevice(pin, pull_up=False, pin_factory=factory)
        self.callbacks: list[Callable[[Sample], None]] = []
        self.input.when_activated = self.input.when_deactivated = self._changed

    def sample(self) -> Sample:
        active = bool(self.input.is_active)
        return Sample(self.sensor, float(active), "ok", time.time(), "alarm" if active else "normal")

    def read(self, now: float) -> list[Sample]:
        return [self.sample()]

    def on_change(self, callback: Callable[[Sample], None]) -> None:
        self.callbacks.append(callback)

    def _changed(self) -> None:
        for callback in self.callbacks:
            callback(self.sample())

    def close(self) -> None:
        self.input.close()


def gateway_of(cfg, tmp_path, interval_s: float | None = None, **agent):
    """The example station's gateway, renamed (topics of its own on the shared broker), with
    outputs, a silence button and a spool in ``tmp_path``."""
    settings = AgentSettings(spool_path=str(tmp_path / "spool.db"), outputs=OUTPUTS, silence_button=BUTTON, **agent)
    old = cfg.gateways[0]
    gw = old.model_copy(update={"id": "gw-alarm-test", "agent": settings})
    sensors = [s.model_copy(update={"gateway": gw.id} | ({"interval_s": interval_s} if interval_s else {}))
               for s in cfg.sensors if s.gateway == old.id]
    return cfg.model_copy(update={"gateways": [gw], "sensors": sensors, "cameras": []}), gw


def outputs(factory) -> tuple[bool, bool, bool]:
    """Whether the buzzer, the relay and the LED are on."""
    return tuple(bool(factory.pin(p).state) for p in (BUZZER, RELAY, LED))


NOWHERE = BrokerAddress("127.0.0.1", free_port())  # nothing listens here: the network is down
