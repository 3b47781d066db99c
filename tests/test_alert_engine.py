"""The alert engine end to end: over the real Mosquitto (persistent session, quarantine of bad
input) and notifications through apprise to real HTTP receivers (delivery records, failover)."""
from __future__ import annotations

import uuid

import yaml

from stationwatch.alerts.dispatch import Notifier
from stationwatch.alerts.engine import AlertEngine
from stationwatch.alerts.store import Store
from stationwatch.core.config import parse_config
from stationwatch.core.contract import MessageClass, subscription, topic
from stationwatch.core.mqtt import MqttLink
from stationwatch.core.wire import payload

from support import Receiver, wait_for
from support.alerts import GW, SITE, T0, RunningEngine, Wire, send, wait_subscribed


def city_config_with(path, channels: list[str] | None = None, notify: list[str] | None = None):
    """The example city config with the duty officer's channels replaced (None: nobody notified)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if channels is None:
        data["routing"]["notify"] = []
    else:
        data["contacts"][0]["channels"] = channels
    if notify is not None:
        data["routing"]["notify"] = notify
    return parse_config(data)


def test_engine_quarantines_bad_messages_and_keeps_raising_alerts(city_config_path, broker_address, publisher,
                                                                  tmp_path):
    cfg, db, wire = city_config_with(city_config_path), tmp_path / "alerts.db", Wire()
    store = Store(db)
    with RunningEngine(cfg, broker_address, db, f"alerts-{uuid.uuid4().hex[:8]}"):
        wait_subscribed(store, publisher, wire)
        event_topic = topic(SITE, GW, MessageClass.EVENT, "smk-dorm-f1a")
        send(publisher, (event_topic, b"\xff not json"))
        send(publisher, (event_topic, b'{"v": 1, "ts": 1736920800, "seq": 1, "state": 7}'))
        send(publisher, wire.event("smk-nowhere", "alarm"))
        send(publisher, wire.event("smk-dorm-f1a", "alarm"))
        send(publisher, wire.event("smk-dorm-f1b", "alarm", ts=T0 + 2))
        fire = wait_for(lambda: [a for a in store.alerts() if a.rule == "fire" and a.severity == "critical"],
                        15, what="confirmed fire in the store")[0]
        assert fire.subject == f"{SITE}/z-dorm-west"
        beat = wait_for(lambda: (b := store.last_beat()) and b[1]["quarantined"] == 3 and b,
                        10, what="quarantine counted in the engine heartbeat")
        assert beat[1]["quarantine"] == {"not_json": 1, "bad_schema": 1, "unknown_device": 1}
        assert beat[1]["connected"] is True
        # the engine runs the cycle collector itself, between commits (core/collector.py Pace)
        assert beat[1]["collector"]["passes"][0] > 0, beat[1]["collector"]
    assert (tmp_path / "alerts.quarantine.db").exists()


def test_the_engine_reads_what_gateways_say_not_the_commands_sent_to_them(city_config_path, broker_address,
                                                                         publisher, tmp_path):
    """Ingest's receipts (cmd/stored) go to every gateway heard from, every second: ~200 a second for
    a country, which the engine, subscribed to the whole tree, took one urgent commit each, ahead of
    the next fire. A session an earlier version left subscribed to the whole tree is narrowed too."""
    cfg, db, wire = city_config_with(city_config_path), tmp_path / "alerts.db", Wire()
    store, client_id = Store(db), f"alerts-{uuid.uuid4().hex[:8]}"
    earlier = MqttLink(broker_address, client_id, clean_start=False,
                       on_connect=lambda link: link.subscribe(subscription(), 1)).start()
    assert earlier.subscribed.wait(10)
    earlier.stop()
    with RunningEngine(cfg, broker_address, db, client_id):
        wait_subscribed(store, publisher, wire)
    # the engine is away; its session on the broker keeps what it is subscribed to
    send(publisher, (topic(SITE, GW, MessageClass.CMD, "stored"), payload(T0, name="stored", args={"seqs": [[1, 9]]})),
         MessageClass.CMD)
    send(publisher, wire.event("smk-dorm-f1a", "alarm"))
    kept: list[str] = []
    session = MqttLink(broker_address, client_id, clean_start=False,
                       on_message=lambda topic_name, body, msg: kept.append(topic_name)).start()
    try:
        wait_for(lambda: any("/event/" in t for t in kept), 10, what="the event kept in the engine's session")
    finally:
        session.stop()
    assert not [t for t in kept if f"/{MessageClass.CMD.value}/" in t], kept


def test_messages_sent_while_the_engine_is_down_wait_in_its_persistent_session(city_config_path, broker_address,
                                                                                 publisher, tmp_path):
    cfg, db, wire = city_config_with(city_config_path), tmp_path / "alerts.db", Wire()
    store, client_id = Store(db), f"alerts-{uuid.uuid4().hex[:8]}"
    with RunningEngine(cfg, broker_address, db, client_id):
        wait_subscribed(store, publisher, wire)
    send(publisher, wire.event("boiler-fault", "alarm"))  # nobody is listening right now
    with RunningEngine(cfg, broker_address, db, client_id):
        wait_for(lambda: [a for a in store.alerts() if a.rule == "boiler_fault"], 15,
                 what="queued boiler fault evaluated after the restart")


def test_new_alert_and_escalation_notify_the_duty_officer_in_chinese_first(city_config_path, receiver, tmp_path):
    url = f"json://duty:s3cret@127.0.0.1:{receiver.port}/stationwatch/duty"
    cfg, wire = city_config_with(city_config_path, [url]), Wire()
    engine = AlertEngine(cfg, tmp_path / "alerts.db", notifier=Notifier(cfg, backoff_s=(0.05,)))
    try:
        [fire] = engine.handle(*wire.event("smk-minors-a", "alarm"))
        first = wait_for(receiver.received, 10, what="first notice")[0]
        assert first["path"] == "/stationwatch/duty"
        message = first["json"]["message"]
        assert message.index("火灾预警") < message.index("Fire pre-alarm")  # Chinese first, English below
        for text in ("示例市救助管理站", "未成年人宿舍", "2025-01-15 14:00:00", f"#{fire.id}", "预警（需人工复核）"):
            assert text in message
        engine.handle(*wire.event("smk-minors-b", "alarm", ts=T0 + 4))
        second = wait_for(lambda: receiver.received()[1:], 10, what="escalation notice")[0]["json"]
        assert "告警升级" in second["message"] and "严重" in second["title"]
        duty = lambda: [d for d in engine.store.deliveries(fire.id) if d["contact"] == "duty-staff"]  # noqa: E731
        deliveries = wait_for(lambda: [d for d in duty() if d["state"] == "sent"][1:] and duty(), 10,
                              what="deliveries recorded")
        assert [(d["state"], d["attempts"], d["severity"], d["kind"]) for d in deliveries] == \
            [("sent", 1, "pre_alarm", "new"), ("sent", 1, "critical", "escalated")]
        assert "s3cret" not in deliveries[0]["channel"] and "127.0.0.1" in deliveries[0]["channel"]
    finally:
        engine.close()


def test_failing_channel_is_retried_then_the_next_channel_of_the_contact_is_used(city_config_path, receiver,
                                                                                 tmp_path):
    receiver.status = 500
    with Receiver() as backup:
        channels = [f"json://127.0.0.1:{receiver.port}/wecom", f"json://127.0.0.1:{backup.port}/sms"]
        cfg, wire = city_config_with(city_config_path, channels), Wire()
        engine = AlertEngine(cfg, tmp_path / "alerts.db", notifier=Notifier(cfg, attempts=3, backoff_s=(0.05, 0.1)))
        try:
            [boiler] = engine.handle(*wire.event("boiler-fault", "alarm"))
            wait_for(backup.received, 15, what="notice through the second channel")
            assert len(receiver.received()) == 3  # three tries on the broken channel first
            failed, sent = wait_for(lambda: (d := engine.store.deliveries(boiler.id))[-1]["state"] == "sent" and d,
                                    10, what="delivery records")
            assert (failed["state"], failed["attempts"], sent["state"], sent["attempts"]) == ("failed", 3, "sent", 1)
            assert "500" in failed["last_error"]
            assert "/sms" in sent["channel"]
        finally:
            engine.close()


def test_a_broken_notification_channel_never_blocks_the_engine(city_config_path, tmp_path):
    cfg, wire = city_config_with(city_config_path, ["not-a-channel://x"]), Wire()
    engine = AlertEngine(cfg, tmp_path / "alerts.db", notifier=Notifier(cfg, backoff_s=(0.05,)))
    try:
        engine.handle(*wire.event("boiler-fault", "alarm"))
        engine.handle(*wire.event("smk-store", "alarm"))
        assert {a.rule for a in engine.store.alerts()} == {"boiler_fault", "fire"}
        duty = lambda: [d for d in engine.store.deliveries() if d["contact"] == "duty-staff"]  # noqa: E731
        records = wait_for(lambda: [d for d in duty() if d["state"] == "failed"][1:] and duty(), 10,
                           what="failed deliveries recorded")
        assert all("not understood" in d["last_error"] for d in records)
    finally:
        engine.close()


def test_a_contact_without_any_channel_shows_as_a_failed_delivery(city_config_path, receiver, tmp_path):
    cfg = city_config_with(city_config_path, [f"json://127.0.0.1:{receiver.port}/duty"],
                           notify=["duty-staff", "leader-on-shift"])
    engine = AlertEngine(cfg, tmp_path / "alerts.db", notifier=Notifier(cfg, backoff_s=(0.05,)))
    try:
        [alert] = engine.handle(*Wire().status("offline", "will"))
        records = wait_for(lambda: (d := engine.store.deliveries(alert.id))[1:] and d, 10, what="both contacts tried")
        by_contact = {d["contact"]: d for d in records}
        assert {c: d["state"] for c, d in by_contact.items()} == {"duty-staff": "sent", "leader-on-shift": "failed"}
        assert "no channel" in by_contact["leader-on-shift"]["last_error"]
    finally:
        engine.close()


def test_a_batched_cold_reading_raises_the_same_alert_as_a_single_one(city_config, tmp_path):
    """The same cold spell in a sleeping room, once as single readings and once as ``readings``
    batches (with a malformed item and a reading of the hall beside it): the same alert, severity,
    titles and trail; the malformed item is quarantined alone."""
    from support.alerts import Clock, active

    def run(name: str, batched: bool):
        clock, wire = Clock(), Wire()
        engine = AlertEngine(city_config, tmp_path / f"{name}.db", clock=clock)
        for dt, value in ((0, 16.0), (1800, 15.5), (1900, 4.0), (2200, 4.0)):
            if batched:
                t, body = wire.readings(("t-hall", 21.0), ("t-dorm-f1", value), ts=T0 + dt)
                engine.handle(t, body.replace(b'"items":[', b'"items":[{"sensor":"t-hall","ts":"soon","seq":1},', 1),
                              now=clock.at(T0 + dt))
            else:
                engine.handle(*wire.reading("t-hall", 21.0, ts=T0 + dt), now=clock.at(T0 + dt))
                engine.handle(*wire.reading("t-dorm-f1", value, ts=T0 + dt), now=clock.at(T0 + dt))
        [alert] = active(engine, "cold_room")
        trail = [t["action"] for t in engine.store.trail(alert.id)]
        refused = dict(engine.quarantine.counts)
        rows = engine.quarantine.rows()
        engine.close()
        return (alert.rule, alert.subject, alert.severity, alert.state, alert.title_zh, alert.title_en), trail, refused, rows

    single, single_trail, none, _ = run("single", batched=False)
    batched, batched_trail, refused, rows = run("batched", batched=True)
    assert batched == single and batched[2] == "critical"
    assert batched_trail == single_trail
    assert none == {} and refused == {"bad_schema": 4}  # one malformed item in each of the four batches
    assert rows[0]["detail"].startswith("items[0].ts") and rows[0]["topic"] == topic(SITE, GW, MessageClass.READINGS)
