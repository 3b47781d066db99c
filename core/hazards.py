"""The hazard register (问题清单) and the monthly report in the organisation config: the categories of
hazard, the thresholds at which the system puts an entry on the register from its own evidence, and
when and where the monthly reports are made (``hazards:``, ``reports:``).

Read by ``alerts/register/`` (entries, their rectification deadlines, the evidence rules) and
``alerts/reports/`` (the monthly report). Every default and its source: docs/config.md.

>>> HazardSettings().drills_per_month, HazardSettings().rule("camera").deadline_days
(2, 3.0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from .fields import Model
from .policy import HHMM

Days = Annotated[float, Field(gt=0, le=365)]
Seconds = Annotated[float, Field(gt=0)]


@dataclass(frozen=True)
class Term:
    """A word of the register with its Chinese and English: a category here, a status in alerts/register."""
    name: str
    zh: str
    en: str


Category = Term


# 安全隐患排查: the kinds of problem a station lists (fire safety, heating, pipes and wiring …)
CATEGORIES: dict[str, Category] = {c.name: c for c in (
    Category("fire", "消防", "fire safety"),
    Category("heating", "供暖", "heating"),
    Category("video", "视频监控", "video surveillance"),
    Category("electrical", "电气", "electrical"),
    Category("access", "门禁", "doors and exits"),
    Category("maintenance", "设备维护", "equipment maintenance"),
    Category("drill", "演练", "drills"),
    Category("other", "其他", "other"),
)}

# the category of an alert kind, for entries raised because an alert kind keeps recurring in one room
RULE_CATEGORY = {"fire": "fire", "night_exit": "access", "door_held_open": "access", "camera_offline": "video",
                 "cold_room": "heating", "hot_room": "heating", "supply_cold": "heating", "boiler_fault": "heating",
                 "pump_stopped": "heating", "pressure_low": "heating"}


class EvidenceRule(Model):
    """How an entry the system raises is to be rectified: by when, how, and to what standard."""
    category: str
    major: bool = False  # 重大事故隐患 (救助管理机构重大事故隐患判定标准)
    deadline_days: Days
    path: Annotated[str, Field(min_length=1)]  # 整改路径
    standard: Annotated[str, Field(min_length=1)]  # 整改标准


def _rule(category: str, days: float, path: str, standard: str, major: bool = False) -> EvidenceRule:
    return EvidenceRule(category=category, major=major, deadline_days=days, path=path, standard=standard)


DEFAULT_EVIDENCE: dict[str, EvidenceRule] = {
    "camera": _rule("video", 3, "检修或更换摄像机及其供电、网络 / repair or replace the camera, its power and network",
                    "公共区域和观察室监控画面连续正常 7 天 / the camera answers every probe for 7 days", major=True),
    "sensor_fault": _rule("maintenance", 7, "检修或更换传感器及接线 / repair or replace the sensor and its wiring",
                          "传感器恢复正常并连续 7 天无故障 / the sensor reads normally for 7 days"),
    "cold_nights": _rule("heating", 2, "检修供暖设施，必要时加装取暖设备 / repair the heating, add heaters if needed",
                         "睡眠房间夜间室温不低于 18 °C / sleeping rooms ≥ 18 °C at night (GB/T 33833 §5.1)"),
    "drills": _rule("drill", 15, "补足本月消防演练并在系统中标记为演练 / hold the missing fire drills, marked as drills",
                    "每月不少于 2 次模拟火警演练 / at least 2 simulated fire alarms a month"),
    "gateway": _rule("maintenance", 3, "检查网关供电、网络和存储卡 / check the gateway's power, network and SD card",
                     "网关连续 7 天在线 / the gateway stays online for 7 days"),
    "recurring": _rule("maintenance", 7, "查明反复告警的原因并处置 / find and remove the cause of the repeated alerts",
                       "同类告警 30 天内不再反复出现 / the alert does not recur for 30 days"),
}


class HazardSettings(Model):
    """Thresholds at which the system raises a register entry from its own evidence, each with its source
    in docs/config.md, and how each kind of entry is to be rectified (``evidence``)."""
    # 救助管理机构重大事故隐患判定标准: monitoring of public areas and the observation room that does not run
    # is a major hazard. The standard gives no duration; an hour is past a camera reboot or a network blip and
    # inside one duty shift, so a dead camera is on the register before the shift that saw it ends.
    camera_offline_s: Seconds = 3600.0
    sensor_fault_s: Seconds = 86400.0  # a sensor faulty for more than a day is a repair job, not a blip
    sleeping_min_c: float = 18.0  # GB/T 33833 §5.1; GB 50736 (as rules.sleeping_room_min_c)
    cold_nights: Annotated[int, Field(ge=1, le=31)] = 3  # nights of the heating season a room was below it
    cold_night_min_s: Seconds = 1800.0  # below it at least this long in one night (as rules.cold_for_s)
    night_start: HHMM = "22:00"
    night_end: HHMM = "06:00"
    drills_per_month: Annotated[int, Field(ge=0, le=31)] = 2  # GB 26875 practice: ≥ 2 simulated fire alarms
    gateway_offline_s: Seconds = 3600.0  # a site unwatched for an hour (its local alarm still sounds)
    recurring_count: Annotated[int, Field(ge=2, le=100)] = 3  # one alert kind this often in one room …
    recurring_window_days: Days = 7.0  # … within this many days
    scan_s: Seconds = 300.0  # how often the engine looks at its evidence and at deadlines
    evidence: dict[str, EvidenceRule] = {}  # per evidence rule (camera, sensor_fault …): replaces the default

    def rule(self, name: str) -> EvidenceRule:
        return self.evidence.get(name) or DEFAULT_EVIDENCE[name]


class ReportSettings(Model):
    """The monthly report: made by the report service on the 1st of each month for the month before."""
    archive_dir: str = "reports"  # relative paths: beside the alert store
    run_at: HHMM = "01:00"  # site local time on the 1st: after the last night of the month has ended
    formats: list[str] = ["pdf", "xlsx"]
    language: str = "zh"  # zh: Chinese first, English below; en: English first


def hazard_problems(cfg) -> list[tuple[str, str]]:
    """(path, message) for hazard and report settings that cannot work."""
    out = []
    for name, rule in cfg.hazards.evidence.items():
        if name not in DEFAULT_EVIDENCE:
            out.append((f"hazards.evidence.{name}", f"no evidence rule '{name}' / 没有该规则; known: "
                        + ", ".join(DEFAULT_EVIDENCE)))
        if rule.category not in CATEGORIES:
            out.append((f"hazards.evidence.{name}.category", f"no category '{rule.category}' / 类别不存在"))
    for i, fmt in enumerate(cfg.reports.formats):
        if fmt not in ("pdf", "xlsx"):
            out.append((f"reports.formats[{i}]", f"unknown format '{fmt}' (pdf, xlsx)"))
    if cfg.reports.language not in ("zh", "en"):
        out.append(("reports.language", "zh or en"))
    return out
