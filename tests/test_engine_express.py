"""The engine's express lane for readings batches (alerts/express.py) takes what it can decode in
one pass and leaves everything else to the contract's way, which refuses by name. It may take less,
never more, and what it takes must lead to exactly what the contract's way leads to. Two engines —
one with the lane, one without — take the batches of ingest's own lane tests (tests/test_express.py:
good ones, malformed and hostile ones, leniently accepted ones) and generated ones, and must end with
the same alerts, memory, quarantine and counts."""
from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationwatch.core.config import load_config
from stationwatch.core.contract import MessageClass

from support import EXAMPLES
from support.alerts import Twins
from support.readings_corpus import ANNEX, BAD, GOOD, LENIENT, NOW, SITE, batch, envelope, items


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """The example station with a second gateway (its own thermometer) on the same site, as ingest's tests have it."""
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["gateways"].append({"id": ANNEX, "name": "annex", "site": SITE})
    data["sensors"].append({"id": "t-annex", "name": "annex", "kind": "temperature", "gateway": ANNEX,
                            "room": data["sensors"][13]["room"]})
    path = tmp_path_factory.mktemp("lane") / "station.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(path)


class Pair(Twins):
    def __init__(self, tmp_path, cfg):
        super().__init__(tmp_path, cfg, lambda engine: setattr(engine.batches, "take", lambda *a: None), t=NOW)

    def same(self) -> None:
        super().same()
        a, b = self.rest, self.full
        assert [(r["topic"], r["reason"], r["detail"], r["payload"]) for r in a.quarantine.rows(1000)] == \
               [(r["topic"], r["reason"], r["detail"], r["payload"]) for r in b.quarantine.rows(1000)]
        for counter in ("received", "accepted", "quarantined", "raised", "resolved", "resting"):
            assert getattr(a.stats, counter) == getattr(b.stats, counter), counter


def batches(messages):
    return [(t, p) for t, p in messages if t.endswith("/" + MessageClass.READINGS.value)]


def test_both_ways_agree_on_every_batch_good_and_bad(tmp_path, cfg):
    pair = Pair(tmp_path, cfg)
    good = batches(GOOD)
    for t, p in good + batches(BAD) + batches(LENIENT) + good:  # the good ones again: redeliveries
        pair.send((t, p))
        pair.same()
    # every good batch, and those ingest refuses for its own reasons (a conflicting seq, a clock a day ahead)
    assert pair.rest.batches.taken >= 2 * len(good), "the lane took fewer of the good batches than it should"
    assert pair.full.batches.taken == 0
    assert pair.rest.stats.quarantined > 0
    pair.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.lists(items(), min_size=1, max_size=4), st.booleans()), min_size=1, max_size=6))
def test_generated_batches_get_the_same_answer_both_ways(tmp_path_factory, cfg, messages):
    pair = Pair(tmp_path_factory.mktemp("lane"), cfg)
    try:
        for found, historical in messages:
            pair.send(batch(envelope(*found, historical=historical)))
            pair.same()
    finally:
        pair.close()
