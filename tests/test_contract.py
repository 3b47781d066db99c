"""The MQTT contract: what parses, what is refused and why, and the inventory check."""
from __future__ import annotations

import json
import time

import pytest

from stationwatch.core.contract import (
    DELIVERY,
    ContractError,
    Event,
    Inventory,
    MessageClass,
    Reading,
    Status,
    encode,
    parse,
    subscription,
    topic,
)

NOW = time.time()


def test_round_trip_of_every_class():
    cases = [
        (MessageClass.READING, "t-hall", Reading(v=1, ts=NOW, seq=3, value=21.5, unit="°C")),
        (MessageClass.EVENT, "smk-kitchen", Event(v=1, ts=NOW, seq=4, state="alarm")),
        (MessageClass.STATUS, None, Status(v=1, ts=NOW, state="online", config_version="abc", drivers=["smoke"])),
    ]
    for kind, device, body in cases:
        msg = parse(topic("sl-station", "gw-sl-main", kind, device), encode(body))
        assert (msg.site, msg.gateway, msg.kind, msg.device) == ("sl-station", "gw-sl-main", kind, device)
        assert msg.body == body


def test_alarms_and_events_are_qos1_and_status_is_retained():
    assert DELIVERY[MessageClass.EVENT].qos == 1 and DELIVERY[MessageClass.READING].qos == 1
    assert DELIVERY[MessageClass.STATUS].retain and not DELIVERY[MessageClass.EVENT].retain


@pytest.mark.parametrize("topic_name,payload,reason", [
    ("sw/v1/s/g/reading/x", b"{nope", "not_json"),
    ("sw/v1/s/g/reading/x", b"\x00\x01\x02", "not_json"),
    ("sw/v1/s/g/reading/x", b'"a string"', "bad_schema"),
    ("sw/v1/s/g/reading/x", json.dumps({"v": 2, "ts": NOW, "seq": 1, "value": 1}).encode(), "bad_version"),
    ("sw/v1/s/g/reading/x", json.dumps({"v": 1, "ts": NOW, "seq": -1, "value": 1}).encode(), "bad_schema"),
    ("sw/v1/s/g/reading/x", json.dumps({"v": 1, "ts": 5, "seq": 1, "value": 1}).encode(), "bad_schema"),
    ("sw/v1/s/g/reading/x", b'{"v":1,"ts":1790000000,"seq":1,"value":NaN}', "bad_schema"),
    ("sw/v1/s/g/reading/x", json.dumps({"v": 1, "ts": NOW, "seq": 1, "value": 1, "extra": 1}).encode(), "bad_schema"),
    ("sw/v1/s/g/event/x", json.dumps({"v": 1, "ts": NOW, "seq": 1, "state": "DROP TABLE"}).encode(), "bad_schema"),
    ("sw/v1/s/g/reading/x", b"{" + b" " * 20000 + b"}", "too_large"),
    ("sw/v1/s/g/telemetry/x", b"{}", "bad_topic"),
    ("sw/v1/s/g/reading", b"{}", "bad_topic"),
    ("sw/v1/s/g/status/extra", b"{}", "bad_topic"),
    ("other/v1/s/g/reading/x", b"{}", "bad_topic"),
])
def test_refusals_name_the_reason(topic_name, payload, reason):
    with pytest.raises(ContractError) as info:
        parse(topic_name, payload)
    assert info.value.reason == reason
    assert info.value.detail


def test_the_error_names_the_bad_field():
    with pytest.raises(ContractError) as info:
        parse("sw/v1/s/g/reading/x", json.dumps({"v": 1, "ts": NOW, "seq": "many", "value": 1}).encode())
    assert "seq" in info.value.detail


def test_inventory_refuses_devices_and_sites_not_in_the_config(city_config):
    inv = Inventory(city_config)
    body = encode(Reading(v=1, ts=NOW, seq=1, value=20.0))
    assert inv.check(parse(topic("sl-station", "gw-sl-main", MessageClass.READING, "t-hall"), body)).room == "hall"
    for t, reason in [
        (topic("sl-station", "gw-nope", MessageClass.READING, "t-hall"), "unknown_gateway"),
        (topic("elsewhere", "gw-sl-main", MessageClass.READING, "t-hall"), "wrong_site"),
        (topic("sl-station", "gw-sl-main", MessageClass.READING, "t-nope"), "unknown_device"),
        (topic("sl-station", "gw-sl-main", MessageClass.READING, "cam-hall"), "unknown_device"),  # a camera sends no readings
    ]:
        with pytest.raises(ContractError) as info:
            inv.check(parse(t, body))
        assert info.value.reason == reason


def test_subscriptions_cover_the_topics_they_name():
    assert subscription() == "sw/v1/+/+/#"
    assert subscription(MessageClass.STATUS) == "sw/v1/+/+/status"
    assert subscription(MessageClass.EVENT, site="sl-station") == "sw/v1/sl-station/+/event/+"


def test_deeply_nested_json_is_refused_not_a_crash():
    with pytest.raises(ContractError) as info:
        parse("sw/v1/s/g/reading/x", b"[" * 3000)
    assert info.value.reason == "not_json"


def test_health_payloads_as_the_gateway_writes_them_are_what_the_schemas_read():
    from stationwatch.core.contract import LOCAL_ALARM, HealthSample, LocalAlarmState
    from stationwatch.core.wire import payload
    sample = payload(NOW, 5, value=None, unit="%", quality="fault", state="fault", detail="OSError: disk gone")
    msg = parse(topic("sl-station", "gw-sl-main", MessageClass.HEALTH, "disk_free"), sample)
    assert msg.body == HealthSample(v=1, ts=NOW, seq=5, value=None, unit="%", quality="fault", state="fault",
                                    detail="OSError: disk gone")
    change = payload(NOW, 6, state="silenced", by="cmd:ack", detectors=["smk-dorm-m1"])
    msg = parse(topic("sl-station", "gw-sl-main", MessageClass.HEALTH, LOCAL_ALARM), change)
    assert msg.body == LocalAlarmState(v=1, ts=NOW, seq=6, state="silenced", by="cmd:ack", detectors=["smk-dorm-m1"])
    assert subscription(MessageClass.HEALTH) == "sw/v1/+/+/health/+"
