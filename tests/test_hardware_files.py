"""The gateway deployment files in hardware/, checked for what an installer would notice:
the install script parses, previews without changing anything, installs into a scratch root
and can run twice; the systemd unit and the udev rule are accepted by the tools that read
them; the pin map in wiring.md uses each BCM pin once and matches the header."""
from __future__ import annotations

import configparser
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

HW = Path(__file__).resolve().parent.parent / "hardware"
SCRIPT = HW / "install-gateway.sh"
UNIT = HW / "systemd" / "stationwatch-gateway.service"
ENV_EXAMPLE = HW / "systemd" / "stationwatch-gateway.env.example"
UDEV = HW / "udev" / "99-stationwatch-rs485.rules"
WIRING = HW / "wiring.md"

# Commands that change a system. In the tests they are replaced by stubs that log each call,
# so a test sees whether the script tried to touch anything outside its scratch root.
SYSTEM_COMMANDS = ("apt-get", "useradd", "groupadd", "usermod", "chown", "chgrp", "raspi-config",
                   "udevadm", "systemctl", "pip", "python3")
FILE_COMMANDS = ("install", "mkdir", "tar", "cp", "ln", "tee")


def _stubs(tmp_path: Path, names, exit_code: int) -> tuple[dict, Path]:
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    log.touch()
    for name in names:
        stub = bin_dir / name
        # `systemctl is-enabled/is-active` only ask: answer "no" without logging.
        stub.write_text(
            "#!/bin/sh\n"
            f'if [ "$(basename "$0")" = systemctl ] && {{ [ "$1" = is-enabled ] || [ "$1" = is-active ]; }}; then exit 3; fi\n'
            f'echo "$(basename "$0") $*" >> "{log}"\n'
            f"exit {exit_code}\n")
        stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return env, log


def _run(args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=120, **kw)


# --- install script -------------------------------------------------------------------------

def test_install_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_install_script_passes_shellcheck():
    r = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_dry_run_into_a_scratch_root_changes_nothing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    env, log = _stubs(tmp_path, SYSTEM_COMMANDS + FILE_COMMANDS, exit_code=0)
    r = _run(["--dry-run", "--root", str(root)], env=env)
    assert r.returncode == 0, r.stderr
    assert "nothing was changed" in r.stdout
    for thing in ("stationwatch-gateway.service", "99-stationwatch-rs485.rules", "gateway.env",
                  "dtparam=spi=on", "dtoverlay=w1-gpio"):
        assert thing in r.stdout, f"the dry run does not say what it would do with {thing}"
    assert list(root.iterdir()) == []
    assert log.read_text() == ""


def test_dry_run_on_this_machine_runs_no_changing_command(tmp_path):
    env, log = _stubs(tmp_path, [c for c in SYSTEM_COMMANDS + FILE_COMMANDS if c != "python3"], exit_code=0)
    r = _run(["--dry-run"], env=env)
    assert r.returncode == 0, r.stderr
    assert "would run: " in r.stdout
    assert log.read_text() == ""


def test_refuses_a_real_run_without_root(tmp_path):
    args = ["bash", str(SCRIPT), "--root", str(tmp_path)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and no setpriv to drop privileges")
        args = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *args]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "root" in r.stderr and "sudo" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="a real install run needs root")
def test_install_into_a_scratch_root_twice(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    # Anything acting on the running system must be skipped with --root: those stubs fail.
    env, log = _stubs(tmp_path, SYSTEM_COMMANDS, exit_code=97)

    r = _run(["--root", str(root)], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text() == "", "--root ran commands on the live system"

    unit = root / "etc/systemd/system/stationwatch-gateway.service"
    rules = root / "etc/udev/rules.d/99-stationwatch-rs485.rules"
    env_file = root / "etc/stationwatch/gateway.env"
    boot = root / "boot/firmware/config.txt"
    assert unit.read_bytes() == UNIT.read_bytes()
    assert rules.read_bytes() == UDEV.read_bytes()
    assert env_file.read_bytes() == ENV_EXAMPLE.read_bytes()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600, "gateway.env holds a password"
    assert stat.S_IMODE((root / "etc/stationwatch").stat().st_mode) == 0o750
    assert (root / "var/lib/stationwatch").is_dir()

    # the installer's own edits are kept or repaired on the second run
    env_file.write_text(env_file.read_text().replace("CHANGE-ME", "s3cret"))
    unit.write_text(unit.read_text() + "# edited in place\n")
    r = _run(["--root", str(root)], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text() == ""
    assert "s3cret" in env_file.read_text(), "a second run overwrote the gateway settings"
    assert unit.read_bytes() == UNIT.read_bytes(), "a second run did not restore the unit"
    text = boot.read_text()
    assert text.count("dtparam=spi=on") == 1 and text.count("dtoverlay=w1-gpio") == 1
    assert "up to date" in r.stdout

    # an existing config.txt is appended to, not replaced
    root2 = tmp_path / "root2"
    (root2 / "boot/firmware").mkdir(parents=True)
    (root2 / "boot/firmware/config.txt").write_text("dtparam=audio=on\n[cm4]\notg_mode=1\n")
    r = _run(["--root", str(root2)], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = (root2 / "boot/firmware/config.txt").read_text().splitlines()
    assert lines[:3] == ["dtparam=audio=on", "[cm4]", "otg_mode=1"]
    # our lines must not land under the [cm4] filter
    assert lines.index("[all]") < lines.index("dtparam=spi=on")


# --- systemd unit ---------------------------------------------------------------------------

def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read_string(UNIT.read_text())
    return cp


def test_unit_has_the_required_settings():
    svc = _unit()["Service"]
    expected = {"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30", "Restart": "always",
                "RestartSec": "2", "User": "stationwatch", "StateDirectory": "stationwatch",
                "ConfigurationDirectory": "stationwatch", "ProtectSystem": "strict",
                "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
                "ReadWritePaths": "/var/lib/stationwatch"}
    for key, value in expected.items():
        assert svc.get(key) == value, f"[Service] {key}"
    assert set(svc["SupplementaryGroups"].split()) == {"gpio", "spi", "dialout"}
    text = UNIT.read_text()
    allowed = set(re.findall(r"^DeviceAllow=(\S+) rw$", text, re.M))
    assert allowed == {"char-gpiochip", "char-spi", "char-ttyUSB"}
    unit = _unit()["Unit"]
    assert set(unit["After"].split()) >= {"network-online.target", "time-sync.target"}
    assert unit["Wants"] == "network-online.target"
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


def test_unit_command_line_matches_the_env_file():
    svc = _unit()["Service"]
    cmd = svc["ExecStart"].replace("\\\n", " ")
    assert cmd.split()[:2] == ["/opt/stationwatch/venv/bin/stationwatch", "gateway"]
    for option in ("--config", "--gateway", "--broker", "--ca-file"):
        assert option in cmd.split()
    used = set(re.findall(r"\$\{(\w+)\}", cmd))
    defined = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines()
               if line and not line.startswith("#")}
    assert used <= defined, f"ExecStart uses variables the env file does not set: {used - defined}"
    assert svc["EnvironmentFile"] == "/etc/stationwatch/gateway.env"


def _env_example() -> dict[str, str]:
    return dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                if line and not line.startswith("#"))


def test_env_example_keeps_the_password_out_of_the_broker_url():
    # the URL is on the command line (ps, systemctl status, journal); the password is not
    env = _env_example()
    url = urlsplit(env["STATIONWATCH_BROKER"])
    assert (url.scheme, url.hostname, url.port) == ("mqtts", "mqtt.city.example", 8883)
    assert url.username is None and url.password is None and "@" not in env["STATIONWATCH_BROKER"]
    assert env["STATIONWATCH_BROKER_PASSWORD"] == "CHANGE-ME"  # what the installer looks for
    cmd = _unit()["Service"]["ExecStart"]
    assert "STATIONWATCH_BROKER_PASSWORD" not in cmd and "CHANGE-ME" not in cmd


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", [UNIT, HW / "systemd" / "stationwatch-watcher.service"], ids=lambda u: u.stem)
def test_systemd_accepts_the_unit(tmp_path, unit):
    # verify also checks that the program exists; point it at one that does, change nothing else
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/stationwatch/venv/bin/stationwatch", "/bin/true"))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    complaints = [line for line in (r.stdout + r.stderr).splitlines() if unit.name in line]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr


# --- udev rule ------------------------------------------------------------------------------

_UDEV_KEYS = {"SUBSYSTEM", "KERNEL", "ACTION", "ATTRS", "ATTR", "ENV", "SYMLINK", "GROUP", "MODE",
              "OWNER", "TAG", "SUBSYSTEMS", "DRIVERS"}
_UDEV_TOKEN = re.compile(r'^(?P<key>[A-Z_]+)(\{(?P<attr>[A-Za-z0-9_/.]+)\})?(?P<op>==|!=|\+=|-=|:=|=)"(?P<value>[^"]*)"$')


def _udev_rules() -> list[dict[str, str]]:
    rules = []
    for n, line in enumerate(UDEV.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rule = {}
        for token in (t.strip() for t in line.split(", ")):
            m = _UDEV_TOKEN.match(token)
            assert m, f"line {n}: malformed token {token!r}"
            assert m["key"] in _UDEV_KEYS, f"line {n}: unknown key {m['key']}"
            is_match = m["op"] in ("==", "!=")
            assert is_match == (m["key"] in {"SUBSYSTEM", "KERNEL", "ATTRS", "SUBSYSTEMS", "DRIVERS", "ACTION"}), \
                f"line {n}: {m['key']} used with {m['op']}"
            rule[m["key"] + (f"{{{m['attr']}}}" if m["attr"] else "")] = m["value"]
        rules.append(rule)
    return rules


def test_udev_rules_are_well_formed():
    rules = _udev_rules()
    ids = {(r["ATTRS{idVendor}"], r["ATTRS{idProduct}"]) for r in rules}
    assert ids == {("0403", "6001"), ("1a86", "7523"), ("10c4", "ea60")}
    for r in rules:
        assert r["SUBSYSTEM"] == "tty"
        assert r["GROUP"] == "dialout" and r["MODE"] == "0660"
        assert r["SYMLINK"] == "stationwatch-rs485-%n"


def _udevadm_verify_works() -> bool:
    if shutil.which("udevadm") is None:
        return False
    return subprocess.run(["udevadm", "verify", "--help"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _udevadm_verify_works(), reason="udevadm verify needs systemd-udev 254 or newer")
def test_udevadm_accepts_the_rules():
    r = subprocess.run(["udevadm", "verify", str(UDEV)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# --- wiring.md pin map ----------------------------------------------------------------------

# BCM GPIO number → physical pin on the 40-pin header (same on Pi 4, Pi 5 and Zero 2 W)
HEADER = {2: 3, 3: 5, 4: 7, 17: 11, 27: 13, 22: 15, 10: 19, 9: 21, 11: 23, 0: 27, 5: 29, 6: 31,
          13: 33, 19: 35, 26: 37, 14: 8, 15: 10, 18: 12, 23: 16, 24: 18, 25: 22, 8: 24, 7: 26,
          1: 28, 12: 32, 16: 36, 20: 38, 21: 40}

DEFAULTS = {5: "smoke", 6: "smoke", 13: "smoke", 19: "heat", 26: "door", 16: "door",
            20: "boiler", 21: "pump", 12: "silence", 17: "buzzer", 27: "relay", 22: "led",
            4: "1-wire", 8: "ce0", 9: "miso", 10: "mosi", 11: "sclk"}


def _pin_map() -> list[dict[str, str]]:
    """The rows of the table under the '## Pin map' heading."""
    text = WIRING.read_text()
    section = re.search(r"^## [^\n]*Pin map[^\n]*\n(.*?)(?=^## )", text, re.M | re.S | re.I)
    assert section, "wiring.md has no '## … Pin map …' section"
    lines = [line.strip() for line in section.group(1).splitlines() if line.strip().startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(header), f"pin map row has {len(cells)} cells, header {len(header)}: {line}"
        rows.append(dict(zip(header, cells)))
    return rows


def test_pin_map_uses_each_pin_once_and_matches_the_header():
    rows = _pin_map()
    bcm = [int(re.search(r"\d+", r["BCM"]).group()) for r in rows]
    assert len(bcm) == len(set(bcm)), f"BCM pins used twice: {sorted(p for p in bcm if bcm.count(p) > 1)}"
    for r, pin in zip(rows, bcm):
        assert int(r["Pin"]) == HEADER[pin], f"GPIO{pin} is header pin {HEADER[pin]}, not {r['Pin']}"


def test_pin_map_has_the_default_assignments():
    rows = {int(re.search(r"\d+", r["BCM"]).group()): r for r in _pin_map()}
    for pin, word in DEFAULTS.items():
        assert pin in rows, f"GPIO{pin} missing from the pin map"
        assert word in rows[pin]["Use"].lower(), f"GPIO{pin} should be the {word} pin: {rows[pin]['Use']}"


def test_readme_indexes_every_file():
    readme = (HW / "README.md").read_text()
    for path in HW.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert str(path.relative_to(HW)) in readme, f"hardware/README.md does not list {path.relative_to(HW)}"
