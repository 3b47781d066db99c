"""The gateway's runtime plan: the part of the validated station config one gateway runs on, as JSON.

``stationwatch gateway`` loads and validates the whole YAML config (pydantic, every error with its
field path), writes this gateway's plan next to its spool and then *becomes* the lean runtime
(gateway/runtime.py) with ``exec``: same PID for systemd's notify and watchdog, none of the
validation machinery left in memory. The runtime reads the plan with :func:`load_plan` — plain
JSON into attribute views, register maps into :class:`~stationwatch.sensors.regmap.RegisterMap` —
and never imports pydantic or PyYAML.

The plan is written atomically (temporary file, fsync, rename), so a power cut leaves the previous
plan or the new one. If the YAML config is broken at a restart, the last good plan is what keeps the
gateway sounding its alarms: ``stationwatch gateway`` says loudly that it falls back to it.

Example::

    plan = compile_plan(cfg, cfg.gateway("gw-sl-main"), config_version="3f2a9c1d0b7e")
    write_plan(plan, plan_path("/var/lib/stationwatch/spool.db"))
    view = load_plan(plan_path("/var/lib/stationwatch/spool.db"))
    view.gateway.agent.outputs.buzzer  # 17
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol, Sequence

from stationwatch.sensors.regmap import RegisterMap
from stationwatch.sensors.specs import BusSpec, CameraConfigSpec, SensorSpec

FORMAT = 1


class AlarmOutputsSpec(Protocol):
    """``gateways[].agent.outputs``: BCM GPIOs of the local alarm (core/agent_settings.py)."""
    buzzer: int | None
    relay: int | None
    led: int | None


class AgentSpec(Protocol):
    """``gateways[].agent``: what the agent reads of its settings (validated in core/agent_settings.py)."""
    spool_path: str
    spool_max_mb: float
    spool_sync: str
    outputs: AlarmOutputsSpec
    silence_button: int | None
    alarm_kinds: Sequence[str]
    send_window: int
    drain_s: float
    health_interval_s: float


class GatewayPlanSpec(Protocol):
    """One gateway as the agent reads it: the validated ``Gateway`` model and the plan's view both fit."""
    id: str
    site: str
    buses: Sequence[BusSpec]
    agent: AgentSpec


class StationSpec(Protocol):
    """The devices the agent and its drivers read: a validated ``StationConfig`` or a :class:`Plan`."""
    sensors: Sequence[SensorSpec]
    cameras: Sequence[CameraConfigSpec]


class PlanError(ValueError):
    """A plan file that cannot be used; the message names the file and why."""


def plan_path(spool_path: str | Path) -> Path:
    """Where a gateway's plan lives: beside its spool (``spool.db`` → ``spool.plan.json``)."""
    spool = Path(spool_path)
    return spool.with_name(spool.stem + ".plan.json")


def compile_plan(cfg: Any, gateway: Any, config_version: str | None) -> dict[str, Any]:
    """This gateway's share of a validated :class:`~stationwatch.core.config.StationConfig`."""
    from stationwatch.sensors.regmap import register_map

    sensors = [s for s in cfg.sensors if s.gateway == gateway.id]
    maps = sorted({s.source.register_map for s in sensors if s.source is not None and s.source.driver == "modbus"})
    return {"format": FORMAT, "config_version": config_version, "station": cfg.name,
            "gateway": gateway.model_dump(mode="json"),
            "sensors": [s.model_dump(mode="json") for s in sensors],
            "cameras": [c.model_dump(mode="json") for c in cfg.cameras if c.gateway == gateway.id],
            "register_maps": {name: register_map(name).as_data() for name in maps}}


def write_plan(plan: dict[str, Any], path: Path) -> None:
    """Atomically replace ``path`` with ``plan`` (a power cut leaves the old plan or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(plan, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself reaches the disk
    finally:
        os.close(fd)


def _view(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _view(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_view(v) for v in value]
    return value


@dataclass(frozen=True)
class Plan:
    """What the runtime knows: the shape the agent and drivers read from a ``StationConfig``
    (``sensors``, ``cameras``) plus this gateway and the register maps its buses use."""
    config_version: str | None
    station: str
    gateway: GatewayPlanSpec
    sensors: list[SensorSpec]
    cameras: list[CameraConfigSpec]
    register_maps: dict[str, RegisterMap]


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanError(f"cannot read the gateway plan {path}: {exc} / 网关运行计划无法读取") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PlanError(f"{path} is not a gateway plan of format {FORMAT} / 网关运行计划格式不符")
    try:
        return Plan(data["config_version"], data["station"], _view(data["gateway"]),
                    _view(data["sensors"]), _view(data["cameras"]),
                    {name: RegisterMap.from_data(m) for name, m in data["register_maps"].items()})
    except (KeyError, TypeError) as exc:
        raise PlanError(f"{path} is incomplete ({type(exc).__name__}: {exc}) / 网关运行计划不完整") from None
