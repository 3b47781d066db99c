"""What the alert store holds and hands out: :class:`Raised` (a rule's request), :class:`Alert` (a
row with its trail), :class:`Escalation` (where an alert stands in the reporting chain) and the
errors of the alert service."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stationwatch.core.alert_types import STATES


class AlertError(Exception):
    """Base of the alert service's errors; the message says what to do (Chinese / English)."""


class NotFound(AlertError):
    pass


class Conflict(AlertError):
    """The transition is not possible from the alert's current state."""


@dataclass(frozen=True)
class Raised:
    """What a rule asks the store to record: the condition holds (again)."""
    rule: str
    subject: str
    severity: str
    site: str
    room: str | None
    zone: str | None
    title_zh: str
    title_en: str
    detail: dict[str, Any]
    at: float  # when it happened: the message's own time, or the engine's for silence and wills
    drill: bool = False
    pending: bool = False  # holds, but not yet for its rule's duration: visible, not notified

    @property
    def devices(self) -> set[str]:
        """The devices the condition is about (what maintenance windows and inhibitions match)."""
        return _devices(self.detail)


@dataclass
class Alert:
    id: int
    rule: str
    subject: str
    site: str
    room: str | None
    zone: str | None
    severity: str
    state: str
    title_zh: str
    title_en: str
    detail: dict[str, Any]
    count: int
    drill: bool
    first_at: float
    last_at: float
    created_at: float
    fired_at: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    clearing_since: float | None = None
    flaps: int = 0
    silenced_by: str | None = None
    audit: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    escalation: dict[str, Any] | None = None
    breaches: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Any) -> "Alert":
        data = dict(row)
        data["detail"] = json.loads(data["detail"] or "{}")
        data["drill"] = bool(data["drill"])
        return cls(**data)

    @property
    def active(self) -> bool:
        return STATES[self.state].active

    @property
    def devices(self) -> set[str]:
        """The devices this alert is about (detectors of a fire, or its one device)."""
        return _devices(self.detail)


def _devices(detail: dict[str, Any]) -> set[str]:
    found = set(detail.get("detectors") or [])
    if detail.get("device"):
        found.add(detail["device"])
    return found


@dataclass(frozen=True)
class Escalation:
    """Where a firing alert stands in its reporting chain (one ``escalations`` row). Written only by
    :class:`stationwatch.alerts.escalation.Escalator`, through the store's escalation methods."""
    alert_id: int
    policy: str
    severity: str  # the severity the chain was chosen for; a change re-selects it
    level: int  # the level reached
    started_at: float
    level_at: float  # when that level was reached
    due_at: float | None  # its acknowledgement deadline; None: the top was reached, or nobody is waiting
    remind_at: float | None
    notified: tuple[int, ...]  # levels told so far

    @classmethod
    def from_row(cls, row: Any) -> "Escalation":
        data = dict(row)
        data["notified"] = tuple(json.loads(data["notified"]))
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})
