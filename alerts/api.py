"""The HTTP API and the duty board (值班看板).

``GET /health``                       the pipeline's own health (without a token outside local use: alive or not)
``GET /api/me``                       who the token belongs to, with role, sites and permissions
``GET /api/alerts``                   alerts of the caller's sites (filters: state, site, severity, rule,
                                      drill, since, until, all)
``GET /api/alerts/{id}``              one alert with audit trail, deliveries, escalation and breaches
``GET /api/alerts/{id}/audit``        its audit trail (签字留痕)
``POST /api/alerts/{id}/acknowledge`` ``/resolve`` ``/dismiss`` ``/confirm`` — with a note (a reason to dismiss)
``POST /api/alerts/{id}/notes``       a note in the audit trail, the state unchanged: alerts/api_notes.py
``GET /api/sites/{site}``             rooms with their devices' last values, gateways: alerts/api_sites.py
``GET /api/stats``                    open alerts by severity, drills apart, breaches, failed deliveries
``GET|POST /api/maintenance``, ``DELETE /api/maintenance/{id}`` — maintenance windows
``/api/hazards``                      the hazard register (问题清单): alerts/register/api.py
``/api/reports``                      the monthly reports and their SHA-256: alerts/reports/api.py
``GET /api/board``                    the board's settings: demo or not, how to get a token, false-alarm reasons
``GET /``                             the duty board page

Bearer-token authentication with roles and site scopes: :mod:`.auth`. The API opens the same
SQLite file as the engine (WAL lets both work at once), so it runs in its own process; what it
queues (notices of an acknowledgement) the engine's dispatcher sends. OpenAPI docs at ``/docs`` (Swagger UI served locally: alerts/api_board.py).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel

from stationwatch.core.config import StationConfig
from stationwatch.core.metrics import prometheus_text

from . import api_limits
from .api_board import board_api, install_docs
from .api_notes import notes
from .api_sites import sites
from .api_alerts import alerts, maintenance, me, stats
from .auth import Auth, Principal
from .register.api import hazards
from .reports.api import reports
from .store import ENGINE, Store

log = logging.getLogger(__name__)
API = "api"  # the service name of the API's heartbeat


class EngineOut(BaseModel):
    alive: bool
    last_seen_s: float | None  # seconds since the engine's last heartbeat; None: never seen
    connected: bool | None  # to the MQTT broker, as the engine last reported
    received: int = 0
    quarantined: int = 0
    quarantine: dict[str, int] = {}


class HopOut(BaseModel):
    hop: str  # broker, ingest, influxdb, api, watcher (the engine's view); alerts, dispatcher (their rows)
    alive: bool
    last_s: float | None  # seconds since its last heartbeat (None: never)
    down_since: float | None  # Unix time it has been silent since, while it is


class AliveOut(BaseModel):
    """What anyone may know: whether the pipeline is alive (no sites, no counts)."""
    status: str  # ok | degraded
    at: float


class HealthOut(AliveOut):
    problems: list[str]
    pipeline: list[HopOut] = []
    store: bool
    engine: EngineOut
    counts: dict[str, int]
    outbox: dict[str, int]  # notices queued, failed
    gateways: list[dict[str, Any]]


health = APIRouter(tags=["health"])
board = APIRouter(tags=["duty board"])


@health.get("/health", response_model=HealthOut | AliveOut,
            responses={503: {"model": HealthOut | AliveOut, "description": "degraded: store or engine not working"}})
def get_health(request: Request) -> JSONResponse:
    """Is the alert pipeline itself alive? 503 when the store is unreachable or the engine's
    heartbeat is older than ``api.engine_stale_s`` (a dead engine is an alarm, not a quiet board).
    With a token: the details, counts and gateways of the caller's sites; without one, outside
    local use, only ``status`` and ``at``."""
    store: Store = request.app.state.store
    caller = _caller(request)
    stale_s = request.app.state.cfg.api.engine_stale_s
    problems: list[str] = []
    reachable = store.ping()
    beat = store.last_beat(ENGINE) if reachable else None
    age = None if beat is None else max(0.0, time.time() - beat[0])
    info = beat[1] if beat else {}
    engine = EngineOut(alive=age is not None and age <= stale_s,
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
    queue = {"queued": 0, "failed": 0}
    if reachable:
        for row in store.query("SELECT state, COUNT(*) n FROM outbox WHERE state IN ('queued', 'sending', 'failed')"
                               " GROUP BY state"):
            queue["failed" if row["state"] == "failed" else "queued"] += row["n"]
    hops = _hops(store, request.app.state.cfg) if reachable else []
    problems += [f"{HOP_WORDS.get(h.hop, h.hop)} 无心跳 / {h.hop} silent" for h in hops if not h.alive]
    status = 503 if problems else 200
    if caller is None:
        return JSONResponse(AliveOut(status="degraded" if problems else "ok", at=time.time()).model_dump(),
                            status_code=status)
    sites = set(caller.sites)
    body = HealthOut(status="degraded" if problems else "ok", problems=problems, pipeline=hops, store=reachable,
                     engine=engine, counts=store.counts(sites) if reachable else {}, outbox=queue,
                     gateways=[g for g in store.gateways() if g["site"] in sites] if reachable else [], at=time.time())
    return JSONResponse(body.model_dump(), status_code=status)


def _caller(request: Request) -> Principal | None:
    """Who asks for /health: the token's user, the local wall board, or nobody to tell details to.
    Read here rather than declared, so /health stays a public route of the OpenAPI."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return request.app.state.auth.principal(token.strip() if scheme.lower() == "bearer" else None)


HOP_WORDS = {"broker": "消息服务器", "ingest": "入库服务", "influxdb": "时序数据库", "api": "接口", "watcher": "看护进程",
             "alerts": "告警引擎", "dispatcher": "告警推送"}


def _hops(store: Store, cfg: StationConfig) -> list[HopOut]:
    """Each hop as the engine sees it (its memory: ``hop`` last beat, ``hop_down`` since when), and
    the engine's own rows; for the pipeline banner of the duty board."""
    now, out = time.time(), []
    rows = {(r["ns"], r["key"]): json.loads(r["value"]) for r in
            store.query("SELECT ns, key, value FROM memory WHERE ns IN ('hop', 'hop_down')")}
    for (ns, hop), last in sorted(rows.items()):
        if ns == "hop":
            down = rows.get(("hop_down", hop))
            out.append(HopOut(hop=hop, alive=down is None, last_s=round(max(0.0, now - last), 1), down_since=down))
    for service in ("dispatcher",):
        beat = store.last_beat(service)
        if beat is not None:
            age = max(0.0, now - beat[0])
            alive = age <= cfg.supervision.grace(service)
            out.append(HopOut(hop=service, alive=alive, last_s=round(age, 1), down_since=None if alive else beat[0]))
    return out


@board.get("/", response_class=HTMLResponse, include_in_schema=False)
def duty_board(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.board_html)


@health.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text: the age of every service's heartbeat in the store (engine, dispatcher, API,
    watcher, and the hops the engine reports) and the open alerts by severity."""
    store: Store = request.app.state.store
    now = time.time()
    ages = {r["service"]: max(0.0, now - r["at"]) for r in store.query("SELECT service, at FROM heartbeat")}
    counts = {k: float(v) for k, v in store.counts().items()}
    return PlainTextResponse(prometheus_text("api", {"up": 1.0}, {"beat_age_seconds": ages, "open_alerts": counts},
                                             label="service") .replace('open_alerts{service=', 'open_alerts{severity='),
                             media_type="text/plain; version=0.0.4")


def _beating(store: Store, every_s: float, stop: threading.Event) -> None:
    """The API's heartbeat in the store (the engine supervises the ``api`` hop from it)."""
    while True:
        try:
            store.beat(API, {"pid": os.getpid()})
        except Exception as exc:  # noqa: BLE001 — a busy store: next time
            log.debug("API heartbeat not written: %s", exc)
        if stop.wait(every_s):
            return


def create_app(cfg: StationConfig, db_path: str | Path) -> FastAPI:
    """The API and duty board over the alert store at ``db_path``."""
    store = Store(db_path)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        threading.Thread(target=_beating, args=(store, cfg.supervision.beat_s, stop), name="api-beat", daemon=True).start()
        yield
        stop.set()
        store.close()

    app = FastAPI(title="StationWatch 告警 / alerts", version="2", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="救助管理站安全监测告警接口 — alerts of the relief-station safety monitoring. "
                              "Authenticate with `Authorization: Bearer <token>` (`stationwatch token`).")
    app.state.cfg = cfg
    app.state.store = store
    app.state.config_version = None  # the centre's config version (`serve` sets it): gateways are compared to it
    app.state.auth = Auth(cfg)
    app.state.board_html = files("stationwatch.dashboards").joinpath("board.html").read_text(encoding="utf-8")
    api_limits.install(app)
    install_docs(app)  # Swagger UI from local files: /docs works without the internet
    for router in (health, me, alerts, notes, sites, stats, maintenance, hazards, reports, board_api, board):
        app.include_router(router)
    return app


def reload(app: FastAPI, cfg: StationConfig) -> None:
    """A changed config for the running API (SIGHUP to ``stationwatch serve``): users, their tokens
    and expiry, sites and settings take effect with the next request."""
    app.state.auth, app.state.cfg = Auth(cfg), cfg
    log.info("config reloaded: %d user(s)", len(cfg.users))
