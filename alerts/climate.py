"""Heating and heat (寒冬送温暖 / 夏季送清凉): temperature bands held for a duration, with hysteresis,
gated by the site's heating season; heating supply water too cold while it is cold outside; the
boiler's fault contact; the circulation pump stopped in the heating season; heating water pressure
below a sensor's own ``low_bar``.

A band (a row of :data:`BANDS`) is entered when the value passes its limit and left only when it is
``room_hysteresis_c`` back on the good side; the time in the band is measured on the message clock
and kept in the ``since`` memory. The season is judged by the corrected time when the gateway's
clock is known to be off (alerts/clock.py). While a band has not yet held for its duration the alert is
*pending* (shown, not notified). The worst band held sets the severity, which follows the room
down as well as up (critical below 5 °C, back to warning at 10 °C).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from stationwatch.core.alert_types import SEVERITIES
from stationwatch.core.config import Room
from stationwatch.core.policy import RuleSettings

from .situation import Observation, Situation
from .verdicts import Clear, Verdict, binary_signal, names, plausible_value, raised, subject


@dataclass(frozen=True)
class Band:
    """``rule`` at ``severity`` when the value is beyond ``limit`` for ``for_s`` in ``season``."""
    rule: str
    severity: str
    limit: Callable[[RuleSettings], float]
    below: bool
    rooms: Callable[[Room], bool]
    for_s: Callable[[RuleSettings], float]
    season: str  # a key of SEASONS
    zh: str
    en: str


SEASONS: dict[str, Callable[[Situation, float, object], bool]] = {
    "any": lambda sit, ts, site: True,
    "heating": lambda sit, ts, site: sit.heating(ts, site),
    "summer": lambda sit, ts, site: not sit.heating(ts, site),
}

BANDS: tuple[Band, ...] = (
    Band("cold_room", "critical", lambda s: s.any_room_min_c, True, lambda r: True, lambda s: s.cold_critical_for_s,
         "any", "室温严重过低（防冻）", "room dangerously cold (frost)"),
    Band("cold_room", "warning", lambda s: s.sleeping_room_min_c, True, lambda r: r.people_sleep,
         lambda s: s.cold_for_s, "heating", "住宿房间室温过低", "sleeping room too cold"),
    Band("hot_room", "warning", lambda s: s.summer_max_c, False, lambda r: r.people_sleep, lambda s: s.hot_for_s,
         "summer", "住宿房间室温过高（防中暑）", "sleeping room too hot (heat stroke risk)"),
)


def _track(sit: Situation, key: str, value: float, limit: float, below: bool, ts: float,
           holds: bool, hyst: float | None = None) -> tuple[float | None, bool]:
    """Enter, keep or leave a band: returns (since, just entered). ``hyst``: default ``room_hysteresis_c``."""
    hyst = sit.settings.room_hysteresis_c if hyst is None else hyst
    beyond = value < limit if below else value > limit
    back = value >= limit + hyst if below else value <= limit - hyst
    since = sit.mem.get("since", key)
    if not holds or back:
        sit.mem.pop("since", key)
        return None, False
    if beyond and since is None:
        sit.mem.put("since", key, ts)
        return ts, True
    return since, False


def _text(band: Band, obs: Observation, value: float, limit: float, minutes: float, pending: bool) -> tuple[str, str]:
    where, word_zh, word_en = names(obs), ("低" if band.below else "高"), ("below" if band.below else "above")
    if pending:
        return (f"{band.zh}（观察中）：{where['site']} {where['room']} {value:.1f} °C（{word_zh}于 {limit:g} °C）",
                f"{band.en.capitalize()} (watching): {where['room']}, {where['site']} {value:.1f} °C ({word_en} {limit:g} °C)")
    return (f"{band.zh}：{where['site']} {where['room']} {value:.1f} °C（{word_zh}于 {limit:g} °C 已 {minutes:.0f} 分钟）",
            f"{band.en.capitalize()}: {where['room']}, {where['site']} {value:.1f} °C ({word_en} {limit:g} °C "
            f"for {minutes:.0f} min)")


def room_temperature(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    value = plausible_value(obs)
    if value is None:
        return
    s, subj = sit.settings, subject(obs, obs.room.id)
    by_rule: dict[str, list[tuple[Band, float, bool]]] = {}
    for band in (b for b in BANDS if b.rooms(obs.room)):
        holds = SEASONS[band.season](sit, obs.trusted_ts, obs.site)
        since, new = _track(sit, f"{band.rule}|{band.severity}|{obs.device.id}", value, band.limit(s), band.below,
                            obs.ts, holds)
        entries = by_rule.setdefault(band.rule, [])
        if since is not None:
            entries.append((band, since, new))
    for rule, entries in by_rule.items():
        held = [(b, since) for b, since, _ in entries if obs.ts - since >= b.for_s(s)]
        if held:
            band, since = max(held, key=lambda e: SEVERITIES[e[0].severity].rank)
            zh, en = _text(band, obs, value, band.limit(s), (obs.ts - since) / 60, False)
            yield raised(obs, rule, subj, band.severity, zh, en, value=value, limit=band.limit(s), since=since)
        elif any(new for _, _, new in entries):
            band = next(b for b, _, new in entries if new)
            zh, en = _text(band, obs, value, band.limit(s), 0, True)
            yield raised(obs, rule, subj, band.severity, zh, en, pending=True, value=value, limit=band.limit(s))
        elif not entries and not _room_in_band(sit, obs, rule):
            yield Clear(rule, subj, obs.ts, f"room temperature back to {value:.1f} °C / 室温恢复")


def _room_in_band(sit: Situation, obs: Observation, rule: str) -> bool:
    """Another temperature sensor of the same room still in one of the rule's bands."""
    others = sit.thermometers(obs.site.id, obs.room.id) - {obs.device.id}
    return any(sit.mem.get("since", f"{rule}|{band.severity}|{other}") is not None
               for other in sorted(others) for band in BANDS if band.rule == rule)


def outdoor_temperature(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """Remember the site's outdoor temperature for the supply-water rule."""
    value = plausible_value(obs)
    if value is not None:
        sit.mem.put("outdoor", obs.site.id, [obs.ts, value])
    return iter(())


def supply_water(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """Heating supply water below ``supply_min_c`` for ``supply_for_s`` in the heating season while
    it is cold outside (below ``outdoor_cold_c``; a site without an outdoor sensor counts as cold)."""
    value = plausible_value(obs)
    if value is None:
        return
    s, subj = sit.settings, subject(obs, obs.device.id)
    outdoor = sit.outdoor(obs.site)
    holds = sit.heating(obs.trusted_ts, obs.site) and (outdoor is None or outdoor < s.outdoor_cold_c)
    since, new = _track(sit, f"supply_cold|major|{obs.device.id}", value, s.supply_min_c, True, obs.ts, holds)
    where = names(obs)
    outside = "" if outdoor is None else f"，室外 {outdoor:.1f} °C"
    outside_en = "" if outdoor is None else f", outdoor {outdoor:.1f} °C"
    if since is None:
        yield Clear("supply_cold", subj, obs.ts, f"supply water back to {value:.1f} °C / 供水温度恢复")
    elif obs.ts - since >= s.supply_for_s:
        yield raised(obs, "supply_cold", subj, "major",
                     f"供暖供水温度过低：{where['site']} {where['device']} {value:.1f} °C"
                     f"（低于 {s.supply_min_c:g} °C{outside}）",
                     f"Heating supply water too cold: {where['device']}, {where['site']} {value:.1f} °C "
                     f"(below {s.supply_min_c:g} °C{outside_en})", value=value, outdoor=outdoor, since=since)
    elif new:
        yield raised(obs, "supply_cold", subj, "major",
                     f"供暖供水温度偏低（观察中）：{where['site']} {where['device']} {value:.1f} °C{outside}",
                     f"Heating supply water low (watching): {where['device']}, {where['site']} {value:.1f} °C",
                     pending=True, value=value, outdoor=outdoor)


def boiler_fault(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """The boiler's fault contact: heating stops, and in winter nobody may freeze."""
    signal, subj = binary_signal(obs), subject(obs, obs.device.id)
    if signal is False:
        yield Clear("boiler_fault", subj, obs.ts, "boiler fault cleared / 锅炉故障消除")
    elif signal:
        where = names(obs)
        yield raised(obs, "boiler_fault", subj, "major",
                     f"锅炉故障：{where['site']} {where['device']}（供暖可能中断）",
                     f"Boiler fault: {where['device']}, {where['site']} (heating may stop)")


def pump_stopped(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """The circulation pump stopped for ``pump_stopped_for_s`` in the heating season: however hot the
    boiler, no heat reaches the rooms. Outside the season a stopped pump is normal (and clears)."""
    signal, subj = binary_signal(obs), subject(obs, obs.device.id)
    if signal is None:
        return
    s, key = sit.settings, f"pump_stopped|major|{obs.device.id}"
    if signal or not sit.heating(obs.trusted_ts, obs.site):
        sit.mem.pop("since", key)
        yield Clear("pump_stopped", subj, obs.ts, "pump running, or heating season over / 循环泵恢复运行或非供暖季")
        return
    since, new = sit.mem.get("since", key), False
    if since is None:
        since, new = obs.ts, True
        sit.mem.put("since", key, since)
    where, minutes = names(obs), (obs.ts - since) / 60
    if obs.ts - since >= s.pump_stopped_for_s:
        yield raised(obs, "pump_stopped", subj, "major",
                     f"循环泵停运：{where['site']} {where['device']}（已 {minutes:.0f} 分钟，供暖中断）",
                     f"Circulation pump stopped: {where['device']}, {where['site']} (for {minutes:.0f} min; "
                     f"no heat reaches the rooms)", since=since)
    elif new:
        yield raised(obs, "pump_stopped", subj, "major",
                     f"循环泵停运（观察中）：{where['site']} {where['device']}",
                     f"Circulation pump stopped (watching): {where['device']}, {where['site']}", pending=True)


def pressure_low(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """Heating water pressure below the sensor's ``low_bar`` for ``pressure_for_s`` (a leak, a failed
    fill: the top radiators run empty, the boiler locks out). Only sensors with ``low_bar`` set."""
    low, value = getattr(obs.device, "low_bar", None), plausible_value(obs)
    if low is None or value is None:
        return
    s, subj = sit.settings, subject(obs, obs.device.id)
    since, new = _track(sit, f"pressure_low|major|{obs.device.id}", value, low, True, obs.ts, True,
                        hyst=s.pressure_hysteresis_bar)
    where = names(obs)
    if since is None:
        yield Clear("pressure_low", subj, obs.ts, f"pressure back to {value:.2f} bar / 水压恢复")
    elif obs.ts - since >= s.pressure_for_s or new:
        pending = obs.ts - since < s.pressure_for_s
        mark_zh, mark_en = ("（观察中）", " (watching)") if pending else ("", "")
        yield raised(obs, "pressure_low", subj, "major",
                     f"供暖系统水压过低{mark_zh}：{where['site']} {where['device']} {value:.2f} bar（低于 {low:g} bar）",
                     f"Heating water pressure low{mark_en}: {where['device']}, {where['site']} {value:.2f} bar "
                     f"(below {low:g} bar)", pending=pending, value=value, limit=low)
