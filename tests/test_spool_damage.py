"""The siren never depends on the disk: a spool with damaged interior pages, cut short or with a
torn WAL is set aside with what can be read of it and the gateway starts on a new one; with the
spool's disk full (a small tmpfs, as root) an alarm still reaches the centre at once and is never
dropped, while routine readings give way — and the gateway says so (``health/spool``)."""
from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from stationwatch.core.contract import MessageClass, parse, topic
from stationwatch.core.mqtt import MqttLink
from stationwatch.core.wire import payload
from stationwatch.gateway.service import run_agent
from stationwatch.gateway.spool import Outgoing, Spool

from support import wait_for
from support.gateway import NOWHERE, SMOKE_PIN, SmokeContact, gateway_of, outputs

READINGS = 3000


def filled(path: Path, readings: int = READINGS) -> int:
    """A spool holding ``readings`` readings and a few events, closed; returns its next seq."""
    reading = Outgoing(MessageClass.READING, topic("s", "g", MessageClass.READING, "t"),
                       lambda seq: payload(1_795_000_000.0 + seq, seq, value=20.5, unit="°C", quality="ok"))
    event = Outgoing(MessageClass.EVENT, topic("s", "g", MessageClass.EVENT, "smk"),
                     lambda seq: payload(1_795_000_000.0 + seq, seq, state="alarm", value=1.0, drill=False))
    with Spool(path, max_bytes=1 << 40) as spool:
        for _ in range(readings // 100):
            spool.append([reading] * 99 + [event], offline=True)
        return spool.last_seq + 1


def garbage_in_the_middle(path: Path) -> None:
    size = path.stat().st_size
    rng = random.Random(7)
    with open(path, "r+b") as f:
        for offset in range(size // 4, 3 * size // 4, 8 * 4096):  # interior pages, not the header
            f.seek(offset)
            f.write(rng.randbytes(4096))


def cut_short(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


@pytest.mark.parametrize("damage", [garbage_in_the_middle, cut_short], ids=["garbage pages", "truncated"])
def test_a_damaged_spool_is_set_aside_what_can_be_read_is_kept_and_seq_never_goes_back(tmp_path, damage):
    path = tmp_path / "spool.db"
    next_seq = filled(path)
    damage(path)
    with Spool(path) as spool:
        assert spool.trouble is None, "a new spool in its place"
        assert 0 < spool.stats.recovered < READINGS, "the readable rows are kept, not all of them"
        assert spool.rows == spool.stats.recovered
        assert spool.last_seq + 1 >= next_seq, "seq never goes backwards"
        rows = spool.pending({}, 100_000)
        assert rows and all(r.historical for r in rows), "what was recovered goes out as historical"
        spool.append([Outgoing(MessageClass.READING, "sw/v1/s/g/reading/t",
                               lambda seq: payload(time.time(), seq, value=1.0, unit="°C", quality="ok"))], offline=False)
        assert spool.last_seq >= next_seq
    assert list(tmp_path.glob("spool.db.damaged-*")), "the damaged file is kept for inspection"


def test_a_torn_wal_after_a_power_cut_loses_only_the_torn_frames(tmp_path):
    live = tmp_path / "live" / "spool.db"
    spool = Spool(live, max_bytes=1 << 40)
    for i in range(20):  # 20 commits, each in the WAL (not checkpointed: the spool stays open)
        spool.append([Outgoing(MessageClass.READING, "sw/v1/s/g/reading/t",
                               lambda seq: payload(1_795_000_000.0 + seq, seq, value=20.5, unit="°C", quality="ok"))] * 10,
                     offline=True)
    cut = tmp_path / "cut"
    cut.mkdir()
    for suffix in ("", "-wal"):  # the disk as a power cut leaves it: the WAL's tail half written
        shutil.copy(str(live) + suffix, str(cut / "spool.db") + suffix)
    spool.close()
    wal = cut / "spool.db-wal"
    with open(wal, "r+b") as f:
        f.truncate(wal.stat().st_size - 3000)
        f.seek(0, 2)
        f.write(random.Random(3).randbytes(1500))
    with Spool(cut / "spool.db") as again:
        assert again.trouble is None
        assert 150 <= again.rows < 200, "the complete frames are kept, the torn one is not"


def test_the_agent_starts_on_a_damaged_spool_and_sounds_within_a_second(city_config, tmp_path):
    cfg, gw = gateway_of(city_config, tmp_path)
    filled(Path(gw.agent.spool_path))
    garbage_in_the_middle(Path(gw.agent.spool_path))
    factory = MockFactory()
    smoke = SmokeContact("smk-dorm-m1", SMOKE_PIN, factory)
    stop, ready = threading.Event(), threading.Event()
    runner = threading.Thread(target=run_agent, args=(cfg, gw, NOWHERE, stop),
                              kwargs={"drivers": [smoke], "pin_factory": factory, "ready": ready}, daemon=True)
    runner.start()
    try:
        assert ready.wait(10), "the agent started"
        factory.pin(SMOKE_PIN).drive_high()
        wait_for(lambda: outputs(factory) == (True, True, True), 1.0, what="the siren within 1 s of the smoke edge")
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()


def test_a_gateway_that_started_on_a_new_spool_says_so_and_the_staff_get_a_maintenance_alert(
        city_config, tmp_path, broker_address):
    """The damaged file is set aside at start; the centre hears of it once (``health/spool``, "replaced")
    and the engine raises a maintenance alert for the staff that stays until a person closes it."""
    from stationwatch.alerts.engine import AlertEngine
    from stationwatch.gateway.agent import Agent

    cfg, gw = gateway_of(city_config, tmp_path)
    filled(Path(gw.agent.spool_path))
    garbage_in_the_middle(Path(gw.agent.spool_path))
    got: list = []
    centre = MqttLink(broker_address, "test-replaced-centre",
                      on_connect=lambda link: link.subscribe(f"sw/v1/{gw.site}/{gw.id}/health/spool", 1),
                      on_message=lambda t, b, _m: got.append((t, b))).start()
    wait_for(lambda: centre.subscribed.is_set(), 10, what="the centre subscribed")
    spool = Spool(gw.agent.spool_path)
    assert spool.replaced and "recovered" in spool.replaced
    agent = Agent(cfg, gw, broker_address, [_Thermometers(cfg, gw)], spool=spool).start()
    try:
        wait_for(lambda: got, 10, what="the replacement reported")
        wait_for(lambda: spool.rows < 100, 30, what="the salvaged rows sent")
    finally:
        agent.stop()
        spool.close()
        centre.stop()
    bodies = [parse(t, b).body for t, b in got]
    assert [(b.state, b.detail.split(":")[0]) for b in bodies] == [("alarm", "replaced")], bodies
    engine = AlertEngine(cfg, tmp_path / "alerts.db")
    engine.watching = False
    engine.handle(*got[0], now=bodies[0].ts)
    alert = next(a for a in engine.store.alerts() if a.rule == "gateway_health")
    assert "damaged" in alert.title_en and "存储卡" in alert.title_zh and alert.severity == "warning"


# ---- a full disk: only as root, on a tmpfs of the test's own ----------------------------------

@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the disk-full case is not run")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    """Take every free byte of the disk."""
    try:
        with open(folder / "ballast", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass


def test_with_the_disk_full_an_alarm_goes_out_at_once_and_routine_readings_give_way(city_config, tmp_path,
                                                                                  small_disk, broker_address):
    from stationwatch.gateway.agent import Agent
    from stationwatch.gateway.alarm import LocalAlarm

    cfg, gw = gateway_of(city_config, tmp_path, interval_s=0.05)
    gw = gw.model_copy(update={"agent": gw.agent.model_copy(update={"spool_path": str(small_disk / "spool.db")})})
    factory = MockFactory()
    smoke = SmokeContact("smk-dorm-m1", SMOKE_PIN, factory)
    got: list = []
    centre = MqttLink(broker_address, "test-disk-full-centre",
                      on_connect=lambda link: link.subscribe(f"sw/v1/{gw.site}/{gw.id}/#", 1),
                      on_message=lambda t, b, _m: got.append((time.monotonic(), parse(t, b)))).start()
    wait_for(lambda: centre.subscribed.is_set(), 10, what="the centre subscribed")
    spool = Spool(gw.agent.spool_path)
    agent = Agent(cfg, gw, broker_address, [smoke, _Thermometers(cfg, gw)], spool=spool,
                  alarm=LocalAlarm(gw.agent.outputs, gw.agent.silence_button, factory)).start()
    try:
        wait_for(lambda: agent.born.is_set(), 10, what="the gateway online")
        fill(small_disk)
        wait_for(lambda: spool.trouble == "disk_full", 10, what="the spool's disk full")
        edge = time.monotonic()
        factory.pin(SMOKE_PIN).drive_high()
        arrived = wait_for(lambda: [at for at, m in got if m.kind is MessageClass.EVENT and m.device == "smk-dorm-m1"],
                           10, what="the alarm event at the centre")
        assert arrived[0] - edge < 2.0, "within 2 s of the smoke edge"
        assert outputs(factory) == (True, True, True)
        health = wait_for(lambda: [m for _, m in got if m.kind is MessageClass.HEALTH and m.device == "spool"], 10,
                          what="the spool's trouble reported")
        assert (health[0].body.state, health[0].body.detail) == ("alarm", "disk_full")
        wait_for(lambda: spool.stats.dropped["reading"] > 0, 10, what="routine readings given way")
        (small_disk / "ballast").unlink()  # room again: the spool is written again and says so
        wait_for(lambda: [m for _, m in got if m.kind is MessageClass.HEALTH and m.device == "spool"
                          and m.body.state == "normal"], 30, what="the spool writable again")
    finally:
        agent.stop()
        spool.close()
        centre.stop()


class _Thermometers:
    """Every temperature sensor of the gateway, read at 21 °C (routine readings, many of them)."""

    family = "onewire"

    def __init__(self, cfg, gw):
        self.sensors = [s.id for s in cfg.sensors if s.gateway == gw.id and s.kind == "temperature"]

    def read(self, now: float):
        from stationwatch.sensors.base import Sample
        return [Sample(s, 21.0, "ok", now) for s in self.sensors]

    def close(self) -> None:
        pass


def test_a_gateway_that_sent_millions_of_messages_still_gets_its_damaged_spool_back(tmp_path):
    """Ids follow seqs and never come back down, so after weeks of traffic the rows left sit far
    above the first id; salvage starts where they are."""
    path = tmp_path / "spool.db"
    with Spool(path):
        pass
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=9000000 WHERE key='next_seq'")
    db.commit()
    db.close()
    next_seq = filled(path)
    assert next_seq == 9_000_000 + READINGS
    garbage_in_the_middle(path)
    with Spool(path) as spool:
        assert 0 < spool.stats.recovered < READINGS
        assert min(r.seq for r in spool.pending({}, 100_000)) >= 9_000_000
        assert spool.last_seq + 1 >= next_seq
