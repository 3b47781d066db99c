"""The generated dashboards without data: their checks (lint), the provisioning folder `build` writes,
and `push` on the wire against a local receiver answering as Grafana's HTTP API documents (no live
Grafana: it cannot be installed on these machines)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard

from stationwatch.core.config import load_config, parse_config
from stationwatch.core.organisation import cities, org_path
from stationwatch.dashboards.boards import boards
from stationwatch.dashboards.influxql import DATASOURCE_UID, InfluxQLQuery
from stationwatch.dashboards.lint import lint
from stationwatch.dashboards.provisioning import InfluxTarget, write_provisioning
from stationwatch.dashboards.push import PushError, push
from stationwatch.dashboards.runner import panels

from grafana_api import GrafanaAPI
from support import EXAMPLES

CLI = [sys.executable, "-m", "stationwatch.cli"]


def two_cities():
    """The city example plus a county station reporting to a second city of the same province."""
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    county = yaml.safe_load((EXAMPLES / "county-station.yaml").read_text(encoding="utf-8"))
    data["bureaus"] += [{"id": "dg-mz", "name": "示例二市民政局", "level": "city", "parent": "gd-mz"},
                        {"id": "dg-xq", "name": "示例县民政局", "level": "county", "parent": "dg-mz"}]
    for site in county["sites"]:
        data["sites"].append({**site, "bureau": "dg-xq"})
    data["gateways"] += county["gateways"]
    taken = {d["id"] for d in data["sensors"] + data["cameras"]}
    data["sensors"] += [s for s in county["sensors"] if s["id"] not in taken]
    data["cameras"] += [c for c in county.get("cameras", []) if c["id"] not in taken]
    return parse_config(data)


@pytest.fixture(scope="module")
def built(city_config):
    return boards(city_config)


def test_a_county_station_belongs_to_its_city_and_every_city_gets_its_folder():
    cfg = two_cities()
    county_site = next(s.id for s in cfg.sites if s.bureau == "dg-xq")
    path = org_path(cfg, county_site)
    assert (path.province, path.city, path.bureau) == ("gd-mz", "dg-mz", "dg-xq")
    assert set(cities(cfg)) == {"sl-mz", "dg-mz"}
    folders = {b.folder_uid: b.folder_title for b in boards(cfg)}
    assert folders == {"sw-sl-mz": "示例市民政局", "sw-dg-mz": "示例二市民政局", "stationwatch-system": "StationWatch 系统 / system"}
    assert not lint(boards(cfg), {DATASOURCE_UID})


def test_the_generated_dashboards_pass_their_checks_and_load_through_the_sdk_models(built):
    assert lint(built, {DATASOURCE_UID}) == []
    assert len({b.uid for b in built}) == len(built) == 3
    for b in built:
        typed = Dashboard.from_json(b.model)
        targets = [t for p in typed.panels for t in (getattr(p, "targets", None) or [])]
        assert targets and all(isinstance(t, InfluxQLQuery) for t in targets), b.uid
        ids = [p["id"] for p in b.model["panels"]]
        assert len(ids) == len(set(ids))


def test_titles_and_legends_speak_chinese_first_and_thresholds_come_from_the_rules(built, city_config):
    station = built[0].model
    assert station["title"].startswith("站点总览")
    titles = [p["title"] for p in panels(station)]
    assert all("\u4e00" <= t[0] <= "\u9fff" for t in titles), titles
    rooms = next(p for p in panels(station) if "Rooms where people sleep" in p["title"])
    steps = [s["value"] for s in rooms["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 5.0, 18.0, 32.0]
    shown = {o["matcher"]["options"]: o["properties"][0]["value"] for o in rooms["fieldConfig"]["overrides"]}
    assert shown["t-dorm-f1"] == "女宿舍一 室温 t-dorm-f1"
    assert not any("Pressure" in t for t in titles), "no pressure sensor in the example: no empty pressure chart"


@pytest.mark.parametrize("breakage, expected", [
    (lambda m: m["panels"][1].__setitem__("id", m["panels"][2]["id"]), "used twice"),
    (lambda m: panels(m)[0]["targets"][0].__setitem__("query", panels(m)[0]["targets"][0]["query"] + " AND $nowhere"),
     "uses $nowhere, which the dashboard does not declare"),
    (lambda m: panels(m)[0]["targets"][0].__setitem__("query", "SELECT * FROM x WHERE \"site\" = '$site'"),
     "uses $site other than as =~ /^$site$/"),
    (lambda m: panels(m)[0]["targets"][0]["datasource"].__setitem__("uid", "influx-by-hand"),
     "uses data source 'influx-by-hand', which is not provisioned"),
])
def test_the_checks_name_what_is_wrong_and_where(built, breakage, expected):
    broken = [copy.deepcopy(b) for b in built]
    breakage(broken[0].model)
    problems = lint(broken, {DATASOURCE_UID})
    assert any(expected in p and broken[0].title in p for p in problems), problems


def test_build_writes_the_provisioning_folder_with_one_folder_per_city(tmp_path, built):
    written = write_provisioning(tmp_path / "grafana", built, InfluxTarget("http://influx:8086", "stationwatch", "grafana"),
                                 grafana_path=tmp_path / "on-grafana")
    v1 = yaml.safe_load((tmp_path / "grafana/datasources/stationwatch-influxdb.yaml").read_text())
    ds = v1["datasources"][0]
    assert (ds["uid"], ds["type"], ds["jsonData"]["version"], ds["jsonData"]["dbName"]) == (
        DATASOURCE_UID, "influxdb", "InfluxQL", "stationwatch")
    assert ds["secureJsonData"] == {"password": "$STATIONWATCH_INFLUX_PASSWORD"}, "the password stays in Grafana's environment"
    v2 = yaml.safe_load((tmp_path / "grafana/datasources-influxdb2/stationwatch-influxdb.yaml").read_text())
    assert v2["datasources"][0]["uid"] == DATASOURCE_UID
    assert "Token $STATIONWATCH_INFLUX_TOKEN" in v2["datasources"][0]["secureJsonData"]["httpHeaderValue1"]
    providers = yaml.safe_load((tmp_path / "grafana/dashboards/stationwatch.yaml").read_text())["providers"]
    assert {(p["folder"], p["options"]["path"]) for p in providers} == {
        ("示例市民政局", str(tmp_path / "on-grafana/dashboards/sw-sl-mz")),
        ("StationWatch 系统 / system", str(tmp_path / "on-grafana/dashboards/stationwatch-system"))}
    for b in built:
        on_disk = json.loads((tmp_path / "grafana/dashboards" / b.folder_uid / b.file_name).read_text())
        assert on_disk == b.model
    assert len(written.files) == 6


def test_build_refuses_a_bad_influx_url_naming_the_option(tmp_path):
    run = subprocess.run(CLI + ["dashboards", "build", "-c", str(EXAMPLES / "city-station.yaml"), "--out", str(tmp_path),
                                "--influx", "influx:8086"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "influx url" in run.stderr and not list(tmp_path.iterdir())


def test_push_creates_folders_data_source_and_dashboards_then_changes_nothing(built):
    with GrafanaAPI() as grafana:
        first = push(grafana.url, built, InfluxTarget("http://influx:8086"), token=grafana.token)
        assert set(grafana.folders) == {"sw-sl-mz", "stationwatch-system"}
        assert grafana.folders["sw-sl-mz"]["title"] == "示例市民政局"
        assert [(uid, what, v) for uid, what, v in first.dashboards] == [(b.uid, "created", 1) for b in built]
        stored = grafana.dashboards["sw-station-sl-mz"]
        assert stored["meta"]["folderUid"] == "sw-sl-mz" and stored["dashboard"]["title"].startswith("站点总览")
        assert grafana.datasources[DATASOURCE_UID]["jsonData"]["dbName"] == "stationwatch"
        saves = [r for r in grafana.requests if r["path"] == "/api/dashboards/db"]
        assert all(r["json"]["overwrite"] and r["json"]["dashboard"]["id"] is None for r in saves)
        assert all(r["auth"] == f"Bearer {grafana.token}" for r in grafana.requests)

        again = push(grafana.url, built, InfluxTarget("http://influx:8086"), token=grafana.token)
        assert [what for _, what, _ in again.dashboards] == ["unchanged"] * len(built)
        assert all(f.startswith("kept") for f in again.folders)
        assert len([r for r in grafana.requests if r["path"] == "/api/dashboards/db"]) == len(built), "no new versions"

        changed = [copy.deepcopy(b) for b in built]
        changed[0].model["refresh"] = "1m"
        third = push(grafana.url, changed, None, token=grafana.token)
        assert third.dashboards[0][1:] == ("updated", 2)
        assert len(grafana.dashboards) == len(built), "by uid: updated in place, never duplicated"


def test_push_says_plainly_when_the_token_is_refused_or_grafana_is_unreachable(built):
    with GrafanaAPI() as grafana:
        with pytest.raises(PushError, match="refused the token \\(401\\).*STATIONWATCH_GRAFANA_TOKEN"):
            push(grafana.url, built, token="wrong")
        assert not grafana.dashboards
    from stationwatch.broker.stack import free_port
    with pytest.raises(PushError, match="cannot reach Grafana at http://127.0.0.1:"):
        push(f"http://127.0.0.1:{free_port()}", built, token="any")


def test_push_from_the_command_line_prints_the_versions_and_needs_a_token(tmp_path):
    with GrafanaAPI() as grafana:
        args = CLI + ["dashboards", "push", "-c", str(EXAMPLES / "city-station.yaml"), "--grafana", grafana.url]
        run = subprocess.run(args, capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "STATIONWATCH_GRAFANA_TOKEN": grafana.token})
        assert run.returncode == 0, run.stderr
        assert "sw-station-sl-mz: created, version 1" in run.stdout
        missing = subprocess.run(args, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        assert missing.returncode == 2 and "STATIONWATCH_GRAFANA_TOKEN" in missing.stderr


def test_the_example_configs_build(tmp_path):
    for name in ("city-station.yaml", "county-station.yaml"):
        assert not lint(boards(load_config(EXAMPLES / name)), {DATASOURCE_UID}), name
