"""Gateway health through its injected seams: temp files for /sys and /proc, fake command output."""
from __future__ import annotations

import subprocess

import pytest

from stationwatch.sensors.health import GatewayHealth, HealthSeams, parse_throttled

MEMINFO = "MemTotal:        3884000 kB\nMemFree:          500000 kB\nMemAvailable:    1942000 kB\n"


class Commands:
    """A fake command runner: argv[0] → output, or an exception to raise."""

    def __init__(self, **answers):
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv):
        self.calls.append(list(argv))
        answer = self.answers.get(argv[0], FileNotFoundError(2, "No such file or directory", argv[0]))
        if isinstance(answer, BaseException):
            raise answer
        return answer


@pytest.fixture
def files(tmp_path):
    (tmp_path / "temp").write_text("48312\n")
    (tmp_path / "meminfo").write_text(MEMINFO)
    return tmp_path


def health(files, run, **kw) -> dict:
    seams = HealthSeams(thermal_path=files / "temp", meminfo_path=files / "meminfo", disk_path=files, run=run,
                        disk_usage=lambda path: (1000, 750, 250), **kw)
    return {s.sensor.removeprefix("gw-1-"): s for s in GatewayHealth("gw-1", seams).read(7.0)}


def test_a_healthy_pi(files):
    got = health(files, Commands(vcgencmd="throttled=0x0\n", timedatectl="NTPSynchronized=yes\n"))
    assert got["cpu_temperature"].value == pytest.approx(48.312)
    assert (got["under_voltage"].value, got["under_voltage"].state) == (0.0, "normal")
    assert got["throttled"].state == "normal"
    assert got["disk_free"].value == pytest.approx(25.0)
    assert got["memory_available"].value == pytest.approx(50.0)
    assert (got["clock_unsynced"].value, got["clock_unsynced"].state) == (0.0, "normal")
    assert all(s.quality == "ok" and s.ts == 7.0 for s in got.values())


def test_under_voltage_now_and_throttling_since_boot(files):
    got = health(files, Commands(vcgencmd="throttled=0x50005\n", timedatectl="NTPSynchronized=yes\n"))
    uv = got["under_voltage"]
    assert (uv.value, uv.state) == (1.0, "alarm")
    assert "under-voltage now" in uv.detail and "throttling since boot" in uv.detail
    assert got["throttled"].state == "alarm"  # bit 2: throttled now


def test_only_past_events_leave_the_flags_normal_but_say_so(files):
    got = health(files, Commands(vcgencmd="throttled=0x50000\n", timedatectl="NTPSynchronized=yes\n"))
    assert got["under_voltage"].state == "normal" and "under-voltage since boot" in got["under_voltage"].detail


def test_clock_not_synchronised(files):
    got = health(files, Commands(vcgencmd="throttled=0x0", timedatectl="NTPSynchronized=no\n"))
    assert (got["clock_unsynced"].value, got["clock_unsynced"].state) == (1.0, "alarm")


def test_without_systemd_the_kernel_clock_state_is_asked(files):
    run = Commands(vcgencmd="throttled=0x0")
    assert health(files, run, clock_state=lambda: 5)["clock_unsynced"].state == "alarm"  # TIME_ERROR
    assert health(files, run, clock_state=lambda: 0)["clock_unsynced"].state == "normal"
    not_booted = subprocess.CalledProcessError(1, ["timedatectl"], "System has not been booted with systemd")
    run = Commands(vcgencmd="throttled=0x0", timedatectl=not_booted)
    assert health(files, run, clock_state=lambda: 5)["clock_unsynced"].state == "alarm"


def test_a_missing_vcgencmd_is_a_fault_of_its_samples_only(files):
    got = health(files, Commands(timedatectl="NTPSynchronized=yes"))
    assert got["under_voltage"].quality == "fault" and got["throttled"].quality == "fault"
    assert "FileNotFoundError" in got["under_voltage"].detail
    assert got["cpu_temperature"].quality == "ok"


def test_a_failing_command_and_odd_output_are_faults(files):
    failed = subprocess.CalledProcessError(255, ["vcgencmd"], "VCHI initialization failed")
    got = health(files, Commands(vcgencmd=failed, timedatectl="something else"))
    assert got["throttled"].quality == "fault"
    assert got["clock_unsynced"].quality == "fault" and "unexpected timedatectl output" in got["clock_unsynced"].detail


def test_unreadable_or_implausible_cpu_temperature_is_a_fault(files):
    (files / "temp").unlink()
    assert health(files, Commands())["cpu_temperature"].quality == "fault"
    (files / "temp").write_text("-273000")
    assert health(files, Commands())["cpu_temperature"].quality == "fault"


def test_parse_throttled():
    assert parse_throttled("throttled=0x50005\n") == 0x50005
    with pytest.raises(ValueError):
        parse_throttled("error=1 error_msg=\"Command not registered\"")
