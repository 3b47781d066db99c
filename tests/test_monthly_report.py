"""A month of one station played through the pipeline at time compression, then its monthly report read
back as a person reads it: the PDF through ``pdftotext`` (fonts checked with ``pdffonts``, pages rendered
with ``pdftoppm``), the XLSX through openpyxl.

What is real: every message is encoded as the gateway encodes it, stamped with the gateway's own time,
and published to a Mosquitto of this module's own; ``stationwatch ingest`` (run_ingest) stores it in a
real InfluxDB 1.6.7; a real MQTT subscriber hands the same stream to the alert engine (AlertEngine) over
a real SQLite store; the report reads that store and InfluxDB (``records``, ``trend``) as in production.

What is compressed: the month is played in seconds. The engine runs on an injected clock set to each
message's gateway time (as tests/test_escalation.py does), so acknowledgement deadlines, breaches and
the register's deadlines fall as they would; people's acknowledgements and dismissals are the store
calls the API makes, on that clock. The subscriber orders the stream by gateway time before the engine
reads it (QoS 0 heartbeats may overtake QoS 1 readings on the broker). The continuous query of
``trend`` computes only the minute that just ended, so the played (past) minutes are downsampled with
the writer's ``downsample`` — as after a gateway's spool is replayed; the messages go out flagged
``historical`` as such a replay (live, ingest would quarantine a time weeks old as a wrong clock).
The played month is the one that holds the day ten days ago, so the cold night's readings are inside the 30 days of ``raw``.

Played, site time (Asia/Shanghai), day N of the month: 2nd 14:00 a fire confirmed by two detectors
(acknowledged in 2 min, resolved); 3rd 10:00 a kitchen pre-alarm dismissed as cooking fumes; 3rd 10:30 an
inspection entry due the 8th; 4th 02:10 the back exit opened at night (acknowledged, resolved); 5th
09:00–12:00 the hall camera offline (3 h); 8th 03:00–03:40 the centre's ingest silent (its heartbeat,
the engine's pipeline watch records the outage); 6th 15:00 a boiler fault nobody acknowledges until the leader
does at 15:20 (the staff's 15-minute deadline breached by 5 min); 7th 10:00 the month's only fire drill;
the night ten days ago 21:00–07:00 a heating failure: supply water 30 °C, outdoors −8 °C, 男宿舍一 at
15.5 °C from 23:00 to 05:00 (6 h).
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import threading
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from stationwatch.alerts.api import create_app
from stationwatch.alerts.engine import AlertEngine
from stationwatch.alerts.register.store import Draft
from stationwatch.alerts.reports.archive import Reports, sha256_of
from stationwatch.alerts.reports.period import Month
from stationwatch.alerts.reports.series import Series
from stationwatch.broker.influx import InfluxV1Writer
from stationwatch.broker.ingest import IngestOptions, run_ingest
from stationwatch.broker.stack import LocalMosquitto
from stationwatch.core.contract import MessageClass, subscription
from stationwatch.cli.main import app as cli
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.wire import payload, service_topic

from support import wait_for
from support.alerts import SHANGHAI, Wire, config_with

MONTH = Month.of(time.time() - 10 * 86400, SHANGHAI)
COLD = datetime.fromtimestamp(time.time() - 10 * 86400, SHANGHAI).date()  # the cold night begins that evening
INGEST_SILENT = (8, "03:00", "03:40")  # the centre's own outage: ingest beats nowhere in between
TOLERANCE_MIN = 1.0  # a camera's outage is known to ± one heartbeat period (60 s)


def at(day: int | date, hhmm: str, s: float = 0) -> float:
    d = day if isinstance(day, date) else date(MONTH.year, MONTH.month, day)
    h, m = map(int, hhmm.split(":"))
    return datetime(d.year, d.month, d.day, h, m, tzinfo=SHANGHAI).timestamp() + s


def played(wire: Wire) -> list[tuple[float, str, bytes, MessageClass]]:
    out = []
    ev = lambda t, dev, state, drill=False: out.append((t, *wire.event(dev, state, ts=t, drill=drill), MessageClass.EVENT))  # noqa: E731
    rd = lambda t, dev, v: out.append((t, *wire.reading(dev, v, ts=t), MessageClass.READING))  # noqa: E731
    hb = lambda t, cam, online: out.append((t, *wire.heartbeat(cam, online, ts=t), MessageClass.HEARTBEAT))  # noqa: E731
    ev(at(2, "14:00"), "smk-dorm-f1a", "alarm")
    ev(at(2, "14:00", 20), "smk-dorm-f1b", "alarm")
    ev(at(2, "14:40"), "smk-dorm-f1a", "normal")
    ev(at(2, "14:40"), "smk-dorm-f1b", "normal")
    ev(at(3, "10:00"), "smk-kitchen", "alarm")
    ev(at(3, "10:02"), "smk-kitchen", "normal")
    ev(at(4, "02:10"), "door-exit-back", "open")
    ev(at(4, "02:11"), "door-exit-back", "closed")
    hb(at(5, "08:58"), "cam-hall", True)
    for i in range(180):  # a failed probe every minute from 09:00 …
        hb(at(5, "09:00", 60 * i), "cam-hall", False)
    hb(at(5, "12:00"), "cam-hall", True)  # … answering again at 12:00
    ev(at(6, "15:00"), "boiler-fault", "alarm")
    ev(at(6, "15:40"), "boiler-fault", "normal")
    ev(at(7, "10:00"), "smk-dorm-m1", "alarm", drill=True)
    ev(at(7, "10:05"), "smk-dorm-m1", "normal", drill=True)
    for i in range(600):  # the cold night, one reading a minute
        t = at(COLD, "21:00", 60 * i)
        rd(t, "t-dorm-m1", 15.5 if at(COLD, "23:00") <= t < at(COLD + timedelta(days=1), "05:00") else 19.5)
        rd(t, "supply-main", 30.0 if t < at(COLD + timedelta(days=1), "05:00") else 55.0)
        if i % 10 == 0:
            rd(t, "t-outdoor", -8.0)
    return sorted(out, key=lambda x: x[0])


# people's actions, site time: (when, what, alert rule, actor, note)
ACTIONS = [
    (at(2, "14:02"), "acknowledge", "fire", "zhangsan（值班员 张三）", "到场处置"),
    (at(2, "14:45"), "resolve", "fire", "lisi（带班领导 李四）", "已扑灭，无人员受伤"),
    (at(3, "10:03"), "dismiss", "fire", "zhangsan（值班员 张三）", "厨房油烟，误报 / cooking fumes"),
    (at(4, "02:14"), "acknowledge", "night_exit", "zhangsan（值班员 张三）", "查看监控"),
    (at(4, "02:20"), "resolve", "night_exit", "zhangsan（值班员 张三）", "值班员巡查开门 / staff on patrol"),
    (at(5, "09:10"), "acknowledge", "camera_offline", "zhangsan（值班员 张三）", "已报修"),
    (at(6, "15:20"), "acknowledge", "boiler_fault", "lisi（带班领导 李四）", "联系锅炉工"),
    (at(COLD, "21:20"), "acknowledge", "supply_cold", "zhangsan（值班员 张三）", "锅炉房检查"),
    (at(COLD, "23:45"), "acknowledge", "cold_room", "zhangsan（值班员 张三）", "加发棉被"),
]


@pytest.fixture(scope="module")
def month(tmp_path_factory, influxdb):
    """The month played; yields (config, engine, reports, the hazards listed, out dir)."""
    tmp = tmp_path_factory.mktemp("month")
    cfg = config_with(rules={"heating_season_start": "01-01", "heating_season_end": "12-31"})
    database = f"m_{uuid.uuid4().hex[:8]}"
    with LocalMosquitto(tmp / "mosquitto") as broker:
        address = BrokerAddress(broker.host, broker.port)
        stop = threading.Event()
        ingest = threading.Thread(target=run_ingest, args=(cfg, address, influxdb.url, database, tmp / "q.db", stop),
                                  kwargs={"options": IngestOptions(metrics_every_s=0.5, instance=database)}, daemon=True)
        ingest.start()
        writer = InfluxV1Writer(influxdb.url, database)
        wait_for(lambda: any(d["name"] == database for d in writer._client.get_list_database()), what="database")
        received: list[tuple[str, bytes]] = []
        sub = MqttLink(address, f"engine-feed-{database}", on_message=lambda t, p, m: received.append((t, p)),
                       on_connect=lambda link: link.subscribe(subscription(), qos=1)).start()
        wait_for(lambda: sub.subscribed.is_set(), what="subscription")
        pub = MqttLink(address, f"gateway-{database}").start()
        messages = played(Wire(historical=True))  # a past month: as a replayed spool
        readings = sum(1 for m in messages if m[3] is MessageClass.READING)
        for info in [pub.publish(t, p, k) for _, t, p, k in messages]:
            info.wait_for_publish(30)
        wait_for(lambda: len(received) >= len(messages), timeout=60, what="the engine's feed")
        count = lambda: next(iter(writer.query('SELECT count("value") FROM "reading"').get_points()), {}).get("count", 0)  # noqa: E731
        wait_for(lambda: count() >= readings, timeout=60, what="readings stored by ingest")
        writer.downsample(int(at(COLD, "20:00") * 1000), int(at(COLD + timedelta(days=2), "00:00") * 1000))
        pub.stop()
        sub.stop()
        stop.set()
        ingest.join(timeout=15)

    clock = {"t": at(1, "00:00")}
    engine = AlertEngine(cfg, tmp / "alerts.db", clock=lambda: clock["t"])
    engine.watching = False  # the station's other 30 devices are silent in this play
    engine.review(at(1, "00:01"))
    order = sorted([(ts_of(p), "msg", (t, p)) for t, p in received] + [(a[0], "act", a) for a in ACTIONS]
                   + [(at(3, "10:30"), "inspect", None), (at(5, "13:00"), "review", None),
                      (at(6, "09:00"), "submit-camera", None), (at(9, "00:05"), "review", None),
                      (at(9, "00:15"), "ack-overdue", None)], key=lambda x: x[0])
    gap = (at(INGEST_SILENT[0], INGEST_SILENT[1]), at(INGEST_SILENT[0], INGEST_SILENT[2]))
    order = sorted(order + [(gap[0], "beat", None), (gap[0] + 600, "beat", None), (gap[1], "beat", None)],
                   key=lambda x: x[0])
    listed = {}
    for n, (t, kind, item) in enumerate(order):
        clock["t"] = t
        if not gap[0] < t < gap[1]:  # ingest's heartbeat before every step, but in its silence
            engine.handle(service_topic("ingest", "month"), payload(t, state="online", reason=None, session=1,
                                                                    count=n, info={}), now=t)
        list(engine.pipeline.tick(t))  # the time rules are held; the pipeline watch alone records outages
        engine.tick(t)
        if kind == "msg":
            engine.handle(*item, now=t)
        elif kind == "act":
            _, what, rule, actor, note = item
            alert = next(a for a in engine.store.alerts(include_resolved=True, rule=rule)
                         if a.active and not a.drill)
            getattr(engine.store, what)(alert.id, actor, note)
        elif kind == "inspect":
            listed["inspection"] = engine.register.create(Draft(
                "sl-station", "boiler", "heating", "锅炉房安全阀未校验 / boiler safety valve not tested",
                at(8, "23:59"), "送检安全阀 / have the valve tested", "校验合格证在有效期内 / a valid test certificate",
                "后勤 陈七"), "wangwu（市民政局 王五）", "bureau", now=t)
        elif kind == "review":
            engine.hazards.next_scan = 0
            engine.review(t)
        elif kind == "submit-camera":
            listed["camera"] = next(h for h in engine.register.list() if h.category == "video")
            engine.register.move(listed["camera"].id, "submit", "zhangsan（值班员 张三）", "staff", "更换摄像机电源")
        elif kind == "ack-overdue":
            overdue = next(a for a in engine.store.alerts(rule="hazard_overdue"))
            engine.store.acknowledge(overdue.id, "lisi（带班领导 李四）", "催办")
    end = Month(MONTH.year, MONTH.month).next()
    made_at = at(date(end.year, end.month, 1), "01:30")
    clock["t"] = made_at
    engine.hazards.next_scan = 0
    engine.tick(made_at - 3600)
    engine.review(made_at - 3600)  # the 1st: the month's drills are judged
    listed["drills"] = next(h for h in engine.register.list() if h.category == "drill")
    reports = Reports(cfg, engine.store, Series(influxdb.url, database), clock=lambda: clock["t"])
    out = tmp / "out"
    made = reports.bureau("sl-mz", MONTH, ["pdf", "xlsx"], out, now=made_at)
    yield cfg, engine, reports, listed, out, made, made_at, (influxdb.url, database)
    engine.close()


def ts_of(payload: bytes) -> float:
    return float(re.search(rb'"ts":\s*([0-9.]+)', payload).group(1))


@pytest.fixture(scope="module")
def pdf_text(month):
    path = month[4] / f"sl-station-{MONTH.label}.pdf"
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def book(month):
    return openpyxl.load_workbook(month[4] / f"sl-station-{MONTH.label}.xlsx")


def value(sheet, label: str):
    """The value beside the first cell of ``sheet`` that starts with ``label``."""
    for row in sheet.iter_rows(values_only=True):
        if isinstance(row[0], str) and row[0].startswith(label):
            return row[1]
    raise AssertionError(f"no row '{label}' in {sheet.title}")


def rows(sheet, first: str):
    """The rows of the table whose header starts with ``first``, up to the next blank row."""
    out, inside = [], False
    for row in sheet.iter_rows(values_only=True):
        if inside and not any(c not in (None, "") for c in row):
            break
        if inside:
            out.append(row)
        inside = inside or (isinstance(row[0], str) and row[0].startswith(first))
    return out


def line(text: str, label: str) -> str:
    found = next((x for x in text.splitlines() if label in x), None)
    assert found is not None, f"'{label}' not in the PDF"
    return found


def test_the_counts_of_the_month(book, pdf_text):
    s = book["概要"]
    assert value(s, "告警总数") == 8  # fire, kitchen pre-alarm, night exit, camera, boiler, supply, cold room, overdue
    assert value(s, "复核确认") == 1 and value(s, "误报排除") == 1
    assert value(s, "消防演练") == "1/2"
    assert value(s, "夜间出口门打开次数") == 1 and value(s, "夜间出口告警") == 1  # 02:10 on the 4th (records; alert)
    [exit_alert] = rows(book["夜间出口"], "时间")
    assert exit_alert[1] == "后门" and exit_alert[4] == "已处置 / handled"
    assert line(pdf_text, "告警总数").split()[-1] == "8"
    assert line(pdf_text, "消防演练（次/应达）").split()[-1] == "1/2"
    alarms = {r[0]: r[-1] for r in rows(book["告警"], "告警类型")}
    assert alarms["火警 fire"] == 2 and alarms["锅炉故障 boiler fault"] == 1 and alarms["摄像机离线 camera offline"] == 1
    [dismissed] = rows(book["复核"], "编号")
    assert dismissed[5] == "厨房油烟，误报 / cooking fumes" and "厨房油烟，误报" in pdf_text


def test_the_breach_with_its_level_and_delay(book, pdf_text, month):
    engine = month[1]
    boiler = next(a for a in engine.store.alerts(include_resolved=True, rule="boiler_fault"))
    breaches = rows(book["确认时效"], "告警")
    mine = [r for r in breaches if r[0] == boiler.id]
    assert [(r[3], r[5]) for r in mine] == [("L0 值班人员 / staff on duty", 5.0)]  # due 15:15, acknowledged 15:20
    assert value(book["概要"], "超时未确认") == 2  # the boiler's, and the inspection entry left overdue
    pdf_line = next(x for x in pdf_text.splitlines() if x.strip().startswith(str(boiler.id)) and "锅炉故障" in x)
    assert "L0 值班人员" in pdf_line and " 5.0 " in pdf_line + " "
    levels = {(r[0], r[1]): r for r in rows(book["确认时效"], "策略")}
    assert levels[("default", "带班领导 / leader on shift")][3:6] == (1, 20.0, 20.0)  # boiler, at level 1


def test_the_cameras_offline_minutes(book, pdf_text):
    cams = {r[0]: r for r in rows(book["摄像机"], "摄像机")}
    hall = cams["接待大厅 摄像机"]
    assert hall[2] == "✓" and hall[3] == 1
    assert abs(hall[4] - 180) <= TOLERANCE_MIN, hall
    assert "接待大厅 摄像机" in pdf_text and re.search(r"接待大厅 摄像机\s+接待大厅\s+✓\s+1\s+18\d\.\d", pdf_text)


def test_the_centres_own_outage_is_in_the_report(book, pdf_text):
    """The month's figures are blind while the centre's ingest was silent: the report says when."""
    [silent] = rows(book["网关"], "监测中心环节")
    assert silent[0] == "入库服务 / ingest"
    assert silent[1] == f"{MONTH.month:02d}-{INGEST_SILENT[0]:02d} {INGEST_SILENT[1]}"
    assert silent[2] == f"{MONTH.month:02d}-{INGEST_SILENT[0]:02d} {INGEST_SILENT[2]}" and silent[3] == 40
    assert value(book["概要"], "监测中心自身中断分钟") == 40
    assert re.search(r"入库服务 / ingest\s+\d\d-08 03:00\s+\d\d-08 03:40\s+40", pdf_text)


def test_heating_compliance_of_the_cold_night(book, pdf_text):
    heat = {r[1]: r for r in rows(book["供暖"], "房间")}
    assert heat["t-dorm-m1"][2] == 6.0 and heat["t-dorm-m1"][3] == 15.5  # 360 one-minute means below 18 °C
    outages = {r[0] for r in rows(book["供暖"], "类型")}
    assert {"供暖供水温度过低 heating supply water too cold", "室温过低 room too cold", "锅炉故障 boiler fault"} <= outages
    assert re.search(r"男宿舍一\s+t-dorm-m1\s+6\.0\s+15\.5", pdf_text)


def test_the_missed_drill_and_the_registers_deadlines(book, pdf_text, month):
    cfg, engine, _, listed, *_ = month
    register = {r[0]: r for r in rows(book["问题清单"], "编号")}
    assert set(register) == {h.id for h in listed.values()}
    for h in listed.values():
        due = datetime.fromtimestamp(h.deadline_at, SHANGHAI).strftime("%Y-%m-%d %H:%M")
        assert register[h.id][5] == due and due in pdf_text
    drill = register[listed["drills"].id]
    assert drill[1] == "演练" and "仅进行 1 次消防演练" in drill[3] and "仅进行 1 次消防演练" in pdf_text
    assert register[listed["camera"].id][3].startswith("【重大】") and register[listed["camera"].id][7] == "已提交验收"
    assert register[listed["inspection"].id][7] == "已逾期"
    assert "新增 3，销号 0，逾期 1，月末未销号 3" in pdf_text.replace("\n", "")


def test_the_city_summary_and_both_formats(month):
    out = month[4]
    book = openpyxl.load_workbook(out / f"city-sl-mz-{MONTH.label}.xlsx")
    [site_row, total] = rows(book["城市汇总"], "站点")
    assert site_row[0] == "示例市救助管理站" and site_row[1:5] == (8, 1, 1, 2) and site_row[5] == "1/2"
    text = subprocess.run(["pdftotext", str(out / f"city-sl-mz-{MONTH.label}.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "月度安全隐患汇总" in text and "示例市救助管理站" in text


def test_the_pdf_embeds_its_font_and_renders(month, tmp_path):
    path = month[4] / f"sl-station-{MONTH.label}.pdf"
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    assert fonts and all(f.split()[-5] == "yes" for f in fonts), fonts  # the `emb` column
    assert any("CJK" in f or "WenQuanYi" in f for f in fonts)
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(path), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2 and all(p.stat().st_size > 5000 for p in pages)


def test_the_schedule_archives_once_with_checksums(month):
    cfg, engine, reports, *_rest = month
    made_at = _rest[-2]
    made = reports.run_due(made_at)
    assert {(m.scope, m.scope_id, m.format) for m in made} == {("site", "sl-station", "pdf"), ("site", "sl-station", "xlsx"),
                                                               ("bureau", "sl-mz", "pdf"), ("bureau", "sl-mz", "xlsx")}
    assert reports.run_due(made_at + 600) == []  # idempotent: the month is archived
    for row in reports.archived(month=MONTH.label):
        assert sha256_of(Path(row["path"])) == row["sha256"]
        assert not Path(row["path"]).stat().st_mode & 0o222  # read-only


def test_inspectors_pull_the_archived_reports_through_the_api(month):
    cfg, engine, reports, *_rest = month
    made_at, (url, database) = _rest[-2], _rest[-1]
    reports.run_due(made_at)
    app = create_app(cfg, engine.store.path)
    app.state.influx_url, app.state.influx_database = url, database
    inspector = {"Authorization": "Bearer demo-inspector-token"}
    with TestClient(app) as client:
        listed = client.get(f"/api/reports?month={MONTH.label}", headers=inspector).json()
        assert {(r["scope"], r["format"]) for r in listed} == {("site", "pdf"), ("site", "xlsx"), ("bureau", "pdf"),
                                                               ("bureau", "xlsx")}
        pdf = next(r for r in listed if r["scope"] == "site" and r["format"] == "pdf")
        got = client.get(pdf["url"], headers=inspector)
        assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
        assert hashlib.sha256(got.content).hexdigest() == pdf["sha256"] == got.headers["x-content-sha256"]
        assert client.get(pdf["url"]).status_code == 403  # the anonymous wall board does not get reports
        again = client.post("/api/reports", json={"site": "sl-station", "month": MONTH.label}, headers=inspector)
        assert again.status_code == 201 and {r["format"] for r in again.json()} == {"pdf", "xlsx"}
        bad = client.post("/api/reports", json={"site": "sl-station", "month": "2026-13"}, headers=inspector)
        assert bad.status_code == 422 and "month" in str(bad.json()["detail"])


def test_the_command_line_report_and_its_errors(month, tmp_path):
    cfg, engine, *_rest = month
    url, database = _rest[-1]
    config = tmp_path / "cfg.yaml"
    import yaml
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True), encoding="utf-8")
    base = ["report", "monthly", "-c", str(config), "--db", engine.store.path, "--influx", url, "--database", database]
    wrong = CliRunner().invoke(cli, base + ["--site", "sl-station", "--month", "2026-13"])
    assert wrong.exit_code == 2 and "--month" in wrong.output
    both = CliRunner().invoke(cli, base + ["--site", "sl-station", "--bureau", "sl-mz", "--month", MONTH.label])
    assert both.exit_code == 2 and "exactly one" in both.output
    made = CliRunner().invoke(cli, base + ["--bureau", "sl-mz", "--month", MONTH.label, "--format", "xlsx",
                                           "--out", str(tmp_path / "out")])
    assert made.exit_code == 0, made.output
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [f"city-sl-mz-{MONTH.label}.xlsx", f"sl-station-{MONTH.label}.xlsx"]
    assert all(sha256_of(tmp_path / "out" / f) in made.output for f in files)


def test_xlsx_columns_are_sized_for_chinese_text(book):
    from stationwatch.alerts.reports.xlsx import display_width
    summary = book["概要"]
    labels = [r[0] for r in rows(summary, "项目") if isinstance(r[0], str)]
    short = max(display_width(x) for x in labels if display_width(x) <= 60)
    assert summary.column_dimensions["A"].width >= short  # a Chinese character takes two columns
    header = next(i for i, r in enumerate(summary.iter_rows(values_only=True), 1) if r[0] and r[0].startswith("项目"))
    long_row = next(i for i, r in enumerate(summary.iter_rows(values_only=True), 1)
                    if i > header and isinstance(r[0], str) and display_width(r[0]) > 60)
    assert summary.cell(long_row, 1).alignment.wrap_text  # past 60 columns a cell wraps instead
    register = book["问题清单"]
    assert register.column_dimensions["D"].width >= 40  # the problem's description
    assert display_width("告警总数") == 8 and display_width("alarms") == 6
