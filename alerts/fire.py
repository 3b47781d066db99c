"""Fire: detector signals and the two-detector confirmation per fire zone.

* smoke detectors and heat detector alarm contacts (``heat_alarm``): their ``alarm``/``normal`` events,
  or 1/0 readings — the detector itself has decided, so a heat contact counts exactly like a smoke detector;
* heat detectors (GB 4716): static threshold ``heat_static_c`` with ``heat_hysteresis_c`` on the way
  back, and rate of rise (class A1R): ``rate_of_rise_c_per_min`` over ``rate_of_rise_window_s``.

GB 50116 §4.1.6: one detector in alarm → PRE-ALARM for a person to check (复核); detectors of
``fire_confirm_detectors`` distinct devices in one zone → the same alert becomes a confirmed FIRE.
A detector's fault changes nothing here, so it never hides another detector's alarm (GB 50166).
"""
from __future__ import annotations

from typing import Callable, Iterator

from stationwatch.core.contract import MessageClass
from stationwatch.core.policy import RuleSettings

from .situation import Observation, Situation
from .verdicts import Verdict, binary_signal, names, plausible_value, raised


def _rate_of_rise(sit: Situation, obs: Observation, value: float) -> float | None:
    """°C per minute over the window (None until the window holds enough history).

    Measured on the gateway's own clock, whose intervals are right even when its time is not. When
    that clock steps back (a wrong time corrected by NTP), the history that now lies "after" the
    reading starts over; kept, it made every span negative and held the rule off for 32 readings."""
    s = sit.settings
    history = sit.mem.get("rise", obs.device.id, [])
    if history and history[-1][0] > obs.ts:
        history = []
    history = [p for p in history if obs.ts - p[0] <= s.rate_of_rise_window_s]
    history.append([obs.ts, value])
    sit.mem.put("rise", obs.device.id, history[-32:])
    span = obs.ts - history[0][0]
    if span < min(20.0, s.rate_of_rise_window_s / 2):
        return None
    return (value - history[0][1]) / span * 60.0


def _heat_signal(sit: Situation, obs: Observation) -> tuple[bool | None, str]:
    s: RuleSettings = sit.settings
    if obs.msg.kind is MessageClass.EVENT:
        return {"alarm": True, "normal": False}.get(obs.body.state), "event"
    value = plausible_value(obs)
    if value is None:
        return None, ""
    threshold = getattr(obs.device, "threshold_c", s.heat_static_c)
    rate = _rate_of_rise(sit, obs, value)
    if value >= threshold:
        return True, "static"
    if rate is not None and rate >= s.rate_of_rise_c_per_min:
        return True, "rate_of_rise"
    if value < threshold - s.heat_hysteresis_c:
        return False, ""
    return None, ""


DETECTOR_SIGNALS: dict[str, Callable[[Situation, Observation], tuple[bool | None, str]]] = {
    "smoke": lambda sit, obs: (binary_signal(obs), "smoke"),
    "heat": _heat_signal,
    "heat_alarm": lambda sit, obs: (binary_signal(obs), "heat_alarm"),
}


def fire(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    signal, how = DETECTOR_SIGNALS[obs.kind](sit, obs)
    if signal is None:
        return
    zone = obs.room.fire_zone
    key = f"{obs.site.id}|{zone}|{int(obs.drill)}"
    alarmed = dict(sit.mem.get("zone", key, {}))
    if not signal:
        if alarmed.pop(obs.device.id, None) is not None:  # the alert itself stays until a person closes it
            sit.mem.put("zone", key, alarmed) if alarmed else sit.mem.pop("zone", key)
        return
    alarmed[obs.device.id] = obs.ts
    sit.mem.put("zone", key, alarmed)
    n, where = len(alarmed), names(obs)
    subject = f"{obs.site.id}/{zone}" + ("/drill" if obs.drill else "")
    extra = {"detectors": sorted(alarmed), "zone": zone, "signal": how}
    if n >= sit.settings.fire_confirm_detectors:
        yield raised(obs, "fire", subject, "critical",
                     f"火警确认：{where['site']} {where['room']}（防火分区 {zone}）{n} 个探测器报警",
                     f"Fire confirmed: {n} detectors in alarm, zone {zone}, {where['room']}, {where['site']}",
                     **extra)
    else:
        why = "温升速率过快" if how == "rate_of_rise" else "报警"
        yield raised(obs, "fire", subject, "pre_alarm",
                     f"火灾预警：{where['site']} {where['room']} {where['device']} {why}，需人工复核",
                     f"Fire pre-alarm: {where['device']} in {where['room']}, {where['site']}"
                     f"{' (rate of rise)' if how == 'rate_of_rise' else ''} — check in person", **extra)
