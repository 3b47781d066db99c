"""What the register holds: :class:`Hazard` (one entry of the 问题清单), its statuses and the moves
between them::

    open ──► rectifying ──► submitted ──► verified ──► closed
      └──────────────────────┘   └──► rectifying (not passed: 验收未通过)

An entry whose deadline passes while it is open or rectifying is **overdue** (逾期): shown as such,
and sent up the reporting chain (``hazard_overdue``) until it is submitted or its deadline moved.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stationwatch.core.hazards import Term

Status = Term  # an entry's status, said in both languages

STATUSES: dict[str, Status] = {s.name: s for s in (
    Status("open", "待整改", "open"),
    Status("rectifying", "整改中", "rectifying"),
    Status("submitted", "已提交验收", "submitted for verification"),
    Status("verified", "已验收", "verified"),
    Status("closed", "已销号", "closed"),
)}
OVERDUE = Status("overdue", "已逾期", "overdue")
WAITING = ("open", "rectifying")  # the station's turn: the deadline runs
DONE = ("verified", "closed")

# action → (from statuses, to status); None keeps the status
MOVES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "update": (("open", "rectifying", "submitted", "verified"), None),
    "rectify": (("open",), "rectifying"),
    "submit": (WAITING, "submitted"),
    "verify": (("submitted",), "verified"),
    "reject": (("submitted",), "rectifying"),
    "close": (("verified",), "closed"),
    "sign": (tuple(STATUSES), None),
}


@dataclass
class Hazard:
    id: int
    site: str
    room: str | None
    category: str
    description: str
    source: str  # inspection (a person) | system (the system's own evidence)
    evidence: dict[str, Any]
    evidence_key: str | None
    evidence_subject: str | None
    major: bool
    deadline_at: float
    path: str
    standard: str
    responsible: str
    status: str
    created_at: float
    created_by: str
    updated_at: float
    submitted_at: float | None = None
    verified_at: float | None = None
    closed_at: float | None = None
    overdue_at: float | None = None
    trail: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Any) -> "Hazard":
        data = dict(row)
        data["evidence"] = json.loads(data["evidence"] or "{}")
        data["major"] = bool(data["major"])
        return cls(**data)

    def overdue(self, now: float) -> bool:
        """The deadline has passed while it was still the station's turn."""
        return self.status in WAITING and now > self.deadline_at
