"""Fixtures: a real Mosquitto and a real InfluxDB 1.x, started by the suite itself with the
project's own config on free ports, and the shipped example configs; the fixtures more than one
test module uses (an engine clock, the example gateway's wire messages, a publisher on the broker, a recorder of one
gateway's messages, the simulated station). Plain helpers are in support/."""
from __future__ import annotations

import gc
import uuid

import pytest

from stationwatch.broker.stack import LocalInfluxDB, LocalMosquitto
from stationwatch.core.config import load_config
from stationwatch.core.contract import MessageClass, topic
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.gateway.simulator import SimulatedStation

pytest.register_assert_rewrite("support")  # its helpers' asserts explain themselves, as in a test module

from support import EXAMPLES, Receiver  # noqa: E402
from support.alerts import GW, SITE, Clock, Wire  # noqa: E402
from support.postgres import fresh_database, unavailable  # noqa: E402
from support.simulator import Recorder  # noqa: E402


THRESHOLDS = gc.get_threshold()  # the interpreter's own, before any service tuned them


@pytest.fixture(autouse=True)
def _collector_as_the_interpreter_has_it():
    """A test starts with the cycle collector's own thresholds, not those of a service an earlier test
    ran in this process: with YOUNG = 20,000 a test that polls the alert store left hundreds of SQLite
    connections (reference cycles) open, 1,008 descriptors at the end of test_supervision."""
    gc.set_threshold(*THRESHOLDS)
    yield


@pytest.fixture(scope="module", autouse=True)
def _garbage_collected():
    """The services tune the cycle collector (core/collector.py): ``gc.freeze()`` makes what exists
    immortal, and a test process starts services hundreds of times. Unfrozen and collected after
    each module, what a module left behind (sockets, SQLite files) is closed before the process
    reaches 1,024 descriptors, past which select() — paho's loop — refuses them."""
    yield
    gc.unfreeze()
    gc.collect()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    with LocalMosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory):
    with LocalInfluxDB(tmp_path_factory.mktemp("influxdb")) as db:
        yield db


@pytest.fixture
def postgres_url():
    """A PostgreSQL database of this test's own on the machine's server (dropped afterwards)."""
    why = unavailable()
    if why:
        pytest.skip(why)
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_path(request, tmp_path, monkeypatch):
    """The alert store a test runs on, once per backend: a SQLite file in the test's directory, or a
    PostgreSQL database of its own (the engine's quarantine file then goes to the working directory,
    which is the test's directory)."""
    if request.param == "sqlite":
        return tmp_path / "alerts.db"
    monkeypatch.chdir(tmp_path)
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def broker_address(mosquitto) -> BrokerAddress:
    return BrokerAddress(mosquitto.host, mosquitto.port)


@pytest.fixture
def forget_status(broker_address):
    """Call with a gateway whose retained status the test leaves on the shared broker; it is cleared
    afterwards (ingest tests count every message they refuse, and these gateways are not in their config)."""
    gateways = []
    yield gateways.append
    link = MqttLink(broker_address, "test-forget-status").start()
    for gw in gateways:
        link.publish(topic(gw.site, gw.id, MessageClass.STATUS), b"", MessageClass.STATUS).wait_for_publish(5)
    link.stop()


@pytest.fixture
def clock():
    """An engine clock at T0 the test moves by hand."""
    return Clock()


@pytest.fixture
def wire():
    """Messages as the example station's gateway sends them, numbered from 1."""
    return Wire()


@pytest.fixture
def publisher(broker_address):
    """An MQTT link to publish as the example gateway would; afterwards it drops the retained birth
    a test left for that gateway."""
    link = MqttLink(broker_address, f"test-pub-{uuid.uuid4().hex[:8]}").start()
    yield link
    link.publish(topic(SITE, GW, MessageClass.STATUS), b"", MessageClass.STATUS).wait_for_publish(5)  # drop the retained birth
    link.stop()


@pytest.fixture(scope="session")
def city_config_path():
    return EXAMPLES / "city-station.yaml"


@pytest.fixture(scope="session")
def city_config(city_config_path):
    return load_config(city_config_path)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def record(broker_address):
    """Call with a config: a Recorder of what its gateway sends, subscribed before it returns."""
    recorders = []

    def make(cfg) -> Recorder:
        recorders.append(Recorder(broker_address, cfg).__enter__())
        return recorders[-1]
    yield make
    for r in recorders:
        r.__exit__()


@pytest.fixture
def run(broker_address, tmp_path):
    """Call with a config: the simulated station of its gateway, started with a spool in tmp_path."""
    gateways = []

    def make(cfg, speed: float = 20.0, version: str | None = None) -> SimulatedStation:
        gw = cfg.gateways[0]
        gateways.append(SimulatedStation(cfg, gw, broker_address, speed=speed, config_version=version,
                                         spool_path=tmp_path / f"{gw.id}.spool.db").start())
        return gateways[-1]
    yield make
    for gw in gateways:
        gw.stop()


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    """Mosquitto with the production config generated for two sites: accounts, ACL, TLS.
    Yields (broker, passwords by account, its base directory)."""
    import json
    from stationwatch.broker.accounts import write_accounts
    from stationwatch.broker.tls import make_certs
    from stationwatch.core.config import parse_config
    from support.broker import TWO_SITES
    base = tmp_path_factory.mktemp("secure-broker")
    make_certs(base / "tls", ["localhost", "127.0.0.1"])
    write_accounts(parse_config(TWO_SITES), base / "accounts")
    passwords = json.loads((base / "accounts" / "secrets.json").read_text())
    with LocalMosquitto(base / "data", secure_dir=base / "accounts", tls_dir=base / "tls") as broker:
        yield broker, passwords, base
