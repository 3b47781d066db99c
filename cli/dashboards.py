"""``stationwatch dashboards …``: the Grafana dashboards built from the config — provisioning files,
the upload to a Grafana, PNGs drawn from their real query results."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ConfigArg = Annotated[Path, typer.Option("--config", "-c", help="organisation config (YAML) / 组织配置文件")]


def _load(path: Path):
    from stationwatch.cli.main import _load as load
    return load(path)


dashboards_app = typer.Typer(no_args_is_help=True, help="Grafana dashboards from the config. / Grafana 看板。")
InfluxUrlOpt = Annotated[str, typer.Option("--influx", help="InfluxDB URL as Grafana's server reaches it")]


def _boards(config: Path):
    from stationwatch.dashboards.boards import boards
    from stationwatch.dashboards.influxql import DATASOURCE_UID
    from stationwatch.dashboards.lint import lint
    built = boards(_load(config))
    problems = lint(built, {DATASOURCE_UID})
    if problems:
        typer.echo("看板检查未通过 / the dashboards fail their checks:\n  - " + "\n  - ".join(problems), err=True)
        raise typer.Exit(2)
    return built


def _target(influx: str, database: str, user: Optional[str]):
    from stationwatch.dashboards.provisioning import InfluxTarget
    try:
        return InfluxTarget(influx, database, user)
    except ValueError as exc:
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(2) from None


@dashboards_app.command("build")
def dashboards_build(config: ConfigArg,
                     out: Annotated[Path, typer.Option(help="the provisioning folder to write")] = Path("grafana"),
                     influx: InfluxUrlOpt = "http://127.0.0.1:8086",
                     database: Annotated[str, typer.Option(help="InfluxDB database")] = "stationwatch",
                     influx_user: Annotated[Optional[str], typer.Option(help="InfluxDB user (password: $STATIONWATCH_INFLUX_PASSWORD in Grafana's environment)")] = None,
                     grafana_path: Annotated[Optional[Path], typer.Option(help="where OUT is on the Grafana server (default: OUT)")] = None) -> None:
    """Write data sources, dashboard providers (a folder per city) and dashboards. / 生成 Grafana 配置。"""
    from stationwatch.dashboards.provisioning import write_provisioning
    written = write_provisioning(out, _boards(config), _target(influx, database, influx_user), grafana_path)
    typer.echo(f"{len(written.files)} file(s) → {written.root}")
    for f in written.files:
        typer.echo(f"  {f.relative_to(written.root)}")


@dashboards_app.command("push")
def dashboards_push(config: ConfigArg,
                    grafana: Annotated[str, typer.Option(help="Grafana URL, e.g. http://127.0.0.1:3000 (token: $STATIONWATCH_GRAFANA_TOKEN)")],
                    influx: InfluxUrlOpt = "http://127.0.0.1:8086",
                    database: Annotated[str, typer.Option(help="InfluxDB database")] = "stationwatch",
                    influx_user: Annotated[Optional[str], typer.Option(help="InfluxDB user")] = None,
                    datasource: Annotated[bool, typer.Option(help="create or update the data source too")] = True) -> None:
    """Upload data source, folders and dashboards with grafana-client, by uid. / 上传看板。"""
    from stationwatch.dashboards.push import PushError, push
    built, target = _boards(config), _target(influx, database, influx_user)
    try:
        done = push(grafana, built, target if datasource else None)
    except PushError as exc:
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo("\n".join(done.lines()))



@dashboards_app.command("render")
def dashboards_render(config: ConfigArg,
                      influx: Annotated[str, typer.Option(help="InfluxDB 1.x URL to query")] = "http://127.0.0.1:8086",
                      database: Annotated[str, typer.Option(help="InfluxDB database")] = "stationwatch",
                      out: Annotated[Path, typer.Option(help="folder for the PNGs")] = Path("dashboards-png"),
                      minutes: Annotated[float, typer.Option(help="the time range: this many minutes up to now")] = 60.0) -> None:
    """Draw each dashboard as a PNG from its real query results (no Grafana needed). / 看板截图。"""
    import time

    from stationwatch.broker.influx import InfluxV1Writer
    from stationwatch.dashboards.render import RenderError, render
    from stationwatch.dashboards.runner import Runner, TimeRange, influx_query
    client = InfluxV1Writer(influx, database)._client  # the same connection settings ingest uses
    now = int(time.time() * 1000)
    window = TimeRange(now - int(minutes * 60_000), now)
    for board in _boards(config):
        try:
            path = render(board.model, Runner(board.model, influx_query(client), window), out / f"{board.uid}.png")
        except RenderError as exc:
            typer.echo(f"error / 错误: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"{board.title} → {path}")
