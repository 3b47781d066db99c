"""Notifications: every new alert (and every severity rise) goes to each contact in
``routing.notify`` through that contact's apprise channel URLs.

The pipeline per alert and contact is small: compose the notice (Chinese first, English below) →
try the contact's first channel, retrying with backoff → on failure fail over to the next channel.
Every attempt is recorded in the store's deliveries table. Sending happens in one worker thread,
so the MQTT loop that raises alerts is never blocked by a slow webhook.

Full escalation (ack deadlines, leader, bureau) and digesting bursts come later.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Protocol

from stationwatch.broker.config import Contact, StationConfig

from .store import SEVERITIES, Alert, Store

log = logging.getLogger(__name__)

ATTEMPTS = 3  # per channel, before failing over to the contact's next channel
BACKOFF_S = (1.0, 4.0)  # wait after the 1st, 2nd … failed attempt (the last value repeats)


@dataclass(frozen=True)
class Notice:
    title: str
    body: str
    severity: str


class Channel(Protocol):
    """One delivery attempt to one channel URL: ``(ok, error text)``."""

    def __call__(self, url: str, notice: Notice) -> tuple[bool, str | None]: ...


# apprise's notice types by severity (changes the colour/icon on channels that show one)
NOTIFY_TYPES = {"critical": "failure", "pre_alarm": "failure", "major": "warning", "warning": "warning"}
CHANGE_WORDS = {"new": ("新告警", "new alert"), "escalated": ("告警升级", "alert escalated")}


def apprise_channel(url: str, notice: Notice) -> tuple[bool, str | None]:
    """Send through apprise; the error text is what apprise logged about the failure."""
    import apprise

    sender = apprise.Apprise()
    if not sender.add(url):
        return False, "channel URL not understood by apprise / 通知地址无法识别"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = bool(sender.notify(body=notice.body, title=notice.title,
                                notify_type=NOTIFY_TYPES.get(notice.severity, "info")))
    lines = [line.split(" - ", 2)[-1] for line in captured.getvalue().splitlines() if line.strip()]
    return ok, None if ok else ("; ".join(lines)[:500] or "delivery failed")


def compose(cfg: StationConfig, alert: Alert, change: str = "new") -> Notice:
    """The text a person on duty gets: site, room, what, when (site local time), severity, id,
    and what to do — Chinese first, English below."""
    site = cfg.site(alert.site)
    room = site.room(alert.room) if site and alert.room else None
    tz = site.tz if site else None
    when = datetime.fromtimestamp(alert.first_at, tz).strftime("%Y-%m-%d %H:%M:%S")
    zone = getattr(tz, "key", "UTC")
    sev = SEVERITIES[alert.severity]
    change_zh, change_en = CHANGE_WORDS.get(change, CHANGE_WORDS["new"])
    drill_zh, drill_en = ("【演练，非真实告警】", "[DRILL — not a real alarm] ") if alert.drill else ("", "")
    site_name, room_name = (site.name if site else alert.site), (room.name if room else "—")
    title = f"{drill_zh}【{sev.zh}】{alert.title_zh}"
    body = "\n".join([
        f"{drill_zh}{change_zh}：{alert.title_zh}",
        f"站点：{site_name}",
        f"房间：{room_name}",
        f"时间：{when}（{zone}）",
        f"级别：{sev.zh}",
        f"告警编号：#{alert.id}",
        f"处置：请立即到场复核，在值班看板查看告警 #{alert.id} 并记录处置情况。",
        "",
        "----",
        f"{drill_en}{change_en.capitalize()}: {alert.title_en}",
        f"Site: {site_name} / Room: {room_name}",
        f"Time: {when} ({zone})",
        f"Severity: {sev.en}",
        f"Alert id: #{alert.id} — check on site, then record what was done on the duty board.",
    ])
    return Notice(title, body, alert.severity)


class Notifier:
    """Delivers notices in a worker thread. Call :meth:`start` with the store, then
    :meth:`submit` from any thread; :meth:`close` lets the queue drain."""

    def __init__(self, cfg: StationConfig, *, channel: Channel = apprise_channel, attempts: int = ATTEMPTS,
                 backoff_s: tuple[float, ...] = BACKOFF_S):
        self.cfg = cfg
        self.channel = channel
        self.attempts = attempts
        self.backoff_s = backoff_s
        contacts = {c.id: c for c in cfg.contacts}
        self.recipients: list[Contact] = [contacts[cid] for cid in cfg.routing.notify if cid in contacts]
        self._queue: queue.Queue[tuple[Alert, str] | None] = queue.Queue()
        self._stop = threading.Event()
        self._store: Store | None = None
        self._thread: threading.Thread | None = None

    def start(self, store: Store) -> "Notifier":
        self._store = store
        self._thread = threading.Thread(target=self._run, name="stationwatch-notify", daemon=True)
        self._thread.start()
        return self

    def submit(self, alert: Alert, change: str) -> None:
        """Queue a notice about ``alert`` (``change``: new or escalated). Never blocks."""
        self._queue.put((alert, change))

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        self._stop.set()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            alert, change = item
            notice = compose(self.cfg, alert, change)
            for contact in self.recipients:
                try:
                    self.deliver(contact, alert, notice)
                except Exception:  # a bug in one delivery must not stop the others
                    log.exception("delivery of alert %s to %s failed", alert.id, contact.id)

    def deliver(self, contact: Contact, alert: Alert, notice: Notice) -> bool:
        """Try each of the contact's channels in turn (failover); True when one took it."""
        for url in contact.channels:
            delivery = self._store.delivery_started(alert.id, contact.id, url, alert.severity)
            if self._try_channel(url, notice, lambda ok, err, last: self._store.delivery_attempt(
                    delivery, ok, err, final=last)):
                return True
            log.warning("alert %s: channel of %s failed after %d attempts; trying the next",
                        alert.id, contact.id, self.attempts)
        if not contact.channels:  # recorded, so the board and the monthly report show who was not told
            delivery = self._store.delivery_started(alert.id, contact.id, "(none)", alert.severity)
            self._store.delivery_attempt(delivery, False, "contact has no channel / 联系人未配置通知渠道", final=True)
        log.error("alert %s: no channel of contact %s took the notice", alert.id, contact.id)
        return False

    def _try_channel(self, url: str, notice: Notice, record: Callable[[bool, str | None, bool], None]) -> bool:
        for attempt in range(self.attempts):
            try:
                ok, error = self.channel(url, notice)
            except Exception as exc:  # noqa: BLE001 — a channel plugin's crash is a failed attempt
                ok, error = False, f"{type(exc).__name__}: {exc}"
            last = attempt == self.attempts - 1
            record(ok, error, last)
            if ok:
                return True
            if not last and self._stop.wait(self.backoff_s[min(attempt, len(self.backoff_s) - 1)]):
                return False
        return False
