"""The dashboards of a deployment, generated from the organisation config: per city a 站点总览
(station overview) and a 城市总览 (city overview) in the city's folder, and one 管道健康 (pipeline
health) for the server. Never edited by hand: change the config or the builders, and build again.

>>> from stationwatch.core.config import load_config                          # doctest: +SKIP
>>> [b.uid for b in boards(load_config("docs/examples/city-station.yaml"))]    # doctest: +SKIP
['sw-station-sl-mz', 'sw-city-sl-mz', 'sw-pipeline']
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dashboard_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard

from stationwatch.core.config import StationConfig

from .city import city_rows
from .influxql import DATASOURCE
from .panels import Row, add_rows
from .pipeline import pipeline_rows
from .scope import CityScope, city_scopes, uid
from .station import station_rows
from .variables import SOURCE, build_variable, org_chain

SYSTEM_FOLDER = ("stationwatch-system", "StationWatch 系统 / system")
TIMEZONE = "browser"
ANNOTATION_FIELDS = ("query", "textColumn", "titleColumn", "tagsColumn")


class InfluxAnnotation(dashboard.AnnotationQuery):
    """An annotation read with InfluxQL: the SDK's annotation model plus the columns Grafana's
    InfluxDB data source maps (``titleColumn``, ``textColumn``, ``tagsColumn``)."""

    def __init__(self, name: str, query: str, color: str, *, text: str = "text", title: str = "title",
                 tags: str = "rule,action,severity") -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=True, hide=False, icon_color=color)
        self.query, self.text_column, self.title_column, self.tags_column = " ".join(query.split()), text, title, tags

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "query": self.query, "textColumn": self.text_column,
                "titleColumn": self.title_column, "tagsColumn": self.tags_column}


class _Built(dashboard_b.AnnotationQuery):
    def __init__(self, annotation: dashboard.AnnotationQuery) -> None:
        self._internal = annotation


def alert_annotations(site_filter: str) -> list[_Built]:
    """When an alarm opened, was acknowledged and was resolved: the ``alert`` history (alerts/history.py)."""
    base = f'SELECT "title", "text", "rule", "action", "severity" FROM "records"."alert" WHERE {site_filter} AND $timeFilter'
    return [
        _Built(InfluxAnnotation("告警产生 alarms opened", base + ' AND "action" =~ /^(raise|fire|reopen|escalate|confirm)$/', "red")),
        _Built(InfluxAnnotation("已确认 acknowledged", base + ' AND "action" = \'acknowledge\'', "yellow")),
        _Built(InfluxAnnotation("已解除 resolved", base + ' AND "action" =~ /^(resolve|dismiss|expire)$/', "green")),
    ]


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    folder_uid: str
    folder_title: str
    model: dict[str, Any]  # the dashboard JSON

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"


def _built_in() -> _Built:
    return _Built(dashboard.AnnotationQuery(
        name="Annotations & Alerts", datasource=dashboard.DataSourceRef(type_val="grafana", uid="-- Grafana --"),
        enable=True, hide=True, icon_color="rgba(0, 211, 255, 1)", type_val="dashboard", built_in=1))


def _dashboard(board_uid: str, title: str, rows: list[Row], variables, annotations, tags: list[str],
               time_from: str = "now-6h") -> dict[str, Any]:
    b = (dashboard_b.Dashboard(title).uid(board_uid).tags(["stationwatch", *tags]).timezone(TIMEZONE)
         .time(time_from, "now").refresh("30s").editable().tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
         .annotations([_built_in(), *annotations]).variables(variables))
    return json.loads(json.dumps(add_rows(b, rows).build(), cls=JSONEncoder))


def station_board(scope: CityScope) -> Board:
    path, first = scope.path, scope.sites[0].id
    current = {"province": path.province, "city": scope.city, "site": first}
    variables = [build_variable(v, current.get(v.name)) for v in org_chain({"bureau", "room"}, "room")]
    board_uid = uid("sw-station", scope.city)
    title = f"站点总览 Station overview · {scope.name}"
    return Board(board_uid, title, uid("sw", scope.city), scope.name,
                 _dashboard(board_uid, title, station_rows(scope), [*variables, build_variable(SOURCE, None)],
                            alert_annotations('"site" =~ /^$site$/'), ["station", scope.city]))


def city_board(scope: CityScope) -> Board:
    path = scope.path
    current = {"province": path.province, "city": scope.city}
    variables = [build_variable(v, current.get(v.name)) for v in org_chain({"bureau", "site"}, "site")]
    board_uid = uid("sw-city", scope.city)
    title = f"城市总览 City overview · {scope.name}"
    return Board(board_uid, title, uid("sw", scope.city), scope.name,
                 _dashboard(board_uid, title, city_rows(scope), variables,
                            alert_annotations('"site" =~ /^$site$/'), ["city", scope.city], time_from="now-24h"))


def pipeline_board() -> Board:
    title = "管道健康 Pipeline health"
    return Board("sw-pipeline", title, *SYSTEM_FOLDER, _dashboard("sw-pipeline", title, pipeline_rows(), [], [],
                                                                   ["pipeline"], time_from="now-3h"))


def boards(cfg: StationConfig) -> list[Board]:
    out: list[Board] = []
    for scope in city_scopes(cfg):
        out += [station_board(scope), city_board(scope)]
    return out + [pipeline_board()]
