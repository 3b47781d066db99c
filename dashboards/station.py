"""站点总览 — the station overview: one site (``$site``) of a city, everything a duty officer
watches in that building, with the alert history as annotations.

Readings come from ``${source:raw}``: raw readings for ranges up to 12 h, 1-minute means beyond
(dashboards/variables.py). Binary signals are the max (alarm, door open) or the min (pump, camera)
of each interval, so a short alarm or a single missed heartbeat is never averaged away.
"""
from __future__ import annotations

from .panels import BLUE, GREEN, ORANGE, RED, YELLOW, PanelSpec, Row, Target
from .scope import CityScope, regex

SITE = '"site" =~ /^$site$/'
ROOM = f'{SITE} AND "room" =~ /^$room$/'
EACH = 'AND $timeFilter GROUP BY time($__interval), "sensor" fill(null)'


def readings(select: str, where: str, kinds: list[str] | tuple[str, ...], sensors: list | None = None) -> str:
    sensor = f' AND "sensor" =~ /^{regex(s.id for s in sensors)}$/' if sensors else ""
    return f'SELECT {select} FROM ${{source:raw}} WHERE {where} AND "kind" =~ /^{regex(kinds)}$/{sensor} {EACH}'


def _present(scope: CityScope, spec: PanelSpec, kinds: tuple[str, ...]) -> list[PanelSpec]:
    return [spec] if scope.sensors(*kinds) else []


def temperature_row(scope: CityScope) -> Row:
    r = scope.cfg.rules
    sleeping, other = scope.sensors("temperature", sleeping=True), scope.sensors("temperature", sleeping=False)
    panels = []
    if sleeping:
        panels.append(PanelSpec(
            "住宿房间室温 / Rooms where people sleep", "timeseries",
            (Target(readings('mean("value")', ROOM, ["temperature"], sleeping), "$tag_sensor"),),
            unit="celsius", names=scope.names(sleeping), decimals=1,
            thresholds=((None, RED), (r.any_room_min_c, ORANGE), (r.sleeping_room_min_c, GREEN), (r.summer_max_c, RED)),
            description=f"供暖季住宿房间不低于 {r.sleeping_room_min_c:g} °C（GB/T 33833），任何房间不低于 "
                        f"{r.any_room_min_c:g} °C（防冻），夏季不高于 {r.summer_max_c:g} °C / heating season ≥ "
                        f"{r.sleeping_room_min_c:g} °C where people sleep, ≥ {r.any_room_min_c:g} °C anywhere, "
                        f"≤ {r.summer_max_c:g} °C in summer"))
    if other:
        panels.append(PanelSpec(
            "其他房间室温 / Other rooms", "timeseries",
            (Target(readings('mean("value")', ROOM, ["temperature"], other), "$tag_sensor"),),
            unit="celsius", names=scope.names(other), decimals=1,
            thresholds=((None, RED), (r.any_room_min_c, GREEN), (r.summer_max_c, RED))))
    return Row("室温 Room temperature", tuple(panels))


def fire_row(scope: CityScope) -> Row:
    contacts = scope.sensors("smoke", "heat_alarm")
    heat = scope.sensors("heat")
    panels = []
    if contacts:
        panels.append(PanelSpec(
            "火灾探测器 / Fire detectors", "state",
            (Target(readings('max("value")', ROOM, ["smoke", "heat_alarm"]), "$tag_sensor"),),
            width=24, height=9, states="alarm", names=scope.names(contacts),
            description="每格取区间内最大值：一次报警不会被平均掉 / the max of each interval: an alarm is never averaged away"))
    if heat:
        threshold = min(s.threshold_c for s in heat)
        panels.append(PanelSpec(
            "感温探测器温度 / Heat detectors", "timeseries",
            (Target(readings('max("value")', ROOM, ["heat"]), "$tag_sensor"),),
            unit="celsius", names=scope.names(heat), thresholds=((None, GREEN), (threshold, RED)),
            description=f"静态报警 {threshold:g} °C（GB 4716 A1）/ static alarm at {threshold:g} °C"))
    return Row("火灾报警 Fire", tuple(panels))


def doors_row(scope: CityScope) -> Row:
    doors = scope.sensors("door")
    exits = [d for d in doors if d.exit]
    night = ('SELECT "title", "actor" FROM "records"."alert" WHERE ' + SITE +
             ' AND "rule" = \'night_exit\' AND "action" = \'raise\' AND $timeFilter')
    panels = [PanelSpec(
        "门磁 / Doors", "state", (Target(readings('max("value")', ROOM, ["door"]), "$tag_sensor"),),
        width=16, height=7, states="door", names=scope.names(doors),
        description=f"出口门：{', '.join(d.name for d in exits) or '无'}；夜间开启见右表与红色标注 / "
                    "exits opened at night: the table and the red marks")] if doors else []
    if exits:
        panels.append(PanelSpec("夜间出口门开启 / Exits opened at night", "table", (Target(night, table=True),),
                                width=8, height=7,
                                description=f"{scope.cfg.rules.night_start}–{scope.cfg.rules.night_end}（站点当地时间）"
                                            " 出口门打开：可能有人走失 / possibly a resident leaving"))
    return Row("出入口 Exits and doors", tuple(panels))


def camera_row(scope: CityScope) -> Row:
    cams = scope.cameras()
    q = ('SELECT min("up") FROM "raw"."heartbeat" WHERE ' + ROOM +
         ' AND $timeFilter GROUP BY time($__interval), "camera" fill(null)')
    return Row("摄像机 Cameras", (PanelSpec(
        "摄像机在线 / Cameras online", "state", (Target(q, "$tag_camera"),), width=24, height=9, states="camera",
        names=scope.names(cams), interval=scope.heartbeat_interval(),
        description="区间内任一次心跳失败即显示离线；空白表示没有收到心跳（网关失联）/ offline if any probe of the "
                    "interval failed; blank: no heartbeat at all (the gateway is silent)"),) if cams else ())


def heating_row(scope: CityScope) -> Row:
    r = scope.cfg.rules
    water = ("supply_temperature", "return_temperature", "outdoor_temperature")
    pressure = scope.sensors("pressure")
    lows = [s.low_bar for s in pressure if s.low_bar is not None]
    panels = _present(scope, PanelSpec(
        "供回水与室外温度 / Supply, return and outdoor", "timeseries",
        (Target(readings('mean("value")', SITE, water), "$tag_sensor"),), unit="celsius", decimals=1,
        names=scope.names(scope.sensors(*water)), thresholds=((None, BLUE), (r.outdoor_cold_c, YELLOW), (r.supply_min_c, GREEN)),
        description=f"室外低于 {r.outdoor_cold_c:g} °C 时供水应不低于 {r.supply_min_c:g} °C / supply ≥ "
                    f"{r.supply_min_c:g} °C while outdoors < {r.outdoor_cold_c:g} °C"), water)
    panels += _present(scope, PanelSpec(
        "系统水压 / Water pressure", "timeseries", (Target(readings('min("value")', SITE, ["pressure"]), "$tag_sensor"),),
        unit="pressurebar", decimals=2, names=scope.names(pressure),
        thresholds=((None, RED), (min(lows), GREEN)) if lows else ()), ("pressure",))
    panels += _present(scope, PanelSpec(
        "循环泵 / Circulation pumps", "state", (Target(readings('min("value")', SITE, ["pump_running"]), "$tag_sensor"),),
        height=5, states="pump", names=scope.names(scope.sensors("pump_running"))), ("pump_running",))
    panels += _present(scope, PanelSpec(
        "锅炉故障 / Boiler fault", "state", (Target(readings('max("value")', SITE, ["boiler_fault"]), "$tag_sensor"),),
        height=5, states="fault", names=scope.names(scope.sensors("boiler_fault"))), ("boiler_fault",))
    return Row("供暖 Heating", tuple(panels))


def gateway_row(scope: CityScope) -> Row:
    health = 'FROM "raw"."gateway_health" WHERE ' + SITE
    per = 'AND $timeFilter GROUP BY time($__interval), "gateway" fill(null)'
    flags = "/^(under_voltage|throttled|clock_unsynced)$/"
    names = {g.id: f"{g.name} {g.id}" for g in scope.gateways()}
    return Row("网关 Gateways", (
        PanelSpec("网关 CPU 温度 / Gateway CPU temperature", "timeseries",
                  (Target(f'SELECT mean("value") {health} AND "metric" = \'cpu_temperature\' {per}', "$tag_gateway"),),
                  width=8, unit="celsius", names=names, thresholds=((None, GREEN), (70.0, ORANGE), (80.0, RED))),
        PanelSpec("网关磁盘剩余 / Gateway disk free", "timeseries",
                  (Target(f'SELECT min("value") {health} AND "metric" = \'disk_free\' {per}', "$tag_gateway"),),
                  width=8, unit="percent", names=names,
                  thresholds=((None, RED), (scope.cfg.rules.gateway_disk_free_min_pct, GREEN))),
        PanelSpec("欠压、降频、时钟 / Under-voltage, throttling, clock", "state",
                  (Target(f'SELECT max("value") {health} AND "metric" =~ {flags} AND $timeFilter '
                          'GROUP BY time($__interval), "gateway", "metric" fill(null)', "$tag_gateway $tag_metric"),),
                  width=8, states="flag"),
        PanelSpec("缓存补传 / Readings replayed from the spool", "timeseries",
                  (Target('SELECT count("seq") FROM "raw"."reading" WHERE ' + SITE + ' AND "historical" = true '
                          'AND $timeFilter GROUP BY time($__interval), "gateway" fill(0)', "$tag_gateway"),),
                  width=12, names=names,
                  description="断网期间暂存在网关磁盘、恢复后补传的读数（按读取时间）/ readings kept in the gateway's "
                              "spool during an outage and delivered after it, by the time they were read"),
        PanelSpec("本地声光报警 / Local alarm", "table",
                  (Target('SELECT "state", "by", "detectors", "gateway" FROM "records"."local_alarm" WHERE ' + SITE +
                          ' AND $timeFilter', table=True),), width=12,
                  description="网关蜂鸣器与继电器：响起、消音、停止 / the gateway's buzzer and relay: sounding, silenced, quiet"),
    ))


def alert_row() -> Row:
    return Row("告警 Alerts", (
        PanelSpec("未关闭告警 / Open alerts", "stat",
                  (Target('SELECT last("critical") AS "严重 critical", last("pre_alarm") AS "预警 pre-alarm", '
                          'last("major") AS "重要 major", last("warning") AS "一般 warning" FROM "raw"."alert_open" '
                          'WHERE ' + SITE + ' AND $timeFilter', "$col"),),
                  width=12, height=5, thresholds=((None, GREEN), (1.0, RED))),
        PanelSpec("告警记录 / Alert history", "table",
                  (Target('SELECT "title", "text", "state" FROM "records"."alert" WHERE ' + SITE +
                          ' AND "action" =~ /^(raise|confirm|acknowledge|resolve|dismiss|breach)$/ AND $timeFilter',
                          table=True),), width=12, height=5),
    ))


def station_rows(scope: CityScope) -> list[Row]:
    rows = [alert_row(), temperature_row(scope), fire_row(scope), doors_row(scope), camera_row(scope),
            heating_row(scope), gateway_row(scope)]
    return [row for row in rows if row.panels]
