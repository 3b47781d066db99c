"""The hazard register (问题清单) over the alert store: entries, their moves, and the sign-off trail.

Every change writes a row of ``hazard_trail`` (who, role, when, what, note, the status after) in the
same transaction, and the database refuses to change or delete a trail row. Who may make a move is
checked by the caller (:mod:`.access`); this module checks only that the move fits the entry.

>>> from stationwatch.alerts.store import Store
>>> reg = Register(Store(":memory:", clock=lambda: 1.7e9))
>>> h = reg.create(Draft("s", None, "fire", "灭火器过期", 1.7e9 + 86400, "更换", "有效期内", "张三"),
...                "wangwu（王五）", "bureau")
>>> reg.move(h.id, "submit", "zhangsan（张三）", "staff", "已更换").status
'submitted'
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..records import AlertError, Conflict, NotFound
from ..store import Store
from . import schema
from .records import MOVES, STATUSES, WAITING, Hazard

__all__ = ["Register", "Draft", "Hazard", "AlertError", "Conflict", "NotFound"]

TERMS = ("deadline_at", "path", "standard", "description", "category", "room")  # what the bureau set
PROGRESS = ("responsible",)  # what the station may change


@dataclass(frozen=True)
class Draft:
    """A new entry, before it has an id."""
    site: str
    room: str | None
    category: str
    description: str
    deadline_at: float
    path: str
    standard: str
    responsible: str
    source: str = "inspection"
    major: bool = False
    evidence: dict[str, Any] | None = None
    evidence_key: str | None = None  # a system entry: unique per piece of evidence
    evidence_subject: str | None = None  # a system entry: at most one not closed per subject


class Register:
    """Entries of the register; one per store (it shares the store's lock and transactions)."""

    def __init__(self, store: Store):
        self.store = store
        schema.ensure(store)

    # ---- reading
    def get(self, hazard_id: int, with_trail: bool = False) -> Hazard:
        rows = self.store.query("SELECT * FROM hazards WHERE id=?", (hazard_id,))
        if not rows:
            raise NotFound(f"隐患 #{hazard_id} 不存在 / no hazard #{hazard_id}")
        hazard = Hazard.from_row(rows[0])
        if with_trail:
            hazard.trail = self.trail(hazard_id)
        return hazard

    def trail(self, hazard_id: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self.store.query(
            "SELECT at, actor, role, action, note, status FROM hazard_trail WHERE hazard_id=? ORDER BY id",
            (hazard_id,))]

    def list(self, sites: set[str] | None = None, *, site: str | None = None, status: str | None = None,
             category: str | None = None, overdue: bool | None = None, now: float | None = None,
             since: float | None = None, until: float | None = None, ids: list[int] | None = None,
             limit: int = 1000) -> list[Hazard]:
        """Entries, newest first. ``sites``: the caller's scope; ``overdue`` filters on the deadline."""
        where, args = [], []
        if ids is not None:
            where.append(f"id IN ({','.join('?' * len(ids)) or 'NULL'})")
            args.extend(ids)
        for column, value in (("site", site), ("status", status), ("category", category)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if sites is not None:
            where.append(f"site IN ({','.join('?' * len(sites))})" if sites else "1=0")
            args.extend(sorted(sites))
        if since is not None:
            where.append("created_at>=?")
            args.append(since)
        if until is not None:
            where.append("created_at<?")
            args.append(until)
        if overdue is not None:
            now = self.store.clock() if now is None else now
            where.append(("" if overdue else "NOT ") + f"(status IN {WAITING} AND deadline_at<?)")
            args.append(now)
        sql = "SELECT * FROM hazards" + (" WHERE " + " AND ".join(where) if where else "")
        return [Hazard.from_row(r) for r in self.store.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))]

    def trails(self, hazard_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {i: [] for i in hazard_ids}
        marks = ",".join("?" * len(hazard_ids)) or "NULL"
        for row in self.store.query(f"SELECT * FROM hazard_trail WHERE hazard_id IN ({marks}) ORDER BY id",
                                    tuple(hazard_ids)):
            out[row["hazard_id"]].append(dict(row))
        return out

    # ---- changes
    def create(self, draft: Draft, actor: str, role: str, note: str = "", now: float | None = None) -> Hazard:
        """List a problem. A system entry whose evidence is already listed (or whose subject has an
        entry not yet closed) is not listed twice: the existing entry is returned."""
        now = self.store.clock() if now is None else now
        if not draft.description.strip():
            raise AlertError("description: 须填写问题描述 / a hazard needs a description")
        with self.store.tx() as db:
            if draft.source == "system":
                row = db.execute("SELECT * FROM hazards WHERE evidence_key=? OR (evidence_subject=? AND status!='closed')"
                                 " ORDER BY id LIMIT 1", (draft.evidence_key, draft.evidence_subject)).fetchone()
                if row is not None:
                    return Hazard.from_row(row)
            hazard_id = db.execute(
                "INSERT INTO hazards (site, room, category, description, source, evidence, evidence_key,"
                " evidence_subject, major, deadline_at, path, standard, responsible, status, created_at, created_by,"
                " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'open',?,?,?) RETURNING id",
                (draft.site, draft.room, draft.category, draft.description, draft.source,
                 json.dumps(draft.evidence or {}, ensure_ascii=False), draft.evidence_key, draft.evidence_subject,
                 int(draft.major), draft.deadline_at, draft.path, draft.standard, draft.responsible, now, actor,
                 now)).fetchone()[0]
            self._sign(db, hazard_id, actor, role, "create", note or draft.description, "open", now)
            return self._row(db, hazard_id)

    def update(self, hazard_id: int, changes: dict[str, Any], actor: str, role: str, note: str = "") -> Hazard:
        """Change fields (terms or progress); each change is written into the trail's note."""
        now = self.store.clock()
        unknown = set(changes) - set(TERMS) - set(PROGRESS)
        if unknown:
            raise AlertError(f"{', '.join(sorted(unknown))}: 不可修改 / cannot be changed")
        with self.store.tx() as db:
            hazard = self._row(db, hazard_id)
            self._check("update", hazard)
            changed = {k: v for k, v in changes.items() if getattr(hazard, k) != v}
            if not changed and not note.strip():
                return hazard
            sets = [f"{k}=?" for k in changed] + ["updated_at=?"]
            args = [*changed.values(), now]
            if "deadline_at" in changed and changed["deadline_at"] > now:
                sets.append("overdue_at=NULL")  # a deadline moved into the future: no longer overdue
            db.execute(f"UPDATE hazards SET {', '.join(sets)} WHERE id=?", (*args, hazard_id))
            what = "; ".join(f"{k}: {getattr(hazard, k)} → {v}" for k, v in changed.items())
            self._sign(db, hazard_id, actor, role, "update", " — ".join(x for x in (what, note) if x),
                       hazard.status, now)
            return self._row(db, hazard_id)

    def move(self, hazard_id: int, action: str, actor: str, role: str, note: str = "") -> Hazard:
        """``rectify``, ``submit``, ``verify``, ``reject`` (verification not passed), ``close`` or ``sign``."""
        now = self.store.clock()
        if action in ("submit", "reject") and not note.strip():
            raise AlertError(f"note: {'须说明整改情况' if action == 'submit' else '须说明未通过验收的原因'}"
                             f" / {action} needs a note")
        with self.store.tx() as db:
            hazard = self._row(db, hazard_id)
            self._check(action, hazard)
            status = MOVES[action][1] or hazard.status
            stamp = {"submitted": "submitted_at", "verified": "verified_at", "closed": "closed_at"}.get(status)
            if status != hazard.status:
                db.execute(f"UPDATE hazards SET status=?, updated_at=?{f', {stamp}=?' if stamp else ''} WHERE id=?",
                           (status, now, *((now,) if stamp else ()), hazard_id))
            self._sign(db, hazard_id, actor, role, action, note, status, now)
            return self._row(db, hazard_id)

    def mark_overdue(self, db, hazard: Hazard, now: float) -> None:
        """The engine found the deadline passed: recorded once, in the entry and its trail."""
        db.execute("UPDATE hazards SET overdue_at=? WHERE id=?", (now, hazard.id))
        self._sign(db, hazard.id, "engine", "system", "overdue", "整改时限已过 / the rectification deadline has passed",
                   hazard.status, now)

    # ---- plumbing
    def _row(self, db, hazard_id: int) -> Hazard:
        row = db.execute("SELECT * FROM hazards WHERE id=?", (hazard_id,)).fetchone()
        if row is None:
            raise NotFound(f"隐患 #{hazard_id} 不存在 / no hazard #{hazard_id}")
        return Hazard.from_row(row)

    @staticmethod
    def _check(action: str, hazard: Hazard) -> None:
        allowed, _to = MOVES[action]
        if hazard.status not in allowed:
            state = STATUSES[hazard.status]
            raise Conflict(f"隐患 #{hazard.id} 当前为“{state.zh}”，不能{_ACTION_ZH[action]} / hazard #{hazard.id} is "
                           f"{state.en}; cannot {action} it")

    @staticmethod
    def _sign(db, hazard_id: int, actor: str, role: str, action: str, note: str, status: str,
              at: float) -> None:
        db.execute("INSERT INTO hazard_trail (hazard_id, at, actor, role, action, note, status) VALUES (?,?,?,?,?,?,?)",
                   (hazard_id, at, actor, role, action, note, status))


_ACTION_ZH = {"update": "更新", "rectify": "开始整改", "submit": "提交验收", "verify": "验收", "reject": "退回整改",
              "close": "销号", "sign": "签字"}
