"""What a gateway does on a command from the centre (``sw/v1/{site}/{gateway}/cmd/{name}``).

| command | args | the gateway |
|---|---|---|
| ``silence``, ``ack`` | — | silences its local alarm (the LED stays lit while a detector is in alarm) |
| ``patrol`` | ``id`` | answers at once on ``patrol``: its clock, config version, drivers (巡检) |
| ``stored`` | ``seqs``: ``[[first, last], …]`` | lets the messages the centre stored leave the spool (end to end) |
| ``drill`` | ``action``: ``start`` or ``end``; ``minutes`` (default 60, at most 240) | marks every event it sends as a drill (演练) until the drill ends — by command or by itself |

A command carrying ``args.id`` is answered on ``reply``: ``{"request": id, "command": name, "ok": …,
"detail": …}`` — done, or refused and why — so whoever sent it (``stationwatch drill``, ``stationwatch
simulate``) knows. A refusal raises :class:`~stationwatch.core.wire.CommandRefused`.
"""
from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Callable

from stationwatch.core.wire import DRILL, CommandRefused, GatewayCommand, MessageClass, payload
from stationwatch.sensors.base import inventory

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
DRILL_DEFAULT_MIN, DRILL_MAX_MIN = 60, 240  # a drill nobody ends still ends (a forgotten drill hides real fires)


def carry_out(agent: Agent, cmd: GatewayCommand, handler: Callable[[Agent, GatewayCommand], None]) -> None:
    """Run the handler; answer on ``reply`` when the command carried an id."""
    ok, detail = True, None
    try:
        handler(agent, cmd)
    except CommandRefused as exc:
        ok, detail = False, str(exc)[:500]
        log.warning("命令未执行 / command '%s' refused: %s", cmd.name, detail)
    request = cmd.args.get("id")
    if isinstance(request, str) and REQUEST_ID.fullmatch(request) and cmd.name != "patrol":
        agent.link.publish(agent.topic(MessageClass.REPLY), payload(time.time(), request=request, command=cmd.name,
                                                                     ok=ok, detail=detail), MessageClass.REPLY)


def answer_patrol(agent: Agent, cmd: GatewayCommand) -> None:
    """巡检: the centre asks; the gateway answers at once with its clock, config version and drivers
    (never through the spool: an answer that cannot go out now is rightly a missed patrol)."""
    request = cmd.args.get("id")
    if not isinstance(request, str) or not REQUEST_ID.fullmatch(request):
        raise CommandRefused("patrol needs args.id / 巡检命令缺少 id")
    body = payload(time.time(), request=request, config_version=agent.config_version,
                   drivers=inventory(agent.drivers), session=agent.session)
    agent.link.publish(agent.topic(MessageClass.PATROL), body, MessageClass.PATROL)
    agent.stats["patrols"] += 1


def stored(agent: Agent, cmd: GatewayCommand) -> None:
    """The centre stored these seqs (ingest, after InfluxDB took them): they may leave the spool."""
    ranges = cmd.args.get("seqs")
    if not isinstance(ranges, list) or len(ranges) > 10_000 or not all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
            and 0 <= r[0] <= r[1] for r in ranges):
        raise CommandRefused("stored needs args.seqs: [[first, last], …] / 入库确认格式不符")
    if agent.spool.stored([(r[0], r[1]) for r in ranges]):
        agent.forwarder.wake()


def drill(agent: Agent, cmd: GatewayCommand) -> None:
    """Start or end a drill (演练); while it lasts every event is marked ``drill: true``."""
    action, minutes = cmd.args.get("action"), cmd.args.get("minutes", DRILL_DEFAULT_MIN)
    if action not in ("start", "end"):
        raise CommandRefused("drill needs args.action: start or end / 演练命令须为 start 或 end")
    if action == "start":
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 < minutes <= DRILL_MAX_MIN:
            raise CommandRefused(f"args.minutes must be between 0 and {DRILL_MAX_MIN} / 演练时长须在 0–{DRILL_MAX_MIN} 分钟")
        agent.drill_until = time.monotonic() + minutes * 60
        log.warning("演练开始 / DRILL started from the centre for %g min: every event is marked as a drill", minutes)
    else:
        agent.drill_until = None
        log.warning("演练结束 / drill ended from the centre")
    agent.report_drill(time.time() + minutes * 60 if action == "start" else None)


COMMANDS: dict[str, Callable[[Agent, GatewayCommand], None]] = {
    "silence": lambda agent, cmd: agent.alarm.silence("cmd:silence"),
    "ack": lambda agent, cmd: agent.alarm.silence("cmd:ack"),  # acknowledged centrally
    "patrol": answer_patrol,
    "stored": stored,
    "drill": drill,
}
__all__ = ["COMMANDS", "DRILL", "carry_out"]
