"""The peer beside us: StationWatch's ingest and Node-RED (with node-red-contrib-influxdb, the stack
IOTstack sets up beside Mosquitto, InfluxDB and Grafana), on the same broker and InfluxDB, with the
same single-reading messages, in the same run.

Node-RED 5, node-red-contrib-influxdb and a Node.js it runs on (npm's ``node`` package; Debian's is
too old for Node-RED 5) are installed from npm into a temporary directory. Its flow is the fastest
idiomatic one: mqtt in (QoS 1, parsed JSON, persistent session) → function (the point) → join of
1,000 → influxdb batch. StationWatch: `stationwatch ingest` as it runs in production.

Measured for both: the drain rate of a backlog of 50,000 QoS 1 readings published into the consumer's
persistent session before it connects (the consumer sets the pace; medians of 3), CPU per message
(utime + stime of its process from /proc/<pid>/stat while draining), the highest RSS sampled while
draining, and loss through a 30 s InfluxDB outage (the InfluxDB this bench started, stopped and
started again) under a steady stream. The publisher writes pre-encoded packets on a raw socket
(gateway/fleet.py ``RawPublisher``), so it is not what sets the pace; `mosquitto_sub` draining
the same backlog is the broker's ceiling.

    .venv/bin/python tests/benchmarks/bench_peer.py [--messages 50000] [--trials 3] [--node-red-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_section  # noqa: E402

from stationwatch.broker.stack import LocalInfluxDB, LocalMosquitto, free_port  # noqa: E402
from stationwatch.core.contract import MessageClass, subscription, topic  # noqa: E402
from stationwatch.core.mqtt import BrokerAddress, MqttLink  # noqa: E402
from stationwatch.core.wire import payload  # noqa: E402
from stationwatch.gateway.fleet import RawPublisher  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "city-station.yaml"
SITE, GW = "sl-station", "gw-sl-main"
SENSORS = ["t-dorm-m1", "t-dorm-m2", "t-dorm-f1", "t-minors-1", "t-med-obs", "t-hall", "supply-main", "heat-kitchen"]
NPM_PACKAGES = ["node@22", "node-red@5", "node-red-contrib-influxdb@0.7"]
CLK = os.sysconf("SC_CLK_TCK")
OUTAGE_S, STREAM_S, OUTAGE_AT_S, STREAM_RATE = 30.0, 70.0, 15.0, 1000


# ---- the messages and the publisher ----------------------------------------------------------

class Feed:
    """Single-reading messages of the example station's gateway, as its agent writes them; one seq
    counter for the whole run (ingest checks a gateway's sequence)."""

    def __init__(self):
        self.seq = 0

    def bodies(self, n: int, base: float) -> list[tuple[str, bytes]]:
        out = []
        for i in range(n):
            self.seq += 1
            out.append((topic(SITE, GW, MessageClass.READING, SENSORS[i % len(SENSORS)]),
                        payload(base + i * 0.001, self.seq, value=20 + i % 50 / 10, unit="°C", quality="ok")))
        return out


def publish(address: BrokerAddress, msgs: list[tuple[str, bytes]], rate: float | None = None) -> float:
    """QoS 1 from one raw connection; ``rate`` None: flat out. Returns seconds until the last PUBACK."""
    pub = RawPublisher(address.host, address.port, f"bench-peer-pub-{os.getpid()}")
    t0 = time.perf_counter()
    chunk = 5000 if rate is None else max(1, int(rate / 10))
    for i in range(0, len(msgs), chunk):
        part = msgs[i:i + chunk]
        pub.send([pub.packet(t, b) for t, b in part])
        if rate is not None:
            time.sleep(max(0.0, t0 + (i + chunk) / rate - time.perf_counter()))
    if not pub.wait_acked(120):
        raise SystemExit(f"broker acknowledged {pub.acked} of {pub.sent}")
    elapsed = time.perf_counter() - t0
    pub.close()
    return elapsed


def wipe(address: BrokerAddress, client_id: str) -> None:
    """End the persistent session of ``client_id`` (a clean connect): it stops collecting messages."""
    MqttLink(address, client_id, clean_start=True).start().stop()


def prime(address: BrokerAddress, client_id: str, topic_filter: str) -> None:
    """Create the consumer's persistent session (its client id, its filter, QoS 1) afresh before it
    runs, so a backlog published now waits in the broker for it, and only that backlog (every session
    of this bench is wiped after its run: a wide filter would collect the other consumers' backlogs)."""
    wipe(address, client_id)
    link = MqttLink(address, client_id, clean_start=False).start()
    link.subscribe_wait(topic_filter, 1)
    link.stop()


# ---- InfluxDB and /proc ------------------------------------------------------------------------

def influx_query(url: str, q: str, db: str | None = None) -> dict:
    params = {"q": q} | ({"db": db} if db else {})
    req = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode(params).encode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def stored(url: str, db: str) -> int:
    try:
        res = influx_query(url, 'SELECT count("value") FROM "reading"', db)["results"][0]
    except OSError:
        return -1
    series = res.get("series")
    return series[0]["values"][0][1] if series else 0


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime (fields 14, 15)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def connected(pid: int, port: int) -> bool:
    """Has process ``pid`` an established TCP connection to ``port``? (/proc/net/tcp against its fds)"""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[2].endswith(f":{port:04X}") and cols[3] == "01":
                inodes.add(cols[9])
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


# ---- the two consumers -------------------------------------------------------------------------

@dataclass
class Consumer:
    name: str
    client_id: str
    topic_filter: str
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, database: str) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class StationWatchIngest(Consumer):
    def __init__(self, address: BrokerAddress, influx_url: str, workdir: Path):
        super().__init__("StationWatch ingest", "stationwatch-ingest", subscription())
        self.address, self.influx_url, self.workdir = address, influx_url, workdir

    def start(self, database: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stationwatch.cli", "ingest", "-c", str(EXAMPLE), "--broker",
             f"{self.address.host}:{self.address.port}", "--influx", self.influx_url, "--database", database,
             "--quarantine", str(self.workdir / f"{database}.q.db")],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / f"{database}.log", "ab"))


class NodeRed(Consumer):
    def __init__(self, home: Path, address: BrokerAddress, influx_host: str, influx_port: int, workdir: Path):
        super().__init__("Node-RED (join 1,000 → influxdb batch)", "bench-node-red",
                         f"sw/v1/+/+/{MessageClass.READING.value}/+")
        self.home, self.address, self.influx = home, address, (influx_host, influx_port)
        self.workdir = workdir

    def flow(self, database: str) -> list[dict]:
        point = ("const p = msg.payload; const t = msg.topic.split('/');\n"
                 "msg.payload = {measurement: 'reading', tags: {site: t[2], gateway: t[3], sensor: t[5]},\n"
                 "  fields: {value: p.value, quality: p.quality, seq: p.seq, historical: p.historical},\n"
                 "  timestamp: new Date(p.ts * 1000)};\nreturn msg;")
        return [
            {"id": "tab", "type": "tab", "label": "bench"},
            {"id": "broker", "type": "mqtt-broker", "name": "mosquitto", "broker": self.address.host,
             "port": str(self.address.port), "clientid": self.client_id, "autoConnect": True, "usetls": False,
             "protocolVersion": "4", "keepalive": "60", "cleansession": False, "autoUnsubscribe": False},
            {"id": "influx", "type": "influxdb", "hostname": self.influx[0], "port": str(self.influx[1]),
             "protocol": "http", "database": database, "name": "", "usetls": False, "influxdbVersion": "1.x"},
            {"id": "in", "type": "mqtt in", "z": "tab", "name": "", "topic": self.topic_filter, "qos": "1",
             "datatype": "json", "broker": "broker", "nl": False, "rap": True, "rh": 0, "inputs": 0,
             "x": 100, "y": 100, "wires": [["point"]]},
            {"id": "point", "type": "function", "z": "tab", "name": "point", "func": point, "outputs": 1,
             "x": 300, "y": 100, "wires": [["join"]]},
            {"id": "join", "type": "join", "z": "tab", "name": "", "mode": "custom", "build": "array",
             "property": "payload", "propertyType": "msg", "key": "topic", "joiner": "\\n", "joinerType": "str",
             "accumulate": False, "timeout": "1", "count": "1000", "reduceRight": False, "x": 500, "y": 100,
             "wires": [["batch"]]},
            {"id": "batch", "type": "influxdb batch", "z": "tab", "influxdb": "influx", "precision": "ms",
             "retentionPolicy": "", "name": "", "x": 700, "y": 100, "wires": []},
        ]

    def start(self, database: str) -> None:
        influx_query(f"http://{self.influx[0]}:{self.influx[1]}", f'CREATE DATABASE "{database}"')
        user = self.workdir / "node-red-user"
        user.mkdir(exist_ok=True)
        (user / "flows.json").write_text(json.dumps(self.flow(database)))
        (user / "settings.js").write_text(
            "module.exports = {flowFile: 'flows.json', uiPort: %d, uiHost: '127.0.0.1', credentialSecret: false,\n"
            "  logging: {console: {level: 'warn', metrics: false, audit: false}}};\n" % free_port())
        self.proc = subprocess.Popen([str(self.home / "node_modules" / ".bin" / "node"),
                                      str(self.home / "node_modules" / "node-red" / "red.js"), "-u", str(user)],
                                     stdout=open(self.workdir / f"node-red-{database}.log", "ab"), stderr=subprocess.STDOUT)


def install_node_red(home: Path) -> dict[str, str]:
    """npm install into ``home`` (skipped when it holds them already); returns the versions."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: apt-get install npm (make test-deps)")
    if not (home / "node_modules" / "node-red-contrib-influxdb").exists():
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text('{"private": true}')
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel", "error", *NPM_PACKAGES],
                       cwd=home, check=True, stdout=subprocess.DEVNULL)
    node = home / "node_modules" / ".bin" / "node"
    versions = {"node": subprocess.run([str(node), "--version"], capture_output=True, text=True).stdout.strip()}
    for pkg in ("node-red", "node-red-contrib-influxdb"):
        versions[pkg] = json.loads((home / "node_modules" / pkg / "package.json").read_text())["version"]
    return versions


# ---- the measures ------------------------------------------------------------------------------

def drain(c: Consumer, address: BrokerAddress, influx_url: str, database: str, msgs) -> dict[str, float]:
    """Backlog into the primed session, then the consumer starts; rate and CPU from the moment its
    connection to the broker is up (its start-up left out) until the last point is stored."""
    prime(address, c.client_id, c.topic_filter)
    publish(address, msgs)
    n = len(msgs)
    c.start(database)
    pid = c.proc.pid
    try:
        deadline = time.monotonic() + 120
        while not connected(pid, address.port):
            if time.monotonic() > deadline or c.proc.poll() is not None:
                raise SystemExit(f"{c.name} did not connect to the broker")
            time.sleep(0.005)
        t0, cpu0 = time.perf_counter(), cpu_s(pid)
        peak, deadline = rss_mb(pid), time.monotonic() + 300
        while time.monotonic() < deadline:
            count = stored(influx_url, database)
            now, cpu = time.perf_counter(), cpu_s(pid)
            peak = max(peak, rss_mb(pid))
            if count >= n:
                break
            if c.proc.poll() is not None:
                raise SystemExit(f"{c.name} exited with {c.proc.returncode}")
            time.sleep(0.05)
    finally:
        c.stop()
        wipe(address, c.client_id)
    if count < n:
        raise SystemExit(f"{c.name} stored {count} of {n} in 300 s")
    return {"rate": n / (now - t0), "cpu_us": (cpu - cpu0) / n * 1e6, "rss": peak, "stored": count}


# what a sample was doing: walking its stack from the leaf, the first frame matching a rule names it
def _poll_frame() -> str:
    """The frame of ingest's own MQTT link waiting in poll (py-spy names a frame by function and line)."""
    import stationwatch.core.mqtt_stream as link
    lines = Path(link.__file__).read_text().splitlines()
    return f"core/mqtt_stream.py:{next(i for i, ln in enumerate(lines, 1) if 'poller.poll(' in ln)})"


WORK = (("waiting (poll, select, Condition.wait)", ("Condition.wait (", "Client._loop (paho", _poll_frame())),
        ("handing to the writer (Backlog.put, notify)", ("Backlog.put (",)),
        ("express lane: readings in one pass (msgspec, checks, point and line)", ("broker/express.py",)),
        ("contract parse: pydantic", ("pydantic/",)),
        ("contract parse: JSON", ("json/",)),
        ("contract parse: other", ("core/contract.py", "core/wire.py")),
        ("admission: inventory, clock, sequence", ("broker/admission.py", "broker/sequences.py")),
        ("InfluxDB client: points and line protocol", ("influxdb/", "broker/influx.py", "broker/line_protocol.py")),
        ("HTTP to InfluxDB (requests, urllib3, http.client)", ("requests/", "urllib3/", "http/client.py")),
        ("MQTT link: packets and socket (core/mqtt_stream.py on mqtt5; paho)", ("core/mqtt_stream.py", "paho/")),
        ("ingest itself", ("broker/",)))
WAITING = WORK[0][0]


def _label(frames: list[str]) -> str:
    for frame in reversed(frames):
        for label, patterns in WORK:
            if any(p in frame for p in patterns):
                return label
    return "other"


def profile(c: "StationWatchIngest", address: BrokerAddress, influx_url: str, database: str, msgs,
            out: Path) -> dict:
    """py-spy (sampling, --nonblocking, every thread) on the ingest while it drains ``msgs``; returns the
    busy share of each thread (its samples / the samples a fully busy thread would have) and where the
    samples of the busiest threads go."""
    prime(address, c.client_id, c.topic_filter)
    publish(address, msgs)
    c.start(database)
    rate = 200
    try:
        while not connected(c.proc.pid, address.port):
            time.sleep(0.005)
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(c.proc.pid), "--format",
                                "raw", "--output", str(out), "--rate", str(rate), "--threads", "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.perf_counter()
        while stored(influx_url, database) < len(msgs) and time.perf_counter() - t0 < 300:
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        spy.send_signal(2)  # SIGINT: py-spy writes what it has
        spy.wait(30)
    finally:
        c.stop()
        wipe(address, c.client_id)
    threads: dict[str, int] = {}
    work: dict[str, dict[str, int]] = {}
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        name = frames[0].split(":", 1)[-1].strip() or frames[0]
        name = "MQTT network thread (paho)" if name.startswith("paho") else name
        n = int(count)
        threads[name] = threads.get(name, 0) + n
        label = _label(frames[1:])
        work.setdefault(name, {}).setdefault(label, 0)
        work[name][label] += n
    expected = rate * elapsed  # samples of a thread on the CPU (or waiting) the whole time
    busy = {k: (v - work[k].get(WAITING, 0)) / expected for k, v in threads.items()}
    return {"elapsed": elapsed, "rate": len(msgs) / elapsed, "threads": busy,
            "work": {k: {lbl: v / (threads[k] - w.get(WAITING, 0)) for lbl, v in w.items() if lbl != WAITING}
                     for k, w in work.items() if threads[k] > w.get(WAITING, 0)}}


def ceiling_mosquitto_sub(address: BrokerAddress, msgs) -> float:
    """`mosquitto_sub` draining the same backlog from its persistent session, printing to /dev/null."""
    client_id = "bench-mosquitto-sub"
    prime(address, client_id, subscription())
    publish(address, msgs)
    t0 = time.perf_counter()
    subprocess.run(["mosquitto_sub", "-h", address.host, "-p", str(address.port), "-i", client_id, "-c", "-q", "1",
                    "-t", subscription(), "-C", str(len(msgs))], check=True, stdout=subprocess.DEVNULL, timeout=300)
    rate = len(msgs) / (time.perf_counter() - t0)
    wipe(address, client_id)
    return rate


def outage(c: Consumer, address: BrokerAddress, influx: LocalInfluxDB, database: str, feed: Feed) -> dict[str, float]:
    """A steady stream of STREAM_RATE/s for STREAM_S; InfluxDB stopped at OUTAGE_AT_S for OUTAGE_S and
    started again; then the consumer has 120 s to catch up. Loss = published − stored."""
    prime(address, c.client_id, c.topic_filter)
    c.start(database)
    warm = feed.bodies(1, time.time())
    publish(address, warm)  # one reading first: the consumer is connected and writing when the stream starts
    deadline = time.monotonic() + 60
    while stored(influx.url, database) < 1:
        if time.monotonic() > deadline:
            raise SystemExit(f"{c.name} did not store its first reading in 60 s")
        time.sleep(0.1)
    msgs = feed.bodies(int(STREAM_RATE * STREAM_S), time.time())
    publisher = threading.Thread(target=publish, args=(address, msgs, STREAM_RATE), daemon=True)
    t0 = time.monotonic()
    publisher.start()
    time.sleep(OUTAGE_AT_S)
    influx.stop()
    down = time.monotonic()
    time.sleep(OUTAGE_S)
    influx.start()
    up = time.monotonic()
    publisher.join()
    total, last, still = len(msgs) + 1, -1, time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        count = stored(influx.url, database)
        if count >= total:
            break
        if count != last:
            last, still = count, time.monotonic()
        elif time.monotonic() - still > 20:  # nothing more for 20 s: what is lost stays lost
            break
        time.sleep(0.5)
    caught_up = time.monotonic() - t0
    c.stop()
    wipe(address, c.client_id)
    count = stored(influx.url, database)
    return {"published": total, "stored": count, "lost": total - count, "outage_s": up - down, "until_s": caught_up}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--node-red-dir", type=Path, help="install Node-RED here and keep it (default: a temporary directory)")
    ap.add_argument("--skip-outage", action="store_true")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of the ingest")
    args = ap.parse_args()
    host_info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home = args.node_red_dir or tmp / "node-red"
        t_install = time.perf_counter()
        versions = install_node_red(home)
        t_install = time.perf_counter() - t_install
        with LocalMosquitto(tmp / "m") as broker, LocalInfluxDB(tmp / "i") as influx:
            address = BrokerAddress(broker.host, broker.port)
            feed = Feed()
            sw = StationWatchIngest(address, influx.url, tmp)
            nr = NodeRed(home, address, influx.host, influx.port, tmp)
            drains: dict[str, list[dict]] = {sw.name: [], nr.name: []}
            ceilings = []
            for trial in range(args.trials):
                ceilings.append(ceiling_mosquitto_sub(address, feed.bodies(args.messages, time.time())))
                for c in (sw, nr):
                    db = f"drain_{'sw' if c is sw else 'nr'}_{trial}"
                    r = drain(c, address, influx.url, db, feed.bodies(args.messages, time.time()))
                    drains[c.name].append(r)
                    print(f"{c.name} trial {trial}: {r}", flush=True)
            outages = {} if args.skip_outage else {
                c.name: outage(c, address, influx, f"outage_{'sw' if c is sw else 'nr'}", feed) for c in (sw, nr)}
            for name, o in outages.items():
                print(f"{name} outage: {o}", flush=True)
            prof = None if args.no_profile else profile(sw, address, influx.url, "profile_sw",
                                                         feed.bodies(args.messages, time.time()), tmp / "ingest.pyspy")
            print(f"profile: {prof}", flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("rate", "cpu_us", "rss")} for name, rs in drains.items()}
    s, n = med[sw.name], med[nr.name]
    drain_ratio, cpu_ratio = s["rate"] / n["rate"], s["cpu_us"] / n["cpu_us"]
    sw_lost = outages[sw.name]["lost"] if outages else None
    verdict = "met" if drain_ratio >= 1.5 and cpu_ratio <= 0.7 and sw_lost == 0 else "NOT met"
    rows = "\n".join(
        f"| {name} | {', '.join(format(r['rate'], ',.0f') for r in drains[name])} | **{med[name]['rate']:,.0f}** | "
        f"{med[name]['cpu_us']:.0f} µs | {med[name]['rss']:.0f} MB | " +
        (f"{outages[name]['lost']:,} of {outages[name]['published']:,} ({outages[name]['lost'] / outages[name]['published']:.0%})"
         if outages else "not run") + " |" for name in drains)
    text = f"""## The peer beside us (Node-RED + node-red-contrib-influxdb)

Command: `make bench` (this part: `.venv/bin/python tests/benchmarks/bench_peer.py --messages {args.messages} --trials {args.trials}`).
Machine: {host_info}.
Conditions: one Mosquitto (project config) and one InfluxDB 1.6.7 started fresh for both; Node.js {versions['node']},
Node-RED {versions['node-red']} and node-red-contrib-influxdb {versions['node-red-contrib-influxdb']} installed from npm into a
temporary directory ({t_install:.0f} s). Node-RED's flow: mqtt in (QoS 1, parsed JSON, `cleansession: false`) →
function (the point: tags site, gateway, sensor; fields value, quality, seq, historical) → join of 1,000 (1 s timeout)
→ influxdb batch (`precision: ms`); default settings otherwise (editor on). StationWatch: `stationwatch ingest -c
docs/examples/city-station.yaml` in its own process (its own MQTT 5 link, ack after write; its points carry room and kind too).
Messages: the example gateway's single-reading messages as its agent writes them (8 sensors), QoS 1,
published by a raw-socket publisher with pre-encoded packets (gateway/fleet.py) into the consumer's
persistent session before it connects. Drain rate and CPU from the moment the consumer's TCP connection to the
broker is established (seen in /proc; its start-up left out) until the last point is stored; CPU = utime + stime of its own process (InfluxDB's work not included); RSS = highest
VmRSS sampled every 0.1 s while draining. Outage: a stream of {STREAM_RATE:,}/s for {STREAM_S:.0f} s; at {OUTAGE_AT_S:.0f} s the
InfluxDB is stopped for {OUTAGE_S:.0f} s and started again; then up to 120 s to catch up. Every process on the same 2 cores.

Ceiling: `mosquitto_sub -c -q 1` draining the same backlog: {', '.join(f'{x:,.0f}' for x in ceilings)} msg/s
(median **{statistics.median(ceilings):,.0f}**).

| consumer | drain of {args.messages:,}, msg/s (trials) | median | CPU per message | RSS | lost through the outage |
|---|---|---|---|---|---|
{rows}

Ratios in this run: drain StationWatch / Node-RED **{drain_ratio:.2f}** (goal ≥ 1.5), CPU per message
**{cpu_ratio:.2f}** (goal ≤ 0.7), StationWatch lost {sw_lost if sw_lost is not None else 'not measured'} through the outage (goal 0): **{verdict}**.
"""
    if prof:
        busy = sorted(prof["threads"].items(), key=lambda kv: -kv[1])
        lines = []
        for name, share in busy[:3]:
            parts = ", ".join(f"{lbl} {v:.0%}" for lbl, v in sorted(prof["work"][name].items(), key=lambda kv: -kv[1]) if v >= 0.02)
            lines.append(f"| {name} | {share:.0%} | {parts} |")
        text += f"""
Where the ingest spends its time: py-spy 0.4 (`record --nonblocking --threads --rate 200`) attached to
`stationwatch ingest` while it drained a further backlog of {args.messages:,} ({prof['rate']:,.0f} msg/s under the profiler,
{prof['elapsed']:.1f} s). Busy = the thread's samples, less those waiting in poll, select or on a condition, / the samples of a thread\nbusy all the time (py-spy counts some waits as active, hence the subtraction).

| thread | busy | its samples by what they were doing (≥ 2 %) |
|---|---|---|
""" + "\n".join(lines) + "\n"
    write_section("peer", text)
    print(text)


if __name__ == "__main__":
    main()
