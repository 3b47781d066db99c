"""The gateway's local alarm: a smoke or heat alarm sounds the buzzer, closes the relay and lights
the LED on the spot, whatever the network is doing — nothing here touches MQTT.

It sounds until it is silenced on site (the silence button) or acknowledged centrally (the
``silence``/``ack`` command, relayed by the agent). A detector that goes into alarm afterwards
sounds it again. The LED stays lit while any detector is still in alarm, silenced or not, so the
installer can see that the condition is still there; everything goes dark when all are normal.

Each change of what the alarm does — ``sounding``, ``silenced``, ``quiet`` — is handed to the
callbacks given to :meth:`LocalAlarm.on_change` (the agent spools it as ``health/local_alarm``), after
the outputs have switched. They run in the thread that made the change, under the alarm's lock, so
they see changes in order; they must only hand the change on (a queue put), never wait.

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
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .plan import AlarmOutputsSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputRole:
    device: str        # gpiozero class that drives it
    silenceable: bool  # switched off by a silence; otherwise on while any alarm is active


@dataclass(frozen=True)
class AlarmChange:
    """What the local alarm started doing, why, and when."""
    state: str  # sounding | silenced | quiet (stationwatch.core.wire.LOCAL_ALARM_STATES)
    by: str  # sounding: the detector that set it off; silenced: "button", "cmd:ack" …; quiet: the last detector
    detectors: tuple[str, ...]  # in alarm at that moment, sorted
    ts: float  # Unix time


OUTPUT_ROLES: dict[str, OutputRole] = {
    "buzzer": OutputRole("Buzzer", silenceable=True),
    "relay": OutputRole("OutputDevice", silenceable=True),
    "led": OutputRole("LED", silenceable=False),
}


class LocalAlarm:
    """Outputs and silence button on the gateway's GPIOs (gpiozero, injectable ``pin_factory``).

    ``update`` may be called from any thread (a driver's edge callback, the polling loop, MQTT);
    it switches the outputs before it returns."""

    def __init__(self, outputs: AlarmOutputsSpec | None = None, silence_button: int | None = None,
                 pin_factory: Any = None):
        pins = {name: getattr(outputs, name) for name in OUTPUT_ROLES if getattr(outputs, name, None) is not None}
        self._lock = threading.RLock()
        self._active: dict[str, float] = {}  # detector in alarm → since (Unix time)
        self._silenced = False
        self._callbacks: list[Callable[[AlarmChange], None]] = []
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

    def on_change(self, callback: Callable[[AlarmChange], None]) -> None:
        """Call ``callback`` with every :class:`AlarmChange` (see the module's notes: never wait in it)."""
        with self._lock:
            self._callbacks.append(callback)

    def update(self, detector: str, alarming: bool) -> None:
        """A detector went into alarm (``True``) or back to normal (``False``)."""
        with self._lock:
            was = self._doing()
            if alarming and detector not in self._active:
                self._active[detector] = time.time()
                self._silenced = False  # a new alarm sounds again
                log.warning("本地报警 / LOCAL ALARM: %s", detector)
            elif not alarming and self._active.pop(detector, None) is not None and not self._active:
                self._silenced = False
                log.info("本地报警解除 / local alarm cleared (%s back to normal)", detector)
            self._apply()
            now = self._doing()
            if now != was:
                self._changed(now, detector)

    def silence(self, source: str) -> bool:
        """Silence the buzzer and relay (``source``: "button", "cmd:ack", …); True if it was sounding."""
        with self._lock:
            was = bool(self._active) and not self._silenced
            if self._active:
                self._silenced = True
            self._apply()
            if was:
                self._changed("silenced", source)
        if was:
            log.warning("本地报警已消音 / local alarm silenced by %s", source)
        return was

    def _doing(self) -> str:
        return "quiet" if not self._active else "silenced" if self._silenced else "sounding"

    def _changed(self, state: str, by: str) -> None:
        change = AlarmChange(state, by, tuple(sorted(self._active)), time.time())
        for callback in self._callbacks:
            try:
                callback(change)
            except Exception:  # noqa: BLE001 — reporting must never break the alarm itself
                log.exception("local alarm change callback failed")

    def _apply(self) -> None:
        on = bool(self._active)
        for device, role in self._devices.values():
            device.value = on and not (role.silenceable and self._silenced)

    def close(self) -> None:
        for device, _role in self._devices.values():
            device.close()
        if self._button is not None:
            self._button.close()
