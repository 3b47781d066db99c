"""DS18B20 thermometers through w1_slave files in a temp dir standing in for /sys/bus/w1/devices."""
from __future__ import annotations

import pytest
import yaml

from stationwatch.core.config import parse_config
from stationwatch.sensors.base import build_drivers
from stationwatch.sensors.kinds import KINDS
from stationwatch.sensors.onewire import OneWireThermometer

from support import EXAMPLES

ADDRESS = "28-00000abcdef0"
GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"


def w1_file(base, address=ADDRESS, text=GOOD):
    folder = base / address
    folder.mkdir(exist_ok=True)
    (folder / "w1_slave").write_text(text)


def thermometer(base, kind="temperature", address=ADDRESS) -> OneWireThermometer:
    return OneWireThermometer("t-1", KINDS[kind], address, base=base)


def test_a_good_reading_in_degrees_celsius(tmp_path):
    w1_file(tmp_path)
    s = thermometer(tmp_path).read(5.0)[0]
    assert (s.sensor, s.value, s.quality, s.ts) == ("t-1", 23.125, "ok", 5.0)


def test_below_zero_outdoors(tmp_path):
    w1_file(tmp_path, text="5e ff 4b 46 7f ff 0c 10 1c : crc=1c YES\n5e ff 4b 46 7f ff 0c 10 1c t=-10125\n")
    assert thermometer(tmp_path, "outdoor_temperature").read(0.0)[0].value == -10.125


@pytest.mark.parametrize("text,why", [
    ("72 01 4b 46 7f ff 0e 10 57 : crc=5a NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", "CRC error"),
    ("50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n", "85 °C power-on"),
    ("00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n", "all-zero"),
    ("ff ff ff ff ff ff ff ff ff : crc=c9 YES\nff ff ff ff ff ff ff ff ff t=-127000\n", "disconnected"),
    ("", "unreadable"),
    ("garbage\n", "unreadable"),
])
def test_a_broken_reading_is_a_fault_never_a_temperature(tmp_path, text, why):
    w1_file(tmp_path, text=text)
    s = thermometer(tmp_path).read(0.0)[0]
    assert (s.value, s.quality, s.state) == (None, "fault", "fault")
    assert why in s.detail


def test_a_missing_sensor_is_a_fault(tmp_path):
    s = thermometer(tmp_path).read(0.0)[0]
    assert s.quality == "fault" and "not present" in s.detail


def test_a_value_outside_the_kind_range_is_a_fault(tmp_path):
    w1_file(tmp_path, text="40 06 4b 46 7f ff 0c 10 1c : crc=1c YES\n40 06 4b 46 7f ff 0c 10 1c t=100000\n")
    assert thermometer(tmp_path, "temperature").read(0.0)[0].quality == "fault"  # a room is not 100 °C
    assert thermometer(tmp_path, "heat").read(0.0)[0].value == 100.0  # a heat detector may be


def test_a_sensor_that_comes_back_reads_again(tmp_path):
    t = thermometer(tmp_path)
    assert t.read(0.0)[0].quality == "fault"
    w1_file(tmp_path)
    assert t.read(1.0)[0].value == 23.125


def test_build_drivers_reads_from_the_injected_base_dir(tmp_path):
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    by_id = {s["id"]: s for s in data["sensors"]}
    by_id["t-dorm-m1"]["source"] = {"driver": "onewire", "address": ADDRESS}
    by_id["t-dorm-m2"]["source"] = {"driver": "onewire", "address": "28-0000000000aa"}
    cfg = parse_config(data)
    w1_file(tmp_path)
    drivers = [d for d in build_drivers(cfg, cfg.gateways[0], onewire_base=tmp_path, probe={})
               if isinstance(d, OneWireThermometer)]
    got = {s.sensor: s for d in drivers for s in d.read(0.0)}
    assert got["t-dorm-m1"].value == 23.125
    assert got["t-dorm-m2"].quality == "fault"
