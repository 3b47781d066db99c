"""Notifications through apprise to real HTTP receivers: a first channel that answers 500s and
times out → retries with backoff, then failover, with the failures visible through the API; rate
limits with digests; the durable outbox across a restart; the SMS provider plugin; the Chinese
templates, drills marked on every notice."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from stationwatch.alerts.api import create_app
from stationwatch.alerts.dispatch import Notifier
from stationwatch.alerts.engine import AlertEngine

from support import wait_for
from support.alerts import T0, Wire, config_with


class Flaky:
    """An HTTP endpoint that answers from a script: a status code, or "hang" (longer than the
    client's read timeout). After the script it keeps answering the last entry."""

    def __init__(self, script: list):
        self.script, self.seen = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                step = outer.script[min(len(outer.seen), len(outer.script) - 1)]
                outer.seen.append(step)
                if step == "hang":
                    time.sleep(1.5)
                self.send_response(500 if step == "hang" else step)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def duty_with(channels, **routing):
    contacts = [{"id": "duty-staff", "name": "值班员 张三", "role": "staff", "sites": ["sl-station"],
                 "channels": channels}]
    return config_with(contacts=contacts, routing={"notify": [], **routing})


@pytest.fixture
def engines(store_path):
    made = []

    def make(cfg, **notifier):
        engine = AlertEngine(cfg, store_path, notifier=Notifier(cfg, **notifier), clock=lambda: T0)
        engine.watching = False
        made.append(engine)
        return engine
    yield make
    for engine in made:
        engine.close()


def test_500s_and_timeouts_are_retried_then_the_next_channel_delivers_and_the_api_shows_it(engines, receiver,
                                                                                           store_path):
    flaky = Flaky([500, "hang", 500])
    try:
        cfg = duty_with([f"json://127.0.0.1:{flaky.port}/wecom?rto=0.5", f"json://127.0.0.1:{receiver.port}/sms"],
                        attempts=3, backoff_s=[0.05, 0.1])
        engine = engines(cfg)
        [boiler] = engine.handle(*Wire().event("boiler-fault", "alarm"))
        wait_for(receiver.received, 15, what="the notice through the second channel")
        assert flaky.seen == [500, "hang", 500]  # three tries on the broken channel first
        with TestClient(create_app(cfg, store_path)) as api:
            deliveries = wait_for(lambda: (d := api.get(f"/api/alerts/{boiler.id}").json()["deliveries"])[1:] and d,
                                  10, what="both channels in the alert's deliveries")
            failed, sent = deliveries
            assert (failed["state"], failed["attempts"], sent["state"], sent["attempts"]) == ("failed", 3, "sent", 1)
            assert "500" in failed["last_error"] and "/wecom" in failed["channel"] and "/sms" in sent["channel"]
            assert api.get("/api/stats").json()["failed_deliveries"] == 1
    finally:
        flaky.close()


def test_a_timeout_is_worth_a_retry_a_refusal_is_not(engines, receiver):
    refusing = Flaky([404])
    try:
        cfg = duty_with([f"json://127.0.0.1:{refusing.port}/gone", f"json://127.0.0.1:{receiver.port}/ok"],
                        attempts=3, backoff_s=[0.05])
        engine = engines(cfg)
        engine.handle(*Wire().event("boiler-fault", "alarm"))
        wait_for(receiver.received, 10, what="failover after the refusal")
        assert refusing.seen == [404]  # a 404 is final: straight to the next channel
    finally:
        refusing.close()


def test_a_burst_over_the_rate_limit_goes_as_a_digest(engines, receiver):
    cfg = duty_with([f"json://127.0.0.1:{receiver.port}/robot"], rate_per_minute={"json": 3})
    engine = engines(cfg)
    wire = Wire()
    smoke = ["smk-kitchen", "smk-store", "smk-boiler", "smk-med-obs", "smk-dorm-m1", "smk-minors-a"]
    engine.handle_batch([wire.event(d, "alarm") for d in smoke])
    posts = wait_for(lambda: (r := receiver.received())[2:] and r, 10, what="three messages: the limit")
    [digest] = [p["json"] for p in posts if "汇总" in p["json"]["title"]]  # sent in parallel: any order
    assert "【汇总】4 条告警通知" in digest["title"] and digest["message"].count("· #") == 8  # zh and en lines
    sent = lambda: sorted(r["digest"] for r in engine.store.query("SELECT digest FROM deliveries WHERE state='sent'"))  # noqa: E731
    wait_for(lambda: len(sent()) >= 6, 10, what="the deliveries recorded (after the receiver has them)")
    assert sent() == [0, 0, 4, 4, 4, 4]
    engine.handle(*wire.event("boiler-fault", "alarm"))
    queued = wait_for(lambda: engine.store.query("SELECT next_at FROM outbox WHERE state='queued' AND next_at>0"), 5,
                      what="the next notice held back")
    assert queued[0]["next_at"] > time.time() + 50  # until the minute has room again
    assert len(receiver.received()) == 3


def test_queued_notices_survive_a_restart_and_are_sent_by_the_next_engine(city_config, receiver, store_path):
    cfg = duty_with([f"json://127.0.0.1:{receiver.port}/duty"])
    first = AlertEngine(cfg, store_path, clock=lambda: T0)  # dies before it could send anything
    first.handle(*Wire().event("boiler-fault", "alarm"))
    first.store.query("UPDATE outbox SET state='sending'")  # cut off in the middle of a send
    first.close()
    second = AlertEngine(cfg, store_path, notifier=Notifier(cfg), clock=lambda: T0)
    try:
        [post] = wait_for(receiver.received, 10, what="the notice queued before the restart")
        assert "锅炉故障" in post["json"]["message"]
    finally:
        second.close()


def test_sms_goes_through_the_provider_plugin_with_the_short_text(engines, receiver):
    engine = engines(duty_with([f"smsgw://key:secret@127.0.0.1:{receiver.port}/send?to=13800000001&sign=救助站"]))
    [boiler] = engine.handle(*Wire().event("boiler-fault", "alarm"))
    [post] = wait_for(receiver.received, 10, what="the SMS relay called")
    body = post["json"]
    assert body["to"] == ["13800000001"] and body["sign"] == "救助站"
    assert body["text"].startswith("【重要】新告警：锅炉故障") and f"#{boiler.id}" in body["text"]
    [delivery] = wait_for(lambda: engine.store.deliveries(boiler.id), 5, what="the delivery recorded")
    assert len(body["text"]) <= 200 and "secret" not in delivery["channel"]


def test_notices_are_chinese_first_and_say_how_to_acknowledge(engines, receiver):
    engine = engines(duty_with([f"json://127.0.0.1:{receiver.port}/duty"], board_url="https://sw.example/board"))
    [fire] = engine.handle(*Wire().event("smk-minors-a", "alarm"))
    message = wait_for(receiver.received, 10, what="the notice")[0]["json"]["message"]
    assert message.index("火灾预警") < message.index("Fire pre-alarm")
    for text in ("站点：示例市救助管理站", "房间：未成年人宿舍", "时间：2025-01-15 14:00:00（Asia/Shanghai）",
                 "级别：预警（需人工复核）", f"告警编号：#{fire.id}", "上报级别：值班人员",
                 "https://sw.example/board", "确认"):
        assert text in message


def test_every_notice_of_a_drill_is_marked(engines, receiver):
    engine = engines(duty_with([f"json://127.0.0.1:{receiver.port}/duty"]))
    wire = Wire()
    engine.handle(*wire.event("smk-dorm-f1a", "alarm", drill=True))
    engine.handle(*wire.event("smk-dorm-f1b", "alarm", ts=T0 + 1, drill=True))
    posts = wait_for(lambda: (r := receiver.received())[1:] and r, 10, what="two notices")
    assert all(p["json"]["title"].startswith("【演练，非真实告警】") for p in posts)
    assert all("[DRILL" in p["json"]["message"] for p in posts)
