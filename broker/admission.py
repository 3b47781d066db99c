"""What ingest checks before a message is queued for InfluxDB, in order: the contract
(``core/contract.py`` ``parse``), the retain flag, the organisation config (``Inventory``), the
gateway's clock against the arrival time, its sequence numbers (:mod:`.sequences`) and InfluxDB's
time range. Anything refused raises :class:`~stationwatch.core.contract.ContractError` with a reason
the quarantine keeps (docs/mqtt-contract.md, refusal reasons).

The clock (``limits.clock``, docs/config.md): a message whose time is further than ``tolerance_s``
from its arrival is stored with the difference in the field ``skew_s`` and counted; one more than
``ahead_max_s`` ahead (nothing arrives before it is sent) or, live, more than ``behind_max_s``
behind (no broker queue holds a message that long) is refused as ``clock_ahead`` / ``clock_behind``.
Replayed messages (``historical``) and a gateway's status (a will carries the time it connected)
may be old, never from the future.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from stationwatch.core.contract import (
    DELIVERY,
    LOCAL_ALARM,
    ContractError,
    Inventory,
    Message,
    MessageClass,
    Refused,
    Sequenced,
    fan_out,
    item_bytes,
    parse,
)

from .express import ExpressLane
from .influx import INFLUX_MAX_MS, Point, to_point
from .sequences import SequenceLedger, content_of

ROUTINE = {MessageClass.READING.value, MessageClass.HEARTBEAT.value, MessageClass.HEALTH.value}


def routine(topic: str) -> bool:
    """Readings (single or batched), camera heartbeats and health samples — what may give way in a
    flood — judged by the topic alone, before the message is parsed. Events, status and the local
    alarm are never routine."""
    parts = topic.split("/", 6)
    if len(parts) == 5:
        return parts[4] == MessageClass.READINGS.value
    return len(parts) == 6 and parts[4] in ROUTINE and parts[5] != LOCAL_ALARM


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class Admission:
    def __init__(self, cfg):
        self.inventory = Inventory(cfg)
        self.clock = cfg.limits.clock
        self.sequences = SequenceLedger()
        self.express = ExpressLane(self.inventory, self.clock, self.sequences)
        self._flagged = 0  # stored with skew_s: the gateway's time was off its arrival (the full way's)

    @property
    def clock_flagged(self) -> int:
        return self._flagged + self.express.clock_flagged

    def point(self, topic: str, payload: bytes, retained: bool = False, arrival: float | None = None) -> Point | None:
        """The point to store for a single message, None when its class is not stored, or ContractError."""
        found = self.points(topic, payload, retained, arrival)
        if found and isinstance(found[0], Refused):
            raise ContractError(found[0].reason, found[0].detail)
        return found[0] if found else None

    def points(self, topic: str, payload: bytes, retained: bool = False,
               arrival: float | None = None) -> list[Point | Refused]:
        """The points to store for a message — one, or one per item of a ``readings`` batch — with
        :class:`Refused` in the place of a batch item that breaks the contract or the checks; [] when
        its class is not stored. A single message (or a batch's envelope) refused raises ContractError.
        Readings go the express lane (:mod:`.express`) when it takes them."""
        arrival = time.time() if arrival is None else arrival
        if not retained:
            taken = self.express.points(topic, payload, arrival)
            if taken is not None:
                return taken
        msg = parse(topic, payload)
        if retained and not DELIVERY[msg.kind].retain:
            raise ContractError("retained", f"a retained {msg.kind.value} message: the contract retains only status "
                                            "(junk left on the topic, or a gateway that sets the flag)")
        if msg.kind is not MessageClass.READINGS:
            point = self._admit(msg, arrival)
            return [] if point is None else [point]
        self.inventory.check(msg)  # the batch's gateway and site
        out: list[Point | Refused] = []
        for i, item in enumerate(fan_out(msg)):
            if isinstance(item, Refused):
                out.append(item)
                continue
            try:
                out.append(self._admit(item, arrival))
            except ContractError as exc:
                out.append(Refused(topic, item_bytes(msg.body.items[i]), exc.reason, f"items[{i}]: {exc.detail}"))
        return out

    def _admit(self, msg: Message, arrival: float) -> Point | None:
        device = self.inventory.check(msg)
        point = to_point(msg, device)
        if point is None:
            return None
        self._judge_clock(msg, point, arrival)
        if isinstance(msg.body, Sequenced):
            self._check_sequence(msg)
        if not 0 <= point.time_ms <= INFLUX_MAX_MS:
            raise ContractError("time_out_of_range", f"ts {msg.body.ts} is past InfluxDB's last time (2262-04-11)")
        return point

    def _judge_clock(self, msg: Message, point: Point, arrival: float) -> None:
        ts = msg.body.ts
        skew = ts - arrival
        old_is_fine = bool(getattr(msg.body, "historical", False)) or msg.kind is MessageClass.STATUS
        verdict = self.clock.judge(skew, historical=old_is_fine)
        if verdict == "clock_ahead":
            raise ContractError("clock_ahead", f"ts {_when(ts)} is {skew:.0f} s ahead of its arrival at {_when(arrival)} "
                                               f"(limits.clock.ahead_max_s {self.clock.ahead_max_s:g}): the gateway's clock is wrong")
        if verdict == "clock_behind":
            raise ContractError("clock_behind", f"live message with ts {_when(ts)}, {-skew:.0f} s before its arrival at "
                                                f"{_when(arrival)} (limits.clock.behind_max_s {self.clock.behind_max_s:g}): "
                                                "the gateway's clock is wrong")
        if verdict == "flag":
            self._flagged += 1
            point.fields["skew_s"] = round(skew, 3)

    def _check_sequence(self, msg: Message) -> None:
        body = msg.body
        content = content_of(msg.topic, body.__dict__)  # the model's fields, in their declared order
        if self.sequences.check(msg.gateway, body.seq, body.ts, content, body.historical) == "conflict":
            raise ContractError("seq_conflict", f"seq {body.seq} of gateway '{msg.gateway}' arrived before with other "
                                                "content; the first one stands")
