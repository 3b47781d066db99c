"""Helpers the tests of the simulated station share: configs with a gateway id of their own (every
test runs its own gateway, so retained status messages of one test never reach another) and a plain
subscriber that keeps what one gateway sends (the ``record`` and ``run`` fixtures are in conftest.py)."""
from __future__ import annotations

import threading
import time
import uuid

import yaml

from stationwatch.core.config import parse_config
from stationwatch.core.contract import Command, ContractError, MessageClass, encode, parse, topic
from stationwatch.core.mqtt import MqttLink

from . import EXAMPLES, wait_for

# ---- configs with a gateway id of their own --------------------------------------------------

def _with_gateway(data: dict, gw_id: str) -> dict:
    old = data["gateways"][0]["id"]
    data["gateways"][0]["id"] = gw_id
    for device in data.get("sensors", []) + data.get("cameras", []):
        if device["gateway"] == old:
            device["gateway"] = gw_id
    return data


def _unique(prefix: str) -> str:
    return f"gw-{prefix}-{uuid.uuid4().hex[:6]}"


def city(prefix: str):
    """The example city station, its gateway renamed."""
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    return parse_config(_with_gateway(data, _unique(prefix)))


def small(prefix: str, sensors: list[dict], cameras: list[dict] = ()):
    """One site, one gateway, the rooms the scenarios need, and the given devices."""
    gw = _unique(prefix)
    return parse_config({
        "name": "test", "bureaus": [{"id": "b", "name": "局", "level": "city"}],
        "sites": [{"id": "t-site", "name": "站", "bureau": "b", "rooms": [
            {"id": "dorm", "name": "宿舍", "kind": "dormitory"},
            {"id": "obs", "name": "观察室", "kind": "medical_observation"},
            {"id": "hall", "name": "大厅", "kind": "public"},
            {"id": "boiler", "name": "锅炉房", "kind": "boiler_room"},
            {"id": "yard", "name": "室外", "kind": "public", "sleeping": False}]}],
        "gateways": [{"id": gw, "name": "网关", "site": "t-site"}],
        "sensors": [{"gateway": gw, "name": d["id"], **d} for d in sensors],
        "cameras": [{"gateway": gw, "name": c["id"], "probe": "tcp://192.0.2.1:554", **c} for c in cameras],
    })


# ---- a plain subscriber ----------------------------------------------------------------------

class Recorder:
    """Subscribes to everything of one gateway and keeps what arrives, parsed, in arrival order."""

    def __init__(self, address, cfg):
        gw = cfg.gateways[0]
        self.site, self.gw = gw.site, gw.id
        self.messages: list = []
        self.retained: list[bool] = []
        self.refused: list[ContractError] = []
        self._lock = threading.Lock()
        self._probe = topic(self.site, self.gw, MessageClass.CMD, "probe")
        self.link = MqttLink(address, f"test-rec-{uuid.uuid4().hex[:6]}", on_message=self._on_message,
                             on_connect=lambda link: link.subscribe(f"sw/v1/{self.site}/{self.gw}/#"))

    def _on_message(self, topic_name, payload, msg):
        try:
            parsed = parse(topic_name, payload)
        except ContractError as exc:
            with self._lock:
                self.refused.append(exc)
            return
        with self._lock:
            self.messages.append(parsed)
            self.retained.append(bool(msg.retain))

    def __enter__(self):
        self.link.start()
        # SUBSCRIBE then PUBLISH on one connection: once the probe comes back, the subscription is live
        probe = Command(v=1, ts=time.time(), name="probe")
        self.link.publish(self._probe, encode(probe), MessageClass.CMD)
        wait_for(lambda: self.of(MessageClass.CMD), what="subscription")
        return self

    def __exit__(self, *exc):
        self.link.stop()

    def all(self) -> list:
        with self._lock:
            return list(self.messages)

    def of(self, kind: MessageClass, device: str | None = None) -> list:
        return [m for m in self.all() if m.kind is kind and (device is None or m.device == device)]

    def bodies(self, kind: MessageClass, device: str | None = None) -> list:
        return [m.body for m in self.of(kind, device)]

    def statuses(self) -> list[tuple[str, str | None]]:
        return [(b.state, b.reason) for b in self.bodies(MessageClass.STATUS)]
