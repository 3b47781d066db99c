"""What the rules know between messages: :class:`Situation` wraps the rules' memory
(:mod:`.memory`, kept across restarts) with the config look-ups the rules need (night windows,
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
from .memory import Memory


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
    def drill(self) -> bool:  # (a model's __dict__: getattr of a field a model lacks costs pydantic ~3 µs)
        return bool(self.msg.body.__dict__.get("drill", False))

    @property
    def historical(self) -> bool:
        return bool(self.msg.body.__dict__.get("historical", False))


LAST_EVERY_S = 15.0  # a device's last value is written to the store at most this often (its state at once)


def latest(body: Any) -> dict[str, Any]:
    """What a device last said, as the duty board's site view shows it (namespace ``last``): a
    reading's value and quality, a detector's or door's state, a camera's heartbeat."""
    if isinstance(body, Reading):
        return {"value": body.value, "unit": body.unit, "quality": body.quality, "ts": body.ts}
    if isinstance(body, Heartbeat):
        return {"state": "online" if body.online else "offline", "ts": body.ts}
    return {"state": getattr(body, "state", None), "value": getattr(body, "value", None), "ts": body.ts}


def kind_of(body: Any) -> tuple:
    """The state, quality and unit :func:`latest` gives: written to the board at once when they change."""
    if isinstance(body, Reading):
        return None, body.quality, body.unit
    if isinstance(body, Heartbeat):
        return "online" if body.online else "offline", None, None
    return getattr(body, "state", None), None, None


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
        self.silence: Any = None  # alerts/liveness.py SilenceWatch, set by the engine
        self.clock_corrected = 0  # live messages whose rule time was corrected for a gateway clock that is off
        self._last_put: dict[str, float] = {}  # device → when its last value was last written to memory
        self._last_kind: dict[str, tuple] = {}  # device → the state, quality and unit then (kind_of)
        self._said: dict[str, tuple[str, Any]] = {}  # device → (gateway, its last body) since the last note_said
        self._places: dict[str, tuple[Any, Site, Room | None, str]] = {}  # device id → (device, site, room, kind)
        self._minutes: dict[tuple[str, int], datetime] = {}  # (site, Unix minute) → the site's local time then
        self._heating: dict[tuple[str, Any], bool] = {}  # (site, local date) → in the heating season
        self._night: tuple[str, str, dtime, dtime] | None = None  # the night window's settings, parsed

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
        message. One entry per gateway (``last``: gateway → {device: what it said}), not per device:
        a country's 128,000 devices written one row each were a third of the engine's time."""
        boards: dict[str, dict[str, Any]] = {}  # gateway → its entry, copied once it changes
        last_put, last_kind = self._last_put, self._last_kind
        for device_id, (gateway, body) in self._said.items():
            kind = kind_of(body)
            if last_kind.get(device_id) == kind and now - last_put.get(device_id, float("-inf")) < LAST_EVERY_S:
                continue  # the same state, quality and unit as last written, and written lately
            board = boards.get(gateway)
            if board is None:
                board = boards[gateway] = dict(self.mem.get("last", gateway) or {})
            board[device_id] = latest(body)
            last_put[device_id], last_kind[device_id] = now, kind
        for gateway, board in boards.items():
            self.mem.put("last", gateway, board)
        self._said.clear()

    def forget_said(self) -> None:
        """What was last written for each device is read from the memory again (a takeover: alerts/ownership.py)."""
        self._last_put.clear()
        self._last_kind.clear()

    def resume(self, now: float) -> None:
        """After a restart. Camera heartbeats are QoS 0, so the broker kept none while the engine
        was down: each camera gets a full heartbeat period from now. Sensor messages (QoS 1) were
        kept in the engine's session and arrive first, so their timers stand as stored."""
        self.start(now)
        gateways = {g.id for g in self.cfg.gateways}
        for key in [k for k in self.mem.space("last") if k not in gateways]:  # a device's own entry (before 2026-12)
            self.mem.pop("last", key)
        for cam in self.cfg.cameras:
            seen = self.mem.get("seen", cam.id)
            if seen is not None and seen < now:
                self.mem.put("seen", cam.id, now)

    def observe(self, msg: Message, device: Any, now: float) -> Observation:
        """Note the arrival and wrap the message for the rules."""
        self.start(now)
        if device is not None:
            self.mem.put("seen", device.id, now)
            self._said[device.id] = (device.gateway, msg.body)  # for the site view: note_said
            _, site, room, kind = self._place(device, msg.site)
            trusted = rule_time(self, msg, now)
            return Observation(msg, device, kind, site, room, msg.body.ts, now,
                               trusted=None if trusted == msg.body.ts else trusted)
        site = self.cfg.site(msg.site)
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

    def _place(self, device: Any, site_id: str) -> tuple[Any, Site, Room | None, str]:
        """Where a device is and what it is, looked up once per device (not per reading)."""
        place = self._places.get(device.id)
        if place is None or place[0] is not device or place[1].id != site_id:  # a config entry replaced: again
            site = self.cfg.site(site_id)
            kind = "camera" if isinstance(device, Camera) else device.kind
            place = self._places[device.id] = (device, site, site.room(device.room), kind)
        return place

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

    def calendar(self, question: str, ts: float, site: Site) -> bool:
        """``is_night`` or ``heating``, by name (a reading at rest asks them again: alerts/resting.py)."""
        return CALENDAR[question](self, ts, site)

    def is_night(self, ts: float, site: Site) -> bool:
        local = self._local_minute(ts, site).time()  # the window's ends are whole minutes (HH:MM)
        start, end = self._night_window()
        night = start <= local < end if start <= end else (local >= start or local < end)
        if self.mem.trace is not None:
            self.mem.trace.asked("is_night", ts, site.id, night)
        return night

    def season(self, site: Site) -> Season:
        """The heating season of the site's city: the first bureau up its chain with one set."""
        bureau = self._bureaus.get(site.bureau)
        while bureau is not None:
            if bureau.id in self.settings.heating_seasons:
                return self.settings.heating_seasons[bureau.id]
            bureau = self._bureaus.get(bureau.parent) if bureau.parent else None
        return self.settings.heating_season

    def _night_window(self) -> tuple[dtime, dtime]:
        s = self.settings
        if self._night is None or self._night[:2] != (s.night_start, s.night_end):
            self._night = (s.night_start, s.night_end, dtime.fromisoformat(s.night_start), dtime.fromisoformat(s.night_end))
        return self._night[2], self._night[3]

    def heating(self, ts: float, site: Site) -> bool:
        """Is ``ts`` (site local date) inside the site's heating season?"""
        key = (site.id, self._local_minute(ts, site).date())
        heating = self._heating.get(key)
        if heating is None:
            if len(self._heating) > 50_000:
                self._heating.clear()
            heating = self._heating[key] = self.season(site).contains(key[1])
        if self.mem.trace is not None:
            self.mem.trace.asked("heating", ts, site.id, heating)
        return heating

    def _local_minute(self, ts: float, site: Site) -> datetime:
        """The site's local time at the start of ``ts``'s minute, worked out once per site and minute
        (every time zone's offset is a whole number of minutes: a minute never spans two dates)."""
        key = (site.id, int(ts // 60))
        minute = self._minutes.get(key)
        if minute is None:
            if len(self._minutes) > 50_000:
                self._minutes.clear()
            minute = self._minutes[key] = datetime.fromtimestamp(key[1] * 60, site.tz)
        return minute

    def outdoor(self, site: Site) -> float | None:
        """The site's latest outdoor temperature, if any sensor reports one."""
        value = self.mem.get("outdoor", site.id)
        return None if value is None else value[1]


CALENDAR: dict[str, Callable[[Situation, float, Site], bool]] = {
    "is_night": Situation.is_night, "heating": Situation.heating}


def is_reading(obs: Observation) -> bool:
    return obs.msg.kind is MessageClass.READING
