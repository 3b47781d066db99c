"""`stationwatch check-config`: the example configs pass; broken ones name every error's path."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from stationwatch.core.config import ConfigError, load_config, parse_config
from stationwatch.core.sensor_config import SensorConfig
from stationwatch.sensors.kinds import KINDS

from support import EXAMPLES

CLI = [sys.executable, "-m", "stationwatch.cli"]


def _city() -> dict:
    return yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))


def _problems(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return {p.path: p.message for p in info.value.problems}


@pytest.mark.parametrize("name", ["city-station.yaml", "county-station.yaml"])
def test_shipped_examples_are_valid(name):
    cfg = load_config(EXAMPLES / name)
    assert cfg.sensors and cfg.cameras


def test_city_example_is_a_whole_station():
    cfg = load_config(EXAMPLES / "city-station.yaml")
    kinds = {r.kind for r in cfg.sites[0].rooms}
    assert {"dormitory", "minors_dormitory", "medical_observation", "kitchen", "boiler_room",
            "storeroom", "exit"} <= kinds
    assert len(cfg.sensors) >= 20 and len(cfg.cameras) >= 8


def test_every_kind_in_the_table_has_a_config_schema_and_back():
    schema_kinds = {m.model_fields["kind"].annotation.__args__[0] for m in SensorConfig.__origin__.__args__}
    assert schema_kinds == set(KINDS)


def test_wrong_type_names_the_field():
    data = _city()
    data["sensors"][2]["interval_s"] = "often"
    assert "sensors[2].interval_s" in _problems(data)


def test_unknown_sensor_kind_names_the_sensor():
    data = _city()
    data["sensors"][5]["kind"] = "flamethrower"
    problems = _problems(data)
    assert "flamethrower" in problems["sensors[5].kind"]


def test_duplicate_ids_are_reported_at_each_place():
    data = _city()
    data["sensors"][3]["id"] = data["sensors"][1]["id"]
    data["cameras"][0]["id"] = data["sensors"][0]["id"]
    problems = _problems(data)
    assert {"sensors[1].id", "sensors[3].id", "sensors[0].id", "cameras[0].id"} <= set(problems)


def test_a_room_that_does_not_exist():
    data = _city()
    data["sensors"][4]["room"] = "ballroom"
    data["cameras"][2]["room"] = "attic"
    problems = _problems(data)
    assert "ballroom" in problems["sensors[4].room"]
    assert "attic" in problems["cameras[2].room"]


def test_all_errors_are_reported_at_once_not_just_the_first():
    data = _city()
    data["sites"][0]["bureau"] = "nowhere"
    data["gateways"][0]["site"] = "nowhere"
    data["routing"]["notify"] = ["ghost"]
    assert {"sites[0].bureau", "gateways[0].site", "routing.notify[0]"} <= set(_problems(data))


def test_unknown_field_and_bad_timezone_are_refused():
    data = _city()
    data["sites"][0]["timezone"] = "Mars/Olympus"
    data["gateways"][0]["colour"] = "red"
    problems = _problems(data)
    assert "Mars/Olympus" in problems["sites[0].timezone"]
    assert "gateways[0].colour" in problems


def test_check_config_command_prints_paths_and_exits_non_zero(tmp_path):
    data = _city()
    data["sensors"][0]["kind"] = "unicorn"
    data["sensors"][7]["room"] = "nowhere"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    run = subprocess.run(CLI + ["check-config", str(broken)], capture_output=True, text=True)
    assert run.returncode == 2
    assert "sensors[0].kind" in run.stderr and "unicorn" in run.stderr

    data = copy.deepcopy(_city())
    data["sensors"][7]["room"] = "nowhere"
    broken.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    run = subprocess.run(CLI + ["check-config", str(broken)], capture_output=True, text=True)
    assert run.returncode == 2 and "sensors[7].room" in run.stderr


def test_check_config_reports_yaml_syntax_with_a_line_number(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsites: [\n  - {id: a\n", encoding="utf-8")
    run = subprocess.run(CLI + ["check-config", str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and "line" in run.stderr


def test_check_config_accepts_a_good_file():
    run = subprocess.run(CLI + ["check-config", str(EXAMPLES / "city-station.yaml")], capture_output=True, text=True)
    assert run.returncode == 0 and "26 sensor(s)" in run.stdout
