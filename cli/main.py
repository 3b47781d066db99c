"""The ``stationwatch`` command. Each sub-command imports what it needs only when it runs."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="StationWatch 救助管理站安全监测 — building-safety monitoring for relief stations.")

ConfigArg = Annotated[Path, typer.Option("--config", "-c", help="organisation config (YAML) / 组织配置文件")]
BrokerOpt = Annotated[str, typer.Option("--broker", help="MQTT broker host:port")]
StoreOpt = Annotated[Optional[str], typer.Option("--store", help="alert store: a SQLite file, or postgresql://user@host/db shared by engines partitioned by site (docs/alerts.md); overrides --db")]


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _load(path: Path):
    from stationwatch.core.config import ConfigError, load_config
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _stop_event() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so long-running services stop cleanly. SIGUSR1 prints
    every thread's stack to stderr (the journal), for a service that hangs: `kill -USR1 PID`."""
    import faulthandler
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return stop


@app.command("check-config")
def check_config(file: Path) -> None:
    """Validate a config file; print every problem with its field path. / 检查配置文件。"""
    cfg = _load(file)
    typer.echo(f"OK / 配置正确: {file}: {len(cfg.sites)} site(s), {len(cfg.gateways)} gateway(s), "
               f"{len(cfg.sensors)} sensor(s), {len(cfg.cameras)} camera(s)")


@app.command()
def simulate(config: Annotated[Optional[Path], typer.Option("--config", "-c", help="organisation config (default: the running demo's)")] = None,
             broker: Annotated[Optional[str], typer.Option(help="MQTT broker host:port (default: the running demo's, else 127.0.0.1:1883)")] = None,
             scenario: Annotated[Optional[str], typer.Option(help="fire | heating-failure | night-exit | camera-offline | gateway-power-loss")] = None,
             gateway: Annotated[Optional[str], typer.Option(help="gateway id (default: the first one)")] = None,
             speed: Annotated[Optional[float], typer.Option(help="time compression: simulated seconds per real second (default: real time; a scenario's own default for the scenario)")] = None,
             standalone: Annotated[bool, typer.Option(help="run an own simulated gateway instead of commanding the running one")] = False,
             spool: Annotated[Optional[Path], typer.Option(help="the simulated gateway's spool file (default: one per gateway in the temp folder)")] = None,
             verbose: bool = False) -> None:
    """Run the gateway agent on a simulated station, or play a scenario on the one already running.
    / 模拟站点（生产网关代理）与场景。"""
    _setup_logging(verbose)
    from stationwatch.cli.demo import demo_endpoints
    from stationwatch.core.config import config_version
    from stationwatch.core.mqtt import BrokerAddress
    from stationwatch.gateway import simulator
    running = demo_endpoints() or {}
    if config is None and "config" not in running:
        typer.echo("error / 错误: no running demo found here; name a config with --config "
                   "(e.g. docs/examples/city-station.yaml) / 未找到正在运行的演示，请用 --config 指定配置", err=True)
        raise typer.Exit(2)
    config = config or Path(running["config"])
    cfg = _load(config)
    address = BrokerAddress.parse(broker or running.get("broker", "127.0.0.1:1883"))
    try:
        gw = simulator.pick_gateway(cfg, gateway)
        if scenario is not None:
            simulator.check_scenario(scenario)
        if scenario is not None and not standalone:
            simulator.request_scenario(cfg, address, gw, scenario, speed)
            typer.echo(f"scenario '{scenario}' started on gateway {gw.id} / 场景已启动")
            return
        simulator.run_gateway(cfg, gw, address, stop=_stop_event(), speed=speed, scenario=scenario,
                              config_version=config_version(config), spool_path=spool)
    except simulator.SimulationError as exc:
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def drill(action: Annotated[str, typer.Argument(help="start | end")],
          config: ConfigArg,
          gateway: Annotated[str, typer.Option(help="gateway id")],
          minutes: Annotated[float, typer.Option(help="how long the drill lasts unless ended (≤ 240)")] = 60.0,
          broker: BrokerOpt = "127.0.0.1:1883",
          ca_file: Annotated[Optional[Path], typer.Option(help="CA certificate: connect to the broker with TLS")] = None) -> None:
    """Start or end a drill (演练) on a real gateway: while it lasts every event it sends is marked as a
    drill, so testing the inputs pages nobody as real. Waits for the gateway's answer. / 网关演练模式。"""
    from stationwatch.core.ask import GatewayUnanswered, ask
    from stationwatch.core.mqtt import BrokerAddress
    cfg = _load(config)
    gw = cfg.gateway(gateway)
    if gw is None or action not in ("start", "end"):
        typer.echo(f"error / 错误: {'unknown gateway ' + repr(gateway) if gw is None else 'action must be start or end'}",
                   err=True)
        raise typer.Exit(2)
    args = {"action": action} | ({"minutes": minutes} if action == "start" else {})
    try:
        reply = ask(BrokerAddress.parse(broker, str(ca_file) if ca_file else None), gw.site, gw.id, "drill", args)
    except GatewayUnanswered as exc:
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(2) from None
    if not reply.ok:
        typer.echo(f"error / 错误: gateway {gw.id} refused: {reply.detail}", err=True)
        raise typer.Exit(2)
    typer.echo(f"演练{'开始' if action == 'start' else '结束'} / drill {action}ed on gateway {gw.id}"
               + (f" for {minutes:g} min" if action == "start" else ""))


@app.command("gateway")
def gateway_agent(config: ConfigArg,
                  gateway: Annotated[Optional[str], typer.Option(help="gateway id (default: the first one)")] = None,
                  broker: BrokerOpt = "127.0.0.1:1883",
                  ca_file: Annotated[Optional[Path], typer.Option(help="CA certificate: connect to the broker with TLS")] = None,
                  spool: Annotated[Optional[Path], typer.Option(help="spool file (default: gateways[].agent.spool_path)")] = None,
                  onewire_base: Annotated[Optional[Path], typer.Option(help="1-Wire sysfs folder (default /sys/bus/w1/devices)")] = None,
                  verbose: bool = False) -> None:
    """Run the gateway agent: sensors, local alarm, disk spool, MQTT. / 网关代理。
    The broker password of the gateway's account is read from STATIONWATCH_BROKER_PASSWORD.

    Validates the config, writes this gateway's plan beside its spool and becomes the lean
    runtime (gateway/runtime.py) by exec: same process for systemd, without the validation
    machinery in memory. A broken config falls back to the last good plan, loudly."""
    _setup_logging(verbose)
    from stationwatch.core.config import ConfigError, config_version, load_config
    from stationwatch.gateway.plan import compile_plan, load_plan, plan_path, write_plan
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        cfg = None
    if cfg is not None:
        gw = cfg.gateway(gateway) if gateway else cfg.gateways[0]
        if gw is None:
            typer.echo(f"error / 错误: unknown gateway '{gateway}' / 网关不存在; known: "
                       f"{', '.join(g.id for g in cfg.gateways)}", err=True)
            raise typer.Exit(2)
        path = plan_path(spool or gw.agent.spool_path)
        write_plan(compile_plan(cfg, gw, config_version(config)), path)
    else:  # the alarms must keep working while somebody fixes the file
        path = plan_path(spool or _last_spool_path(config, gateway))
        try:
            last = load_plan(path)
        except ValueError as exc:
            typer.echo(f"网关未启动 / not starting: no last good plan to fall back on ({exc})", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"配置有误，网关按上次有效配置运行 / config refused: running on the last good plan {path} "
                   f"(config version {last.config_version}) until the file is fixed", err=True)
    argv = [sys.executable, "-m", "stationwatch.gateway.runtime", str(path), "--broker", broker]
    argv += ["--ca-file", str(ca_file)] if ca_file else []
    argv += ["--spool", str(spool)] if spool else []
    argv += ["--onewire-base", str(onewire_base)] if onewire_base else []
    argv += ["--verbose"] if verbose else []
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def _last_spool_path(config: Path, gateway: str | None) -> str:
    """Where the last good plan is when the config is refused: the gateway's ``spool_path`` if the
    file still says it plainly, else the default place."""
    import yaml

    from stationwatch.core.agent_settings import AgentSettings
    try:
        gateways = yaml.safe_load(config.read_text(encoding="utf-8"))["gateways"]
        entry = next(g for g in gateways if gateway is None or g.get("id") == gateway)
        return str(entry["agent"]["spool_path"])
    except Exception:  # noqa: BLE001 — the file is broken; this is only a best guess
        return AgentSettings().spool_path


@app.command()
def ingest(config: ConfigArg,
           broker: BrokerOpt = "127.0.0.1:1883",
           influx: Annotated[str, typer.Option(help="InfluxDB 1.x URL")] = "http://127.0.0.1:8086",
           database: Annotated[str, typer.Option(help="InfluxDB database")] = "stationwatch",
           quarantine: Annotated[Path, typer.Option(help="SQLite file for refused messages")] = Path("quarantine.db"),
           influx_api: Annotated[str, typer.Option(help="v1 (InfluxDB 1.x) or v2 (InfluxDB 2.x/3.x: --database is the bucket)")] = "v1",
           org: Annotated[str, typer.Option(help="v2: organisation")] = "",
           shared: Annotated[Optional[str], typer.Option(help="MQTT shared-subscription group, to run several ingest processes")] = None,
           instance: Annotated[str, typer.Option(help="name of this process within the group")] = "",
           metrics_port: Annotated[Optional[int], typer.Option(help="serve Prometheus /metrics on this port (0: free)")] = None,
           ca_file: Annotated[Optional[Path], typer.Option(help="CA certificate: connect to the broker with TLS")] = None,
           workers: Annotated[int, typer.Option(min=1, max=64, help="ingest processes sharing the stream "
                                                "(an MQTT v5 shared subscription, --shared or 'ingest')")] = 1,
           mqtt_client: Annotated[str, typer.Option(help="stream: ingest's own MQTT 5 link (fast); "
                                                    "paho: the paho-mqtt client, MQTT 3.1.1")] = "stream",
           verbose: bool = False) -> None:
    """Store readings, events and heartbeats from MQTT in InfluxDB. / 数据入库。"""
    if mqtt_client not in ("stream", "paho"):
        typer.echo(f"error / 错误: --mqtt-client must be 'stream' or 'paho', not {mqtt_client!r}", err=True)
        raise typer.Exit(2)
    _setup_logging(verbose)
    from stationwatch.broker.ingest import IngestOptions, run_ingest
    from stationwatch.core.mqtt import BrokerAddress
    cfg = _load(config)
    if workers > 1:  # this process only keeps the workers running (broker/workers.py)
        from stationwatch.broker.workers import WorkerPool
        args = [sys.executable, "-m", "stationwatch.cli", "ingest", "-c", str(config), "--broker", broker,
                "--influx", influx, "--database", database, "--quarantine", str(quarantine), "--influx-api", influx_api,
                "--org", org, "--shared", shared or "ingest", "--mqtt-client", mqtt_client,
                *(["--ca-file", str(ca_file)] if ca_file else []),
                *(["--verbose"] if verbose else [])]
        WorkerPool(args, workers, instance or "w", metrics_port).run(_stop_event())
        return
    address = BrokerAddress.parse(broker, str(ca_file) if ca_file else None)
    options = IngestOptions(shared_group=shared, instance=instance or (str(os.getpid()) if shared else ""),
                            metrics_port=metrics_port, client=mqtt_client)
    from stationwatch.broker.influx import make_writer
    try:
        writer = make_writer(influx, database, influx_api, org, os.environ.get("STATIONWATCH_INFLUX_TOKEN", ""))
    except ValueError as exc:
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(2) from None
    run_ingest(cfg, address, influx, database, quarantine, stop=_stop_event(), writer=writer, options=options)


@app.command()
def alerts(config: ConfigArg,
           broker: BrokerOpt = "127.0.0.1:1883",
           db: Annotated[Path, typer.Option(help="SQLite alert store")] = Path("alerts.db"),
           store: StoreOpt = None,
           client_id: Annotated[str, typer.Option(help="MQTT client id: names the persistent session kept while the engine is down")] = "stationwatch-alerts",
           ca_file: Annotated[Optional[Path], typer.Option(help="CA certificate: connect to the broker with TLS")] = None,
           metrics_port: Annotated[Optional[int], typer.Option(help="serve Prometheus /metrics on this port (0: free)")] = None,
           influx: Annotated[Optional[str], typer.Option(help="InfluxDB 1.x URL: feed the alert history and the engine's figures to the charts")] = None,
           database: Annotated[str, typer.Option(help="InfluxDB database")] = "stationwatch",
           verbose: bool = False) -> None:
    """Run the rules on the live MQTT stream, supervise the pipeline, patrol the gateways and send
    notifications. / 告警引擎。"""
    _setup_logging(verbose)
    from stationwatch.alerts.claim import EngineTaken
    from stationwatch.alerts.history import InfluxSink
    from stationwatch.alerts.runner import run_engine
    from stationwatch.core.config import config_version
    from stationwatch.core.mqtt import BrokerAddress
    cfg = _load(config)
    try:
        run_engine(cfg, BrokerAddress.parse(broker, str(ca_file) if ca_file else None), store or db, stop=_stop_event(),
                   client_id=client_id, config_version=config_version(config), metrics_port=metrics_port,
                   history=InfluxSink(influx, database) if influx else None)
    except EngineTaken as exc:  # one engine per store and per client id (alerts/claim.py)
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def watch(config: ConfigArg,
          db: Annotated[Path, typer.Option(help="the alert engine's SQLite store (its heartbeat rows are read)")] = Path("alerts.db"),
          broker: Annotated[Optional[str], typer.Option(help="MQTT broker host:port, to watch it and the engine's beat")] = None,
          instance: Annotated[str, typer.Option(help="name of this watcher")] = "main",
          metrics_port: Annotated[Optional[int], typer.Option(help="serve Prometheus /metrics on this port (0: free)")] = None,
          verbose: bool = False) -> None:
    """The independent watcher: tells the backup channel when the alert engine, its dispatcher or
    the broker is gone. Run it as a process of its own. / 独立看护进程。"""
    _setup_logging(verbose)
    from stationwatch.alerts.watcher import run_watcher
    from stationwatch.core.mqtt import BrokerAddress
    cfg = _load(config)
    run_watcher(cfg, db, BrokerAddress.parse(broker) if broker else None, _stop_event(), instance=instance,
                metrics_port=metrics_port)


@app.command()
def serve(config: ConfigArg,
          db: Annotated[Path, typer.Option(help="SQLite alert store")] = Path("alerts.db"),
          store: StoreOpt = None,
          host: str = "127.0.0.1",
          port: int = 8080,
          influx: Annotated[Optional[str], typer.Option(help="InfluxDB URL: lets inspectors make reports on demand")] = None,
          database: Annotated[str, typer.Option(help="InfluxDB database")] = "stationwatch") -> None:
    """HTTP API and duty board. / 接口与值班看板。"""
    import uvicorn

    from stationwatch.alerts.api import create_app, reload
    from stationwatch.core.config import ConfigError, config_version, load_config
    cfg = _load(config)
    api = create_app(cfg, store or db)
    api.state.influx_url, api.state.influx_database = influx, database  # POST /api/reports
    api.state.config_version = config_version(config)  # the site view compares each gateway's to it

    def reload_config() -> None:
        try:
            reload(api, load_config(config))
        except ConfigError as exc:  # a broken edit must not lock everyone out: keep the running config
            logging.getLogger("stationwatch.serve").error("config not reloaded, the running one is kept: %s", exc)
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload_config, daemon=True).start())
    uvicorn.run(api, host=host, port=port, log_level="info")


@app.command()
def demo(config: Annotated[Path, typer.Option("--config", "-c", help="organisation config, e.g. docs/examples/city-station.yaml")],
         workdir: Annotated[Path, typer.Option(help="where the demo keeps its data")] = Path(".demo"),
         port: Annotated[int, typer.Option(help="port of the API and duty board (taken: a free one is chosen; 0: a free one)")] = 8080,
         speed: Annotated[float, typer.Option(help="time compression of the simulated station: readings, heartbeats and health this many times faster")] = 10.0,
         fresh: Annotated[bool, typer.Option(help="start clean: forget the alerts, readings and spool of earlier runs")] = False) -> None:
    """Run the whole system: Mosquitto, InfluxDB, simulated station, ingest, alerts, API. / 一键演示。"""
    _setup_logging()
    from stationwatch.cli.demo import run_demo
    _load(config)
    sys.exit(run_demo(config, workdir, port, speed, stop=_stop_event(), fresh=fresh))


@app.command()
def token(user: Annotated[Optional[str], typer.Argument(help="user id, echoed next to the hash")] = None) -> None:
    """Make an API token: printed once, with the line for the config. / 生成接口令牌。"""
    from stationwatch.alerts.auth import new_token
    clear, digest = new_token()
    typer.echo(f"令牌（只显示这一次）/ token (shown once): {clear}")
    typer.echo(f"配置 / config:  token_sha256: {digest}" + (f"   # {user}" if user else ""))


from stationwatch.cli.broker import broker_app  # noqa: E402  (typer only; each command imports the rest)
from stationwatch.cli.dashboards import dashboards_app  # noqa: E402
from stationwatch.cli.hazards import hazard_app  # noqa: E402
from stationwatch.cli.reports import report_app  # noqa: E402

app.add_typer(broker_app, name="broker")
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(hazard_app, name="hazard")
app.add_typer(report_app, name="report")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
