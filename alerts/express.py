"""The engine's express lane for ``readings`` batches, nearly all of a country's traffic: the batch
is decoded in one pass (msgspec, core/readings_codec.py) into the same single-reading messages the
contract's :func:`~stationwatch.core.contract.fan_out` makes, when every item is of a sensor the
config wires to the gateway that sent it. It never refuses: a malformed item, an unknown sensor, a
number written as a string, anything it doubts — the batch goes the contract's way, which takes
what is good and refuses the rest by name. Through pydantic an item cost the engine ~10 µs before
its rules ran; tests/test_engine_express.py feeds both ways the same batches, good and bad, and
requires the same alerts, memory, quarantine and counts.
"""
from __future__ import annotations

import math
from typing import Any

from stationwatch.core.contract import BatchedReading, Inventory, Message, MessageClass
from stationwatch.core.readings_codec import BATCH, UNTAKEN
from stationwatch.core.wire import MAX_PAYLOAD, ROOT, topic

READINGS = MessageClass.READINGS.value
_ROOT = tuple(ROOT.split("/"))
_FIELDS = ("v", "ts", "seq", "historical", "value", "unit", "quality", "sensor")
assert tuple(BatchedReading.model_fields) == _FIELDS and BatchedReading.__pydantic_post_init__ is None
_new, _set = BatchedReading.__new__, object.__setattr__


def reading(ts: float, seq: int, historical: bool, value: float | None, unit: str, quality: str,
            sensor: str) -> BatchedReading:
    """The ``BatchedReading`` the contract's validation makes of values that are already valid,
    built as pydantic's ``model_construct`` builds one, without its per-field loop (a tenth of the
    engine's time at 12,800 readings a second). tests/test_engine_express.py compares the two."""
    m = _new(BatchedReading)
    _set(m, "__dict__", {"v": 1, "ts": ts, "seq": seq, "historical": historical, "value": value, "unit": unit,
                         "quality": quality, "sensor": sensor})
    _set(m, "__pydantic_fields_set__", set(_FIELDS))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


class BatchLane:
    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.taken = 0  # batches taken here (the others went the contract's way)

    def take(self, topic_name: str, payload: bytes) -> list[tuple[Message, Any, Any]] | None:
        """(message, sensor config, item) for each item of a batch on ``topic_name``, or None."""
        parts = topic_name.split("/")
        if len(parts) != 5 or parts[4] != READINGS or (parts[0], parts[1]) != _ROOT or len(payload) > MAX_PAYLOAD:
            return None
        site, gateway = parts[2], parts[3]
        if self.inventory.gateway_site.get(gateway) != site:
            return None
        try:
            batch = BATCH.decode(payload)
        except UNTAKEN:
            return None
        sensors, historical, out = self.inventory.sensors, batch.historical, []
        prefix = topic(site, gateway, MessageClass.READING, "")
        for it in batch.items:
            device = sensors.get(it.sensor)
            if device is None or device.gateway != gateway or (it.value is not None and not math.isfinite(it.value)):
                return None
            body = reading(it.ts, it.seq, historical, it.value, it.unit, it.quality, it.sensor)
            out.append((Message(site, gateway, MessageClass.READING, it.sensor, body, prefix + it.sensor), device, it))
        self.taken += 1
        return out
