"""The gateway's plain encoder and command check (core/wire.py) agree with the contract's schemas
(core/contract.py), which every receiver parses with: what the gateway writes is read back
unchanged, and a command the schemas refuse is refused by the gateway too."""
from __future__ import annotations

import json

import pytest

from stationwatch.core import contract, wire
from stationwatch.core.contract import ContractError, MessageClass, topic

TS = 1_795_614_042.25
SITE, GW = "sl", "gw-sl-main"

MESSAGES = [  # (class, device, fields as the gateway agent writes them)
    (MessageClass.READING, "t-dorm-m1", dict(value=21.5, unit="°C", quality="ok")),
    (MessageClass.READING, "t-dorm-m1", dict(value=None, unit="°C", quality="fault")),
    (MessageClass.EVENT, "smk-dorm-m1", dict(state="alarm", value=1.0, drill=False)),
    (MessageClass.EVENT, "door-exit-main", dict(state="open", value=None, drill=False)),
    (MessageClass.HEARTBEAT, "cam-hall", dict(online=True, latency_ms=3.2)),
    (MessageClass.HEARTBEAT, "cam-hall", dict(online=False, latency_ms=None)),
]


@pytest.mark.parametrize("kind,device,fields", MESSAGES)
def test_what_the_gateway_writes_is_what_the_schemas_read(kind, device, fields):
    body = wire.payload(TS, 41, **fields)
    msg = contract.parse(topic(SITE, GW, kind, device), body)
    assert msg.body.ts == TS and msg.body.seq == 41 and msg.body.historical is False
    assert {k: getattr(msg.body, k) for k in fields} == fields
    # the spool flips the flag in place on replay: the written form must carry it literally
    assert b'"historical":false' in body


def test_status_messages_round_trip_through_the_schema():
    for fields in (dict(state="online", config_version="3f2a", drivers=["camera:1", "gpio:10"], reason=None),
                   dict(state="offline", config_version=None, drivers=[], reason="will")):
        msg = contract.parse(topic(SITE, GW, MessageClass.STATUS), wire.payload(TS, **fields))
        assert {k: getattr(msg.body, k) for k in fields} == fields


def test_the_encoder_refuses_what_the_schemas_refuse():
    with pytest.raises(ValueError):
        wire.payload(TS, 1, value=float("nan"), unit="°C", quality="ok")


CMD = topic(SITE, GW, MessageClass.CMD, "ack")
COMMANDS = [  # (topic, payload)
    (CMD, {"v": 1, "ts": TS, "name": "ack", "args": {"alert": 7}}),
    (CMD, {"v": 1, "ts": TS, "name": "ack"}),
    (CMD, {"v": 1, "ts": TS, "name": "silence"}),  # name and topic disagree
    (CMD, {"v": 2, "ts": TS, "name": "ack"}),
    (CMD, {"v": 1, "name": "ack"}),
    (CMD, {"v": 1, "ts": 12, "name": "ack"}),
    (CMD, {"v": 1, "ts": TS, "name": "ack\n"}),
    (CMD, {"v": 1, "ts": TS, "name": "ack", "args": [1]}),
    (CMD, {"v": 1, "ts": TS, "name": "ack", "sudo": True}),
    (CMD, {"v": 1, "ts": True, "name": "ack"}),
    (CMD, [1, 2]),
    (topic(SITE, GW, MessageClass.EVENT, "ack"), {"v": 1, "ts": TS, "name": "ack"}),
    ("sw/v1/sl", {"v": 1, "ts": TS, "name": "ack"}),
]


def schema_verdict(topic_name: str, body: bytes):
    try:
        msg = contract.parse(topic_name, body)
    except ContractError as exc:
        return exc.reason
    return msg.body.name if msg.kind is MessageClass.CMD and msg.body.name == msg.device else "bad_command"


def gateway_verdict(topic_name: str, body: bytes):
    try:
        return wire.parse_command(topic_name, body).name
    except ContractError as exc:
        return exc.reason


@pytest.mark.parametrize("topic_name,data", COMMANDS)
def test_the_gateway_accepts_and_refuses_commands_as_the_schema_does(topic_name, data):
    body = json.dumps(data).encode()
    gateway, schema = gateway_verdict(topic_name, body), schema_verdict(topic_name, body)
    assert gateway == schema or (gateway in ("bad_command", "bad_schema") and schema in ("bad_command", "bad_schema"))
    assert (gateway == "ack") == ((topic_name, data) in COMMANDS[:2])  # only the two good ones pass


def test_a_refused_command_says_which_field_is_wrong():
    with pytest.raises(ContractError, match="name"):
        wire.parse_command(CMD, json.dumps({"v": 1, "ts": TS, "name": "ACK!"}).encode())
    with pytest.raises(ContractError, match="too_large"):
        wire.parse_command(CMD, b" " * (wire.MAX_PAYLOAD + 1))


def test_a_batch_the_gateway_writes_is_what_the_schemas_read():
    items = [dict(sensor="t-dorm-m1", ts=TS - 1, value=21.5, unit="°C", quality="ok"),
             dict(sensor="t-dorm-m2", ts=TS - 0.5, value=None, unit="°C", quality="fault")]
    body = wire.batch_payload(TS, 41, items)
    msgs = contract.fan_out(contract.parse(topic(SITE, GW, MessageClass.READINGS), body))
    assert [(m.device, m.body.seq, m.body.ts, m.body.value, m.body.quality) for m in msgs] == \
        [("t-dorm-m1", 41, TS - 1, 21.5, "ok"), ("t-dorm-m2", 42, TS - 0.5, None, "fault")]
    assert wire.batch_seqs(body) == [41, 42]
    # the spool flips one flag in place on replay, and it covers every item
    assert body.count(b'"historical":false') == 1
    replayed = contract.fan_out(contract.parse(topic(SITE, GW, MessageClass.READINGS),
                                               body.replace(b'"historical":false', b'"historical":true', 1)))
    assert all(m.body.historical for m in replayed)


def test_a_full_batch_of_the_longest_ids_stays_within_the_payload_limit():
    from stationwatch.core.agent_settings import AgentSettings
    size = AgentSettings.model_fields["batch_max_items"].metadata[-1].le
    items = [dict(sensor="s" * 64, ts=TS, value=-123456.789012, unit="mg/m³", quality="stale") for _ in range(size)]
    assert len(wire.batch_payload(TS, 10**12, items)) < wire.MAX_PAYLOAD
