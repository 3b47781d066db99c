"""``stationwatch report …``: the monthly report of a site or of all sites of a bureau, as PDF and XLSX,
and the report service that makes and archives them on the 1st of each month."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

report_app = typer.Typer(no_args_is_help=True, help="Monthly hazard reports (PDF, XLSX). / 月度安全隐患报告。")
ConfigArg = Annotated[Path, typer.Option("--config", "-c", help="organisation config (YAML) / 组织配置文件")]
DbOpt = Annotated[Path, typer.Option(help="SQLite alert store")]
InfluxOpt = Annotated[str, typer.Option(help="InfluxDB 1.x URL")]
DatabaseOpt = Annotated[str, typer.Option(help="InfluxDB database")]


@report_app.command("monthly")
def monthly(config: ConfigArg,
            month: Annotated[str, typer.Option(help="the month, e.g. 2026-11 (the running month: counted up to now)")],
            site: Annotated[Optional[str], typer.Option(help="one site's report")] = None,
            bureau: Annotated[Optional[str], typer.Option(help="every site of this bureau, and the city summary")] = None,
            format: Annotated[str, typer.Option("--format", help="pdf, xlsx or pdf,xlsx")] = "pdf,xlsx",  # noqa: A002
            out: Annotated[Path, typer.Option(help="folder for the files")] = Path("."),
            db: DbOpt = Path("alerts.db"),
            influx: InfluxOpt = "http://127.0.0.1:8086",
            database: DatabaseOpt = "stationwatch",
            archive: Annotated[bool, typer.Option(help="also record the files and their SHA-256 in the archive")] = False
            ) -> None:
    """Make the monthly report of a site (--site) or of a bureau's sites with the city summary (--bureau).
    / 生成站点或全市月度报告。"""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from stationwatch.alerts.reports.archive import ReportError, Reports
    from stationwatch.alerts.reports.period import Month
    from stationwatch.alerts.records import AlertError
    from stationwatch.alerts.reports.series import Series
    from stationwatch.alerts.roster import Directory
    from stationwatch.alerts.store import Store
    from stationwatch.cli.main import _load
    cfg = _load(config)
    if (site is None) == (bureau is None):
        _fail("--site or --bureau: name exactly one / 须指定 --site 或 --bureau 之一")
    formats = [f.strip() for f in format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("pdf", "xlsx")]
    if bad or not formats:
        _fail(f"--format: unknown format {', '.join(bad) or '(none)'}; use pdf, xlsx or pdf,xlsx / 格式应为 pdf 或 xlsx")
    try:
        period = Month.parse(month)
    except ValueError as exc:
        _fail(f"--{exc}")
    if not db.exists():
        _fail(f"--db: no alert store at {db} / 告警库不存在")
    series = Series(influx, database)
    reports = Reports(cfg, Store(db), series)
    try:
        if site is not None:
            made = reports.site(site, period, formats, out)
        else:
            known = {b.id for b in cfg.bureaus}
            if bureau not in known:
                _fail(f"--bureau: no bureau '{bureau}' / 民政局不存在; known: {', '.join(sorted(known))}")
            total = len(Directory(cfg).sites_of_bureau(bureau)) + 1
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          transient=False) as bar:
                task = bar.add_task(f"{bureau} {period.label}", total=total)
                made = reports.bureau(bureau, period, formats, out,
                                      progress=lambda name: bar.update(task, advance=1, description=f"{bureau}: {name}"))
    except ReportError as exc:
        _fail(f"--{exc}")
    except AlertError as exc:  # InfluxDB did not answer, no CJK font installed …
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        series.close()
    if archive:
        reports.record(made, "command line")
    for m in made:
        typer.echo(f"{m.path}  sha256 {m.sha256}")


@report_app.command("schedule")
def schedule(config: ConfigArg, db: DbOpt = Path("alerts.db"), influx: InfluxOpt = "http://127.0.0.1:8086",
             database: DatabaseOpt = "stationwatch",
             check_s: Annotated[float, typer.Option(help="how often to look for reports that are due")] = 600.0) -> None:
    """The report service: on the 1st of each month (reports.run_at, site time) the last month's reports of
    every city, archived with their SHA-256; a missed run is made when it starts. / 月报定时生成服务。"""
    from stationwatch.alerts.reports.archive import run_schedule
    from stationwatch.cli.main import _load, _setup_logging, _stop_event
    _setup_logging()
    run_schedule(_load(config), db, influx, database, _stop_event(), check_s)


def _fail(message: str) -> None:
    typer.echo(f"error / 错误: {message}", err=True)
    raise typer.Exit(2)
