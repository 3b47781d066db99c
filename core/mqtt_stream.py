"""A lean MQTT 5 link for a subscriber that takes thousands of messages a second: ingest.

paho (:mod:`.mqtt`) reads each packet with several ``recv`` calls and sends each acknowledgement on
its own; draining a backlog here it spent more than the rest of ingest did (docs/BENCHMARKS.md,
issue 14's profile). This link reads the socket in large chunks, decodes packets with the ``mqtt5``
codec (Rust; encoding and decoding only, no I/O of its own) and writes whatever is due — PUBACKs
of a whole batch, publishes, pings — in one ``sendall``. It does what ingest needs and no more:

- one persistent session (clean start once if asked, then a session that never expires), QoS 1
  subscriptions, acknowledgement by the caller (:meth:`StreamLink.ack`) after its work is done;
- ``receive_max`` bounds the broker's unacknowledged messages to us: the back-pressure window;
- publishes of QoS 0 and 1 (status with its retain flag), QoS 1 kept until the broker acknowledges
  them and sent again after a reconnection;
- a last will (changeable for the next connection), username and password, TLS against a CA file;
- keep-alive pings, and reconnection with back-off (0.2 s to 5 s) whenever the connection is lost.

The interface is :class:`~stationwatch.core.mqtt.MqttLink`'s where ingest uses it (``start``,
``stop``, ``subscribe``, ``publish``, ``set_will``, ``ack``, ``connected``, ``subscribed``); a
message reaches ``on_message(topic, payload, mid, qos, retain)`` on the link's thread. ``mid`` is
the packet id with the connection's number above it: an acknowledgement that arrives after the
connection it belongs to was lost is not sent on the next one (the broker sends that message again,
and the id may be another message's by then).
"""
from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import threading
import time
from typing import Callable

import mqtt5

from .mqtt import BrokerAddress
from .wire import DELIVERY, MessageClass

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
NEVER_EXPIRES = 0xFFFFFFFF
READ_BYTES = 256 * 1024
PENDING_MAX = 10_000  # QoS 1 publishes kept while the broker has not acknowledged them
StreamHandler = Callable[[str, bytes, int, int, bool], None]


class Delivery:
    """A QoS 1 publish: set once the broker acknowledged it (QoS 0: at once)."""

    def __init__(self, done: bool = False):
        self._done = threading.Event()
        if done:
            self._done.set()

    def is_published(self) -> bool:
        return self._done.is_set()

    def wait_for_publish(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


class StreamLink:
    def __init__(self, address: BrokerAddress, client_id: str, *, clean_start: bool = False,
                 will: tuple[str, bytes] | None = None, receive_max: int = 10_000,
                 on_connect: Callable[["StreamLink"], None] | None = None,
                 on_message: StreamHandler | None = None):
        self.address, self.client_id = address, client_id
        self.receive_max = max(1, min(receive_max, 65535))
        self._clean_next = clean_start
        self._will = will
        self._user_connect, self._user_message = on_connect, on_message
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.refused: str | None = None
        self._refused = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._out: list[bytes] = []  # due to be written by the link's thread
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._pending: dict[int, tuple[mqtt5.PublishPacket, Delivery]] = {}
        self._next_id = 0
        self._generation = 0  # connections so far: the high bits of a received message's mid
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # ---- the caller's side (any thread) ----------------------------------------------------
    def start(self, wait: float | None = 10.0) -> "StreamLink":
        """Connect in the background; with ``wait``, return once connected (the link reconnects on its
        own if that connection is lost), or raise when refused or at the deadline."""
        self._thread = threading.Thread(target=self._run, name=f"mqtt-stream-{self.client_id}", daemon=True)
        self._thread.start()
        if not wait:
            return self
        deadline = time.monotonic() + wait
        while not self.connected.wait(0.05) and not self._generation and time.monotonic() < deadline:
            if self._refused.is_set():
                self.stop()
                raise ConnectionRefusedError(f"MQTT broker {self.address.host}:{self.address.port} refused "
                                             f"the connection: {self.refused} (check username and password)")
        if not self._generation:
            self.stop()
            raise ConnectionError(f"no MQTT connection to {self.address.host}:{self.address.port} within {wait:.0f} s")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """A clean DISCONNECT (no will), after what is due has been written."""
        if self._stop.is_set():
            return
        if self.connected.is_set():
            self._send(mqtt5.DisconnectPacket().write())
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def set_will(self, topic: str, payload: bytes) -> None:
        self._will = (topic, payload)

    def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        pid = self._packet_id()
        self._send(mqtt5.SubscribePacket(pid, [mqtt5.TopicFilter(topic_filter, max_qos=mqtt5.QoS(qos))]).write())
        return pid

    def publish(self, topic: str, payload: bytes, kind: MessageClass) -> Delivery:
        d = DELIVERY[kind]
        if d.qos == 0:
            if self.connected.is_set():
                self._send(mqtt5.PublishPacket(topic, payload, retain=d.retain).write())
            return Delivery(done=True)
        delivery = Delivery()
        with self._lock:
            if len(self._pending) >= PENDING_MAX:
                log.warning("MQTT: %d publishes unacknowledged; %s not sent", len(self._pending), topic[:100])
                return delivery
        packet = mqtt5.PublishPacket(topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, retain=d.retain,
                                     packet_id=self._packet_id())
        with self._lock:
            self._pending[packet.packet_id] = (packet, delivery)
        if self.connected.is_set():
            self._send(packet.write())
        return delivery

    def ack(self, mid: int, qos: int) -> None:
        if qos == 1 and mid >> 16 == self._generation and self.connected.is_set():
            self._send(mqtt5.PubAckPacket(packet_id=mid & 0xFFFF).write())

    def _packet_id(self) -> int:
        with self._lock:
            for _ in range(65535):
                self._next_id = self._next_id % 65535 + 1
                if self._next_id not in self._pending:
                    return self._next_id
        raise RuntimeError("no MQTT packet id free")

    def _send(self, data: bytes) -> None:
        with self._lock:
            first = not self._out
            self._out.append(data)
        if first:
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # closed (stopping) or full (a wake is pending anyway)
            pass

    # ---- the link's thread -------------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._connect()
                delay = 0.2
                self._serve()
            except BaseException as exc:  # noqa: BLE001 — the socket, a refusal, or a packet the codec refused
                if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                    raise  # (the codec's panics derive from BaseException; KeyboardInterrupt and exit do not stop here)
                if not self._stop.is_set():
                    log.warning("MQTT connection to %s:%d lost (%s: %s); reconnecting in %.1f s",
                                self.address.host, self.address.port, type(exc).__name__, str(exc)[:200], delay)
            finally:
                self._close()
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, 5.0)

    def _connect(self) -> None:
        a = self.address
        sock = socket.create_connection((a.host, a.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if a.ca_file:
            sock = ssl.create_default_context(cafile=a.ca_file).wrap_socket(sock, server_hostname=a.host)
        self._sock = sock
        will = None
        if self._will is not None:
            will = mqtt5.Will(self._will[0], payload=self._will[1], qos=mqtt5.QoS(DELIVERY[MessageClass.STATUS].qos),
                              retain=True)
        clean = self._clean_next
        sock.sendall(mqtt5.ConnectPacket(
            self.client_id, username=a.username, password=a.password.encode() if a.password else None,
            clean_start=clean, session_expiry_interval=0 if clean else NEVER_EXPIRES, keep_alive=KEEPALIVE_S,
            will=will, receive_max=self.receive_max).write())
        buf = bytearray()
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the broker closed the connection before CONNACK")
            buf += chunk
            try:
                packet, used = mqtt5.read(memoryview(buf))
                break
            except IndexError:
                continue
        if not isinstance(packet, mqtt5.ConnAckPacket):
            raise ConnectionError(f"expected CONNACK, got {type(packet).__name__}")
        if packet.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            self.refused = packet.reason_code.name
            self._refused.set()
            raise ConnectionRefusedError(f"refused: {packet.reason_code.name}")
        self._clean_next = False
        self._generation += 1
        self._rest = bytes(buf[used:])
        sock.settimeout(KEEPALIVE_S)  # reads follow select; a send the broker stops taking fails, and we reconnect
        with self._lock:  # unacknowledged publishes go again, flagged as such
            again = [mqtt5.PublishPacket(p.topic, p.payload, qos=p.qos, retain=p.retain, packet_id=p.packet_id,
                                         duplicate=True).write() for p, _ in self._pending.values()]
            self._out[:0] = again
        self.connected.set()
        if self._user_connect:
            self._user_connect(self)

    def _serve(self) -> None:
        # poll, not select: select() refuses a descriptor past 1,023, and a process may hold more
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            self._serve_on(poller)
        finally:
            poller.unregister(self._sock)
            poller.unregister(self._wake_r)

    def _serve_on(self, poller) -> None:
        sock, buf = self._sock, bytearray(self._rest)
        sock_fd = sock.fileno()
        last_in = last_ping = time.monotonic()
        self._dispatch(buf)
        while not self._stop.is_set():
            with self._lock:
                out, self._out = self._out, []
            if out:
                sock.sendall(b"".join(out))
            now = time.monotonic()
            if now - last_ping >= KEEPALIVE_S / 2:
                sock.sendall(mqtt5.PingReqPacket().write())
                last_ping = now
            if now - last_in > KEEPALIVE_S * 1.5:
                raise ConnectionError(f"nothing from the broker for {now - last_in:.0f} s")
            pending_tls = isinstance(sock, ssl.SSLSocket) and sock.pending()
            ready = {sock_fd} if pending_tls else {fd for fd, _ in poller.poll(KEEPALIVE_S / 4 * 1000)}
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            if sock_fd in ready:
                chunk = sock.recv(READ_BYTES)
                if not chunk:
                    raise ConnectionError("the broker closed the connection")
                last_in = time.monotonic()
                buf += chunk
                self._dispatch(buf)
        with self._lock:  # stopping: what is due (the DISCONNECT last) still goes out
            out, self._out = self._out, []
        if out:
            sock.sendall(b"".join(out))

    def _dispatch(self, buf: bytearray) -> None:
        """Hand on every whole packet in ``buf`` and keep the rest (a packet split across reads)."""
        view, offset = memoryview(buf), 0
        handler, high = self._user_message, self._generation << 16
        try:
            while offset < len(buf):
                try:
                    packet, used = mqtt5.read(view[offset:])
                except IndexError:  # the rest of the packet is still on its way
                    break
                offset += used
                if type(packet) is mqtt5.PublishPacket:
                    if handler is not None:
                        try:
                            handler(packet.topic, packet.payload, high | (packet.packet_id or 0), int(packet.qos), packet.retain)
                        except Exception:  # a handler bug must not kill the link
                            log.exception("handler failed on topic %s", packet.topic[:200])
                else:
                    self._control(packet)
        finally:
            view.release()
            del buf[:offset]

    def _control(self, packet) -> None:
        if isinstance(packet, mqtt5.PubAckPacket):
            with self._lock:
                done = self._pending.pop(packet.packet_id, None)
            if done is not None:
                done[1]._done.set()
        elif isinstance(packet, mqtt5.SubAckPacket):
            refused = [c for c in packet.reason_codes if c.value >= 0x80]
            if refused:
                log.warning("MQTT subscription refused: %s", ", ".join(c.name for c in refused))
            else:
                self.subscribed.set()
        elif isinstance(packet, mqtt5.DisconnectPacket):
            raise ConnectionError(f"the broker disconnected us: {packet.reason_code.name}")

    def _close(self) -> None:
        self.connected.clear()
        self.subscribed.clear()
        with self._lock:  # acknowledgements of this connection mean nothing on the next; publishes are pending
            self._out.clear()
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
