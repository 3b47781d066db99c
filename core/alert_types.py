"""The tables every part of the alert service shares: severities, lifecycle states and the kinds of
alert the rules raise (with how each one ends).

Adding a kind of alert = one row in :data:`ALERT_TYPES` and a rule that raises it (rules.py).

>>> SEVERITIES["critical"].rank > SEVERITIES["warning"].rank
True
>>> ALERT_TYPES["fire"].auto_resolve, ALERT_TYPES["cold_room"].follows
(False, True)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Severity:
    name: str
    rank: int  # higher is worse
    zh: str
    en: str
    notify_type: str  # apprise's notice type: the colour/icon on channels that show one


SEVERITIES: dict[str, Severity] = {s.name: s for s in (
    Severity("critical", 4, "严重", "critical", "failure"),
    Severity("pre_alarm", 3, "预警（需人工复核）", "pre-alarm (check in person)", "failure"),
    Severity("major", 2, "重要", "major", "warning"),
    Severity("warning", 1, "一般", "warning", "warning"),
)}


@dataclass(frozen=True)
class State:
    name: str
    zh: str
    en: str
    active: bool  # the condition (or the need for a person) is still there


STATES: dict[str, State] = {s.name: s for s in (
    State("pending", "待定（未达持续时间）", "pending (not held long enough yet)", True),
    State("firing", "告警中", "firing", True),
    State("acknowledged", "已确认", "acknowledged", True),
    State("resolved", "已解除", "resolved", False),
    State("dismissed", "误报已排除", "dismissed (false alarm)", False),
)}
ACTIVE_STATES = tuple(s.name for s in STATES.values() if s.active)
CLOSED_STATES = tuple(s.name for s in STATES.values() if not s.active)


@dataclass(frozen=True)
class AlertType:
    name: str
    zh: str
    en: str
    auto_resolve: bool = True  # False: only a person closes it (a fire needs someone on site)
    follows: bool = False  # severity follows the condition down as well as up


ALERT_TYPES: dict[str, AlertType] = {k.name: k for k in (
    AlertType("fire", "火警", "fire", auto_resolve=False),
    AlertType("night_exit", "夜间出口门打开", "exit door opened at night", auto_resolve=False),
    AlertType("door_held_open", "门长时间未关", "door held open"),
    AlertType("sensor_fault", "传感器故障", "sensor fault"),
    AlertType("camera_offline", "摄像机离线", "camera offline"),
    AlertType("gateway_offline", "网关失联", "gateway lost"),
    AlertType("cold_room", "室温过低", "room too cold", follows=True),
    AlertType("hot_room", "室温过高", "room too hot", follows=True),
    AlertType("supply_cold", "供暖供水温度过低", "heating supply water too cold", follows=True),
    AlertType("boiler_fault", "锅炉故障", "boiler fault"),
    AlertType("gateway_health", "网关需检修", "gateway needs maintenance"),  # alerts/gateway_health.py
    AlertType("pump_stopped", "循环泵停运", "circulation pump stopped"),
    AlertType("pressure_low", "供暖系统水压过低", "heating water pressure low"),
    AlertType("pipeline_silent", "监测链路中断", "monitoring pipeline silent"),  # alerts/supervision.py
    AlertType("gateway_patrol", "网关巡检异常", "gateway patrol finding"),  # alerts/patrol.py
    AlertType("hazard_overdue", "隐患整改逾期", "hazard rectification overdue"),  # alerts/register/
)}
