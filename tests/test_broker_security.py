"""The generated broker config, on a real Mosquitto: a gateway speaks only for its own devices,
reads only its own commands, cannot take another gateway's session; wrong passwords and anonymous
clients are refused; TLS works; messages, packets and queues are bounded."""
from __future__ import annotations

import json
import signal
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


def _link(broker, user, password, tls=None, ca=None, client_id=None, **kw):
    """Gateways connect over TLS, the services on the loopback (each listener knows only its own accounts)."""
    if tls is None:
        tls = not user.startswith("stationwatch-")
        ca = ca or str(broker.tls_dir / "ca.crt") if tls else None
    port = broker.tls_port if tls else broker.port
    return MqttLink(BrokerAddress(broker.host, port, user, password, ca), client_id or f"{user}-{uuid.uuid4().hex[:6]}", **kw)


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


# ---- one session per gateway account ------------------------------------------------------------
def test_a_gateway_account_cannot_take_over_another_gateways_session(secure_broker):
    """Asking for gateway A's client id with gateway B's account gets B's own id: A stays connected
    and its will (the centre's "gateway lost") is never published."""
    broker, pw, _ = secure_broker
    status: list[bytes] = []
    alerts = _link(broker, "stationwatch-alerts", pw["stationwatch-alerts"],
                   on_message=lambda t, p, m: status.append(p)).start()
    assert alerts.subscribe_wait(topic("site-a", "gw-a", MessageClass.STATUS)) == [1]
    drops: list[object] = []
    commands: list[str] = []
    victim = _link(broker, "gw-a", pw["gw-a"], client_id="gw-a", will=(topic("site-a", "gw-a", MessageClass.STATUS), b"lost"),
                   on_message=lambda t, p, m: commands.append(t)).start()
    victim.client.on_disconnect = lambda *args: drops.append(args)
    assert victim.subscribe_wait("sw/v1/site-a/gw-a/cmd/+") == [1]
    for _ in range(3):
        thief = _link(broker, "gw-b", pw["gw-b"], client_id="gw-a").start()
        thief.stop()
    cmd = topic("site-a", "gw-a", MessageClass.CMD, "silence")
    alerts.client.publish(cmd, b'{"v":1,"ts":1790000000,"name":"silence"}', qos=1).wait_for_publish(5)
    wait_for(lambda: cmd in commands, what="the command to gateway A, after the attempts")
    assert drops == [] and victim.connected.is_set()
    assert b"lost" not in status
    victim.stop()
    alerts.stop()


def test_each_listener_knows_only_its_own_accounts(secure_broker):
    """A gateway's password is no use on the services' loopback listener, a service's none over TLS."""
    broker, pw, _ = secure_broker
    with pytest.raises(ConnectionRefusedError):
        _link(broker, "gw-a", pw["gw-a"], tls=False).start(wait=10)
    with pytest.raises(ConnectionRefusedError):
        _link(broker, "stationwatch-ingest", pw["stationwatch-ingest"], tls=True,
              ca=str(broker.tls_dir / "ca.crt")).start(wait=10)


# ---- sizes ----------------------------------------------------------------------------------------
def _vm_hwm_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_100_mb_message_is_refused_and_a_batch_of_a_few_hundred_kb_is_not(secure_broker):
    broker, pw, _ = secure_broker
    got: list[tuple[str, int]] = []
    ingest = _link(broker, "stationwatch-ingest", pw["stationwatch-ingest"],
                   on_message=lambda t, p, m: got.append((t, len(p)))).start()
    assert ingest.subscribe_wait("sw/v1/site-a/#") == [1]
    own = topic("site-a", "gw-a", MessageClass.READING, "smk-a")
    hwm_before = _vm_hwm_kb(broker.proc.pid)
    drops: list[object] = []
    attacker = _link(broker, "gw-a", pw["gw-a"]).start()
    attacker.client.on_disconnect = lambda *args: drops.append(args)
    attacker.client.publish(own, b"x" * (100 * 1024 * 1024), qos=0)
    wait_for(lambda: drops, timeout=60, what="the broker to disconnect the sender of the 100 MB packet")
    attacker.stop()
    gw = _link(broker, "gw-a", pw["gw-a"]).start()
    gw.client.publish(own, b"y" * (300 * 1024), qos=1).wait_for_publish(10)  # over the message limit: dropped
    gw.client.publish(own, b"z" * (200 * 1024), qos=1).wait_for_publish(10)  # a big batch: delivered
    wait_for(lambda: got, what="the 200 KiB message")
    assert got == [(own, 200 * 1024)]
    # the broker never held the 100 MB: it refused the packet from its header
    assert _vm_hwm_kb(broker.proc.pid) - hwm_before < 20 * 1024
    gw.stop()
    ingest.stop()


# ---- topics and retained messages -------------------------------------------------------------
def _retained(broker, pw, topic_filter: str) -> list[str]:
    """The retained topics a new subscriber is given (the broker sends them right after the SUBACK,
    before the probe the test publishes itself)."""
    got: list[str] = []
    probe = f"sw/svc/v1/alerts/probe-{uuid.uuid4().hex[:6]}/probe"
    link = _link(broker, "stationwatch-alerts", pw["stationwatch-alerts"],
                 on_message=lambda t, p, m: got.append(t)).start()
    link.subscribe_wait(topic_filter)
    link.subscribe_wait(probe)
    link.client.publish(probe, b"{}", qos=1).wait_for_publish(5)
    wait_for(lambda: probe in got, what="the probe after the retained messages")
    link.stop()
    return [t for t in got if t != probe]


def test_a_gateway_writes_only_the_topics_of_its_devices_and_retained_junk_goes_with_its_device(tmp_path):
    """20,000 retained junk topics once slowed an engine's start 50-fold: a gateway may now write one
    topic per device it has, and a device taken out of the config takes its retained messages along."""
    from support.broker import TWO_SITES as sites
    make_certs(tmp_path / "tls", ["localhost", "127.0.0.1"])
    write_accounts(parse_config(sites), tmp_path / "accounts")
    pw = json.loads((tmp_path / "accounts" / "secrets.json").read_text())
    with LocalMosquitto(tmp_path / "data", secure_dir=tmp_path / "accounts", tls_dir=tmp_path / "tls") as broker:
        gw = _link(broker, "gw-a", pw["gw-a"]).start()
        for i in range(200):
            gw.client.publish(topic("site-a", "gw-a", MessageClass.READING, f"junk-{i}"), b"j", qos=1, retain=True)
        own = topic("site-a", "gw-a", MessageClass.READING, "smk-a")
        gw.client.publish(own, b"r", qos=1, retain=True).wait_for_publish(5)
        gw.stop()
        assert _retained(broker, pw, "sw/v1/#") == [own]
        # smk-a leaves the config: generate again, reload the broker
        fewer = {**sites, "sensors": [s for s in sites["sensors"] if s["id"] != "smk-a"]}
        write_accounts(parse_config(fewer), tmp_path / "accounts")
        broker.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _retained(broker, pw, "sw/v1/#") == [], what="the retained reading of smk-a out of sight")


def test_a_persistent_session_queues_no_more_than_its_byte_limit(tmp_path):
    from stationwatch.core.limits import BrokerLimits
    make_certs(tmp_path / "tls", ["localhost", "127.0.0.1"])
    cfg = parse_config(TWO_SITES)
    write_accounts(cfg, tmp_path / "accounts")
    pw = json.loads((tmp_path / "accounts" / "secrets.json").read_text())
    limits = BrokerLimits(queued_mb=1, inflight_messages=10)
    with LocalMosquitto(tmp_path / "data", secure_dir=tmp_path / "accounts", tls_dir=tmp_path / "tls",
                        limits=limits) as broker:
        got: list[int] = []
        away = _link(broker, "stationwatch-ingest", pw["stationwatch-ingest"], client_id="stationwatch-ingest-away",
                     clean_start=False, on_message=lambda t, p, m: got.append(len(p))).start()
        assert away.subscribe_wait("sw/v1/site-a/#") == [1]
        away.stop()  # its session stays, and queues
        gw = _link(broker, "gw-a", pw["gw-a"]).start()
        own = topic("site-a", "gw-a", MessageClass.READING, "smk-a")
        for info in [gw.client.publish(own, b"q" * 4096, qos=1) for _ in range(1000)]:
            info.wait_for_publish(10)
        gw.stop()
        back = _link(broker, "stationwatch-ingest", pw["stationwatch-ingest"], client_id="stationwatch-ingest-away",
                     clean_start=False, on_message=lambda t, p, m: got.append(len(p))).start()
        back.subscribe_wait("sw/v1/site-a/#")
        probe = topic("site-a", "gw-a", MessageClass.READING, "smk-a")
        gw = _link(broker, "gw-a", pw["gw-a"]).start()
        gw.client.publish(probe, b"end", qos=1).wait_for_publish(5)
        wait_for(lambda: 3 in got, what="the marker after the queued messages")
        queued = [n for n in got if n == 4096]
        # 1 MiB of 4 KiB messages, plus the 10 in flight; the rest of the 1000 were dropped
        assert 200 <= len(queued) <= 256 + 10, len(queued)
        gw.stop()
        back.stop()


def test_free_ports_are_distinct():
    from stationwatch.broker.stack import free_ports
    assert len(set(free_ports(200))) == 200


def test_a_gateway_named_like_a_service_account_is_refused(tmp_path):
    from stationwatch.broker.accounts import AccountError
    cfg = parse_config({**TWO_SITES, "gateways": [{"id": "stationwatch-ingest", "name": "A", "site": "site-a"}],
                        "sensors": []})
    with pytest.raises(AccountError, match=r"gateways\[0\]\.id: 'stationwatch-ingest'"):
        write_accounts(cfg, tmp_path / "accounts")
