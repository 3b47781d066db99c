"""``GET /api/sites/{site}``: the building, not just the alarms — each room with what its devices
said last (a temperature, a detector's or door's state, a camera's heartbeat), the stale and faulty
ones marked, and the site's gateways: online or lost since when, the local alarm, the config version
against the centre's, and their open health findings. Read from the engine's memory in the alert
store (``last``, ``seen``, ``gw_version``, ``local_alarm``: alerts/situation.py and memory.py, gateway_health.py)
and the open alerts; the readings' history is InfluxDB's (Grafana's station overview)."""
from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel

from stationwatch.core.config import Camera, StationConfig

from .api_alerts import _scope
from .api_limits import IDENT, errors
from .auth import CurrentUser
from .memory import unpack
from .store import Alert, Store

DEVICE_RULES = ("sensor_fault", "camera_offline")  # an open one marks its device faulty
GATEWAY_RULES = ("gateway_offline", "gateway_health", "gateway_patrol")
MEMORY = ("last", "seen", "seen_of", "gw_version", "local_alarm", "gw_seen")  # seen_of: seen, by gateway


class DeviceOut(BaseModel):
    id: str
    name: str
    kind: str  # temperature, smoke, door … or camera
    value: float | None  # a reading's value (None: a state, or a faulty reading)
    unit: str | None
    state: str | None  # alarm, normal, open, closed … ; a camera: online, offline
    quality: str | None  # a reading's quality: ok, fault, stale
    at: float | None  # the time of its last message (the gateway's clock); None: never heard
    seen_s: float | None  # seconds since the engine last heard it
    stale: bool  # not heard for longer than its limit (or never)
    fault: bool  # a faulty reading, or an open sensor_fault / camera_offline alert
    alerts: list[int]  # its open alerts


class RoomOut(BaseModel):
    id: str
    name: str
    kind: str
    devices: list[DeviceOut]
    alerts: int  # open alerts of the room


class LocalAlarmOut(BaseModel):
    state: str  # sounding, silenced, quiet
    by: str | None = None  # button, cmd:silence, cmd:ack
    detectors: list[str] = []


class GatewayOut(BaseModel):
    id: str
    name: str
    state: str | None  # online, offline; None: never heard
    since: float | None  # the time of that status
    reason: str | None  # offline: will (connection lost), shutdown
    heard_s: float | None  # seconds since the engine last heard anything from it
    local_alarm: LocalAlarmOut | None
    config_version: str | None  # as the gateway reported it in its birth
    central_version: str | None  # the centre's (None: the API does not know it)
    config_ok: bool | None  # the two agree (None: one of them unknown)
    findings: list[str]  # titles of its open gateway alerts (lost, health, patrol), Chinese / English


class SiteViewOut(BaseModel):
    id: str
    name: str
    at: float
    rooms: list[RoomOut]
    gateways: list[GatewayOut]


sites = APIRouter(prefix="/api/sites", tags=["sites"], responses=errors(401, 403, 422))


def _memory(store: Store) -> dict[str, dict[str, Any]]:
    marks = ",".join("?" * len(MEMORY))
    out: dict[str, dict[str, Any]] = {ns: {} for ns in MEMORY}
    for row in store.query(f"SELECT ns, key, value FROM memory WHERE ns IN ({marks})", MEMORY):
        out[row["ns"]][row["key"]] = json.loads(row["value"])
    return unpack(out)


def _limit(cfg: StationConfig, device: Any) -> float:
    """How long a device may be silent: the same limits as the engine's silence rules (alerts/liveness.py)."""
    if isinstance(device, Camera):
        return device.misses * device.heartbeat_s
    return max(cfg.rules.sensor_stale_s, cfg.rules.stale_intervals * device.interval_s)


def _device(cfg: StationConfig, device: Any, mem: dict[str, dict[str, Any]], open_: list[Alert], now: float) -> DeviceOut:
    last, seen = (mem["last"].get(device.gateway) or {}).get(device.id) or {}, mem["seen"].get(device.id)
    mine = [a for a in open_ if a.subject.split("/")[-1] == device.id or a.detail.get("device") == device.id]
    age = None if seen is None else round(max(0.0, now - seen), 1)
    faulty = last.get("quality") not in (None, "ok") or last.get("state") in ("fault", "offline") or \
        any(a.rule in DEVICE_RULES for a in mine)
    return DeviceOut(id=device.id, name=device.name, kind="camera" if isinstance(device, Camera) else device.kind,
                     value=last.get("value"), unit=last.get("unit"), state=last.get("state"), quality=last.get("quality"),
                     at=last.get("ts"), seen_s=age, stale=age is None or age > _limit(cfg, device), fault=faulty,
                     alerts=[a.id for a in mine])


def _gateway(gw: Any, status: dict | None, mem: dict[str, dict[str, Any]], open_: list[Alert], central: str | None,
             now: float) -> GatewayOut:
    heard = mem["gw_seen"].get(gw.id)
    alarm = mem["local_alarm"].get(gw.id)
    version = mem["gw_version"].get(gw.id)
    found = [a for a in open_ if a.rule in GATEWAY_RULES and (gw.id in a.subject.split("/") or a.detail.get("device") == gw.id)]
    return GatewayOut(id=gw.id, name=gw.name, state=status["state"] if status else None,
                      since=status["at"] if status else None, reason=status["reason"] if status else None,
                      heard_s=None if heard is None else round(max(0.0, now - heard), 1),
                      local_alarm=LocalAlarmOut(state=alarm.get("state", "quiet"), by=alarm.get("by"),
                                                detectors=alarm.get("detectors", [])) if isinstance(alarm, dict) else None,
                      config_version=version, central_version=central,
                      config_ok=None if version is None or central is None else version == central,
                      findings=[f"{a.title_zh} / {a.title_en}" for a in found])


@sites.get("/{site_id}", response_model=SiteViewOut)
def site_view(site_id: Annotated[str, Path(pattern=IDENT, description="site id from the config")],
              request: Request, principal: CurrentUser) -> SiteViewOut:
    """Each room of the site with its devices' last values, stale and faulty ones marked, and the
    site's gateways with their state, local alarm, config version and open findings."""
    cfg: StationConfig = request.app.state.cfg
    store: Store = request.app.state.store
    _scope(cfg, principal, site_id)
    site = cfg.site(site_id)
    if site is None:  # the monitoring centre: no rooms, no gateways
        return SiteViewOut(id=site_id, name=site_id, at=time.time(), rooms=[], gateways=[])
    now, mem = time.time(), _memory(store)
    open_ = store.alerts(site=site.id, sites=set(principal.sites), limit=1000)
    devices = [d for d in [*cfg.sensors, *cfg.cameras] if cfg.site_of(d).id == site.id]
    rooms = [RoomOut(id=room.id, name=room.name, kind=room.kind,
                     devices=[_device(cfg, d, mem, open_, now) for d in devices if d.room == room.id],
                     alerts=sum(1 for a in open_ if a.room == room.id)) for room in site.rooms]
    status = {g["gateway"]: g for g in store.gateways()}
    central = getattr(request.app.state, "config_version", None)
    gateways = [_gateway(gw, status.get(gw.id), mem, open_, central, now) for gw in cfg.gateways if gw.site == site.id]
    return SiteViewOut(id=site.id, name=site.name, at=now, rooms=rooms, gateways=gateways)
