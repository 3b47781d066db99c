"""Alert policy in the organisation config: rule settings, the reporting chain (escalation
policies), duty rosters, maintenance windows, API users and API settings.

Loaded as part of the config (``rules:``, ``routing:``, ``rosters:``, ``maintenance:``, ``users:``,
``api:``); :func:`policy_problems` adds the checks that need the whole config. Defaults and their
sources: docs/config.md and docs/alerts.md.

>>> RuleSettings().cold_for_s, AlertRouting().attempts, ApiSettings().engine_stale_s
(1800.0, 3, 15.0)
"""
from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Annotated, Iterator, Literal

from pydantic import Field, model_validator

from .alert_types import ALERT_TYPES
from .fields import Ident, Model

HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
MonthDay = Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")]
Seconds = Annotated[float, Field(gt=0)]
SeverityName = Literal["critical", "pre_alarm", "major", "warning"]
Role = Literal["staff", "leader", "bureau", "inspector", "admin"]
# who a level of the reporting chain reaches, resolved per alert from its site:
#   staff / leader: contacts of that role for the site (filtered by the duty roster when there is one)
#   bureau: contacts of the site's own bureau; bureau_up: contacts of the bureaus above it
Target = Literal["staff", "leader", "bureau", "bureau_up"]


class Season(Model):
    """A yearly period, month-day to month-day inclusive; it may run over New Year."""
    start: MonthDay
    end: MonthDay

    def contains(self, day: date) -> bool:
        md = day.strftime("%m-%d")
        return self.start <= md <= self.end if self.start <= self.end else (md >= self.start or md <= self.end)


class RuleSettings(Model):
    """The rules' defaults, each from a standard or practice cited in docs/config.md; each can be changed per deployment."""
    fire_confirm_detectors: Annotated[int, Field(ge=1, le=4)] = 2  # GB 50116 §4.1.6
    heat_static_c: Annotated[float, Field(ge=40, le=100)] = 54.0  # GB 4716 (A1 static)
    heat_hysteresis_c: Annotated[float, Field(ge=0, le=20)] = 2.0  # back to normal this far below
    rate_of_rise_c_per_min: Annotated[float, Field(gt=0, le=100)] = 10.0  # GB 4716 class A1R
    rate_of_rise_window_s: Annotated[float, Field(ge=10, le=600)] = 60.0
    sensor_stale_s: Seconds = 100.0  # GB 50166 §4.3.2
    stale_intervals: Annotated[float, Field(ge=1, le=20)] = 2.0  # or this many of the sensor's own intervals
    night_start: HHMM = "22:00"
    night_end: HHMM = "06:00"
    door_open_max_s: Seconds = 300.0  # a door held open longer → warning
    sleeping_room_min_c: float = 18.0  # GB/T 33833 §5.1, in the heating season
    cold_for_s: Annotated[float, Field(ge=0)] = 1800.0
    any_room_min_c: float = 5.0  # GB 50736 anti-freeze, all year
    cold_critical_for_s: Annotated[float, Field(ge=0)] = 300.0
    summer_max_c: float = 32.0  # 夏季送清凉, outside the heating season
    hot_for_s: Annotated[float, Field(ge=0)] = 1800.0
    room_hysteresis_c: Annotated[float, Field(ge=0, le=10)] = 0.5
    supply_min_c: float = 40.0  # heating supply water below this while it is cold outside → major
    outdoor_cold_c: float = 5.0
    supply_for_s: Annotated[float, Field(ge=0)] = 900.0
    # No standard figure: long enough for a duty/standby pump changeover or a controller restart (seconds to a
    # minute), short beside the ~2 h the supply water takes to cool after a heating failure (the heating-failure scenario, gateway/scenarios.py).
    pump_stopped_for_s: Annotated[float, Field(ge=0)] = 300.0
    pressure_for_s: Annotated[float, Field(ge=0)] = 300.0  # below a pressure sensor's `low_bar` this long
    pressure_hysteresis_bar: Annotated[float, Field(ge=0, le=2)] = 0.1  # back above low_bar + this: clear
    heating_season_start: MonthDay = "11-15"
    heating_season_end: MonthDay = "03-15"
    heating_seasons: dict[str, Season] = {}  # per bureau id (a city and the bureaus below it)
    # a gateway's spool lives on its disk: below this much free it has little room left for an outage
    gateway_disk_free_min_pct: Annotated[float, Field(gt=0, lt=100)] = 10.0
    gateway_disk_free_hysteresis_pct: Annotated[float, Field(ge=0, le=50)] = 2.0  # free again this much above: clear
    resolve_hold_s: Annotated[float, Field(ge=0)] = 60.0  # a cleared condition must stay clear this long
    flap_window_s: Annotated[float, Field(ge=0)] = 900.0  # back this soon after resolving: the same alert

    @property
    def heating_season(self) -> Season:
        return Season(start=self.heating_season_start, end=self.heating_season_end)


class Level(Model):
    """One step of the reporting chain."""
    name: str  # 值班人员 / staff on duty …
    targets: list[Target] = []
    contacts: list[str] = []  # named contacts, e.g. the city government's duty office
    ack_s: Seconds  # deadline to acknowledge before the alert climbs to the next level
    remind_s: Seconds | None = None  # reminders to this level while unacknowledged
    at_once: bool = False  # told as soon as the alert fires, in parallel with the first level

    @model_validator(mode="after")
    def _someone(self) -> "Level":
        if not self.targets and not self.contacts:
            raise ValueError("a level needs `targets` or `contacts` / 该级别没有通知对象")
        return self


class EscalationPolicy(Model):
    """Which alerts it applies to (empty = any) and the levels they climb. First match wins."""
    id: Ident
    sites: list[str] = []
    rules: list[str] = []
    severities: list[SeverityName] = []
    levels: Annotated[list[Level], Field(min_length=1)]

    def level(self, index: int) -> Level:
        """Level ``index``, or the top one for an index past it (a chain kept from a longer policy)."""
        return self.levels[min(index, len(self.levels) - 1)]

    def matches(self, site: str, rule: str, severity: str) -> bool:
        return all(not allowed or value in allowed for value, allowed in
                   ((site, self.sites), (rule, self.rules), (severity, self.severities)))


def _level(name: str, targets: list[Target], ack_s: float, remind_s: float | None = None,
           at_once: bool = False) -> Level:
    return Level(name=name, targets=targets, ack_s=ack_s, remind_s=remind_s, at_once=at_once)


# The statutory chain (生产安全事故报告和调查处理条例 §9, §11): staff at once; the station head
# reports to the bureau within 1 h; each step up within 2 h. Confirmed fires and missing residents
# reach the bureau at once, in parallel with the station (应急处置和信息报告机制).
DEFAULT_POLICIES: tuple[EscalationPolicy, ...] = (
    EscalationPolicy(id="emergency", rules=["fire", "night_exit"], severities=["critical"], levels=[
        _level("值班人员 / staff on duty", ["staff"], 300, 60),
        _level("带班领导 / leader on shift", ["leader"], 600, 120),
        _level("民政局 / civil-affairs bureau", ["bureau"], 3600, 600, at_once=True),
        _level("市政府与省民政厅 / city government and province", ["bureau_up"], 7200, 1800)]),
    EscalationPolicy(id="routine", severities=["warning"], levels=[
        _level("值班人员 / staff on duty", ["staff"], 1800, 900),
        _level("带班领导 / leader on shift", ["leader"], 7200, 3600)]),
    EscalationPolicy(id="default", levels=[
        _level("值班人员 / staff on duty", ["staff"], 900, 300),
        _level("带班领导 / leader on shift", ["leader"], 3600, 900),
        _level("民政局 / civil-affairs bureau", ["bureau"], 7200, 1800),
        _level("市政府与省民政厅 / city government and province", ["bureau_up"], 7200, 1800)]),
)

# chat robots allow about 20 messages a minute; above that a burst is sent as a digest
DEFAULT_RATES = {"wecombot": 20, "dingtalk": 20, "feishu": 20, "lark": 20}


class AlertRouting(Model):
    """Who is told, how, and how insistently."""
    notify: list[str] = []  # contact ids added to the first level of every policy
    policies: list[EscalationPolicy] = []  # empty: DEFAULT_POLICIES
    attempts: Annotated[int, Field(ge=1, le=10)] = 3  # per channel, before failing over to the next
    backoff_s: Annotated[list[Annotated[float, Field(ge=0, le=600)]], Field(min_length=1)] = [1.0, 4.0]
    rate_per_minute: dict[str, Annotated[int, Field(ge=1, le=10000)]] = DEFAULT_RATES  # by URL scheme
    board_url: str | None = None  # link to the duty board in every notice
    notify_acknowledged: bool = True  # tell those already notified when someone acknowledges
    notify_resolved: bool = True

    @property
    def chain(self) -> tuple[EscalationPolicy, ...]:
        return tuple(self.policies) or DEFAULT_POLICIES


class Shift(Model):
    """Who is on duty from ``start`` to ``end`` (site local time; over midnight when end ≤ start)."""
    start: HHMM
    end: HHMM
    days: list[Annotated[int, Field(ge=1, le=7)]] = [1, 2, 3, 4, 5, 6, 7]  # ISO weekday the shift starts
    contacts: Annotated[list[str], Field(min_length=1)]


class Roster(Model):
    """The duty roster (排班表) of some sites: staff and leaders are paged only while on duty."""
    id: Ident
    sites: Annotated[list[str], Field(min_length=1)]
    shifts: Annotated[list[Shift], Field(min_length=1)]


class MaintenanceWindow(Model):
    """Silences a site, a room or some devices for a time, with a reason (检修)."""
    site: str
    room: str | None = None
    devices: list[str] = []
    start: datetime  # without a time zone: the site's local time
    end: datetime
    reason: Annotated[str, Field(min_length=1)]


# Tokens written in the docs for the demo. Like a default secret key, they are refused outside local use.
DEMO_TOKENS = ("demo-staff-token", "demo-leader-token", "demo-bureau-token", "demo-inspector-token",
               "demo-admin-token")
DEMO_TOKEN_HASHES = frozenset(hashlib.sha256(t.encode()).hexdigest() for t in DEMO_TOKENS)


class User(Model):
    """Someone who signs in to the API. Only the SHA-256 of the token is kept (`stationwatch token`)."""
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
    name: str
    role: Role
    sites: list[str] = []
    bureau: str | None = None
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    # the token is refused from then on: a date alone works through that day; without a zone, China time
    expires: date | datetime | None = None


class ApiSettings(Model):
    """The HTTP API. Outside ``local`` use it refuses the demo tokens and anonymous reading."""
    environment: Literal["local", "staging", "production"] = "local"
    anonymous_read: bool | None = None  # None: allowed only in local use (the demo's wall board)
    engine_stale_s: Seconds = 15.0  # no engine heartbeat for this long → /health degraded

    @property
    def anonymous(self) -> bool:
        return self.environment == "local" if self.anonymous_read is None else self.anonymous_read


def policy_problems(cfg) -> Iterator[tuple[str, str]]:
    """(path, message) for every policy reference that points nowhere or cannot work."""
    contacts = {c.id for c in cfg.contacts}
    sites = {s.id for s in cfg.sites}
    bureaus = {b.id for b in cfg.bureaus}

    def refs(path: str, values: list[str], known: set[str], what: str) -> Iterator[tuple[str, str]]:
        for j, value in enumerate(values):
            if value not in known:
                yield f"{path}[{j}]", f"no {what[0]} '{value}' / {what[1]}不存在"

    yield from refs("routing.notify", cfg.routing.notify, contacts, ("contact", "联系人"))
    for i, policy in enumerate(cfg.routing.policies):
        base = f"routing.policies[{i}]"
        yield from refs(f"{base}.sites", policy.sites, sites, ("site", "站点"))
        yield from refs(f"{base}.rules", policy.rules, set(ALERT_TYPES), ("alert rule", "告警规则"))
        for j, level in enumerate(policy.levels):
            yield from refs(f"{base}.levels[{j}].contacts", level.contacts, contacts, ("contact", "联系人"))
    if len({p.id for p in cfg.routing.policies}) != len(cfg.routing.policies):
        yield "routing.policies", "duplicate policy id / 策略编号重复"
    for bureau_id in cfg.rules.heating_seasons:
        if bureau_id not in bureaus:
            yield f"rules.heating_seasons.{bureau_id}", f"no bureau '{bureau_id}' / 民政局不存在"
    for i, roster in enumerate(cfg.rosters):
        yield from refs(f"rosters[{i}].sites", roster.sites, sites, ("site", "站点"))
        for j, shift in enumerate(roster.shifts):
            yield from refs(f"rosters[{i}].shifts[{j}].contacts", shift.contacts, contacts, ("contact", "联系人"))
    for i, window in enumerate(cfg.maintenance):
        site = cfg.site(window.site)
        if site is None:
            yield f"maintenance[{i}].site", f"no site '{window.site}' / 站点不存在"
            continue
        if window.room is not None and site.room(window.room) is None:
            yield f"maintenance[{i}].room", f"no room '{window.room}' in site '{site.id}' / 房间不存在"
        devices = {d.id for d in [*cfg.sensors, *cfg.cameras] if cfg.gateway(d.gateway) and
                   cfg.gateway(d.gateway).site == site.id}
        yield from refs(f"maintenance[{i}].devices", window.devices, devices, ("device in this site", "设备"))
        if window.end <= window.start:
            yield f"maintenance[{i}].end", "end must be after start / 结束时间须晚于开始时间"
    yield from _user_problems(cfg, sites, bureaus)


# what each role needs to name: the sites or the bureau it acts for
_USER_SCOPE: dict[str, tuple[str, ...]] = {"staff": ("sites",), "leader": ("sites",), "bureau": ("bureau",),
                                           "inspector": ("sites", "bureau"), "admin": ()}


def _user_problems(cfg, sites: set[str], bureaus: set[str]) -> Iterator[tuple[str, str]]:
    seen_ids: set[str] = set()
    seen_tokens: set[str] = set()
    for i, user in enumerate(cfg.users):
        if user.id in seen_ids:
            yield f"users[{i}].id", f"duplicate user id '{user.id}' / 用户编号重复"
        if user.token_sha256 in seen_tokens:
            yield f"users[{i}].token_sha256", "two users share one token / 两个用户使用同一令牌"
        seen_ids.add(user.id)
        seen_tokens.add(user.token_sha256)
        for j, site in enumerate(user.sites):
            if site not in sites:
                yield f"users[{i}].sites[{j}]", f"no site '{site}' / 站点不存在"
        if user.bureau is not None and user.bureau not in bureaus:
            yield f"users[{i}].bureau", f"no bureau '{user.bureau}' / 民政局不存在"
        if cfg.api.environment != "local" and user.token_sha256 in DEMO_TOKEN_HASHES:
            yield f"users[{i}].token_sha256", ("a demo token outside local use: make a new one with "
                                               "`stationwatch token` / 非本地环境不得使用演示令牌")
        needs = _USER_SCOPE[user.role]
        if needs and not any(getattr(user, field) for field in needs):
            yield f"users[{i}]", f"role '{user.role}' needs {' or '.join(needs)} / 该角色须指定站点或民政局"
    api = cfg.api
    if api.environment != "local" and api.anonymous_read:
        yield "api.anonymous_read", "anonymous reading is for local use only / 仅限本地使用"
