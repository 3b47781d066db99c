"""The MQTT contract: topic tree, payload schemas, QoS and retain per message class.

This module is the only place that turns bytes from the broker into messages; every consumer
(ingest, alerting, the simulator's command channel) calls :func:`parse`, and anything it refuses
raises :class:`ContractError` with a reason a person can act on. See ``docs/mqtt-contract.md``.

Topics::

    sw/v1/{site}/{gateway}/status                 birth / death (retained, QoS 1)
    sw/v1/{site}/{gateway}/reading/{sensor}       periodic values (QoS 1)
    sw/v1/{site}/{gateway}/readings               a poll cycle's readings in one message (QoS 1)
    sw/v1/{site}/{gateway}/event/{device}         state changes: alarm, door open, fault (QoS 1)
    sw/v1/{site}/{gateway}/heartbeat/{camera}     camera liveness (QoS 0)
    sw/v1/{site}/{gateway}/cmd/{name}             commands to a gateway (QoS 1)
    sw/v1/{site}/{gateway}/health/{metric}        the gateway's own health and local alarm (QoS 1)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from stationwatch.sensors.health import METRICS as HEALTH_DRIVER_METRICS

# the plain half (topics, classes, QoS, the gateway's encoder and command check) lives in wire.py;
# the names receivers use are re-exported here
from .wire import (  # noqa: F401
    DELIVERY,
    DRILL,
    LOCAL_ALARM,
    LOCAL_ALARM_STATES,
    BATCH_MAX_ITEMS,
    ROOT,
    SPOOL,
    TS_RANGE,
    ContractError,
    MessageClass,
    load_object,
    service_subscription,
    service_topic,
    split_service_topic,
    split_topic,
    subscription,
    topic,
)

# what may follow health/: the health driver's metrics and the local alarm's state
HEALTH_METRICS = frozenset(HEALTH_DRIVER_METRICS) | {LOCAL_ALARM, SPOOL, DRILL}


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)
    v: Literal[1]
    ts: Annotated[float, Field(gt=TS_RANGE[0], lt=TS_RANGE[1])]  # gateway clock, Unix seconds

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
    # the connection this word belongs to: a birth and the will registered with it share the number,
    # which rises with every connection, so a will delivered after the next birth is known as stale
    session: Annotated[int, Field(ge=0)] | None = None


class Reply(_Payload):
    """``reply``: a gateway's answer to a command that carried ``args.id``."""
    request: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]  # the command's ``args.id``
    command: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]
    ok: bool
    detail: Annotated[str, Field(max_length=500)] | None = None


class Patrol(_Payload):
    """``patrol``: a gateway's answer to ``cmd/patrol`` (巡检); ``ts`` is the gateway's clock."""
    request: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]  # the command's ``args.id``
    config_version: str | None = None
    drivers: list[str] = []
    session: Annotated[int, Field(ge=0)] | None = None


class HealthSample(Sequenced):
    """``health/{metric}``: one sample of the gateway's health driver (sensors/health.py)."""
    value: float | None  # None when quality is not ok
    unit: str = ""
    quality: Literal["ok", "fault", "stale"] = "ok"
    state: Literal["alarm", "normal", "fault"] | None = None  # flag metrics: alarm while the trouble lasts
    detail: Annotated[str, Field(max_length=200)] | None = None  # why a fault; throttling history


class LocalAlarmState(Sequenced):
    """``health/local_alarm``: the gateway's buzzer/relay started, was silenced, or went quiet."""
    state: Literal[LOCAL_ALARM_STATES]  # type: ignore[valid-type]
    # sounding: the detector that set it off; silenced: button, cmd:silence or cmd:ack;
    # quiet: the detector whose return to normal left none in alarm
    by: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9:_-]{0,63}$")]
    detectors: Annotated[list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]],
                         Field(max_length=64)] = []  # in alarm at that moment


class ReadingBatch(_Payload):
    """``readings``: one poll cycle's readings. The envelope is checked here, and the items with it
    when all are well; when one is not, each on its own (:func:`fan_out`), so a malformed item is
    refused alone and the others stand."""
    historical: bool = False  # replayed from the spool: every item of the batch
    items: Annotated[list[Any], Field(min_length=1, max_length=BATCH_MAX_ITEMS)]


class BatchedReading(Reading):
    """An item of a ``readings`` batch as the :class:`Reading` it is, with the sensor it is of (the
    item's ``sensor``; ``v`` and ``historical`` come from the envelope). Checked for the whole batch
    in one pass of pydantic's core: non-finite numbers by ``allow_inf_nan``, not by a Python hook."""
    model_config = ConfigDict(extra="forbid", strict=False, allow_inf_nan=False)
    sensor: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

    @classmethod
    def _no_nan(cls, value: Any) -> Any:  # replaces the inherited validator: allow_inf_nan does its work
        return value


_ITEMS = TypeAdapter(list[BatchedReading])
_ENVELOPE_ONLY = ("v", "historical")  # an item carrying these would override the envelope's


class Command(_Payload):
    name: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]
    args: dict[str, Any] = {}


SCHEMAS: dict[MessageClass, type[_Payload]] = {
    MessageClass.STATUS: Status, MessageClass.READING: Reading, MessageClass.EVENT: Event,
    MessageClass.HEARTBEAT: Heartbeat, MessageClass.CMD: Command, MessageClass.HEALTH: HealthSample,
    MessageClass.PATROL: Patrol, MessageClass.REPLY: Reply, MessageClass.READINGS: ReadingBatch,
}


def schema_for(kind: MessageClass, device: str | None) -> type[_Payload]:
    """The payload schema of a topic: by class, and for health by metric (``local_alarm`` differs)."""
    return LocalAlarmState if kind is MessageClass.HEALTH and device == LOCAL_ALARM else SCHEMAS[kind]


@dataclass(frozen=True)
class Message:
    site: str
    gateway: str
    kind: MessageClass
    device: str | None  # sensor or camera id; the command name for cmd; the metric for health; None for status
    body: _Payload
    topic: str


def encode(body: _Payload) -> bytes:
    return body.model_dump_json(exclude_defaults=False).encode()


def parse(topic_name: str, payload: bytes) -> Message:
    """Bytes from the broker → a validated :class:`Message`, or :class:`ContractError`."""
    site, gateway, kind, device = split_topic(topic_name)
    data = load_object(payload)
    try:
        body = schema_for(kind, device).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(payload)"
        raise ContractError("bad_schema", f"{where}: {first['msg']}") from None
    return Message(site, gateway, kind, device, body, topic_name)


@dataclass(frozen=True)
class Refused:
    """An item of a batch that breaks the contract: the others go on. ``item`` is the item as it came
    (JSON), kept in the quarantine with the batch's topic; the detail names the item."""
    topic: str
    item: bytes
    reason: str
    detail: str

    @property
    def payload(self) -> bytes:
        return self.item


def item_bytes(item: Any) -> bytes:
    """A batch item as JSON, for the quarantine (whatever it is: it may be why it was refused)."""
    try:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return repr(item).encode()


def _batch_item(batch: Message, i: int, item: Any) -> Message | Refused:
    """Item ``i`` of a ``readings`` batch on its own → the same :class:`Message` a single reading of
    that sensor makes (topic ``reading/{sensor}``), or :class:`Refused` naming the item."""
    def refused(detail: str) -> Refused:
        return Refused(batch.topic, item_bytes(item), "bad_schema", f"items[{i}]{detail}")
    if not isinstance(item, dict):
        return refused(": must be an object")
    own = [k for k in _ENVELOPE_ONLY if k in item]
    if own:
        return refused(f".{own[0]}: Extra inputs are not permitted (the batch's, not an item's)")
    try:
        body = BatchedReading.model_validate({**item, "v": 1, "historical": batch.body.historical})
    except ValidationError as exc:
        first = exc.errors()[0]
        return refused("." + ".".join(str(p) for p in first["loc"]) + f": {first['msg']}")
    return Message(batch.site, batch.gateway, MessageClass.READING, body.sensor, body,
                   topic(batch.site, batch.gateway, MessageClass.READING, body.sensor))


def fan_out(msg: Message) -> list[Message | Refused]:
    """The observations a message carries: a ``readings`` batch gives one single-reading
    :class:`Message` per item (or :class:`Refused` for an item that breaks the contract); any other
    message is itself."""
    if msg.kind is not MessageClass.READINGS:
        return [msg]
    raw, historical = msg.body.items, msg.body.historical
    try:
        if any(type(it) is not dict or "v" in it or "historical" in it for it in raw):
            raise ValueError("an item to look at on its own")
        items = _ITEMS.validate_python([{**it, "v": 1, "historical": historical} for it in raw])
    except ValueError:  # (ValidationError too) some item is wrong: each on its own, to name it and keep the others
        return [_batch_item(msg, i, item) for i, item in enumerate(raw)]
    prefix = topic(msg.site, msg.gateway, MessageClass.READING, "")
    return [Message(msg.site, msg.gateway, MessageClass.READING, it.sensor, it, prefix + it.sensor) for it in items]


class Inventory:
    """What the organisation config says exists; refuses messages from devices it does not know."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.gateway_site = {g.id: g.site for g in cfg.gateways}
        self.gateways = {g.id: g for g in cfg.gateways}
        self.sensors = {s.id: s for s in cfg.sensors}
        self.cameras = {c.id: c for c in cfg.cameras}
        self.devices = {**self.sensors, **self.cameras}  # an event may come from either (not merged per event:
        # a national config has 134,000 devices)

    def check(self, msg: Message):
        """Returns the device config (the gateway's for health, None for status/cmd) or raises ContractError."""
        site = self.gateway_site.get(msg.gateway)
        if site is None:
            raise ContractError("unknown_gateway", f"gateway '{msg.gateway[:64]}' is not in the config")
        if site != msg.site:
            raise ContractError("wrong_site", f"gateway '{msg.gateway}' belongs to site '{site}', not '{msg.site[:64]}'")
        if msg.kind in (MessageClass.STATUS, MessageClass.CMD, MessageClass.PATROL, MessageClass.REPLY,
                        MessageClass.READINGS):  # a batch's items are checked one by one (fan_out)
            return None
        if msg.kind is MessageClass.HEALTH:
            if msg.device not in HEALTH_METRICS:
                raise ContractError("unknown_metric", f"health metric '{msg.device[:64]}' is not one the gateway "
                                                      f"defines ({', '.join(sorted(HEALTH_METRICS))})")
            return self.gateways[msg.gateway]
        table = self.cameras if msg.kind is MessageClass.HEARTBEAT else self.devices \
            if msg.kind is MessageClass.EVENT else self.sensors
        device = table.get(msg.device)
        if device is None:
            raise ContractError("unknown_device", f"device '{msg.device[:64]}' is not in the config")
        if device.gateway != msg.gateway:
            raise ContractError("wrong_gateway", f"device '{msg.device}' is wired to gateway '{device.gateway}'")
        return device


# ---- the services' own heartbeats (sw/svc/v1/{service}/{instance}/beat) ----------------------
class ServiceBeat(_Payload):
    """A pipeline service's heartbeat (retained; its will says ``offline``/``will``). ``info`` carries
    what the service knows of the hop behind it (ingest: whether InfluxDB takes and returns a canary)."""
    state: Literal["online", "offline"]
    reason: Literal["will", "shutdown"] | None = None
    session: Annotated[int, Field(ge=0)] | None = None
    count: Annotated[int, Field(ge=0)] = 0  # beats since the service started
    info: dict[str, Any] = {}


@dataclass(frozen=True)
class ServiceMessage:
    service: str
    instance: str
    leaf: str  # beat | probe
    body: ServiceBeat | None  # None for a probe (its payload is the sender's own)
    topic: str


def parse_service(topic_name: str, payload: bytes) -> ServiceMessage:
    """A message under ``sw/svc/v1`` → a :class:`ServiceMessage`, or :class:`ContractError`."""
    service, instance, leaf = split_service_topic(topic_name)
    if leaf == "probe":
        return ServiceMessage(service, instance, leaf, None, topic_name)
    if leaf != "beat":
        raise ContractError("bad_topic", f"unknown service message '{leaf[:40]}'")
    data = load_object(payload)
    try:
        body = ServiceBeat.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ContractError("bad_schema", f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    return ServiceMessage(service, instance, leaf, body, topic_name)
