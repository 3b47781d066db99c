"""`stationwatch serve` as a real process reloads its users on SIGHUP: a user taken out of the config
loses access without a restart, a new one gets it, an expired token is refused, and a broken edit
keeps the running config (nobody is locked out by a typo)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from stationwatch.alerts.auth import token_hash
from stationwatch.broker.stack import free_port

from support import EXAMPLES, wait_for

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "stationwatch.cli"]
TOKENS = {uid: f"reload-{uid}-token-0123456789" for uid in ("zhangsan", "lisi", "linshi")}


def user(uid: str, **extra) -> dict:
    return {"id": uid, "name": uid, "role": "staff", "sites": ["sl-station"], "token_sha256": token_hash(TOKENS[uid]),
            **extra}


def write(path: Path, users: list[dict]) -> None:
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["users"], data["api"] = users, {"environment": "production"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def me(url: str, uid: str) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/api/me", headers={"Authorization": f"Bearer {TOKENS[uid]}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())["id"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["detail"]
    except OSError as exc:
        return 0, str(exc)


def test_sighup_reloads_users_and_tokens_and_a_broken_edit_keeps_the_running_config(tmp_path):
    cfg, port = tmp_path / "station.yaml", free_port()
    write(cfg, [user("zhangsan")])
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(CLI + ["serve", "-c", str(cfg), "--db", str(tmp_path / "alerts.db"), "--port", str(port)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: me(url, "zhangsan") == (200, "zhangsan"), 30, what="the API answering zhangsan")
        assert me(url, "lisi")[0] == 401
        write(cfg, [user("lisi"), user("linshi", expires="2020-01-01T00:00:00+08:00")])
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: me(url, "lisi") == (200, "lisi"), 15, what="the new user let in")
        assert me(url, "zhangsan")[0] == 401  # removed from the config: out, without a restart
        status, detail = me(url, "linshi")
        assert status == 401 and "令牌已过期" in detail
        cfg.write_text(cfg.read_text(encoding="utf-8").replace("role: staff", "role: boss"), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config not reloaded" in log.read_text(errors="replace"), 15, what="the refusal logged")
        assert me(url, "lisi") == (200, "lisi") and proc.poll() is None
        assert "users[0].role" in log.read_text(errors="replace")  # which field is wrong
    finally:
        proc.terminate()
        proc.wait(20)
