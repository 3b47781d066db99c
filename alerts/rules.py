"""The alert rules, as a table.

Each :class:`Rule` row names the messages it watches — ``(message class, device kind)`` pairs —
and a small ``check`` function that turns one :class:`Observation` into verdicts: :class:`Raised`
(the condition holds; the store dedups repeats) or :class:`Clear` (it no longer holds). Rules with
a time condition (a silent sensor or camera) also have a ``tick`` function. The state the rules
need — detectors in alarm per fire zone, camera misses, cold-since times — lives in one
:class:`Situation`. Time-of-day and for-duration rules use the message's own time (gateway
clock); silence rules use the engine's clock, since a silent device sends no time at all.

Adding a rule = one function + one row in :data:`RULES`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, time as dtime
from typing import Any, Callable, Iterable, Iterator

from stationwatch.broker.config import Camera, Room, RuleSettings, Site, StationConfig
from stationwatch.broker.contract import Kind, Message
from stationwatch.sensors.kinds import KINDS

from .store import Raised

log = logging.getLogger(__name__)

# Settings not (yet) in RuleSettings; see the report asking for them in config.py.
COLD_FOR_S = 1800.0  # a sleeping room below sleeping_room_min_c this long → warning
COLD_CRITICAL_FOR_S = 300.0  # any room below any_room_min_c this long → critical (one bad reading is not enough)
HOT_FOR_S = 1800.0  # a sleeping room above summer_max_c this long → warning
HEAT_HYSTERESIS_C = 2.0  # a heat detector is back to normal 2 °C below its threshold
STALE_INTERVALS = 2.0  # a sensor is stale after max(sensor_stale_s, this × its own interval)


@dataclass(frozen=True)
class Clear:
    """The condition of ``(rule, subject)`` no longer holds."""
    rule: str
    subject: str
    at: float
    note: str = ""


Verdict = Raised | Clear


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

    @property
    def body(self) -> Any:
        return self.msg.body

    @property
    def drill(self) -> bool:
        return bool(getattr(self.msg.body, "drill", False))


@dataclass
class Situation:
    """What the rules remember between messages."""
    cfg: StationConfig
    started: float | None = None  # engine clock of the first message or tick
    last_seen: dict[str, float] = field(default_factory=dict)  # device → engine clock
    gateway_state: dict[str, str] = field(default_factory=dict)  # gateway → online/offline
    zone_alarms: dict[tuple[str, str, bool], dict[str, float]] = field(default_factory=dict)
    camera_misses: dict[str, int] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)  # devices already reported stale or silent
    since: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (rule, severity, sensor) → ts

    @property
    def settings(self) -> RuleSettings:
        return self.cfg.rules

    def start(self, now: float) -> None:
        if self.started is None:
            self.started = now

    def observe(self, msg: Message, device: Any, now: float) -> Observation:
        """Note the arrival and wrap the message for the rules."""
        self.start(now)
        site = self.cfg.site(msg.site)
        if device is None:  # gateway status: its devices count as heard from when it comes online
            kind, room = "gateway", None
            if getattr(msg.body, "state", None) == "online":
                for d in self.devices_of(msg.gateway):
                    self.last_seen[d.id] = max(self.last_seen.get(d.id, now), now)
                    self.silent.discard(d.id)
            self.gateway_state[msg.gateway] = getattr(msg.body, "state", "online")
        else:
            kind = "camera" if isinstance(device, Camera) else device.kind
            room = site.room(device.room)
            self.last_seen[device.id] = now
        return Observation(msg, device, kind, site, room, msg.body.ts, now)

    def restore(self, alerts: Iterable[Any]) -> None:
        """After a restart: the detectors named by active fire alerts count as still in alarm, so
        a second detector after the restart still confirms the fire."""
        for alert in alerts:
            if alert.rule == "fire" and alert.zone is not None:
                zone = alert.detail.get("zone", alert.zone)
                alarmed = self.zone_alarms.setdefault((alert.site, zone, alert.drill), {})
                alarmed.update({d: alert.last_at for d in alert.detail.get("detectors", [])})

    def devices_of(self, gateway: str) -> Iterator[Any]:
        yield from (d for d in [*self.cfg.sensors, *self.cfg.cameras] if d.gateway == gateway)

    def gateway_down(self, gateway: str) -> bool:
        """Inhibits silence alerts of a gateway's devices while the gateway itself is known offline."""
        return self.gateway_state.get(gateway) == "offline"

    def is_night(self, ts: float, site: Site) -> bool:
        local = datetime.fromtimestamp(ts, site.tz).time()
        start, end = (dtime.fromisoformat(t) for t in (self.settings.night_start, self.settings.night_end))
        return start <= local < end if start <= end else (local >= start or local < end)


@dataclass(frozen=True)
class Rule:
    name: str
    label_zh: str
    label_en: str
    watches: frozenset[tuple[Kind, str]]  # (message class, device kind)
    check: Callable[[Situation, Observation], Iterable[Verdict]]
    tick: Callable[[Situation, float], Iterable[Verdict]] | None = None
    auto_resolve: bool = True  # False: only a person closes it (fire, night exit)


# ---- helpers ----------------------------------------------------------------------------------
def _raise(obs: Observation, rule: str, subject: str, severity: str, zh: str, en: str,
           **detail: Any) -> Raised:
    device = getattr(obs.device, "id", None)
    detail = {"device": device, "topic": obs.msg.topic, **detail}
    if obs.drill:
        zh, en = f"【演练】{zh}", f"[DRILL] {en}"
    return Raised(rule, subject, severity, obs.site.id, obs.room.id if obs.room else None,
                  obs.room.fire_zone if obs.room else None, zh, en, detail, obs.ts, obs.drill)


def _plausible_value(obs: Observation) -> float | None:
    """The reading's value when it is usable: quality ok and inside the kind's physical range."""
    body = obs.body
    if obs.msg.kind is not Kind.READING or body.quality != "ok" or body.value is None:
        return None
    spec = KINDS[obs.kind]
    return body.value if spec.low <= body.value <= spec.high else None


def _binary_signal(obs: Observation) -> bool | None:
    """A binary sensor's state: True active (alarm, open), False idle, None no news."""
    spec = KINDS[obs.kind]
    if obs.msg.kind is Kind.EVENT:
        return {spec.active_state: True, spec.idle_state: False}.get(obs.body.state)
    value = _plausible_value(obs)
    return None if value is None else value >= 0.5


def _heat_signal(obs: Observation, settings: RuleSettings) -> bool | None:
    if obs.msg.kind is Kind.EVENT:
        return {"alarm": True, "normal": False}.get(obs.body.state)
    value = _plausible_value(obs)
    if value is None:
        return None
    return True if value >= settings.heat_static_c else False if value < settings.heat_static_c - HEAT_HYSTERESIS_C \
        else None


DETECTOR_SIGNALS: dict[str, Callable[[Observation, RuleSettings], bool | None]] = {
    "smoke": lambda obs, _settings: _binary_signal(obs),
    "heat": _heat_signal,
}


def _names(obs: Observation) -> dict[str, str]:
    return {"site": obs.site.name, "room": obs.room.name if obs.room else "",
            "device": getattr(obs.device, "name", obs.msg.gateway)}


# ---- the rules --------------------------------------------------------------------------------
def fire(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """GB 50116 §4.1.6: one detector → pre-alarm for a person to check; ``fire_confirm_detectors``
    distinct detectors of one zone → the same alert escalates to a confirmed fire. A fault on one
    detector changes nothing here, so it never hides another detector's alarm."""
    signal = DETECTOR_SIGNALS[obs.kind](obs, sit.settings)
    if signal is None:
        return
    zone = obs.room.fire_zone
    alarmed = sit.zone_alarms.setdefault((obs.site.id, zone, obs.drill), {})
    if not signal:
        alarmed.pop(obs.device.id, None)  # the alert itself stays until a person closes it
        return
    alarmed[obs.device.id] = obs.ts
    n, names = len(alarmed), _names(obs)
    subject = f"{obs.site.id}/{zone}" + ("/drill" if obs.drill else "")
    if n >= sit.settings.fire_confirm_detectors:
        yield _raise(obs, "fire", subject, "critical",
                     f"火警确认：{names['site']} {names['room']}（防火分区 {zone}）{n} 个探测器报警",
                     f"Fire confirmed: {n} detectors in alarm, zone {zone}, {names['room']}, {names['site']}",
                     detectors=sorted(alarmed), zone=zone)
    else:
        yield _raise(obs, "fire", subject, "pre_alarm",
                     f"火灾预警：{names['site']} {names['room']} {names['device']} 报警，需人工复核",
                     f"Fire pre-alarm: {names['device']} in {names['room']}, {names['site']} — check in person",
                     detectors=sorted(alarmed), zone=zone)


def night_exit(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """An exit door opened in the night window (site local time, message time) → possible
    missing resident (走失). Stays until a person closes it."""
    if not getattr(obs.device, "exit", False) or obs.body.state != "open" or not sit.is_night(obs.ts, obs.site):
        return
    names, local = _names(obs), datetime.fromtimestamp(obs.ts, obs.site.tz).strftime("%H:%M")
    yield _raise(obs, "night_exit", f"{obs.site.id}/{obs.device.id}", "major",
                 f"夜间出口门打开：{names['site']} {names['device']}（{local}），可能有人员走失",
                 f"Exit door opened at night: {names['device']} ({local}), {names['site']} — possible missing resident",
                 local_time=local)


FAULTY_QUALITY = {"fault": "fault", "stale": "stale"}


def sensor_fault(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """GB 50166 §4.3.2: a detector that reports a fault, a faulty reading quality, or a value
    outside its physical range. Any good message clears it."""
    body, subject, names = obs.body, f"{obs.site.id}/{obs.device.id}", _names(obs)
    if obs.msg.kind is Kind.EVENT:
        reason = "fault" if body.state == "fault" else None
    elif body.quality != "ok":
        reason = FAULTY_QUALITY.get(body.quality, "fault")
    else:
        reason = None if _plausible_value(obs) is not None or body.value is None else "out_of_range"
    if reason is None:
        sit.silent.discard(obs.device.id)
        yield Clear("sensor_fault", subject, obs.ts, "sensor reports again / 传感器恢复")
        return
    yield _raise(obs, "sensor_fault", subject, "warning",
                 f"传感器故障：{names['site']} {names['device']}",
                 f"Sensor fault: {names['device']}, {names['site']} ({reason})", reason=reason,
                 value=getattr(body, "value", None))


def sensors_stale(sit: Situation, now: float) -> Iterator[Verdict]:
    """No data from a sensor for ``sensor_stale_s`` (or two of its own intervals) → fault."""
    for sensor in sit.cfg.sensors:
        limit = max(sit.settings.sensor_stale_s, STALE_INTERVALS * sensor.interval_s)
        last = sit.last_seen.get(sensor.id, sit.started)
        if sensor.id in sit.silent or sit.gateway_down(sensor.gateway) or last is None or now - last <= limit:
            continue
        sit.silent.add(sensor.id)
        site = sit.cfg.site_of(sensor)
        room = site.room(sensor.room)
        yield Raised("sensor_fault", f"{site.id}/{sensor.id}", "warning", site.id, room.id, room.fire_zone,
                     f"传感器无数据：{site.name} {sensor.name}（超过 {limit:.0f} 秒）",
                     f"Sensor silent: {sensor.name}, {site.name} (no data for over {limit:.0f} s)",
                     {"device": sensor.id, "reason": "stale", "silent_s": round(now - last, 1)}, now)


def camera_offline(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """GB/T 28181 §9.6.1: ``misses`` consecutive failed probes → offline; a good heartbeat clears."""
    cam, subject = obs.device, f"{obs.site.id}/{obs.device.id}"
    if obs.body.online:
        sit.camera_misses[cam.id] = 0
        sit.silent.discard(cam.id)
        yield Clear("camera_offline", subject, obs.ts, "camera answers again / 摄像机恢复")
        return
    misses = sit.camera_misses[cam.id] = sit.camera_misses.get(cam.id, 0) + 1
    if misses >= cam.misses:
        names = _names(obs)
        yield _raise(obs, "camera_offline", subject, "major",
                     f"摄像机离线：{names['site']} {names['room']} {names['device']}（连续 {misses} 次无响应）",
                     f"Camera offline: {names['device']} in {names['room']}, {names['site']} ({misses} failed probes)",
                     reason="probe_failed", misses=misses)


def cameras_silent(sit: Situation, now: float) -> Iterator[Verdict]:
    """No heartbeat for ``misses × heartbeat_s`` → the camera (or its probe) is offline."""
    for cam in sit.cfg.cameras:
        limit = cam.misses * cam.heartbeat_s
        last = sit.last_seen.get(cam.id, sit.started)
        if cam.id in sit.silent or sit.gateway_down(cam.gateway) or last is None or now - last <= limit:
            continue
        sit.silent.add(cam.id)
        site = sit.cfg.site_of(cam)
        room = site.room(cam.room)
        yield Raised("camera_offline", f"{site.id}/{cam.id}", "major", site.id, room.id, room.fire_zone,
                     f"摄像机离线：{site.name} {room.name} {cam.name}（{limit:.0f} 秒无心跳）",
                     f"Camera offline: {cam.name} in {room.name}, {site.name} (no heartbeat for {limit:.0f} s)",
                     {"device": cam.id, "reason": "silent", "silent_s": round(now - last, 1)}, now)


def gateway_offline(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """A gateway lost without goodbye (last will) is critical: nothing of its site is watched.
    A clean shutdown raises nothing (the engine records it); coming back online clears."""
    gw, subject = sit.cfg.gateway(obs.msg.gateway), f"{obs.site.id}/{obs.msg.gateway}"
    if obs.body.state == "online":
        yield Clear("gateway_offline", subject, obs.ts, "gateway online again / 网关恢复在线")
    elif obs.body.reason == "will":
        yield _raise(obs, "gateway_offline", subject, "critical",
                     f"网关失联：{obs.site.name} {gw.name}（该网关下所有设备无法监测）",
                     f"Gateway lost: {gw.name}, {obs.site.name} (its devices are unwatched)",
                     device=gw.id, reason="will")


@dataclass(frozen=True)
class Band:
    """A room-temperature band: the value beyond ``limit`` for ``for_s`` seconds raises ``rule``."""
    rule: str
    severity: str
    limit: Callable[[RuleSettings], float]
    below: bool
    rooms: Callable[[Room], bool]
    for_s: float
    zh: str
    en: str


BANDS: tuple[Band, ...] = (  # most severe first within a rule
    Band("cold_room", "critical", lambda s: s.any_room_min_c, True, lambda r: True, COLD_CRITICAL_FOR_S,
         "室温严重过低", "room dangerously cold"),
    Band("cold_room", "warning", lambda s: s.sleeping_room_min_c, True, lambda r: r.people_sleep, COLD_FOR_S,
         "住宿房间室温过低", "sleeping room too cold"),
    Band("hot_room", "warning", lambda s: s.summer_max_c, False, lambda r: r.people_sleep, HOT_FOR_S,
         "住宿房间室温过高（防中暑）", "sleeping room too hot (heat stroke risk)"),
)


def room_temperature(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """GB/T 33833 §5.1 (寒冬送温暖 / 夏季送清凉): a band held for its duration, on message time."""
    value = _plausible_value(obs)
    if value is None:
        return
    subject, names, fired = f"{obs.site.id}/{obs.room.id}", _names(obs), set()
    applicable = [b for b in BANDS if b.rooms(obs.room)]
    for band in applicable:
        key = (band.rule, band.severity, obs.device.id)
        limit = band.limit(sit.settings)
        if not (value < limit if band.below else value > limit):
            sit.since.pop(key, None)
            continue
        since = sit.since.setdefault(key, obs.ts)
        if obs.ts - since >= band.for_s and band.rule not in fired:
            fired.add(band.rule)
            minutes = (obs.ts - since) / 60
            yield _raise(obs, band.rule, subject, band.severity,
                         f"{band.zh}：{names['site']} {names['room']} {value:.1f} °C（{'低' if band.below else '高'}于 "
                         f"{limit:g} °C 已 {minutes:.0f} 分钟）",
                         f"{band.en.capitalize()}: {names['room']}, {names['site']} {value:.1f} °C "
                         f"({'below' if band.below else 'above'} {limit:g} °C for {minutes:.0f} min)",
                         value=value, limit=limit)
    for rule in {b.rule for b in applicable}:
        if not any(k[0] == rule and k[2] == obs.device.id for k in sit.since):
            yield Clear(rule, subject, obs.ts, f"room temperature back to {value:.1f} °C / 室温恢复")


def boiler_fault(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """The boiler's fault contact: heating stops, and in winter nobody may freeze."""
    signal, subject = _binary_signal(obs), f"{obs.site.id}/{obs.device.id}"
    if signal is False:
        yield Clear("boiler_fault", subject, obs.ts, "boiler fault cleared / 锅炉故障消除")
    elif signal:
        names = _names(obs)
        yield _raise(obs, "boiler_fault", subject, "major",
                     f"锅炉故障：{names['site']} {names['device']}（供暖可能中断）",
                     f"Boiler fault: {names['device']}, {names['site']} (heating may stop)")


def _watch(classes: Iterable[Kind], kinds: Iterable[str]) -> frozenset[tuple[Kind, str]]:
    return frozenset((c, k) for c in classes for k in kinds)


SENSOR_KINDS = tuple(KINDS)
RULES: tuple[Rule, ...] = (
    Rule("fire", "火警", "fire", _watch((Kind.EVENT, Kind.READING), ("smoke", "heat")), fire, auto_resolve=False),
    Rule("night_exit", "夜间出口门打开", "exit door at night", _watch((Kind.EVENT,), ("door",)), night_exit,
         auto_resolve=False),
    Rule("sensor_fault", "传感器故障", "sensor fault", _watch((Kind.EVENT, Kind.READING), SENSOR_KINDS),
         sensor_fault, tick=sensors_stale),
    Rule("camera_offline", "摄像机离线", "camera offline", _watch((Kind.HEARTBEAT,), ("camera",)), camera_offline,
         tick=cameras_silent),
    Rule("gateway_offline", "网关失联", "gateway lost", _watch((Kind.STATUS,), ("gateway",)), gateway_offline),
    Rule("room_temperature", "室温", "room temperature", _watch((Kind.READING,), ("temperature",)),
         room_temperature),  # raises cold_room and hot_room, see BANDS
    Rule("boiler_fault", "锅炉故障", "boiler fault", _watch((Kind.EVENT, Kind.READING), ("boiler_fault",)),
         boiler_fault),
)
