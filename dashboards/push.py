"""`stationwatch dashboards push --grafana URL`: upload the data source, the folders and the
dashboards through Grafana's HTTP API with ``grafana-client``.

Idempotent by uid: a folder or data source that exists is updated in place, a dashboard whose
stored JSON equals ours is left alone (no new version), any other is saved over its uid. The token
comes from the environment (``STATIONWATCH_GRAFANA_TOKEN``: a service account token with the
Editor role; never a command-line argument, which other users of the machine can read).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .boards import Board
from .provisioning import InfluxTarget, datasource_v1

TOKEN_ENV = "STATIONWATCH_GRAFANA_TOKEN"
MESSAGE = "stationwatch dashboards push"


class PushError(Exception):
    """Grafana cannot be reached or refused us; the message says what to do."""


@dataclass
class Pushed:
    datasource: str = ""
    folders: list[str] = field(default_factory=list)  # "created …" / "kept …"
    dashboards: list[tuple[str, str, int]] = field(default_factory=list)  # (uid, what happened, version)

    def lines(self) -> list[str]:
        out = [f"数据源 data source: {self.datasource}"] if self.datasource else []
        out += [f"文件夹 folder: {f}" for f in self.folders]
        out += [f"看板 dashboard {uid}: {what}, version {version}" for uid, what, version in self.dashboards]
        return out


def _explain(url: str, exc: Exception) -> PushError:
    from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError
    if isinstance(exc, GrafanaUnauthorizedError):
        return PushError(f"Grafana {url} 拒绝了令牌 / refused the token (401): set {TOKEN_ENV} to a valid service "
                         "account token (Editor role)")
    if isinstance(exc, GrafanaClientError) and exc.status_code == 403:
        return PushError(f"Grafana {url}: 令牌权限不足 / the token may not do this (403): give its service account "
                         "the Editor role")
    if isinstance(exc, GrafanaException):
        return PushError(f"Grafana {url} answered {exc.status_code or 'an error'}: {exc.message}")
    return PushError(f"无法连接 Grafana / cannot reach Grafana at {url}: {exc}")


def _missing(exc: Exception) -> bool:
    from grafana_client.client import GrafanaClientError
    return isinstance(exc, GrafanaClientError) and exc.status_code == 404


def _same(stored: dict[str, Any], ours: dict[str, Any]) -> bool:
    drop = {"id", "version"}
    return {k: v for k, v in stored.items() if k not in drop} == {k: v for k, v in ours.items() if k not in drop}


class Publisher:
    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0):
        from grafana_client import GrafanaApi
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        if not token:
            raise PushError(f"no token: set {TOKEN_ENV} to a Grafana service account token (Editor role) / 请设置令牌")
        if not url.startswith(("http://", "https://")):
            raise PushError(f"--grafana '{url}' is not an http:// or https:// URL / Grafana 地址应以 http:// 开头")
        self.url = url
        self.api = GrafanaApi.from_url(url, credential=token, timeout=timeout)

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 — every failure becomes one message a user can act on
            if _missing(exc):
                return None
            raise _explain(self.url, exc) from None

    def datasource(self, target: InfluxTarget) -> str:
        ds = datasource_v1(target)["datasources"][0]
        ds = {k: v for k, v in ds.items() if k not in ("editable", "secureJsonData")}
        if target.user:
            ds["secureJsonData"] = {"password": os.environ.get("STATIONWATCH_INFLUX_PASSWORD", "")}
        if self._call(self.api.datasource.get_datasource_by_uid, ds["uid"]) is None:
            self._call(self.api.datasource.create_datasource, ds)
            return f"created {ds['uid']} → {target.url}"
        self._call(self.api.datasource.update_datasource_by_uid, ds["uid"], ds)
        return f"updated {ds['uid']} → {target.url}"

    def folder(self, uid: str, title: str) -> str:
        found = self._call(self.api.folder.get_folder, uid)
        if found is None:
            self._call(self.api.folder.create_folder, title, uid)
            return f"created {uid} ({title})"
        if found.get("title") != title:
            self._call(self.api.folder.update_folder, uid, title, None, True)
            return f"renamed {uid} ({title})"
        return f"kept {uid} ({title})"

    def dashboard(self, board: Board) -> tuple[str, str, int]:
        found = self._call(self.api.dashboard.get_dashboard, board.uid)
        if found is not None and _same(found.get("dashboard", {}), board.model) \
                and found.get("meta", {}).get("folderUid") == board.folder_uid:
            return board.uid, "unchanged", int(found["dashboard"].get("version", 0))
        answer = self._call(self.api.dashboard.update_dashboard, {
            "dashboard": {**board.model, "id": None}, "folderUid": board.folder_uid, "overwrite": True,
            "message": MESSAGE})
        return board.uid, "created" if found is None else "updated", int(answer.get("version", 0))


def push(url: str, boards: list[Board], target: InfluxTarget | None = None, token: str | None = None) -> Pushed:
    """Upload ``boards`` (and the data source, when ``target`` is given) to the Grafana at ``url``."""
    publisher, done = Publisher(url, token), Pushed()
    if target is not None:
        done.datasource = publisher.datasource(target)
    folders: dict[str, str] = {}
    for b in boards:
        folders.setdefault(b.folder_uid, b.folder_title)
    done.folders = [publisher.folder(uid, title) for uid, title in folders.items()]
    done.dashboards = [publisher.dashboard(b) for b in boards]
    return done
