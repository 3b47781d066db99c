"""Template variables: the organisation chain (province → city → bureau → site → room) read with
``SHOW TAG VALUES`` from the ``organisation`` directory that ingest keeps (broker/directory.py), and
the hidden ``source`` that picks raw readings for short ranges and 1-minute trends for long ones.

Every use of a variable in a query is a regular expression (``"site" =~ /^$site$/``): Grafana
formats InfluxDB variables as escaped regexes, and a multi-value or "All" choice as ``(a|b)``.
No custom "All" value: "All" means every value the chain offers, never every site in the database.
"""
from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as dashboard_b
from grafana_foundation_sdk.models import dashboard

from .influxql import DATASOURCE

DIRECTORY = '"records"."organisation"'
SOURCE_QUERY = 'SELECT first("source") FROM "records"."resolution" WHERE "up_to_ms" >= $__range_ms'


@dataclass(frozen=True)
class VariableSpec:
    name: str
    label: str
    query: str
    multi: bool = False
    hidden: bool = False
    on_time_range: bool = False  # refreshed when the time range changes (uses $__range_ms)


def chain(key: str, parent: str | None) -> str:
    where = f' WHERE "{parent}" =~ /^${parent}$/' if parent else ""
    return f'SHOW TAG VALUES FROM {DIRECTORY} WITH KEY = "{key}"{where}'


# name, label, parent in the chain
LEVELS = (("province", "省 province", None), ("city", "市 city", "province"), ("bureau", "民政局 bureau", "city"),
          ("site", "站点 site", "bureau"), ("room", "房间 room", "site"))


def org_chain(multi: set[str], down_to: str) -> list[VariableSpec]:
    specs = []
    for name, label, parent in LEVELS:
        specs.append(VariableSpec(name, label, chain(name, parent), multi=name in multi))
        if name == down_to:
            break
    return specs


SOURCE = VariableSpec("source", "数据精度 resolution", SOURCE_QUERY, hidden=True, on_time_range=True)


def build_variable(spec: VariableSpec, current: str | None) -> dashboard_b.QueryVariable:
    v = (dashboard_b.QueryVariable(spec.name).label(spec.label).query(spec.query).datasource(DATASOURCE)
         .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED if spec.on_time_range
                  else dashboard.VariableRefresh.ON_DASHBOARD_LOAD)
         .sort(dashboard.VariableSort.ALPHABETICAL_ASC).multi(spec.multi).include_all(spec.multi))
    if spec.hidden:
        v = v.hide(dashboard.VariableHide.HIDE_VARIABLE)
    if spec.multi:
        v = v.current(dashboard.VariableOption(text=["All"], value=["$__all"], selected=True))
    elif current is not None:
        v = v.current(dashboard.VariableOption(text=current, value=current, selected=True))
    return v
