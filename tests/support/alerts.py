"""Helpers the alert tests share: the example station's site and gateway, the times they run at,
messages encoded exactly as a gateway puts them on the wire (Wire), an engine clock moved by hand
(Clock), the example config with sections replaced (config_with), what an engine holds, and the
engine run as `stationwatch alerts` runs it, fed over the real broker (RunningEngine, send,
wait_subscribed; the ``publisher`` fixture is in conftest.py)."""
from __future__ import annotations

import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import yaml

from stationwatch.alerts.runner import run_engine
from stationwatch.alerts.store import Store
from stationwatch.core.config import parse_config
from stationwatch.core.contract import Event, Heartbeat, MessageClass, Reading, Status, encode, topic
from stationwatch.core.mqtt import MqttLink
from stationwatch.core.wire import batch_payload

from . import EXAMPLES, wait_for

SITE, GW = "sl-station", "gw-sl-main"
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 1, 15, 14, 0, tzinfo=SHANGHAI).timestamp()  # a winter afternoon, site local time
JULY = datetime(2025, 7, 15, 14, 0, tzinfo=SHANGHAI).timestamp()
HOLD = 60.0  # rules.resolve_hold_s default


class Wire:
    """Messages as a gateway sends them: (topic, payload bytes). ``historical``: as its spool replays
    them after an outage (old times are expected then; live, ingest quarantines them past
    ``limits.clock.behind_max_s``)."""

    def __init__(self, site: str = SITE, gateway: str = GW, historical: bool = False):
        self.site, self.gateway, self.seq, self.historical = site, gateway, 0, historical

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def event(self, device: str, state: str, ts: float = T0, drill: bool = False) -> tuple[str, bytes]:
        body = Event(v=1, ts=ts, seq=self._next(), state=state, drill=drill, historical=self.historical)
        return topic(self.site, self.gateway, MessageClass.EVENT, device), encode(body)

    def reading(self, device: str, value: float | None, ts: float = T0, quality: str = "ok") -> tuple[str, bytes]:
        body = Reading(v=1, ts=ts, seq=self._next(), value=value, unit="°C", quality=quality, historical=self.historical)
        return topic(self.site, self.gateway, MessageClass.READING, device), encode(body)

    def readings(self, *items: tuple[str, float | None], ts: float = T0, quality: str = "ok") -> tuple[str, bytes]:
        """One ``readings`` batch of (sensor, value) items, as a gateway with ``agent.batch_readings``
        sends a poll cycle; each item takes the next seq."""
        first = self.seq + 1
        self.seq += len(items)
        body = batch_payload(ts, first, [{"sensor": s, "ts": ts, "value": v, "unit": "°C", "quality": quality}
                                         for s, v in items])
        if self.historical:
            body = body.replace(b'"historical":false', b'"historical":true', 1)
        return topic(self.site, self.gateway, MessageClass.READINGS), body

    def heartbeat(self, camera: str, online: bool, ts: float = T0) -> tuple[str, bytes]:
        body = Heartbeat(v=1, ts=ts, seq=self._next(), online=online, historical=self.historical)
        return topic(self.site, self.gateway, MessageClass.HEARTBEAT, camera), encode(body)

    def status(self, state: str, reason: str | None = None, ts: float = T0) -> tuple[str, bytes]:
        return topic(self.site, self.gateway, MessageClass.STATUS), encode(Status(v=1, ts=ts, state=state, reason=reason))


class Clock:
    """An engine clock the test moves by hand."""

    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def at(self, t: float) -> float:
        self.t = t
        return t


def config_with(path=EXAMPLES / "city-station.yaml", **sections):
    """The example config with sections replaced (dict sections are merged one level deep)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return parse_config(data)


def active(engine, rule=None):
    """The alerts the engine holds open, of one rule if given."""
    return [a for a in engine.store.alerts() if rule is None or a.rule == rule]


def settle(engine, t):
    """Tick without the silence rules (every other device of the example is silent in these tests)."""
    engine.watching = False
    try:
        return engine.tick(t)
    finally:
        engine.watching = True


class RunningEngine:
    """run_engine in a thread, as `stationwatch alerts` runs it."""

    def __init__(self, cfg, address, db_path, client_id: str):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_engine, args=(cfg, address, db_path, self.stop),
                                       kwargs={"client_id": client_id, "tick_s": 0.1, "beat_s": 0.1}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "run_engine did not stop when asked"


def send(link: MqttLink, message: tuple[str, bytes], kind: MessageClass = MessageClass.EVENT) -> None:
    link.publish(*message, kind).wait_for_publish(5)


def wait_subscribed(store: Store, link: MqttLink, wire: Wire) -> None:
    """The retained birth reaches the engine once its subscription stands."""
    send(link, wire.status("online"), MessageClass.STATUS)
    wait_for(lambda: any(g["state"] == "online" for g in store.gateways()), 15, what="engine subscribed")


class Twins:
    """Two engines on one clock taking the same messages: ``rest`` as shipped and ``full``, the
    reference, changed by ``reference(engine)`` (a shortcut turned off). :meth:`same` requires the
    same memory, alerts, audit trail and notices of both."""

    def __init__(self, tmp_path, cfg, reference, t: float = T0):
        from stationwatch.alerts.engine import AlertEngine
        self.clock = Clock(t)
        self.rest = AlertEngine(cfg, tmp_path / "rest.db", clock=self.clock)
        self.full = AlertEngine(cfg, tmp_path / "full.db", clock=self.clock)
        reference(self.full)
        self.wire, self.skew, self.last = Wire(), 0.0, {}

    def send(self, message) -> None:
        for engine in (self.rest, self.full):
            engine.handle(*message)

    def reading(self, sensor: str, value, quality: str = "ok") -> None:
        self.last[sensor] = (value, quality)
        self.send(self.wire.reading(sensor, value, ts=self.clock.t + self.skew, quality=quality))

    def again(self) -> None:
        """Every sensor read so far says again what it said last, as one poll cycle's batch."""
        items = [(s, v) for s, (v, q) in sorted(self.last.items()) if q == "ok"]
        if items:
            self.send(self.wire.readings(*items, ts=self.clock.t + self.skew))

    def tick(self) -> None:
        for engine in (self.rest, self.full):
            engine.tick()

    def same(self) -> None:
        a, b = self.rest, self.full
        assert a.situation.mem._data == b.situation.mem._data
        assert a.store.load_memory() == b.store.load_memory()
        assert _everything(a) == _everything(b)
        assert a._open == b._open

    def close(self) -> None:
        self.rest.close()
        self.full.close()


def _everything(engine):
    with engine.store.tx() as db:
        alerts = [tuple(r) for r in db.execute("SELECT * FROM alerts ORDER BY id")]
        trail = [tuple(r) for r in db.execute("SELECT alert_id, action, note FROM audit ORDER BY id")]
        notices = [tuple(r) for r in db.execute("SELECT alert_id, kind, level FROM outbox ORDER BY id")]
    return alerts, trail, notices
