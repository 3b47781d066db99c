"""Checks a set of dashboards before they are written or pushed; `build` refuses to write a set
that fails. Each problem names the dashboard and the panel.

- uids unique across the set; panel ids unique within a dashboard;
- every ``$variable`` a query uses is declared by the dashboard (or is one of Grafana's own);
- every variable is used as a regular expression (``=~ /^$site$/``): Grafana formats InfluxDB
  variables as escaped regexes, so ``= '$site'`` would break on "All" or on a value with a dot;
- every data source uid is one the provisioning writes;
- every dashboard loads through the Grafana Foundation SDK's models and comes back unchanged.
"""
from __future__ import annotations

import re
from typing import Any

from grafana_foundation_sdk.models.dashboard import Dashboard

from . import influxql  # noqa: F401 — registers the InfluxQL target with the SDK's runtime
from .boards import ANNOTATION_FIELDS, Board
from .runner import VARIABLE, panels

GRAFANA_VARIABLES = {"timeFilter", "interval", "__interval", "__interval_ms", "__range", "__range_ms", "__range_s",
                     "__from", "__to", "__all"}
BUILT_IN_DATASOURCES = {"-- Grafana --", "grafana"}
AS_REGEX = re.compile(r"=~ /\^\$\{?(\w+)\}?\$/")


def _queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, query) of every variable, panel target and annotation."""
    out = [(f"variable ${v['name']}", v.get("query", "")) for v in model.get("templating", {}).get("list", [])]
    out += [(f"panel '{p['title']}'", t.get("query", "")) for p in panels(model) for t in p["targets"]]
    out += [(f"annotation '{a['name']}'", a["query"]) for a in model.get("annotations", {}).get("list", []) if "query" in a]
    return out


def _datasources(model: dict[str, Any]) -> list[tuple[str, str]]:
    out = [(f"variable ${v['name']}", v.get("datasource", {}).get("uid", "")) for v in model["templating"]["list"]]
    for p in model.get("panels", []):
        if "datasource" in p:
            out.append((f"panel '{p['title']}'", p["datasource"].get("uid", "")))
        out += [(f"panel '{p['title']}' target {t['refId']}", t.get("datasource", {}).get("uid", ""))
                for t in p.get("targets", [])]
    out += [(f"annotation '{a['name']}'", a["datasource"].get("uid", "")) for a in model["annotations"]["list"]]
    return out


def _round_trip(model: dict[str, Any]) -> list[str]:
    """Differences between the model and what the SDK's typed models make of it."""
    import json

    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    back = json.loads(json.dumps(Dashboard.from_json(model), cls=JSONEncoder))
    expected = json.loads(json.dumps(model))
    for a in expected.get("annotations", {}).get("list", []):  # InfluxDB columns: not in the SDK's model
        for key in ANNOTATION_FIELDS:
            a.pop(key, None)
    return [] if back == expected else [f"does not load unchanged through the SDK's Dashboard model: "
                                        f"{_first_difference(expected, back)}"]


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path or '(top)'}: {str(a)[:80]!r} became {str(b)[:80]!r}"


def lint(boards: list[Board], provisioned: set[str]) -> list[str]:
    problems: list[str] = []
    uids = [b.uid for b in boards]
    problems += [f"uid '{u}' used by {uids.count(u)} dashboards" for u in sorted(set(uids)) if uids.count(u) > 1]
    for b in boards:
        model, name = b.model, b.title
        ids = [p["id"] for p in model.get("panels", [])] + [q["id"] for p in model["panels"] for q in p.get("panels", [])]
        problems += [f"{name}: panel id {i} used twice" for i in sorted(set(ids)) if ids.count(i) > 1]
        declared = {v["name"] for v in model["templating"]["list"]}
        for where, query in _queries(model):
            used = {m.group(1) or m.group(3) or m.group(4) for m in VARIABLE.finditer(query)}
            for var in sorted(used - declared - GRAFANA_VARIABLES):
                problems.append(f"{name}: {where} uses ${var}, which the dashboard does not declare")
            raw = {m.group(1) for m in VARIABLE.finditer(query) if m.group(2) == "raw"}
            for var in sorted((used & declared) - raw - set(AS_REGEX.findall(query))):
                problems.append(f"{name}: {where} uses ${var} other than as =~ /^${var}$/")
        for where, uid in _datasources(model):
            if uid not in provisioned | BUILT_IN_DATASOURCES:
                problems.append(f"{name}: {where} uses data source '{uid}', which is not provisioned")
        problems += [f"{name}: {p}" for p in _round_trip(model)]
    return problems
