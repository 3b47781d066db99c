"""Windows over alerts, in one shape (:class:`Window`: a site, a room, devices, rules, a time span):

* **maintenance windows** (检修) silence a site, a room or some devices for a time, with a reason.
  They come from the config (``maintenance:``) and from the API (the ``silences`` table). As in
  Alertmanager, a silenced alert is still recorded and shown — marked with the window — but nobody is
  paged while the window lasts; if it is still open when the window ends, its escalation starts then.
* **inhibitions**: while an alert of a cause is open (a gateway lost), it is a window over the
  alerts that are its symptoms (the faults and silent cameras of that gateway's devices), which are
  then not raised at all. Faults are inhibited, never alarms: a fault must not hide another
  sensor's fire (GB 50166).

A window naming devices covers an alert only if every device of the alert is named, so a detector
under repair never hides the alarm of another one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Protocol

from stationwatch.core.config import StationConfig

from .store import Alert, Conflict, NotFound, Store


class Covered(Protocol):
    """What a window looks at: an alert of the store, or what a rule asks to raise."""
    rule: str
    site: str
    room: str | None

    @property
    def devices(self) -> set[str]: ...


@dataclass(frozen=True)
class Window:
    id: str  # cfg-N (config), api-N (silences table), or the cause of an inhibition: gateway_offline:{subject}
    site: str
    room: str | None
    devices: frozenset[str]
    starts_at: float
    ends_at: float
    reason: str
    created_by: str = "config"
    rules: frozenset[str] = frozenset()  # empty: alerts of any rule

    def covers(self, alert: Covered, now: float) -> bool:
        if not (self.starts_at <= now < self.ends_at) or alert.site != self.site:
            return False
        if self.rules and alert.rule not in self.rules:
            return False
        if self.room is not None and alert.room != self.room:
            return False
        return not self.devices or (bool(alert.devices) and alert.devices <= self.devices)

    def as_dict(self) -> dict:
        return {"id": self.id, "site": self.site, "room": self.room, "devices": sorted(self.devices),
                "starts_at": self.starts_at, "ends_at": self.ends_at, "reason": self.reason,
                "created_by": self.created_by}


def _epoch(value: datetime, tz) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=tz)).timestamp()


class Silences:
    """The windows of the config and of the store, and which one covers an alert."""

    def __init__(self, cfg: StationConfig, store: Store):
        self.store = store
        self.configured = tuple(
            Window(f"cfg-{i}", w.site, w.room, frozenset(w.devices), _epoch(w.start, cfg.site(w.site).tz),
                   _epoch(w.end, cfg.site(w.site).tz), w.reason) for i, w in enumerate(cfg.maintenance))

    def windows(self, now: float | None = None, sites: set[str] | None = None) -> list[Window]:
        """Windows in force at ``now`` (None: every window not yet over or ended), by site scope."""
        rows = self.store.query("SELECT * FROM silences WHERE ended_at IS NULL")
        found = [*self.configured, *(Window(f"api-{r['id']}", r["site"], r["room"], frozenset(json.loads(r["devices"])),
                                            r["starts_at"], r["ends_at"], r["reason"], r["created_by"]) for r in rows)]
        return [w for w in found if (sites is None or w.site in sites) and
                (now is None or w.starts_at <= now < w.ends_at)]

    def covering(self, alert: Alert, now: float) -> Window | None:
        return next((w for w in self.windows(now) if w.covers(alert, now)), None)

    def create(self, site: str, room: str | None, devices: list[str], starts_at: float, ends_at: float,
               reason: str, actor: str) -> Window:
        if ends_at <= starts_at:
            raise Conflict("结束时间须晚于开始时间 / the window must end after it starts")
        with self.store.tx() as db:
            new_id = db.execute("INSERT INTO silences (site, room, devices, starts_at, ends_at, reason, created_by,"
                                " created_at) VALUES (?,?,?,?,?,?,?,?) RETURNING id",
                                (site, room, json.dumps(sorted(devices)), starts_at, ends_at, reason, actor,
                                 self.store.clock())).fetchone()[0]
        return Window(f"api-{new_id}", site, room, frozenset(devices), starts_at, ends_at, reason, actor)

    def end(self, window_id: str, actor: str) -> Window:
        """End an API window now (config windows change with the config)."""
        found = next((w for w in self.windows() if w.id == window_id), None)
        if found is None:
            raise NotFound(f"维护窗口 {window_id} 不存在或已结束 / no open maintenance window {window_id}")
        if not window_id.startswith("api-"):
            raise Conflict("配置文件中的维护窗口须修改配置 / a window from the config is changed in the config")
        with self.store.tx() as db:
            db.execute("UPDATE silences SET ended_at=?, ended_by=? WHERE id=?",
                       (self.store.clock(), actor, int(window_id[4:])))
        return found


@dataclass(frozen=True)
class Inhibition:
    """While an alert of ``source`` is open, it is a window over the ``targets`` alerts of the
    devices ``devices(cfg, subject)`` names (the subject is the open alert's)."""
    source: str
    targets: frozenset[str]
    devices: Callable[[StationConfig, str], frozenset[str]]

    def windows(self, cfg: StationConfig, open_keys: Iterable[tuple[str, str]]) -> list[Window]:
        return [Window(f"{self.source}:{subject}", subject.split("/", 1)[0], None, self.devices(cfg, subject),
                       -math.inf, math.inf, f"{self.source}: {subject}", "engine", self.targets)
                for rule, subject in open_keys if rule == self.source]


def _gateway_devices(cfg: StationConfig, subject: str) -> frozenset[str]:
    """``{site}/{gateway}`` → the sensors and cameras wired to that gateway."""
    gateway = subject.split("/", 1)[-1]
    return frozenset(d.id for d in [*cfg.sensors, *cfg.cameras] if d.gateway == gateway)


INHIBITIONS: tuple[Inhibition, ...] = (
    Inhibition("gateway_offline", frozenset({"sensor_fault", "camera_offline"}), _gateway_devices),
)
INHIBITED = frozenset().union(*(i.targets for i in INHIBITIONS))  # rules some cause may inhibit
