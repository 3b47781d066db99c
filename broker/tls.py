"""TLS certificates for the broker's gateway listener, made with the ``openssl`` command:
a private CA for the deployment and a server certificate naming the broker's host names and
addresses. Gateways get ``ca.crt`` and verify the broker with it. See docs/broker.md."""
from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path


class CertError(RuntimeError):
    pass


def _san(names: list[str]) -> str:
    entries = []
    for name in names:
        try:
            ipaddress.ip_address(name)
            entries.append(f"IP:{name}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return "subjectAltName=" + ",".join(entries)


def make_certs(out: Path, names: list[str], days: int = 825) -> dict[str, Path]:
    """Create (or keep) ``ca.crt``/``ca.key`` and issue ``server.crt``/``server.key`` for ``names``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertError("'openssl' not found: install the Debian package 'openssl'")
    out.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        done = subprocess.run([openssl, *args], cwd=out, capture_output=True, text=True)
        if done.returncode != 0:
            raise CertError(f"openssl {args[0]} failed: {done.stderr.strip()[:500]}")

    if not (out / "ca.crt").exists():
        run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
            "-subj", "/O=StationWatch/CN=StationWatch deployment CA")
    (out / "san.ext").write_text(_san(names) + "\n")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/O=StationWatch/CN={names[0]}")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", str(days), "-extfile", "san.ext")
    for key in ("ca.key", "server.key"):
        (out / key).chmod(0o600)
    return {n: out / n for n in ("ca.crt", "server.crt", "server.key")}
