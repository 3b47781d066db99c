"""The duty board clicked through in a real browser: Playwright driving Debian's chromium against
the API (uvicorn) and the alert engine as `stationwatch alerts` runs it, on a broker of the test's
own (one test kills it), with the simulated station playing the fire scenario and notices going
to a real local HTTP receiver. What a duty officer does at 3 a.m.: sign in, see the fire come in
on top with a chime and a notification, acknowledge it in a dialog, find it in the audit trail;
on a phone, dismiss a false alarm with a reason; an inspector only reads. With
STATIONWATCH_SCREENSHOTS=1 (`make screenshots`) the desk, phone and site views are written to docs/."""
from __future__ import annotations

import time

import httpx
import pytest

from stationwatch.alerts.store import Store
from stationwatch.broker.stack import LocalMosquitto
from stationwatch.core.contract import MessageClass, Status, encode, topic
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.gateway.simulation import SimulatedStation

from support import wait_for
from support.alerts import GW, SITE, RunningEngine, Wire, send
from support.board import CHROMIUM, DOCS, INSPECTOR, LEADER, SCREENSHOTS, STAFF, Served, console_config

playwright = pytest.importorskip("playwright.sync_api", reason="the `test` extra (pip install -e '.[test]') brings playwright")
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (`make test-deps`)")]
PHONE = {"width": 390, "height": 844}
CAMERAS = ("cam-hall", "cam-canteen", "cam-yard")  # three cameras that stop answering


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium, never a browser Playwright would download."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"])
        yield browser
        browser.close()


class Console:
    """A broker, the engine on it, the API and a browser context of one person."""

    def __init__(self, tmp_path, receiver, chromium):
        self.tmp, self.chromium = tmp_path, chromium
        self.broker = LocalMosquitto(tmp_path / "mosquitto").start()
        self.address = BrokerAddress(self.broker.host, self.broker.port)
        self.cfg = console_config(receiver.port)
        self.db = tmp_path / "alerts.db"
        self.engine = RunningEngine(self.cfg, self.address, self.db, "board-engine").__enter__()
        self.served = Served(self.cfg, self.db).__enter__()
        self.station: SimulatedStation | None = None
        self.link = MqttLink(self.address, "board-test-gateway").start()
        self.wire = Wire()
        self.contexts: list = []
        wait_for(lambda: self.health(STAFF).get("engine", {}).get("connected"), 20, what="the engine on the broker")

    @property
    def url(self) -> str:
        return self.served.url

    def api(self, token: str, path: str):
        return httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=5).json()

    def health(self, token: str) -> dict:
        try:
            return self.api(token, "health")
        except httpx.HTTPError:
            return {}

    def alerts(self, rule: str | None = None) -> list[dict]:
        return [a for a in self.api(STAFF, "api/alerts") if rule is None or a["rule"] == rule]

    def page(self, **options):
        context = self.chromium.new_context(locale="zh-CN", **options)
        self.contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda d: pytest.fail(f"the page used a browser {d.type}() box: {d.message}"))
        return page

    def send(self, message, kind=MessageClass.EVENT) -> None:
        send(self.link, message, kind)

    def camera_down(self, camera: str) -> None:
        """As many failed probes as the camera's ``misses``: it is offline."""
        misses = next(c.misses for c in self.cfg.cameras if c.id == camera)
        for _ in range(misses):
            self.send(self.wire.heartbeat(camera, False, ts=time.time()), MessageClass.HEARTBEAT)

    def fire(self) -> dict:
        """The simulated station plays its fire scenario (two detectors in one zone)."""
        gw = self.cfg.gateways[0]
        self.station = SimulatedStation(self.cfg, gw, self.address, speed=4.0,
                                        spool_path=self.tmp / "gateway-spool.db").start()
        self.station.play("fire", 4.0)
        return wait_for(lambda: [a for a in self.alerts("fire") if a["severity"] == "critical"], 30,
                        what="the confirmed fire at /api/alerts")[0]

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        if self.station is not None:
            self.station.stop()
        self.link.stop()
        self.served.__exit__()
        self.engine.__exit__()
        self.broker.stop()


@pytest.fixture
def console(tmp_path, receiver, chromium):
    c = Console(tmp_path, receiver, chromium)
    yield c
    c.close()


def sign_in(page, url: str, token: str) -> None:
    page.goto(url)
    page.wait_for_selector("#signin.show")
    page.fill("#token", token)
    page.click("#signin-btn")
    page.wait_for_selector("#who .role")


def first_card_id(page) -> str | None:
    return page.evaluate("() => { const c = document.querySelector('#alerts article.alert'); return c && c.id; }")


def test_a_fire_comes_in_on_top_with_sound_and_notice_and_is_acknowledged_in_a_dialog(console):
    console.camera_down("cam-hall")
    camera = wait_for(lambda: console.alerts("camera_offline"), 15, what="the camera alert")[0]
    page = console.page(permissions=["notifications"], viewport={"width": 1280, "height": 800})
    sign_in(page, console.url, STAFF)
    assert page.inner_text("#who") == "值班员张三值班员"
    page.wait_for_selector(f"#alert-{camera['id']}")
    page.click("#notify-btn")  # the permission path: asked once, allowed (the context grants it)
    page.wait_for_function("() => document.querySelector('#notify-btn').textContent === '通知已开启'")
    page.evaluate("() => { window.notReloaded = true; }")
    sounds_before = page.evaluate("() => board.sounds")

    fire = console.fire()
    page.wait_for_selector(f"#alert-{fire['id']}", timeout=10_000)
    assert page.evaluate("() => window.notReloaded") is True, "the alert came without a reload"
    wait_for(lambda: first_card_id(page) == f"alert-{fire['id']}", 10, what="the confirmed fire on top")
    page.wait_for_function(f"() => board.sounds > {sounds_before} && board.notices >= 1")
    page.wait_for_function("() => document.getElementById('chime').played.length > 0")  # the chime was heard
    assert "火" in page.evaluate("() => board.lastNotice")
    page.wait_for_function("() => board.flashing && document.title.startsWith('【新告警】')")
    assert "已通知：" in page.inner_text(f"#alert-{fire['id']} .chain")
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / "board-desk.png"))

    # from the keyboard: the focused button keeps its focus across the 2 s refresh, Enter opens, Escape closes
    page.focus(f"#alert-{fire['id']} .act-acknowledge")
    refreshes = page.evaluate("() => board.refreshes")
    page.wait_for_function(f"() => board.refreshes >= {refreshes + 2}")
    assert page.evaluate(f"() => document.activeElement.matches('#alert-{fire['id']} .act-acknowledge')")
    page.keyboard.press("Enter")
    page.wait_for_selector("#act-dialog[open]")
    page.keyboard.press("Escape")
    page.wait_for_selector("#act-dialog", state="hidden")

    page.click(f"#alert-{fire['id']} .act-acknowledge")
    page.wait_for_selector("#act-dialog[open]")
    assert "确认" in page.inner_text("#act-title") and fire["title_zh"] in page.inner_text("#act-what")
    page.fill("#act-note", "已到场，组织疏散")
    page.click("#act-ok")
    page.wait_for_selector("#act-dialog", state="hidden")
    page.wait_for_selector(f"#alert-{fire['id']} .tag:has-text('已确认')")
    page.wait_for_function("() => !board.flashing && !document.title.startsWith('【新告警】')")
    assert page.locator(f"#alert-{fire['id']} .act-acknowledge").count() == 0

    page.click(f"#alert-{fire['id']} .detail-btn")
    page.wait_for_selector("#detail-dialog[open] #audit li:has-text('acknowledge')")
    audit = page.inner_text("#audit")
    assert "zhangsan" in audit and "已到场，组织疏散" in audit
    assert "json://" in page.inner_text("#detail-body") or "127.0.0.1" in page.inner_text("#detail-body")

    detail = console.api(STAFF, f"api/alerts/{fire['id']}")
    assert detail["state"] == "acknowledged"
    assert detail["escalation"]["stopped"] and detail["escalation"]["due_in_s"] is None  # no deadline remains
    for a in console.alerts():
        e = a.get("escalation")
        assert e is None or e["due_in_s"] is None or e["due_in_s"] >= 0, a


def test_on_a_phone_a_leader_sees_the_alert_and_both_buttons_and_dismisses_it_with_a_reason(console):
    console.send(console.wire.event("smk-kitchen", "alarm", ts=time.time()))
    alarm = wait_for(lambda: [a for a in console.alerts("fire") if a["state"] == "firing"], 15, what="the pre-alarm")[0]
    page = console.page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.goto(f"{console.url}#token={LEADER}&alert={alarm['id']}")  # the link of a push
    card = page.wait_for_selector(f"#alert-{alarm['id']}")
    assert first_card_id(page) == f"alert-{alarm['id']}"
    assert LEADER not in page.url
    for name in ("act-acknowledge", "act-dismiss"):
        box = page.locator(f"#alert-{alarm['id']} .{name}").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (name, box)
        assert box["height"] >= 44, f"{name} is large enough for a thumb"
    assert card.bounding_box()["x"] + card.bounding_box()["width"] <= PHONE["width"]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"], "no horizontal scrolling"
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / "board-phone.png"))

    page.click(f"#alert-{alarm['id']} .act-dismiss")
    page.wait_for_selector("#act-dialog[open]")
    page.click("#act-ok")  # no reason picked: the dialog says so and stays
    assert page.inner_text("#act-error") == "请选择误报原因"
    page.select_option("#act-reason", "cooking")
    page.fill("#act-note", "厨房炒菜")
    page.click("#act-ok")
    page.wait_for_selector("#act-dialog", state="hidden")
    page.wait_for_selector(f"#alert-{alarm['id']}", state="detached")
    closed = console.api(LEADER, f"api/alerts/{alarm['id']}")
    assert closed["state"] == "dismissed" and closed["resolved_by"].startswith("lisi")
    [why] = [x["note"] for x in closed["audit"] if x["action"] == "dismiss"]
    assert why == "dismissed: 烹饪油烟、水汽 / cooking fumes or steam：厨房炒菜"


def test_an_inspector_reads_without_any_button_and_switches_to_english(console):
    console.send(console.wire.event("smk-kitchen", "alarm", ts=time.time()))
    alarm = wait_for(lambda: console.alerts("fire"), 15, what="the pre-alarm")[0]
    page = console.page()
    sign_in(page, console.url, INSPECTOR)
    page.wait_for_selector(f"#alert-{alarm['id']}")
    assert page.locator("[class^='act-'], [class*=' act-']").count() == 0
    assert page.inner_text("#who .role") == "督查"
    sounds = page.evaluate("() => board.sounds")
    page.click("#sound-test")  # the shift change checks the speakers
    page.wait_for_function(f"() => board.sounds > {sounds}")
    page.click("#lang")
    assert page.inner_text("h1") == "Duty board · active alerts"
    assert page.inner_text("#who .role") == "inspector"
    assert alarm["title_en"] in page.inner_text(f"#alert-{alarm['id']} .title")


def test_a_dead_broker_turns_the_banner_red_and_folds_the_device_cards_into_one_line(console):
    for cam in CAMERAS:
        console.camera_down(cam)
    cards = wait_for(lambda: (lambda found: found if len(found) == len(CAMERAS) else None)(console.alerts("camera_offline")),
                     15, what="three camera alerts")
    page = console.page()
    sign_in(page, console.url, STAFF)
    for a in cards:
        page.wait_for_selector(f"#alert-{a['id']}")
    page.wait_for_selector("#pipeline [data-hop=broker].ok")
    assert page.locator(".fold.outage").count() == 0

    console.broker.kill()
    page.wait_for_selector("#pipeline.down [data-hop=broker].down", timeout=20_000)
    assert page.inner_text("#pipeline [data-hop=broker]").startswith("消息服务器 中断")
    fold = page.wait_for_selector(".fold.outage")
    assert fold.get_attribute("data-count") == str(len(CAMERAS)) and "消息服务器中断" in fold.inner_text()
    for a in cards:
        assert page.locator(f"#alert-{a['id']}").count() == 0, "folded into the outage's line"
    page.click(".fold.outage .fold-toggle")
    for a in cards:
        page.wait_for_selector(f"#alert-{a['id']}")


def test_the_api_docs_render_with_the_network_off(console):
    page = console.page()
    outside: list[str] = []

    def only_this_machine(route):
        host = route.request.url.split("/")[2].split(":")[0]
        if host == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()
    page.route("**/*", only_this_machine)
    page.goto(f"{console.url}docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/alerts/{alert_id}/acknowledge" in [p.replace("\u200b", "") for p in paths]
    assert not outside, f"/docs reached outside the machine: {outside}"


def test_the_site_view_shows_rooms_with_their_last_values_and_the_gateway(console):
    console.served.app.state.config_version = "cfg-centre"
    console.send((topic(SITE, GW, MessageClass.STATUS),
                  encode(Status(v=1, ts=time.time(), state="online", config_version="cfg-old"))), MessageClass.STATUS)
    console.send(console.wire.reading("t-dorm-f1", 19.5, ts=time.time()), MessageClass.READING)
    console.send(console.wire.reading("t-hall", None, ts=time.time(), quality="fault"), MessageClass.READING)
    wait_for(lambda: console.alerts("sensor_fault"), 15, what="the faulty reading's alert")
    page = console.page()
    sign_in(page, console.url, STAFF)
    page.click("#view-btn")
    page.wait_for_selector("#sites [data-device=t-dorm-f1]:has-text('19.5 °C')")
    assert page.locator("#alerts").is_hidden()
    assert "故障" in page.inner_text("#sites [data-device=t-hall].fault")
    gateway = page.inner_text(f"#sites [data-gateway={GW}]")
    assert "在线" in gateway and "cfg-old" in gateway and "与中心不一致" in gateway
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / "board-sites.png"), full_page=True)
    page.click("#view-btn")  # back to the alerts
    page.wait_for_selector("#alerts article.alert")


def test_many_cards_of_one_cause_fold_into_one_line_and_a_drill_is_shown_as_a_drill(console):
    many = ("cam-hall", "cam-canteen", "cam-yard", "cam-kitchen")  # FOLD_AT of one rule at one site
    for cam in many:
        console.camera_down(cam)
    cameras = wait_for(lambda: (lambda found: found if len(found) == len(many) else None)(console.alerts("camera_offline")),
                       15, what="four camera alerts")
    console.send(console.wire.event("smk-kitchen", "alarm", ts=time.time(), drill=True))
    drill = wait_for(lambda: [a for a in console.alerts("fire") if a["drill"]], 15, what="the drill")[0]
    page = console.page()
    sign_in(page, console.url, STAFF)
    fold = page.wait_for_selector("[data-fold='rule:sl-station:camera_offline']")
    assert fold.get_attribute("data-count") == "4" and "4 条「摄像机离线」" in fold.inner_text()
    assert all(page.locator(f"#alert-{a['id']}").count() == 0 for a in cameras)
    card = page.wait_for_selector(f"#alert-{drill['id']}.drill")
    assert card.query_selector(".tag.drill").inner_text() == "演练"
    page.click("[data-fold='rule:sl-station:camera_offline'] .fold-toggle")
    for a in cameras:
        page.wait_for_selector(f"#alert-{a['id']}")
