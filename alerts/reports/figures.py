"""The figures of a monthly report, computed once — from the alert store (alarms, reviews, deadlines and
breaches, drills, cameras, gateways, the register) and from InfluxDB (:mod:`.series`: heating, doors,
detector signals) — and handed to both renderers (:mod:`.pdf`, :mod:`.xlsx`) through :mod:`.sections`.

Times are Unix seconds; a month still running is counted up to ``until`` (the time of generation).
"""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time as dtime

from stationwatch.core.config import Site, StationConfig

from ..liveness import CAMERA_SEVERITY
from ..register.evidence import condition_end, offline_span
from ..register.records import DONE, WAITING
from ..register.store import Register
from ..store import Alert, Store
from .period import Month
from .series import Heating, SiteSeries

HEATING_RULES = ("cold_room", "supply_cold", "boiler_fault", "pump_stopped", "pressure_low")


@dataclass
class Span:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class CentreOutage:
    """A span in which the centre itself could not watch (a pipeline hop silent, alerts/supervision.py):
    the month's figures are blind there, whatever the station did."""
    hop: str
    detail: str
    span: Span


@dataclass
class Dismissal:
    alert_id: int
    rule: str
    room: str | None
    at: float
    by: str
    reason: str


@dataclass
class AckLevel:
    policy: str
    level: int
    name: str
    deadline_s: float
    acknowledged: int
    median_s: float | None
    max_s: float | None


@dataclass
class Breach:
    alert_id: int
    rule: str
    room: str | None
    title: str
    level: int
    level_name: str
    due_at: float
    delay_s: float  # how late: acknowledged (or closed, or the end of the period) after the deadline
    reason: str  # deadline | undeliverable | rectification


@dataclass
class CameraRow:
    id: str
    name: str
    room: str
    major: bool  # public area or observation room
    spans: list[Span]
    period_s: float

    @property
    def offline_s(self) -> float:
        return sum(s.seconds for s in self.spans)

    @property
    def availability(self) -> float:
        return 1.0 - self.offline_s / self.period_s if self.period_s else 1.0


@dataclass
class HeatRow:
    sensor: str
    room: str
    trend: Heating
    season_minutes: int

    @property
    def coverage(self) -> float:
        return self.trend.minutes / self.season_minutes if self.season_minutes else 0.0


@dataclass
class Outage:
    alert_id: int
    rule: str
    room: str | None
    title: str
    severity: str
    span: Span


@dataclass
class NightExit:
    at: float
    door: str
    room: str | None
    alert_id: int | None
    outcome: str


@dataclass
class RegisterRow:
    id: int
    room: str | None
    category: str
    description: str
    source: str
    major: bool
    deadline_at: float
    responsible: str
    status_at_end: str
    overdue_at_end: bool
    created_at: float
    closed_at: float | None


@dataclass
class SiteFigures:
    site: Site
    month: Month
    start: float
    end: float
    until: float
    alarms: Counter  # (rule, severity) → real alerts raised in the month
    drills: list[Alert]
    drills_required: int
    review: Counter  # confirmed, dismissed, resolved, auto, open
    dismissals: list[Dismissal]
    ack_levels: list[AckLevel]
    unacknowledged: int
    breaches: list[Breach]
    cameras: list[CameraRow]
    heating: list[HeatRow]
    heating_threshold: float
    heating_outages: list[Outage]
    night_openings: dict[str, tuple[str, int]]  # exit door → (room, openings at night), from records
    night_exits: list[NightExit]  # night_exit alerts
    gateways: list[Outage]
    register: list[RegisterRow]
    register_counts: dict[str, int]
    detector_alarms: dict[str, int] = field(default_factory=dict)
    centre: list[CentreOutage] = field(default_factory=list)

    @property
    def alarms_total(self) -> int:
        return sum(self.alarms.values())


def _spans(alerts: list[Alert], start: float, until: float, span=None) -> dict[int, Span]:
    out = {}
    for a in alerts:
        a0, a1 = span(a) if span else (a.first_at, condition_end(a, until))
        s = Span(max(a0, start), min(a1, until))
        if s.seconds > 0:
            out[a.id] = s
    return out


def site_figures(cfg: StationConfig, store: Store, register: Register, site: Site, month: Month,
                 series: SiteSeries, now: float) -> SiteFigures:
    start, end = month.bounds(site.tz)
    until = min(end, now)
    rows = [Alert.from_row(r) for r in store.query(
        "SELECT * FROM alerts WHERE site=? AND first_at<? AND (first_at>=? OR resolved_at IS NULL OR resolved_at>=?)"
        " ORDER BY id", (site.id, until, start, start))]
    in_month = [a for a in rows if start <= a.first_at < until]
    real = [a for a in in_month if not a.drill]
    trails = _trails(store, [a.id for a in real])
    room_name = lambda r: (site.room(r).name if r and site.room(r) else r)  # noqa: E731

    review, dismissals = Counter(), []
    for a in real:
        acts = {t["action"] for t in trails[a.id]}
        if "confirm" in acts or (a.rule == "fire" and a.severity == "critical"):
            review["confirmed"] += 1
        if a.state == "dismissed":
            review["dismissed"] += 1
            note = next((t for t in trails[a.id] if t["action"] == "dismiss"), None)
            dismissals.append(Dismissal(a.id, a.rule, room_name(a.room), a.resolved_at or a.last_at,
                                        a.resolved_by or "", (note["note"] if note else "").removeprefix("dismissed: ")))
        elif a.state == "resolved":
            review["auto" if a.resolution in ("auto", "expired") else "resolved"] += 1
        else:
            review["open"] += 1

    ack_levels, unacknowledged, breaches = _acknowledgement(cfg, store, register, real, trails, until, room_name)
    cams = _cameras(cfg, site, rows, start, until)
    heating = [HeatRow(s.id, room_name(s.room), series.heating.get(s.id, Heating(s.id)), series.season_minutes)
               for s in _sleeping(cfg, site)]
    outages = [Outage(a.id, a.rule, room_name(a.room), a.title_zh, a.severity, s) for a in rows
               if a.rule in HEATING_RULES and not a.drill
               for s in [_spans([a], start, until).get(a.id)] if s is not None]
    gateways = [Outage(a.id, a.rule, None, a.title_zh, a.severity, s) for a in rows if a.rule == "gateway_offline"
                and not a.drill for s in [_spans([a], start, until).get(a.id)] if s is not None]
    reg_rows, reg_counts = _register(register, site, start, until)
    centre = [CentreOutage(o["hop"], o["detail"], s) for o in store.outages(start, until)
              for s in [Span(max(o["started_at"], start), min(o["ended_at"] or until, until))] if s.seconds > 0]
    return SiteFigures(site, month, start, end, until, Counter((a.rule, a.severity) for a in real),
                       [a for a in in_month if a.drill and a.rule == "fire"], cfg.hazards.drills_per_month, review,
                       dismissals, ack_levels, unacknowledged, breaches, cams, heating, cfg.hazards.sleeping_min_c,
                       outages, *_night_exits(cfg, site, series, real, room_name), gateways, reg_rows, reg_counts,
                       series.detector_alarms, centre)


def _trails(store: Store, ids: list[int]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {i: [] for i in ids}
    marks = ",".join("?" * len(ids)) or "NULL"
    for r in store.query(f"SELECT alert_id, at, actor, action, note FROM audit WHERE alert_id IN ({marks}) ORDER BY id",
                         tuple(ids)):
        out[r["alert_id"]].append(dict(r))
    return out


def _acknowledgement(cfg, store, register, real, trails, until, room_name):
    policies = {p.id: p for p in cfg.routing.chain}
    escs = store.escalations([a.id for a in real])
    by_level: dict[tuple[str, int], list[float]] = {}
    unacknowledged = 0
    ack_at: dict[int, float] = {}
    for a in real:
        esc = escs.get(a.id)
        if esc is None:
            continue
        first = next((t["at"] for t in trails[a.id] if t["action"] == "acknowledge"), None)
        if first is None:
            unacknowledged += a.fired_at is not None and a.state not in ("resolved", "dismissed")
            continue
        ack_at[a.id] = first
        by_level.setdefault((esc.policy, esc.level), []).append(first - (a.fired_at or a.first_at))
    levels = []
    for (policy_id, level), delays in sorted(by_level.items()):
        policy = policies.get(policy_id)
        lv = policy.level(level) if policy else None
        levels.append(AckLevel(policy_id, level, lv.name if lv else f"L{level}", lv.ack_s if lv else 0, len(delays),
                               statistics.median(delays), max(delays)))
    breaches = []
    alerts = {a.id: a for a in real}
    marks = ",".join("?" * len(alerts)) or "NULL"
    for b in store.query(f"SELECT * FROM breaches WHERE alert_id IN ({marks}) ORDER BY due_at, id", tuple(alerts)):
        a = alerts[b["alert_id"]]
        done = ack_at.get(a.id) or a.resolved_at or until
        if b["reason"] == "rectification":  # late until the station submitted its rectification
            hazard = register.list(site=a.site, limit=1, ids=[a.detail.get("hazard", 0)])
            done = (hazard[0].submitted_at if hazard and hazard[0].submitted_at else None) or until
        breaches.append(Breach(a.id, a.rule, room_name(a.room), a.title_zh, b["level"], b["level_name"], b["due_at"],
                               max(0.0, done - b["due_at"]), b["reason"]))
    return levels, unacknowledged, breaches


def _cameras(cfg, site, rows, start, until):
    out = []
    offline = [a for a in rows if a.rule == "camera_offline" and not a.drill]
    for cam in cfg.cameras:
        if cfg.site_of(cam).id != site.id:
            continue
        mine = [a for a in offline if a.detail.get("device") == cam.id]
        spans = sorted(_spans(mine, start, until, lambda a: offline_span(cfg, a, until)).values(), key=lambda s: s.start)
        room = site.room(cam.room)
        major = CAMERA_SEVERITY.get(room.kind) == "major"
        out.append(CameraRow(cam.id, cam.name, room.name, major, spans, until - start))
    return out


def _sleeping(cfg, site):
    rooms = {r.id for r in site.rooms if r.people_sleep}
    return [s for s in cfg.sensors if s.kind == "temperature" and s.room in rooms and cfg.site_of(s).id == site.id]


def _night_exits(cfg, site, series, real, room_name):
    """Exit doors opened at night: how often per door (records), and every ``night_exit`` alert with its outcome."""
    ns, ne = dtime.fromisoformat(cfg.rules.night_start), dtime.fromisoformat(cfg.rules.night_end)
    exits = {s.id: s for s in cfg.sensors if s.kind == "door" and getattr(s, "exit", False)
             and cfg.site_of(s).id == site.id}
    openings = Counter()
    for at, door in series.door_opens:
        t = datetime.fromtimestamp(at, site.tz).time()
        if door in exits and (t >= ns or t < ne if ns > ne else ns <= t < ne):
            openings[door] += 1
    by_door = {exits[d].name: (room_name(exits[d].room), openings[d]) for d in exits}
    alerts = [NightExit(a.first_at, exits[a.detail["device"]].name if a.detail.get("device") in exits else
                        a.detail.get("device") or "", room_name(a.room), a.id,
                        "confirmed" if a.severity == "critical" else a.state) for a in real if a.rule == "night_exit"]
    return by_door, alerts


def _register(register: Register, site: Site, start: float, until: float):
    rows, counts = [], Counter()
    month = f"{datetime.fromtimestamp(start, site.tz):%Y-%m}"
    hazards = [h for h in register.list({site.id}, site=site.id)
               if h.created_at < until or h.evidence.get("month") == month]  # a month's missed drills: listed after it
    trails = register.trails([h.id for h in hazards])
    for h in sorted(hazards, key=lambda h: h.id):
        status = next((t["status"] for t in reversed(trails[h.id]) if t["at"] < max(until, h.created_at + 1)), "open")
        closed_at = next((t["at"] for t in trails[h.id] if t["status"] == "closed"), None)
        overdue = status in WAITING and h.deadline_at < until
        new = start <= h.created_at < until or h.evidence.get("month") == month
        closed = closed_at is not None and start <= closed_at < until
        if status == "closed" and not closed:
            continue  # closed before the month: not this month's business
        counts["new"] += new
        counts["closed"] += closed
        counts["overdue"] += overdue
        counts["open"] += status != "closed"
        counts["major_open"] += h.major and status != "closed"
        counts["awaiting_verification"] += status == "submitted"
        counts["verified"] += status in DONE
        rows.append(RegisterRow(h.id, site.room(h.room).name if h.room and site.room(h.room) else h.room, h.category,
                                h.description, h.source, h.major, h.deadline_at, h.responsible, status, overdue,
                                h.created_at, closed_at))
    return rows, {k: counts[k] for k in ("new", "closed", "overdue", "open", "major_open", "awaiting_verification")}
