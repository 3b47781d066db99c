"""The duty board's tests: the API served by uvicorn in a thread on a free port, and the people
who sign in to it (a duty officer, a leader, an inspector) in the example station's config."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import uvicorn
import yaml

from stationwatch.alerts.api import create_app
from stationwatch.alerts.auth import token_hash
from stationwatch.broker.stack import free_port
from stationwatch.core.config import parse_config

from . import EXAMPLES, ROOT, wait_for

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = os.environ.get("STATIONWATCH_SCREENSHOTS") == "1"  # `make screenshots`: docs/board-*.png
DOCS = ROOT / "docs"
STAFF, LEADER, INSPECTOR = "board-staff-token-0001", "board-leader-token-0001", "board-inspector-token-0001"
USERS = [{"id": "zhangsan", "name": "值班员张三", "role": "staff", "sites": ["sl-station"], "token_sha256": token_hash(STAFF)},
         {"id": "lisi", "name": "站长李四", "role": "leader", "sites": ["sl-station"], "token_sha256": token_hash(LEADER)},
         {"id": "jiandu", "name": "督查员", "role": "inspector", "sites": ["sl-station"],
          "token_sha256": token_hash(INSPECTOR)}]


class Served:
    """create_app(cfg, db) under uvicorn in a thread."""

    def __init__(self, cfg, db: Path):
        self.port = free_port()
        self.app = create_app(cfg, db)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.server.started, 10, what="uvicorn started")
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def console_config(receiver_port: int):
    """The example station outside local use (no anonymous reading), its people signed in with the
    tokens above, every notice to a local receiver, and a broker outage noticed within seconds."""
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    for contact in data["contacts"]:
        contact["channels"] = [f"json://127.0.0.1:{receiver_port}/duty"]
    data["users"] = USERS
    data["api"] = {"environment": "production"}
    data["supervision"] = {"beat_s": 0.5, "grace_s": {"broker": 2}, "reconnect_grace_s": 2}
    return parse_config(data)
