"""Monthly report benchmark: the city report (every site's PDF and XLSX and the city summary) of 15 sites
over one month, against the time InfluxDB alone takes to answer the report's queries, in the same run.

    .venv/bin/python tests/benchmarks/bench_reports.py [--sites 15] [--rounds 3] [--fresh]

What is loaded (a month of 15 sites × 64 sensors every 10 s would be ~250 M raw points; the report
never reads ``raw``): the month before this one, at the resolution the report reads — one ``trend``
point (value, min, max) per sensor and minute for all 64 sensors of every site, written as line protocol
(the project's ``line_protocol`` format) straight to ``/write``; the ``records`` door events (8 doors,
40 openings a day each) through the project's writer; and an alert store filled by the alert engine
from wire messages (drills, fires confirmed and dismissed, night exits, camera outages, boiler faults,
cold rooms, with acknowledgements early and late). Loading takes minutes, so the InfluxDB data folder
is kept in ``.bench/reports/`` and reused while it holds the same month (``--fresh`` reloads).

Measured, ``--rounds`` times, alternating: the floor (every query of :func:`series.queries` for every
site, one after another, over one HTTP connection) and the report (``stationwatch report monthly
--bureau …`` in its own process: wall time, and its peak RSS, VmHWM), for a county of 5 sites
and for the city of 15. The 5-site run carries the same fixed costs (interpreter start and imports, 0.7 s;
the first site's queries and the city summary, which nothing overlaps) over a third of the work.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_section  # noqa: E402

from stationwatch.alerts.engine import AlertEngine  # noqa: E402
from stationwatch.alerts.reports.period import Month  # noqa: E402
from stationwatch.alerts.reports.series import Series, queries  # noqa: E402
from stationwatch.broker.influx import InfluxV1Writer, Point, line_protocol  # noqa: E402
from stationwatch.broker.stack import LocalInfluxDB  # noqa: E402
from stationwatch.core.config import parse_config  # noqa: E402
from stationwatch.core.contract import Event, Heartbeat, MessageClass, encode, topic  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".bench" / "reports"
DATA_VERSION = "1"
SLEEPING = 16
DOORS = 8


def site_config(i: int, bureau: str) -> tuple[dict, dict, list[dict], list[dict]]:
    """One site with 64 sensors and 9 cameras on one gateway."""
    s, gw = f"site-{i:02d}", f"gw-{i:02d}"
    rooms = [{"id": f"dorm-{k}", "name": f"宿舍{k + 1}", "kind": "dormitory"} for k in range(SLEEPING)]
    rooms += [{"id": r, "name": n, "kind": k} for r, n, k in (
        ("med-obs", "医疗观察室", "medical_observation"), ("kitchen", "厨房", "kitchen"), ("canteen", "食堂", "canteen"),
        ("boiler", "锅炉房", "boiler_room"), ("hall", "接待大厅", "public"), ("corridor", "走廊", "corridor"),
        ("yard", "院内", "public"), ("exit-main", "正门出口", "exit"), ("exit-back", "后门出口", "exit"),
        ("store", "库房", "storeroom"))]
    sensors = [{"id": f"t-{i}-{k}", "name": f"宿舍{k + 1} 室温", "kind": "temperature", "room": f"dorm-{k}"}
               for k in range(SLEEPING)]
    sensors += [{"id": f"smk-{i}-{k}", "name": f"宿舍{k + 1} 感烟", "kind": "smoke", "room": f"dorm-{k}"}
                for k in range(SLEEPING)]
    sensors += [{"id": f"smk-{i}-{r}", "name": f"{r} 感烟", "kind": "smoke", "room": r} for r in ("kitchen", "canteen", "store", "boiler")]
    sensors += [{"id": f"heat-{i}-{r}", "name": f"{r} 感温", "kind": "heat", "room": r} for r in ("kitchen", "boiler", "canteen", "store")]
    sensors += [{"id": f"t-{i}-{r}", "name": f"{r} 室温", "kind": "temperature", "room": r} for r in ("hall", "kitchen", "canteen", "corridor")]
    sensors += [{"id": f"hum-{i}-{k}", "name": f"湿度{k}", "kind": "humidity", "room": f"dorm-{k}"} for k in range(6)]
    doors = [("exit-main", True), ("exit-back", True), ("store", False), ("kitchen", False), ("boiler", False),
             ("med-obs", False), ("corridor", False), ("canteen", False)]
    sensors += [{"id": f"door-{i}-{r}", "name": f"{r} 门磁", "kind": "door", "room": r, "exit": ex} for r, ex in doors]
    sensors += [{"id": f"{k}-{i}", "name": k, "kind": kind, "room": room} for k, kind, room in (
        ("outdoor", "outdoor_temperature", "yard"), ("supply", "supply_temperature", "boiler"),
        ("return", "return_temperature", "boiler"), ("pressure", "pressure", "boiler"),
        ("pump", "pump_running", "boiler"), ("boiler-fault", "boiler_fault", "boiler"))]
    for x in sensors:
        x["gateway"] = gw
    assert len(sensors) == 64, len(sensors)
    cams = [{"id": f"cam-{i}-{r}", "name": f"{r} 摄像机", "gateway": gw, "room": r, "probe": "tcp://127.0.0.1:9"}
            for r in ("hall", "exit-main", "exit-back", "med-obs", "canteen", "corridor", "kitchen", "boiler", "yard")]
    return ({"id": s, "name": f"第{i + 1}救助管理站", "bureau": bureau, "rooms": rooms},
            {"id": gw, "name": f"网关{i}", "site": s}, sensors, cams)


def city_config(n: int):
    data = {"name": "基准城市 / bench city", "bureaus": [
        {"id": "city", "name": "基准市民政局", "level": "city"},
        {"id": "county-a", "name": "甲县民政局", "level": "county", "parent": "city"},
        {"id": "county-b", "name": "乙县民政局", "level": "county", "parent": "city"}],
        "sites": [], "gateways": [], "sensors": [], "cameras": [],
        "contacts": [{"id": "staff", "name": "值班员", "role": "staff", "sites": [f"site-{i:02d}" for i in range(n)]},
                     {"id": "leader", "name": "带班领导", "role": "leader", "sites": [f"site-{i:02d}" for i in range(n)]},
                     {"id": "bureau", "name": "民政局", "role": "bureau", "bureau": "city"}],
        "rules": {"heating_season_start": "10-01", "heating_season_end": "04-30"}}
    for i in range(n):
        site, gw, sensors, cams = site_config(i, "county-a" if i < 5 else "county-b")
        data["sites"].append(site)
        data["gateways"].append(gw)
        data["sensors"] += sensors
        data["cameras"] += cams
    return data


def load_trend(url: str, cfg, month: Month, log) -> int:
    """One point per sensor and minute of the month (value, min, max), as line protocol to /write."""
    client = httpx.Client(timeout=600)
    rng = random.Random(7)
    total = 0
    for site in cfg.sites:
        tz = site.tz
        start, end = month.bounds(tz)
        minutes = int((end - start) // 60)
        t0 = time.perf_counter()
        for sensor in [x for x in cfg.sensors if cfg.site_of(x).id == site.id]:
            tags = {"site": site.id, "gateway": sensor.gateway, "room": sensor.room, "sensor": sensor.id, "kind": sensor.kind}
            head = line_protocol(Point("reading_1m", tags, {"value": 0.0}, 0)).rsplit(" ", 2)[0]
            base = {"temperature": 19.5, "humidity": 45.0, "supply_temperature": 55.0, "return_temperature": 42.0,
                    "outdoor_temperature": -3.0, "pressure": 1.5}.get(sensor.kind, 0.0)
            lines = []
            for m in range(minutes):
                v = base + 1.5 * rng.random() - (2.5 if sensor.kind == "temperature" and m % 1440 > 1380 else 0)
                lines.append(f"{head} value={v:.3f},min={v - 0.2:.3f},max={v + 0.2:.3f} {int((start + 60 * m) * 1000)}")
            for k in range(0, len(lines), 11000):
                r = client.post(f"{url}/write", params={"db": "stationwatch", "rp": "trend", "precision": "ms"},
                                content="\n".join(lines[k:k + 11000]))
                if r.status_code != 204:
                    raise SystemExit(f"InfluxDB refused the load: {r.text[:300]}")
            total += len(lines)
        log(f"  trend of {site.id}: {minutes} minutes × 64 sensors in {time.perf_counter() - t0:.1f} s")
    client.close()
    return total


def load_records(url: str, cfg, month: Month) -> int:
    """Door openings (and closings) through the project's writer: 40 a day per door."""
    writer = InfluxV1Writer(url, "stationwatch")
    rng = random.Random(11)
    points = []
    for site in cfg.sites:
        start, end = month.bounds(site.tz)
        for door in [x for x in cfg.sensors if x.kind == "door" and cfg.site_of(x).id == site.id]:
            for _ in range(40 * int((end - start) // 86400)):
                t = start + rng.random() * (end - start - 120)
                tags = {"site": site.id, "gateway": door.gateway, "room": door.room, "device": door.id, "kind": "door"}
                for dt, state in ((0, "open"), (30, "closed")):
                    points.append(Point("event", tags, {"state": state, "seq": 0, "historical": False, "drill": False},
                                        int((t + dt) * 1000), "records"))
    for k in range(0, len(points), 5000):
        writer.write(points[k:k + 5000])
    writer.close()
    return len(points)


def fill_store(cfg, path: Path, month: Month) -> int:
    """A month of alerts per site, raised by the engine from wire messages, with people's actions."""
    clock = {"t": 0.0}
    engine = AlertEngine(cfg, path, clock=lambda: clock["t"])
    engine.watching = False
    rng = random.Random(3)
    seq = [0]

    def msg(site, gw, body_cls, device, t, **kw):
        seq[0] += 1
        cls = MessageClass.HEARTBEAT if body_cls is Heartbeat else MessageClass.EVENT
        return topic(site, gw, cls, device), encode(body_cls(v=1, ts=t, seq=seq[0], **kw))

    for i, site in enumerate(cfg.sites):
        start, _ = month.bounds(site.tz)
        gw = f"gw-{i:02d}"
        plan = []  # (time, message or action)
        day = lambda d, h: start + d * 86400 + h * 3600 + rng.random() * 600  # noqa: E731
        for d in (3, 17):
            t = day(d, 10)
            plan += [(t, msg(site.id, gw, Event, f"smk-{i}-0", t, state="alarm", drill=True)),
                     (t + 300, msg(site.id, gw, Event, f"smk-{i}-0", t + 300, state="normal", drill=True))]
        for d in range(1, 28, 3):  # pre-alarms: some dismissed, one confirmed by a second detector
            t = day(d, 14)
            plan += [(t, msg(site.id, gw, Event, f"smk-{i}-{d % 16}", t, state="alarm")),
                     (t + rng.choice([60, 240, 1200]), ("dismiss" if d % 9 else "ack", "fire"))]
        for d in range(2, 28, 5):
            t = day(d, 2)
            plan += [(t, msg(site.id, gw, Event, f"door-{i}-exit-back", t, state="open")),
                     (t + 40, msg(site.id, gw, Event, f"door-{i}-exit-back", t + 40, state="closed")),
                     (t + rng.choice([120, 1500]), ("ack", "night_exit"))]
        for d in range(4, 28, 6):
            t = day(d, 9)
            cam = f"cam-{i}-hall"
            plan += [(t + 60 * k, msg(site.id, gw, Heartbeat, cam, t + 60 * k, online=False)) for k in range(3)]
            plan += [(t + 5400, msg(site.id, gw, Heartbeat, cam, t + 5400, online=True))]
        for d in (8, 21):
            t = day(d, 15)
            plan += [(t, msg(site.id, gw, Event, f"boiler-fault-{i}", t, state="alarm")),
                     (t + rng.choice([300, 1300, 4000]), ("ack", "boiler_fault")),
                     (t + 5000, msg(site.id, gw, Event, f"boiler-fault-{i}", t + 5000, state="normal"))]
        for t, item in sorted(plan, key=lambda x: x[0]):
            clock["t"] = t
            engine.tick(t)
            if isinstance(item[0], str) and item[0] in ("ack", "dismiss"):
                open_ = [a for a in engine.store.alerts(site=site.id, rule=item[1]) if a.state == "firing" and not a.drill]
                for a in open_[:1]:
                    if item[0] == "ack":
                        engine.store.acknowledge(a.id, "staff（值班员）", "处理中")
                    else:
                        engine.store.dismiss(a.id, "staff（值班员）", "误报：灰尘 / dust")
            else:
                engine.handle(*item, now=t)
        engine.tick(month.bounds(site.tz)[1] - 60)
    n = engine.store.query("SELECT COUNT(*) n FROM alerts")[0]["n"]
    engine.close()
    return n


def floor(url: str, cfg, month: Month, sites) -> float:
    series = Series(url)
    t0 = time.perf_counter()
    for site in sites:
        for _name, q in queries(cfg, site, month):
            series.run(q)
    elapsed = time.perf_counter() - t0
    series.close()
    return elapsed


# `stationwatch` as its console script runs it, writing the process's VmHWM (peak RSS of its own address space)
# when it exits. ru_maxrss would not do: Linux carries it over exec from the forked copy of this (larger) process.
PEAK = ("import atexit, resource, sys\n"
        "out = sys.argv.pop(1)\n"
        "def peak():\n"
        "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
        "    hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]\n"
        "    open(out, 'w').write(f'{hwm} {r.ru_utime + r.ru_stime}')\n"
        "atexit.register(peak)\n"
        "sys.argv[0] = 'stationwatch'\n"
        "from stationwatch.cli.main import main\n"
        "main()\n")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(config: Path, db: Path, url: str, month: Month, bureau: str, out: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds of `stationwatch report monthly --bureau` in its own process."""
    shutil.rmtree(out, ignore_errors=True)
    peak = out.parent / f"peak-{bureau}.txt"
    cmd = [str(ROOT / ".venv" / "bin" / "python"), "-c", PEAK, str(peak), "report", "monthly", "-c", str(config),
           "--db", str(db), "--influx", url, "--bureau", bureau, "--month", month.label, "--format", "pdf,xlsx",
           "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"report failed: {proc.stderr.decode()[-2000:]}")
    hwm, cpu = peak.read_text().split()
    return elapsed, int(hwm) / 1024, float(cpu)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fresh", action="store_true", help="load InfluxDB again even if the cached data fits")
    args = ap.parse_args()
    where = machine()
    data = city_config(args.sites)
    cfg = parse_config(data)
    month = Month.of(time.time(), cfg.sites[0].tz).previous()
    marker = CACHE / "loaded.txt"
    want = f"{DATA_VERSION} {month.label} {args.sites}"
    if args.fresh or not marker.exists() or marker.read_text().strip() != want:
        shutil.rmtree(CACHE / "influx", ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    config = work / "city.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    log = lambda text: print(text, flush=True)  # noqa: E731
    with LocalInfluxDB(CACHE / "influx") as influx:
        load_s = None
        if not marker.exists() or marker.read_text().strip() != want:
            log(f"loading {month.label} for {args.sites} sites (kept in {CACHE} for the next runs) …")
            t0 = time.perf_counter()
            InfluxV1Writer(influx.url, "stationwatch").ensure_schema()
            points = load_trend(influx.url, cfg, month, log)
            records = load_records(influx.url, cfg, month)
            load_s = time.perf_counter() - t0
            marker.write_text(want)
            log(f"loaded {points:,} trend points and {records:,} door events in {load_s:.0f} s")
        n_alerts = fill_store(cfg, work / "alerts.db", month)
        log(f"alert store: {n_alerts} alerts")
        county = [s for s in cfg.sites if s.bureau == "county-a"]
        rounds = []
        db_pid = influx.proc.pid
        for r in range(args.rounds):
            c0 = cpu_s(db_pid)
            f15 = floor(influx.url, cfg, month, cfg.sites)
            c1 = cpu_s(db_pid)
            t15, rss15, py15 = report(config, work / "alerts.db", influx.url, month, "city", work / "out15")
            c2 = cpu_s(db_pid)
            f5 = floor(influx.url, cfg, month, county)
            t5, rss5, _ = report(config, work / "alerts.db", influx.url, month, "county-a", work / "out5")
            rounds.append((f15, t15, rss15, f5, t5, rss5, c1 - c0, c2 - c1, py15))
            log(f"round {r + 1}: 15 sites floor {f15:.2f} s, report {t15:.2f} s ({rss15:.0f} MB); "
                f"5 sites floor {f5:.2f} s, report {t5:.2f} s ({rss5:.0f} MB)")
        files = sorted((work / "out15").iterdir())
        size = sum(p.stat().st_size for p in files)
        pages = subprocess.run(["pdfinfo", str(work / "out15" / f"site-00-{month.label}.pdf")], capture_output=True,
                               text=True).stdout
        pages = next((x.split()[-1] for x in pages.splitlines() if x.startswith("Pages")), "?")
        trend_points = 64 * args.sites * int((month.bounds(cfg.sites[0].tz)[1] - month.bounds(cfg.sites[0].tz)[0]) // 60)
    med = lambda i: statistics.median(x[i] for x in rounds)  # noqa: E731
    # each round's floor and report are measured back to back, under the same load: the ratio of each round
    ratio15 = statistics.median(x[1] / x[0] for x in rounds)
    ratio5 = statistics.median(x[4] / x[3] for x in rounds)
    per_round = "\n".join(f"| {i + 1} | {x[0]:.2f} s | {x[1]:.2f} s | {x[1] / x[0]:.2f} | {x[2]:.0f} MB | {x[3]:.2f} s | "
                          f"{x[4]:.2f} s | {x[4] / x[3]:.2f} | {x[5]:.0f} MB |" for i, x in enumerate(rounds))
    cpu_rows = "\n".join(f"| {i + 1} | {x[6]:.1f} s | {x[7]:.1f} s | {x[8]:.1f} s | {(x[7] + x[8]) / x[6]:.2f} |"
                          for i, x in enumerate(rounds))
    lo, hi = min(x[1] / x[0] for x in rounds), max(x[1] / x[0] for x in rounds)
    text = f"""
## Monthly reports (the city report of {args.sites} sites)

Command: `make bench` (this part: `.venv/bin/python tests/benchmarks/bench_reports.py --sites {args.sites} --rounds {args.rounds}`).
Machine: {where}.
Conditions: InfluxDB 1.6.7 (project config) on this machine, holding the month {month.label} for {args.sites} sites ×
64 sensors at the resolution the report reads: {trend_points:,} `trend` points (value, min, max per sensor and
minute — the one-minute means of 64 sensors every 10 s; the ~{trend_points * 6 / 1e6:.0f} M raw readings behind them
are not loaded, the report never reads `raw`) and {DOORS * 40 * 2 * 30 * args.sites:,}-odd `records` door events;
an alert store of {n_alerts} alerts filled by the alert engine from wire messages. {'Loaded in this run in ' + f'{load_s:.0f} s' if load_s else 'Loaded by an earlier run (`.bench/reports/`), InfluxDB restarted on it'}.
Floor: every InfluxQL query of the report (`alerts/reports/series.py` `queries()`, {len(queries(cfg, cfg.sites[0], month))} per site),
one after another over one HTTP connection. Report: `stationwatch report monthly --bureau …` in its own process
(interpreter start and imports included): each site's PDF and XLSX and the city summary, {len(files)} files,
{size / 1e6:.1f} MB, {pages} PDF pages per site. Peak RSS: the process's `VmHWM` as it exits. Rounds alternate
floor and report; every process on the same 2 cores (other work on the machine: load average above).

| round | floor, 15 sites | report, 15 sites | ratio | peak RSS | floor, 5 sites | report, 5 sites | ratio | peak RSS |
|---|---|---|---|---|---|---|---|---|
{per_round}

Median over {args.rounds} rounds: the city report of {args.sites} sites takes **{med(1):.1f} s** against a floor of
{med(0):.1f} s; the median of the rounds' ratios is **{ratio15:.2f} × the floor** (goal ≤ 1.5:
{'**met**' if ratio15 <= 1.5 else '**not met**'}; single rounds {lo:.2f}–{hi:.2f} ×: the machine's other work moves both); 5 sites:
{ratio5:.2f} ×. Peak RSS {med(5):.0f} MB for 5 sites, {med(2):.0f} MB for {args.sites} sites: +{(med(2) - med(5)) / (args.sites - 5):.1f} MB a
site (each site's figures are drawn and dropped, the city summary keeps a few records of each; the next
site's queries run while the current one is drawn).

CPU, which the machine's other work does not move: InfluxDB's own CPU seconds (`/proc/PID/stat`) while it
answers the floor's queries and while it answers the same queries for the report, and the report process's
CPU (user + system, `getrusage` at exit, interpreter start included):

| round | InfluxDB, floor | InfluxDB, report | report process | (InfluxDB + report process) / InfluxDB floor |
|---|---|---|---|---|
{cpu_rows}
"""
    write_section("reports", text)
    print(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
