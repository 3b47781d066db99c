"""What ingest checks before a message is queued for InfluxDB, in order: the contract
(``core/contract.py`` ``parse``), the retain flag, the organisation config (``Inventory``) and
InfluxDB's time range. Anything refused raises :class:`~stationwatch.core.contract.ContractError`
with a reason the quarantine keeps (docs/mqtt-contract.md, refusal reasons).
"""
from __future__ import annotations

from stationwatch.core.contract import (
    DELIVERY,
    LOCAL_ALARM,
    ContractError,
    Inventory,
    MessageClass,
    parse,
)

from .influx import Point, to_point

INFLUX_MAX_MS = 9_223_372_036_854  # InfluxDB's last representable time (int64 ns), 2262-04-11
ROUTINE = {MessageClass.READING.value, MessageClass.HEARTBEAT.value, MessageClass.HEALTH.value}


def routine(topic: str) -> bool:
    """Readings, camera heartbeats and health samples — what may give way in a flood — judged by the
    topic alone, before the message is parsed. Events, status and the local alarm are never routine."""
    parts = topic.split("/", 6)
    return len(parts) == 6 and parts[4] in ROUTINE and parts[5] != LOCAL_ALARM


class Admission:
    def __init__(self, cfg):
        self.inventory = Inventory(cfg)

    def point(self, topic: str, payload: bytes, retained: bool = False, arrival: float | None = None) -> Point | None:
        """The point to store for a message, None when its class is not stored, or ContractError."""
        msg = parse(topic, payload)
        if retained and not DELIVERY[msg.kind].retain:
            raise ContractError("retained", f"a retained {msg.kind.value} message: the contract retains only status "
                                            "(junk left on the topic, or a gateway that sets the flag)")
        device = self.inventory.check(msg)
        point = to_point(msg, device)
        if point is None:
            return None
        if not 0 <= point.time_ms <= INFLUX_MAX_MS:
            raise ContractError("time_out_of_range", f"ts {msg.body.ts} is past InfluxDB's last time (2262-04-11)")
        return point
