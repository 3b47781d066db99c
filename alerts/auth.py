"""Who may do what on which site: bearer tokens, roles and site scopes for the API.

Users are in the config (``users:``) with only the SHA-256 of their token; ``stationwatch token``
makes a new one (:func:`new_token`). A role is a row of :data:`ROLE_PERMISSIONS`; a user's scope
is the sites named, or every site of their bureau and the bureaus below it.

| role | sees | may |
|---|---|---|
| ``staff`` 值班人员 | their sites | acknowledge, confirm; resolve and dismiss (not a critical alert) |
| ``leader`` 带班领导 | their sites | as staff, close critical alerts (a confirmed fire), maintenance windows |
| ``bureau`` 民政局 | sites of their bureau and the bureaus below | as leader |
| ``inspector`` 督查 | their sites or bureau | read only |
| ``admin`` | every site | everything |

Missing, unknown or expired token (``users[].expires``) → 401; an action the role may not take, or
a site outside the scope → 403. Both answer in Chinese and English, and never list other sites.
``stationwatch serve`` reloads the users on SIGHUP (:meth:`Auth` is built anew from the config). Anonymous reading (the demo's wall board) exists only in
local use (``api.environment: local``), like a default secret that is refused elsewhere.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import date, datetime, time as clock_time, timedelta
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stationwatch.core.config import CENTRE, StationConfig
from stationwatch.core.policy import DEMO_TOKEN_HASHES

from .roster import Directory

log = logging.getLogger(__name__)


class Permission(StrEnum):
    READ = "read"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    DISMISS = "dismiss"
    CLOSE_CRITICAL = "close_critical"  # resolve or dismiss a critical alert: a confirmed fire, a missing resident
    CONFIRM = "confirm"
    SILENCE = "silence"


P = Permission
STAFF = frozenset({P.READ, P.ACKNOWLEDGE, P.RESOLVE, P.DISMISS, P.CONFIRM})
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "staff": STAFF,
    "leader": STAFF | {P.CLOSE_CRITICAL, P.SILENCE},
    "bureau": STAFF | {P.CLOSE_CRITICAL, P.SILENCE},
    "inspector": frozenset({P.READ}),
    "admin": frozenset(Permission),
    "anonymous": frozenset({P.READ}),
}
ACTION_WORDS: dict[Permission, tuple[str, str]] = {
    P.READ: ("查看", "read"), P.ACKNOWLEDGE: ("确认", "acknowledge"), P.RESOLVE: ("处置完毕", "resolve"),
    P.DISMISS: ("排除误报", "dismiss"), P.CLOSE_CRITICAL: ("关闭严重告警（处置完毕或排除误报）", "close (resolve or dismiss) a critical alert"),
    P.CONFIRM: ("复核确认", "confirm"), P.SILENCE: ("设置维护窗口", "set maintenance windows"),
}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token and the hash that goes in the config (``users[].token_sha256``)."""
    token = "sw_" + secrets.token_urlsafe(32)
    return token, token_hash(token)


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    role: str
    sites: frozenset[str]
    permissions: frozenset[Permission]

    @property
    def actor(self) -> str:
        """How the audit trail names them (签字留痕)."""
        return f"{self.id}（{self.name}）"

    def can(self, permission: Permission, site: str | None = None) -> bool:
        return permission in self.permissions and (site is None or site in self.sites)


CHINA = ZoneInfo("Asia/Shanghai")  # an expiry without a time zone


def expiry(value: date | datetime | None) -> float | None:
    """``users[].expires`` as Unix time: a datetime without a zone is China time; a date alone
    means the token works through that day."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=CHINA)).timestamp()
    return datetime.combine(value + timedelta(days=1), clock_time(), CHINA).timestamp()


class Auth:
    """Tokens → principals, for one config."""

    def __init__(self, cfg: StationConfig, clock=time.time):
        self.cfg, self.clock = cfg, clock
        directory = Directory(cfg)
        every = frozenset(s.id for s in cfg.sites) | {CENTRE}  # the centre's own alerts concern everyone
        self.anonymous = Principal("anonymous", "匿名 / anonymous", "anonymous", every,
                                   ROLE_PERMISSIONS["anonymous"]) if cfg.api.anonymous else None
        self._by_hash: dict[str, tuple[Principal, float | None]] = {}
        self.users: dict[str, Principal] = {}  # by user id: who the command line acts as (`--user`)
        for user in cfg.users:
            sites = every if user.role == "admin" else frozenset(user.sites) | {CENTRE} | (
                frozenset(directory.sites_of_bureau(user.bureau)) if user.bureau else frozenset())
            self.users[user.id] = Principal(user.id, user.name, user.role, sites, ROLE_PERMISSIONS[user.role])
            self._by_hash[user.token_sha256] = (self.users[user.id], expiry(user.expires))
        demo = [u.id for u in cfg.users if u.token_sha256 in DEMO_TOKEN_HASHES]
        if demo:
            log.warning("users %s use demo tokens: fine for local use only (api.environment=%s)",
                        ", ".join(demo), cfg.api.environment)

    def _find(self, token: str) -> tuple[Principal, float | None] | None:
        digest = token_hash(token)
        for known, found in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return found
        return None

    def principal(self, token: str | None) -> Principal | None:
        """The user of ``token`` while it has not expired; the anonymous reader when there is no
        token and that is allowed."""
        if not token:
            return self.anonymous
        found = self._find(token)
        if found is None or (found[1] is not None and self.clock() >= found[1]):
            return None
        return found[0]

    def expired(self, token: str | None) -> bool:
        found = self._find(token) if token else None
        return found is not None and found[1] is not None and self.clock() >= found[1]


UNAUTHORIZED = "未登录或令牌无效 / missing or invalid token"
EXPIRED = "令牌已过期，请向管理员申请新令牌 / the token has expired: ask for a new one (`stationwatch token`)"
_bearer = HTTPBearer(auto_error=False, description="API token (`stationwatch token`)")


def current_principal(request: Request,
                      credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The caller, or 401."""
    auth: Auth = request.app.state.auth
    token = credentials.credentials if credentials is not None else None
    principal = auth.principal(token)
    if principal is None:
        raise HTTPException(401, EXPIRED if auth.expired(token) else UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def forbid(principal: Principal, permission: Permission, site: str | None = None, *, name_site: bool = True) -> None:
    """403 unless ``principal`` may take ``permission`` (on ``site``). ``name_site=False`` when the
    caller did not name the site (it is an alert's or a window's): the answer must not tell it."""
    if principal.can(permission, site):
        return
    zh, en = ACTION_WORDS[permission]
    if permission not in principal.permissions:
        raise HTTPException(403, f"角色“{principal.role}”无权{zh} / role '{principal.role}' may not {en}")
    if not name_site:
        raise HTTPException(403, "无权访问：该记录所属站点不在您的范围内 / not yours: this record's site is not one of yours")
    raise HTTPException(403, f"站点 {site} 不存在或不在您的范围内 / site '{site}' does not exist or is not yours")
