"""Ingest's own MQTT 5 link (core/mqtt_stream.py) on a real Mosquitto: the receive maximum is the
window of unacknowledged messages; what was not acknowledged comes back after a reconnection, and an
acknowledgement belonging to a lost connection is not taken for one of the next; publishes wait for
the broker; refused credentials say so; TLS works; a broken or hostile peer costs a reconnection,
never the link."""
from __future__ import annotations

import socket
import threading
import uuid

import mqtt5
import pytest

from stationwatch.broker.stack import LocalMosquitto
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.mqtt_stream import StreamLink
from stationwatch.core.wire import MessageClass

from support import wait_for


class Inbox:
    """What a link received, in order, with the mids it has not acknowledged yet."""

    def __init__(self):
        self.got: list[tuple[str, bytes, int, int, bool]] = []
        self.lock = threading.Lock()

    def __call__(self, topic, payload, mid, qos, retain):
        with self.lock:
            self.got.append((topic, payload, mid, qos, retain))

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [g[1] for g in self.got]

    def take(self) -> list[tuple[int, int]]:
        with self.lock:
            out, self.got = [(g[2], g[3]) for g in self.got], []
        return out


@pytest.fixture
def broker(tmp_path):
    with LocalMosquitto(tmp_path / "mosquitto") as b:
        yield b


def _stream(broker, inbox, client_id=None, **kw) -> StreamLink:
    link = StreamLink(BrokerAddress(broker.host, broker.port), client_id or f"stream-{uuid.uuid4().hex[:6]}",
                      on_message=inbox, on_connect=lambda l: l.subscribe("t/#", 1), **kw)
    link.start()
    wait_for(link.subscribed.is_set, 10, what="the subscription")
    return link


def _publish(broker, n, prefix=b"m", size=0):
    pub = MqttLink(BrokerAddress(broker.host, broker.port), f"pub-{uuid.uuid4().hex[:6]}").start()
    infos = [pub.client.publish(f"t/{i % 7}", prefix + b"%d" % i + b"x" * size, qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(10)
    pub.stop()


def test_the_receive_maximum_holds_the_rest_at_the_broker_until_acknowledged(broker):
    """The broker sends no more than the receive maximum before an acknowledgement. (After the first
    acknowledgements Mosquitto 2.0.11 sends every queued message at once, for MQTT 3.1.1's
    max_inflight_messages as for MQTT 5's receive maximum: the window is the broker's to keep, and
    ingest's own queue stays the bound that holds — tests/test_ingest_limits.py.)"""
    inbox = Inbox()
    link = _stream(broker, inbox, receive_max=20)
    try:
        _publish(broker, 100)
        wait_for(lambda: len(inbox.payloads()) >= 20, what="the first 20")
        _publish(broker, 1, prefix=b"late")  # goes behind the 80 held at the broker
        assert len(inbox.payloads()) == 20
        seen = [0]

        def acked_all() -> bool:  # every arrival acknowledged at once: the rest follows
            taken = inbox.take()
            seen[0] += len(taken)
            for mid, qos in taken:
                link.ack(mid, qos)
            return seen[0] == 101
        wait_for(acked_all, what="all 101 once acknowledged")
    finally:
        link.stop()


def test_unacknowledged_messages_come_back_and_a_lost_connections_acks_do_not_count(broker):
    inbox = Inbox()
    cid = f"stream-{uuid.uuid4().hex[:6]}"
    link = _stream(broker, inbox, client_id=cid, receive_max=50)
    try:
        _publish(broker, 10)
        wait_for(lambda: len(inbox.payloads()) == 10, what="10 messages")
        before = inbox.take()
        broker.stop()  # a clean stop saves the sessions
        broker.start()
        wait_for(lambda: len(inbox.payloads()) == 10, 30, what="the 10 again, on the new connection")
        again = inbox.take()
        assert {m >> 16 for m, _ in again} != {m >> 16 for m, _ in before}  # another connection's mids
        for mid, qos in before:
            link.ack(mid, qos)  # acks of the lost connection: must not acknowledge anything now
        broker.stop()
        broker.start()
        wait_for(lambda: len(inbox.payloads()) == 10, 30, what="the 10 a third time: nothing was acknowledged")
        for mid, qos in inbox.take():
            link.ack(mid, qos)
        _publish(broker, 1, prefix=b"marker")  # after the acks on the same connection: in order
        wait_for(lambda: inbox.payloads() == [b"marker0"], what="only the marker")
        for mid, qos in inbox.take():
            link.ack(mid, qos)
        _publish(broker, 1, prefix=b"second")  # the acks reached the broker before this came back
        wait_for(lambda: inbox.payloads() == [b"second0"], what="the second marker")
        for mid, qos in inbox.take():
            link.ack(mid, qos)
        _publish(broker, 1, prefix=b"third")
        wait_for(lambda: inbox.payloads() == [b"third0"], what="the third marker")
        link.ack(*inbox.take()[0])
        _publish(broker, 1, prefix=b"fourth")
        wait_for(lambda: inbox.payloads() == [b"fourth0"], what="the fourth marker")
        link.ack(*inbox.take()[0])
        broker.stop()
        broker.start()
        _publish(broker, 1, prefix=b"after")
        wait_for(lambda: b"after0" in inbox.payloads(), 30, what="a message after the restart")
        assert inbox.payloads() == [b"after0"]  # none of the 10 and no marker came back
    finally:
        link.stop()


def test_a_publish_made_while_the_broker_is_down_is_delivered_when_it_is_back(broker):
    inbox = Inbox()
    watcher = _stream(broker, inbox, receive_max=50)
    link = StreamLink(BrokerAddress(broker.host, broker.port), f"pub-{uuid.uuid4().hex[:6]}").start()
    try:
        broker.stop()
        wait_for(lambda: not link.connected.is_set(), 10, what="the link noticed")
        delivery = link.publish("t/status", b"while down", MessageClass.STATUS)
        assert not delivery.is_published()
        broker.start()
        assert delivery.wait_for_publish(30), "the broker never acknowledged the publish"
        wait_for(lambda: b"while down" in inbox.payloads(), 30, what="the publish at the subscriber")
    finally:
        link.stop()
        watcher.stop()


def test_large_and_small_packets_arrive_whole_and_in_order(broker):
    inbox = Inbox()
    link = _stream(broker, inbox, receive_max=5000)
    try:
        _publish(broker, 300, size=70_000)  # packets larger than one read, split across reads
        _publish(broker, 3000, prefix=b"s")
        wait_for(lambda: len(inbox.payloads()) == 3300, 60, what="every message")
        got = inbox.payloads()
        assert got[:300] == [b"m%d" % i + b"x" * 70_000 for i in range(300)]
        assert got[300:] == [b"s%d" % i for i in range(3000)]
    finally:
        link.stop()


def test_a_wrong_password_is_refused_by_name_and_tls_with_the_right_one_works(secure_broker):
    b, pw, _ = secure_broker
    wrong = StreamLink(BrokerAddress(b.host, b.port, "stationwatch-ingest", "not-the-password"), "stream-wrong")
    with pytest.raises(ConnectionRefusedError, match="BAD_USER_NAME_OR_PASSWORD|NOT_AUTHORIZED"):
        wrong.start(wait=10)
    ca = str(b.tls_dir / "ca.crt")
    inbox = Inbox()
    gw = StreamLink(BrokerAddress(b.host, b.tls_port, "gw-a", pw["gw-a"], ca), "gw-a", on_message=inbox,
                    on_connect=lambda l: l.subscribe("sw/v1/site-a/gw-a/cmd/+", 1)).start(wait=10)
    alerts = MqttLink(BrokerAddress(b.host, b.port, "stationwatch-alerts", pw["stationwatch-alerts"]), "alerts-tls").start()
    try:
        wait_for(gw.subscribed.is_set, 10, what="the gateway's subscription over TLS")
        alerts.publish("sw/v1/site-a/gw-a/cmd/silence", b'{"v":1}', MessageClass.CMD).wait_for_publish(5)
        wait_for(lambda: inbox.payloads() == [b'{"v":1}'], 10, what="the command over TLS")
    finally:
        alerts.stop()
        gw.stop()


class HostilePeer:
    """A TCP server that speaks just enough MQTT: CONNACK, then the bytes it is told to send."""

    def __init__(self, scripts: list[bytes]):
        self.scripts, self.connections = scripts, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            script = self.scripts[min(self.connections, len(self.scripts) - 1)]
            self.connections += 1
            conn.recv(65536)  # the CONNECT
            conn.sendall(mqtt5.ConnAckPacket().write() + script)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn):
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


@pytest.mark.parametrize("garbage", [b"\x00\x00", b"\x30\xff\xff\xff\xff\x7f", b"\x30\x04\x00\x02\xff\xfe",
                                     b"\x32\x03\x00\x01a", b"\xe0\x01\x81"],
                         ids=["no-such-packet", "endless-length", "topic-not-utf8", "short-publish", "disconnect"])
def test_a_broken_peer_costs_a_reconnection_not_the_link(garbage):
    good = mqtt5.PublishPacket("t/1", b"fine", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=1).write()
    peer = HostilePeer([garbage, good])
    inbox = Inbox()
    link = StreamLink(BrokerAddress("127.0.0.1", peer.port), "stream-hostile", on_message=inbox).start(wait=10)
    try:
        wait_for(lambda: inbox.payloads() == [b"fine"], 30, what="the message of the second connection")
        assert peer.connections >= 2 and link._thread.is_alive()
    finally:
        link.stop()
        peer.sock.close()
