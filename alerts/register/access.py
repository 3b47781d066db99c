"""Who may do what with the register, as a table (the role × action matrix), and the reason a refusal
gives — the same words on the API (403) and the command line.

| role | read | create | update | change terms | submit | verify | close | sign |
|---|---|---|---|---|---|---|---|---|
| ``staff`` 值班人员 / ``leader`` 带班领导 | ✓ | — | ✓ | — | ✓ | — | — | ✓ |
| ``bureau`` 民政局 | ✓ | ✓ | ✓ | ✓ | — | ✓ | ✓ | ✓ |
| ``inspector`` 督查 | ✓ | — | — | — | — | — | — | — |
| ``admin`` | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ |

"Change terms" is moving the deadline, path or standard, the description, category or room: what the
bureau set when it listed the problem. Every role acts only on the sites of its scope (:mod:`..auth`).
"""
from __future__ import annotations

from enum import StrEnum

from ..auth import Principal


class Act(StrEnum):
    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    TERMS = "terms"
    SUBMIT = "submit"
    VERIFY = "verify"
    CLOSE = "close"
    SIGN = "sign"


A = Act
STATION = frozenset({A.READ, A.UPDATE, A.SUBMIT, A.SIGN})
ROLE_ACTS: dict[str, frozenset[Act]] = {
    "staff": STATION,
    "leader": STATION,
    "bureau": frozenset({A.READ, A.CREATE, A.UPDATE, A.TERMS, A.VERIFY, A.CLOSE, A.SIGN}),
    "inspector": frozenset({A.READ}),
    "admin": frozenset(Act),
    "anonymous": frozenset(),  # entries name the people responsible: not for the wall board
}
WORDS: dict[Act, tuple[str, str]] = {
    A.READ: ("查看问题清单", "read the hazard register"), A.CREATE: ("新增隐患", "add a hazard"),
    A.UPDATE: ("更新整改进度", "update a hazard"), A.TERMS: ("修改整改时限、路径或标准", "change the deadline, path or standard"),
    A.SUBMIT: ("提交验收", "submit a hazard for verification"), A.VERIFY: ("验收", "verify a rectification"),
    A.CLOSE: ("销号", "close a hazard"), A.SIGN: ("签字", "sign off a hazard"),
}
WHO_MAY: dict[Act, str] = {act: "、".join(r for r, acts in ROLE_ACTS.items() if act in acts and r != "admin") or "admin"
                           for act in Act}


def refusal(principal: Principal, act: Act, site: str | None = None) -> str | None:
    """Why ``principal`` may not take ``act`` on ``site`` (Chinese / English), or None when it may."""
    zh, en = WORDS[act]
    if act not in ROLE_ACTS.get(principal.role, frozenset()):
        return (f"角色“{principal.role}”无权{zh}（可由 {WHO_MAY[act]} 操作）/ role '{principal.role}' may not {en}"
                f" (roles that may: {WHO_MAY[act]})")
    if site is not None and site not in principal.sites:
        return f"站点 {site} 不在您的范围内，无权{zh} / site '{site}' is not in your scope: you may not {en} there"
    return None
