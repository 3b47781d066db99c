"""The express lane (broker/express.py) takes readings in one pass; the full way (admission.py with
the contract's pydantic models) takes or refuses everything. The lane may take less, never more,
and what it takes must become exactly what the full way makes of it: the same points (field for
field, and the same line protocol), the same sequence records (a redelivery through one way is a
duplicate, not a conflict, in the other) and the same clock counts. Here both ways meet the same
messages — the good ones gateways send, and the malformed, hostile and unlucky ones — in order."""
from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationwatch.broker.admission import Admission
from stationwatch.broker.line_protocol import LineBuilder
from stationwatch.core.config import load_config
from stationwatch.core.contract import ContractError, MessageClass, Refused, topic
from stationwatch.core.wire import BATCH_MAX_ITEMS

from support import EXAMPLES

SITE, GW, ANNEX = "sl-station", "gw-sl-main", "gw-sl-annex"
NOW = time.time()


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """The example station with a second gateway (its own thermometer) on the same site."""
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    room = data["sensors"][13]["room"]
    data["gateways"].append({"id": ANNEX, "name": "annex", "site": SITE})
    data["sensors"].append({"id": "t-annex", "name": "annex", "kind": "temperature", "gateway": ANNEX, "room": room})
    path = tmp_path_factory.mktemp("express") / "station.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(path)


def _full_way(cfg) -> Admission:
    admission = Admission(cfg)
    admission.express.points = lambda *a, **k: None  # every message goes the full way
    return admission


def _outcome(admission: Admission, topic_name: str, payload: bytes, arrival: float, retained: bool = False):
    """What admission made of a message, comparable across the two ways."""
    try:
        found = admission.points(topic_name, payload, retained, arrival)
    except ContractError as exc:
        return ("refused", exc.reason)
    out = []
    for one in found:
        if isinstance(one, Refused):
            out.append(("item refused", one.reason))
        else:
            bare = dataclasses.replace(one, line=None)
            out.append((one.measurement, one.tags, one.fields, one.time_ms, one.policy, LineBuilder().line(bare)))
            if one.line is not None:
                assert one.line == out[-1][-1], "the lane's line differs from the writer's"
    return out


def _ledger(admission: Admission):
    return {g: (list(r.seqs), list(r.digests), r.highest, r.highest_ts)
            for g, r in admission.sequences._gateways.items()}


def _both(cfg, messages):
    """Feed both ways the same messages in order; return (lane's admission, outcomes)."""
    lane, full = Admission(cfg), _full_way(cfg)
    outcomes = []
    for topic_name, payload, arrival, retained in messages:
        a = _outcome(lane, topic_name, payload, arrival, retained)
        b = _outcome(full, topic_name, payload, arrival, retained)
        assert a == b, f"{topic_name} {payload[:300]!r}"
        outcomes.append(a)
    assert _ledger(lane) == _ledger(full)
    assert lane.clock_flagged == full.clock_flagged
    assert lane.sequences.regressions == full.sequences.regressions
    return lane, outcomes


def _single(sensor, body, gateway=GW, site=SITE):
    return topic(site, gateway, MessageClass.READING, sensor), json.dumps(body).encode()


def _batch(body, gateway=GW, site=SITE):
    return topic(site, gateway, MessageClass.READINGS, None), json.dumps(body).encode()


def _item(sensor="t-hall", seq=1, ts=NOW - 1, value=20.5, **more):
    return {"sensor": sensor, "ts": ts, "seq": seq, "value": value, "unit": "°C", "quality": "ok", **more}


def _envelope(*items, historical=False, **more):
    return {"v": 1, "ts": NOW, "historical": historical, "items": list(items), **more}


GOOD = [
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 1, "historical": False, "value": 21.5, "unit": "°C", "quality": "ok"}),
    _single("t-dorm-m1", {"v": 1, "ts": NOW - 2, "seq": 2, "value": 19, "unit": "°C"}),  # an int value, defaults
    _single("t-dorm-m2", {"v": 1, "ts": NOW - 1, "seq": 3, "value": None, "quality": "fault"}),
    _single("t-dorm-m2", {"v": 1, "ts": NOW - 1, "seq": 3, "value": None, "quality": "fault"}),  # redelivered
    _single("t-hall", {"v": 1, "ts": NOW - 3600, "seq": 4, "historical": True, "value": 18.25, "unit": "°C"}),
    _batch(_envelope(*(_item(s, 10 + i, NOW - 2 + i / 10, 20 + i / 3) for i, s in
                       enumerate(["t-hall", "t-dorm-m1", "t-dorm-f1", "supply-main", "t-outdoor"])))),
    _batch(_envelope(_item("t-hall", 20, value=None, quality="stale"), _item("t-med-obs", 21, value=-5))),
    _batch(_envelope(_item("t-hall", 30, NOW - 86400), historical=True)),  # a replayed spool
    _single("t-annex", {"v": 1, "ts": NOW - 1, "seq": 1, "value": 22.0}, gateway=ANNEX),
    _single("t-hall", {"v": 1, "ts": NOW + 90, "seq": 40, "value": 21.0}),  # a clock 90 s ahead: flagged
    _batch(_envelope(_item("t-hall", 41, NOW - 120), _item("t-dorm-m1", 42, NOW - 1))),  # one flagged item
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 50, "value": 1e308, "unit": "x" * 300}),
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 51, "value": 2.5, "unit": "°C \"quoted\" \\ 中文"}),
    # a key given twice: the last one counts, both ways (as in Python's json)
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b'{"v":1,"ts":%d,"seq":76,"value":1,"value":2}' % int(NOW)),
]

# what the contract's models take leniently and the lane leaves to them (a number as a string, a whole
# float as a seq, true as a value of 1.0, "yes" as true)
LENIENT = [
    _batch(_envelope(_item("t-hall", 90), historical="yes")),
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 65, "value": True}),
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 64, "value": "21.5"}),
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 66.0, "value": 1.0}),
]

BAD = [
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 3, "value": 99.0}),  # seq 3 again, other content
    _single("t-dorm-m2", {"v": 1, "ts": NOW - 1, "seq": 1, "value": 21.5}),  # seq 1 of gw-sl-main: conflict
    _single("t-nobody", {"v": 1, "ts": NOW - 1, "seq": 60, "value": 21.5}),
    _single("t-annex", {"v": 1, "ts": NOW - 1, "seq": 61, "value": 21.5}),  # another gateway's sensor
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 62, "value": 21.5}, site="other-site"),
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 63, "value": 21.5, "extra": 1}),
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": -1, "value": 1.0}),
    _single("t-hall", {"v": 2, "ts": NOW - 1, "seq": 67, "value": 1.0}),
    _single("t-hall", {"v": 1, "ts": 5, "seq": 68, "value": 1.0}),
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 69}),  # no value
    _single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 70, "value": 1.0, "quality": "great"}),
    _single("t-hall", {"v": 1, "ts": NOW + 86400, "seq": 71, "value": 1.0}),  # a day ahead
    _single("t-hall", {"v": 1, "ts": NOW - 30 * 86400, "seq": 72, "value": 1.0}),  # live, a month late
    _single("t-hall", {"v": 1, "ts": 9_300_000_000.0, "seq": 73, "value": 1.0}),  # past InfluxDB's last time
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b'{"v":1,"ts":%d,"seq":74,"value":NaN}' % int(NOW)),
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b'{"v":1,"ts":%d,"seq":75,"value":1e999}' % int(NOW)),
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b'{"v":1,"ts":%d,"seq":77,"value":1} trailing' % int(NOW)),
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b'\xff\xfe{"v":1}'),
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b"[" * 5000 + b"]" * 5000),
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b"{" + b" " * 20000 + b"}"),
    (topic(SITE, GW, MessageClass.READING, "t-hall") + "/extra", b'{"v":1}'),
    ("sw/v2/" + topic(SITE, GW, MessageClass.READING, "t-hall")[6:], b'{"v":1}'),
    _batch(_envelope()),  # no items
    _batch(_envelope(*(_item("t-hall", 1000 + i) for i in range(BATCH_MAX_ITEMS + 1)))),
    _batch(_envelope(_item("t-hall", 80), _item("t-nobody", 81))),  # one unknown sensor: refused alone
    _batch(_envelope(_item("t-hall", 82), _item("t-hall", 83, v=1))),  # an item with the envelope's key
    _batch(_envelope(_item("t-hall", 84), _item("t-hall", 85, value=float("nan")))),
    _batch(_envelope(_item("t-hall", 86), _item("t-hall", 87, NOW + 86400))),  # one item a day ahead
    _batch(_envelope(_item("t-hall", 88), _item("t-hall", 3, value=7.0))),  # one item conflicts with seq 3
    _batch(_envelope(_item("t-hall", 89), seq=5)),  # a seq on the envelope
    _batch(_envelope(_item("t-annex", 91)), gateway=ANNEX, site="other-site"),
    _batch(_envelope(_item("t-hall", 92)))[:1] + (b'{"v":1,"ts":1,"items":"no"}',),
]


def test_both_ways_agree_on_every_message_good_and_bad(cfg):
    messages = [(t, p, NOW, False) for t, p in GOOD + BAD + LENIENT + GOOD]  # the good ones again: redeliveries
    messages.append((*GOOD[0], NOW, True))  # a retained reading
    lane, outcomes = _both(cfg, messages)
    assert lane.express.taken == 2 * len(GOOD), "the lane took fewer of the good messages than it should"
    assert lane.clock_flagged == 4  # the reading 90 s ahead and the late batch item, twice each
    for (t, p), o in zip(BAD, outcomes[len(GOOD):len(GOOD) + len(BAD)]):
        assert o[0] == "refused" or any(x[0] == "item refused" for x in o), f"not refused: {t} {p[:200]!r}"


_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70), st.none(),
                    st.text(max_size=3), st.booleans())
_field = st.sampled_from(["sensor", "ts", "seq", "value", "unit", "quality", "v", "historical", "other"])


@st.composite
def _items(draw):
    item = _item(draw(st.sampled_from(["t-hall", "t-dorm-m1", "t-annex", "t-nobody", "T-HALL"])),
                 draw(st.integers(0, 40)), NOW - draw(st.sampled_from([0, 1, 30, 3600, 86400 * 20, -86400])),
                 draw(st.floats(-50, 50)))
    for _ in range(draw(st.integers(0, 2))):  # break it here and there
        key = draw(_field)
        if draw(st.booleans()):
            item[key] = draw(st.one_of(_number, st.sampled_from(["ok", "fault", "stale", "°C"])))
        else:
            item.pop(key, None)
    return item


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), st.lists(_items(), min_size=1, max_size=4), st.booleans()),
                min_size=1, max_size=6))
def test_random_messages_get_the_same_answer_both_ways(cfg, messages):
    """Random readings, single and batched, some broken, with repeated seqs (redeliveries and
    conflicts) and clocks early and late: both ways agree, message after message."""
    fed = []
    for single, items, historical in messages:
        if single:
            body = {k: v for k, v in items[0].items() if k != "sensor"} | {"v": 1, "historical": historical}
            fed.append((*_single(items[0].get("sensor", "t-hall") if isinstance(items[0].get("sensor"), str)
                                 else "t-hall", body), NOW, False))
        else:
            fed.append((*_batch(_envelope(*items, historical=historical)), NOW, False))
    fed = [(t, p, a, r) for t, p, a, r in fed if "\x00" not in t and all(math.isfinite(x) for x in [a])]
    _both(cfg, fed)
