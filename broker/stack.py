"""Start the real Mosquitto and InfluxDB 1.x with the project's own config, in a data directory of
their own and on free ports, so the demo and the tests never touch a broker or database that is
already running on this machine.
"""
from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from stationwatch.core.limits import BrokerLimits


class StackError(RuntimeError):
    pass


def free_ports(count: int, host: str = "127.0.0.1", avoid: tuple[int, ...] = ()) -> list[int]:
    """``count`` distinct free ports. The sockets are held open until all are chosen: asked one at
    a time, the system may hand out the same free port twice."""
    sockets: list[socket.socket] = []
    try:
        ports: list[int] = []
        while len(ports) < count:
            s = socket.socket()
            sockets.append(s)
            s.bind((host, 0))
            port = s.getsockname()[1]
            if port not in avoid:
                ports.append(port)
        return ports
    finally:
        for s in sockets:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def _wait(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise StackError(f"{what} exited with code {proc.returncode}:\n{tail}")
        if check():
            return
        time.sleep(0.05)
    raise StackError(f"{what} did not come up within {timeout:.0f} s (log: {log})")


def _render(template: str, **values) -> str:
    text = files("stationwatch.broker").joinpath(template).read_text()
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        raise StackError(f"'{binary}' not found: install the Debian package '{package}' "
                         f"(sudo apt-get install {package}) or run `make demo` as root")
    return path


@dataclass
class LocalService:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@dataclass
class LocalMosquitto(LocalService):
    """Mosquitto with the development config; with ``secure_dir`` (the output of
    `stationwatch broker generate`) the production one: passwords, ACL and a TLS listener."""
    secure_dir: Path | None = None
    tls_dir: Path | None = None
    tls_port: int = 0
    extra_conf: str = ""  # appended to the config, e.g. a bridge
    limits: BrokerLimits = field(default_factory=BrokerLimits)  # the config's limits.broker

    def start(self):
        binary = _need("mosquitto", "mosquitto")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        from .accounts import limit_values, mosquitto_conf
        conf = self.data_dir / "mosquitto.conf"
        values = dict(host=self.host, port=self.port, data_dir=self.data_dir, user=getpass.getuser())
        if self.secure_dir is None:
            conf.write_text(_render("mosquitto.conf.tmpl", **values, **limit_values(self.limits)))
        else:
            self.tls_port = self.tls_port or free_ports(1, self.host, avoid=(self.port,))[0]
            conf.write_text(mosquitto_conf(self.limits, **values, out_dir=self.secure_dir, tls_port=self.tls_port,
                                           tls_host=self.host, tls_dir=self.tls_dir))
        if self.extra_conf:
            with conf.open("a") as f:
                f.write("\n" + self.extra_conf)
        log = self.data_dir / "mosquitto.log"
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.data_dir / "mosquitto.stderr", "ab"))
        _wait(lambda: _connectable(self.host, self.port), "mosquitto", self.proc, log)
        return self


@dataclass
class LocalInfluxDB(LocalService):
    rpc_port: int = 0

    def start(self):
        binary = _need("influxd", "influxdb")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port, self.rpc_port = free_ports(2, self.host)
        else:
            self.rpc_port = free_ports(1, self.host, avoid=(self.port,))[0]
        conf = self.data_dir / "influxdb.conf"
        conf.write_text(_render("influxdb.conf.tmpl", host=self.host, port=self.port,
                                rpc_port=self.rpc_port, data_dir=self.data_dir))
        log = self.data_dir / "influxd.log"
        self.proc = subprocess.Popen([binary, "-config", str(conf)], stdout=open(log, "ab"),
                                     stderr=subprocess.STDOUT)
        _wait(self._ping, "influxd", self.proc, log, timeout=60)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                return r.status == 204
        except OSError:
            return False


def _connectable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
