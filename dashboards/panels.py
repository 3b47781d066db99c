"""Panels as data: a :class:`PanelSpec` says what a duty officer sees (title, queries, unit, the
thresholds of the rules, what a 1 or a 0 means); :func:`build_panel` turns it into the Grafana
Foundation SDK's typed panel. The dashboards (station.py, city.py, pipeline.py) are lists of specs.

Colours and meanings of states are tables (:data:`STATES`), not branches: a state-timeline panel
names one of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dashboard_b
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common, dashboard

from .influxql import DATASOURCE, Query

RED, ORANGE, YELLOW, GREEN, BLUE, GREY = "red", "orange", "yellow", "green", "blue", "#8e8e8e"
MAX_POINTS = 720  # points per series a panel asks for: its $__interval is the range / 720, rounded


@dataclass(frozen=True)
class Target:
    query: str
    alias: str = ""
    table: bool = False


@dataclass(frozen=True)
class Band:
    """What a range of values means: ``low`` ≤ value ≤ ``high``, shown as ``text`` in ``color``."""
    low: float
    high: float
    text: str
    color: str


# what a 1/0 signal means on a state timeline (the max or min over each interval; see the queries)
STATES: dict[str, tuple[Band, ...]] = {
    "alarm": (Band(0, 0, "正常 normal", GREEN), Band(1e-9, 1, "报警 ALARM", RED)),
    "door": (Band(0, 0, "关 closed", GREEN), Band(1e-9, 1, "开 open", ORANGE)),
    "camera": (Band(0, 0, "离线 offline", RED), Band(1, 1, "在线 online", GREEN)),
    "pump": (Band(0, 0, "停止 stopped", RED), Band(1e-9, 1, "运行 running", GREEN)),
    "fault": (Band(0, 0, "正常 normal", GREEN), Band(1e-9, 1, "故障 fault", RED)),
    "flag": (Band(0, 0, "正常 normal", GREEN), Band(1e-9, 1e9, "告警 alarm", RED)),
}


@dataclass(frozen=True)
class PanelSpec:
    title: str  # 中文 / English
    kind: str  # a key of BUILDERS
    targets: tuple[Target, ...]
    width: int = 12
    height: int = 8
    unit: str = ""
    description: str = ""
    # (value, colour) steps from the bottom: the first value is None (everything below the next)
    thresholds: tuple[tuple[float | None, str], ...] = ()
    dashed: bool = True  # thresholds drawn as dashed lines on a time series
    states: str = ""  # a key of STATES for a state timeline
    names: Mapping[str, str] = field(default_factory=dict)  # series name (alias) → the name shown
    interval: str | None = None  # the shortest $__interval (e.g. a camera's heartbeat)
    time_from: str | None = None  # the panel's own range, e.g. "now/M" (this month so far)
    decimals: int | None = None


def _thresholds(spec: PanelSpec) -> dashboard_b.ThresholdsConfig:
    steps = spec.thresholds or ((None, GREEN),)
    return dashboard_b.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(
        [dashboard.Threshold(value=v, color=c) for v, c in steps])


def _mappings(name: str) -> list[dashboard.ValueMapping]:
    return [dashboard.RangeMap(options=dashboard.DashboardRangeMapOptions(
        from_val=b.low, to=b.high, result=dashboard.ValueMappingResult(text=b.text, color=b.color, index=i)))
        for i, b in enumerate(STATES[name])]


def _common(panel, spec: PanelSpec, panel_id: int):
    panel = (panel.id(panel_id).title(spec.title).datasource(DATASOURCE).max_data_points(MAX_POINTS)
             .span(spec.width).height(spec.height).thresholds(_thresholds(spec)))
    for i, t in enumerate(spec.targets):
        q = Query().ref_id(chr(ord("A") + i)).query(t.query).alias(t.alias)
        panel = panel.with_target(q.table() if t.table else q)
    for option, value in (("description", spec.description), ("unit", spec.unit), ("interval", spec.interval),
                          ("time_from", spec.time_from), ("decimals", spec.decimals)):
        if value not in (None, ""):
            panel = getattr(panel, option)(value)
    for series, shown in spec.names.items():
        panel = panel.override_by_name(series, [dashboard.DynamicConfigValue(id_val="displayName", value=shown)])
    return panel


def _legend() -> common_b.VizLegendOptions:
    return (common_b.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT).calcs(["min", "max", "lastNotNull"]))


def _timeseries(spec: PanelSpec, panel_id: int):
    style = common.GraphThresholdsStyleMode.DASHED if spec.dashed and spec.thresholds else common.GraphThresholdsStyleMode.OFF
    return (_common(timeseries.Panel(), spec, panel_id).legend(_legend()).line_width(2).fill_opacity(5)
            .span_nulls(False).thresholds_style(common_b.GraphThresholdsStyleConfig().mode(style)))


def _state_timeline(spec: PanelSpec, panel_id: int):
    return (_common(statetimeline.Panel(), spec, panel_id).mappings(_mappings(spec.states)).show_value(
        common.VisibilityMode.NEVER).merge_values(True).row_height(0.8).fill_opacity(80)
        .legend(common_b.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)))


def _stat(spec: PanelSpec, panel_id: int):
    reduce = common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    return (_common(stat.Panel(), spec, panel_id).reduce_options(reduce).color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.NONE).text_mode(common.BigValueTextMode.VALUE_AND_NAME))


def _table(spec: PanelSpec, panel_id: int):
    return _common(table.Panel(), spec, panel_id).show_header(True).align(common.FieldTextAlignment.AUTO).inspect(False)


BUILDERS: dict[str, Callable[[PanelSpec, int], object]] = {
    "timeseries": _timeseries, "state": _state_timeline, "stat": _stat, "table": _table}


def build_panel(spec: PanelSpec, panel_id: int):
    try:
        return BUILDERS[spec.kind](spec, panel_id)
    except KeyError:
        raise ValueError(f"panel '{spec.title}': unknown kind '{spec.kind}' ({', '.join(BUILDERS)})") from None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[PanelSpec, ...]


def add_rows(board: dashboard_b.Dashboard, rows: list[Row]) -> dashboard_b.Dashboard:
    """Rows of panels, laid out left to right and wrapped at Grafana's 24 columns; ids from 1."""
    next_id = 1
    for row in rows:
        board = board.with_row(dashboard_b.Row(row.title).id(next_id))
        next_id += 1
        for spec in row.panels:
            board = board.with_panel(build_panel(spec, next_id))
            next_id += 1
    return board
