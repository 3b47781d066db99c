"""What a rule says about one observation — :class:`~.store.Raised` (the condition holds) or
:class:`Clear` (it no longer does) — and the small helpers every rule module shares: reading a
usable value, a binary signal, and the names a person reads in a notice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stationwatch.core.contract import MessageClass
from stationwatch.sensors.kinds import KINDS

from .situation import Observation
from .store import Raised


@dataclass(frozen=True)
class Clear:
    """The condition of ``(rule, subject)`` no longer holds."""
    rule: str
    subject: str
    at: float
    note: str = ""


Verdict = Raised | Clear


def subject(obs: Observation, *parts: str) -> str:
    """The dedup subject: ``site/part/…``."""
    return "/".join((obs.site.id, *parts))


def raised(obs: Observation, rule: str, subject: str, severity: str, zh: str, en: str, *,
           at: float | None = None, pending: bool = False, **detail: Any) -> Raised:
    """A :class:`Raised` for ``obs``: place and device filled in, drills marked 演练."""
    device = getattr(obs.device, "id", None)
    detail = {"device": device, "topic": obs.msg.topic, **detail}
    if obs.historical:
        detail["historical"] = True
    if obs.trusted is not None and abs(obs.trusted - obs.ts) > 1:  # the gateway's clock is off (alerts/clock.py)
        detail |= {"gateway_ts": obs.ts, "clock_corrected_s": round(obs.trusted - obs.ts, 1)}
    if obs.drill:
        zh, en = f"【演练】{zh}", f"[DRILL] {en}"
    room = obs.room
    return Raised(rule, subject, severity, obs.site.id, room.id if room else None, room.fire_zone if room else None,
                  zh, en, detail, obs.ts if at is None else at, obs.drill, pending)


def plausible_value(obs: Observation) -> float | None:
    """The reading's value when it is usable: quality ok and inside the kind's physical range."""
    body = obs.body
    if obs.msg.kind is not MessageClass.READING or body.quality != "ok" or body.value is None:
        return None
    spec = KINDS[obs.kind]
    return body.value if spec.low <= body.value <= spec.high else None


def binary_signal(obs: Observation) -> bool | None:
    """A binary sensor's state: True active (alarm, open), False idle, None no news."""
    spec = KINDS[obs.kind]
    if obs.msg.kind is MessageClass.EVENT:
        return {spec.active_state: True, spec.idle_state: False}.get(obs.body.state)
    value = plausible_value(obs)
    return None if value is None else value >= 0.5


def names(obs: Observation) -> dict[str, str]:
    return {"site": obs.site.name, "room": obs.room.name if obs.room else "",
            "device": getattr(obs.device, "name", obs.msg.gateway)}
