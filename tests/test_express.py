"""The express lane (broker/express.py) takes readings in one pass; the full way (admission.py with
the contract's pydantic models) takes or refuses everything. The lane may take less, never more,
and what it takes must become exactly what the full way makes of it: the same points (field for
field, and the same line protocol), the same sequence records (a redelivery through one way is a
duplicate, not a conflict, in the other) and the same clock counts. Here both ways meet the same
messages — the good ones gateways send, and the malformed, hostile and unlucky ones — in order."""
from __future__ import annotations

import dataclasses
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationwatch.broker.admission import Admission
from stationwatch.broker.line_protocol import LineBuilder
from stationwatch.core.config import load_config
from stationwatch.core.contract import ContractError, Refused

from support import EXAMPLES
from support.readings_corpus import ANNEX, BAD, GOOD, LENIENT, NOW, SITE, batch, envelope, items, single

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


def test_both_ways_agree_on_every_message_good_and_bad(cfg):
    messages = [(t, p, NOW, False) for t, p in GOOD + BAD + LENIENT + GOOD]  # the good ones again: redeliveries
    messages.append((*GOOD[0], NOW, True))  # a retained reading
    lane, outcomes = _both(cfg, messages)
    assert lane.express.taken == 2 * len(GOOD), "the lane took fewer of the good messages than it should"
    assert lane.clock_flagged == 4  # the reading 90 s ahead and the late batch item, twice each
    for (t, p), o in zip(BAD, outcomes[len(GOOD):len(GOOD) + len(BAD)]):
        assert o[0] == "refused" or any(x[0] == "item refused" for x in o), f"not refused: {t} {p[:200]!r}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), st.lists(items(), min_size=1, max_size=4), st.booleans()),
                min_size=1, max_size=6))
def test_random_messages_get_the_same_answer_both_ways(cfg, messages):
    """Random readings, single and batched, some broken, with repeated seqs (redeliveries and
    conflicts) and clocks early and late: both ways agree, message after message."""
    fed = []
    for one, found, historical in messages:
        if one:
            body = {k: v for k, v in found[0].items() if k != "sensor"} | {"v": 1, "historical": historical}
            fed.append((*single(found[0].get("sensor", "t-hall") if isinstance(found[0].get("sensor"), str)
                                else "t-hall", body), NOW, False))
        else:
            fed.append((*batch(envelope(*found, historical=historical)), NOW, False))
    fed = [(t, p, a, r) for t, p, a, r in fed if "\x00" not in t and all(math.isfinite(x) for x in [a])]
    _both(cfg, fed)
