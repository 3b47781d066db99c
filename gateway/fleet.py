"""A national fleet from one process: N gateways' traffic — 64 sensors every 10 s per site, camera
heartbeats, a retained birth per gateway — in the gateway's own message shapes (topics from
:func:`~stationwatch.core.wire.topic`, bodies from :func:`~stationwatch.core.wire.payload`, seq
rising by one per gateway message), with scenarios (fire, cold room, camera offline, night exit)
firing at random sites. Used by the national-load benchmark and its test.

    python -m stationwatch.gateway.fleet --sites 2000 --broker 127.0.0.1:1883 --config-out national.yaml
    python -m stationwatch.gateway.fleet --sites 2000 --capacity   # how fast this process can publish

Why not 2,000 paho clients: paho in one Python process tops out near 6–9k QoS 1 msg/s here,
below the 12,800 readings/s of 2,000 sites. :class:`RawPublisher` writes MQTT 3.1.1 PUBLISH
packets straight onto one socket (bodies pre-encoded a cycle ahead, thousands of packets per
``sendall``) and counts the PUBACKs on a reader thread, so the fleet is not what sets the pace.
One connection carries every gateway: what the fleet drives is the message stream, not 2,000
TCP sessions (the per-gateway wills and reconnects are the gateway tests' business).
"""
from __future__ import annotations

import argparse
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from stationwatch.core.config import StationConfig, parse_config
from stationwatch.core.wire import MessageClass, batch_payload, payload, topic

from .building import most_recent

SENSORS_PER_SITE = 64
CYCLE_S = 10.0  # every sensor reads once per cycle (the config's default interval_s)
CAMERA_BEAT_S = 30.0
TZ = "Asia/Shanghai"

# One site: rooms and the 64 sensors (kind, room) and 4 cameras. Ids get the site's prefix.
ROOMS = ([{"id": f"dorm-{i}", "name": f"宿舍{i}", "kind": "dormitory", "zone": f"z-dorm-{(i + 1) // 2}"} for i in range(1, 9)]
         + [{"id": "minors-1", "name": "未成年人宿舍", "kind": "minors_dormitory", "zone": "z-minors"},
            {"id": "med-obs", "name": "医疗观察室", "kind": "medical_observation", "zone": "z-medical"},
            {"id": "kitchen", "name": "厨房", "kind": "kitchen"}, {"id": "boiler", "name": "锅炉房", "kind": "boiler_room"},
            {"id": "hall", "name": "接待大厅", "kind": "public"}, {"id": "exit-main", "name": "正门出口", "kind": "exit"},
            {"id": "exit-back", "name": "后门出口", "kind": "exit"}, {"id": "yard", "name": "室外", "kind": "public", "sleeping": False}])
SLEEPING = [r["id"] for r in ROOMS if r["kind"] in ("dormitory", "minors_dormitory", "medical_observation")]


def _site_sensors() -> list[dict[str, Any]]:
    s: list[dict[str, Any]] = []
    for room in SLEEPING:  # 10 rooms: two smoke detectors, a thermometer, a humidity sensor, a door each = 50
        s += [{"id": f"smk-{room}-a", "kind": "smoke", "room": room}, {"id": f"smk-{room}-b", "kind": "smoke", "room": room},
              {"id": f"t-{room}", "kind": "temperature", "room": room}, {"id": f"rh-{room}", "kind": "humidity", "room": room},
              {"id": f"door-{room}", "kind": "door", "room": room}]
    s += [{"id": "smk-kitchen", "kind": "smoke", "room": "kitchen"}, {"id": "heat-kitchen", "kind": "heat", "room": "kitchen"},
          {"id": "smk-boiler", "kind": "smoke", "room": "boiler"}, {"id": "heat-boiler", "kind": "heat", "room": "boiler"},
          {"id": "supply-main", "kind": "supply_temperature", "room": "boiler"},
          {"id": "return-main", "kind": "return_temperature", "room": "boiler"},
          {"id": "boiler-fault", "kind": "boiler_fault", "room": "boiler"}, {"id": "t-hall", "kind": "temperature", "room": "hall"},
          {"id": "t-outdoor", "kind": "outdoor_temperature", "room": "yard"},
          {"id": "door-exit-main", "kind": "door", "room": "exit-main", "exit": True},
          {"id": "door-exit-back", "kind": "door", "room": "exit-back", "exit": True},
          {"id": "rh-hall", "kind": "humidity", "room": "hall"}, {"id": "rh-kitchen", "kind": "humidity", "room": "kitchen"},
          {"id": "pressure-main", "kind": "pressure", "room": "boiler"}]
    assert len(s) == SENSORS_PER_SITE, len(s)
    return s


SITE_SENSORS = _site_sensors()
CAMERAS = [("cam-hall", "hall"), ("cam-exit-main", "exit-main"), ("cam-med-obs", "med-obs"), ("cam-minors", "minors-1")]
# the value a healthy building reads, by kind (contacts at rest: 0)
REST_VALUE = {"temperature": 20.5, "humidity": 45.0, "heat": 22.0, "supply_temperature": 58.0, "return_temperature": 45.0,
              "outdoor_temperature": -3.0, "pressure": 2.1}
DRIFT_STEP, DRIFT_MAX = 0.1, 0.5  # an analog reading's step and how far it strays from rest (°C, %RH, bar)
UNIT = {"temperature": "°C", "heat": "°C", "supply_temperature": "°C", "return_temperature": "°C",
        "outdoor_temperature": "°C", "humidity": "%RH", "pressure": "bar"}


def site_id(i: int) -> str:
    return f"n{i:04d}"


def national_config(sites: int, notify: list[str] | None = None) -> dict[str, Any]:
    """The organisation config of ``sites`` identical sites (one province, a city per 100 sites), as
    the YAML a bureau would write; ``notify``: apprise URLs of the one duty contact of every site."""
    bureaus = [{"id": "prov", "name": "全国演练省民政厅", "level": "province"}]
    bureaus += [{"id": f"city-{c}", "name": f"演练市{c}民政局", "level": "city", "parent": "prov"}
                for c in range((sites + 99) // 100)]
    cfg: dict[str, Any] = {"version": 1, "name": f"全国负载 {sites} 站 / national load, {sites} sites",
                           "bureaus": bureaus, "sites": [], "gateways": [], "sensors": [], "cameras": []}
    for i in range(sites):
        sid = site_id(i)
        cfg["sites"].append({"id": sid, "name": f"救助站 {sid}", "bureau": f"city-{i // 100}", "timezone": TZ,
                             "rooms": ROOMS})
        cfg["gateways"].append({"id": f"gw-{sid}", "name": f"{sid} 网关", "site": sid})
        cfg["sensors"] += [{**s, "id": f"{sid}-{s['id']}", "name": f"{sid} {s['id']}", "gateway": f"gw-{sid}"}
                           for s in SITE_SENSORS]
        cfg["cameras"] += [{"id": f"{sid}-{c}", "name": f"{sid} {c}", "gateway": f"gw-{sid}", "room": room,
                            "probe": "tcp://192.0.2.1:554"} for c, room in CAMERAS]
    cfg["contacts"] = [{"id": "duty", "name": "值班员", "role": "staff", "sites": [site_id(i) for i in range(sites)],
                        "phone": "13800000001", "channels": notify or []}]
    cfg["routing"] = {"notify": ["duty"]}
    return cfg


def write_config(sites: int, path: Path, notify: list[str] | None = None) -> StationConfig:
    raw = national_config(sites, notify)
    path.write_text(yaml.dump(raw, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True, sort_keys=False), encoding="utf-8")
    return parse_config(raw)


# ---- MQTT 3.1.1 packets, written by hand ------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


class RawPublisher:
    """One MQTT 3.1.1 connection that publishes QoS 0/1 packets in bulk; PUBACKs counted by a reader
    thread. At most ``window`` QoS 1 messages are unacknowledged (packet ids must not wrap past one)."""

    def __init__(self, host: str, port: int, client_id: str, window: int = 30000):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _string(client_id.encode())
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = self._read(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the fleet's connection: CONNACK {connack.hex()}")
        self.sock.settimeout(None)
        self.window, self.sent, self.acked, self.closed = window, 0, 0, False
        self._mid = 0
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read_acks, name="fleet-acks", daemon=True)
        self._reader.start()

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the fleet's connection")
            buf += chunk
        return buf

    def _read_acks(self) -> None:
        pending = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                pending += chunk
                n = 0
                while len(pending) >= 4 and pending[0] == 0x40:  # PUBACK: 0x40 0x02 id id
                    pending = pending[4:]
                    n += 1
                if pending and pending[0] != 0x40 and len(pending) >= 2:
                    pending = pending[2 + pending[1]:]  # anything else (none expected) is skipped
                if n:
                    with self._cv:
                        self.acked += n
                        self._cv.notify_all()
        except OSError:
            pass
        with self._cv:
            self.closed = True
            self._cv.notify_all()

    def packet(self, topic_name: str, body: bytes, qos: int = 1, retain: bool = False) -> bytes:
        t = _string(topic_name.encode())
        if qos:
            self._mid = self._mid % 65535 + 1
            t += struct.pack("!H", self._mid)
        return bytes([0x30 | (qos << 1) | int(retain)]) + _varint(len(t) + len(body)) + t + body

    def send(self, packets: list[bytes]) -> None:
        """Send pre-built QoS 1 packets, in slices of half the window, each once there is room for it
        (a slice never waits for more room than the window has). ConnectionError if the broker closed."""
        step = max(1, self.window // 2)
        for i in range(0, len(packets), step):
            part = packets[i:i + step]
            with self._cv:
                while self.sent - self.acked + len(part) > self.window and not self.closed:
                    self._cv.wait(5)
                if self.closed:
                    raise ConnectionError(f"broker closed the fleet's connection ({self.acked} of {self.sent} acknowledged)")
            self.sock.sendall(b"".join(part))
            self.sent += len(part)

    def wait_acked(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.acked < self.sent and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()


# ---- bodies, encoded once per shape ---------------------------------------------------------

_TS, _SEQ = 1_111_111_111.25, 987_654_321  # stand-ins, found and cut out of payload()'s own output


class Template:
    """A body as :func:`payload` writes it for fixed fields, cut where ``ts`` and ``seq`` go; ``render``
    joins bytes instead of running ``json.dumps`` per message (float repr is what json writes)."""

    def __init__(self, **fields: Any):
        body = payload(_TS, _SEQ, **fields)
        head, rest = body.split(repr(_TS).encode(), 1)
        mid, tail = rest.split(str(_SEQ).encode(), 1)
        self.parts = (head, mid, tail)

    def render(self, ts: float, seq: int) -> bytes:
        head, mid, tail = self.parts
        return b"".join((head, repr(ts).encode(), mid, str(seq).encode(), tail))


# ---- the fleet ----------------------------------------------------------------------------------

@dataclass
class Site:
    index: int
    seq: int = 0
    temp_override: dict[str, float] = field(default_factory=dict)  # sensor → value while a scenario holds it
    camera_offline: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return site_id(self.index)

    @property
    def gateway(self) -> str:
        return f"gw-{self.id}"

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclass
class Fired:
    scenario: str
    site: str
    at: float  # Unix time the scenario's first message went out
    events: list[tuple[str, str]] = field(default_factory=list)  # (device, state) sent as events


class Fleet:
    """``sites`` gateways: each site's 64 readings go out together once per cycle, the sites spread
    evenly over it; camera heartbeats every 30 s; scenarios at random sites, ``scenario_every_s`` apart.
    ``batched``: a site's cycle is one ``readings`` message of 64 items (``agent.batch_readings``), not
    64 single ``reading`` messages; events, heartbeats and births are single either way."""

    def __init__(self, sites: int, publisher: RawPublisher, seed: int = 1, scenario_every_s: float | None = 5.0,
                 scenarios: tuple[str, ...] | None = None, cycle_s: float = CYCLE_S, batched: bool = False,
                 drift: float = 0.0):
        self.cycle_s = cycle_s  # shorter only in tests: every site within a few seconds
        self.batched = batched
        self.drift = drift  # chance that an analog sensor's reading moves a step (DRIFT_STEP) from its last one
        self._drift_rng = random.Random(seed + 1)
        self._offsets: dict[str, float] = {}  # sensor → how far its value has drifted from its rest value
        self.sites = [Site(i) for i in range(sites)]
        self.pub = publisher
        self.rng = random.Random(seed)
        self.scenario_every_s = scenario_every_s
        self.scenarios = scenarios or tuple(SCENARIOS)
        self.counts = {"reading": 0, "event": 0, "heartbeat": 0, "status": 0, "messages": 0}
        self.fired: list[Fired] = []
        self._struck: set[str] = set()  # sites a scenario has been at
        self._later: list[tuple[float, Any]] = []  # (when, callable) a scenario's next steps
        self._templates: dict[tuple, Template] = {}
        self._topics: dict[tuple, tuple[bytes, bytes]] = {}  # (site, kind, device) → fixed header byte, topic

    def _template(self, **fields: Any) -> Template:
        key = tuple(sorted(fields.items()))
        t = self._templates.get(key)
        if t is None:
            t = self._templates[key] = Template(**fields)
        return t

    def _fast(self, site: Site, kind: MessageClass, device: str, template: Template, ts: float) -> bytes:
        """A QoS 1 PUBLISH of ``template`` at ``ts`` with the site's next seq, topic bytes cached."""
        key = (site.index, kind, device)
        t = self._topics.get(key)
        if t is None:
            t = self._topics[key] = _string(topic(site.id, site.gateway, kind, device).encode())
        self.counts[kind.value] += 1
        self.counts["messages"] += 1
        body = template.render(ts, site.next_seq())
        pub = self.pub
        pub._mid = pub._mid % 65535 + 1
        return b"".join((b"\x32", _varint(len(t) + 2 + len(body)), t, struct.pack("!H", pub._mid), body))

    # message builders: (packet, qos1)
    def _msg(self, site: Site, kind: MessageClass, device: str | None, body: bytes, retain: bool = False) -> bytes:
        self.counts["reading" if kind is MessageClass.READINGS else kind.value] += 1
        self.counts["messages"] += 1
        return self.pub.packet(topic(site.id, site.gateway, kind, device), body, qos=1, retain=retain)

    def births(self) -> list[bytes]:
        now = time.time()
        return [self._msg(s, MessageClass.STATUS, None, payload(now, state="online", config_version="fleet",
                                                                   drivers=["simulated"], session=1), retain=True)
                for s in self.sites]

    def value(self, site: Site, device: str, kind: str) -> float:
        """What a sensor reads now: a scenario's value, or its rest value — drifting, with ``drift``,
        a step at a time within DRIFT_MAX of it, as a real room's thermometer does between polls."""
        held = site.temp_override.get(device)
        if held is not None:
            return held
        rest = REST_VALUE.get(kind, 0.0)
        if not self.drift or kind not in REST_VALUE:
            return rest
        offset = self._offsets.get(device, 0.0)
        if self._drift_rng.random() < self.drift:
            offset = self._offsets[device] = min(DRIFT_MAX, max(-DRIFT_MAX, offset + self._drift_rng.choice(
                (-DRIFT_STEP, DRIFT_STEP))))
        return round(rest + offset, 1)

    def readings(self, site: Site, now: float) -> list[bytes]:
        if self.batched:
            return [self._batch(site, now)]
        out = []
        for s in SITE_SENSORS:
            dev = f"{site.id}-{s['id']}"
            value = self.value(site, dev, s["kind"])
            out.append(self._fast(site, MessageClass.READING, dev,
                                  self._template(value=value, unit=UNIT.get(s["kind"], ""), quality="ok"), now))
        return out

    def _batch(self, site: Site, now: float) -> bytes:
        """The site's cycle as one ``readings`` message, as the agent's batching writes it (batch_payload)."""
        items = [{"sensor": f"{site.id}-{s['id']}", "ts": now,
                  "value": self.value(site, f"{site.id}-{s['id']}", s["kind"]),
                  "unit": UNIT.get(s["kind"], ""), "quality": "ok"} for s in SITE_SENSORS]
        first = site.seq + 1
        site.seq += len(items)  # a batch takes as many seqs as it has items
        body = batch_payload(now, first, items)
        self.counts["reading"] += len(items) - 1  # _msg counts the message once
        return self._msg(site, MessageClass.READINGS, None, body)

    def heartbeats(self, site: Site, now: float) -> list[bytes]:
        out = []
        for cam, _room in CAMERAS:
            dev = f"{site.id}-{cam}"
            online = dev not in site.camera_offline
            out.append(self._fast(site, MessageClass.HEARTBEAT, dev,
                                  self._template(online=online, latency_ms=12.0 if online else None), now))
        return out

    def event(self, site: Site, device: str, state: str, ts: float, value: float | None = None) -> bytes:
        return self._msg(site, MessageClass.EVENT, device, payload(ts, site.next_seq(), state=state, value=value, drill=False))

    def fire(self, name: str, site: Site | None = None) -> Fired:
        """A scenario at ``site``, or at a random one no scenario has been at while there is one: at a
        site whose alert is still open a second fire is that alert again, with no new notice."""
        if site is None:
            fresh = [s for s in self.sites if s.id not in self._struck]
            site = self.rng.choice(fresh or self.sites)
        self._struck.add(site.id)
        fired = Fired(name, site.id, time.time())
        SCENARIOS[name](self, site, fired)
        self.fired.append(fired)
        return fired

    def later(self, delay_s: float, step) -> None:
        self._later.append((time.monotonic() + delay_s, step))

    def run(self, seconds: float, stop: threading.Event | None = None, tick_s: float = 0.05,
            births: bool = True) -> dict[str, float]:
        """Publish in real time for ``seconds`` (first every gateway's birth, unless ``births`` is false:
        sent already); returns what went out and how far behind schedule it fell."""
        stop = stop or threading.Event()
        if births:
            self.pub.send(self.births())
        n = len(self.sites)
        t0 = time.monotonic()
        next_site, next_beat, next_scenario = 0, 0, t0 + (self.scenario_every_s or 0)
        worst_lag = 0.0
        while not stop.is_set():
            now_m = time.monotonic()
            if now_m - t0 >= seconds:
                break
            packets: list[bytes] = []
            now = time.time()
            due = int((now_m - t0) / self.cycle_s * n)  # sites whose reading is due by now, counted from the start
            while next_site <= due:
                packets += self.readings(self.sites[next_site % n], now)
                next_site += 1
            beats_due = int((now_m - t0) / (CAMERA_BEAT_S * self.cycle_s / CYCLE_S) * n)
            while next_beat <= beats_due:
                packets += self.heartbeats(self.sites[next_beat % n], now)
                next_beat += 1
            if self.scenario_every_s and now_m >= next_scenario:
                next_scenario += self.scenario_every_s
                self.fire(self.rng.choice(self.scenarios))
            for item in [x for x in self._later if x[0] <= now_m]:
                self._later.remove(item)
                packets += item[1]()
            if packets:
                self.pub.send(packets)
            worst_lag = max(worst_lag, time.monotonic() - now_m)
            time.sleep(max(0.0, tick_s - (time.monotonic() - now_m)))
        return {"seconds": time.monotonic() - t0, "worst_tick_s": worst_lag, **self.counts}

    def capacity(self, cycles: int = 1) -> float:
        """Publish ``cycles`` full cycles of every site's readings as fast as this process can,
        encoding included; readings per second until the last PUBACK."""
        t0 = time.perf_counter()
        total = 0
        for _ in range(cycles):
            for site in self.sites:
                batch = self.readings(site, time.time())
                self.pub.send(batch)
                total += SENSORS_PER_SITE
        self.pub.wait_acked(120)
        return total / (time.perf_counter() - t0)


# ---- scenarios: what a site's gateway sends, as steps ------------------------------------------

def _fire(fleet: Fleet, site: Site, fired: Fired) -> None:
    room = SLEEPING[fleet.rng.randrange(len(SLEEPING))]
    first, second = f"{site.id}-smk-{room}-a", f"{site.id}-smk-{room}-b"
    now = time.time()
    site.temp_override[f"{site.id}-t-{room}"] = 45.0
    fired.events += [(first, "alarm"), (second, "alarm")]
    packet = fleet.event(site, first, "alarm", now, 1.0)
    fleet.later(0.0, lambda: [packet])
    fleet.later(8.0, lambda: [fleet.event(site, second, "alarm", time.time(), 1.0)])


def _cold_room(fleet: Fleet, site: Site, fired: Fired) -> None:
    room = SLEEPING[fleet.rng.randrange(len(SLEEPING))]
    site.temp_override[f"{site.id}-t-{room}"] = 12.0  # held: the engine's cold rule sees it in every reading


def _camera_offline(fleet: Fleet, site: Site, fired: Fired) -> None:
    cam = f"{site.id}-cam-med-obs"
    site.camera_offline.add(cam)
    fleet.later(600.0, lambda: site.camera_offline.discard(cam) or [])


def _night_exit(fleet: Fleet, site: Site, fired: Fired) -> None:
    door = f"{site.id}-door-exit-main"
    at = most_recent("02:00", ZoneInfo(TZ))  # the door reads 02:00 on the gateway's clock, as in gateway/scenarios.py
    fired.events += [(door, "open"), (door, "closed")]
    fleet.later(0.0, lambda: [fleet.event(site, door, "open", at, 1.0)])
    fleet.later(1.0, lambda: [fleet.event(site, door, "closed", at + 60, 0.0)])


SCENARIOS = {"fire": _fire, "cold-room": _cold_room, "camera-offline": _camera_offline, "night-exit": _night_exit}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="national fleet: N gateways' traffic from one process / 全国网关负载模拟")
    ap.add_argument("--sites", type=int, default=2000)
    ap.add_argument("--broker", default="127.0.0.1:1883")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--scenario-every", type=float, default=5.0, help="seconds between scenarios at random sites (0: none)")
    ap.add_argument("--config-out", type=Path, help="write the fleet's organisation config here (for ingest and the engine)")
    ap.add_argument("--capacity", action="store_true", help="publish one cycle flat out and print the rate")
    ap.add_argument("--batched", action="store_true", help="a site's cycle as one `readings` message (agent.batch_readings)")
    ap.add_argument("--drift", type=float, default=0.5, help="chance an analog reading moves a step from the last (0: constant)")
    args = ap.parse_args(argv)
    if args.config_out:
        write_config(args.sites, args.config_out)
        print(f"config: {args.config_out}")
    host, _, port = args.broker.rpartition(":")
    pub = RawPublisher(host, int(port), f"fleet-{args.sites}")
    fleet = Fleet(args.sites, pub, scenario_every_s=args.scenario_every or None, batched=args.batched, drift=args.drift)
    if args.capacity:
        print(f"capacity: {fleet.capacity():,.0f} readings/s (QoS 1, until the last PUBACK)")
    else:
        out = fleet.run(args.seconds)
        pub.wait_acked(60)
        print(out, f"fired: {[(f.scenario, f.site) for f in fleet.fired]}")
    pub.close()


if __name__ == "__main__":
    main()
