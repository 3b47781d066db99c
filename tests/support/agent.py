"""Helpers the gateway agent's tests share: a thermometer driver whose value the test sets, the
example station with its gateway renamed (topics of its own on the shared broker), and a subscriber
that keeps every message with its MQTT dup flag."""
from __future__ import annotations

import json
import threading

from stationwatch.core.agent_settings import AgentSettings
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.sensors.base import Sample


class Thermometer:
    """A room thermometer whose value the test sets; ``broken`` makes its read raise."""
    family = "onewire"

    def __init__(self, sensor: str, value: float = 21.0):
        self.sensor, self.value, self.broken = sensor, value, False

    def read(self, now: float) -> list[Sample]:
        if self.broken:
            raise OSError("1-Wire read failed: no such device")
        return [Sample(self.sensor, self.value, "ok", now)]

    def close(self) -> None:
        pass


def station(cfg, tmp_path, interval_s: float | None = None, gw_id: str = "gw-agent-test", **agent):
    """The example station with its gateway renamed, so its topics are its own on the shared
    broker; a spool in ``tmp_path``; every sensor read every ``interval_s`` if given."""
    settings = AgentSettings(spool_path=str(tmp_path / "spool.db"), **agent)
    old = cfg.gateways[0]
    gw = old.model_copy(update={"id": gw_id, "agent": settings})
    sensors = [s.model_copy(update={"gateway": gw_id} | ({"interval_s": interval_s} if interval_s else {}))
               for s in cfg.sensors if s.gateway == old.id]
    cameras = [c.model_copy(update={"gateway": gw_id}) for c in cfg.cameras if c.gateway == old.id]
    return cfg.model_copy(update={"gateways": [gw], "sensors": sensors, "cameras": cameras}), gw


def temperature_sensors(cfg) -> list[str]:
    return [s.id for s in cfg.sensors if s.kind == "temperature"]


class Collector:
    """A subscriber that keeps every message with its MQTT dup flag."""

    def __init__(self, address: BrokerAddress, client_id: str, topic_filter: str, clean_start: bool = True):
        self.got: list[tuple[str, dict, bool]] = []
        self._lock = threading.Lock()
        self.link = MqttLink(address, client_id, clean_start=clean_start, on_message=self._on_message,
                             on_connect=lambda link: link.subscribe(topic_filter, 1)).start()
        assert self.link.subscribed.wait(10)

    def _on_message(self, topic_name: str, payload: bytes, msg) -> None:
        with self._lock:
            self.got.append((topic_name, json.loads(payload), bool(msg.dup)))

    def messages(self) -> list[tuple[str, dict, bool]]:
        with self._lock:
            return list(self.got)

    def statuses(self) -> list[dict]:
        return [body for t, body, _ in self.messages() if t.endswith("/status")]
