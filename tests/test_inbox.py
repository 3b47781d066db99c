"""The engine's inbox (alerts/inbox.py): an alarm does not wait behind other sites' readings, each
site's messages stay in the order its gateway sent them, nobody starves, and acknowledgements go
back to the broker in the order the messages came."""
from __future__ import annotations

import threading

from stationwatch.alerts.inbox import URGENT_RUN, AckOrder, Inbox, urgent, work
from stationwatch.core.contract import MessageClass, topic
from stationwatch.core.wire import batch_payload


def reading(site: str, n: int = 0) -> tuple[str, bytes]:
    return topic(site, f"gw-{site}", MessageClass.READINGS), batch_payload(1.8e9, n, [
        {"sensor": f"{site}-t{i}", "ts": 1.8e9, "value": 20.5, "unit": "°C", "quality": "ok"} for i in range(64)])


def event(site: str) -> tuple[str, bytes]:
    return topic(site, f"gw-{site}", MessageClass.EVENT, f"{site}-smk"), b'{"v":1}'


def fill(inbox: Inbox, messages) -> None:
    for i, (t, b) in enumerate(messages):
        inbox.put(t, b, i + 1, 1)


def test_what_counts_as_urgent():
    assert urgent(event("a")[0])
    assert urgent(topic("a", "gw-a", MessageClass.STATUS))
    assert urgent(topic("a", "gw-a", MessageClass.HEALTH, "local_alarm"))
    assert not urgent(reading("a")[0])
    assert not urgent(topic("a", "gw-a", MessageClass.READING, "t1"))
    assert not urgent(topic("a", "gw-a", MessageClass.HEARTBEAT, "cam-1"))
    assert not urgent("sw/svc/v1/ingest/i1/beat")
    assert urgent(event("reading")[0]) and urgent(topic("heartbeat", "gw-1", MessageClass.EVENT, "smk-1"))  # ids, not classes
    assert not urgent(topic("event", "gw-1", MessageClass.READING, "t1"))
    assert not urgent(topic("a", "gw-a", MessageClass.CMD, "stored")) and not urgent(topic("a", "gw-a", MessageClass.REPLY))
    assert work(*reading("a")) == 64 and work(*event("a")) == 1


def test_an_alarm_is_taken_with_its_sites_earlier_messages_before_other_sites_readings():
    inbox = Inbox()
    fill(inbox, [reading("a"), reading("b"), reading("a", 64), reading("c"), event("a"), reading("a", 128)])
    first = inbox.take(0, 500, 100_000)
    assert [(m.topic, m.n) for m in first] == [(reading("a")[0], 0), (reading("a")[0], 2), (event("a")[0], 4)]
    rest = inbox.take(0, 500, 100_000)
    assert [m.n for m in rest] == [1, 3, 5]  # the others, in arrival order
    assert inbox.take(0, 500, 100_000) == []


def test_a_commit_is_bounded_by_observations_and_messages():
    inbox = Inbox()
    fill(inbox, [reading("a", 64 * i) for i in range(100)])
    assert len(inbox.take(0, 500, 4000)) == 63  # 63 batches of 64 reach 4,032 observations
    assert len(inbox.take(0, 10, 100_000)) == 10


def test_a_gateway_flooding_events_does_not_starve_the_other_sites_readings():
    inbox = Inbox()
    fill(inbox, [reading("quiet")] + [event("noisy")] * (3 * URGENT_RUN * 5))
    taken = [inbox.take(0, 5, 100_000) for _ in range(URGENT_RUN + 1)]
    assert all(len(t) == 5 and {m.topic for m in t} == {event("noisy")[0]} for t in taken[:URGENT_RUN])
    assert taken[URGENT_RUN][0].topic == reading("quiet")[0]


def status(site: str) -> tuple[str, bytes]:
    return topic(site, f"gw-{site}", MessageClass.STATUS), b'{"v":1}'


def test_an_alarm_does_not_wait_behind_a_countrys_births():
    """After a broker restart 2,000 gateways' births (urgent) come at once; a fire behind them is in
    the first commit, and the births go many to a commit, not one each."""
    inbox = Inbox()
    fill(inbox, [status(f"s{i:04d}") for i in range(2000)] + [reading("fire"), event("fire")])
    first = inbox.take(0, 500, 4000)
    assert [m.topic for m in first if m.site == "fire"] == [reading("fire")[0], event("fire")[0]]  # in its order
    births = [m.topic for m in first if m.site != "fire"]
    assert len(first) == 500 and births == [status(f"s{i:04d}")[0] for i in range(498)]  # the rest in arrival order
    commits = 1
    while inbox.take(0, 500, 4000):
        commits += 1
    assert commits == 5  # 2,002 messages in commits of at most 500


def test_the_local_alarm_counts_as_an_alarm_and_other_health_does_not():
    inbox = Inbox()
    cpu = topic("a", "gw-a", MessageClass.HEALTH, "cpu_temp_c"), b"{}"
    siren = topic("b", "gw-b", MessageClass.HEALTH, "local_alarm"), b"{}"
    fill(inbox, [cpu, siren])
    assert [m.topic for m in inbox.take(0, 1, 4000)] == [siren[0]]
    assert [m.topic for m in inbox.take(0, 1, 4000)] == [cpu[0]]


def test_urgent_messages_together_stay_within_the_commits_observations():
    """Each site's readings go with its status (its order kept), as many sites as ~work_max allows."""
    inbox = Inbox()
    fill(inbox, [m for i in range(40) for m in (reading(f"s{i}"), status(f"s{i}"))])
    first = inbox.take(0, 500, 1000)
    assert len(first) == 2 * (1000 // 65)  # 65 observations a site: its 64 readings and its status
    for i in range(0, len(first), 2):
        assert (first[i].topic, first[i + 1].topic) == (reading(first[i].site)[0], status(first[i].site)[0])
    assert sum(m.cost for m in first) <= 1000
    big = Inbox()
    fill(big, [reading("x", 64 * i) for i in range(30)] + [status("x")])
    assert len(big.take(0, 500, 100)) == 31, "an urgent message goes with its site's messages even past the bound"


def test_take_waits_for_a_message_until_its_timeout():
    inbox = Inbox()
    assert inbox.take(0.05, 500, 1000) == []
    threading.Timer(0.05, lambda: inbox.put(*event("a"), 1, 1)).start()
    assert [m.mid for m in inbox.take(5, 500, 1000)] == [1]


def test_acknowledgements_go_back_in_arrival_order():
    inbox, acks, sent = Inbox(), AckOrder(), []
    fill(inbox, [reading("a"), reading("b"), event("b")])
    inbox.put(*reading("c"), 0, 0)  # QoS 0: nothing to acknowledge
    urgent_first = inbox.take(0, 500, 100_000)
    acks.done(urgent_first, lambda mid, qos: sent.append(mid))
    assert sent == []  # b's messages wait for a's, which came first
    acks.done(inbox.take(0, 500, 100_000), lambda mid, qos: sent.append(mid))
    assert sent == [1, 2, 3]
