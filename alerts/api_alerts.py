"""The alert resources of the API, one router each: ``/api/me``, ``/api/alerts``, ``/api/stats`` and
``/api/maintenance``. Every route takes the caller (:data:`~.auth.CurrentUser`) and checks the action
and the site with :func:`~.auth.forbid` before touching the store.
"""
from __future__ import annotations

import time
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from stationwatch.core.alert_types import ALERT_TYPES, SEVERITIES, STATES
from stationwatch.core.config import CENTRE, CENTRE_NAME, StationConfig

from . import outbox
from .api_limits import IDENT, MAX_DEVICES, MAX_ID, Ident, UnixTime, errors, invalid, text
from .auth import CurrentUser, Permission, Principal, forbid
from .escalation import where
from .latest import latest
from .silences import Silences
from .store import Alert, AlertError, Conflict, Escalation, NotFound, Store

StateFilter = StrEnum("StateFilter", {s: s for s in STATES})
SeverityFilter = StrEnum("SeverityFilter", {s: s for s in SEVERITIES})
RuleFilter = StrEnum("RuleFilter", {k: k for k in ALERT_TYPES})
AlertId = Annotated[int, Path(ge=1, le=MAX_ID, description="alert number (告警编号)", examples=[1])]
SiteQuery = Annotated[str | None, Query(pattern=IDENT, description="site id from the config")]


def _store(request: Request) -> Store:
    return request.app.state.store


def _cfg(request: Request) -> StationConfig:
    return request.app.state.cfg


StoreDep = Annotated[Store, Depends(_store)]
ConfigDep = Annotated[StationConfig, Depends(_cfg)]


class EscalationOut(BaseModel):
    policy: str
    level: int
    level_name: str
    levels: int
    due_at: float | None  # the current level's acknowledgement deadline (None: top reached, or the climb stopped)
    due_in_s: float | None  # seconds left, never below 0 (None: no deadline remains)
    overdue_s: float = 0.0  # how long the deadline has been missed (the next level is being told)
    stopped: bool = False  # acknowledged or closed: the climb stopped, no deadline remains
    notified: list[int]


class CurrentOut(BaseModel):
    value: float
    unit: str | None
    at: float  # the time of that reading


class AlertOut(BaseModel):
    id: int
    rule: str
    rule_zh: str
    subject: str
    site: str
    site_name: str
    room: str | None
    room_name: str | None
    zone: str | None
    severity: str
    severity_rank: int
    severity_zh: str
    severity_en: str
    state: str
    state_zh: str
    state_en: str
    title_zh: str
    title_en: str
    detail: dict[str, Any]
    count: int
    drill: bool
    flaps: int
    silenced_by: str | None
    first_at: float
    first_at_local: str
    last_at: float
    last_at_local: str
    fired_at: float | None
    acknowledged_at: float | None
    acknowledged_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    resolution: str | None
    escalation: EscalationOut | None = None
    breaches: int = 0
    current: CurrentOut | None = None  # a measured alert (a cold room …): its device's value now, not when it began


class AuditOut(BaseModel):
    at: float
    actor: str
    action: str
    note: str


class DeliveryOut(BaseModel):
    contact: str
    channel: str  # secrets redacted
    kind: str | None  # new, escalation, reminder …
    level: int | None
    severity: str
    state: str  # pending (retrying), sent, failed
    attempts: int
    last_error: str | None
    digest: int  # > 0: sent inside a digest of that many notices
    at: float


class BreachOut(BaseModel):
    level: int
    level_name: str
    due_at: float
    at: float
    reason: str  # deadline | undeliverable


class AlertDetailOut(AlertOut):
    audit: list[AuditOut]
    deliveries: list[DeliveryOut]
    breach_list: list[BreachOut]


class MeOut(BaseModel):
    id: str
    name: str
    role: str
    sites: list[str]
    permissions: list[str]


class NoteIn(BaseModel):
    note: text(2000) = ""


class ReasonIn(BaseModel):
    reason: text(2000, 1, "why it is a false alarm (误报原因)", blank=False)


class WindowIn(BaseModel):
    site: Ident
    room: Ident | None = None
    devices: Annotated[list[Ident], Field(max_length=MAX_DEVICES)] = []
    starts_at: UnixTime | None = None  # default now
    ends_at: UnixTime
    reason: text(500, 1)


class WindowOut(BaseModel):
    id: str
    site: str
    room: str | None
    devices: list[str]
    starts_at: float
    ends_at: float
    reason: str
    created_by: str


def _escalation(cfg: StationConfig, esc: Escalation | None, state: str) -> EscalationOut | None:
    """Where the climb stands. Only a firing alert has a deadline left; an acknowledged or closed
    one keeps its levels reached and no deadline (never a negative countdown)."""
    if esc is None:
        return None
    level_name, levels = where(cfg, esc)
    due_at = esc.due_at if state == "firing" else None
    left = None if due_at is None else due_at - time.time()
    return EscalationOut(policy=esc.policy, level=esc.level, level_name=level_name, levels=levels, due_at=due_at,
                         due_in_s=None if left is None else round(max(0.0, left), 1),
                         overdue_s=0.0 if left is None else round(max(0.0, -left), 1), stopped=state != "firing",
                         notified=list(esc.notified))


def _current(alert: Alert, last: dict[str, dict[str, Any]]) -> CurrentOut | None:
    now = last.get(alert.detail.get("device") or "") if "value" in alert.detail else None
    if not now or now.get("value") is None:
        return None
    return CurrentOut(value=now["value"], unit=now.get("unit"), at=now["ts"])


def alert_out(cfg: StationConfig, alert: Alert, esc: Escalation | None = None, breaches: int = 0,
              trail: bool = False, last: dict[str, dict[str, Any]] | None = None) -> AlertOut:
    site = cfg.site(alert.site)
    room = site.room(alert.room) if site is not None and alert.room else None
    tz = site.tz if site is not None else None
    local: Callable[[float], str] = lambda t: datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")  # noqa: E731
    sev, state = SEVERITIES[alert.severity], STATES[alert.state]
    data = {k: v for k, v in vars(alert).items() if k not in ("audit", "deliveries", "created_at", "escalation",
                                                             "breaches", "clearing_since")}
    data.update(site_name=site.name if site else CENTRE_NAME if alert.site == CENTRE else alert.site, room_name=room.name if room else None,
                rule_zh=ALERT_TYPES[alert.rule].zh if alert.rule in ALERT_TYPES else alert.rule,
                severity_rank=sev.rank, severity_zh=sev.zh, severity_en=sev.en, state_zh=state.zh,
                state_en=state.en, first_at_local=local(alert.first_at), last_at_local=local(alert.last_at),
                escalation=_escalation(cfg, esc, alert.state) if alert.state == "firing" or trail else None, breaches=breaches,
                current=_current(alert, last or {}))
    if trail:
        return AlertDetailOut(**data, audit=alert.audit, deliveries=alert.deliveries, breach_list=alert.breaches)
    return AlertOut(**data)


def _get(store: Store, principal: Principal, alert_id: int, permission: Permission = Permission.READ) -> Alert:
    alert = store.get(alert_id)
    if alert is None:
        raise HTTPException(404, f"告警 #{alert_id} 不存在 / no alert #{alert_id}")
    forbid(principal, Permission.READ, alert.site, name_site=False)
    forbid(principal, permission, alert.site, name_site=False)
    return alert


def _scope(cfg: StationConfig, principal: Principal, site: str, permission: Permission = Permission.READ) -> None:
    """403 unless the caller may take ``permission`` on ``site``; a site that does not exist gets the
    answer of one that is not theirs, so an answer never tells which sites there are."""
    forbid(principal, permission)
    if cfg.site(site) is None and site != CENTRE:
        raise HTTPException(403, f"站点 {site} 不存在或不在您的范围内 / site '{site}' does not exist or is not yours")
    forbid(principal, permission, site)


# ---- /api/me ---------------------------------------------------------------------------------
me = APIRouter(prefix="/api/me", tags=["auth"], responses=errors(401))


@me.get("", response_model=MeOut)
def who_am_i(principal: CurrentUser) -> MeOut:
    """The caller's role, sites and permissions (the duty board shows its buttons from these)."""
    return MeOut(id=principal.id, name=principal.name, role=principal.role,
                 sites=sorted(s for s in principal.sites if s != CENTRE),  # the centre's alerts: everyone's
                 permissions=sorted(principal.permissions))


# ---- /api/alerts -----------------------------------------------------------------------------
alerts = APIRouter(prefix="/api/alerts", tags=["alerts"], responses=errors(401, 403, 422))


@alerts.get("", response_model=list[AlertOut])
def list_alerts(store: StoreDep, cfg: ConfigDep, principal: CurrentUser,
                state: Annotated[StateFilter | None, Query(description="pending, firing, acknowledged, resolved, dismissed")] = None,
                site: SiteQuery = None,
                severity: Annotated[SeverityFilter | None, Query(description="critical, pre_alarm, major, warning")] = None,
                rule: Annotated[RuleFilter | None, Query(description="fire, night_exit, cold_room …")] = None,
                drill: Annotated[bool | None, Query(description="only drills (true) or only real alerts (false)")] = None,
                since: Annotated[UnixTime | None, Query(description="first_at ≥ (Unix time)")] = None,
                until: Annotated[UnixTime | None, Query(description="first_at < (Unix time)")] = None,
                all: Annotated[bool, Query(description="include closed alerts")] = False,  # noqa: A002
                limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[AlertOut]:
    """Open alerts of the caller's sites, most recently raised first; ``all=true`` adds closed ones."""
    if site is not None:
        _scope(cfg, principal, site)
    found = store.alerts(include_resolved=all, state=state.value if state else None, site=site,
                         sites=set(principal.sites), severity=severity.value if severity else None,
                         rule=rule.value if rule else None, drill=drill, since=since, until=until, limit=limit)
    ids = [a.id for a in found]
    escs, breaches = store.escalations(ids), store.breach_counts(ids)
    last = latest(store, cfg, (a.detail.get("device") for a in found if "value" in a.detail))
    return [alert_out(cfg, a, escs.get(a.id), breaches.get(a.id, 0), last=last) for a in found]


@alerts.get("/{alert_id}", response_model=AlertDetailOut, responses=errors(404))
def get_alert(alert_id: AlertId, store: StoreDep, cfg: ConfigDep, principal: CurrentUser) -> AlertOut:
    """One alert with its audit trail, deliveries (failures included), escalation and breaches."""
    _get(store, principal, alert_id)
    alert = store.get(alert_id, with_trail=True)
    return alert_out(cfg, alert, store.escalation(alert_id), len(alert.breaches), trail=True,
                     last=latest(store, cfg, [alert.detail.get("device")]))


@alerts.get("/{alert_id}/audit", response_model=list[AuditOut], responses=errors(404))
def get_audit(alert_id: AlertId, store: StoreDep, principal: CurrentUser) -> list[dict]:
    """Every transition of the alert: who, when, what, and the note (签字留痕). Append-only."""
    _get(store, principal, alert_id)
    return store.trail(alert_id)


def _act(request: Request, principal: Principal, alert_id: int, permission: Permission,
         do: Callable[[Store, str], Alert], notice: str | None, note: str) -> AlertOut:
    store: Store = request.app.state.store
    cfg: StationConfig = request.app.state.cfg
    try:
        with store.tx() as db:  # the state and severity checked and changed in one write transaction
            alert = _get(store, principal, alert_id, permission)
            if permission in (Permission.RESOLVE, Permission.DISMISS) and alert.severity == "critical":
                forbid(principal, Permission.CLOSE_CRITICAL, alert.site, name_site=False)
            changed = do(store, principal.actor)
            wanted = {"acknowledged": cfg.routing.notify_acknowledged}.get(notice or "", cfg.routing.notify_resolved)
            if notice is not None and wanted:
                outbox.enqueue(db, changed, outbox.told(db, alert_id), None, notice, store.clock(),
                               f"{principal.name}：{note}" if note else principal.name)
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except AlertError as exc:
        raise invalid(["body"], str(exc), "refused") from None
    return alert_out(cfg, changed)


@alerts.post("/{alert_id}/acknowledge", response_model=AlertOut, responses=errors(404, 409, 413))
def acknowledge(alert_id: AlertId, body: NoteIn, request: Request, principal: CurrentUser) -> AlertOut:
    """I have seen it and I am handling it (已确认): the climb up the reporting chain stops."""
    return _act(request, principal, alert_id, Permission.ACKNOWLEDGE,
                lambda s, actor: s.acknowledge(alert_id, actor, body.note), "acknowledged", body.note)


@alerts.post("/{alert_id}/resolve", response_model=AlertOut, responses=errors(404, 409, 413))
def resolve(alert_id: AlertId, body: NoteIn, request: Request, principal: CurrentUser) -> AlertOut:
    """Handled (处置完毕), with what was done. A critical alert only by a leader, the bureau or an admin."""
    return _act(request, principal, alert_id, Permission.RESOLVE,
                lambda s, actor: s.resolve(alert_id, actor, body.note), "resolved", body.note)


@alerts.post("/{alert_id}/dismiss", response_model=AlertOut, responses=errors(404, 409, 413))
def dismiss(alert_id: AlertId, body: ReasonIn, request: Request, principal: CurrentUser) -> AlertOut:
    """A false alarm (误报), with the reason. A critical alert only by a leader, the bureau or an admin."""
    return _act(request, principal, alert_id, Permission.DISMISS,
                lambda s, actor: s.dismiss(alert_id, actor, body.reason), "dismissed", body.reason)


@alerts.post("/{alert_id}/confirm", response_model=AlertOut, responses=errors(404, 409, 413))
def confirm(alert_id: AlertId, body: NoteIn, request: Request, principal: CurrentUser) -> AlertOut:
    """Checked on site (复核) and real: the alert becomes critical and goes up the chain as such."""
    return _act(request, principal, alert_id, Permission.CONFIRM,
                lambda s, actor: s.confirm(alert_id, actor, body.note), None, body.note)


# ---- /api/stats ------------------------------------------------------------------------------
stats = APIRouter(prefix="/api/stats", tags=["alerts"], responses=errors(401, 403, 422))


@stats.get("", response_model=dict[str, int])
def get_stats(store: StoreDep, cfg: ConfigDep, principal: CurrentUser,
              site: Annotated[str | None, Query(pattern=IDENT, description="one site; default all of the caller's")] = None) -> dict:
    """Open alerts by severity (real ones), drills counted apart, breaches and failed deliveries."""
    if site is not None:
        _scope(cfg, principal, site)
    return store.counts({site} if site else set(principal.sites))


# ---- /api/maintenance ------------------------------------------------------------------------
maintenance = APIRouter(prefix="/api/maintenance", tags=["maintenance"], responses=errors(401, 403, 422))


def _silences(request: Request) -> Silences:
    return Silences(request.app.state.cfg, request.app.state.store)


SilencesDep = Annotated[Silences, Depends(_silences)]


@maintenance.get("", response_model=list[WindowOut])
def list_windows(silences: SilencesDep, principal: CurrentUser) -> list[dict]:
    """Maintenance windows not yet over, of the caller's sites."""
    now = time.time()
    return [w.as_dict() for w in silences.windows(sites=set(principal.sites)) if w.ends_at > now]


@maintenance.post("", response_model=WindowOut, status_code=201, responses=errors(413))
def create_window(body: WindowIn, silences: SilencesDep, cfg: ConfigDep, principal: CurrentUser) -> dict:
    """Silence a site, a room or some devices for a time, with a reason (检修)."""
    _scope(cfg, principal, body.site, Permission.SILENCE)
    site = cfg.site(body.site)
    if site is None:  # the centre: not a place with rooms and devices
        raise invalid(["body", "site"], "监测中心不能设置维护窗口", "the monitoring centre has no maintenance windows")
    if body.room is not None and site.room(body.room) is None:
        raise invalid(["body", "room"], f"站点 {site.id} 没有房间 {body.room}", f"no room '{body.room}' in site '{site.id}'")
    here = {x.id for x in [*cfg.sensors, *cfg.cameras] if cfg.site_of(x).id == site.id}
    unknown = sorted(set(body.devices) - here)
    if unknown:
        shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise invalid(["body", "devices"], f"站点 {site.id} 没有设备 {shown}", f"no such devices in site '{site.id}': {shown}")
    starts_at = time.time() if body.starts_at is None else body.starts_at
    try:
        window = silences.create(site.id, body.room, body.devices, starts_at, body.ends_at, body.reason, principal.actor)
    except Conflict:
        raise invalid(["body", "ends_at"], "结束时间须晚于开始时间", "the window must end after it starts") from None
    return window.as_dict()


@maintenance.delete("/{window_id}", response_model=WindowOut, responses=errors(404, 409))
def end_window(window_id: Annotated[str, Path(pattern=r"^(api|cfg)-[0-9]{1,18}$", description="api-N or cfg-N")],
               silences: SilencesDep, principal: CurrentUser) -> dict:
    """End a maintenance window now."""
    found = next((w for w in silences.windows() if w.id == window_id), None)
    if found is None:
        raise HTTPException(404, f"维护窗口 {window_id} 不存在 / no maintenance window {window_id}")
    forbid(principal, Permission.SILENCE, found.site, name_site=False)
    try:
        return silences.end(window_id, principal.actor).as_dict()
    except NotFound as exc:  # ended meanwhile
        raise HTTPException(404, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
