"""Helpers the broker tests share: a config of two sites, each with a gateway and a smoke detector,
for the generated accounts and ACL (a gateway speaks only for its own site)."""
from __future__ import annotations

TWO_SITES = {
    "name": "two sites",
    "bureaus": [{"id": "city", "name": "市民政局", "level": "city"}],
    "sites": [
        {"id": "site-a", "name": "甲站", "bureau": "city", "rooms": [{"id": "dorm", "name": "宿舍", "kind": "dormitory"}]},
        {"id": "site-b", "name": "乙站", "bureau": "city", "rooms": [{"id": "dorm", "name": "宿舍", "kind": "dormitory"}]},
    ],
    "gateways": [{"id": "gw-a", "name": "A", "site": "site-a"}, {"id": "gw-b", "name": "B", "site": "site-b"}],
    "sensors": [
        {"id": "smk-a", "name": "A 感烟", "kind": "smoke", "gateway": "gw-a", "room": "dorm"},
        {"id": "smk-b", "name": "B 感烟", "kind": "smoke", "gateway": "gw-b", "room": "dorm"},
    ],
}
