"""Readings, good, bad and lenient, as gateways send them and as attackers and broken gateways
might: the corpus both express lanes are tried on (ingest's, tests/test_express.py; the engine's,
tests/test_engine_express.py) against the contract's way, on the example station with a second
gateway ``gw-sl-annex`` (its own thermometer ``t-annex``) on the same site."""
from __future__ import annotations

import json
import time

from hypothesis import strategies as st

from stationwatch.core.contract import MessageClass, topic
from stationwatch.core.wire import BATCH_MAX_ITEMS

SITE, GW, ANNEX = "sl-station", "gw-sl-main", "gw-sl-annex"
NOW = time.time()


def single(sensor, body, gateway=GW, site=SITE):
    return topic(site, gateway, MessageClass.READING, sensor), json.dumps(body).encode()


def batch(body, gateway=GW, site=SITE):
    return topic(site, gateway, MessageClass.READINGS, None), json.dumps(body).encode()


def item(sensor="t-hall", seq=1, ts=NOW - 1, value=20.5, **more):
    return {"sensor": sensor, "ts": ts, "seq": seq, "value": value, "unit": "°C", "quality": "ok", **more}


def envelope(*items, historical=False, **more):
    return {"v": 1, "ts": NOW, "historical": historical, "items": list(items), **more}


GOOD = [
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 1, "historical": False, "value": 21.5, "unit": "°C", "quality": "ok"}),
    single("t-dorm-m1", {"v": 1, "ts": NOW - 2, "seq": 2, "value": 19, "unit": "°C"}),  # an int value, defaults
    single("t-dorm-m2", {"v": 1, "ts": NOW - 1, "seq": 3, "value": None, "quality": "fault"}),
    single("t-dorm-m2", {"v": 1, "ts": NOW - 1, "seq": 3, "value": None, "quality": "fault"}),  # redelivered
    single("t-hall", {"v": 1, "ts": NOW - 3600, "seq": 4, "historical": True, "value": 18.25, "unit": "°C"}),
    batch(envelope(*(item(s, 10 + i, NOW - 2 + i / 10, 20 + i / 3) for i, s in
                       enumerate(["t-hall", "t-dorm-m1", "t-dorm-f1", "supply-main", "t-outdoor"])))),
    batch(envelope(item("t-hall", 20, value=None, quality="stale"), item("t-med-obs", 21, value=-5))),
    batch(envelope(item("t-hall", 30, NOW - 86400), historical=True)),  # a replayed spool
    single("t-annex", {"v": 1, "ts": NOW - 1, "seq": 1, "value": 22.0}, gateway=ANNEX),
    single("t-hall", {"v": 1, "ts": NOW + 90, "seq": 40, "value": 21.0}),  # a clock 90 s ahead: flagged
    batch(envelope(item("t-hall", 41, NOW - 120), item("t-dorm-m1", 42, NOW - 1))),  # one flagged item
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 50, "value": 1e308, "unit": "x" * 300}),
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 51, "value": 2.5, "unit": "°C \"quoted\" \\ 中文"}),
    # a key given twice: the last one counts, both ways (as in Python's json)
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b'{"v":1,"ts":%d,"seq":76,"value":1,"value":2}' % int(NOW)),
]

# what the contract's models take leniently and the lane leaves to them (a number as a string, a whole
# float as a seq, true as a value of 1.0, "yes" as true)
LENIENT = [
    batch(envelope(item("t-hall", 90), historical="yes")),
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 65, "value": True}),
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 64, "value": "21.5"}),
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 66.0, "value": 1.0}),
]

BAD = [
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 3, "value": 99.0}),  # seq 3 again, other content
    single("t-dorm-m2", {"v": 1, "ts": NOW - 1, "seq": 1, "value": 21.5}),  # seq 1 of gw-sl-main: conflict
    single("t-nobody", {"v": 1, "ts": NOW - 1, "seq": 60, "value": 21.5}),
    single("t-annex", {"v": 1, "ts": NOW - 1, "seq": 61, "value": 21.5}),  # another gateway's sensor
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 62, "value": 21.5}, site="other-site"),
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 63, "value": 21.5, "extra": 1}),
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": -1, "value": 1.0}),
    single("t-hall", {"v": 2, "ts": NOW - 1, "seq": 67, "value": 1.0}),
    single("t-hall", {"v": 1, "ts": 5, "seq": 68, "value": 1.0}),
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 69}),  # no value
    single("t-hall", {"v": 1, "ts": NOW - 1, "seq": 70, "value": 1.0, "quality": "great"}),
    single("t-hall", {"v": 1, "ts": NOW + 86400, "seq": 71, "value": 1.0}),  # a day ahead
    single("t-hall", {"v": 1, "ts": NOW - 30 * 86400, "seq": 72, "value": 1.0}),  # live, a month late
    single("t-hall", {"v": 1, "ts": 9_300_000_000.0, "seq": 73, "value": 1.0}),  # past InfluxDB's last time
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b'{"v":1,"ts":%d,"seq":74,"value":NaN}' % int(NOW)),
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b'{"v":1,"ts":%d,"seq":75,"value":1e999}' % int(NOW)),
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b'{"v":1,"ts":%d,"seq":77,"value":1} trailing' % int(NOW)),
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b'\xff\xfe{"v":1}'),
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b"[" * 5000 + b"]" * 5000),
    (topic(SITE, GW, MessageClass.READING, "t-hall"), b"{" + b" " * 20000 + b"}"),
    (topic(SITE, GW, MessageClass.READING, "t-hall") + "/extra", b'{"v":1}'),
    ("sw/v2/" + topic(SITE, GW, MessageClass.READING, "t-hall")[6:], b'{"v":1}'),
    batch(envelope()),  # no items
    batch(envelope(*(item("t-hall", 1000 + i) for i in range(BATCH_MAX_ITEMS + 1)))),
    batch(envelope(item("t-hall", 80), item("t-nobody", 81))),  # one unknown sensor: refused alone
    batch(envelope(item("t-hall", 82), item("t-hall", 83, v=1))),  # an item with the envelope's key
    batch(envelope(item("t-hall", 84), item("t-hall", 85, value=float("nan")))),
    batch(envelope(item("t-hall", 86), item("t-hall", 87, NOW + 86400))),  # one item a day ahead
    batch(envelope(item("t-hall", 88), item("t-hall", 3, value=7.0))),  # one item conflicts with seq 3
    batch(envelope(item("t-hall", 89), seq=5)),  # a seq on the envelope
    batch(envelope(item("t-annex", 91)), gateway=ANNEX, site="other-site"),
    batch(envelope(item("t-hall", 92)))[:1] + (b'{"v":1,"ts":1,"items":"no"}',),
]


NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70), st.none(),
                    st.text(max_size=3), st.booleans())
FIELD = st.sampled_from(["sensor", "ts", "seq", "value", "unit", "quality", "v", "historical", "other"])


@st.composite
def items(draw):
    """A batch item, broken here and there."""
    drawn = item(draw(st.sampled_from(["t-hall", "t-dorm-m1", "t-annex", "t-nobody", "T-HALL"])),
                 draw(st.integers(0, 40)), NOW - draw(st.sampled_from([0, 1, 30, 3600, 86400 * 20, -86400])),
                 draw(st.floats(-50, 50)))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(FIELD)
        if draw(st.booleans()):
            drawn[key] = draw(st.one_of(NUMBER, st.sampled_from(["ok", "fault", "stale", "°C"])))
        else:
            drawn.pop(key, None)
    return drawn
