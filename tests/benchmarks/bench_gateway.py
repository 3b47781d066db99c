"""Gateway benchmark: the agent's footprint (RSS, CPU per reading) with 64 sensors at one reading
per 10 s and per 1 s, each measured on the production command (``stationwatch gateway``, which
execs the runtime) reading 64 DS18B20 files and talking to a real local Mosquitto; what
the RSS is made of (import by import, from a bare ``python``); and the spool's replay rate for
1,000,000 buffered readings with its memory sampled during the replay, against the rate of a
bare paho publisher measured in the same run.

    .venv/bin/python tests/benchmarks/bench_gateway.py [--seconds 60] [--replay 1000000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, publish_in_process, write_section  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stationwatch.broker.stack import LocalMosquitto  # noqa: E402
from stationwatch.core.mqtt import BrokerAddress, MqttLink  # noqa: E402
from stationwatch.core.wire import MessageClass, payload, topic  # noqa: E402
from stationwatch.gateway.spool import Outgoing, Spool  # noqa: E402

from modbus_line import Line, Server  # noqa: E402

SENSORS = 64
TICK = os.sysconf("SC_CLK_TCK")

# the DS18B20 files the measured gateway reads (a temp dir standing in for /sys/bus/w1/devices)
W1_SLAVE = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"


def w1_address(i: int) -> str:
    return f"28-{i:012x}"


REPLAY = r"""
import sys, time
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.gateway.forwarder import Forwarder
from stationwatch.gateway.spool import Spool
spool = Spool(sys.argv[1], max_bytes=1 << 40)
link = MqttLink(BrokerAddress(sys.argv[2], int(sys.argv[3])), "bench-replay")
link.client.max_inflight_messages_set(1000)
forwarder = Forwarder(spool, link, window=1000)
link.start()
print("start", spool.rows, flush=True)
t0 = time.perf_counter()
forwarder.start()
forwarder.drain(3600)
print("done", time.perf_counter() - t0, spool.stats.sent["reading"], spool.stats.replayed, flush=True)
forwarder.stop(); link.stop(); spool.close()
"""

# what the footprint is made of: RSS after each import, in one fresh interpreter. The first rows are
# what the gateway runtime loads; the last row is what `stationwatch gateway` leaves behind by exec.
LAYERS = r"""
import sys
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
out = [("python (bare interpreter)", rss())]
for label, module in [("+ sqlite3", "sqlite3"), ("+ paho-mqtt (with ssl)", "paho.mqtt.client"),
                      ("+ gpiozero", "gpiozero"),
                      ("+ the runtime: agent, spool, plan, wire contract", "stationwatch.gateway.runtime"),
                      ("+ the drivers (GPIO, MCP3008, 1-Wire, camera, health, Modbus)", "stationwatch.sensors.all_drivers"),
                      ("+ pymodbus (only on a gateway with an RS-485 bus)", "pymodbus.client"),
                      ("(not in the runtime) + pydantic and the validated config", "stationwatch.core.config")]:
    if module == "stationwatch.sensors.all_drivers":
        for m in ("contact", "analog", "onewire", "camera", "health", "modbus"):
            __import__("stationwatch.sensors." + m)
    else:
        __import__(module)
    out.append((label, rss()))
import json
print(json.dumps(out))
"""


def proc_rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


MODBUS_UNITS = 8  # the Modbus run: 8 RS-485 transmitters (units 1..8) in place of 8 DS18B20


def station(interval_s: float, spool: Path, bus_port: str | None = None) -> dict:
    """64 thermometers on one gateway with a buzzer, relay, LED and silence button: DS18B20s, or
    with ``bus_port`` 56 DS18B20s and 8 Modbus transmitters on one RS-485 line."""
    cfg = {"version": 1, "name": "bench", "bureaus": [{"id": "b", "name": "B", "level": "city"}],
            "sites": [{"id": "s", "name": "S", "bureau": "b",
                       "rooms": [{"id": "r", "name": "R", "kind": "dormitory"}]}],
            "gateways": [{"id": "gw-bench", "name": "GW", "site": "s",
                          "agent": {"spool_path": str(spool), "outputs": {"buzzer": 17, "relay": 27, "led": 22},
                                    "silence_button": 23}}],
            "sensors": [{"id": f"t{i:02d}", "name": f"T{i}", "kind": "temperature", "gateway": "gw-bench",
                         "room": "r", "interval_s": interval_s,
                         "source": {"driver": "onewire", "address": w1_address(i)}} for i in range(SENSORS)]}
    if bus_port is not None:
        cfg["gateways"][0]["buses"] = [{"id": "rs485-1", "port": bus_port}]
        for unit, sensor in enumerate(cfg["sensors"][:MODBUS_UNITS], start=1):
            sensor["source"] = {"driver": "modbus", "bus": "rs485-1", "unit": unit,
                                "register_map": "th-transmitter", "point": "temperature"}
    return cfg


def footprint(address: BrokerAddress, interval_s: float, seconds: float, workdir: Path,
              bus_port: str | None = None) -> dict:
    """Run an agent process for ``seconds`` after a warm-up; RSS, CPU and readings delivered."""
    count = [0]
    lock = threading.Lock()

    def on_message(t, p, m):
        with lock:
            count[0] += 1
    sub = MqttLink(address, f"bench-gw-sub-{interval_s}", on_message=on_message).start()
    sub.subscribe_wait("sw/v1/s/gw-bench/reading/+")
    cfg = workdir / f"station-{interval_s}.yaml"  # JSON is YAML
    cfg.write_text(json.dumps(station(interval_s, workdir / f"spool-{interval_s}-{bus_port is not None}.db", bus_port)))
    w1 = workdir / "w1"
    for i in range(SENSORS):
        (w1 / w1_address(i)).mkdir(parents=True, exist_ok=True)
        (w1 / w1_address(i) / "w1_slave").write_text(W1_SLAVE)
    # the production command (what the systemd unit runs); it execs the runtime in the same process
    proc = subprocess.Popen([sys.executable, "-m", "stationwatch.cli", "gateway", "-c", str(cfg),
                             "--broker", f"{address.host}:{address.port}", "--onewire-base", str(w1)],
                            env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while count[0] < SENSORS and time.monotonic() < deadline:  # running: every sensor read once
            time.sleep(0.1)
        time.sleep(min(5.0, interval_s))  # warm-up
        cpu0, n0, t0 = proc_cpu_s(proc.pid), count[0], time.monotonic()
        rss = []
        while time.monotonic() - t0 < seconds:
            rss.append(proc_rss_kb(proc.pid))
            time.sleep(1.0)
        cpu, n, wall = proc_cpu_s(proc.pid) - cpu0, count[0] - n0, time.monotonic() - t0
        hwm = proc_rss_kb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(30)
        sub.stop()
    return {"interval": interval_s, "modbus": bus_port is not None, "readings": n, "wall": wall, "cpu": cpu, "rss_max": max(rss), "hwm": hwm,
            "core_pct": 100 * cpu / wall, "ms_per_reading": 1000 * cpu / max(n, 1)}


def fill(path: Path, n: int) -> float:
    """``n`` readings into a spool as if the broker had been away; returns seconds taken."""
    t = topic("s", "gw-bench", MessageClass.READING, "t00")
    item = Outgoing(MessageClass.READING, t, lambda seq: payload(
        1_795_614_042.0 + seq, seq, value=21.5, unit="°C", quality="ok"))
    t0 = time.perf_counter()
    with Spool(path, max_bytes=1 << 40) as spool:
        for i in range(0, n, 10_000):
            spool.append([item] * min(10_000, n - i), offline=True)
    return time.perf_counter() - t0


def replay(address: BrokerAddress, path: Path) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", REPLAY, str(path), address.host, str(address.port)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("start")
    rss = []
    done = threading.Event()
    result: list[str] = []
    threading.Thread(target=lambda: (result.append(proc.stdout.readline()), done.set()), daemon=True).start()
    while not done.wait(0.2):
        rss.append(proc_rss_kb(proc.pid))
    proc.wait(60)
    _, elapsed, sent, replayed = result[0].split()
    quarters = [rss[min(len(rss) - 1, len(rss) * q // 4)] / 1024 for q in range(5)]
    return {"elapsed": float(elapsed), "sent": int(sent), "replayed": int(replayed),
            "rss_min": min(rss), "rss_max": max(rss), "samples": len(rss),
            "trajectory": " → ".join(f"{mb:.1f}" for mb in quarters)}


def ceiling_publish(address: BrokerAddress, n: int) -> float:
    """A bare paho publisher (QoS 1, 1,000 in flight) in its own process: messages/s to PUBACK."""
    msgs = [(topic("s", "gw-ceiling", MessageClass.READING, "t00"),
             payload(1_795_614_042.0 + i, i, value=21.5, unit="°C", quality="ok")) for i in range(n)]
    start, done, proc = publish_in_process(address.host, address.port, msgs)
    start.set()
    elapsed = done.get(timeout=120)
    proc.join()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=45.0, help="measuring window per footprint run")
    ap.add_argument("--replay", type=int, default=1_000_000, help="readings buffered for the replay run")
    args = ap.parse_args()
    host_info = machine()
    layers = json.loads(subprocess.run([sys.executable, "-c", LAYERS], capture_output=True, text=True,
                                       check=True).stdout)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with LocalMosquitto(tmp / "m") as broker:
            address = BrokerAddress(broker.host, broker.port)
            runs = [footprint(address, interval, args.seconds, tmp) for interval in (10.0, 1.0)]
            line = Line()  # a pty pair to a real pymodbus RTU server (the tests' Modbus seam)
            server = Server(line.server_port, {unit: [456, 215] for unit in range(1, MODBUS_UNITS + 1)})
            try:
                runs.append(footprint(address, 10.0, args.seconds, tmp, bus_port=line.client_port))
            finally:
                server.close()
                line.close()
            fill_s = fill(tmp / "replay.db", args.replay)
            spool_mb = sum(f.stat().st_size for f in tmp.glob("replay.db*")) / 2**20
            rep = replay(address, tmp / "replay.db")
            ceiling = ceiling_publish(address, 50_000)
    floor = layers[0][1]
    rate = rep["sent"] / rep["elapsed"]
    slow = runs[0]
    rss_mb, floor_mb = slow["rss_max"] / 1024, floor / 1024
    modbus_mb = next(r["rss_max"] for r in runs if r["modbus"]) / 1024
    met_rss = "met" if rss_mb <= 35 else "NOT met"
    met_cpu = "met" if slow["core_pct"] < 2 else "NOT met"
    met_rate = "met" if rate >= 10_000 else "NOT met"
    rows = "\n".join(f"| 64 sensors, one reading per {r['interval']:g} s"
                     f"{f' ({MODBUS_UNITS} on a Modbus RTU bus: pymodbus loaded)' if r['modbus'] else ' (DS18B20)'} | "
                     f"{r['readings']:,} in {r['wall']:.0f} s | "
                     f"{r['rss_max'] / 1024:.1f} MB (peak {r['hwm'] / 1024:.1f}) | {r['core_pct']:.2f} % | "
                     f"{r['ms_per_reading']:.2f} ms |" for r in runs)
    layer_rows = "\n".join(f"| {label} | {kb / 1024:.1f} MB | +{(kb - prev) / 1024:.1f} MB |"
                           for (label, kb), (_, prev) in zip(layers, [layers[0]] + layers[:-1]))
    text = f"""## Gateway agent (footprint, spool replay)

Command: `make bench` (this part: `.venv/bin/python tests/benchmarks/bench_gateway.py --seconds {args.seconds:g} --replay {args.replay}`).
Machine: {host_info}.
Conditions: a fresh Mosquitto (project config) on this machine; the gateway started as the systemd unit starts it,
`stationwatch gateway -c station.yaml` (validates, writes the plan, execs the runtime in the same process), with
64 DS18B20 thermometers read through the 1-Wire driver from `w1_slave` files in a temp dir (`--onewire-base`;
the kernel's own 1-Wire bus time is not in it), the gateway-health driver, gpiozero MockFactory pins for buzzer,
relay, LED and button (`GPIOZERO_PIN_FACTORY=mock`), spool with `synchronous=FULL` on this machine's disk (an SD
card fsyncs slower); a subscriber counts the readings that arrived; CPU is the process's utime + stime from
`/proc`, RSS its VmRSS sampled every second after the first reading of every sensor arrived.

| run | readings delivered | RSS (max sampled) | CPU, share of one core | CPU per reading |
|---|---|---|---|---|
{rows}

Goal at 64 sensors every 10 s: RSS ≤ 35 MB — **{met_rss}** ({rss_mb:.1f} MB); under 2 % of one core — **{met_cpu}**
({slow['core_pct']:.2f} %). RSS / bare-interpreter floor: **{rss_mb / floor_mb:.1f}×** ({floor_mb:.1f} MB measured in the same run).
The same gateway with {MODBUS_UNITS} of its sensors on a Modbus RTU bus: {modbus_mb:.1f} MB — **{"within" if modbus_mb <= 35 else "over"}** the
35 MB (pymodbus brings asyncio along).
What the RSS is made of (one fresh interpreter, RSS after each import):

| layer | RSS | added |
|---|---|---|
{layer_rows}

Spool replay: {args.replay:,} readings buffered (filled in {fill_s:.0f} s; {spool_mb:.0f} MB on disk), then sent by the
agent's forwarder (1,000 awaiting PUBACK) to Mosquitto with no subscriber on those topics.

| measure | value |
|---|---|
| reference: bare paho publisher, QoS 1, 1,000 in flight, 50,000 messages handed to paho at once (its own process) | {ceiling:,.0f} msg/s |
| replay, spool → PUBACK → removed from the spool | **{rate:,.0f} readings/s** ({rep['sent']:,} in {rep['elapsed']:.0f} s; flagged historical: {rep['replayed']:,}) |
| ratio replay / reference | {rate / ceiling:.2f} |
| replay process RSS during the replay ({rep['samples']} samples every 0.2 s) | min {rep['rss_min'] / 1024:.1f} MB, max {rep['rss_max'] / 1024:.1f} MB |
| … at the start, ¼, ½, ¾ and end of the replay | {rep['trajectory']} MB |

Goal ≥ 10,000 readings/s: **{met_rate}**. Load average when the replay ended: {os.getloadavg()[0]:.2f} on
{os.cpu_count()} cores. The goal is an absolute rate and holds only on a machine with cores to spare; on a
busy one, the ratio to the reference measured beside it is the figure to read.
"""
    write_section("gateway", text)
    print(text)


if __name__ == "__main__":
    main()
