"""The time the calendar rules go by for a gateway's message (is it night? the heating season?).

A gateway's clock can be wrong — a Pi without its network boots at the time it was switched off, a
local time taken for UTC is 8 hours ahead — and a wrong clock must not switch the night-exit rule
off. So the engine keeps, per gateway, what it knows of the offset of that clock from its own
(memory namespace ``clock``: ``{"offset": s}``, and ``"low": [since, skew]`` while a lower offset
is suspected), learnt from the gateway's device messages (skew = message time − arrival time):

* **ahead** — a skew more than ``limits.clock.tolerance_s`` above the offset proves the clock at
  least that far ahead (nothing arrives before it is sent): the offset rises to it at once;
* **in step** — a skew within the tolerance of zero while the broker is settled: the clock agrees
  with the engine's now, the offset is zero;
* **behind** — a skew more than the tolerance below the offset is a delayed message (the engine was
  away, the broker held it) or a clock gone back. Only while the broker is settled
  (alerts/supervision.py) and only when the gateway's messages keep arriving that far below for
  ``confirm_s`` does the offset drop (to the highest of those skews); a message in line with the
  offset ends the suspicion. Until then a clock gone back is believed — for ``confirm_s``.

A live message's rule time is its own time while the offset is within the tolerance, else its time
less the offset (what was delayed stays delayed), never later than its arrival. A replayed
(``historical``) message keeps its own time: an old timestamp is what a replay has.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stationwatch.core.contract import Message

if TYPE_CHECKING:
    from .situation import Situation

NAMESPACE = "clock"
ZERO = {"offset": 0.0}


def rule_time(sit: Situation, msg: Message, now: float) -> float:
    """The time the calendar rules take for ``msg`` arriving at ``now``; notes what it shows of the clock."""
    ts = msg.body.ts
    if not sit.mem.has(NAMESPACE, msg.gateway) and abs(ts - now) <= sit.cfg.limits.clock.tolerance_s:
        return min(ts, now)  # nearly every message: a clock known in step, in step again (nothing to note)
    limits = sit.cfg.limits.clock
    tol = limits.tolerance_s
    historical = bool(getattr(msg.body, "historical", False))
    settled = sit.pipeline is None or not sit.pipeline.broker_unsettled(now)
    state: dict[str, Any] = sit.mem.get(NAMESPACE, msg.gateway) or ZERO
    offset, skew = state["offset"], ts - now
    new = state
    if skew > offset + tol:
        new = {"offset": skew}
    elif historical:
        pass
    elif settled and abs(skew) <= tol:
        new = ZERO
    elif skew < offset - tol:
        if settled:
            since, highest = state.get("low", (now, skew))
            highest = max(highest, skew)
            new = {"offset": highest} if now - since >= limits.confirm_s else {**state, "low": [since, highest]}
    elif "low" in state:
        new = {"offset": offset}
    if new != state:
        if new == ZERO:
            sit.mem.pop(NAMESPACE, msg.gateway)
        else:
            sit.mem.put(NAMESPACE, msg.gateway, new)
    offset = new["offset"]
    if historical or abs(offset) <= tol:
        return min(ts, now)
    sit.clock_corrected += 1
    return min(ts - offset, now)
