"""The alert resources of the API, one router each: ``/api/me``, ``/api/alerts``, ``/api/stats`` and
``/api/maintenance``. Every route takes the caller (:data:`~.auth.CurrentUser`) and checks the action
and the site with :func:`~.auth.forbid` before touching the store.
"""
from __future__ import annotations

import time
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from stationwatch.core.alert_types import ALERT_TYPES, SEVERITIES, STATES
from stationwatch.core.config import CENTRE, CENTRE_NAME, StationConfig

from . import outbox
from .auth import CurrentUser, Permission, Principal, forbid
from .escalation import where
from .silences import Silences
from .store import Alert, AlertError, Conflict, Escalation, NotFound, Store

StateFilter = StrEnum("StateFilter", {s: s for s in STATES})
SeverityFilter = StrEnum("SeverityFilter", {s: s for s in SEVERITIES})
RuleFilter = StrEnum("RuleFilter", {k: k for k in ALERT_TYPES})


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
    due_at: float | None  # the current level's acknowledgement deadline (None: top reached, or stopped)
    due_in_s: float | None
    notified: list[int]


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
    note: Annotated[str, Field(max_length=2000)] = ""


class ReasonIn(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=2000, description="why it is a false alarm (误报原因)")]


class WindowIn(BaseModel):
    site: str
    room: str | None = None
    devices: list[str] = []
    starts_at: float | None = None  # Unix time; default now
    ends_at: float
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class WindowOut(BaseModel):
    id: str
    site: str
    room: str | None
    devices: list[str]
    starts_at: float
    ends_at: float
    reason: str
    created_by: str


def _escalation(cfg: StationConfig, esc: Escalation | None) -> EscalationOut | None:
    if esc is None:
        return None
    level_name, levels = where(cfg, esc)
    return EscalationOut(policy=esc.policy, level=esc.level, level_name=level_name, levels=levels, due_at=esc.due_at,
                         due_in_s=None if esc.due_at is None else round(esc.due_at - time.time(), 1),
                         notified=list(esc.notified))


def alert_out(cfg: StationConfig, alert: Alert, esc: Escalation | None = None, breaches: int = 0,
              trail: bool = False) -> AlertOut:
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
                escalation=_escalation(cfg, esc) if alert.state == "firing" or trail else None, breaches=breaches)
    if trail:
        return AlertDetailOut(**data, audit=alert.audit, deliveries=alert.deliveries, breach_list=alert.breaches)
    return AlertOut(**data)


def _get(store: Store, principal: Principal, alert_id: int, permission: Permission = Permission.READ) -> Alert:
    alert = store.get(alert_id)
    if alert is None:
        raise HTTPException(404, f"告警 #{alert_id} 不存在 / no alert #{alert_id}")
    forbid(principal, Permission.READ, alert.site)
    forbid(principal, permission, alert.site)
    return alert


def _unknown_site(cfg: StationConfig, site: str) -> HTTPException:
    known = ", ".join(s.id for s in cfg.sites)
    return HTTPException(422, [{"loc": ["query", "site"], "type": "value_error",
                                "msg": f"unknown site '{site[:64]}' / 站点不存在; known sites: {known}"}])


# ---- /api/me ---------------------------------------------------------------------------------
me = APIRouter(prefix="/api/me", tags=["auth"])


@me.get("", response_model=MeOut)
def who_am_i(principal: CurrentUser) -> MeOut:
    """The caller's role, sites and permissions (the duty board shows its buttons from these)."""
    return MeOut(id=principal.id, name=principal.name, role=principal.role,
                 sites=sorted(s for s in principal.sites if s != CENTRE),  # the centre's alerts: everyone's
                 permissions=sorted(principal.permissions))


# ---- /api/alerts -----------------------------------------------------------------------------
alerts = APIRouter(prefix="/api/alerts", tags=["alerts"],
                   responses={401: {"description": "missing or invalid token"},
                              403: {"description": "not allowed for this role or site"}})


@alerts.get("", response_model=list[AlertOut])
def list_alerts(store: StoreDep, cfg: ConfigDep, principal: CurrentUser,
                state: Annotated[StateFilter | None, Query(description="pending, firing, acknowledged, resolved, dismissed")] = None,
                site: Annotated[str | None, Query(description="site id from the config")] = None,
                severity: Annotated[SeverityFilter | None, Query(description="critical, pre_alarm, major, warning")] = None,
                rule: Annotated[RuleFilter | None, Query(description="fire, night_exit, cold_room …")] = None,
                drill: Annotated[bool | None, Query(description="only drills (true) or only real alerts (false)")] = None,
                since: Annotated[float | None, Query(description="first_at ≥ (Unix time)")] = None,
                until: Annotated[float | None, Query(description="first_at < (Unix time)")] = None,
                all: Annotated[bool, Query(description="include closed alerts")] = False,  # noqa: A002
                limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[AlertOut]:
    """Open alerts of the caller's sites, most recently raised first; ``all=true`` adds closed ones."""
    if site is not None:
        if cfg.site(site) is None:
            raise _unknown_site(cfg, site)
        forbid(principal, Permission.READ, site)
    found = store.alerts(include_resolved=all, state=state.value if state else None, site=site,
                         sites=set(principal.sites), severity=severity.value if severity else None,
                         rule=rule.value if rule else None, drill=drill, since=since, until=until, limit=limit)
    ids = [a.id for a in found]
    escs, breaches = store.escalations(ids), store.breach_counts(ids)
    return [alert_out(cfg, a, escs.get(a.id), breaches.get(a.id, 0)) for a in found]


@alerts.get("/{alert_id}", response_model=AlertDetailOut, responses={404: {"description": "no such alert"}})
def get_alert(alert_id: int, store: StoreDep, cfg: ConfigDep, principal: CurrentUser) -> AlertOut:
    """One alert with its audit trail, deliveries (failures included), escalation and breaches."""
    _get(store, principal, alert_id)
    alert = store.get(alert_id, with_trail=True)
    return alert_out(cfg, alert, store.escalation(alert_id), len(alert.breaches), trail=True)


@alerts.get("/{alert_id}/audit", response_model=list[AuditOut])
def get_audit(alert_id: int, store: StoreDep, principal: CurrentUser) -> list[dict]:
    """Every transition of the alert: who, when, what, and the note (签字留痕). Append-only."""
    _get(store, principal, alert_id)
    return store.trail(alert_id)


def _act(request: Request, principal: Principal, alert_id: int, permission: Permission,
         do: Callable[[Store, str], Alert], notice: str | None, note: str) -> AlertOut:
    store: Store = request.app.state.store
    cfg: StationConfig = request.app.state.cfg
    alert = _get(store, principal, alert_id, permission)
    if permission is Permission.DISMISS and alert.severity == "critical":
        forbid(principal, Permission.DISMISS_CRITICAL, alert.site)
    try:
        with store.tx() as db:
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
        raise HTTPException(422, str(exc)) from None
    return alert_out(cfg, changed)


@alerts.post("/{alert_id}/acknowledge", response_model=AlertOut, responses={409: {"description": "not firing"}})
def acknowledge(alert_id: int, body: NoteIn, request: Request, principal: CurrentUser) -> AlertOut:
    """I have seen it and I am handling it (已确认): the climb up the reporting chain stops."""
    return _act(request, principal, alert_id, Permission.ACKNOWLEDGE,
                lambda s, actor: s.acknowledge(alert_id, actor, body.note), "acknowledged", body.note)


@alerts.post("/{alert_id}/resolve", response_model=AlertOut, responses={409: {"description": "already closed"}})
def resolve(alert_id: int, body: NoteIn, request: Request, principal: CurrentUser) -> AlertOut:
    """Handled (处置完毕), with what was done."""
    return _act(request, principal, alert_id, Permission.RESOLVE,
                lambda s, actor: s.resolve(alert_id, actor, body.note), "resolved", body.note)


@alerts.post("/{alert_id}/dismiss", response_model=AlertOut, responses={409: {"description": "already closed"}})
def dismiss(alert_id: int, body: ReasonIn, request: Request, principal: CurrentUser) -> AlertOut:
    """A false alarm (误报), with the reason. A critical alert only by a leader, the bureau or an admin."""
    return _act(request, principal, alert_id, Permission.DISMISS,
                lambda s, actor: s.dismiss(alert_id, actor, body.reason), "dismissed", body.reason)


@alerts.post("/{alert_id}/confirm", response_model=AlertOut, responses={409: {"description": "not open"}})
def confirm(alert_id: int, body: NoteIn, request: Request, principal: CurrentUser) -> AlertOut:
    """Checked on site (复核) and real: the alert becomes critical and goes up the chain as such."""
    return _act(request, principal, alert_id, Permission.CONFIRM,
                lambda s, actor: s.confirm(alert_id, actor, body.note), None, body.note)


# ---- /api/stats ------------------------------------------------------------------------------
stats = APIRouter(prefix="/api/stats", tags=["alerts"])


@stats.get("", response_model=dict[str, int])
def get_stats(store: StoreDep, cfg: ConfigDep, principal: CurrentUser,
              site: Annotated[str | None, Query(description="one site; default all of the caller's")] = None) -> dict:
    """Open alerts by severity (real ones), drills counted apart, breaches and failed deliveries."""
    if site is not None:
        if cfg.site(site) is None:
            raise _unknown_site(cfg, site)
        forbid(principal, Permission.READ, site)
    return store.counts({site} if site else set(principal.sites))


# ---- /api/maintenance ------------------------------------------------------------------------
maintenance = APIRouter(prefix="/api/maintenance", tags=["maintenance"])


def _silences(request: Request) -> Silences:
    return Silences(request.app.state.cfg, request.app.state.store)


SilencesDep = Annotated[Silences, Depends(_silences)]


@maintenance.get("", response_model=list[WindowOut])
def list_windows(silences: SilencesDep, principal: CurrentUser) -> list[dict]:
    """Maintenance windows not yet over, of the caller's sites."""
    now = time.time()
    return [w.as_dict() for w in silences.windows(sites=set(principal.sites)) if w.ends_at > now]


@maintenance.post("", response_model=WindowOut, status_code=201)
def create_window(body: WindowIn, silences: SilencesDep, cfg: ConfigDep, principal: CurrentUser) -> dict:
    """Silence a site, a room or some devices for a time, with a reason (检修)."""
    site = cfg.site(body.site)
    if site is None:
        raise _unknown_site(cfg, body.site)
    forbid(principal, Permission.SILENCE, site.id)
    if body.room is not None and site.room(body.room) is None:
        raise HTTPException(422, f"站点 {site.id} 没有房间 {body.room} / no room '{body.room}' in site '{site.id}'")
    unknown = [d for d in body.devices if d not in {x.id for x in [*cfg.sensors, *cfg.cameras]
                                                    if cfg.site_of(x).id == site.id}]
    if unknown:
        raise HTTPException(422, f"站点 {site.id} 没有设备 {', '.join(unknown)} / unknown devices")
    try:
        window = silences.create(site.id, body.room, body.devices, body.starts_at or time.time(), body.ends_at,
                                 body.reason, principal.actor)
    except Conflict as exc:
        raise HTTPException(422, str(exc)) from None
    return window.as_dict()


@maintenance.delete("/{window_id}", response_model=WindowOut)
def end_window(window_id: str, silences: SilencesDep, principal: CurrentUser) -> dict:
    """End a maintenance window now."""
    found = next((w for w in silences.windows() if w.id == window_id), None)
    if found is None:
        raise HTTPException(404, f"维护窗口 {window_id} 不存在 / no maintenance window {window_id}")
    forbid(principal, Permission.SILENCE, found.site)
    try:
        return silences.end(window_id, principal.actor).as_dict()
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
