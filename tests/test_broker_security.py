"""The generated broker config, on a real Mosquitto: a gateway speaks only for its own site,
reads only its own commands; wrong passwords and anonymous clients are refused; TLS works."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from stationwatch.broker.accounts import write_accounts
from stationwatch.broker.stack import LocalMosquitto
from stationwatch.broker.tls import make_certs
from stationwatch.core.config import parse_config
from stationwatch.core.contract import Event, MessageClass, encode, topic
from stationwatch.core.mqtt import BrokerAddress, MqttLink

from support import wait_for
from support.broker import TWO_SITES


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    base = tmp_path_factory.mktemp("secure-broker")
    cfg = parse_config(TWO_SITES)
    make_certs(base / "tls", ["localhost", "127.0.0.1"])
    write_accounts(cfg, base / "accounts")
    passwords = json.loads((base / "accounts" / "secrets.json").read_text())
    with LocalMosquitto(base / "data", secure_dir=base / "accounts", tls_dir=base / "tls") as broker:
        yield broker, passwords, base


def _link(broker, user, password, tls=False, ca=None, **kw):
    port = broker.tls_port if tls else broker.port
    return MqttLink(BrokerAddress(broker.host, port, user, password, ca), f"{user}-{uuid.uuid4().hex[:6]}", **kw)


def _event(seq):
    return encode(Event(v=1, ts=time.time(), seq=seq, state="alarm"))


def test_gateway_cannot_publish_under_another_site(secure_broker):
    broker, pw, _ = secure_broker
    got: list[str] = []
    ingest = _link(broker, "stationwatch-ingest", pw["stationwatch-ingest"],
                   on_message=lambda t, p, m: got.append(t)).start()
    assert ingest.subscribe_wait("sw/v1/#") == [1]
    gw_a = _link(broker, "gw-a", pw["gw-a"]).start()
    forged = topic("site-b", "gw-b", MessageClass.EVENT, "smk-b")
    own = topic("site-a", "gw-a", MessageClass.EVENT, "smk-a")
    gw_a.publish(forged, _event(1), MessageClass.EVENT).wait_for_publish(5)
    gw_a.publish(topic("site-b", "gw-a", MessageClass.EVENT, "smk-a"), _event(2), MessageClass.EVENT).wait_for_publish(5)
    gw_a.publish(own, _event(3), MessageClass.EVENT).wait_for_publish(5)
    # messages of one client arrive in order: once its own has arrived, a forged one would have too
    wait_for(lambda: own in got, what="gateway A's own event")
    assert got == [own]
    gw_a.stop()
    ingest.stop()


def test_gateway_cannot_subscribe_to_other_sites_and_reads_its_own_commands(secure_broker):
    broker, pw, _ = secure_broker
    got: list[str] = []
    gw_a = _link(broker, "gw-a", pw["gw-a"], on_message=lambda t, p, m: got.append(t)).start()
    # Mosquitto 2.0 may grant a wildcard subscription and filter each message against the ACL
    # when it delivers it; what counts is that nothing of site B ever reaches gateway A.
    gw_a.subscribe_wait("sw/v1/site-b/#")
    gw_a.subscribe_wait("sw/v1/#")
    assert gw_a.subscribe_wait("sw/v1/site-a/gw-a/cmd/+") == [1]
    gw_b = _link(broker, "gw-b", pw["gw-b"]).start()
    gw_b.publish(topic("site-b", "gw-b", MessageClass.EVENT, "smk-b"), _event(1), MessageClass.EVENT).wait_for_publish(5)
    gw_b.stop()
    alerts = _link(broker, "stationwatch-alerts", pw["stationwatch-alerts"]).start()
    cmd = topic("site-a", "gw-a", MessageClass.CMD, "silence")
    alerts.client.publish(cmd, b'{"v":1,"ts":1790000000,"name":"silence"}', qos=1).wait_for_publish(5)
    wait_for(lambda: cmd in got, what="gateway A's command")
    assert got == [cmd]
    alerts.stop()
    gw_a.stop()


@pytest.mark.parametrize("user,password", [("gw-a", "wrong"), ("gw-a", None), (None, None), ("nobody", "x")])
def test_wrong_password_and_anonymous_are_refused(secure_broker, user, password):
    broker, _, _ = secure_broker
    link = MqttLink(BrokerAddress(broker.host, broker.port, user, password), f"refused-{uuid.uuid4().hex[:6]}")
    with pytest.raises(ConnectionRefusedError) as info:
        link.start(wait=10)
    assert "refused" in str(info.value)


def test_gateway_connects_over_tls_and_plain_text_on_that_port_fails(secure_broker):
    broker, pw, base = secure_broker
    link = _link(broker, "gw-a", pw["gw-a"], tls=True, ca=str(base / "tls" / "ca.crt")).start()
    link.publish(topic("site-a", "gw-a", MessageClass.EVENT, "smk-a"), _event(9), MessageClass.EVENT).wait_for_publish(5)
    link.stop()
    plain = MqttLink(BrokerAddress(broker.host, broker.tls_port, "gw-a", pw["gw-a"]), "plain-on-tls")
    with pytest.raises(ConnectionError):
        plain.start(wait=3)


def test_generating_again_keeps_passwords(secure_broker, tmp_path):
    _, pw, base = secure_broker
    cfg = parse_config(TWO_SITES)
    again = write_accounts(cfg, base / "accounts")
    assert {a.username: a.password for a in again} == pw
    assert oct((base / "accounts" / "secrets.json").stat().st_mode & 0o777) == "0o600"


def test_bridge_forwards_escalations_and_status_to_the_province_but_not_readings(tmp_path):
    from stationwatch.broker.accounts import bridge_conf
    with LocalMosquitto(tmp_path / "province") as province:
        bridge = bridge_conf("sl-city", province.host, province.port)
        with LocalMosquitto(tmp_path / "city", extra_conf=bridge) as city:
            got: list[str] = []
            watch = MqttLink(BrokerAddress(province.host, province.port), "province-watch",
                             on_message=lambda t, p, m: got.append(t)).start()
            watch.subscribe_wait("sw/#")
            # the bridge announces itself on the city side once it is up
            state: list[bytes] = []
            local = MqttLink(BrokerAddress(city.host, city.port), "city-pub",
                             on_message=lambda t, p, m: state.append(p)).start()
            local.subscribe_wait("sw/bridge/sl-city/state")
            wait_for(lambda: b"1" in state, timeout=30, what="the bridge to connect")
            reading = topic("sl-station", "gw-sl-main", MessageClass.READING, "t-hall")
            local.client.publish(reading, b"{}", qos=1).wait_for_publish(5)
            local.client.publish("sw/v1/sl-station/gw-sl-main/status", b'{"state":"offline"}', qos=1).wait_for_publish(5)
            local.client.publish("sw/esc/v1/sl-station/alert-42", b'{"level":"bureau"}', qos=1).wait_for_publish(5)
            wait_for(lambda: "sw/esc/v1/sl-station/alert-42" in got, timeout=15, what="the escalation at the province")
            assert "sw/v1/sl-station/gw-sl-main/status" in got
            assert reading not in got
            local.stop()
            watch.stop()
