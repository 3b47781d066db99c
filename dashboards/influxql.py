"""An InfluxQL target for the Grafana Foundation SDK, which ships typed models for every panel and
for many data sources but none for InfluxDB.

:class:`InfluxQLQuery` is a Foundation SDK dataquery (``cog`` variant ``influxdb``): registered
once with the SDK's runtime (:func:`register`), a dashboard JSON holding it loads back through
``Dashboard.from_json`` into this class, so the lint test reads every target as typed data.

The fields are those Grafana's InfluxDB data source stores for a raw InfluxQL query; the data
source is always the provisioned one (:data:`DATASOURCE`), by its fixed uid: Grafana does not
resolve ``__inputs`` in file-provisioned dashboards.

>>> q = Query().ref_id("A").query('SELECT mean("value") FROM "raw"."reading" WHERE $timeFilter').alias("$tag_sensor").build()
>>> q.to_json()["rawQuery"], q.to_json()["datasource"]["uid"]
(True, 'stationwatch-influxdb')
"""
from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

DATASOURCE_UID = "stationwatch-influxdb"
DATASOURCE_TYPE = "influxdb"
DATASOURCE = dashboard.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
ResultFormat = typing.Literal["time_series", "table"]


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL query of a panel (``rawQuery: true``)."""

    def __init__(self, ref_id: str = "A", query: str = "", alias: str = "",
                 result_format: ResultFormat = "time_series", hide: bool | None = None) -> None:
        self.ref_id, self.query, self.alias, self.result_format, self.hide = ref_id, query, alias, result_format, hide

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"refId": self.ref_id, "datasource": DATASOURCE.to_json(), "rawQuery": True,
                                  "query": self.query, "resultFormat": self.result_format}
        if self.alias:
            out["alias"] = self.alias
        if self.hide is not None:
            out["hide"] = self.hide
        return out

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> "InfluxQLQuery":
        if not data.get("rawQuery", False):
            raise ValueError(f"target {data.get('refId')!r}: only raw InfluxQL queries are built here")
        return cls(data.get("refId", "A"), data.get("query", ""), data.get("alias", ""),
                   data.get("resultFormat", "time_series"), data.get("hide"))


class Query(cogbuilder.Builder[InfluxQLQuery]):
    def __init__(self) -> None:
        self._internal = InfluxQLQuery()

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def query(self, text: str) -> typing.Self:
        self._internal.query = " ".join(text.split())
        return self

    def alias(self, alias: str) -> typing.Self:
        self._internal.alias = alias
        return self

    def table(self) -> typing.Self:
        self._internal.result_format = "table"
        return self


def register() -> None:
    """Teach the SDK's runtime the panels' typed options and to read ``influxdb`` targets back as
    :class:`InfluxQLQuery`."""
    plugins.register_default_plugins()
    cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(DATASOURCE_TYPE, InfluxQLQuery.from_json))


register()
