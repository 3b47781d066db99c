"""What the rules know between messages, and the memory that keeps it across restarts.

:class:`Memory` is a set of small JSON namespaces (``seen``: device → engine time last heard;
``zone``: detectors in alarm per fire zone; ``since``: when a band condition began; ``door``:
when an exit was opened; ``misses``: failed camera probes …). Every change is marked dirty; the
engine writes the dirty entries in the same transaction as the alerts they led to, so after a
restart — even a SIGKILL — the timers and counts go on where they were. One exception, by design:
``seen`` changes with every message (a country's 12,800 readings a second, ~30 % of the engine's
time as store writes), so a device's stored ``seen`` is written again only once it is
:data:`SEEN_LAG_S` (30 s) behind the one kept here. After a restart a device silent since then counts as
silent at most that much early; the duty board's "last heard" lags as much.

:class:`Situation` wraps the memory with the config look-ups the rules need (night windows,
heating seasons, a gateway's devices) and turns each accepted message into an :class:`Observation`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import time as dtime
from typing import Any, Callable, Iterator

from stationwatch.core.config import Camera, Room, Site, StationConfig
from stationwatch.core.contract import Heartbeat, Message, MessageClass, Reading
from stationwatch.core.policy import RuleSettings, Season

from .clock import rule_time


SEEN_LAG_S = 30.0  # a stored `seen` may lag the engine's by this much (silence limits are minutes)
LAZY = {"seen": SEEN_LAG_S}  # namespace → how far a stored number may lag the one kept here


class Memory:
    """Namespaced key → JSON value, with dirty tracking.

    >>> m = Memory({"seen": {"smk-1": 10.0}})
    >>> m.put("seen", "smk-2", 12.0); m.get("seen", "smk-1"), m.dirty()
    (10.0, {('seen', 'smk-2'): 12.0})
    """

    def __init__(self, data: dict[str, dict[str, Any]] | None = None):
        self._data: dict[str, dict[str, Any]] = {ns: dict(v) for ns, v in (data or {}).items()}
        self._dirty: dict[tuple[str, str], Any] = {}
        self._stored: dict[tuple[str, str], float] = {}  # a lazy entry's value as last marked to be written

    def get(self, ns: str, key: str, default: Any = None) -> Any:
        return self._data.get(ns, {}).get(key, default)

    def put(self, ns: str, key: str, value: Any) -> None:
        space = self._data.setdefault(ns, {})
        if space.get(key) != value:
            space[key] = value
            lag = LAZY.get(ns)
            if lag is not None and type(value) is float:
                before = self._stored.get((ns, key))
                if before is not None and abs(value - before) < lag:
                    return  # stored close enough; written with a later change
                self._stored[(ns, key)] = value
            self._dirty[(ns, key)] = value

    def pop(self, ns: str, key: str) -> Any:
        value = self._data.get(ns, {}).pop(key, None)
        if value is not None:
            self._dirty[(ns, key)] = None
        return value

    def space(self, ns: str) -> dict[str, Any]:
        """The namespace's entries (read-only use: write with put/pop)."""
        return self._data.get(ns, {})

    def adopt(self, stored: dict[str, dict[str, Any]], belongs: Callable[[str, str], bool]) -> None:
        """Take the entries for which ``belongs(ns, key)`` from ``stored`` (the store's), forgetting
        what was known of them here: an engine taking over a site goes on from its last owner's memory."""
        for ns in {*stored, *self._data}:
            space = self._data.setdefault(ns, {})
            for key in [k for k in space if belongs(ns, k)]:
                del space[key]
            space.update({k: v for k, v in stored.get(ns, {}).items() if belongs(ns, k)})
        self._dirty = {k: v for k, v in self._dirty.items() if not belongs(*k)}

    def dirty(self) -> dict[tuple[str, str], Any]:
        return dict(self._dirty)

    def clean(self) -> None:
        self._dirty.clear()


@dataclass(frozen=True)
class Observation:
    """One accepted message with the configuration it refers to."""
    msg: Message
    device: Any  # a sensor config, a Camera, or None for gateway status
    kind: str  # the sensor kind, "camera" or "gateway"
    site: Site
    room: Room | None
    ts: float  # the message's own time (gateway clock)
    received: float  # the engine's clock at arrival
    news: bool = True  # False: a retained status delivered again (after a reconnect)
    trusted: float | None = None  # the time calendar rules go by when it is not ``ts`` (alerts/clock.py)

    @property
    def trusted_ts(self) -> float:
        """The time the night window and the heating season are judged by: the gateway's own time,
        or, when its clock is known to be off, that time corrected (alerts/clock.py)."""
        return self.ts if self.trusted is None else self.trusted

    @property
    def body(self) -> Any:
        return self.msg.body

    @property
    def drill(self) -> bool:
        return bool(getattr(self.msg.body, "drill", False))

    @property
    def historical(self) -> bool:
        return bool(getattr(self.msg.body, "historical", False))


LAST_EVERY_S = 15.0  # a device's last value is written to the store at most this often (its state at once)


def latest(body: Any) -> dict[str, Any]:
    """What a device last said, as the duty board's site view shows it (namespace ``last``): a
    reading's value and quality, a detector's or door's state, a camera's heartbeat."""
    if isinstance(body, Reading):
        return {"value": body.value, "unit": body.unit, "quality": body.quality, "ts": body.ts}
    if isinstance(body, Heartbeat):
        return {"state": "online" if body.online else "offline", "ts": body.ts}
    return {"state": getattr(body, "state", None), "value": getattr(body, "value", None), "ts": body.ts}


class Situation:
    """The config look-ups and the memory the rules share."""

    def __init__(self, cfg: StationConfig, memory: Memory | None = None):
        self.cfg = cfg
        self.mem = memory or Memory()
        self.devices = {d.id: d for d in [*cfg.sensors, *cfg.cameras]}
        self._by_gateway: dict[str, list[Any]] = {}
        self._thermometers: dict[tuple[str, str], set[str]] = {}  # (site, room) → its temperature sensors
        for d in self.devices.values():
            self._by_gateway.setdefault(d.gateway, []).append(d)
            if getattr(d, "kind", "") == "temperature" and (gw := cfg.gateway(d.gateway)) is not None:
                self._thermometers.setdefault((gw.site, d.room), set()).add(d.id)
        self._bureaus = {b.id: b for b in cfg.bureaus}
        self.pipeline: Any = None  # alerts/supervision.py Pipeline, set by the engine
        self.clock_corrected = 0  # live messages whose rule time was corrected for a gateway clock that is off
        self._last_put: dict[str, float] = {}  # device → when its last value was last written to memory
        self._said: dict[str, Any] = {}  # device → its last message body since the last note_said

    @property
    def settings(self) -> RuleSettings:
        return self.cfg.rules

    @property
    def started(self) -> float | None:
        return self.mem.get("engine", "started")

    def start(self, now: float) -> None:
        if self.started is None:
            self.mem.put("engine", "started", now)

    def note_said(self, now: float) -> None:
        """Before the memory is saved (once a batch): keep what each device said last for the duty
        board's site view — a new state or quality at once, a new value at most every
        :data:`LAST_EVERY_S`. Done per batch, not per message: the engine's hot path only notes the
        message (a store write per reading slows the engine under a flood of readings)."""
        for device_id, body in self._said.items():
            said, before = latest(body), self.mem.get("last", device_id)
            same_kind = before is not None and all(before.get(k) == said.get(k) for k in ("state", "quality", "unit"))
            if not same_kind or now - self._last_put.get(device_id, float("-inf")) >= LAST_EVERY_S:
                self.mem.put("last", device_id, said)
                self._last_put[device_id] = now
        self._said.clear()

    def resume(self, now: float) -> None:
        """After a restart. Camera heartbeats are QoS 0, so the broker kept none while the engine
        was down: each camera gets a full heartbeat period from now. Sensor messages (QoS 1) were
        kept in the engine's session and arrive first, so their timers stand as stored."""
        self.start(now)
        for cam in self.cfg.cameras:
            seen = self.mem.get("seen", cam.id)
            if seen is not None and seen < now:
                self.mem.put("seen", cam.id, now)

    def observe(self, msg: Message, device: Any, now: float) -> Observation:
        """Note the arrival and wrap the message for the rules."""
        self.start(now)
        site = self.cfg.site(msg.site)
        if device is not None:
            self.mem.put("seen", device.id, now)
            self._said[device.id] = msg.body  # for the site view: note_said
            kind = "camera" if isinstance(device, Camera) else device.kind
            trusted = rule_time(self, msg, now)
            return Observation(msg, device, kind, site, site.room(device.room), msg.body.ts, now,
                               trusted=None if trusted == msg.body.ts else trusted)
        status = [msg.body.state, msg.body.ts]  # gateway status
        session, last_session = msg.body.session, self.mem.get("session", msg.gateway)
        if session is not None and last_session is not None and session < last_session:
            return Observation(msg, None, "gateway", site, None, msg.body.ts, now, news=False)  # a late will
        if session is not None:
            self.mem.put("session", msg.gateway, session)
        if msg.body.config_version is not None:
            self.mem.put("gw_version", msg.gateway, msg.body.config_version)
        news = self.mem.get("gateway", msg.gateway) != status
        if news:
            self.mem.put("gateway", msg.gateway, status)
            if msg.body.state == "online":  # its devices count as heard from when it comes online
                for d in self.devices_of(msg.gateway):
                    self.mem.put("seen", d.id, max(self.mem.get("seen", d.id, now), now))
                    self.mem.pop("silent", d.id)
        return Observation(msg, None, "gateway", site, None, msg.body.ts, now, news)

    def heard(self, gateway: str, now: float | None = None) -> float | None:
        """When the engine last heard anything from ``gateway``; with ``now``, note that it just did."""
        if now is not None:
            self.mem.put("gw_seen", gateway, now)
        return self.mem.get("gw_seen", gateway)

    def last_seen(self, device_id: str) -> float | None:
        return self.mem.get("seen", device_id, self.started)

    def thermometers(self, site: str, room: str) -> set[str]:
        """The temperature sensors of one room (an index: a national config has 128,000 devices)."""
        return self._thermometers.get((site, room), set())

    def devices_of(self, gateway: str) -> Iterator[Any]:
        yield from self._by_gateway.get(gateway, ())

    def gateway_down(self, gateway: str) -> bool:
        """A gateway whose last word was a will (or a shutdown), or that was found lost (silent since
        the broker came back): its devices' silence is its own."""
        state = self.mem.get("gateway", gateway)
        return bool(state) and state[0] == "offline" or self.mem.get("lost", gateway) is not None

    def is_night(self, ts: float, site: Site) -> bool:
        local = datetime.fromtimestamp(ts, site.tz).time()
        start, end = (dtime.fromisoformat(t) for t in (self.settings.night_start, self.settings.night_end))
        return start <= local < end if start <= end else (local >= start or local < end)

    def season(self, site: Site) -> Season:
        """The heating season of the site's city: the first bureau up its chain with one set."""
        bureau = self._bureaus.get(site.bureau)
        while bureau is not None:
            if bureau.id in self.settings.heating_seasons:
                return self.settings.heating_seasons[bureau.id]
            bureau = self._bureaus.get(bureau.parent) if bureau.parent else None
        return self.settings.heating_season

    def heating(self, ts: float, site: Site) -> bool:
        """Is ``ts`` (site local date) inside the site's heating season?"""
        return self.season(site).contains(datetime.fromtimestamp(ts, site.tz).date())

    def outdoor(self, site: Site) -> float | None:
        """The site's latest outdoor temperature, if any sensor reports one."""
        value = self.mem.get("outdoor", site.id)
        return None if value is None else value[1]


def is_reading(obs: Observation) -> bool:
    return obs.msg.kind is MessageClass.READING
