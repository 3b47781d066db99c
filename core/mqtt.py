"""The one adapter around paho-mqtt. Everything else sees :class:`~stationwatch.core.contract.Message`
objects or plain callbacks; no other module imports paho.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .wire import DELIVERY, MessageClass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerAddress:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None  # set: connect with TLS, verifying the broker against this CA

    @classmethod
    def parse(cls, text: str, ca_file: str | None = None) -> "BrokerAddress":
        """``host:port``, ``mqtt://user:pass@host:port`` or ``mqtts://…`` (TLS, port 8883 by default)."""
        from urllib.parse import unquote, urlsplit
        u = urlsplit(text if "://" in text else f"mqtt://{text}")
        tls = u.scheme == "mqtts" or ca_file is not None
        return cls(u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883),
                   unquote(u.username) if u.username else None, unquote(u.password) if u.password else None,
                   ca_file if tls else None)

    def __repr__(self) -> str:  # never print a password into a log
        return f"BrokerAddress({self.host}:{self.port}, user={self.username!r}, tls={self.ca_file is not None})"


RawHandler = Callable[[str, bytes, "paho.MQTTMessage"], None]


class MqttLink:
    """A connected paho client running its network loop in a thread.

    ``on_connect`` is called on every (re)connection, so subscriptions and birth messages are
    re-established after the broker comes back.
    """

    def __init__(self, address: BrokerAddress, client_id: str, *, clean_start: bool = True,
                 will: tuple[str, bytes] | None = None, manual_ack: bool = False,
                 on_connect: Callable[["MqttLink"], None] | None = None,
                 on_message: RawHandler | None = None):
        self.address = address
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean_start, protocol=paho.MQTTv311)
        if address.username:
            self.client.username_pw_set(address.username, address.password)
        if address.ca_file:
            self.client.tls_set(ca_certs=address.ca_file)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=DELIVERY[MessageClass.STATUS].qos, retain=True)
        self.client.manual_ack_set(manual_ack)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 5)
        self._user_connect = on_connect
        self._user_message = on_message
        self.connected = threading.Event()
        self.refused: str | None = None
        self._refused = threading.Event()
        self._subacks: dict[int, list] = {}
        self.subscribed = threading.Event()  # set by the first SUBACK of a connection
        self._suback_cv = threading.Condition()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self, wait: float | None = 10.0) -> "MqttLink":
        """Connect in the background; with ``wait``, block until connected, refused or timed out."""
        self.client.connect_async(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()
        if not wait:
            return self
        deadline = time.monotonic() + wait
        while not self.connected.is_set() and time.monotonic() < deadline:
            if self._refused.wait(0.05):
                self.stop()
                raise ConnectionRefusedError(f"MQTT broker {self.address.host}:{self.address.port} refused "
                                             f"the connection: {self.refused} (check username and password)")
        if not self.connected.is_set():
            self.stop()
            raise ConnectionError(f"no MQTT connection to {self.address.host}:{self.address.port} within {wait:.0f} s")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly: the DISCONNECT packet must reach the broker before the network
        loop stops, or the broker treats the client as lost and publishes its last will."""
        was_connected = self.connected.is_set()
        self.client.disconnect()
        if was_connected:
            deadline = time.monotonic() + timeout
            while self.connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
        self.client.loop_stop()

    def drop(self) -> None:
        """Lose the connection without a DISCONNECT packet, as a power cut would: the broker
        then publishes the last will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            import socket as _s
            try:
                sock.shutdown(_s.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.connected.clear()

    def set_will(self, topic: str, payload: bytes) -> None:
        """The last will registered with the *next* connection (retained, QoS 1, like a status)."""
        self.client.will_set(topic, payload, qos=DELIVERY[MessageClass.STATUS].qos, retain=True)

    def resume(self) -> None:
        """Connect again after :meth:`drop`, as a gateway does when its power is back: a new
        connection (birth by ``on_connect``), paho retrying until the broker answers."""
        self.client.connect_async(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()

    def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        return self.client.subscribe(topic_filter, qos)[1]

    def unsubscribe(self, topic_filter: str) -> int:
        return self.client.unsubscribe(topic_filter)[1]

    def subscribe_wait(self, topic_filter: str, qos: int = 1, timeout: float = 10.0) -> list[int]:
        """Subscribe and return the broker's granted QoS per filter (128 = refused)."""
        mid = self.subscribe(topic_filter, qos)
        with self._suback_cv:
            if not self._suback_cv.wait_for(lambda: mid in self._subacks, timeout):
                raise TimeoutError(f"no SUBACK for {topic_filter} within {timeout:.0f} s")
            return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes, kind: MessageClass):
        d = DELIVERY[kind]
        return self.client.publish(topic, payload, qos=d.qos, retain=d.retain)

    def ack(self, mid: int, qos: int) -> None:
        self.client.ack(mid, qos)

    # paho callbacks --------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("MQTT connection refused: %s", reason_code)
            self.refused = str(reason_code)
            self._refused.set()
            return
        self.connected.set()
        if self._user_connect:
            self._user_connect(self)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.subscribed.set()
        with self._suback_cv:
            self._subacks[mid] = [rc.value for rc in reason_codes]
            self._suback_cv.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        self.subscribed.clear()
        if reason_code.value != 0:
            log.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg):
        if self._user_message is None:
            return
        try:
            self._user_message(msg.topic, msg.payload, msg)
        except Exception:  # a handler bug must not kill the network loop
            log.exception("handler failed on topic %s", msg.topic)
