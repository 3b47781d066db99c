"""The notices a person receives: Chinese first, English below — site, room, what, when (site local
time), severity, the level of the reporting chain, and how to acknowledge. Drills are marked on every
line a person might read first (【演练】). A burst over a channel's rate limit becomes one digest.

>>> compose(cfg, alert, "new").title                                   # doctest: +SKIP
'【严重】火警确认：示例市救助管理站 女宿舍一（防火分区 z-dorm-west）2 个探测器报警'
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stationwatch.core.alert_types import SEVERITIES
from stationwatch.core.config import CENTRE, CENTRE_NAME, StationConfig

from .store import Alert


@dataclass(frozen=True)
class NoticeType:
    """Why a person is told: the headline of the notice and how soon it goes out when many are due."""
    name: str
    zh: str
    en: str
    urgency: int  # added to the severity's rank × 10: sent first when many notices are due


NOTICE_TYPES: dict[str, NoticeType] = {n.name: n for n in (
    NoticeType("new", "新告警", "New alert", 3),
    NoticeType("escalated", "告警升级", "Alert escalated", 3),
    NoticeType("escalation", "逾期未确认，已逐级上报", "Not acknowledged in time — escalated to you", 2),
    NoticeType("undeliverable", "下级通知失败，已逐级上报", "Could not reach the level below — escalated to you", 2),
    NoticeType("reminder", "提醒：告警尚未确认", "Reminder: not acknowledged yet", 1),
    NoticeType("recurred", "告警复发", "Alert back", 2),
    NoticeType("flapping", "告警反复出现（抖动），此后的变化不再逐条通知", "Alert flapping — further changes are not notified", 2),
    NoticeType("acknowledged", "告警已确认", "Alert acknowledged", 0),
    NoticeType("resolved", "告警已解除", "Alert resolved", 0),
    NoticeType("dismissed", "告警已排除（误报）", "Alert dismissed (false alarm)", 0),
)}

DRILL_ZH, DRILL_EN = "【演练，非真实告警】", "[DRILL — not a real alarm] "
SMS_CHARS = 200  # an SMS provider splits long texts; the first lines carry what matters


@dataclass(frozen=True)
class Notice:
    title: str
    body: str
    severity: str
    short: str = ""  # one line for SMS

    @property
    def notify_type(self) -> str:
        return SEVERITIES[self.severity].notify_type


def _when(cfg: StationConfig, alert: Alert, at: float) -> tuple[str, str]:
    tz = (cfg.site(alert.site) or cfg.sites[0]).tz  # the centre's own alerts: the time of its city
    return datetime.fromtimestamp(at, tz).strftime("%Y-%m-%d %H:%M:%S"), tz.key


def _place(cfg: StationConfig, alert: Alert) -> tuple[str, str]:
    site = cfg.site(alert.site)
    room = site.room(alert.room) if site and alert.room else None
    return (site.name if site else CENTRE_NAME if alert.site == CENTRE else alert.site), (room.name if room else "—")


def _how_to_ack(cfg: StationConfig, alert: Alert) -> tuple[str, str]:
    url = cfg.routing.board_url
    where_zh = f"值班看板 {url}" if url else "值班看板"
    where_en = f"the duty board {url}" if url else "the duty board"
    return (f"请立即到场复核，在{where_zh}确认告警 #{alert.id}（确认/处置完毕/误报）并记录处置情况。",
            f"Check on site, then acknowledge alert #{alert.id} on {where_en} and record what was done.")


def compose(cfg: StationConfig, alert: Alert, kind: str = "new", level_name: str = "", note: str = "") -> Notice:
    """The notice of ``kind`` (a key of :data:`NOTICE_TYPES`) about ``alert``."""
    sev = SEVERITIES[alert.severity]
    headline = NOTICE_TYPES.get(kind, NOTICE_TYPES["new"])
    head_zh, head_en = headline.zh, headline.en
    drill_zh, drill_en = (DRILL_ZH, DRILL_EN) if alert.drill else ("", "")
    site_name, room_name = _place(cfg, alert)
    when, zone = _when(cfg, alert, alert.first_at)
    ack_zh, ack_en = _how_to_ack(cfg, alert)
    level_zh = [f"上报级别：{level_name}"] if level_name else []
    status = [f"处理人：{alert.acknowledged_by or alert.resolved_by}"] if kind in ("acknowledged", "resolved",
                                                                              "dismissed") else []
    extra = [f"说明：{note}"] if note else []
    closing = [] if kind in ("acknowledged", "resolved", "dismissed") else [f"处置：{ack_zh}"]
    body = "\n".join([
        f"{drill_zh}{head_zh}：{alert.title_zh}",
        f"站点：{site_name}",
        f"房间：{room_name}",
        f"时间：{when}（{zone}）",
        f"级别：{sev.zh}",
        f"告警编号：#{alert.id}",
        *level_zh, *status, *extra, *closing,
        "",
        "----",
        f"{drill_en}{head_en}: {alert.title_en}",
        f"Site: {site_name} / Room: {room_name}",
        f"Time: {when} ({zone})",
        f"Severity: {sev.en}" + (f" / level: {level_name}" if level_name else ""),
        f"Alert id: #{alert.id}" + ("" if closing == [] else f" — {ack_en}"),
    ])
    title = f"{drill_zh}【{sev.zh}】{'' if kind == 'new' else head_zh + '：'}{alert.title_zh}"
    short = f"{drill_zh}【{sev.zh}】{head_zh}：{alert.title_zh} {when[5:16]} #{alert.id}"[:SMS_CHARS]
    return Notice(title, body, alert.severity, short)


def compose_digest(cfg: StationConfig, items: list[tuple[Alert, str]]) -> Notice:
    """One notice for a burst of ``(alert, kind)``: the channel's rate limit would drop the rest."""
    worst = max((a for a, _ in items), key=lambda a: SEVERITIES[a.severity].rank)
    drills = all(a.drill for a, _ in items)
    drill_zh, drill_en = (DRILL_ZH, DRILL_EN) if drills else ("", "")
    lines_zh, lines_en = [], []
    for alert, kind in items:
        site_name, room_name = _place(cfg, alert)
        when, _ = _when(cfg, alert, alert.first_at)
        mark = "【演练】" if alert.drill else ""
        lines_zh.append(f"· #{alert.id} {mark}【{SEVERITIES[alert.severity].zh}】{NOTICE_TYPES[kind].zh}：{alert.title_zh}"
                        f"（{room_name}，{when[5:16]}）")
        lines_en.append(f"· #{alert.id} [{SEVERITIES[alert.severity].en}] {NOTICE_TYPES[kind].en}: {alert.title_en}")
    url = cfg.routing.board_url
    title = f"{drill_zh}【汇总】{len(items)} 条告警通知（最高级别：{SEVERITIES[worst.severity].zh}）"
    body = "\n".join([title, *lines_zh, f"请在值班看板{' ' + url if url else ''}逐条确认处置。", "", "----",
                      f"{drill_en}Digest: {len(items)} alert notices (worst: {SEVERITIES[worst.severity].en})",
                      *lines_en, "Acknowledge each one on the duty board."])
    return Notice(title, body, worst.severity, title[:SMS_CHARS])
