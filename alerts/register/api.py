"""The register's resource of the API, ``/api/hazards`` (one router):

``GET /api/hazards``                 entries of the caller's sites (filters: site, status, category, source, overdue)
``POST /api/hazards``                list a problem (the bureau)
``GET /api/hazards/{id}``            one entry with its sign-off trail; ``/trail`` the trail alone
``PATCH /api/hazards/{id}``          progress (the station) or terms: deadline, path, standard … (the bureau)
``POST /api/hazards/{id}/submit``    rectified, for verification (the station); ``/verify`` passed or not (the
                                     bureau); ``/close`` 销号 (the bureau); ``/sign`` a sign-off without a move

Every refusal is a 403 that says why (:mod:`.access`); a move the entry's status does not allow is a 409.
Input is bounded as everywhere in the API (:mod:`..api_limits`): ids in the config's pattern, texts of
bounded length and valid Unicode, entry numbers in SQLite's range; every error in the documented shape.
"""
from __future__ import annotations

import time
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, BeforeValidator, Field

from stationwatch.core.config import StationConfig
from stationwatch.core.hazards import CATEGORIES

from ..api_limits import MAX_ID, Ident, errors, text
from ..auth import CurrentUser, Principal
from ..records import AlertError, Conflict, NotFound
from .actions import Actions, Invalid, Refused
from .records import OVERDUE, STATUSES, Hazard
from .store import Register

Text = text(2000, 1, blank=False)
Note = text(2000)
Person = text(200, 1, blank=False)
def _date_or_time(value: Any) -> Any:
    """'2026-12-10' is a date (the end of that day), never midnight at its start: left to the union,
    pydantic reads such a string as a date-time at 00:00 and a deadline would fall a day early."""
    return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else value


When = Annotated[datetime | date, BeforeValidator(_date_or_time), Field(description="ISO date (the end of that day, site time) or date-time; "
                                                     "without a zone: site time")]
HazardId = Annotated[int, Path(ge=1, le=MAX_ID, description="entry number (问题编号)", examples=[1])]


class HazardIn(BaseModel):
    site: Ident
    room: Ident | None = None
    category: Literal[tuple(CATEGORIES)]  # type: ignore[valid-type]
    description: Text
    deadline: When  # 整改时限
    path: Text  # 整改路径
    standard: Text  # 整改标准
    responsible: Person  # 责任人
    major: bool = False  # 重大事故隐患
    note: Note = ""


class HazardPatch(BaseModel):
    status: Literal["rectifying"] | None = None  # 开始整改
    responsible: Person | None = None
    deadline: When | None = None
    path: Text | None = None
    standard: Text | None = None
    description: Text | None = None
    category: Literal[tuple(CATEGORIES)] | None = None  # type: ignore[valid-type]
    room: Ident | None = None
    note: Note = ""


class NoteIn(BaseModel):
    note: Note = ""


class VerifyIn(BaseModel):
    passed: bool = True  # False: not passed (验收未通过), back to rectifying
    note: Note = ""


class TrailOut(BaseModel):
    at: float
    at_local: str
    actor: str
    role: str
    action: str
    note: str
    status: str


class HazardOut(BaseModel):
    id: int
    site: str
    site_name: str
    room: str | None
    room_name: str | None
    category: str
    category_zh: str
    category_en: str
    description: str
    source: str
    major: bool
    deadline_at: float
    deadline_local: str
    path: str
    standard: str
    responsible: str
    status: str
    status_zh: str
    status_en: str
    overdue: bool
    overdue_at: float | None
    evidence: dict[str, Any]
    created_at: float
    created_by: str
    updated_at: float
    submitted_at: float | None
    verified_at: float | None
    closed_at: float | None
    trail: list[TrailOut] | None = None


def register_of(request: Request) -> Register:
    state = request.app.state
    if getattr(state, "register", None) is None:
        state.register = Register(state.store)
    return state.register


def _actions(request: Request) -> Actions:
    return Actions(request.app.state.cfg, register_of(request))


ActionsDep = Annotated[Actions, Depends(_actions)]


def _cfg(request: Request) -> StationConfig:
    return request.app.state.cfg


ConfigDep = Annotated[StationConfig, Depends(_cfg)]


def hazard_out(cfg: StationConfig, h: Hazard, now: float | None = None) -> HazardOut:
    site = cfg.site(h.site)
    tz = site.tz if site else None
    room = site.room(h.room) if site and h.room else None
    now = time.time() if now is None else now
    status = OVERDUE if h.overdue(now) else STATUSES[h.status]
    cat = CATEGORIES.get(h.category)
    local = lambda t: datetime.fromtimestamp(t, tz).isoformat(timespec="minutes")  # noqa: E731
    data = {k: v for k, v in vars(h).items() if k not in ("trail", "evidence_key", "evidence_subject")}
    trail = [TrailOut(**t, at_local=local(t["at"])) for t in h.trail] if h.trail else None
    return HazardOut(**data, site_name=site.name if site else h.site, room_name=room.name if room else None,
                     category_zh=cat.zh if cat else h.category, category_en=cat.en if cat else h.category,
                     deadline_local=local(h.deadline_at), status_zh=status.zh, status_en=status.en,
                     overdue=h.overdue(now), trail=trail)


def _do(fn, *args, **kwargs):
    """Run an action; its refusals and errors as HTTP answers."""
    try:
        return fn(*args, **kwargs)
    except Refused as exc:
        raise HTTPException(403, str(exc)) from None
    except Invalid as exc:
        where = "query" if exc.field == "site" and fn.__name__ == "list" else "body"
        raise HTTPException(422, [{"loc": [where, exc.field], "type": "value_error", "msg": str(exc)}]) from None
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except AlertError as exc:
        raise HTTPException(422, [{"loc": ["body"], "type": "value_error", "msg": str(exc)}]) from None


hazards = APIRouter(prefix="/api/hazards", tags=["hazard register"], responses=errors(401, 403, 422))
ONE = errors(404, 409, 413)  # an entry's routes: no such entry, its status does not allow it, a body too large


@hazards.get("", response_model=list[HazardOut])
def list_hazards(actions: ActionsDep, cfg: ConfigDep, principal: CurrentUser,
                 site: Annotated[Ident | None, Query(description="site id")] = None,
                 status: Annotated[Literal[tuple(STATUSES)] | None, Query()] = None,  # type: ignore[valid-type]
                 category: Annotated[Literal[tuple(CATEGORIES)] | None, Query()] = None,  # type: ignore[valid-type]
                 source: Annotated[Literal["inspection", "system"] | None, Query()] = None,
                 overdue: Annotated[bool | None, Query(description="only overdue (true) or not overdue (false)")] = None,
                 ) -> list[HazardOut]:
    """The register (问题清单) of the caller's sites, newest first."""
    now = time.time()
    found = _do(actions.list, principal, site, status=status, category=category, overdue=overdue, now=now)
    return [hazard_out(cfg, h, now) for h in found if source is None or h.source == source]


@hazards.post("", response_model=HazardOut, status_code=201, responses=errors(413))
def create_hazard(body: HazardIn, actions: ActionsDep, cfg: ConfigDep, principal: CurrentUser) -> HazardOut:
    """List a problem with its rectification deadline, path and standard and who is responsible."""
    return hazard_out(cfg, _do(actions.create, principal, **body.model_dump()))


@hazards.get("/{hazard_id}", response_model=HazardOut, responses=errors(404))
def get_hazard(hazard_id: HazardId, actions: ActionsDep, cfg: ConfigDep, principal: CurrentUser) -> HazardOut:
    """One entry with its sign-off trail."""
    _do(actions.get, principal, hazard_id)
    return hazard_out(cfg, actions.register.get(hazard_id, with_trail=True))


@hazards.get("/{hazard_id}/trail", response_model=list[TrailOut], responses=errors(404))
def get_trail(hazard_id: HazardId, actions: ActionsDep, cfg: ConfigDep, principal: CurrentUser) -> list[TrailOut]:
    """Every sign-off: who, role, when, what, note (签字留痕). Append-only."""
    hazard = _do(actions.get, principal, hazard_id)
    tz = cfg.site(hazard.site).tz
    return [TrailOut(**t, at_local=datetime.fromtimestamp(t["at"], tz).isoformat(timespec="minutes"))
            for t in actions.register.trail(hazard_id)]


@hazards.patch("/{hazard_id}", response_model=HazardOut, responses=ONE)
def update_hazard(hazard_id: HazardId, body: HazardPatch, actions: ActionsDep, cfg: ConfigDep,
                  principal: CurrentUser) -> HazardOut:
    """The station: start rectifying, who is responsible, a progress note. The bureau also: the terms."""
    changes = body.model_dump(exclude_unset=True, exclude={"note", "status"})
    return hazard_out(cfg, _do(actions.update, principal, hazard_id, changes, body.status == "rectifying", body.note))


def _move(actions: Actions, principal: Principal, hazard_id: HazardId, action: str, note: str) -> HazardOut:
    return hazard_out(actions.cfg, _do(actions.move, principal, hazard_id, action, note))


@hazards.post("/{hazard_id}/submit", response_model=HazardOut, responses=ONE)
def submit(hazard_id: HazardId, body: NoteIn, actions: ActionsDep, principal: CurrentUser) -> HazardOut:
    """Rectified: for the bureau to verify, with what was done (整改情况)."""
    return _move(actions, principal, hazard_id, "submit", body.note)


@hazards.post("/{hazard_id}/verify", response_model=HazardOut, responses=ONE)
def verify(hazard_id: HazardId, body: VerifyIn, actions: ActionsDep, principal: CurrentUser) -> HazardOut:
    """Checked against the standard: passed (已验收), or not (back to rectifying, with the reason)."""
    return _move(actions, principal, hazard_id, "verify" if body.passed else "reject", body.note)


@hazards.post("/{hazard_id}/close", response_model=HazardOut, responses=ONE)
def close(hazard_id: HazardId, body: NoteIn, actions: ActionsDep, principal: CurrentUser) -> HazardOut:
    """Struck off the register (销号) after verification."""
    return _move(actions, principal, hazard_id, "close", body.note)


@hazards.post("/{hazard_id}/sign", response_model=HazardOut, responses=ONE)
def sign(hazard_id: HazardId, body: NoteIn, actions: ActionsDep, principal: CurrentUser) -> HazardOut:
    """A sign-off (签字) on the entry without moving it: seen, checked, agreed."""
    return _move(actions, principal, hazard_id, "sign", body.note)
