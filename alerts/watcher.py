"""The independent watcher (独立看护): a process of its own (``stationwatch watch``, its own systemd
unit) that watches the alert engine, the engine's dispatcher and the broker, and — when they are
gone — gets the word out itself through a backup channel configured apart
(``supervision.backup.urls``: an SMS gateway's or a second robot's JSON webhook).

It shares nothing that could die with the engine: no process, and no code path of the engine's
notices — it reads the heartbeat rows of the alert store with plain SQL and posts its notice with
the standard library (import-linter forbids this module the engine's modules and apprise).

| watched | alive when | gone after |
|---|---|---|
| ``alerts`` (the engine) | its heartbeat row in the store is fresh | ``grace_s.alerts``; after a clean stop (its MQTT beat says ``shutdown``) ``backup.planned_grace_s`` |
| ``dispatcher`` | its heartbeat row is fresh (it beats every round) | ``grace_s.dispatcher`` |
| ``broker`` | the watcher's own MQTT link is up and its probe comes back | ``grace_s.broker`` |

A notice goes out when one of them is gone, a reminder every ``backup.remind_s`` while it stays
gone, and a last one when it is back; never more than ``backup.rate_per_minute`` a minute (the rest
wait and go out together). The watcher beats too (store row ``watcher``, MQTT), so the engine knows
when the watcher itself is gone.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from stationwatch.core.config import CENTRE_NAME, StationConfig
from stationwatch.core.contract import ContractError, parse_service
from stationwatch.core.heartbeat import Beacon
from stationwatch.core.metrics import MetricsServer, prometheus_text
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.wire import payload, service_subscription, service_topic

log = logging.getLogger(__name__)

WATCHED = {  # name → (中文, English, what it means to the duty staff)
    "alerts": ("告警引擎", "the alert engine", ("火警等告警可能无法判定和推送", "fire and other alarms may not be raised or sent")),
    "dispatcher": ("告警推送", "alert delivery", ("告警可能无法推送给值班人员", "alarms may not reach the staff on duty")),
    "broker": ("消息服务器 (MQTT)", "the MQTT broker", ("网关的告警无法送达中心", "the gateways' alarms cannot reach the centre")),
}
Send = Callable[[str, dict], None]  # (url, JSON body) → raises on failure


def post_json(url: str, body: dict, timeout: float = 10.0) -> None:
    """POST ``body`` as JSON; ``json://`` is plain HTTP and ``jsons://`` HTTPS, as in the engine's channels."""
    target = "http://" + url[7:] if url.startswith("json://") else "https://" + url[8:] if url.startswith("jsons://") else url
    request = urllib.request.Request(target, json.dumps(body, ensure_ascii=False).encode(), method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 — a configured URL
        if answer.status >= 300:
            raise OSError(f"HTTP {answer.status}")


@dataclass
class Watched:
    name: str
    down_since: float | None = None  # when it was last known alive, while it is gone
    told_at: float | None = None  # last notice about it (first or reminder)


@dataclass
class Watcher:
    """Decides from heartbeats; :meth:`check` returns the notices to send now (tests call it directly)."""
    cfg: StationConfig
    db_path: Path
    clock: Callable[[], float] = time.time
    watched: dict[str, Watched] = field(default_factory=dict)
    engine_stopped_cleanly: bool = False
    link_up: bool | None = None  # None: the watcher has no MQTT link (store only)
    link_since: float = 0.0
    last_round_trip: float | None = None
    started: float = 0.0
    _sent: deque = field(default_factory=deque)
    _waiting: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.watched = {name: Watched(name) for name in WATCHED}
        self.started = self.clock()

    def _beat_at(self, service: str) -> float | None:
        try:
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=2) as db:
                row = db.execute("SELECT at FROM heartbeat WHERE service=?", (service,)).fetchone()
        except sqlite3.Error:
            return None  # no store yet, or unreadable: the engine's beat is not there either
        return row[0] if row else None

    def last_alive(self, name: str, now: float) -> float:
        if name == "broker":  # its own probe's round trip (none yet: since the watcher started)
            return now if self.link_up is None else self.last_round_trip or self.started
        return self._beat_at(name) or self.started

    def grace(self, name: str) -> float:
        s = self.cfg.supervision
        planned = self.engine_stopped_cleanly and name in ("alerts", "dispatcher")  # it stops with the engine
        return s.backup.planned_grace_s if planned else s.grace(name)

    def check(self) -> list[dict]:
        """Notices due now: a thing gone past its grace, a reminder, or back again."""
        now, notices = self.clock(), []
        remind = self.cfg.supervision.backup.remind_s
        for name, w in self.watched.items():
            alive = self.last_alive(name, now)
            gone = now - max(alive, self.started) > self.grace(name)
            if gone and w.down_since is None:
                w.down_since, w.told_at = alive, now
                notices.append(_notice(name, "down", alive, now, self.grace(name)))
            elif gone and now - w.told_at >= remind:
                w.told_at = now
                notices.append(_notice(name, "reminder", w.down_since, now, self.grace(name)))
            elif not gone and w.down_since is not None:
                notices.append(_notice(name, "back", w.down_since, now, self.grace(name)))
                w.down_since = w.told_at = None
        return self._rate_limited(notices, now)

    def _rate_limited(self, notices: list[dict], now: float) -> list[dict]:
        """At most ``rate_per_minute`` a minute; what is over waits (only the latest word about each
        watched thing) and, if there is more than the room, goes out as one digest."""
        limit = self.cfg.supervision.backup.rate_per_minute
        while self._sent and self._sent[0] <= now - 60:
            self._sent.popleft()
        latest = {n["watched"]: n for n in [*self._waiting, *notices]}  # a newer word replaces one still waiting
        self._waiting = list(latest.values())
        if not self._waiting or len(self._sent) >= limit:
            return []
        room = limit - len(self._sent)
        out = self._waiting[:room - 1] if len(self._waiting) > room else self._waiting
        rest = self._waiting[len(out):]
        if rest:
            out = out + [_digest(rest)]
        self._waiting = []
        self._sent.extend(now for _ in out)
        return out


def _local(at: float, cfg: StationConfig) -> str:
    from datetime import datetime
    return datetime.fromtimestamp(at, cfg.sites[0].tz).strftime("%Y-%m-%d %H:%M:%S")


def _notice(name: str, kind: str, since: float, now: float, grace: float) -> dict:
    zh, en, (means_zh, means_en) = WATCHED[name]
    minutes = (now - since) / 60
    if kind == "back":
        title = f"【恢复】{zh}已恢复运行（中断约 {minutes:.0f} 分钟）"
        message = f"{title}\n{CENTRE_NAME}\n----\nRECOVERED: {en} is running again (down about {minutes:.0f} min)."
        return {"title": title, "message": message, "type": "success", "watched": name, "kind": kind}
    head = "【提醒】" if kind == "reminder" else "【严重】"
    title = f"{head}{zh}停止运行：超过 {grace:.0f} 秒无心跳"
    message = "\n".join([
        title, f"影响：{means_zh}。", f"自 {minutes:.0f} 分钟前起无心跳。",
        "请立即检查监测中心服务器，并通知各站点加强本地值守（现场声光报警仍独立工作）。", CENTRE_NAME, "----",
        f"{'REMINDER: ' if kind == 'reminder' else ''}{en} is DOWN: no heartbeat for over {grace:.0f} s "
        f"(since {minutes:.0f} min ago); {means_en}. Check the centre's server now and have the sites watch "
        "locally (their local sirens still work on their own)."])
    return {"title": title, "message": message, "type": "failure", "watched": name, "kind": kind}


def _digest(notices: list[dict]) -> dict:
    lines = [n["title"] for n in notices]
    title = f"【汇总】看护进程 {len(notices)} 条通知"
    return {"title": title, "message": "\n".join([title, *lines, "----", f"{len(notices)} watcher notices"]),
            "type": "failure" if any(n["type"] == "failure" for n in notices) else "success", "kind": "digest"}


def run_watcher(cfg: StationConfig, db_path: str | Path, address: BrokerAddress | None, stop: threading.Event, *,
                send: Send = post_json, check_s: float = 1.0, instance: str = "main",
                metrics_port: int | None = None) -> Watcher:
    """Watch until ``stop`` is set; every notice goes to every backup URL (a failed one is logged and
    tried again with the next notice: the watcher never stops watching)."""
    watcher = Watcher(cfg, Path(db_path))
    urls = cfg.supervision.backup.urls
    if not urls:
        log.warning("看护进程未配置备用通道 / supervision.backup.urls is empty: the watcher can only log")
    beacon = Beacon("watcher", instance)
    probe = service_topic("watcher", instance, "probe")
    link = None
    if address is not None:
        def on_message(topic: str, body: bytes, _msg) -> None:
            if topic == probe:
                watcher.last_round_trip = watcher.clock()
                return
            try:
                msg = parse_service(topic, body)
            except ContractError:
                return
            if msg.service == "alerts" and msg.body is not None:
                watcher.engine_stopped_cleanly = msg.body.state == "offline" and msg.body.reason == "shutdown"

        def on_connect(lk: MqttLink) -> None:
            lk.subscribe(service_subscription(service="alerts"), 1)
            lk.subscribe(probe, 0)
            beacon.online(lk)
        link = MqttLink(address, f"stationwatch-watcher-{instance}", will=beacon.will(), on_connect=on_connect,
                        on_message=on_message)
        link.start(wait=None)
        watcher.link_up, watcher.link_since = False, watcher.clock()
    store = _beat_store(db_path)
    metrics = None
    if metrics_port is not None:  # the age of what it watches, and whether it is down
        def render() -> str:
            now = watcher.clock()
            ages = {name: max(0.0, now - watcher.last_alive(name, now)) for name in WATCHED}
            down = {name: float(w.down_since is not None) for name, w in watcher.watched.items()}
            return prometheus_text("watcher", {"up": 1.0}, {"beat_age_seconds": ages, "down": down}, label="watched")
        metrics = MetricsServer(render, port=metrics_port)
        log.info("watcher: metrics at http://127.0.0.1:%d/metrics", metrics.port)
    log.info("看护进程已启动 / watcher started: store %s, backup channels %d", db_path, len(urls))
    next_probe = 0.0
    while not stop.wait(check_s):
        if link is not None:
            up = link.connected.is_set()
            if up != watcher.link_up:
                watcher.link_up, watcher.link_since = up, watcher.clock()
            if up and time.monotonic() >= next_probe:
                link.client.publish(probe, payload(time.time()), qos=0)
                next_probe = time.monotonic() + cfg.supervision.beat_s
                beacon.beat(link, {})
        store(watcher.clock())
        for notice in watcher.check():
            log.warning("看护通知 / watcher notice: %s", notice["title"])
            for url in urls:
                try:
                    send(url, notice)
                except Exception as exc:  # noqa: BLE001 — a failed channel must not stop the watching
                    log.error("backup channel %s failed: %s", url.split("://", 1)[0], exc)
    if link is not None:
        beacon.shutdown(link)
        link.stop()
    if metrics is not None:
        metrics.close()
    return watcher


def _beat_store(db_path: str | Path) -> Callable[[float], None]:
    """The watcher's own heartbeat row, read by the engine (``watcher`` hop)."""
    def beat(at: float) -> None:
        try:
            with sqlite3.connect(db_path, timeout=2) as db:
                db.execute("INSERT INTO heartbeat (service, at, info) VALUES ('watcher', ?, '{}') ON CONFLICT(service)"
                           " DO UPDATE SET at=excluded.at", (at,))
        except sqlite3.Error as exc:
            log.debug("watcher heartbeat not written: %s", exc)
    return beat
