"""The simulated building behind the simulated station (gateway/simulation.py): a clock that can run
faster than real time, the quantities its sensors read, its contacts and which cameras answer.

Temperatures are *quantities* named ``room:{room id}`` (room and heat detectors of that room read
it), ``outdoor``, ``supply:{sensor id}`` and ``return:{sensor id}`` (heating supply and return water);
so are ``pressure:{sensor id}`` (bar) and ``humidity:{room id}`` (%RH). Each follows a baseline — a
plausible winter value with a slow daily swing — until a scenario sets a trend on it (a linear
``Ramp`` for a fire, an exponential ``Approach`` for a heating failure). Contacts are not quantities:
they rest in their kind's ``rest_state`` (sensors/kinds.py: a circulation pump runs all winter).

Example::

    >>> clock = SimClock(speed=60)            # one real second is a simulated minute
    >>> b = Building(tz=ZoneInfo("Asia/Shanghai"), seed="gw-1")
    >>> 19 < b.temperature("room:dorm-1", clock.now()) < 23
    True
"""
from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo


class SimClock:
    """Simulated seconds since start, running ``speed`` times as fast as real time.

    Changing the speed keeps simulated time continuous (no jump), so trends stay smooth."""

    def __init__(self, speed: float = 1.0, real: Callable[[], float] = time.monotonic):
        self._real = real
        self._lock = threading.Lock()
        self._speed = float(speed)
        self._base_real = real()
        self._base_sim = 0.0

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        with self._lock:
            return self._base_sim + (self._real() - self._base_real) * self._speed

    def set_speed(self, speed: float) -> None:
        with self._lock:
            real = self._real()
            self._base_sim += (real - self._base_real) * self._speed
            self._base_real = real
            self._speed = float(speed)

    def real_delay(self, sim_at: float) -> float:
        """Real seconds until simulated time ``sim_at`` (0 if it has passed)."""
        return max(0.0, (sim_at - self.now()) / self._speed)


def most_recent(local_hhmm: str, tz: ZoneInfo, now: float | None = None) -> float:
    """Unix time of the latest moment ≤ ``now`` at which the local clock read ``HH:MM``."""
    here = datetime.fromtimestamp(time.time() if now is None else now, tz)
    hour, minute = (int(x) for x in local_hhmm.split(":"))
    moment = here.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if moment > here:
        moment -= timedelta(days=1)
    return moment.timestamp()


# ---- trends set by scenarios -----------------------------------------------------------------

@dataclass(frozen=True)
class Ramp:
    """Linear rise from ``start`` at ``rate_c_per_s`` from simulated time ``t0``, capped."""
    t0: float
    start: float
    rate_c_per_s: float
    cap_c: float

    def at(self, t: float) -> float:
        return min(self.cap_c, self.start + self.rate_c_per_s * max(0.0, t - self.t0))


@dataclass(frozen=True)
class Approach:
    """Exponential approach from ``start`` to ``to_c`` with time constant ``tau_s`` (cooling, heating)."""
    t0: float
    start: float
    to_c: float
    tau_s: float

    def at(self, t: float) -> float:
        return self.to_c + (self.start - self.to_c) * math.exp(-max(0.0, t - self.t0) / self.tau_s)


# ---- baselines: a plausible winter day ---------------------------------------------------------

@dataclass(frozen=True)
class Baseline:
    """Mean between ``low`` and ``high`` (fixed per quantity), a daily swing peaking mid-afternoon,
    and measurement noise (standard deviation)."""
    low: float
    high: float
    swing_c: float
    noise_c: float


BASELINES: dict[str, Baseline] = {
    "room": Baseline(20.3, 21.7, 0.3, 0.08),      # heated rooms ~20–22 °C
    "outdoor": Baseline(-2.5, -2.5, 2.5, 0.15),   # winter: −5 °C at night … 0 °C in the afternoon
    "supply": Baseline(57.0, 58.0, 1.0, 0.2),     # heating supply water ~55–60 °C
    "return": Baseline(45.0, 46.0, 1.0, 0.2),     # return water ~10 °C below the supply
    "pressure": Baseline(1.4, 1.6, 0.0, 0.01),    # bar: a filled low-rise system
    "humidity": Baseline(35.0, 50.0, 3.0, 0.5),   # %RH: heated rooms in a northern winter are dry
}


def _fraction(key: str) -> float:
    """A stable number in [0, 1) for ``key`` (same room, same mean, every run)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32


class Building:
    """One site as the simulated station's sensors see it (thread-safe): temperatures, pressures and
    humidities as functions of the simulated clock, the contacts (detectors, doors, pumps) and which
    cameras answer. It is the far end of the ``simulated`` driver family (sensors/simulated.py) and
    of the camera probes; scenarios act on it (gateway/scenarios.py)."""

    def __init__(self, tz: ZoneInfo, seed: str, start_wall: float | None = None, clock: SimClock | None = None,
                 active: frozenset[str] = frozenset()):
        self.tz = tz
        self.clock = clock or SimClock()
        self.start_wall = time.time() if start_wall is None else start_wall
        self._rng = random.Random(seed)
        self._trends: dict[str, Ramp | Approach] = {}
        self._contacts: set[str] = set(active)  # contacts in their active state
        self._cameras_down: set[str] = set()
        self._contact_callbacks: list[Callable[[str, bool, float], None]] = []
        self._lock = threading.Lock()

    def _baseline(self, quantity: str, t: float) -> float:
        base = BASELINES[quantity.split(":")[0]]
        local = datetime.fromtimestamp(self.start_wall + t, self.tz)
        hour = local.hour + local.minute / 60
        mean = base.low + (base.high - base.low) * _fraction(quantity)
        return mean + base.swing_c * math.sin(2 * math.pi * (hour - 9) / 24)  # peak 15:00, low 03:00

    def _true_value(self, quantity: str, t: float) -> float:
        trend = self._trends.get(quantity)
        return trend.at(t) if trend else self._baseline(quantity, t)

    def value(self, quantity: str, t: float) -> float:
        """What a sensor on ``quantity`` reads at simulated time ``t`` (°C, bar or %RH, with noise)."""
        with self._lock:
            noise = self._rng.gauss(0.0, BASELINES[quantity.split(":")[0]].noise_c)
            return round(self._true_value(quantity, t) + noise, 2)

    temperature = value

    def read(self, quantity: str) -> float:
        """``quantity`` now, on the building's clock."""
        return self.value(quantity, self.clock.now())

    def ramp(self, quantity: str, t: float, rate_c_per_s: float, cap_c: float) -> None:
        with self._lock:
            self._trends[quantity] = Ramp(t, self._true_value(quantity, t), rate_c_per_s, cap_c)

    def approach(self, quantity: str, t: float, to_c: float, tau_s: float) -> None:
        with self._lock:
            self._trends[quantity] = Approach(t, self._true_value(quantity, t), to_c, tau_s)

    # ---- contacts
    def contact(self, sensor: str) -> bool:
        with self._lock:
            return sensor in self._contacts

    def on_contact(self, callback: Callable[[str, bool, float], None]) -> None:
        """``callback(sensor, active, ts)`` at each change, in order (the driver's edge)."""
        self._contact_callbacks.append(callback)

    def set_contact(self, sensor: str, active: bool, ts: float) -> bool:
        """Close or open a contact; ``ts`` is the time the gateway's clock reads at the change.
        Returns False when it was already so."""
        with self._lock:
            if (sensor in self._contacts) == active:
                return False
            (self._contacts.add if active else self._contacts.discard)(sensor)
            for callback in list(self._contact_callbacks):  # under the lock: changes reach the agent in order
                callback(sensor, active, ts)
        return True

    # ---- cameras
    def camera_down(self, camera: str, down: bool = True) -> None:
        with self._lock:
            (self._cameras_down.add if down else self._cameras_down.discard)(camera)

    def camera_answers(self, camera: str) -> bool:
        with self._lock:
            return camera not in self._cameras_down
