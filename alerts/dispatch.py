"""The dispatcher: reads the durable outbox and delivers — rate limit → digest → send → retry with
backoff → fail over to the contact's next channel → a level nobody could be told is escalated.

One loop thread claims due rows (most urgent first) and hands the sends to a small pool, so a
channel that times out never holds up another; every attempt is recorded in ``deliveries``.
Chat robots accept about 20 messages a minute (``routing.rate_per_minute`` by URL scheme): when
more are due for one channel than it has room for, the rest go as one digest.

Time here is wall-clock time (retries, rate windows), whatever clock the engine runs its rules on.

>>> notifier = Notifier(cfg).start(store, on_undeliverable=escalator.undeliverable)  # doctest: +SKIP
>>> notifier.wake()                                                                 # doctest: +SKIP
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from stationwatch.core.config import StationConfig

from . import outbox
from .database import ERRORS
from .channels import Channel, Outcome, channel_for, redact
from .notify import Notice, compose, compose_digest
from .store import DISPATCHER, Alert, AlertError, Store

log = logging.getLogger(__name__)

WINDOW_S = 60.0
NO_CHANNEL = "(none)"
MOOT_UNLESS_FIRING = {"reminder", "escalation", "undeliverable"}


class RateLimiter:
    """Messages per minute per channel URL (in memory: after a restart a burst may briefly exceed it,
    which the robot answers with an error the retry handles)."""

    def __init__(self, per_minute: dict[str, int]):
        self.per_minute = per_minute
        self._sent: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def limit(self, url: str) -> int | None:
        return self.per_minute.get(url.split("://", 1)[0].lower())

    def room(self, url: str, now: float) -> tuple[int | None, float]:
        """(messages allowed now — None: no limit, when the next one frees up)."""
        limit = self.limit(url)
        if limit is None:
            return None, now
        with self._lock:
            sent = self._sent[url]
            while sent and sent[0] <= now - WINDOW_S:
                sent.popleft()
            return limit - len(sent), (sent[0] + WINDOW_S if sent else now)

    def take(self, url: str, now: float) -> None:
        with self._lock:
            self._sent[url].append(now)


class Notifier:
    """Delivers the outbox. ``start(store)``, then :meth:`wake` after each commit that queued notices."""

    def __init__(self, cfg: StationConfig, *, channel: Channel | None = None, attempts: int | None = None,
                 backoff_s: tuple[float, ...] | None = None, clock: Callable[[], float] = time.time,
                 workers: int = 8, poll_s: float = 1.0):
        self.cfg = cfg
        self.channel = channel  # None: by URL scheme (channels.CHANNELS, else apprise)
        self.attempts = attempts or cfg.routing.attempts
        self.backoff_s = tuple(backoff_s or cfg.routing.backoff_s)
        self.clock = clock
        self.poll_s = poll_s
        self.contacts = {c.id: c for c in cfg.contacts}
        self.limiter = RateLimiter(cfg.routing.rate_per_minute)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="stationwatch-send")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._store: Store | None = None
        self._thread: threading.Thread | None = None
        self._undeliverable: Callable[[int, int], None] = lambda alert_id, level: None
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._round_done = threading.Condition()  # notified after every claiming round (handoff)
        self._rounds, self._claiming = 0, False
        self.sites: frozenset[str] | None = None  # an engine's partition: notices about these sites only
        self.instance: str | None = None  # the engine whose dispatcher this is (outbox.claimed_by)

    # ---- life cycle
    def start(self, store: Store, on_undeliverable: Callable[[int, int], None] | None = None) -> "Notifier":
        self._store = store
        if on_undeliverable is not None:
            self._undeliverable = on_undeliverable
        with store.tx() as db:
            again = outbox.requeue_interrupted(db, self.sites)
        if again:
            log.warning("outbox: %d notice(s) cut off by a crash are queued again", again)
        self._thread = threading.Thread(target=self._run, name="stationwatch-dispatch", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def handoff(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until a round of claiming has run since this call: the caller
        (the engine, after a commit that raised an alert) lets the notices go before its next commit
        takes the store. False if no round ran in time."""
        with self._round_done:
            target = self._rounds + (2 if self._claiming else 1)  # a round already claiming may predate the commit
            self._wake.set()
            return self._round_done.wait_for(lambda: self._rounds >= target or self._stop.is_set(), timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def pending(self) -> int:
        rows = self._store.query("SELECT COUNT(*) n FROM outbox WHERE state IN ('queued', 'sending')")
        return rows[0]["n"]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._round_done:
                    self._claiming = True
                try:
                    wait = self.dispatch_once()
                finally:
                    with self._round_done:
                        self._claiming = False
                        self._rounds += 1
                        self._round_done.notify_all()
                self._store.beat(DISPATCHER, {"busy": self._busy})  # the watcher's sign of life
            except (*ERRORS, AlertError) as exc:  # AlertError: a lease lost (leases.py), the next round knows
                log.warning("outbox not dispatched (%s); retrying", str(exc)[:200])
                wait = self.poll_s
            self._wake.wait(wait)
            self._wake.clear()

    # ---- one round
    def dispatch_once(self) -> float:
        """Claim what is due and hand it to the senders. Returns how long to sleep at most."""
        now = self.clock()
        exhausted: list[tuple[int, int]] = []
        with self._store.tx() as db:
            rows = [r for r in outbox.claim(db, now, sites=self.sites, by=self.instance) if not self._moot(db, r)]
            by_url: dict[str, list[Any]] = defaultdict(list)
            for row in rows:
                by_url[self._url(row)].append(row)
            for url, group in by_url.items():
                if url == NO_CHANNEL:
                    exhausted += self._record(db, group, url, Outcome(False, False, "contact has no channel / "
                                                                      "联系人未配置通知渠道"), now, final=True)
                    continue
                room, free_at = self.limiter.room(url, now)
                if room is not None and room <= 0:
                    outbox.release(db, [r["id"] for r in group], free_at)
                    continue
                for batch in self._batches(group, room):
                    self.limiter.take(url, now)
                    self._submit(db, url, batch)
            due = outbox.next_due(db)
        for alert_id, level in exhausted:
            self._undeliverable(alert_id, level)
        return self.poll_s if due is None else max(0.0, min(self.poll_s, due - self.clock()))

    @staticmethod
    def _moot(db, row: Any) -> bool:
        """A reminder or escalation notice about an alert no longer firing is not sent (cancelled)."""
        if row["kind"] not in MOOT_UNLESS_FIRING:
            return False
        state = db.execute("SELECT state FROM alerts WHERE id=?", (row["alert_id"],)).fetchone()["state"]
        if state == "firing":
            return False
        db.execute("UPDATE outbox SET state='cancelled', last_error=? WHERE id=?", (f"alert {state}", row["id"]))
        return True

    def _url(self, row: Any) -> str:
        contact = self.contacts.get(row["contact"])
        channels = contact.channels if contact else []
        return channels[row["channel_index"]] if row["channel_index"] < len(channels) else NO_CHANNEL

    @staticmethod
    def _batches(group: list[Any], room: int | None) -> list[list[Any]]:
        """One message per row while the channel has room; the rest as one digest."""
        if room is None or len(group) <= room:
            return [[row] for row in group]
        singles = max(0, room - 1)
        return [[row] for row in group[:singles]] + [group[singles:]]

    def _submit(self, db, url: str, batch: list[Any]) -> None:
        alerts = {r["alert_id"]: Alert.from_row(db.execute("SELECT * FROM alerts WHERE id=?", (r["alert_id"],)).fetchone())
                  for r in batch}
        if len(batch) == 1:
            row = batch[0]
            # a notice to a level of the chain carries the level's name; others a person's note
            level_name, note = (row["note"], "") if row["level"] is not None else ("", row["note"])
            notice = compose(self.cfg, alerts[row["alert_id"]], row["kind"], level_name, note)
        else:
            notice = compose_digest(self.cfg, [(alerts[r["alert_id"]], r["kind"]) for r in batch])
        with self._busy_lock:
            self._busy += 1
        self._pool.submit(self._send, url, notice, batch)

    def _send(self, url: str, notice: Notice, batch: list[Any]) -> None:
        try:
            channel = self.channel or channel_for(url)
            try:
                outcome = channel.send(url, notice)
            except Exception as exc:  # noqa: BLE001 — a channel plugin's crash is a failed attempt
                outcome = Outcome(False, True, f"{type(exc).__name__}: {exc}")
            now = self.clock()
            # not fenced (leases.py): what this dispatcher sent is recorded, even of a site just handed over
            with self._store.tx(fenced=False) as db:
                last = self._record(db, batch, url, outcome, now)
            for alert_id, level in last:
                self._undeliverable(alert_id, level)
        except Exception:  # a bug here must not lose the notice: it stays 'sending' until restart
            log.exception("delivery to %s failed unexpectedly", redact(url))
        finally:
            with self._busy_lock:
                self._busy -= 1
            self._wake.set()

    def _record(self, db, batch: list[Any], url: str, outcome: Outcome, now: float,
                final: bool = False) -> list[tuple[int, int]]:
        """Record one attempt for each row; returns (alert, level) of rows that ran out of channels."""
        shown = redact(url) if url != NO_CHANNEL else url
        exhausted: list[tuple[int, int]] = []
        for row in batch:
            delivery = outbox.delivery_row(db, row, shown, now)
            attempts = row["attempts"] + 1
            if outcome.ok:
                db.execute("UPDATE outbox SET state='sent', sent_at=?, attempts=? WHERE id=?", (now, attempts, row["id"]))
                db.execute("UPDATE deliveries SET state='sent', attempts=attempts+1, at=?, digest=? WHERE id=?",
                           (now, len(batch) if len(batch) > 1 else 0, delivery))
                continue
            retry = outcome.retry and not final and attempts < self.attempts
            db.execute("UPDATE deliveries SET state=?, attempts=attempts+1, last_error=?, at=? WHERE id=?",
                       ("pending" if retry else "failed", (outcome.error or "delivery failed")[:500], now, delivery))
            if retry:
                wait = self.backoff_s[min(attempts - 1, len(self.backoff_s) - 1)]
                db.execute("UPDATE outbox SET state='queued', attempts=?, next_at=?, last_error=? WHERE id=?",
                           (attempts, now + wait, outcome.error, row["id"]))
            elif url != NO_CHANNEL and row["channel_index"] + 1 < len(self.contacts[row["contact"]].channels):
                log.warning("alert %s: channel %s of %s failed (%s); trying the next channel", row["alert_id"],
                            shown, row["contact"], outcome.error)
                db.execute("UPDATE outbox SET state='queued', channel_index=channel_index+1, attempts=0, next_at=0,"
                           " last_error=? WHERE id=?", (outcome.error, row["id"]))
            else:
                log.error("alert %s: no channel of contact %s took the notice (%s)", row["alert_id"], row["contact"],
                          outcome.error)
                db.execute("UPDATE outbox SET state='failed', attempts=?, last_error=? WHERE id=?",
                           (attempts, outcome.error, row["id"]))
                if row["level"] is not None:
                    exhausted.append((row["alert_id"], row["level"]))
        return exhausted

    def idle(self) -> bool:
        """Nothing due and nothing being sent (for tests and orderly shutdown)."""
        with self._busy_lock:
            busy = self._busy
        now = self.clock()
        due = self._store.query("SELECT COUNT(*) n FROM outbox WHERE state='sending' OR (state='queued' AND"
                                " next_at<=?)", (now,))[0]["n"]
        return busy == 0 and due == 0
