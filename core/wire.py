"""The plain half of the MQTT contract: topic tree, message classes, QoS and retain, and the
encoder and command check the gateway runtime uses.

Plain Python on purpose: the gateway runtime on the Pi imports this and not pydantic (which would
cost it about 15 MB of its 35 MB budget). The payload *schemas* stay in
:mod:`stationwatch.core.contract`, which every receiver parses with; ``tests/test_contract.py``
checks that what :func:`payload` writes is exactly what those schemas read and that
:func:`parse_command` refuses what :func:`stationwatch.core.contract.parse` refuses.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping, TypeVar

log = logging.getLogger(__name__)

ROOT = "sw/v1"
SCHEMA_VERSION = 1
MAX_PAYLOAD = 16 * 1024  # no legitimate message is larger; bigger ones are refused before parsing
TS_RANGE = (1_000_000_000, 10_000_000_000)  # gateway clock, Unix seconds (2001 … 2286)
BATCH_MAX_ITEMS = 256  # readings in one ``readings`` message (and the payload stays within MAX_PAYLOAD)
COMMAND_NAME = re.compile(r"[a-z0-9_-]{1,32}")  # fullmatch: "$" would let a final newline through


class MessageClass(StrEnum):
    STATUS = "status"
    READING = "reading"
    EVENT = "event"
    HEARTBEAT = "heartbeat"
    CMD = "cmd"
    HEALTH = "health"  # the gateway's own health and its local alarm: health/{metric}
    PATROL = "patrol"  # the gateway's answer to the centre's patrol (巡检): its clock, config version, drivers
    REPLY = "reply"  # the gateway's answer to a command that carried an ``args.id``: done, or refused and why
    READINGS = "readings"  # a poll cycle's readings in one message, each item with its own sensor, ts and seq


@dataclass(frozen=True)
class Delivery:
    qos: int
    retain: bool


DELIVERY: dict[MessageClass, Delivery] = {
    MessageClass.STATUS: Delivery(1, True),      # the last word of a gateway stays on the broker
    MessageClass.READING: Delivery(1, False),    # lossless ingest needs PUBACK
    MessageClass.READINGS: Delivery(1, False),   # a batch of readings: the same as each of them
    MessageClass.EVENT: Delivery(1, False),      # alarms and events: at least once
    MessageClass.HEARTBEAT: Delivery(0, False),  # the next heartbeat replaces a lost one
    MessageClass.CMD: Delivery(1, False),
    # QoS 1 like readings: health samples and local-alarm changes go through the spool, which
    # deletes a message only on its PUBACK (QoS 0 would leave the spool unacknowledged and be lost
    # in an outage). Not retained: a retained "under_voltage: alarm" or "local_alarm: sounding"
    # from a gateway that has since died would greet every new subscriber as if it were current;
    # the retained status topic is the gateway's last word, and InfluxDB keeps the last value.
    MessageClass.HEALTH: Delivery(1, False),
    # a live answer, sent at once and never spooled: an answer that cannot go out now is a missed patrol
    MessageClass.PATROL: Delivery(1, False),
    MessageClass.REPLY: Delivery(1, False),
}

LEAFLESS = (MessageClass.STATUS, MessageClass.PATROL, MessageClass.REPLY, MessageClass.READINGS)  # topics without a device level

# The services' own heartbeats, beside the gateways' tree so that no gateway consumer sees them:
# sw/svc/v1/{service}/{instance}/beat (retained, with a will) and …/probe (the broker round trip).
SERVICE_ROOT = "sw/svc/v1"
SERVICES = ("ingest", "alerts", "dispatcher", "api", "watcher")  # the hops that beat

# health/{metric}: the health driver's metrics (stationwatch.sensors.health.METRICS) and this one,
# the state of the gateway's local alarm (gateway/alarm.py): sounding, silenced (by the button or
# a central command) or quiet (every detector back to normal)
LOCAL_ALARM = "local_alarm"
LOCAL_ALARM_STATES = ("sounding", "silenced", "quiet")
# health/spool: the gateway's disk spool cannot be written (state alarm, detail disk_full, read_only,
# io_error or damaged) — alarms still go out, from memory; routine readings may be lost — or works again
SPOOL = "spool"
# health/drill: a drill (演练) started from the centre is on (state alarm, detail: until when) or over
DRILL = "drill"


class CommandRefused(Exception):
    """A command a gateway will not carry out; the message says why (sent back in its ``reply``)."""


class ContractError(ValueError):
    """A message that breaks the contract; ``reason`` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def topic(site: str, gateway: str, kind: MessageClass, device: str | None = None) -> str:
    base = f"{ROOT}/{site}/{gateway}/{kind.value}"
    return base if device is None else f"{base}/{device}"


def service_topic(service: str, instance: str, leaf: str = "beat") -> str:
    return f"{SERVICE_ROOT}/{service}/{instance}/{leaf}"


def service_subscription(leaf: str = "beat", service: str = "+") -> str:
    return f"{SERVICE_ROOT}/{service}/+/{leaf}"


def split_service_topic(topic_name: str) -> tuple[str, str, str]:
    """``sw/svc/v1/{service}/{instance}/{leaf}`` → (service, instance, leaf), or :class:`ContractError`."""
    parts = topic_name.split("/")
    if len(parts) != 6 or "/".join(parts[:3]) != SERVICE_ROOT or parts[3] not in SERVICES or not parts[4]:
        raise ContractError("bad_topic", f"topic '{topic_name[:200]}' is not {SERVICE_ROOT}/{{service}}/{{instance}}/{{leaf}}")
    return parts[3], parts[4], parts[5]


def subscription(kind: MessageClass | None = None, site: str = "+") -> str:
    return f"{ROOT}/{site}/+/#" if kind is None else f"{ROOT}/{site}/+/{kind.value}" + ("" if kind in LEAFLESS else "/+")


def split_topic(topic_name: str) -> tuple[str, str, MessageClass, str | None]:
    """``sw/v1/{site}/{gateway}/{class}[/{device}]`` → its parts, or :class:`ContractError`."""
    parts = topic_name.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != ROOT:
        raise ContractError("bad_topic", f"topic '{topic_name[:200]}' is not under {ROOT}/{{site}}/{{gateway}}/…")
    site, gateway, kind_name = parts[2], parts[3], parts[4]
    try:
        kind = MessageClass(kind_name)
    except ValueError:
        raise ContractError("bad_topic", f"unknown message class '{kind_name[:40]}' in topic") from None
    rest = parts[5:]
    if kind in LEAFLESS:
        if rest:
            raise ContractError("bad_topic", f"{kind.value} topic takes no device")
        return site, gateway, kind, None
    if len(rest) != 1 or not rest[0]:
        raise ContractError("bad_topic", f"{kind.value} topic needs exactly one device after the class")
    return site, gateway, kind, rest[0]


def load_object(payload: bytes) -> dict[str, Any]:
    """Bytes → a JSON object of this schema version, or :class:`ContractError`."""
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
    return data


def payload(ts: float, seq: int | None = None, **fields: Any) -> bytes:
    """A message body as the schemas in :mod:`~stationwatch.core.contract` read it: ``v``, ``ts``,
    and for sequenced classes ``seq`` and ``historical: false`` (the spool flips that flag on
    replay, so it is always written). Refuses NaN and infinity, as the schemas do."""
    head: dict[str, Any] = {"v": SCHEMA_VERSION, "ts": ts}
    if seq is not None:
        head |= {"seq": seq, "historical": False}
    return json.dumps(head | fields, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def batch_payload(ts: float, first_seq: int, items: list[dict[str, Any]]) -> bytes:
    """A ``readings`` message (one poll cycle's readings): ``v``, ``ts`` (when the cycle was sent),
    ``historical: false`` (flipped by the spool on replay, for every item at once) and ``items``, each
    a reading with its own ``sensor``, ``ts``, ``value``, ``unit``, ``quality`` and the seq
    ``first_seq + i`` — a batch takes as many seqs as it has items (docs/mqtt-contract.md)."""
    body = [{"sensor": it["sensor"], "ts": it["ts"], "seq": first_seq + i, "value": it.get("value"),
             "unit": it.get("unit", ""), "quality": it.get("quality", "ok")} for i, it in enumerate(items)]
    return payload(ts, None, historical=False, items=body)


def batch_seqs(body: bytes) -> list[int]:
    """The seqs of a ``readings`` message, read leniently (an item refused for its schema still has
    one); [] when the body is not a batch at all."""
    try:
        items = json.loads(body).get("items")
    except (ValueError, AttributeError, RecursionError):
        return []
    if not isinstance(items, list):
        return []
    return [seq for it in items if isinstance(it, dict) and isinstance(seq := it.get("seq"), int)
            and not isinstance(seq, bool) and seq >= 0]


@dataclass(frozen=True)
class GatewayCommand:
    """A command to a gateway (``cmd/{name}``): ``silence``, ``ack`` …"""
    name: str
    ts: float
    args: dict[str, Any] = field(default_factory=dict)


def parse_command(topic_name: str, body: bytes) -> GatewayCommand:
    """A command to a gateway: a ``cmd`` message whose topic level and ``name`` agree, with the
    same checks as the ``Command`` schema (no other fields, ts in range, ``args`` an object)."""
    _site, _gateway, kind, device = split_topic(topic_name)
    data = load_object(body)
    name, ts, args = data.get("name"), data.get("ts"), data.get("args", {})
    extra = sorted(set(data) - {"v", "ts", "name", "args"})
    problem = (f"{extra[0]}: Extra inputs are not permitted" if extra else
               "ts: must be a number of Unix seconds" if isinstance(ts, bool) or not isinstance(ts, (int, float))
               or not math.isfinite(ts) or not TS_RANGE[0] < ts < TS_RANGE[1] else
               "name: must match ^[a-z0-9_-]{1,32}$" if not isinstance(name, str) or not COMMAND_NAME.fullmatch(name) else
               "args: must be an object" if not isinstance(args, dict) else None)
    if problem:
        raise ContractError("bad_schema", problem)
    if kind is not MessageClass.CMD or name != device:
        raise ContractError("bad_command", f"'{topic_name[:200]}' is not a command named after its topic")
    return GatewayCommand(name, float(ts), args)


Handler = TypeVar("Handler")


def command_handler(topic_name: str, body: bytes, handlers: Mapping[str, Handler]) -> tuple[GatewayCommand, Handler] | None:
    """A received command and its entry in ``handlers`` (the agent's and the simulator's command
    tables), or None — logged — when the command is invalid or not one of them."""
    try:
        cmd = parse_command(topic_name, body)
    except ContractError as exc:
        log.warning("命令无效已忽略 / invalid command on %s ignored: %s", topic_name, exc)
        return None
    handler = handlers.get(cmd.name)
    if handler is None:
        log.warning("未知命令已忽略 / unknown command '%s' on %s ignored", cmd.name, topic_name)
        return None
    return cmd, handler
