"""What devices said last, as the engine keeps it in the store's memory (namespace ``last``,
alerts/situation.py): for the site view and for the value an alert's card shows now."""
from __future__ import annotations

import json
from typing import Any, Iterable

from .store import Store

MAX_KEYS = 500  # devices asked at once (SQLite's parameter limit is far above)


def latest(store: Store, devices: Iterable[str]) -> dict[str, dict[str, Any]]:
    """device id → {value, unit, quality, ts} or {state, ts}, for those the engine has heard."""
    wanted = sorted({d for d in devices if d})[:MAX_KEYS]
    if not wanted:
        return {}
    rows = store.query(f"SELECT key, value FROM memory WHERE ns='last' AND key IN ({','.join('?' * len(wanted))})",
                       tuple(wanted))
    return {r["key"]: json.loads(r["value"]) for r in rows}
