"""Entries the system puts on the register from its own evidence (the alert store), and the register's
deadlines sent up the reporting chain. Run by the engine every ``hazards.scan_s`` (:class:`Watch`).

| evidence | entry | setting (default) |
|---|---|---|
| a camera of a public area or the observation room (its ``camera_offline`` alert is major) offline longer than … | 视频监控, **major hazard** (救助管理机构重大事故隐患判定标准) | ``camera_offline_s`` 1 h |
| a ``sensor_fault`` lasting longer than … | 设备维护 | ``sensor_fault_s`` 1 day |
| a sleeping room with a ``cold_room`` alert for ≥ ``cold_night_min_s`` of the night on … nights of one month | 供暖 | 3 nights, 30 min, 22:00–06:00 |
| fewer fire drills (drill alerts of the ``fire`` rule) than … in a month that has ended | 演练 | ``drills_per_month`` 2 |
| a ``gateway_offline`` lasting longer than … | 设备维护 | ``gateway_offline_s`` 1 h |
| one alert kind ≥ … times in one room within … days (dismissed ones too: repeated false alarms are a fault) | by the kind (fire → 消防 …) | 3 in 7 days |

An entry is listed once per piece of evidence, and never twice for one subject (a camera, a room and
alert kind) while an earlier entry about it is not closed.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, time as dtime, timedelta
from typing import Iterator

from stationwatch.core.alert_types import ALERT_TYPES
from stationwatch.core.config import Site, StationConfig
from stationwatch.core.hazards import RULE_CATEGORY, EvidenceRule

from ..records import Alert, Raised
from ..store import Store
from ..verdicts import Clear, Verdict
from .records import Hazard
from .store import Draft, Register

log = logging.getLogger(__name__)
DAY = 86400.0


class Watch:
    """The register's stage of the engine: evidence → entries, deadlines → ``hazard_overdue``."""

    def __init__(self, cfg: StationConfig, store: Store, register: Register):
        self.cfg, self.store, self.register = cfg, store, register
        self.settings = cfg.hazards
        self.next_scan = 0.0

    def since(self, now: float) -> float:
        """When the register started watching (months before it are not judged)."""
        rows = self.store.query("SELECT value FROM memory WHERE ns='register' AND key='since'")
        if rows:
            return float(rows[0]["value"])
        self.store.save_memory({("register", "since"): now})
        return now

    def tick(self, now: float, open_keys: set[tuple[str, str]]) -> list[Verdict]:
        if now < self.next_scan:
            return []
        self.next_scan = now + self.settings.scan_s
        since = self.since(now)
        for draft in self.drafts(now, since):
            hazard = self.register.create(draft, "engine", "system", now=now)
            if hazard.created_at == now and hazard.evidence_key == draft.evidence_key:
                log.warning("hazard %s listed from evidence: %s", hazard.id, draft.description)
        return list(self.deadlines(now, open_keys))

    # ---- evidence
    def drafts(self, now: float, since: float) -> Iterator[Draft]:
        s = self.settings
        recent = now - 40 * DAY
        for a in self._alerts("rule='camera_offline' AND severity IN ('major', 'critical')", recent):
            start, end = offline_span(self.cfg, a, now)
            if end - start > s.camera_offline_s:
                cam = next((c.name for c in self.cfg.cameras if c.id == a.detail.get("device")), a.detail.get("device"))
                yield self._draft(a.site, a.room, "camera", f"camera_offline:{a.id}", f"camera:{a.detail.get('device')}",
                                  f"{cam}离线 {_hours(end - start)}（公共区域或观察室）",
                                  f"camera {a.detail.get('device')} of a public area or the observation room offline"
                                  f" for {_hours_en(end - start)}", now, alert=a.id, start=start, end=end)
        for a in self._alerts("rule='sensor_fault'", recent):
            start, end = a.first_at, condition_end(a, now)
            if end - start > s.sensor_fault_s:
                yield self._draft(a.site, a.room, "sensor_fault", f"sensor_fault:{a.id}", f"sensor:{a.detail.get('device')}",
                                  f"传感器故障超过 {_hours(end - start)}（{a.title_zh}）",
                                  f"sensor faulty for {_hours_en(end - start)}", now, alert=a.id)
        for a in self._alerts("rule='gateway_offline'", recent):
            start, end = a.first_at, condition_end(a, now)
            if end - start > s.gateway_offline_s:
                yield self._draft(a.site, a.room, "gateway", f"gateway_offline:{a.id}", f"gateway:{a.subject}",
                                  f"网关失联 {_hours(end - start)}（{a.title_zh}）",
                                  f"gateway out for {_hours_en(end - start)}", now, alert=a.id)
        yield from self._cold_nights(now)
        yield from self._drills(now, since)
        yield from self._recurring(now)

    def _cold_nights(self, now: float) -> Iterator[Draft]:
        s = self.settings
        for site in self.cfg.sites:
            local = datetime.fromtimestamp(now, site.tz)
            month_start = datetime(local.year, local.month, 1, tzinfo=site.tz)
            nights: dict[str, set[date]] = {}
            for a in self._alerts("rule='cold_room' AND site=?", month_start.timestamp() - DAY, (site.id,)):
                room = site.room(a.room) if a.room else None
                if room is None or not room.people_sleep:
                    continue
                for night in cold_nights(site, a.first_at, condition_end(a, now), s.night_start, s.night_end, s.cold_night_min_s):
                    if (night.year, night.month) == (local.year, local.month):
                        nights.setdefault(room.id, set()).add(night)
            for room_id, found in nights.items():
                if len(found) >= s.cold_nights:
                    month = f"{local:%Y-%m}"
                    days = "、".join(f"{d.day}日" for d in sorted(found))
                    yield self._draft(site.id, room_id, "cold_nights", f"cold_nights:{site.id}/{room_id}:{month}",
                                      f"cold_nights:{site.id}/{room_id}", f"睡眠房间 {len(found)} 个夜间室温低于"
                                      f" {s.sleeping_min_c:g} °C（{month}：{days}）", f"sleeping room below "
                                      f"{s.sleeping_min_c:g} °C on {len(found)} nights of {month}", now,
                                      nights=[d.isoformat() for d in sorted(found)])

    def _drills(self, now: float, since: float) -> Iterator[Draft]:
        need = self.settings.drills_per_month
        for site in self.cfg.sites:
            start, end = previous_month(now, site)
            if since > start.timestamp() + DAY or need == 0:
                continue  # the register was not watching that month
            held = self.store.query("SELECT COUNT(*) n FROM alerts WHERE site=? AND rule='fire' AND drill=1 AND"
                                    " first_at>=? AND first_at<?", (site.id, start.timestamp(), end.timestamp()))[0]["n"]
            if held < need:
                month = f"{start:%Y-%m}"
                yield self._draft(site.id, None, "drills", f"drills:{site.id}:{month}", f"drills:{site.id}:{month}",
                                  f"{month} 仅进行 {held} 次消防演练，少于每月 {need} 次",
                                  f"{held} fire drill(s) in {month}, fewer than {need} a month", now,
                                  month=month, held=held, required=need)

    def _recurring(self, now: float) -> Iterator[Draft]:
        s = self.settings
        for row in self.store.query(
                "SELECT site, room, rule, COUNT(*) n, MAX(id) last FROM alerts WHERE drill=0 AND room IS NOT NULL"
                " AND rule!='hazard_overdue' AND first_at>=? GROUP BY site, room, rule HAVING COUNT(*)>=?",
                (now - s.recurring_window_days * DAY, s.recurring_count)):
            site = self.cfg.site(row["site"])
            room = site.room(row["room"]) if site else None
            kind = ALERT_TYPES.get(row["rule"])
            if room is None or kind is None:
                continue
            category = RULE_CATEGORY.get(row["rule"], "maintenance")
            yield self._draft(site.id, room.id, "recurring", f"recurring:{site.id}/{room.id}/{row['rule']}:{row['last']}",
                              f"recurring:{site.id}/{room.id}/{row['rule']}",
                              f"{room.name}“{kind.zh}”告警 {s.recurring_window_days:g} 天内反复出现 {row['n']} 次",
                              f"'{kind.en}' alerts {row['n']} times in {s.recurring_window_days:g} days in this room",
                              now, category=category, kind=row["rule"], count=row["n"])

    def _alerts(self, where: str, since: float, args: tuple = ()) -> list[Alert]:
        return [Alert.from_row(r) for r in self.store.query(
            f"SELECT * FROM alerts WHERE {where} AND drill=0 AND state!='dismissed' AND (first_at>=? OR"
            " state IN ('pending', 'firing', 'acknowledged')) ORDER BY id", (*args, since))]

    def _draft(self, site_id: str, room: str | None, rule_name: str, key: str, subject: str, zh: str, en: str,
               now: float, category: str | None = None, **evidence) -> Draft:
        rule: EvidenceRule = self.settings.rule(rule_name)
        if rule.major:
            zh += "（重大事故隐患）"
            en += " (major hazard)"
        return Draft(site_id, room, category or rule.category, f"{zh} / {en}", now + rule.deadline_days * DAY, rule.path,
                     rule.standard, responsible(self.cfg, site_id), source="system", major=rule.major,
                     evidence={"rule": rule_name, **evidence}, evidence_key=key, evidence_subject=subject)

    # ---- deadlines
    def deadlines(self, now: float, open_keys: set[tuple[str, str]]) -> Iterator[Verdict]:
        """An entry that has just become overdue raises ``hazard_overdue`` once (the chain climbs as for an
        unacknowledged alert; a person who closes that alert is not paged again); an entry submitted, or
        given a later deadline, clears it."""
        with self.store.tx() as db:
            for hazard in self.register.list(overdue=True, now=now):
                if hazard.overdue_at is None:
                    self.register.mark_overdue(db, hazard, now)
                    yield overdue_alert(self.cfg, hazard)
        for hazard in self.register.list(overdue=False, now=now):
            key = ("hazard_overdue", hazard_subject(hazard))
            if key in open_keys:
                yield Clear(*key, now, "已提交验收或延期 / submitted, or the deadline moved")


def hazard_subject(hazard: Hazard) -> str:
    return f"{hazard.site}/hazard/{hazard.id}"


def overdue_alert(cfg: StationConfig, hazard: Hazard) -> Raised:
    site = cfg.site(hazard.site)
    room = site.room(hazard.room) if site and hazard.room else None
    where = f"{site.name if site else hazard.site}{' ' + room.name if room else ''}"
    deadline = datetime.fromtimestamp(hazard.deadline_at, site.tz if site else None)
    text = hazard.description.split(" / ")[0]
    return Raised("hazard_overdue", hazard_subject(hazard), "major", hazard.site, hazard.room,
                  room.fire_zone if room else None,
                  f"隐患整改逾期：{where} #{hazard.id} {text}（整改时限 {deadline:%Y-%m-%d %H:%M}，责任人 {hazard.responsible}）",
                  f"Hazard #{hazard.id} overdue at {where} (deadline {deadline:%Y-%m-%d %H:%M}, {hazard.responsible})",
                  {"hazard": hazard.id, "deadline_at": hazard.deadline_at, "responsible": hazard.responsible},
                  hazard.deadline_at)


def responsible(cfg: StationConfig, site_id: str) -> str:
    """Who answers for a system entry: the site's first leader contact, else the head of the site."""
    leader = next((c for c in cfg.contacts if c.role == "leader" and site_id in c.sites), None)
    return leader.name if leader else "站点负责人 / head of the site"


def offline_span(cfg: StationConfig, alert: Alert, now: float) -> tuple[float, float]:
    """When a camera went offline (its first failed probe, or its last heartbeat) and came back."""
    cam = next((c for c in cfg.cameras if c.id == alert.detail.get("device")), None)
    if alert.detail.get("reason") == "silent":
        start = alert.first_at - float(alert.detail.get("silent_s") or 0)
    else:
        start = alert.first_at - ((cam.misses - 1) * cam.heartbeat_s if cam else 0)
    return start, condition_end(alert, now)


def condition_end(alert: Alert, now: float) -> float:
    """When the condition ended: the time of the message that cleared it, else the resolution, else now."""
    if alert.detail.get("cleared_at") and alert.state in ("resolved", "pending", "firing", "acknowledged"):
        return float(alert.detail["cleared_at"])
    return alert.resolved_at or now


def cold_nights(site: Site, start: float, end: float, night_start: str, night_end: str,
                min_s: float) -> list[date]:
    """The nights (by the date they begin) that ``[start, end]`` covers for at least ``min_s``."""
    ns, ne = dtime.fromisoformat(night_start), dtime.fromisoformat(night_end)
    day = datetime.fromtimestamp(start, site.tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end, site.tz).date()
    out = []
    while day <= last:
        a = datetime.combine(day, ns, site.tz).timestamp()
        b = datetime.combine(day + timedelta(days=1) if ne <= ns else day, ne, site.tz).timestamp()
        if min(b, end) - max(a, start) >= min_s:
            out.append(day)
        day += timedelta(days=1)
    return out


def previous_month(now: float, site: Site) -> tuple[datetime, datetime]:
    local = datetime.fromtimestamp(now, site.tz)
    end = datetime(local.year, local.month, 1, tzinfo=site.tz)
    start = (end - timedelta(days=1)).replace(day=1)
    return start, end


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} 小时"


def _hours_en(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"
