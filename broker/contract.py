"""The MQTT contract: topic tree, payload schemas, QoS and retain per message class.

This module is the only place that turns bytes from the broker into messages; every consumer
(ingest, alerting, the simulator's command channel) calls :func:`parse`, and anything it refuses
raises :class:`ContractError` with a reason a person can act on. See ``docs/mqtt-contract.md``.

Topics::

    sw/v1/{site}/{gateway}/status                 birth / death (retained, QoS 1)
    sw/v1/{site}/{gateway}/reading/{sensor}       periodic values (QoS 1)
    sw/v1/{site}/{gateway}/event/{device}         state changes: alarm, door open, fault (QoS 1)
    sw/v1/{site}/{gateway}/heartbeat/{camera}     camera liveness (QoS 0)
    sw/v1/{site}/{gateway}/cmd/{name}             commands to a gateway (QoS 1)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ROOT = "sw/v1"
SCHEMA_VERSION = 1
MAX_PAYLOAD = 16 * 1024  # no legitimate message is larger; bigger ones are refused before parsing


class Kind(StrEnum):
    STATUS = "status"
    READING = "reading"
    EVENT = "event"
    HEARTBEAT = "heartbeat"
    CMD = "cmd"


@dataclass(frozen=True)
class Delivery:
    qos: int
    retain: bool


DELIVERY: dict[Kind, Delivery] = {
    Kind.STATUS: Delivery(1, True),      # the last word of a gateway stays on the broker
    Kind.READING: Delivery(1, False),    # lossless ingest needs PUBACK
    Kind.EVENT: Delivery(1, False),      # alarms and events: at least once
    Kind.HEARTBEAT: Delivery(0, False),  # the next heartbeat replaces a lost one
    Kind.CMD: Delivery(1, False),
}


class ContractError(ValueError):
    """A message that breaks the contract; ``reason`` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)
    v: Literal[1]
    ts: Annotated[float, Field(gt=1_000_000_000, lt=10_000_000_000)]  # gateway clock, Unix seconds

    @field_validator("*", mode="before")
    @classmethod
    def _no_nan(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class Sequenced(_Payload):
    seq: Annotated[int, Field(ge=0)]  # per gateway, rises by one per message it sends
    historical: bool = False  # replayed from the gateway's spool after an outage


class Reading(Sequenced):
    value: float | None  # None when quality is not ok
    unit: str = ""
    quality: Literal["ok", "fault", "stale"] = "ok"


class Event(Sequenced):
    state: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]  # alarm, normal, open, closed, fault …
    value: float | None = None
    drill: bool = False  # produced by a drill (演练): counted apart, marked on every notice


class Heartbeat(Sequenced):
    online: bool = True
    latency_ms: float | None = None


class Status(_Payload):
    state: Literal["online", "offline"]
    config_version: str | None = None
    drivers: list[str] = []
    reason: str | None = None  # offline: "will" (connection lost), "shutdown" (clean stop)


class Command(_Payload):
    name: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]
    args: dict[str, Any] = {}


SCHEMAS: dict[Kind, type[_Payload]] = {
    Kind.STATUS: Status, Kind.READING: Reading, Kind.EVENT: Event,
    Kind.HEARTBEAT: Heartbeat, Kind.CMD: Command,
}


@dataclass(frozen=True)
class Message:
    site: str
    gateway: str
    kind: Kind
    device: str | None  # sensor or camera id; the command name for cmd; None for status
    body: _Payload
    topic: str


def topic(site: str, gateway: str, kind: Kind, device: str | None = None) -> str:
    base = f"{ROOT}/{site}/{gateway}/{kind.value}"
    return base if device is None else f"{base}/{device}"


def subscription(kind: Kind | None = None, site: str = "+") -> str:
    return f"{ROOT}/{site}/+/#" if kind is None else f"{ROOT}/{site}/+/{kind.value}" + ("" if kind is Kind.STATUS else "/+")


def encode(body: _Payload) -> bytes:
    return body.model_dump_json(exclude_defaults=False).encode()


def _split(topic_name: str) -> tuple[str, str, Kind, str | None]:
    parts = topic_name.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != ROOT:
        raise ContractError("bad_topic", f"topic '{topic_name[:200]}' is not under {ROOT}/{{site}}/{{gateway}}/…")
    site, gateway, kind_name = parts[2], parts[3], parts[4]
    try:
        kind = Kind(kind_name)
    except ValueError:
        raise ContractError("bad_topic", f"unknown message class '{kind_name[:40]}' in topic") from None
    rest = parts[5:]
    if kind is Kind.STATUS:
        if rest:
            raise ContractError("bad_topic", "status topic takes no device")
        return site, gateway, kind, None
    if len(rest) != 1 or not rest[0]:
        raise ContractError("bad_topic", f"{kind.value} topic needs exactly one device after the class")
    return site, gateway, kind, rest[0]


def parse(topic_name: str, payload: bytes) -> Message:
    """Bytes from the broker → a validated :class:`Message`, or :class:`ContractError`."""
    site, gateway, kind, device = _split(topic_name)
    if len(payload) > MAX_PAYLOAD:
        raise ContractError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError("not_json", str(exc)[:200]) from None
    except RecursionError:  # "[[[[…" thousands deep: Python's parser gives up
        raise ContractError("not_json", "nested too deeply") from None
    if not isinstance(data, dict):
        raise ContractError("bad_schema", "payload must be a JSON object")
    if data.get("v") != SCHEMA_VERSION:
        raise ContractError("bad_version", f"schema version {data.get('v')!r} not understood (expected {SCHEMA_VERSION})")
    try:
        body = SCHEMAS[kind].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(payload)"
        raise ContractError("bad_schema", f"{where}: {first['msg']}") from None
    return Message(site, gateway, kind, device, body, topic_name)


def parse_command(topic_name: str, payload: bytes) -> Command:
    """A command to a gateway: a ``cmd`` message whose topic level and ``name`` agree."""
    msg = parse(topic_name, payload)
    if msg.kind is not Kind.CMD or msg.body.name != msg.device:
        raise ContractError("bad_command", f"'{topic_name[:200]}' is not a command named after its topic")
    return msg.body


class Inventory:
    """What the organisation config says exists; refuses messages from devices it does not know."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.gateway_site = {g.id: g.site for g in cfg.gateways}
        self.sensors = {s.id: s for s in cfg.sensors}
        self.cameras = {c.id: c for c in cfg.cameras}

    def check(self, msg: Message):
        """Returns the device config (or None for status/cmd) or raises ContractError."""
        site = self.gateway_site.get(msg.gateway)
        if site is None:
            raise ContractError("unknown_gateway", f"gateway '{msg.gateway[:64]}' is not in the config")
        if site != msg.site:
            raise ContractError("wrong_site", f"gateway '{msg.gateway}' belongs to site '{site}', not '{msg.site[:64]}'")
        if msg.kind in (Kind.STATUS, Kind.CMD):
            return None
        table = self.cameras if msg.kind is Kind.HEARTBEAT else {**self.sensors, **self.cameras} \
            if msg.kind is Kind.EVENT else self.sensors
        device = table.get(msg.device)
        if device is None:
            raise ContractError("unknown_device", f"device '{msg.device[:64]}' is not in the config")
        if device.gateway != msg.gateway:
            raise ContractError("wrong_gateway", f"device '{msg.device}' is wired to gateway '{device.gateway}'")
        return device
