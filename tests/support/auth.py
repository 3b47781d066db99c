"""People of the two-city test world: users of every role with their tokens, and a request as one of them."""
from __future__ import annotations

import yaml

from stationwatch.alerts.auth import token_hash
from stationwatch.core.config import parse_config

from . import EXAMPLES

USERS = {  # id → (role, scope)
    "zhangsan": ("staff", {"sites": ["sl-station"]}),
    "lisi": ("leader", {"sites": ["sl-station"]}),
    "wangwu": ("bureau", {"bureau": "sl-mz"}),
    "sheng": ("bureau", {"bureau": "gd-mz"}),  # the province: every city below it
    "jiandu": ("inspector", {"bureau": "sl-mz"}),
    "admin": ("admin", {}),
    "hystaff": ("staff", {"sites": ["hy-station"]}),  # another city's station
}
TOKENS = {uid: f"token-of-{uid}-0123456789" for uid in USERS}


def two_city_config(environment="production", **api):
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["bureaus"].append({"id": "hy-mz", "name": "河源市民政局", "level": "city", "parent": "gd-mz"})
    data["sites"].append({"id": "hy-station", "name": "河源市救助管理站", "bureau": "hy-mz",
                          "rooms": [{"id": "dorm", "name": "宿舍", "kind": "dormitory"}]})
    data["gateways"].append({"id": "gw-hy", "name": "网关", "site": "hy-station"})
    data["sensors"].append({"id": "smk-hy", "name": "宿舍 感烟", "kind": "smoke", "gateway": "gw-hy", "room": "dorm"})
    data["sensors"].append({"id": "smk-med-obs-b", "name": "医疗观察室 感烟B", "kind": "smoke", "gateway": "gw-sl-main",
                            "room": "med-obs"})  # a second detector in the pre-alarm's zone
    data["users"] = [{"id": uid, "name": uid, "role": role, "token_sha256": token_hash(TOKENS[uid]), **scope}
                     for uid, (role, scope) in USERS.items()]
    data["api"] = {"environment": environment, **api}
    return parse_config(data)


def call(client, user, method, path, json=None):
    headers = {"Authorization": f"Bearer {TOKENS[user]}"} if user else {}
    return client.request(method, path, json=json, headers=headers)
