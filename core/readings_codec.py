"""The two shapes readings travel in (``reading``, ``readings``) as msgspec typed decoders — as strict
as the contract's pydantic models (core/contract.py) or stricter, never laxer: a number written as a
string, an unknown key or a wrong type fails here and the message goes the contract's way, which
takes or refuses it and says why. For the express lanes that take most of the traffic in one pass:
ingest's (broker/express.py) and the engine's (alerts/express.py). Not imported on the gateway
(msgspec has no wheel for 32-bit Raspberry Pi OS)."""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from .wire import BATCH_MAX_ITEMS, TS_RANGE

Ts = Annotated[float, msgspec.Meta(gt=TS_RANGE[0], lt=TS_RANGE[1])]
Seq = Annotated[int, msgspec.Meta(ge=0)]
Quality = Literal["ok", "fault", "stale"]


class Item(msgspec.Struct, forbid_unknown_fields=True):
    """A batch item as the contract's ``BatchedReading`` reads it (``v``, ``historical``: the envelope's)."""
    sensor: str
    ts: Ts
    seq: Seq
    value: float | None
    unit: str = ""
    quality: Quality = "ok"


class Batch(msgspec.Struct, forbid_unknown_fields=True):
    v: Literal[1]
    ts: Ts
    items: Annotated[list[Item], msgspec.Meta(min_length=1, max_length=BATCH_MAX_ITEMS)]
    historical: bool = False


class Single(msgspec.Struct, forbid_unknown_fields=True):
    v: Literal[1]
    ts: Ts
    seq: Seq
    value: float | None
    historical: bool = False
    unit: str = ""
    quality: Quality = "ok"


BATCH = msgspec.json.Decoder(Batch)
SINGLE = msgspec.json.Decoder(Single)
UNTAKEN = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)  # not for a lane: the contract's way
