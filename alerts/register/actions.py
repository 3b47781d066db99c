"""The register's actions as a person takes them — check the role and site (:mod:`.access`), check the
input, then change the register — shared by the API (:mod:`.api`) and the command line, so both refuse
the same things with the same words.

>>> # Actions(cfg, register).create(principal, site="sl-station", ...)   # doctest: +SKIP
"""
from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from typing import Any

from stationwatch.core.config import StationConfig
from stationwatch.core.hazards import CATEGORIES

from ..auth import Principal
from ..records import AlertError
from .access import Act, refusal
from .records import Hazard
from .store import Draft, Register


class Refused(AlertError):
    """The role or the site does not allow it (HTTP 403); the message says why."""


class Invalid(AlertError):
    """Bad input; ``field`` names it (HTTP 422)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def deny(principal: Principal, act: Act, site: str | None = None, what: str = "") -> None:
    reason = refusal(principal, act, site)
    if reason is not None:
        raise Refused(f"{what}: {reason}" if what else reason)


def deadline_at(cfg: StationConfig, site_id: str, when: datetime | date | float) -> float:
    """A deadline as Unix time: a date is the end of that day at the site; a naive time is site time."""
    if isinstance(when, (int, float)):
        return float(when)
    tz = cfg.site(site_id).tz
    if not isinstance(when, datetime):
        return datetime.combine(when + timedelta(days=1), datetime.min.time(), tz).timestamp()
    return (when if when.tzinfo else when.replace(tzinfo=tz)).timestamp()


def parse_when(field: str, text: str) -> datetime | date:
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(field, f"'{text[:40]}' is not a date like 2026-12-10 or 2026-12-10T18:00 / 日期格式错误") from None


class Actions:
    def __init__(self, cfg: StationConfig, register: Register):
        self.cfg, self.register = cfg, register

    def get(self, principal: Principal, hazard_id: int, act: Act = Act.READ) -> Hazard:
        hazard = self.register.get(hazard_id)
        deny(principal, Act.READ, hazard.site)
        deny(principal, act, hazard.site)
        return hazard

    def list(self, principal: Principal, site: str | None = None, **filters: Any) -> list[Hazard]:
        if site is not None and self.cfg.site(site) is None:
            raise Invalid("site", f"unknown site '{site[:64]}' / 站点不存在")
        deny(principal, Act.READ, site)
        return self.register.list(set(principal.sites), site=site, **filters)

    def create(self, principal: Principal, *, site: str, room: str | None, category: str, description: str,
               deadline: datetime | date | float, path: str, standard: str, responsible: str, major: bool = False,
               note: str = "") -> Hazard:
        found = self.cfg.site(site)
        if found is None:
            raise Invalid("site", f"unknown site '{site[:64]}' / 站点不存在")
        deny(principal, Act.CREATE, found.id)
        if room is not None and found.room(room) is None:
            raise Invalid("room", f"no room '{room[:64]}' in site '{found.id}' / 房间不存在")
        if category not in CATEGORIES:
            raise Invalid("category", f"'{category[:40]}' is not one of {', '.join(CATEGORIES)} / 类别不存在")
        for field, value in (("description", description), ("path", path), ("standard", standard),
                             ("responsible", responsible)):
            if not value.strip():
                raise Invalid(field, "须填写 / required")
        due = deadline_at(self.cfg, found.id, deadline)
        if due <= time.time():
            raise Invalid("deadline", "整改时限须在将来 / the deadline must be in the future")
        draft = Draft(found.id, room, category, description.strip(), due, path.strip(), standard.strip(),
                      responsible.strip(), major=major)
        return self.register.create(draft, principal.actor, principal.role, note)

    def update(self, principal: Principal, hazard_id: int, changes: dict[str, Any], rectifying: bool = False,
               note: str = "") -> Hazard:
        hazard = self.get(principal, hazard_id, Act.UPDATE)
        changes = {("deadline_at" if k == "deadline" else k): v for k, v in changes.items() if v is not None}
        terms = sorted(set(changes) - {"responsible"})
        if terms:
            deny(principal, Act.TERMS, hazard.site, ", ".join(t.removesuffix("_at") for t in terms))
        if "deadline_at" in changes:
            changes["deadline_at"] = deadline_at(self.cfg, hazard.site, changes["deadline_at"])
        if "room" in changes and self.cfg.site(hazard.site).room(changes["room"]) is None:
            raise Invalid("room", f"no room '{changes['room'][:64]}' in site '{hazard.site}' / 房间不存在")
        if "category" in changes and changes["category"] not in CATEGORIES:
            raise Invalid("category", f"'{changes['category'][:40]}' is not one of {', '.join(CATEGORIES)}")
        if changes or (note and not rectifying):
            hazard = self.register.update(hazard_id, changes, principal.actor, principal.role, note)
        if rectifying and hazard.status == "open":
            hazard = self.register.move(hazard_id, "rectify", principal.actor, principal.role, note)
        return hazard

    def move(self, principal: Principal, hazard_id: int, action: str, note: str = "") -> Hazard:
        """``submit``, ``verify``, ``reject`` (verification not passed), ``close`` or ``sign``."""
        act = {"submit": Act.SUBMIT, "verify": Act.VERIFY, "reject": Act.VERIFY, "close": Act.CLOSE,
               "sign": Act.SIGN}[action]
        self.get(principal, hazard_id, act)
        return self.register.move(hazard_id, action, principal.actor, principal.role, note)
