"""The gateway's own health: CPU temperature, under-voltage and throttling, disk, memory, clock.

Every source is injectable (:class:`HealthSeams`): file paths, the command runner, the disk-usage
call and the kernel clock query; tests use temp files and fake command output.

| sample (``{gateway}-{name}``) | value | from |
|---|---|---|
| ``cpu_temperature`` | °C | ``/sys/class/thermal/thermal_zone0/temp`` (millidegrees) |
| ``under_voltage`` | 1/0, ``alarm``/``normal`` | ``vcgencmd get_throttled`` bit 0 (bit 16: since boot, in ``detail``) |
| ``throttled`` | 1/0, ``alarm``/``normal`` | bits 1–3 (frequency capped, throttled, soft temperature limit) |
| ``disk_free`` | % free | ``shutil.disk_usage`` of the spool's file system |
| ``memory_available`` | % available | ``MemAvailable`` / ``MemTotal`` in ``/proc/meminfo`` |
| ``clock_unsynced`` | 1/0, ``alarm``/``normal`` | ``timedatectl show -p NTPSynchronized``; without systemd, ``adjtimex()`` (TIME_ERROR) |

A source that cannot be read makes its samples FAULT with the reason (e.g. ``vcgencmd`` missing).

The agent publishes each sample on ``sw/v1/{site}/{gateway}/health/{name}``; :data:`METRICS` is the
table of names the MQTT contract accepts there (docs/mqtt-contract.md).

Example::

    >>> health = GatewayHealth("gw-1", HealthSeams(run=lambda argv: "throttled=0x50005\\n"))
    >>> [s.state for s in health.read(0.0) if s.sensor == "gw-1-under_voltage"]
    ['alarm']
"""
from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from stationwatch.sensors.base import Driver, Sample, Seams
from stationwatch.sensors.specs import DeviceTable, GatewaySpec

Runner = Callable[[Sequence[str]], str]  # argv → stdout; raises OSError / CalledProcessError / TimeoutExpired
TIME_ERROR = 5  # adjtimex(): the kernel clock is not synchronised


def run_command(argv: Sequence[str]) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=5, check=True).stdout


def kernel_clock_state() -> int:
    """adjtimex(2) with no changes: the clock state (TIME_OK 0 … TIME_ERROR 5)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
    state = libc.adjtimex(timex)
    if state < 0:
        raise OSError(ctypes.get_errno(), "adjtimex failed")
    return state


@dataclass(frozen=True)
class HealthSeams:
    thermal_path: Path = Path("/sys/class/thermal/thermal_zone0/temp")
    meminfo_path: Path = Path("/proc/meminfo")
    disk_path: Path = Path("/var/lib")
    run: Runner = run_command
    disk_usage: Callable[[Path], tuple[int, int, int]] = shutil.disk_usage
    clock_state: Callable[[], int] = kernel_clock_state


class HealthValue(NamedTuple):
    value: float
    state: str | None = None
    detail: str | None = None


def _flag(on: bool, detail: str | None = None) -> HealthValue:
    return HealthValue(1.0 if on else 0.0, "alarm" if on else "normal", detail)


# vcgencmd get_throttled: bit → meaning
THROTTLE_BITS = {0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now",
                 3: "soft temperature limit now", 16: "under-voltage since boot",
                 17: "frequency capping since boot", 18: "throttling since boot",
                 19: "soft temperature limit since boot"}


def parse_throttled(text: str) -> int:
    """``throttled=0x50005`` → 0x50005."""
    key, _, value = text.strip().partition("=")
    if key != "throttled" or not value:
        raise ValueError(f"unexpected vcgencmd output {text.strip()!r}")
    return int(value, 16)


def read_cpu_temperature(seams: HealthSeams) -> dict[str, HealthValue]:
    celsius = int(seams.thermal_path.read_text().strip()) / 1000
    if not -40 <= celsius <= 125:
        raise ValueError(f"implausible CPU temperature {celsius:g} °C")
    return {"cpu_temperature": HealthValue(celsius)}


def read_throttling(seams: HealthSeams) -> dict[str, HealthValue]:
    flags = parse_throttled(seams.run(["vcgencmd", "get_throttled"]))
    detail = ", ".join(text for bit, text in THROTTLE_BITS.items() if flags >> bit & 1) or None
    return {"under_voltage": _flag(bool(flags & 0x1), detail),
            "throttled": _flag(bool(flags & 0xE), detail)}


def read_disk(seams: HealthSeams) -> dict[str, HealthValue]:
    total, _, free = seams.disk_usage(seams.disk_path)
    return {"disk_free": HealthValue(100 * free / total)}


def read_memory(seams: HealthSeams) -> dict[str, HealthValue]:
    fields = dict(line.split(":", 1) for line in seams.meminfo_path.read_text().splitlines() if ":" in line)
    total, available = (int(fields[k].split()[0]) for k in ("MemTotal", "MemAvailable"))
    return {"memory_available": HealthValue(100 * available / total)}


def read_clock(seams: HealthSeams) -> dict[str, HealthValue]:
    try:
        out = seams.run(["timedatectl", "show", "-p", "NTPSynchronized"])
    except (FileNotFoundError, subprocess.CalledProcessError):  # no systemd (running): ask the kernel
        state = seams.clock_state()
        return {"clock_unsynced": _flag(state == TIME_ERROR, f"adjtimex state {state}")}
    key, _, value = out.strip().partition("=")
    if key != "NTPSynchronized" or value not in ("yes", "no"):
        raise ValueError(f"unexpected timedatectl output {out.strip()!r}")
    return {"clock_unsynced": _flag(value == "no")}


class Metric(NamedTuple):
    """One health sample as the gateway publishes it (``sw/v1/{site}/{gateway}/health/{name}``)."""
    name: str
    unit: str
    flag: bool  # 1/0 with ``alarm``/``normal``: something is wrong while it is 1


# The metrics the health driver gives: the MQTT contract accepts exactly these on health/{name}
# (plus ``local_alarm``, which the agent sends), and ingest and alerts read them from here.
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("cpu_temperature", "°C", False),
    Metric("under_voltage", "", True),
    Metric("throttled", "", True),
    Metric("disk_free", "%", False),
    Metric("memory_available", "%", False),
    Metric("clock_unsynced", "", True),
)}


def sample_id(gateway: str, metric: str) -> str:
    """The sensor id of a health sample: ``gw-1`` + ``disk_free`` → ``gw-1-disk_free``."""
    return f"{gateway}-{metric}"


class Check(NamedTuple):
    names: tuple[str, ...]  # the samples it gives; all FAULT when it fails
    read: Callable[[HealthSeams], dict[str, HealthValue]]


CHECKS = (
    Check(("cpu_temperature",), read_cpu_temperature),
    Check(("under_voltage", "throttled"), read_throttling),
    Check(("disk_free",), read_disk),
    Check(("memory_available",), read_memory),
    Check(("clock_unsynced",), read_clock),
)
assert {n for c in CHECKS for n in c.names} == set(METRICS), "every check's samples are metrics, and back"


class GatewayHealth:
    """Reads every health check on each poll."""

    family = "health"

    def __init__(self, gateway: str, seams: HealthSeams | None = None, checks: Sequence[Check] = CHECKS):
        self.gateway = gateway
        self.seams = seams or HealthSeams()
        self.checks = tuple(checks)

    @classmethod
    def build(cls, cfg: DeviceTable, gateway: GatewaySpec, seams: Seams) -> list[Driver]:
        if seams.health is not None:
            return [cls(gateway.id, seams.health)]
        spool = Path(getattr(getattr(gateway, "agent", None), "spool_path", "/var/lib/stationwatch/spool.db")).parent
        return [cls(gateway.id, HealthSeams(disk_path=spool if spool.exists() else Path("/")))]

    def read(self, now: float) -> list[Sample]:
        samples = []
        for check in self.checks:
            try:
                readings = check.read(self.seams)
            except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                samples += [Sample.fault(sample_id(self.gateway, name), now, why) for name in check.names]
                continue
            samples += [Sample(sample_id(self.gateway, name), r.value, "ok", now, state=r.state, detail=r.detail)
                        for name, r in readings.items()]
        return samples

    def close(self) -> None:
        pass
