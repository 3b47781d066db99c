"""The gateway's local alarm: a smoke or heat alarm sounds the buzzer, closes the relay and lights
the LED on the spot, whatever the network is doing — nothing here touches MQTT.

It sounds until it is silenced on site (the silence button) or acknowledged centrally (the
``silence``/``ack`` command, relayed by the agent). A detector that goes into alarm afterwards
sounds it again. The LED stays lit while any detector is still in alarm, silenced or not, so the
installer can see that the condition is still there; everything goes dark when all are normal.

Example (the test suite drives the same seam with ``MockFactory`` pins)::

    from gpiozero.pins.mock import MockFactory
    factory = MockFactory()
    alarm = LocalAlarm(AlarmOutputs(buzzer=17, relay=27, led=22), silence_button=23, pin_factory=factory)
    alarm.update("smk-dorm-m1", True)     # buzzer, relay, LED on
    factory.pin(23).drive_low()           # button pressed: buzzer and relay off, LED still on
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from .settings import AlarmOutputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputRole:
    device: str        # gpiozero class that drives it
    silenceable: bool  # switched off by a silence; otherwise on while any alarm is active


OUTPUT_ROLES: dict[str, OutputRole] = {
    "buzzer": OutputRole("Buzzer", silenceable=True),
    "relay": OutputRole("OutputDevice", silenceable=True),
    "led": OutputRole("LED", silenceable=False),
}


class LocalAlarm:
    """Outputs and silence button on the gateway's GPIOs (gpiozero, injectable ``pin_factory``).

    ``update`` may be called from any thread (a driver's edge callback, the polling loop, MQTT);
    it switches the outputs before it returns."""

    def __init__(self, outputs: AlarmOutputs = AlarmOutputs(), silence_button: int | None = None,
                 pin_factory: Any = None):
        pins = {name: pin for name, pin in outputs.model_dump().items() if pin is not None}
        self._lock = threading.RLock()
        self._active: dict[str, float] = {}  # detector in alarm → since (Unix time)
        self._silenced = False
        self._devices: dict[str, tuple[Any, OutputRole]] = {}
        self._button = None
        if not pins and silence_button is None:
            return  # nothing wired: no GPIO library needed
        import gpiozero  # imported here so the agent runs on machines without GPIO when none is wired
        for name, pin in pins.items():
            role = OUTPUT_ROLES[name]
            self._devices[name] = (getattr(gpiozero, role.device)(pin, pin_factory=pin_factory), role)
        if silence_button is not None:
            self._button = gpiozero.Button(silence_button, pull_up=True, pin_factory=pin_factory)
            self._button.when_pressed = lambda: self.silence("button")

    @property
    def active(self) -> set[str]:
        """Detectors currently in alarm."""
        with self._lock:
            return set(self._active)

    @property
    def sounding(self) -> bool:
        with self._lock:
            return bool(self._active) and not self._silenced

    def update(self, detector: str, alarming: bool) -> None:
        """A detector went into alarm (``True``) or back to normal (``False``)."""
        with self._lock:
            if alarming and detector not in self._active:
                self._active[detector] = time.time()
                self._silenced = False  # a new alarm sounds again
                log.warning("本地报警 / LOCAL ALARM: %s", detector)
            elif not alarming and self._active.pop(detector, None) is not None and not self._active:
                self._silenced = False
                log.info("本地报警解除 / local alarm cleared (%s back to normal)", detector)
            self._apply()

    def silence(self, source: str) -> bool:
        """Silence the buzzer and relay (``source``: "button", "cmd:ack", …); True if it was sounding."""
        with self._lock:
            was = bool(self._active) and not self._silenced
            if self._active:
                self._silenced = True
            self._apply()
        if was:
            log.warning("本地报警已消音 / local alarm silenced by %s", source)
        return was

    def _apply(self) -> None:
        on = bool(self._active)
        for device, role in self._devices.values():
            device.value = on and not (role.silenceable and self._silenced)

    def close(self) -> None:
        for device, _role in self._devices.values():
            device.close()
        if self._button is not None:
            self._button.close()
