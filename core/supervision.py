"""The ``supervision:`` section: who watches the watchers (docs/alerts.md, supervision table).

Every pipeline service beats (core/heartbeat.py); the alert engine watches ingest, InfluxDB (ingest's
canary), the broker (its own round trip), the API and the watcher, and patrols the gateways (巡检); the
watcher (alerts/watcher.py), a process of its own, watches the engine and its dispatcher and has a
backup channel of its own.

>>> SupervisionSettings().grace_s["ingest"], SupervisionSettings().patrol_interval_s
(30.0, 7200.0)
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .fields import Model

Seconds = Annotated[float, Field(gt=0)]
Hop = Literal["ingest", "influxdb", "broker", "api", "watcher", "alerts", "dispatcher"]
# silent longer than this → pipeline_silent (the engine) or the watcher's backup notice. A few beats
# (every 5 s) long: a restart by systemd (RestartSec a few seconds) stays under it and pages nobody.
DEFAULT_GRACE: dict[str, float] = {"ingest": 30.0, "influxdb": 60.0, "broker": 30.0, "api": 60.0, "watcher": 60.0,
                                   "alerts": 30.0, "dispatcher": 60.0}


class BackupChannel(Model):
    """How the watcher gets the word out when the engine cannot: its own channels, not the engine's."""
    urls: list[Annotated[str, Field(pattern=r"^(json|jsons|https?)://")]] = []  # JSON POST: an SMS gateway, a 2nd robot
    rate_per_minute: Annotated[int, Field(ge=1, le=60)] = 6
    remind_s: Seconds = 300.0  # reminders while the engine stays down
    planned_grace_s: Seconds = 600.0  # an engine stopped cleanly (planned) is reported only after this


class SupervisionSettings(Model):
    beat_s: Annotated[float, Field(gt=0, le=60)] = 5.0  # every service's heartbeat and the broker probe
    grace_s: dict[Hop, Seconds] = DEFAULT_GRACE
    # after the broker (or the engine's link to it) is back, gateways have this long to come back
    # before their silence or a will counts; meanwhile their silence is the broker's
    reconnect_grace_s: Seconds = 60.0
    # a will counts once the engine's link has stayed up this long after it: a broker that shuts down
    # publishes every will just before it drops its clients (the engine among them)
    will_confirm_s: Annotated[float, Field(ge=0, le=60)] = 3.0
    gateway_return_s: Seconds = 600.0  # a gateway that said goodbye cleanly and is not back → gateway_offline
    # 巡检: the monitoring centre patrols its devices at least every 2 h (GB 26875.1 / GB 50440 practice)
    patrol_interval_s: Annotated[float, Field(ge=10, le=7200)] = 7200.0
    patrol_timeout_s: Annotated[float, Field(gt=0, le=600)] = 60.0
    clock_tolerance_s: Annotated[float, Field(gt=0, le=300)] = 5.0  # a gateway's clock further off → warning
    # hops alarmed from the engine's start even if they never beat; the others from their first heartbeat
    expect: list[Hop] = []
    contacts: list[str] = []  # told of the centre's own trouble; empty: routing.notify
    backup: BackupChannel = BackupChannel()

    @field_validator("grace_s")
    @classmethod
    def _every_hop(cls, value: dict[str, float]) -> dict[str, float]:
        return {**DEFAULT_GRACE, **value}

    def grace(self, hop: str) -> float:
        return self.grace_s.get(hop, DEFAULT_GRACE.get(hop, 60.0))
