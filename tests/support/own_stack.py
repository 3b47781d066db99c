"""Fixtures for tests that count every message ingest receives: a Mosquitto and an InfluxDB of the test's
own (the suite's shared broker carries other tests' retained status and sessions), and a publisher on
that broker. A test module takes them with ``from support.own_stack import mosquitto, own_influx,
publisher``; ``mosquitto`` then stands in for the suite's shared one in that module."""
from __future__ import annotations

import uuid

import pytest

from stationwatch.broker.stack import LocalInfluxDB, LocalMosquitto
from stationwatch.core.mqtt import BrokerAddress, MqttLink


@pytest.fixture
def mosquitto(tmp_path):
    with LocalMosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def own_influx(tmp_path):
    with LocalInfluxDB(tmp_path / "influx") as db:
        yield db


@pytest.fixture
def publisher(mosquitto):
    link = MqttLink(BrokerAddress(mosquitto.host, mosquitto.port), f"pub-{uuid.uuid4().hex[:6]}").start()
    yield link
    link.stop()
