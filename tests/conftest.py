"""Fixtures: a real Mosquitto and a real InfluxDB 1.x, started by the suite itself with the
project's own config on free ports, and the shipped example configs."""
from __future__ import annotations

import pytest

from stationwatch.broker.config import load_config
from stationwatch.broker.mqtt import BrokerAddress
from stationwatch.broker.stack import LocalInfluxDB, LocalMosquitto
from support import EXAMPLES, Receiver


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    with LocalMosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory):
    with LocalInfluxDB(tmp_path_factory.mktemp("influxdb")) as db:
        yield db


@pytest.fixture
def broker_address(mosquitto) -> BrokerAddress:
    return BrokerAddress(mosquitto.host, mosquitto.port)


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
