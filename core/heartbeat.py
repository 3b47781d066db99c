"""A pipeline service's heartbeat on MQTT (``sw/svc/v1/{service}/{instance}/beat``, retained):
``online`` at every connection and every beat, the last will ``offline``/``will`` when the
connection is lost, ``offline``/``shutdown`` on a clean stop. Each connection has a session number
(its birth and its will share it; it rises with every connection), so a will delivered after the
next birth is recognised as stale. Ingest, the alert engine, the API and the watcher each beat;
who watches whom is in docs/alerts.md (supervision).

Example::

    beacon = Beacon("ingest", "ingest-1")
    link = MqttLink(address, "stationwatch-ingest-1", will=beacon.will(), on_connect=beacon.online)
    beacon.beat(link, {"influx_ok": True})
    beacon.shutdown(link)
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .mqtt import MqttLink
from .wire import MessageClass, payload, service_topic

log = logging.getLogger(__name__)


class Beacon:
    def __init__(self, service: str, instance: str):
        self.topic = service_topic(service, instance)
        self.service, self.instance = service, instance
        self.session = time.time_ns() // 1_000_000  # rises across restarts and with every connection
        self.seq = 0
        self.info: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _body(self, state: str, reason: str | None, session: int) -> bytes:
        with self._lock:
            self.seq += 1
            return payload(time.time(), state=state, reason=reason, session=session, count=self.seq, info=self.info)

    def will(self) -> tuple[str, bytes]:
        """The will of the first connection (give it to :class:`MqttLink`)."""
        return self.topic, self._body("offline", "will", self.session)

    def online(self, link: MqttLink) -> None:
        """At every connection (paho's thread): the birth of this session, and the next session's will."""
        link.publish(self.topic, self._body("online", None, self.session), MessageClass.STATUS)
        self.session += 1
        link.set_will(self.topic, self._body("offline", "will", self.session))

    def beat(self, link: MqttLink, info: dict[str, Any] | None = None) -> None:
        if info is not None:
            self.info = info
        if link.connected.is_set():
            link.publish(self.topic, self._body("online", None, self.session - 1), MessageClass.STATUS)

    def shutdown(self, link: MqttLink, timeout: float = 5.0) -> None:
        """A clean stop: nobody is paged for a planned restart."""
        if not link.connected.is_set():
            return
        try:
            link.publish(self.topic, self._body("offline", "shutdown", self.session - 1),
                         MessageClass.STATUS).wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            log.warning("could not publish the shutdown beat of %s: %s", self.topic, exc)
