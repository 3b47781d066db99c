"""城市总览 — the city overview (``$bureau``): every site of the city side by side, for the bureau's
duty officer — open alerts by severity, camera availability, sleeping rooms below the minimum now,
the age of each gateway's last message (a silent gateway stands out) and drills this month."""
from __future__ import annotations

from .panels import GREEN, ORANGE, RED, YELLOW, PanelSpec, Row, Target
from .scope import CityScope, regex

SITES = '"site" =~ /^$site$/'


def city_rows(scope: CityScope) -> list[Row]:
    r = scope.cfg.rules
    sleeping = scope.sensors("temperature", sleeping=True)
    stale = r.sensor_stale_s
    fastest = min((s.interval_s for s in scope.sensors(*{s.kind for s in scope.cfg.sensors})), default=10.0)
    sites = scope.site_names()
    gateways = {g.id: f"{g.name} {g.id}" for g in scope.gateways()}
    severities = ('last("critical") AS "严重 critical", last("pre_alarm") AS "预警 pre-alarm", '
                  'last("major") AS "重要 major", last("warning") AS "一般 warning"')
    cold = ('SELECT count("last") FROM (SELECT last("value") FROM "raw"."reading" WHERE ' + SITES +
            f' AND "kind" = \'temperature\' AND "sensor" =~ /^{regex(s.id for s in sleeping)}$/ AND time > now() - 10m'
            f' GROUP BY "site", "sensor") WHERE "last" < {r.sleeping_room_min_c:g} GROUP BY "site"') if sleeping else ""
    panels = [
        PanelSpec("未关闭告警（按级别）/ Open alerts by severity", "timeseries",
                  (Target(f'SELECT {severities} FROM "raw"."alert_open" WHERE {SITES} AND $timeFilter '
                          'GROUP BY time($__interval), "site" fill(previous)', "$tag_site $col"),),
                  width=24, height=8, decimals=0,
                  description="各站点告警中、已确认、待定的告警数（演练另计）/ firing, acknowledged and pending "
                              "alerts per site (drills apart)"),
        PanelSpec("摄像机在线率 / Camera availability", "stat",
                  (Target(f'SELECT mean("up") * 100 FROM "raw"."heartbeat" WHERE {SITES} AND $timeFilter GROUP BY "site"',
                          "$tag_site"),), width=8, height=6, unit="percent", decimals=1, names=sites,
                  thresholds=((None, RED), (95.0, ORANGE), (99.5, GREEN))),
        PanelSpec(f"住宿房间低于 {r.sleeping_room_min_c:g} °C（当前）/ Sleeping rooms below {r.sleeping_room_min_c:g} °C now",
                  "stat", (Target(cold, "$tag_site"),), width=8, height=6, names=sites, decimals=0,
                  thresholds=((None, GREEN), (1.0, RED)),
                  description="最近 10 分钟内最后一次读数低于下限的住宿房间数 / sleeping rooms whose last reading "
                              "(last 10 min) is below the minimum") if sleeping else None,
        PanelSpec("网关最后上报距今 / Age of each gateway's last message", "stat",
                  (Target('SELECT min("age_s") FROM (SELECT last("age_s") AS "age_s" FROM "raw"."gateway_age" WHERE '
                          f'{SITES} AND $timeFilter GROUP BY "gateway", "instance") GROUP BY "gateway"', "$tag_gateway"),), width=8, height=6, unit="s", decimals=0, names=gateways,
                  thresholds=((None, GREEN), (2 * fastest, YELLOW), (stale, RED)),
                  description=f"超过 {stale:g} 秒未收到任何消息：网关或其网络失联（多个入库进程取最近者）/ nothing "
                              f"for {stale:g} s: the gateway or its network is down (the youngest of the ingest processes)"),
        PanelSpec("本月演练 / Drills this month", "stat",
                  (Target(f'SELECT last("drills_month") FROM "raw"."alert_open" WHERE {SITES} AND $timeFilter GROUP BY "site"',
                          "$tag_site"),), width=12, height=6, decimals=0, names=sites,
                  thresholds=((None, ORANGE), (2.0, GREEN)),
                  description="每站每月至少两次模拟火警演练（GB 26875）/ at least two fire drills a month per site"),
        PanelSpec("本月超时未确认 / Missed deadlines this month", "stat",
                  (Target(f'SELECT last("breaches_month") FROM "raw"."alert_open" WHERE {SITES} AND $timeFilter '
                          'GROUP BY "site"', "$tag_site"),), width=12, height=6, decimals=0, names=sites,
                  thresholds=((None, GREEN), (1.0, RED))),
    ]
    return [Row("各站点 Sites of the city", tuple(p for p in panels if p is not None))]
