"""The organisation config: bureaus → sites → rooms/zones → gateways, sensors and cameras, plus
rules and contacts. One YAML file, validated by pydantic at load and cross-checked afterwards;
every problem is reported with the path of the field at fault (``sensors[3].room``).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator

from stationwatch.sensors.kinds import KINDS

from . import collector
from .agent_settings import AgentSettings, agent_problems
from .fields import Ident, Model
from .hazards import HazardSettings, ReportSettings, hazard_problems
from .limits import Limits
from .policy import AlertRouting, ApiSettings, MaintenanceWindow, Roster, RuleSettings, User, policy_problems
from .sensor_config import SensorConfig
from .supervision import SupervisionSettings
from .wiring import SOURCES, Bus, wiring_problems

# the "site" of alerts about the monitoring centre itself (a silent ingest, a dead broker): every user sees them
CENTRE = "centre"
CENTRE_NAME = "监测中心 / monitoring centre"


class Bureau(Model):
    id: Ident
    name: str
    level: Literal["county", "city", "province"]
    parent: str | None = None


RoomKind = Literal["dormitory", "minors_dormitory", "medical_observation", "kitchen", "boiler_room",
                   "storeroom", "exit", "corridor", "office", "public", "canteen", "bathroom"]
SLEEPING_KINDS = {"dormitory", "minors_dormitory", "medical_observation"}


class Room(Model):
    id: Ident
    name: str
    kind: RoomKind
    zone: str | None = None  # fire-alarm zone; defaults to the room itself
    sleeping: bool | None = None  # people sleep here; defaults from the kind

    @property
    def fire_zone(self) -> str:
        return self.zone or self.id

    @property
    def people_sleep(self) -> bool:
        return self.sleeping if self.sleeping is not None else self.kind in SLEEPING_KINDS


class Site(Model):
    id: Ident
    name: str
    kind: Literal["station", "foster_care", "hospital"] = "station"
    bureau: str
    address: str | None = None
    timezone: str = "Asia/Shanghai"  # night windows and heating seasons are local time
    rooms: Annotated[list[Room], Field(min_length=1)]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (e.g. Asia/Shanghai)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def room(self, room_id: str) -> Room | None:
        return next((r for r in self.rooms if r.id == room_id), None)


class Gateway(Model):
    id: Ident
    name: str
    site: str
    buses: list[Bus] = []              # RS-485 / Modbus buses wired to this gateway (core/wiring.py)
    agent: AgentSettings = AgentSettings()  # spool, local alarm outputs, health (core/agent_settings.py)


class Camera(Model):
    id: Ident
    name: str
    gateway: str
    room: str
    probe: str  # rtsp://…, http://…, tcp://host:port
    heartbeat_s: Annotated[float, Field(gt=0, le=3600)] = 60.0  # GB/T 28181 §9.6.1
    misses: Annotated[int, Field(ge=1, le=20)] = 3


class Contact(Model):
    id: Ident
    name: str
    role: Literal["staff", "leader", "bureau", "inspector", "admin"]
    sites: list[str] = []
    bureau: str | None = None
    phone: str | None = None
    channels: list[str] = []  # apprise URLs: json://…, wecombot://…, dingtalk://…, mailto://…


class StationConfig(Model):
    version: Literal[1] = 1
    name: str
    bureaus: Annotated[list[Bureau], Field(min_length=1)]
    sites: Annotated[list[Site], Field(min_length=1)]
    gateways: Annotated[list[Gateway], Field(min_length=1)]
    sensors: list[SensorConfig] = []
    cameras: list[Camera] = []
    contacts: list[Contact] = []
    rules: RuleSettings = RuleSettings()
    routing: AlertRouting = AlertRouting()
    rosters: list[Roster] = []  # duty rosters (排班表): who is on duty when (core/policy.py)
    maintenance: list[MaintenanceWindow] = []  # maintenance windows that silence alerts
    users: list[User] = []  # API users with the SHA-256 of their token
    api: ApiSettings = ApiSettings()
    supervision: SupervisionSettings = SupervisionSettings()  # heartbeats, patrol, the watcher (core/supervision.py)
    hazards: HazardSettings = HazardSettings()  # the hazard register's evidence rules (core/hazards.py)
    reports: ReportSettings = ReportSettings()  # the monthly report
    limits: Limits = Limits()  # broker, ingest and clock limits (core/limits.py)

    _index: dict = PrivateAttr(default_factory=dict)  # section → (its list, len, {id: item})

    # ---- look-ups used by every service: by id, through an index built on first use (a national
    # config has 2,000 sites and 128,000 sensors; a scan per look-up made loading it quadratic)
    def _by_id(self, section: str) -> dict:
        items = getattr(self, section)
        cached = self._index.get(section)
        if cached is None or cached[0] is not items or cached[1] != len(items):  # replaced or grown: again
            first: dict = {}
            for item in items:
                first.setdefault(item.id, item)  # a duplicate id (a config error) finds the first, as before
            cached = self._index[section] = (items, len(items), first)
        return cached[2]

    def site(self, site_id: str) -> Site | None:
        return self._by_id("sites").get(site_id)

    def gateway(self, gateway_id: str) -> Gateway | None:
        return self._by_id("gateways").get(gateway_id)

    def sensor(self, sensor_id: str):
        return self._by_id("sensors").get(sensor_id)

    def camera(self, camera_id: str):
        return self._by_id("cameras").get(camera_id)

    def site_of(self, device) -> Site:
        return self.site(self.gateway(device.gateway).site)


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists every fault with its field path."""

    def __init__(self, source: str, problems: list[ConfigProblem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) / 配置有 {len(problems)} 处错误:\n{lines}")


def _loc_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (part in KINDS and out.endswith("]")) or (part in SOURCES and out.endswith(".source")):
            continue  # pydantic names the union member (sensor kind, driver); the user needs only the field
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


# the discriminated union reports a bad `kind` at the list item; point at the field itself
_TAG_FIELD = {"union_tag_invalid": ".kind", "union_tag_not_found": ".kind"}


def _duplicates(ids: list[str]) -> set[str]:
    return {i for i, n in Counter(ids).items() if n > 1}


def cross_check(cfg: StationConfig) -> list[ConfigProblem]:
    """Checks that need the whole file: references exist, ids are unique, devices sit in their site."""
    problems: list[ConfigProblem] = []
    add = lambda path, msg: problems.append(ConfigProblem(path, msg))  # noqa: E731

    bureau_ids = {b.id for b in cfg.bureaus}
    site_ids = {s.id for s in cfg.sites}
    for section in ("bureaus", "sites", "gateways", "contacts"):
        dup = _duplicates([x.id for x in getattr(cfg, section)])
        for i, item in enumerate(getattr(cfg, section)):
            if item.id in dup:
                add(f"{section}[{i}].id", f"duplicate id '{item.id}' / 编号重复")
    # sensors and cameras share one device namespace: a device id appears once in the topic tree
    devices = [("sensors", i, d) for i, d in enumerate(cfg.sensors)] + \
              [("cameras", i, d) for i, d in enumerate(cfg.cameras)]
    dup = _duplicates([d.id for _, _, d in devices])
    for section, i, d in devices:
        if d.id in dup:
            add(f"{section}[{i}].id", f"duplicate device id '{d.id}' / 设备编号重复")

    for i, b in enumerate(cfg.bureaus):
        if b.parent is not None and b.parent not in bureau_ids:
            add(f"bureaus[{i}].parent", f"no bureau '{b.parent}' / 上级民政局不存在")
    for i, s in enumerate(cfg.sites):
        if s.bureau not in bureau_ids:
            add(f"sites[{i}].bureau", f"no bureau '{s.bureau}' / 民政局不存在")
        dup_rooms = _duplicates([r.id for r in s.rooms])
        for j, r in enumerate(s.rooms):
            if r.id in dup_rooms:
                add(f"sites[{i}].rooms[{j}].id", f"duplicate room id '{r.id}' in site '{s.id}' / 房间编号重复")
    for i, g in enumerate(cfg.gateways):
        if g.site not in site_ids:
            add(f"gateways[{i}].site", f"no site '{g.site}' / 站点不存在")

    for section, i, d in devices:
        gw = cfg.gateway(d.gateway)
        if gw is None:
            add(f"{section}[{i}].gateway", f"no gateway '{d.gateway}' / 网关不存在")
            continue
        site = cfg.site(gw.site)
        if site is not None and site.room(d.room) is None:
            add(f"{section}[{i}].room",
                f"no room '{d.room}' in site '{site.id}' / 站点 '{site.id}' 没有房间 '{d.room}'")
    for i, s in enumerate(cfg.sites):
        if s.id == CENTRE:
            add(f"sites[{i}].id", f"'{CENTRE}' is reserved for the monitoring centre's own alerts / 该编号保留给监测中心")
    for j, c in enumerate(cfg.supervision.contacts):
        if c not in {x.id for x in cfg.contacts}:
            add(f"supervision.contacts[{j}]", f"no contact '{c}' / 联系人不存在")
    for i, c in enumerate(cfg.contacts):
        for j, s in enumerate(c.sites):
            if s not in site_ids:
                add(f"contacts[{i}].sites[{j}]", f"no site '{s}' / 站点不存在")
        if c.bureau is not None and c.bureau not in bureau_ids:
            add(f"contacts[{i}].bureau", f"no bureau '{c.bureau}' / 民政局不存在")
    # each part checks its own sections: wiring (pins, buses), the gateway agent, alert policy
    for check in (wiring_problems, agent_problems, policy_problems, hazard_problems):
        problems += [ConfigProblem(path, message) for path, message in check(cfg)]
    return problems


def parse_config(data: object, source: str = "<config>") -> StationConfig:
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem("(top level)", "expected a mapping / 应为键值映射")])
    try:
        with collector.paused():  # a country's config is millions of objects, all of which live
            cfg = StationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [ConfigProblem(_loc_path(e["loc"]) + _TAG_FIELD.get(e["type"], ""), e["msg"])
                                   for e in exc.errors()]) from None
    problems = cross_check(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def config_version(path: str | Path) -> str:
    """Short SHA-256 of the config file: what a gateway announces in its birth and patrol answer, and
    what the centre compares with its own (a gateway on a stale copy is a patrol finding)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it: a city's config in ms, not 0.4 s


def load_config(path: str | Path) -> StationConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem("(file)", f"cannot read: {exc.strerror}")]) from None
    try:
        with collector.paused():
            data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(str(path), [ConfigProblem(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    return parse_config(data, str(path))
