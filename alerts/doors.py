"""Doors: an exit opened in the night window (possible missing resident, 走失) and any door held
open longer than ``door_open_max_s``.

The night window is site local time on the message's own clock (a replayed ``open`` from 02:00 is
still a night exit) — unless that clock is known to be off, when the corrected time counts
(alerts/clock.py): a gateway nine hours ahead must not switch the rule off. "Held open" is timed on
the engine's clock from the moment the ``open`` arrived, checked every tick, and survives restarts
in the ``door`` memory.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterator

from .situation import Observation, Situation
from .store import Raised
from .verdicts import Clear, Verdict, binary_signal, names, raised, subject


def night_exit(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """Stays until a person closes it: somebody has to check who went out."""
    when = obs.trusted_ts
    if not getattr(obs.device, "exit", False) or binary_signal(obs) is not True or not sit.is_night(when, obs.site):
        return
    where, local = names(obs), datetime.fromtimestamp(when, obs.site.tz).strftime("%H:%M")
    yield raised(obs, "night_exit", subject(obs, obs.device.id), "major",
                 f"夜间出口门打开：{where['site']} {where['device']}（{local}），可能有人员走失",
                 f"Exit door opened at night: {where['device']} ({local}), {where['site']} — possible missing resident",
                 at=when, local_time=local)


def door_state(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """Remember when a door opened; a closed door clears its held-open alert."""
    signal = binary_signal(obs)
    if signal is None:
        return
    if signal:
        if sit.mem.get("door", obs.device.id) is None:
            sit.mem.put("door", obs.device.id, {"ts": obs.ts, "at": obs.received, "drill": obs.drill,
                                                "alerted": False})
        return
    if sit.mem.pop("door", obs.device.id) is not None:
        yield Clear("door_held_open", subject(obs, obs.device.id), obs.ts, "door closed / 门已关闭")


def doors_held_open(sit: Situation, now: float) -> Iterator[Verdict]:
    limit = sit.settings.door_open_max_s
    for door_id, opened in list(sit.mem.space("door").items()):
        if opened["alerted"] or now - opened["at"] < limit:
            continue
        door = sit.devices.get(door_id)
        if door is None:  # no longer in the config
            sit.mem.pop("door", door_id)
            continue
        sit.mem.put("door", door_id, {**opened, "alerted": True})
        site = sit.cfg.site_of(door)
        room = site.room(door.room)
        minutes = (now - opened["at"]) / 60
        mark_zh, mark_en = ("【演练】", "[DRILL] ") if opened["drill"] else ("", "")
        yield Raised("door_held_open", f"{site.id}/{door_id}", "warning", site.id, room.id, room.fire_zone,
                     f"{mark_zh}门长时间未关：{site.name} {door.name}（已开 {minutes:.0f} 分钟）",
                     f"{mark_en}Door held open: {door.name}, {site.name} (open for {minutes:.0f} min)",
                     {"device": door_id, "exit": bool(getattr(door, "exit", False)), "opened_ts": opened["ts"]},
                     opened["at"], opened["drill"])
