"""What devices said last, as the engine keeps it in the store's memory (namespace ``last``: one
entry per gateway, {device: what it said}; alerts/situation.py): for the site view and for the value
an alert's card shows now."""
from __future__ import annotations

import json
from typing import Any, Iterable

from stationwatch.core.config import StationConfig

from .store import Store

MAX_KEYS = 500  # devices asked at once (SQLite's parameter limit is far above)


def latest(store: Store, cfg: StationConfig, devices: Iterable[str]) -> dict[str, dict[str, Any]]:
    """device id → {value, unit, quality, ts} or {state, ts}, for those the engine has heard."""
    wanted = sorted({d for d in devices if d})[:MAX_KEYS]
    gateway_of = {d: device.gateway for d in wanted if (device := cfg.sensor(d) or cfg.camera(d)) is not None}
    gateways = sorted(set(gateway_of.values()))
    if not gateways:
        return {}
    rows = store.query(f"SELECT key, value FROM memory WHERE ns='last' AND key IN ({','.join('?' * len(gateways))})",
                       tuple(gateways))
    boards = {r["key"]: json.loads(r["value"]) for r in rows}
    return {d: boards[gw][d] for d, gw in gateway_of.items() if d in boards.get(gw, {})}
