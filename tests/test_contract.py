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


# ---- readings batches (sw/v1/{site}/{gateway}/readings) ---------------------------------------
BATCH_TOPIC = topic("sl-station", "gw-sl-main", MessageClass.READINGS)


def _batch(*items, **envelope) -> bytes:
    return json.dumps({"v": 1, "ts": NOW, "historical": False, "items": list(items), **envelope}).encode()


def _item(sensor="t-hall", seq=1, value=20.5, **more):
    return {"sensor": sensor, "ts": NOW - 1, "seq": seq, "value": value, "unit": "°C", "quality": "ok", **more}


def test_a_batch_fans_out_into_the_messages_single_readings_make():
    from stationwatch.core.contract import fan_out
    single = parse(topic("sl-station", "gw-sl-main", MessageClass.READING, "t-hall"),
                   encode(Reading(v=1, ts=NOW - 1, seq=1, value=20.5, unit="°C")))
    batch = parse(BATCH_TOPIC, _batch(_item(), _item("t-dorm-m1", 2, None, quality="fault")))
    first, second = fan_out(batch)
    # the same topic, device and reading: ingest and the engine cannot tell them apart
    assert (first.topic, first.kind, first.device) == (single.topic, single.kind, single.device)
    assert isinstance(first.body, Reading) and first.body.model_dump(exclude={"sensor"}) == single.body.model_dump()
    assert (second.device, second.body.seq, second.body.value, second.body.quality) == ("t-dorm-m1", 2, None, "fault")
    assert DELIVERY[MessageClass.READINGS].qos == 1 and not DELIVERY[MessageClass.READINGS].retain


def test_a_replayed_batch_marks_every_item_historical():
    from stationwatch.core.contract import fan_out
    items = fan_out(parse(BATCH_TOPIC, _batch(_item(), _item("t-dorm-m1", 2), historical=True)))
    assert [m.body.historical for m in items] == [True, True]


@pytest.mark.parametrize("bad,reason,names", [
    ({"sensor": "t-hall", "ts": NOW, "seq": 2, "unit": "°C"}, "bad_schema", "items[1].value"),  # no value
    (_item(seq=-3), "bad_schema", "items[1].seq"),
    (_item(ts="yesterday"), "bad_schema", "items[1].ts"),
    (_item(value="warm"), "bad_schema", "items[1].value"),
    (_item(quality="great"), "bad_schema", "items[1].quality"),
    (_item(colour="red"), "bad_schema", "items[1].colour"),
    (_item(historical=True), "bad_schema", "items[1].historical"),  # the envelope's, not an item's
    (_item(sensor="T HALL"), "bad_schema", "items[1].sensor"),
    ("t-hall 20.5", "bad_schema", "items[1]"),
])
def test_a_malformed_item_is_refused_alone_naming_it(bad, reason, names):
    from stationwatch.core.contract import Refused, fan_out
    out = fan_out(parse(BATCH_TOPIC, _batch(_item(seq=1), bad, _item("t-dorm-m1", seq=3))))
    assert [type(x).__name__ for x in out] == ["Message", "Refused", "Message"]
    refused: Refused = out[1]
    assert refused.reason == reason and refused.detail.startswith(names)
    assert json.loads(refused.item) == bad  # the item as it came, for the quarantine
    assert refused.topic == BATCH_TOPIC


def test_a_nan_in_one_item_refuses_that_item():
    from stationwatch.core.contract import Refused, fan_out
    body = _batch(_item(seq=1), _item(seq=2)).replace(b'"value": 20.5, "unit": "\\u00b0C", "quality": "ok"}]',
                                                      b'"value": NaN, "unit": "", "quality": "ok"}]')
    assert b"NaN" in body
    out = fan_out(parse(BATCH_TOPIC, body))
    assert isinstance(out[1], Refused) and out[1].detail.startswith("items[1].value") and not isinstance(out[0], Refused)


@pytest.mark.parametrize("payload,reason", [
    (_batch(), "bad_schema"),  # no items
    (json.dumps({"v": 1, "ts": NOW, "items": [{"sensor": "a", "ts": NOW, "seq": i, "value": 1} for i in range(257)]},
                separators=(",", ":")).encode(), "bad_schema"),  # more than BATCH_MAX_ITEMS, within 16 KiB
    (json.dumps({"v": 1, "ts": NOW, "items": {"sensor": "t-hall"}}).encode(), "bad_schema"),
    (json.dumps({"v": 1, "ts": NOW, "seq": 4, "items": [_item()]}).encode(), "bad_schema"),  # seqs are the items'
    (json.dumps({"v": 2, "ts": NOW, "items": [_item()]}).encode(), "bad_version"),
])
def test_a_broken_envelope_refuses_the_whole_batch(payload, reason):
    with pytest.raises(ContractError) as info:
        parse(BATCH_TOPIC, payload)
    assert info.value.reason == reason


def test_a_batch_topic_takes_no_device():
    with pytest.raises(ContractError) as info:
        parse(BATCH_TOPIC + "/t-hall", _batch(_item()))
    assert info.value.reason == "bad_topic"
