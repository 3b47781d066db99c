"""Sensor sources in the organisation config: typed per driver, cross-checked per gateway, every
problem named by its field path."""
from __future__ import annotations

import pytest
import yaml

from stationwatch.core.config import ConfigError, parse_config
from stationwatch.core.wiring import GpioSource, Mcp3008Source, ModbusSource, OneWireSource
from stationwatch.sensors.base import DRIVERS, driver_class

from support import EXAMPLES

MQ2 = [{"raw": 0.1, "value": 0}, {"raw": 0.6, "value": 1000}]


def city(sources: dict[str, dict] | None = None, buses: list[dict] | None = None) -> dict:
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["gateways"][0]["buses"] = buses if buses is not None else [{"id": "rs485-1", "port": "/dev/ttyUSB0"}]
    for sensor in data["sensors"]:
        if sensor["id"] in (sources or {}):
            sensor["source"] = sources[sensor["id"]]
    return data


def index(data: dict, sensor_id: str) -> int:
    return next(i for i, s in enumerate(data["sensors"]) if s["id"] == sensor_id)


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return {p.path: p.message for p in info.value.problems}


def modbus(unit, regmap, point, bus="rs485-1") -> dict:
    return {"driver": "modbus", "bus": bus, "unit": unit, "register_map": regmap, "point": point}


WIRED = {
    "smk-dorm-m1": {"driver": "gpio", "pin": 17, "wiring": "nc", "supervision_pin": 27},
    "door-exit-main": {"driver": "gpio", "pin": 22, "debounce_ms": 100},
    "smk-kitchen": {"driver": "mcp3008", "channel": 0, "alarm_above": 300, "calibration": MQ2},
    "heat-kitchen": {"driver": "mcp3008", "channel": 1, "calibration": [{"raw": 0.1, "value": -20},
                                                                        {"raw": 0.8, "value": 120}]},
    "t-dorm-m1": {"driver": "onewire", "address": "28-00000abcdef0"},
    "t-dorm-m2": modbus(1, "th-transmitter", "temperature"),
    "supply-main": modbus(3, "heating-controller", "supply_temperature"),
    "boiler-fault": modbus(3, "heating-controller", "boiler_fault"),
}


def test_every_source_type_parses_into_its_model():
    cfg = parse_config(city(WIRED))
    sources = {s.id: s.source for s in cfg.sensors}
    assert isinstance(sources["smk-dorm-m1"], GpioSource) and sources["smk-dorm-m1"].wiring == "nc"
    assert isinstance(sources["smk-kitchen"], Mcp3008Source) and sources["smk-kitchen"].warm_up_s == 60
    assert isinstance(sources["t-dorm-m1"], OneWireSource)
    assert isinstance(sources["supply-main"], ModbusSource) and sources["supply-main"].unit == 3
    assert sources["smk-dorm-m2"] is None  # no source: simulated


def test_the_driver_table_names_a_class_for_every_source_type():
    assert {"gpio", "mcp3008", "onewire", "modbus"} <= set(DRIVERS)
    for name in DRIVERS:
        assert callable(driver_class(name).build) and driver_class(name).family == name


def test_an_unknown_or_missing_driver_is_named_at_the_source():
    data = city({"smk-dorm-m1": {"driver": "laser", "pin": 3}, "smk-dorm-m2": {"pin": 3}})
    got = problems(data)
    assert "unknown driver" in got[f"sensors[{index(data, 'smk-dorm-m1')}].source"]
    assert "gpio, mcp3008, onewire, modbus" in got[f"sensors[{index(data, 'smk-dorm-m2')}].source"]


def test_a_bad_field_of_a_source_names_its_path():
    data = city({"smk-dorm-m1": {"driver": "gpio", "pin": 40},
                 "t-dorm-m1": {"driver": "onewire", "address": "not-an-address"}})
    paths = set(problems(data))
    assert any(p.startswith(f"sensors[{index(data, 'smk-dorm-m1')}].source") and p.endswith(".pin") for p in paths)
    assert any(p.endswith(".address") for p in paths)


def test_each_gpio_pin_is_used_once_per_gateway():
    data = city({"smk-dorm-m1": {"driver": "gpio", "pin": 17},
                 "smk-dorm-m2": {"driver": "gpio", "pin": 23, "supervision_pin": 17}})
    got = problems(data)
    assert "GPIO17 used 2 times" in got[f"sensors[{index(data, 'smk-dorm-m1')}].source.pin"]
    assert "GPIO17" in got[f"sensors[{index(data, 'smk-dorm-m2')}].source.supervision_pin"]


def test_the_same_pin_on_two_gateways_is_fine():
    data = city({"smk-dorm-m1": {"driver": "gpio", "pin": 17}, "smk-dorm-m2": {"driver": "gpio", "pin": 17}})
    data["gateways"].append({"id": "gw-second", "name": "二号楼网关", "site": "sl-station"})
    data["sensors"][index(data, "smk-dorm-m2")]["gateway"] = "gw-second"
    parse_config(data)


def test_pins_taken_by_spi_and_one_wire_are_refused():
    data = city({"smk-kitchen": {"driver": "mcp3008", "channel": 0, "alarm_above": 300, "calibration": MQ2},
                 "t-dorm-m1": {"driver": "onewire", "address": "28-00000abcdef0"},
                 "smk-dorm-m1": {"driver": "gpio", "pin": 9},
                 "smk-dorm-m2": {"driver": "gpio", "pin": 4}})
    got = problems(data)
    assert "SPI0" in got[f"sensors[{index(data, 'smk-dorm-m1')}].source.pin"]
    assert "1-Wire" in got[f"sensors[{index(data, 'smk-dorm-m2')}].source.pin"]


def test_an_input_address_is_used_once():
    data = city({"t-dorm-m1": {"driver": "onewire", "address": "28-00000abcdef0"},
                 "t-dorm-m2": {"driver": "onewire", "address": "28-00000abcdef0"},
                 "smk-kitchen": {"driver": "mcp3008", "channel": 2, "alarm_above": 300, "calibration": MQ2},
                 "smk-store": {"driver": "mcp3008", "channel": 2, "alarm_above": 300, "calibration": MQ2}})
    got = problems(data)
    assert {f"sensors[{index(data, i)}].source.address" for i in ("t-dorm-m1", "t-dorm-m2")} <= set(got)
    assert {f"sensors[{index(data, i)}].source.channel" for i in ("smk-kitchen", "smk-store")} <= set(got)


def test_a_source_must_fit_the_kind():
    data = city({"t-dorm-m1": {"driver": "gpio", "pin": 5},
                 "smk-dorm-m1": {"driver": "onewire", "address": "28-00000abcdef0"},
                 "smk-kitchen": {"driver": "mcp3008", "channel": 0, "calibration": MQ2},
                 "heat-kitchen": {"driver": "mcp3008", "channel": 1, "calibration": MQ2, "alarm_above": 54}})
    got = problems(data)
    assert "binary kind" in got[f"sensors[{index(data, 't-dorm-m1')}].source.driver"]
    assert "°C kind" in got[f"sensors[{index(data, 'smk-dorm-m1')}].source.driver"]
    assert "alarm threshold" in got[f"sensors[{index(data, 'smk-kitchen')}].source.alarm_above"]
    assert "analog kinds alarm in the rules" in got[f"sensors[{index(data, 'heat-kitchen')}].source.alarm_above"]


def test_a_modbus_source_needs_its_bus_its_map_and_a_fitting_point():
    data = city({"t-dorm-m1": modbus(1, "th-transmitter", "temperature", bus="rs485-9"),
                 "t-dorm-m2": modbus(2, "no-such-map", "temperature"),
                 "t-dorm-f1": modbus(4, "th-transmitter", "dew_point"),
                 "t-minors-1": modbus(5, "th-transmitter", "humidity"),
                 "boiler-fault": modbus(3, "heating-controller", "supply_temperature")})
    got = problems(data)
    assert "no bus 'rs485-9'" in got[f"sensors[{index(data, 't-dorm-m1')}].source.bus"]
    assert "no register map 'no-such-map'" in got[f"sensors[{index(data, 't-dorm-m2')}].source.register_map"]
    assert "no point 'dew_point'" in got[f"sensors[{index(data, 't-dorm-f1')}].source.point"]
    assert "'%RH'" in got[f"sensors[{index(data, 't-minors-1')}].source.point"]
    assert "needs a bit" in got[f"sensors[{index(data, 'boiler-fault')}].source.point"]


def test_one_unit_address_is_one_device():
    data = city({"t-dorm-m1": modbus(1, "th-transmitter", "temperature"),
                 "t-dorm-m2": modbus(1, "xy-md02", "temperature"),
                 "t-dorm-f1": modbus(2, "th-transmitter", "temperature"),
                 "t-minors-1": modbus(2, "th-transmitter", "temperature")})
    got = problems(data)
    assert "different register maps" in got[f"sensors[{index(data, 't-dorm-m1')}].source.register_map"]
    assert "different register maps" in got[f"sensors[{index(data, 't-dorm-m2')}].source.register_map"]
    assert f"sensors[{index(data, 't-dorm-f1')}].source.point" in got  # the same point twice
    assert f"sensors[{index(data, 't-minors-1')}].source.point" in got


def test_buses_of_a_gateway_have_their_own_ids_and_ports():
    data = city(buses=[{"id": "rs485-1", "port": "/dev/ttyUSB0"}, {"id": "rs485-1", "port": "/dev/ttyUSB0"}])
    got = problems(data)
    assert "duplicate bus id" in got["gateways[0].buses[1].id"]
    assert "already used" in got["gateways[0].buses[1].port"]


def test_polling_beyond_what_the_line_carries_is_refused():
    data = city(buses=[{"id": "rs485-1", "port": "/dev/ttyUSB0"}])
    room_temps = [s for s in data["sensors"] if s["kind"] == "temperature"]
    for unit, sensor in enumerate(room_temps, start=1):  # 6 transmitters, each read 8 times a second
        sensor["source"] = modbus(unit, "th-transmitter", "temperature")
        sensor["interval_s"] = 0.125
    got = problems(data)
    assert "of what 9600 baud carries" in got["gateways[0].buses[0]"]
    for sensor in room_temps:
        sensor["interval_s"] = 1.0  # 6 reads a second: fine
    parse_config(data)


def test_camera_probe_urls_are_checked():
    data = city()
    data["cameras"][0]["probe"] = "ftp://192.0.2.11/"
    data["cameras"][1]["probe"] = "tcp://192.0.2.12"
    data["cameras"][2]["probe"] = "onvif://192.0.2.13"
    got = problems(data)
    assert "unsupported probe scheme 'ftp'" in got["cameras[0].probe"]
    assert "needs host and port" in got["cameras[1].probe"]
    assert "cameras[2].probe" not in got


def test_error_paths_name_the_field_not_the_driver_union_member():
    import yaml

    from stationwatch.core.config import ConfigError, parse_config

    from support import EXAMPLES
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["sensors"][1]["source"] = {"driver": "gpio", "pin": "seventeen"}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    paths = [p.path for p in info.value.problems]
    assert "sensors[1].source.pin" in paths, paths


def test_spi0_takes_both_chip_selects_so_gpio7_is_refused_for_a_contact():
    import yaml

    from stationwatch.core.config import ConfigError, parse_config

    from support import EXAMPLES
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["sensors"][0]["source"] = {"driver": "gpio", "pin": 7}
    kitchen = next(i for i, x in enumerate(data["sensors"]) if x["id"] == "smk-kitchen")
    data["sensors"][kitchen]["source"] = {"driver": "mcp3008", "channel": 0, "alarm_above": 300, "calibration": MQ2}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert any("GPIO7" in p.message for p in info.value.problems), [str(p) for p in info.value.problems]
