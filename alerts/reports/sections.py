"""The report as sections of tables and charts, built once from the figures and drawn by both the PDF
and the XLSX renderer — so the two formats cannot disagree. Every label is Chinese and English
(:class:`L`); the report's language says which comes first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stationwatch.core.alert_types import ALERT_TYPES, SEVERITIES
from stationwatch.core.hazards import CATEGORIES

from ..register.records import OVERDUE, STATUSES
from ..supervision import HOP_NAMES
from .figures import SiteFigures


@dataclass(frozen=True)
class L:
    zh: str
    en: str

    def text(self, lang: str = "zh", sep: str = " / ") -> str:
        return f"{self.zh}{sep}{self.en}" if lang == "zh" else f"{self.en}{sep}{self.zh}"


@dataclass
class Chart:
    title: L
    labels: list[str]
    values: list[float]
    unit: str
    limit: float | None = None  # a rule's line (2 drills, 100 % …)


@dataclass
class Table:
    columns: list[L]
    rows: list[list[Any]]
    name: str = ""  # the XLSX sheet's name (short, unique); empty: on the section's sheet
    widths: list[float] | None = None  # PDF column weights


@dataclass
class Section:
    key: str  # the sheet name in the XLSX
    title: L
    lines: list[str] = field(default_factory=list)  # sentences above the tables
    tables: list[Table] = field(default_factory=list)
    chart: Chart | None = None


SEVERITY_ORDER = ("critical", "pre_alarm", "major", "warning")
REASONS = {"deadline": L("确认超时", "ack deadline missed"), "undeliverable": L("无法送达", "undeliverable"),
           "rectification": L("整改逾期", "rectification overdue")}
OUTCOMES = {"confirmed": L("已确认走失", "confirmed missing"), "dismissed": L("误报", "false alarm"),
            "resolved": L("已处置", "handled"), "firing": L("未处理", "open"), "acknowledged": L("处理中", "acknowledged"),
            "": L("无告警", "no alert")}


def kind(rule: str) -> str:
    k = ALERT_TYPES.get(rule)
    return f"{k.zh} {k.en}" if k else rule


def minutes(seconds: float | None) -> float | str:
    return "" if seconds is None else round(seconds / 60, 1)


def local(t: float | None, tz, fmt: str = "%m-%d %H:%M") -> str:
    return "" if t is None else datetime.fromtimestamp(t, tz).strftime(fmt)


def pct(x: float) -> float:
    return round(100 * x, 2)


def site_sections(f: SiteFigures, lang: str = "zh") -> list[Section]:
    tz = f.site.tz
    at = lambda t: local(t, tz)  # noqa: E731
    held, need = len(f.drills), f.drills_required
    cold_h = sum(h.trend.below for h in f.heating) / 60
    worst = min((c.availability for c in f.cameras), default=1.0)
    rc = f.register_counts
    summary = Section("概要", L("本月概要", "The month at a glance"), [
        f"{f.site.name}（{f.site.id}）· {f.month.label} · {L('统计至', 'counted to').text(lang, ' ')} {local(f.until, tz, '%Y-%m-%d %H:%M')}"],
        [Table([L("项目", "item"), L("数值", "value")], [
            [L("告警总数（不含演练）", "alarms (drills apart)").text(lang), f.alarms_total],
            [L("复核确认", "confirmed on review").text(lang), f.review["confirmed"]],
            [L("误报排除", "dismissed as false alarms").text(lang), f.review["dismissed"]],
            [L("超时未确认（违时）", "deadlines missed (breaches)").text(lang), len(f.breaches)],
            [L("消防演练（次/应达）", "fire drills held / required").text(lang), f"{held}/{need}"],
            [L("摄像机最低可用率 %", "lowest camera availability %").text(lang), pct(worst)],
            [L(f"睡眠房间低于 {f.heating_threshold:g} °C 小时数", f"hours below {f.heating_threshold:g} °C in sleeping rooms").text(lang), round(cold_h, 1)],
            [L("夜间出口门打开次数", "exit doors opened at night").text(lang), sum(n for _, n in f.night_openings.values())],
            [L("夜间出口告警", "night-exit alerts").text(lang), len(f.night_exits)],
            [L("网关中断分钟", "gateway outage minutes").text(lang), minutes(sum(g.span.seconds for g in f.gateways))],
            [L("监测中心自身中断分钟", "minutes the centre itself was blind").text(lang),
             minutes(sum(c.span.seconds for c in f.centre))],
            [L("隐患：新增/销号/逾期/月末未销号", "hazards: new / closed / overdue / open at month end").text(lang),
             f"{rc['new']}/{rc['closed']}/{rc['overdue']}/{rc['open']}"],
        ], widths=[3, 1])])
    rules = sorted({r for r, _ in f.alarms}, key=lambda r: -sum(n for (x, _), n in f.alarms.items() if x == r))
    alarms = Section("告警", L("告警按类型与级别", "Alarms by kind and severity"), [], [Table(
        [L("告警类型", "kind")] + [L(SEVERITIES[s].zh.split("（")[0], SEVERITIES[s].en.split(" (")[0]) for s in SEVERITY_ORDER]
        + [L("合计", "total")],
        [[kind(r)] + [f.alarms[(r, s)] for s in SEVERITY_ORDER] + [sum(f.alarms[(r, s)] for s in SEVERITY_ORDER)]
         for r in rules] + [[L("合计", "total").text(lang)] + [sum(n for (_, s), n in f.alarms.items() if s == sev)
                                                               for sev in SEVERITY_ORDER] + [f.alarms_total]],
        widths=[3, 1, 1, 1, 1, 1])], Chart(L("告警数量", "alarms"), [kind(r).split(" ")[0] for r in rules],
                                            [sum(n for (x, _), n in f.alarms.items() if x == r) for r in rules], ""))
    if f.detector_alarms:
        alarms.lines.append(L("设备报警信号（按设备类型，含演练）", "alarm signals by device kind, drills included").text(lang) + "："
                            + "，".join(f"{k} {n}" for k, n in sorted(f.detector_alarms.items())))
    review = Section("复核", L("复核：确认与误报", "Review: confirmed and dismissed"), [
        "，".join(f"{L(*w).text(lang, ' ')} {f.review[k]}" for k, w in (
            ("confirmed", ("复核确认", "confirmed")), ("dismissed", ("误报", "dismissed")),
            ("resolved", ("人工处置", "handled")), ("auto", ("自动恢复", "cleared by itself")), ("open", ("未关闭", "open"))))],
        [Table([L("编号", "no."), L("类型", "kind"), L("房间", "room"), L("时间", "time"), L("处理人", "by"),
                L("误报原因", "reason")],
               [[d.alert_id, kind(d.rule), d.room or "", at(d.at), d.by, d.reason] for d in f.dismissals],
               name="误报原因", widths=[0.6, 1.6, 1.2, 1, 1.4, 3])])
    ack = Section("确认时效", L("确认时效与法定时限", "Time to acknowledge against the statutory deadlines"),
                  [L(f"未确认告警 {f.unacknowledged} 条", f"{f.unacknowledged} alert(s) never acknowledged").text(lang)],
                  [Table([L("策略", "policy"), L("确认时所在级别", "level acknowledged at"), L("时限（分）", "deadline min"),
                          L("确认数", "acknowledged"), L("中位（分）", "median min"), L("最长（分）", "max min")],
                         [[a.policy, a.name, minutes(a.deadline_s), a.acknowledged, minutes(a.median_s), minutes(a.max_s)]
                          for a in f.ack_levels], widths=[1, 2.6, 1, 1, 1, 1]),
                   Table([L("告警", "alert"), L("类型", "kind"), L("房间", "room"), L("超时级别", "level missed"),
                          L("时限", "deadline"), L("超时（分）", "late min"), L("原因", "reason")],
                         [[b.alert_id, kind(b.rule), b.room or "", f"L{b.level} {b.level_name}", at(b.due_at),
                           minutes(b.delay_s), REASONS.get(b.reason, L(b.reason, b.reason)).text(lang)]
                          for b in f.breaches], name="违时", widths=[0.6, 1.5, 1.1, 2.4, 1, 0.9, 1.4])])
    drills = Section("演练", L("消防演练", "Fire drills"), [
        L(f"本月演练 {held} 次，每月应不少于 {need} 次：{'达标' if held >= need else '未达标'}",
          f"{held} drill(s) this month against at least {need}: {'met' if held >= need else 'NOT met'}").text(lang)],
        [Table([L("时间", "time"), L("内容", "what")], [[at(d.first_at), d.title_zh] for d in f.drills], widths=[1, 4])],
        Chart(L("演练次数", "drills"), [L("本月", "month").text(lang)], [held], "", limit=need))
    cams = Section("摄像机", L("视频监控：摄像机可用率", "Cameras: availability"), [], [
        Table([L("摄像机", "camera"), L("房间", "room"), L("重点区域", "key area"), L("离线次数", "outages"),
               L("离线分钟", "offline min"), L("可用率 %", "availability %")],
              [[c.name, c.room, "✓" if c.major else "", len(c.spans), minutes(c.offline_s), pct(c.availability)]
               for c in f.cameras], widths=[2, 1.5, 1, 0.8, 1, 1]),
        Table([L("摄像机", "camera"), L("离线开始", "offline from"), L("恢复", "back"), L("分钟", "min")],
              [[c.name, at(s.start), at(s.end), minutes(s.seconds)] for c in f.cameras for s in c.spans],
              name="离线时段", widths=[2, 1, 1, 1])],
        Chart(L("离线分钟", "offline minutes"), [c.name for c in f.cameras if c.spans],
              [c.offline_s / 60 for c in f.cameras if c.spans], "min"))
    heat = Section("供暖", L(f"供暖：睡眠房间室温（{f.heating_threshold:g} °C）", f"Heating: sleeping rooms ({f.heating_threshold:g} °C)"), [], [
        Table([L("房间", "room"), L("传感器", "sensor"), L(f"低于 {f.heating_threshold:g} °C 小时", "hours below"),
               L("最低 °C", "min °C"), L("平均 °C", "mean °C"), L("数据覆盖 %", "data %")],
              [[h.room, h.sensor, round(h.trend.below / 60, 2), "" if h.trend.low is None else round(h.trend.low, 1),
                "" if h.trend.mean is None else round(h.trend.mean, 1), pct(h.coverage)] for h in f.heating],
              widths=[1.6, 1.6, 1, 0.8, 0.8, 0.8]),
        Table([L("类型", "kind"), L("房间", "room"), L("开始", "from"), L("结束", "to"), L("分钟", "min"), L("级别", "severity")],
              [[kind(o.rule), o.room or "", at(o.span.start), at(o.span.end), minutes(o.span.seconds),
                SEVERITIES[o.severity].zh.split("（")[0]] for o in f.heating_outages],
              name="供暖故障", widths=[1.8, 1.2, 1, 1, 0.7, 0.7])],
        Chart(L(f"低于 {f.heating_threshold:g} °C 小时数", "hours below"), [h.room for h in f.heating],
              [h.trend.below / 60 for h in f.heating], "h"))
    if not f.heating[0:1] or not f.heating[0].season_minutes:
        heat.lines.append(L("本月不在供暖期", "no day of this month is in the heating season").text(lang))
    night = Section("夜间出口", L("夜间出口门打开", "Exit doors opened at night"), [], [
        Table([L("出口门", "door"), L("房间", "room"), L("夜间打开次数", "openings at night")],
              [[door, room, n] for door, (room, n) in f.night_openings.items()], widths=[2, 2, 1]),
        Table([L("时间", "time"), L("出口门", "door"), L("房间", "room"), L("告警", "alert"), L("结果", "outcome")],
              [[at(x.at), x.door, x.room or "", x.alert_id or "", OUTCOMES.get(x.outcome, L(x.outcome, x.outcome)).text(lang)]
               for x in f.night_exits], widths=[1, 1.6, 1.2, 0.6, 1.6])])
    gws = Section("网关", L("网关与监测中心中断", "Gateway and centre outages"), [], [
        Table([L("告警", "alert"), L("说明", "what"), L("开始", "from"), L("恢复", "back"), L("分钟", "min")],
              [[g.alert_id, g.title, at(g.span.start), at(g.span.end), minutes(g.span.seconds)] for g in f.gateways],
              widths=[0.6, 3, 1, 1, 0.7]),
        Table([L("监测中心环节", "centre hop"), L("开始", "from"), L("恢复", "back"), L("分钟", "min")],
              [[L(*HOP_NAMES.get(c.hop, (c.hop, c.hop))).text(lang), at(c.span.start), at(c.span.end),
                minutes(c.span.seconds)] for c in f.centre], widths=[3, 1, 1, 0.7])])
    reg = Section("问题清单", L("隐患问题清单", "Hazard register"), [
        L(f"新增 {rc['new']}，销号 {rc['closed']}，逾期 {rc['overdue']}，月末未销号 {rc['open']}（其中重大隐患 {rc['major_open']}）",
          f"new {rc['new']}, closed {rc['closed']}, overdue {rc['overdue']}, open at month end {rc['open']} "
          f"(major {rc['major_open']})").text(lang)],
        [Table([L("编号", "no."), L("类别", "category"), L("房间", "room"), L("问题", "problem"), L("来源", "source"),
                L("整改时限", "deadline"), L("责任人", "responsible"), L("月末状态", "status at month end")],
               [[r.id, CATEGORIES[r.category].zh if r.category in CATEGORIES else r.category, r.room or "",
                 ("【重大】" if r.major else "") + r.description, "系统" if r.source == "system" else "检查",
                 local(r.deadline_at, tz, "%Y-%m-%d %H:%M"), r.responsible,
                 (OVERDUE if r.overdue_at_end else STATUSES[r.status_at_end]).zh] for r in f.register],
               widths=[0.5, 0.8, 1, 4, 0.6, 1.3, 1.2, 0.9])])
    return [summary, alarms, review, ack, drills, cams, heat, night, gws, reg]


def city_sections(name: str, sites: list[SiteFigures], lang: str = "zh") -> list[Section]:
    if not sites:
        return [Section("城市汇总", L("城市汇总", "City summary"), [L("没有站点", "no sites").text(lang)])]
    first = sites[0]
    rows = []
    for f in sites:
        rc = f.register_counts
        rows.append([f.site.name, f.alarms_total, f.review["confirmed"], f.review["dismissed"], len(f.breaches),
                     f"{len(f.drills)}/{f.drills_required}", pct(min((c.availability for c in f.cameras), default=1.0)),
                     round(sum(h.trend.below for h in f.heating) / 60, 1), sum(n for _, n in f.night_openings.values()),
                     minutes(sum(g.span.seconds for g in f.gateways)), rc["new"], rc["closed"], rc["overdue"], rc["open"]])
    totals = [L("合计", "total").text(lang)] + [sum(r[i] for r in rows) if isinstance(rows[0][i], (int, float)) else ""
                                                for i in range(1, len(rows[0]))]
    summary = Section("城市汇总", L(f"{name} 月度汇总", f"{name}: the month by site"), [
        f"{first.month.label} · {len(sites)} {L('个站点', 'sites').text(lang, ' ')}"], [Table(
            [L("站点", "site"), L("告警", "alarms"), L("确认", "confirmed"), L("误报", "dismissed"), L("违时", "breaches"),
             L("演练", "drills"), L("摄像机最低可用率%", "camera min %"), L("低温小时", "cold h"), L("夜间出口", "night exits"),
             L("网关中断分", "gateway min"), L("新增隐患", "new"), L("销号", "closed"), L("逾期", "overdue"),
             L("未销号", "open")], rows + [totals],
            widths=[2, 0.8, 0.8, 0.8, 0.8, 0.8, 1, 0.8, 0.8, 0.9, 0.8, 0.7, 0.7, 0.7])],
        Chart(L("各站点告警数", "alarms by site"), [f.site.name for f in sites], [f.alarms_total for f in sites], ""))
    breaches = Section("违时", L("全部违时记录", "Every breach"), [], [Table(
        [L("站点", "site"), L("告警", "alert"), L("类型", "kind"), L("超时级别", "level missed"), L("时限", "deadline"),
         L("超时（分）", "late min"), L("原因", "reason")],
        [[f.site.name, b.alert_id, kind(b.rule), f"L{b.level} {b.level_name}", local(b.due_at, f.site.tz),
          minutes(b.delay_s), REASONS.get(b.reason, L(b.reason, b.reason)).text(lang)] for f in sites for b in f.breaches],
        widths=[1.6, 0.6, 1.5, 2.2, 1, 0.9, 1.4])])
    open_rows = [[f.site.name, r.id, CATEGORIES[r.category].zh if r.category in CATEGORIES else r.category,
                  ("【重大】" if r.major else "") + r.description, local(r.deadline_at, f.site.tz, "%Y-%m-%d"), r.responsible,
                  (OVERDUE if r.overdue_at_end else STATUSES[r.status_at_end]).zh]
                 for f in sites for r in sorted(f.register, key=lambda r: (not r.major, r.deadline_at))
                 if r.status_at_end != "closed"]
    reg = Section("未销号隐患", L("月末未销号隐患（重大在前）", "Hazards open at month end, major first"), [], [Table(
        [L("站点", "site"), L("编号", "no."), L("类别", "category"), L("问题", "problem"), L("整改时限", "deadline"),
         L("责任人", "responsible"), L("状态", "status")], open_rows, widths=[1.5, 0.5, 0.8, 4, 1, 1.2, 0.8])])
    return [summary, breaches, reg]
