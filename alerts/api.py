"""The HTTP API and the duty board (值班看板).

``GET /health``            the pipeline's own health: store reachable, engine heartbeat age
``GET /api/alerts``        active alerts, newest first (filters: state, site, severity; all=true)
``GET /api/alerts/{id}``   one alert with its audit trail and notification deliveries
``GET /``                  the duty board page

Read-only for now: acknowledging and authentication come with the next issue. The API opens the
same SQLite file as the engine (WAL lets both work at once), so it may run in its own process.
OpenAPI documentation is at ``/docs``.
"""
from __future__ import annotations

import time
from contextlib import asynccontextmanager
from datetime import datetime
from enum import StrEnum
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from stationwatch.broker.config import StationConfig

from .store import ENGINE, SEVERITIES, STATES, Alert, Store

ENGINE_STALE_S = 15.0  # no engine heartbeat for this long → the engine counts as dead

StateFilter = StrEnum("StateFilter", {s: s for s in STATES})
SeverityFilter = StrEnum("SeverityFilter", {s: s for s in SEVERITIES})


class AlertOut(BaseModel):
    id: int
    rule: str
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
    title_zh: str
    title_en: str
    detail: dict[str, Any]
    count: int
    drill: bool
    first_at: float
    first_at_local: str
    last_at: float
    last_at_local: str
    acknowledged_at: float | None
    acknowledged_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    resolution: str | None


class AuditOut(BaseModel):
    at: float
    actor: str
    action: str
    note: str


class DeliveryOut(BaseModel):
    contact: str
    channel: str  # secrets redacted
    severity: str
    state: str  # pending, sent, failed
    attempts: int
    last_error: str | None
    at: float


class AlertDetailOut(AlertOut):
    audit: list[AuditOut]
    deliveries: list[DeliveryOut]


class EngineOut(BaseModel):
    alive: bool
    last_seen_s: float | None  # seconds since the engine's last heartbeat; None: never seen
    connected: bool | None  # to the MQTT broker, as the engine last reported
    received: int = 0
    quarantined: int = 0
    quarantine: dict[str, int] = {}


class HealthOut(BaseModel):
    status: str  # ok | degraded
    problems: list[str]
    store: bool
    engine: EngineOut
    counts: dict[str, int]
    gateways: list[dict[str, Any]]
    at: float


def _store(request: Request) -> Store:
    return request.app.state.store


def _cfg(request: Request) -> StationConfig:
    return request.app.state.cfg


StoreDep = Annotated[Store, Depends(_store)]
ConfigDep = Annotated[StationConfig, Depends(_cfg)]


def alert_out(cfg: StationConfig, alert: Alert, trail: bool = False) -> AlertOut:
    site = cfg.site(alert.site)
    room = site.room(alert.room) if site is not None and alert.room else None
    tz = site.tz if site is not None else None
    local = lambda t: datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")  # noqa: E731
    sev = SEVERITIES[alert.severity]
    data = {k: v for k, v in vars(alert).items() if k not in ("audit", "deliveries", "created_at")}
    data.update(site_name=site.name if site else alert.site, room_name=room.name if room else None,
                severity_rank=sev.rank, severity_zh=sev.zh, severity_en=sev.en,
                first_at_local=local(alert.first_at), last_at_local=local(alert.last_at))
    if trail:
        return AlertDetailOut(**data, audit=alert.audit, deliveries=alert.deliveries)
    return AlertOut(**data)


# ---- routers, one per resource ---------------------------------------------------------------
health = APIRouter(tags=["health"])
alerts = APIRouter(prefix="/api/alerts", tags=["alerts"])
board = APIRouter(tags=["duty board"])


@health.get("/health", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "degraded: store or engine not working"}})
def get_health(store: StoreDep) -> JSONResponse:
    """Is the alert pipeline itself alive? 503 when the store is unreachable or the engine's
    heartbeat is older than 15 s (a dead engine is an alarm, not a quiet board)."""
    problems: list[str] = []
    reachable = store.ping()
    beat = store.last_beat(ENGINE) if reachable else None
    age = None if beat is None else max(0.0, time.time() - beat[0])
    info = beat[1] if beat else {}
    engine = EngineOut(alive=age is not None and age <= ENGINE_STALE_S,
                       last_seen_s=None if age is None else round(age, 1), connected=info.get("connected"),
                       received=info.get("received", 0), quarantined=info.get("quarantined", 0),
                       quarantine=info.get("quarantine", {}))
    if not reachable:
        problems.append("告警库无法访问 / alert store unreachable")
    if not engine.alive:
        problems.append("告警引擎无心跳 / alert engine not running" if age is None else
                        f"告警引擎 {age:.0f} 秒无心跳 / alert engine silent for {age:.0f} s")
    if engine.alive and engine.connected is False:
        problems.append("告警引擎未连接消息服务器 / alert engine not connected to the MQTT broker")
    body = HealthOut(status="degraded" if problems else "ok", problems=problems, store=reachable, engine=engine,
                     counts=store.counts() if reachable else {}, gateways=store.gateways() if reachable else [],
                     at=time.time())
    return JSONResponse(body.model_dump(), status_code=503 if problems else 200)


@alerts.get("", response_model=list[AlertOut])
def list_alerts(store: StoreDep, cfg: ConfigDep,
                state: Annotated[StateFilter | None, Query(description="firing, acknowledged or resolved")] = None,
                site: Annotated[str | None, Query(description="site id from the config")] = None,
                severity: Annotated[SeverityFilter | None, Query(description="critical, pre_alarm, major, warning")] = None,
                all: Annotated[bool, Query(description="include resolved alerts")] = False,  # noqa: A002
                limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[AlertOut]:
    """Active alerts, most recently raised first. ``all=true`` adds resolved ones."""
    if site is not None and cfg.site(site) is None:
        known = ", ".join(s.id for s in cfg.sites)
        raise HTTPException(422, [{"loc": ["query", "site"], "type": "value_error",
                                   "msg": f"unknown site '{site[:64]}' / 站点不存在; known sites: {known}"}])
    found = store.alerts(include_resolved=all, state=state.value if state else None, site=site,
                         severity=severity.value if severity else None, limit=limit)
    return [alert_out(cfg, a) for a in found]


@alerts.get("/{alert_id}", response_model=AlertDetailOut, responses={404: {"description": "no such alert"}})
def get_alert(alert_id: int, store: StoreDep, cfg: ConfigDep) -> AlertOut:
    """One alert with its audit trail (every transition) and its notification deliveries."""
    alert = store.get(alert_id, with_trail=True)
    if alert is None:
        raise HTTPException(404, f"no alert #{alert_id} / 告警 #{alert_id} 不存在")
    return alert_out(cfg, alert, trail=True)


@board.get("/", response_class=HTMLResponse, include_in_schema=False)
def duty_board(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.board_html)


def create_app(cfg: StationConfig, db_path: str | Path) -> FastAPI:
    """The API and duty board over the alert store at ``db_path``."""
    store = Store(db_path)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(title="StationWatch 告警 / alerts", version="1", lifespan=lifespan,
                  description="救助管理站安全监测告警接口 — alerts of the relief-station safety monitoring. "
                              "Read-only; acknowledgement comes later.")
    app.state.cfg = cfg
    app.state.store = store
    app.state.board_html = files("stationwatch.dashboards").joinpath("board.html").read_text(encoding="utf-8")
    for router in (health, alerts, board):
        app.include_router(router)
    return app
