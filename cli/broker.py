"""``stationwatch broker …``: Mosquitto accounts, ACL and config from the organisation config, the
bridge to the province, TLS certificates."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

ConfigArg = Annotated[Path, typer.Option("--config", "-c", help="organisation config (YAML) / 组织配置文件")]


def _load(path: Path):
    from stationwatch.cli.main import _load as load
    return load(path)


broker_app = typer.Typer(no_args_is_help=True, help="Broker accounts, ACL, TLS. / 消息服务器账号与证书。")


@broker_app.command("generate")
def broker_generate(config: ConfigArg,
                    out: Annotated[Path, typer.Option(help="where to write passwd-gateways, passwd-local, acl, secrets.json, mosquitto.conf")] = Path("/etc/stationwatch/broker"),
                    tls_dir: Annotated[Optional[Path], typer.Option(help="certificates from `broker certs` (default: OUT/tls)")] = None,
                    data_dir: Annotated[Path, typer.Option(help="Mosquitto persistence directory")] = Path("/var/lib/stationwatch/mosquitto"),
                    port: Annotated[int, typer.Option(help="plain listener on the loopback, for the services")] = 1883,
                    tls_port: Annotated[int, typer.Option(help="TLS listener for the gateways")] = 8883,
                    tls_host: Annotated[str, typer.Option(help="address the TLS listener binds")] = "0.0.0.0",
                    user: Annotated[str, typer.Option(help="the user Mosquitto runs as")] = "mosquitto") -> None:
    """Per-gateway passwords, service accounts and ACL from the config, and the Mosquitto config
    with the config's limits.broker."""
    from stationwatch.broker.accounts import GATEWAY_PASSWD, LOCAL_PASSWD, AccountError, mosquitto_conf, write_accounts
    cfg = _load(config)
    try:
        accounts = write_accounts(cfg, out)
    except AccountError as exc:
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(2) from None
    tls_dir = tls_dir or out / "tls"
    (out / "mosquitto.conf").write_text(mosquitto_conf(
        cfg.limits.broker, out_dir=out.resolve(), tls_dir=tls_dir.resolve(), data_dir=data_dir,
        host="127.0.0.1", port=port, tls_host=tls_host, tls_port=tls_port, user=user))
    typer.echo(f"{len(accounts)} account(s) → {out}/{GATEWAY_PASSWD}, {out}/{LOCAL_PASSWD}, {out}/acl; passwords in "
               f"{out}/secrets.json (0600); config {out}/mosquitto.conf")


@broker_app.command("bridge")
def broker_bridge(name: Annotated[str, typer.Option(help="bridge name, e.g. the city id")],
                  province_host: Annotated[str, typer.Option(help="province server host")],
                  province_port: Annotated[int, typer.Option(help="province server TLS port")] = 8883,
                  username: Annotated[Optional[str], typer.Option(help="account on the province broker")] = None,
                  ca_file: Annotated[Optional[Path], typer.Option(help="the province deployment CA")] = None,
                  out: Annotated[Path, typer.Option(help="file to write")] = Path("bridge.conf")) -> None:
    """Bridge to the province: forwards escalated events and gateway status. / 生成省级桥接配置。
    The password is read from STATIONWATCH_BRIDGE_PASSWORD."""
    from stationwatch.broker.accounts import bridge_conf
    text = bridge_conf(name, province_host, province_port, username, os.environ.get("STATIONWATCH_BRIDGE_PASSWORD"),
                       str(ca_file) if ca_file else None)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    typer.echo(f"bridge → {province_host}:{province_port} written to {out}; include it from mosquitto.conf")


@broker_app.command("certs")
def broker_certs(out: Annotated[Path, typer.Option(help="certificate directory")] = Path("/etc/stationwatch/broker/tls"),
                 host: Annotated[list[str], typer.Option(help="host name or address gateways use (repeatable)")] = ["localhost", "127.0.0.1"],
                 days: int = 825) -> None:
    """A deployment CA and the broker's server certificate (openssl). / 生成 TLS 证书。"""
    from stationwatch.broker.tls import CertError, make_certs
    try:
        paths = make_certs(out, host, days)
    except CertError as exc:
        typer.echo(f"error / 错误: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"CA {paths['ca.crt']} (give it to the gateways); server certificate {paths['server.crt']}")
