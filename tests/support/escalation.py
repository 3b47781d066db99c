"""The reporting chain the escalation tests run with real processes: every level's deadline
compressed to :data:`ACK_S`, every contact a path on one HTTP receiver."""
from __future__ import annotations

from pathlib import Path

import yaml

from . import EXAMPLES
from .alerts import SITE

ACK_S = 3.0  # every level's deadline, compressed


def chain_yaml(tmp_path: Path, port: int) -> Path:
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    url = lambda path: [f"json://127.0.0.1:{port}/{path}"]  # noqa: E731
    data["contacts"] = [
        {"id": "duty-staff", "name": "值班员", "role": "staff", "sites": [SITE], "channels": url("staff")},
        {"id": "leader", "name": "带班领导", "role": "leader", "sites": [SITE], "channels": url("leader")},
        {"id": "bureau", "name": "市民政局", "role": "bureau", "bureau": "sl-mz", "channels": url("bureau")},
        {"id": "province", "name": "省民政厅", "role": "bureau", "bureau": "gd-mz", "channels": url("province")}]
    level = lambda name, targets, at_once=False: {"name": name, "targets": targets, "ack_s": ACK_S,  # noqa: E731
                                                  "at_once": at_once}
    data["routing"] = {"notify": [], "backoff_s": [0.2], "policies": [{"id": "emergency", "severities": ["critical"],
        "levels": [level("值班人员", ["staff"]), level("带班领导", ["leader"]), level("民政局", ["bureau"], True),
                   level("省厅", ["bureau_up"])]}, {"id": "default", "levels": [
                       {**level("值班人员", ["staff"]), "ack_s": 5 * ACK_S}, level("带班领导", ["leader"])]}]}
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path
