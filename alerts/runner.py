"""The alert engine as a service: :class:`~.engine.AlertEngine` on the live MQTT stream.

The session is persistent (clean_start=False) and messages are acknowledged only after the batch
holding them is committed: what arrives while the engine is down, or what it had not committed when
it died, waits on the broker and is evaluated when it comes back. Silence rules wait until that
backlog has been read, so a restart does not mistake its own absence for silence.

Besides the gateways' tree the engine reads the services' heartbeats (``sw/svc/v1/+/+/beat``) and
its own broker probe, beats itself (in the store, read by ``/health`` and the watcher, and on MQTT,
retained with a will), publishes the patrol's commands, and serves ``/metrics`` when asked.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path

from stationwatch.core import collector
from stationwatch.core.config import StationConfig
from stationwatch.core.contract import MessageClass, service_subscription, service_topic, subscription
from stationwatch.core.heartbeat import Beacon
from stationwatch.core.metrics import MetricsServer, prometheus_text
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.wire import payload

from .claim import BEAT_S, EngineTaken, check_client_id, claim_store  # BEAT_S: the engine's heartbeat period
from .database import ERRORS, is_url, shown
from .dispatch import Notifier
from .engine import AlertEngine
from .history import AlertFeed, Sink, engine_stats
from .inbox import AckOrder, Delivered, Inbox
from .leases import RENEW_S, TAKEOVER_S, LeaseLost, Leases
from .partition import Partitions

log = logging.getLogger(__name__)

CLIENT_ID = "stationwatch-alerts"
TICK_S = 1.0  # time rules, deadlines and reminders are evaluated this often
BATCH_MAX = 500  # messages committed (and acknowledged) together
# observations a commit (a readings batch counts its items), what an alarm arriving meanwhile waits for:
# ~44 µs each for a country (bench_engine), so ~65 ms of CPU; 4,000 were 0.2-0.5 s on the shared 2 cores
WORK_MAX = 1_500
HANDOFF_S = 0.2  # after a commit that raised an alert, how long the engine lets the dispatcher claim its notices
KEEP_S = TAKEOVER_S + 10.0  # messages of sites another engine owns are kept this long, for a takeover
# What the engine judges: what gateways say. Not the commands to them (ingest's receipts, cmd/stored,
# go to every gateway heard from every second: ~200 a second for a country, each an urgent commit in
# the inbox ahead of the next alarm) nor their replies to the API's commands.
JUDGED = (MessageClass.STATUS, MessageClass.READING, MessageClass.READINGS, MessageClass.EVENT,
          MessageClass.HEARTBEAT, MessageClass.HEALTH, MessageClass.PATROL)


class Backlog:
    """The QoS 1 messages (events, alarms, status, health) of sites another engine owns, for the
    last :data:`KEEP_S`: when that engine dies, what it received but never committed is here, and
    the engine taking its sites over replays it (readings are QoS 0 and come again next poll)."""

    def __init__(self, keep_s: float = KEEP_S):
        self.keep_s = keep_s
        self._kept: dict[str, deque] = {}

    def add(self, site: str, topic: str, body: bytes) -> None:
        kept = self._kept.setdefault(site, deque())
        kept.append((time.monotonic(), topic, body))
        while kept and kept[0][0] < time.monotonic() - self.keep_s:
            kept.popleft()

    def take(self, sites: set[str]) -> list[tuple[str, bytes]]:
        since = time.monotonic() - self.keep_s
        return [(topic, body) for site in sorted(sites) for at, topic, body in self._kept.pop(site, ()) if at >= since]


def run_engine(cfg: StationConfig, address: BrokerAddress, db_path: str | Path, stop: threading.Event, *,
               client_id: str = CLIENT_ID, notifier: Notifier | None = None,
               tick_s: float = TICK_S, beat_s: float = BEAT_S, batch_max: int = BATCH_MAX,
               config_version: str | None = None, metrics_port: int | None = None,
               history: Sink | None = None) -> None:
    """Run the alert engine on the live MQTT stream until ``stop`` is set. Refuses to start
    (:class:`~.claim.EngineTaken`) when another engine holds the store or the client id. With
    ``history`` (an InfluxDB sink) the alert history and the engine's figures are fed to the charts
    by a thread of their own (:mod:`.history`), which the engine never waits for.

    On a PostgreSQL store (``db_path`` a ``postgresql://`` URL) several engines, each with its own
    client id, share the sites by leases (:mod:`.leases`): each judges the sites it owns and keeps
    the others' events for a takeover. On a SQLite store one engine holds the whole store."""
    if is_url(db_path):
        free = check_client_id(address, client_id)
        _run(cfg, address, db_path, stop, client_id, free, notifier, tick_s, beat_s, batch_max, config_version,
             metrics_port, history, partitioned=True)
        return
    claim = claim_store(db_path, client_id)
    try:
        free = check_client_id(address, client_id)
        _run(cfg, address, db_path, stop, client_id, free, notifier, tick_s, beat_s, batch_max, config_version,
             metrics_port, history)
    finally:
        claim.release()


def _run(cfg: StationConfig, address: BrokerAddress, db_path: str | Path, stop: threading.Event, client_id: str,
         free: bool, notifier: Notifier | None, tick_s: float, beat_s: float, batch_max: int,
         config_version: str | None, metrics_port: int | None, history: Sink | None,
         partitioned: bool = False) -> None:
    probe_topic = service_topic("alerts", client_id, "probe")
    with collector.paused():  # the engine's look-ups and the memory read back all live
        engine = AlertEngine(cfg, db_path, notifier=notifier if notifier is not None else Notifier(cfg),
                             config_version=config_version, probe_topic=probe_topic,
                             scope=frozenset() if partitioned else None, quarantine=_quarantine(db_path, client_id))
    collector.tune(paced=True)  # the loop below runs the collector between commits (collector.Pace)
    leases = Leases(engine.store, client_id, Partitions(cfg).all) if partitioned else None
    if engine.notifier is not None:
        engine.notifier.instance = client_id
    backlog = Backlog()
    if leases is not None:
        engine.store.guard = leases.fence  # no write commits once a lease it counted on is gone
        leases.on_lost = lambda held: engine.narrow(held)  # from any thread whose write was refused
        _take(engine, leases, backlog)
    feed = AlertFeed(cfg, db_path, history, instance=client_id, stats=engine_stats(engine)).start(stop) \
        if history is not None else None
    engine.watching = False
    beacon = Beacon("alerts", client_id)
    inbox, acks = Inbox(), AckOrder()
    pace = collector.Pace()

    def on_connect(link: MqttLink) -> None:
        for kind in JUDGED:
            link.subscribe(subscription(kind), qos=1)
        link.unsubscribe(subscription())  # the whole tree, as a session kept from an earlier version has it
        link.subscribe(service_subscription(), qos=1)
        link.subscribe(probe_topic, qos=0)
        beacon.online(link)

    link = MqttLink(address, client_id, clean_start=False, manual_ack=True, will=beacon.will(),
                    on_connect=on_connect,
                    on_message=lambda topic, body, msg: inbox.put(topic, body, msg.mid, msg.qos))
    log.info("alert engine: store %s, broker %s:%s%s", shown(db_path), address.host, address.port,
             f", partitioned by site, owns {sorted(leases.sites)}" if leases else "")
    refused: list[Exception] = []
    if free:
        link.start(wait=None)  # paho keeps retrying; /health shows the engine as not connected meanwhile
    else:  # the broker is away: the engine works without it, and connects once the client id is known free
        threading.Thread(target=_connect_when_free, args=(link, address, client_id, stop, refused),
                         name="alerts-claim", daemon=True).start()
    metrics = _metrics(engine, link, metrics_port)
    probe_every = cfg.supervision.beat_s
    next_tick = next_beat = next_probe = next_lease = 0.0
    subscribed_at: float | None = None
    try:
        while not stop.is_set():
            engine.pipeline.link(link.connected.is_set(), engine.clock())
            batch = inbox.take(max(0.0, min(next_tick, next_beat) - time.monotonic()), batch_max, WORK_MAX)
            if batch:
                mine = batch
                if leases is not None:
                    mine = [m for m in batch if m.site in leases.sites]
                    for m in batch:
                        if m.qos and m.site not in leases.sites:
                            backlog.add(m.site, m.topic, m.body)
                changed = _commit(engine, mine, stop, leases)
                acks.done(batch, link.ack)
                if changed and engine.notifier is not None:  # its notices are claimed before the next commit
                    engine.notifier.handoff(HANDOFF_S)
                pace.between(inbox.urgent_waiting())  # here, not inside the next alarm's commit
            if not engine.watching:  # the session's backlog comes right after connecting: read it first
                subscribed_at = subscribed_at or (time.monotonic() if link.subscribed.is_set() else None)
                if subscribed_at is not None and time.monotonic() - subscribed_at >= tick_s and inbox.empty():
                    engine.watching = True
                    log.info("alert engine: backlog read, silence rules on")
            if leases is not None and time.monotonic() >= next_lease:
                _take(engine, leases, backlog)
                next_lease = time.monotonic() + RENEW_S
            if time.monotonic() >= next_tick:
                _fenced(engine, leases, engine.tick)
                for topic_name, body in engine.take_outgoing():
                    link.publish(topic_name, body, MessageClass.CMD)
                pace.between(inbox.urgent_waiting())
                next_tick = time.monotonic() + tick_s
            if time.monotonic() >= next_probe and link.connected.is_set():
                link.client.publish(probe_topic, payload(time.time()), qos=0)  # back through the broker
                next_probe = time.monotonic() + probe_every
            if time.monotonic() >= next_beat:
                _fenced(engine, leases, lambda: engine.beat(connected=link.connected.is_set(), watching=engine.watching,
                                                            collector=pace.figures(),
                                                            **({"sites": sorted(engine.scope)} if leases else {})))
                beacon.beat(link, {"connected": True, "watching": engine.watching})
                next_beat = time.monotonic() + beat_s
    finally:
        beacon.shutdown(link)
        link.stop()
        if leases is not None:
            try:
                leases.release()  # a clean stop: the others take the sites at their next beat
            except ERRORS as exc:
                log.warning("leases not released (%s); they run out in %.0f s", exc, leases.lease_s)
        if metrics is not None:
            metrics.close()
        if feed is not None:
            feed.join()
        engine.close()
        log.info("alert engine stopped: %s", asdict(engine.stats))
    if refused:
        raise refused[0]


def _connect_when_free(link: MqttLink, address: BrokerAddress, client_id: str, stop: threading.Event,
                       refused: list[Exception]) -> None:
    """Ask again until the broker answers; then connect, or stop the engine if the id is taken."""
    log.warning("alert engine: broker %s:%s not reachable; connecting once client id %r is known free",
                address.host, address.port, client_id)
    while not stop.is_set():
        try:
            if check_client_id(address, client_id):
                link.start(wait=None)
                return
        except EngineTaken as exc:
            log.error("%s", exc)
            refused.append(exc)
            stop.set()
            return
        stop.wait(1.0)


def _metrics(engine: AlertEngine, link: MqttLink, port: int | None) -> MetricsServer | None:
    """``/metrics``: the engine's counters and the age of every hop's last heartbeat."""
    if port is None:
        return None

    def render() -> str:
        now = engine.clock()
        stats = {k: float(v) for k, v in asdict(engine.stats).items() if k != "started"}
        stats["connected"] = float(link.connected.is_set())
        hops = {hop: max(0.0, now - at) for hop, at in engine.situation.mem.space("hop").items()}
        return prometheus_text("alerts", {f"{k}_total" if k not in ("connected",) else k: v for k, v in stats.items()},
                               {"hop_last_beat_age_seconds": hops}, label="hop")
    server = MetricsServer(render, port=port)
    log.info("alert engine: metrics at http://127.0.0.1:%d/metrics", server.port)
    return server


def _quarantine(db_path, client_id: str):
    """A PostgreSQL store's engines each keep refused messages in a file of their own (working directory)."""
    if not is_url(db_path):
        return None
    from stationwatch.core.quarantine import Quarantine
    return Quarantine(Path(f"{client_id}.quarantine.db"), "alerts")


def _take(engine: AlertEngine, leases: Leases, backlog: Backlog) -> None:
    """Renew the leases; sites gained are read from the store and their kept messages replayed."""
    try:
        change = leases.beat()
    except ERRORS as exc:
        log.error("leases not renewed (%s); they run out unless the store answers in time", exc)
        return
    if change.gained or change.lost:
        engine.own(leases.sites, change.gained)
    else:
        _fenced(engine, leases, engine.requeue_orphans)  # a claimer may die after the takeover
    if change.gained:
        _fenced(engine, leases, lambda: engine.replay(backlog.take(change.gained)))


def _fenced(engine: AlertEngine, leases: Leases | None, work) -> None:
    """Do ``work``; a lease found lost drops its sites (the store refused the write: fencing). On a
    PostgreSQL store a lost connection is retried at the next round (it reconnects), not fatal."""
    try:
        work()
    except LeaseLost as exc:
        log.error("%s", exc)
        engine.own(leases.sites)
    except ERRORS as exc:
        if leases is None:  # SQLite: as before, an unwritable store stops the engine
            raise
        log.error("alert store unavailable (%s); retrying", str(exc)[:200])


def _commit(engine: AlertEngine, batch: list[Delivered], stop: threading.Event, leases: Leases | None = None) -> list:
    """Commit a batch, retrying while the store is busy or unwritable (nothing is acknowledged before);
    returns the alerts it changed. A lease lost on the way: the messages of sites still owned are
    committed, the others dropped (the new owner has them too)."""
    delay = 0.2
    while True:
        try:
            return engine.handle_batch([(m.topic, m.body) for m in batch])
        except LeaseLost as exc:
            log.error("%s", exc)
            engine.own(leases.sites)
            batch = [m for m in batch if m.site in leases.sites]
        except ERRORS as exc:
            log.error("alert store write failed (%s); retrying in %.1f s", exc, delay)
            if stop.wait(delay):
                raise
            delay = min(delay * 2, 5.0)
