"""Broker accounts from the organisation config: a username and password per gateway, service
accounts for ingest and alerting, the ACL that keeps every gateway to the topics of its own devices,
the Mosquitto password files (``$7$`` PBKDF2-SHA512, the format ``mosquitto_passwd`` writes) and the
Mosquitto config with the limits of the config's ``limits.broker``.

Gateway accounts are in ``passwd-gateways``, read only by the TLS listener, which replaces every
client id with the username (``use_username_as_clientid``): a gateway's account can never take
another gateway's session. Service accounts are in ``passwd-local``, read only by the loopback
listener, where a service may use several client ids (ingest instances, engines).

Passwords are generated once and kept in ``secrets.json`` (mode 0600) beside the generated files,
so running the command again keeps existing passwords and only adds accounts for new gateways.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from stationwatch.core.contract import HEALTH_METRICS, ROOT, MessageClass
from stationwatch.core.limits import BrokerLimits
from stationwatch.core.wire import SERVICE_ROOT

ITERATIONS = 101  # mosquitto_passwd's default for $7$
SERVICE_ACCOUNTS = {
    # name: (read filters, write filters); each service beats under its own sw/svc/v1/{service}/…
    # ingest also tells each gateway what it stored (cmd/stored: the end-to-end acknowledgement)
    "stationwatch-ingest": ([f"{ROOT}/#", f"$share/ingest/{ROOT}/#"],
                            [f"{SERVICE_ROOT}/ingest/#", f"{ROOT}/+/+/{MessageClass.CMD.value}/stored"]),
    "stationwatch-alerts": ([f"{ROOT}/#", f"$share/alerts/{ROOT}/#", f"{SERVICE_ROOT}/#"],
                            [f"{ROOT}/+/+/{MessageClass.CMD.value}/#", "sw/esc/v1/#", f"{SERVICE_ROOT}/alerts/#"]),
    "stationwatch-api": ([], [f"{SERVICE_ROOT}/api/#"]),
    # the watcher reads the engine's and dispatcher's beats and probes the broker on its own topic
    "stationwatch-watcher": ([f"{SERVICE_ROOT}/#"], [f"{SERVICE_ROOT}/watcher/#"]),
}


GATEWAY_PASSWD, LOCAL_PASSWD = "passwd-gateways", "passwd-local"  # read by the TLS / the loopback listener


class AccountError(ValueError):
    """The config asks for accounts the broker cannot have (a gateway named like a service)."""


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]

    @property
    def service(self) -> bool:
        return self.username in SERVICE_ACCOUNTS


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    _, kind, iterations, salt, digest = stored.split("$")
    if kind != "7":
        return False
    computed = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    return secrets.compare_digest(computed, base64.b64decode(digest))


def gateway_topics(site: str, gateway: str, sensors: tuple[str, ...] = (), cameras: tuple[str, ...] = ()
                   ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a gateway may read (its commands) and write: one topic per device it has, never a
    wildcard, so that it cannot fill the broker with topics (retained ones outlive it)."""
    def under(kind: MessageClass, devices) -> tuple[str, ...]:
        return tuple(f"{base}/{kind.value}/{d}" for d in devices)
    base = f"{ROOT}/{site}/{gateway}"
    writes = ((f"{base}/{MessageClass.STATUS.value}", f"{base}/{MessageClass.PATROL.value}",
               f"{base}/{MessageClass.REPLY.value}", f"{base}/{MessageClass.READINGS.value}")
              + under(MessageClass.READING, sensors) + under(MessageClass.EVENT, (*sensors, *cameras))
              + under(MessageClass.HEARTBEAT, cameras) + under(MessageClass.HEALTH, sorted(HEALTH_METRICS)))
    reads = (f"{base}/{MessageClass.CMD.value}/+",)
    return reads, writes


def plan_accounts(cfg, known: dict[str, str]) -> list[Account]:
    """Every account the broker needs; passwords from ``known`` where present, else new ones."""
    def password(user: str) -> str:
        return known.get(user) or secrets.token_urlsafe(24)
    accounts = [Account(name, password(name), tuple(r), tuple(w)) for name, (r, w) in SERVICE_ACCOUNTS.items()]
    for i, gw in enumerate(cfg.gateways):
        if gw.id in SERVICE_ACCOUNTS:
            raise AccountError(f"gateways[{i}].id: '{gw.id}' is the name of a service account; rename the gateway "
                               f"/ 网关编号与服务账号重名")
        reads, writes = gateway_topics(gw.site, gw.id, tuple(s.id for s in cfg.sensors if s.gateway == gw.id),
                                       tuple(c.id for c in cfg.cameras if c.gateway == gw.id))
        accounts.append(Account(gw.id, password(gw.id), reads, writes))
    return accounts


def acl_text(accounts: list[Account]) -> str:
    lines = ["# StationWatch broker ACL — generated by `stationwatch broker generate`; do not edit by hand.",
             "# A gateway publishes only to the topics of its own devices and reads only its own commands.",
             "# A device added to the config needs `generate` again and a reload (SIGHUP) of Mosquitto.", ""]
    for a in accounts:
        lines.append(f"user {a.username}")
        lines += [f"topic read {t}" for t in a.reads]
        lines += [f"topic write {t}" for t in a.writes]
        lines.append("")
    return "\n".join(lines)


def passwd_text(accounts: list[Account]) -> str:
    return "".join(f"{a.username}:{hash_password(a.password)}\n" for a in accounts)


def write_accounts(cfg, out: Path) -> list[Account]:
    """Write ``passwd-gateways``, ``passwd-local``, ``acl`` and ``secrets.json`` into ``out``;
    returns the accounts."""
    out.mkdir(parents=True, exist_ok=True)
    secrets_path = out / "secrets.json"
    known = json.loads(secrets_path.read_text()) if secrets_path.exists() else {}
    accounts = plan_accounts(cfg, known)
    _private_write(secrets_path, json.dumps({a.username: a.password for a in accounts}, indent=2) + "\n")
    _private_write(out / GATEWAY_PASSWD, passwd_text([a for a in accounts if not a.service]))
    _private_write(out / LOCAL_PASSWD, passwd_text([a for a in accounts if a.service]))
    (out / "acl").write_text(acl_text(accounts))
    return accounts


def mosquitto_conf(limits: BrokerLimits, *, out_dir: Path, tls_dir: Path, data_dir: Path, host: str, port: int,
                   tls_host: str, tls_port: int, user: str) -> str:
    """The production mosquitto.conf (broker/mosquitto-secure.conf.tmpl) for the generated accounts."""
    from .stack import _render
    return _render("mosquitto-secure.conf.tmpl", out_dir=out_dir, tls_dir=tls_dir, data_dir=data_dir, host=host,
                   port=port, tls_host=tls_host, tls_port=tls_port, user=user, **limit_values(limits))


def limit_values(limits: BrokerLimits) -> dict[str, int]:
    """The template values of the broker limits, in the units Mosquitto reads (bytes)."""
    return {"message_bytes": limits.message_kb * 1024, "packet_bytes": limits.packet_kb * 1024,
            "queued_messages": limits.queued_messages, "queued_bytes": limits.queued_mb * 1024 * 1024,
            "inflight_messages": limits.inflight_messages}


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def bridge_conf(name: str, remote_host: str, remote_port: int, username: str | None = None,
                password: str | None = None, ca_file: str | None = None) -> str:
    """The bridge section a city server includes to forward escalations to its province."""
    from .stack import _render
    auth = f"remote_username {username}\nremote_password {password}" if username else "# no remote account"
    tls = f"bridge_cafile {ca_file}\nbridge_insecure false" if ca_file else "# plain connection (use TLS between servers)"
    return _render("bridge.conf.tmpl", name=name, remote_host=remote_host, remote_port=remote_port, auth=auth, tls=tls)
