"""巡检 / the patrol: the centre asks every gateway that is online, every ``patrol_interval_s``
(and soon after each birth), to answer ``cmd/patrol``; the gateway answers on its ``patrol`` topic
with its clock, config version and driver inventory (gateway/agent.py). Each finding is a
``gateway_patrol`` warning of its own, which the next good answer clears:

| finding | subject | when |
|---|---|---|
| no answer | ``{site}/{gateway}/missed`` | no answer within ``patrol_timeout_s`` |
| clock off | ``{site}/{gateway}/clock`` | gateway clock − centre clock (at the middle of the round trip) beyond ``clock_tolerance_s`` |
| other config | ``{site}/{gateway}/config`` | its config version is not the centre's (when the centre knows its own) |

Fire-alarm monitoring practice (GB 26875.1, GB 50440) has the centre patrol its devices at least
every 2 hours and keep their clocks within a few seconds. No patrol is sent or judged while the
broker is unsettled (alerts/supervision.py): that silence is the broker's.
"""
from __future__ import annotations

import itertools
from typing import Iterator

from stationwatch.core.contract import Message, MessageClass, topic
from stationwatch.core.wire import payload

from .situation import Situation
from .store import Raised
from .verdicts import Clear, Verdict

RULE = "gateway_patrol"
FIRST_AFTER_BIRTH_S = 5.0  # the first patrol after a gateway comes online
FINDINGS = {  # finding → (中文, English)
    "missed": ("巡检无应答", "no answer to the patrol"),
    "clock": ("网关时钟偏差", "gateway clock off"),
    "config": ("网关配置版本与中心不一致", "gateway runs another config version"),
}
_ids = itertools.count(1)


def _raised(sit: Situation, gw_id: str, finding: str, at: float, detail_zh: str, detail_en: str, **detail) -> Raised:
    gw = sit.cfg.gateway(gw_id)
    site = sit.cfg.site(gw.site)
    zh, en = FINDINGS[finding]
    return Raised(RULE, f"{site.id}/{gw.id}/{finding}", "warning", site.id, None, None,
                  f"{zh}：{site.name} {gw.name}（{detail_zh}）", f"{en}: {gw.name}, {site.name} ({detail_en})",
                  {"device": gw.id, "finding": finding, **detail}, at)


def due(sit: Situation, now: float) -> tuple[list[tuple[str, bytes]], list[Verdict]]:
    """The patrol commands to send now, and the verdicts of patrols that went unanswered."""
    settings = sit.cfg.supervision
    if sit.pipeline is not None and (not sit.pipeline.linked or sit.pipeline.broker_unsettled(now)):
        return [], []
    commands: list[tuple[str, bytes]] = []
    verdicts: list[Verdict] = []
    for gw in sit.cfg.gateways:
        if sit.gateway_down(gw.id) or sit.mem.get("gateway", gw.id) is None:
            sit.mem.pop("patrol", gw.id)
            continue
        state = sit.mem.get("patrol", gw.id)
        if state is None:  # online, never patrolled in this state: soon
            sit.mem.put("patrol", gw.id, {"next": now + FIRST_AFTER_BIRTH_S})
            continue
        if "sent" in state and now - state["sent"] > settings.patrol_timeout_s:
            if sit.mem.get("suspect", gw.id) is not None:  # not heard since the broker came back: the lost
                sit.mem.put("patrol", gw.id, {"next": state["next"]})  # rule judges it (liveness.gateways_lost)
                continue
            verdicts.append(_raised(sit, gw.id, "missed", state["sent"], f"{settings.patrol_timeout_s:.0f} 秒内未应答",
                                    f"no answer within {settings.patrol_timeout_s:.0f} s", request=state["id"]))
            state = {"next": state["next"]}
            sit.mem.put("patrol", gw.id, state)
        if "sent" not in state and now >= state["next"]:
            request = f"p{int(now)}-{next(_ids)}"
            sit.mem.put("patrol", gw.id, {"next": now + settings.patrol_interval_s, "sent": now, "id": request})
            commands.append((topic(gw.site, gw.id, MessageClass.CMD, "patrol"),
                             payload(now, name="patrol", args={"id": request})))
    return commands, verdicts


def answer(sit: Situation, msg: Message, now: float, central_version: str | None) -> Iterator[Verdict]:
    """A gateway's answer to the patrol: clears the miss, judges the clock and the config version."""
    state = sit.mem.get("patrol", msg.gateway) or {}
    body = msg.body
    if state.get("id") != body.request:
        return  # not the patrol we are waiting for (a late answer, or another engine's)
    sit.mem.put("patrol", msg.gateway, {"next": state["next"]})
    gw = sit.cfg.gateway(msg.gateway)
    subj = f"{gw.site}/{gw.id}"
    yield Clear(RULE, f"{subj}/missed", now, "the gateway answers the patrol / 巡检已应答")
    offset = body.ts - (state["sent"] + now) / 2
    tolerance = sit.cfg.supervision.clock_tolerance_s
    if abs(offset) > tolerance:
        yield _raised(sit, gw.id, "clock", now, f"偏差 {offset:+.1f} 秒，允许 ±{tolerance:g} 秒",
                      f"{offset:+.1f} s off, ±{tolerance:g} s allowed", offset_s=round(offset, 2))
    else:
        yield Clear(RULE, f"{subj}/clock", now, f"clock within {tolerance:g} s / 时钟正常")
    if central_version is not None and body.config_version != central_version:
        yield _raised(sit, gw.id, "config", now, f"网关 {body.config_version}，中心 {central_version}",
                      f"gateway {body.config_version}, centre {central_version}",
                      gateway_version=body.config_version, central_version=central_version)
    elif central_version is not None:
        yield Clear(RULE, f"{subj}/config", now, "config version matches / 配置版本一致")
