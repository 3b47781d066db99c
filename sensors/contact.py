"""Dry contacts on GPIO inputs (gpiozero): smoke and heat detector alarm relays, door reed
contacts, boiler fault contacts.

The contact pulls the pin to GND against the Pi's pull-up (``pull_up: true``, the default), or to
3V3 against an external pull-down (``pull_up: false``); either way gpiozero's ``is_active`` means
*contact closed*. ``wiring: no`` (normally open) makes a closed contact the kind's active state
(``alarm``, ``open``); ``wiring: nc`` (normally closed) makes an *open* contact active — so with
NC wiring a cut wire reads as an alarm/open door (fail-safe), it cannot read as normal.

A true wiring-fault state needs more than one wire can tell: ``supervision_pin`` is the contact
of an end-of-line supervision relay (e.g. the EOL relay of a 4-wire detector loop), closed while
the loop is powered and intact. When it opens, the sensor reads FAULT whatever the alarm contact
says. (Telling open/short from alarm on the *same* two wires needs an end-of-line resistor and an
ADC — see docs/drivers.md; not done here.)

Example::

    >>> from gpiozero.pins.mock import MockFactory
    >>> from stationwatch.sensors.kinds import KINDS
    >>> from stationwatch.core.wiring import GpioSource
    >>> factory = MockFactory()
    >>> door = ContactInput("door-exit", KINDS["door"], GpioSource(driver="gpio", pin=17, wiring="nc"),
    ...                     pin_factory=factory)
    >>> factory.pin(17).drive_low()            # NC contact closed: door shut
    >>> door.read(now=0.0)[0].state
    'closed'
    >>> factory.pin(17).drive_high()           # contact opens
    >>> door.read(now=1.0)[0].state
    'open'
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from stationwatch.sensors.base import Driver, Sample, Seams, set_up, sources_of
from stationwatch.sensors.kinds import KINDS, SensorKind
from stationwatch.sensors.specs import DeviceTable, GatewaySpec, GpioWiring

SUPERVISION_OPEN = "wiring fault: end-of-line supervision contact open (loop power lost or wire cut) / 线路故障"


class ContactInput:
    """One contact input (and optionally its supervision input) mapped to a kind's states."""

    family = "gpio"

    def __init__(self, sensor: str, kind: SensorKind, source: GpioWiring, *, pin_factory=None,
                 clock: Callable[[], float] = time.time):
        from gpiozero import DigitalInputDevice  # vendor library: only where a contact is wired

        if not kind.binary:
            raise ValueError(f"kind '{kind.name}' is not binary; a contact cannot read it")
        self.sensor = sensor
        self.kind = kind
        self.source = source
        self._clock = clock
        self._callbacks: list[Callable[[Sample], None]] = []
        self._lock = threading.Lock()
        self._last: tuple[str | None, float | None] | None = None
        bounce = source.debounce_ms / 1000 or None
        self._contact = DigitalInputDevice(source.pin, pull_up=source.pull_up, bounce_time=bounce,
                                           pin_factory=pin_factory)
        self._supervision = None
        try:
            if source.supervision_pin is not None:
                self._supervision = DigitalInputDevice(source.supervision_pin, pull_up=True,
                                                       bounce_time=bounce, pin_factory=pin_factory)
                self._supervision.when_activated = self._changed
                self._supervision.when_deactivated = self._changed
        except Exception:
            self._contact.close()
            raise
        self._contact.when_activated = self._changed
        self._contact.when_deactivated = self._changed

    @classmethod
    def build(cls, cfg: DeviceTable, gateway: GatewaySpec, seams: Seams) -> list[Driver]:
        return [set_up([s.id], lambda s=s, src=src: cls(s.id, KINDS[s.kind], src, pin_factory=seams.pin_factory))
                for s, src in sources_of(cfg, gateway, "gpio")]

    def sample(self, now: float) -> Sample:
        """The contact's state now."""
        if self._supervision is not None and not self._supervision.is_active:
            return Sample.fault(self.sensor, now, SUPERVISION_OPEN)
        closed = bool(self._contact.is_active)
        active = closed if self.source.wiring == "no" else not closed
        return Sample.binary(self.sensor, self.kind, active, now)

    def read(self, now: float) -> list[Sample]:
        return [self.sample(now)]

    def on_change(self, callback: Callable[[Sample], None]) -> None:
        """Call ``callback(sample)`` on every change of state (from gpiozero's event thread)."""
        self._callbacks.append(callback)

    def _changed(self) -> None:
        sample = self.sample(self._clock())
        with self._lock:  # both inputs may fire for one event; report each state once
            if self._last == (sample.state, sample.value):
                return
            self._last = (sample.state, sample.value)
        for callback in list(self._callbacks):
            callback(sample)

    def close(self) -> None:
        for device in (self._contact, self._supervision):
            if device is not None:
                device.close()
