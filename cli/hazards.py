"""``stationwatch hazard …``: the hazard register (问题清单) on the command line, acting as a user of the
config (``--user``) with that user's role and sites — the same checks and words as the API. Exit
codes: 2 bad input, 3 refused (the role or site does not allow it), 4 the entry's status does not."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

hazard_app = typer.Typer(no_args_is_help=True, help="Hazard register (问题清单): create, list, update, submit, "
                                                     "verify, sign. / 隐患问题清单。")
ConfigArg = Annotated[Path, typer.Option("--config", "-c", help="organisation config (YAML) / 组织配置文件")]
DbOpt = Annotated[Path, typer.Option(help="SQLite alert store")]
UserOpt = Annotated[str, typer.Option("--user", "-u", help="act as this user of the config (users[].id) / 操作人")]
NoteOpt = Annotated[str, typer.Option(help="note for the sign-off trail / 签字说明")]


def _open(config: Path, db: Path, user: str | None):
    from stationwatch.alerts.auth import Auth
    from stationwatch.alerts.register.actions import Actions
    from stationwatch.alerts.register.store import Register
    from stationwatch.alerts.store import Store
    from stationwatch.cli.main import _load
    cfg = _load(config)
    principal = None
    if user is not None:
        principal = Auth(cfg).users.get(user)
        if principal is None:
            typer.echo(f"error / 错误: --user: no user '{user}' in the config / 配置中没有该用户; known: "
                       + ", ".join(u.id for u in cfg.users), err=True)
            raise typer.Exit(2)
    return cfg, Actions(cfg, Register(Store(db))), principal


def _run(fn, *args, **kwargs):
    from stationwatch.alerts.register.actions import Invalid, Refused
    from stationwatch.alerts.store import AlertError, Conflict, NotFound
    try:
        return fn(*args, **kwargs)
    except Refused as exc:
        typer.echo(f"refused / 拒绝: {exc}", err=True)
        raise typer.Exit(3) from None
    except Conflict as exc:
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(4) from None
    except (Invalid, NotFound, AlertError) as exc:
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(2) from None


def _show(cfg, hazard) -> None:
    from stationwatch.alerts.register.records import OVERDUE, STATUSES
    tz = cfg.site(hazard.site).tz
    status = OVERDUE if hazard.overdue(datetime.now().timestamp()) else STATUSES[hazard.status]
    due = datetime.fromtimestamp(hazard.deadline_at, tz).strftime("%Y-%m-%d %H:%M")
    typer.echo(f"#{hazard.id} [{status.zh} / {status.en}] {hazard.site}{'/' + hazard.room if hazard.room else ''}"
               f" {hazard.category}{' 重大 major' if hazard.major else ''}: {hazard.description}")
    typer.echo(f"    整改时限 deadline {due} · 责任人 responsible {hazard.responsible} · 来源 source {hazard.source}")
    for t in hazard.trail:
        at = datetime.fromtimestamp(t["at"], tz).strftime("%Y-%m-%d %H:%M")
        typer.echo(f"    {at} {t['actor']} ({t['role']}) {t['action']} → {t['status']}: {t['note']}")


@hazard_app.command("list")
def list_cmd(config: ConfigArg, user: UserOpt, db: DbOpt = Path("alerts.db"),
             site: Annotated[Optional[str], typer.Option(help="one site")] = None,
             status: Annotated[Optional[str], typer.Option(help="open, rectifying, submitted, verified, closed")] = None,
             overdue: Annotated[Optional[bool], typer.Option("--overdue/--not-overdue", help="only overdue entries")] = None
             ) -> None:
    """Entries of the user's sites, newest first. / 列出问题清单。"""
    cfg, actions, principal = _open(config, db, user)
    for hazard in _run(actions.list, principal, site, status=status, overdue=overdue):
        _show(cfg, hazard)


@hazard_app.command("show")
def show_cmd(hazard_id: int, config: ConfigArg, user: UserOpt, db: DbOpt = Path("alerts.db")) -> None:
    """One entry with its sign-off trail. / 查看隐患及签字记录。"""
    cfg, actions, principal = _open(config, db, user)
    _run(actions.get, principal, hazard_id)
    _show(cfg, actions.register.get(hazard_id, with_trail=True))


@hazard_app.command("create")
def create_cmd(config: ConfigArg, user: UserOpt,
               site: Annotated[str, typer.Option(help="site id")],
               category: Annotated[str, typer.Option(help="fire, heating, video, electrical, access, maintenance, drill, other")],
               description: Annotated[str, typer.Option(help="the problem / 问题描述")],
               deadline: Annotated[str, typer.Option(help="整改时限: 2026-12-10 (end of that day) or 2026-12-10T18:00, site time")],
               path: Annotated[str, typer.Option("--path", help="整改路径: how it is to be rectified")],
               standard: Annotated[str, typer.Option(help="整改标准: what counts as rectified")],
               responsible: Annotated[str, typer.Option(help="责任人")],
               db: DbOpt = Path("alerts.db"),
               room: Annotated[Optional[str], typer.Option(help="room id")] = None,
               major: Annotated[bool, typer.Option(help="a major hazard (重大事故隐患)")] = False,
               note: NoteOpt = "") -> None:
    """List a problem (the bureau). / 新增隐患。"""
    from stationwatch.alerts.register.actions import parse_when
    cfg, actions, principal = _open(config, db, user)
    when = _run(parse_when, "deadline", deadline)
    _show(cfg, _run(actions.create, principal, site=site, room=room, category=category, description=description,
                    deadline=when, path=path, standard=standard, responsible=responsible, major=major, note=note))


@hazard_app.command("update")
def update_cmd(hazard_id: int, config: ConfigArg, user: UserOpt, db: DbOpt = Path("alerts.db"),
               rectifying: Annotated[bool, typer.Option(help="rectification has started (整改中)")] = False,
               responsible: Annotated[Optional[str], typer.Option()] = None,
               deadline: Annotated[Optional[str], typer.Option(help="new deadline (the bureau)")] = None,
               path: Annotated[Optional[str], typer.Option("--path", help="new path (the bureau)")] = None,
               standard: Annotated[Optional[str], typer.Option(help="new standard (the bureau)")] = None,
               note: NoteOpt = "") -> None:
    """Progress (the station) or new terms (the bureau). / 更新整改进度或条款。"""
    from stationwatch.alerts.register.actions import parse_when
    cfg, actions, principal = _open(config, db, user)
    changes = {"responsible": responsible, "path": path, "standard": standard,
               "deadline": _run(parse_when, "deadline", deadline) if deadline else None}
    _show(cfg, _run(actions.update, principal, hazard_id, changes, rectifying, note))


def _move(action: str, doc: str):
    def command(hazard_id: int, config: ConfigArg, user: UserOpt, db: DbOpt = Path("alerts.db"),
                note: NoteOpt = "") -> None:
        cfg, actions, principal = _open(config, db, user)
        _show(cfg, _run(actions.move, principal, hazard_id, action, note))
    command.__doc__ = doc
    return command


hazard_app.command("submit")(_move("submit", "Rectified: for verification, with what was done (the station). / 提交验收。"))
hazard_app.command("verify")(_move("verify", "Verified against the standard (the bureau). / 验收通过。"))
hazard_app.command("reject")(_move("reject", "Verification not passed: back to rectifying, with why (the bureau). / 验收未通过。"))
hazard_app.command("close")(_move("close", "Struck off after verification (the bureau). / 销号。"))
hazard_app.command("sign")(_move("sign", "A sign-off without a move. / 签字。"))
