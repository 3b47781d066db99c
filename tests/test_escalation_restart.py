"""`stationwatch alerts` as its own process, SIGKILLed in the middle of an escalation: after the
restart the climb goes on on its stored schedule — every deadline missed while it was down is a
breach, every level is told in order, none skipped — and nothing is lost: the message sent while
it was down is evaluated, the acknowledgement made meanwhile holds, every notice is delivered."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stationwatch.alerts.store import Store
from stationwatch.core.contract import MessageClass

from support import wait_for
from support.alerts import Wire, send
from support.escalation import ACK_S, chain_yaml

CLI = [sys.executable, "-m", "stationwatch.cli"]


class Service:
    """`stationwatch alerts` in a process of its own."""

    def __init__(self, cfg: Path, broker: str, db: Path, log: Path):
        # an own persistent session (client id), kept across the kill: the suite's broker is shared
        self.args = CLI + ["alerts", "-c", str(cfg), "--broker", broker, "--db", str(db),
                           "--client-id", f"alerts-{db.parent.name}"]
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Service":
        self.proc = subprocess.Popen(self.args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        return self.proc.returncode


def test_sigkill_mid_escalation_loses_nothing_and_skips_no_level(tmp_path, mosquitto, receiver, publisher):
    cfg, db, wire = chain_yaml(tmp_path, receiver.port), tmp_path / "alerts.db", Wire()
    broker = f"127.0.0.1:{mosquitto.port}"
    store = Store(db)
    paths = lambda: [r["path"].strip("/") for r in receiver.received()]  # noqa: E731
    service = Service(cfg, broker, db, tmp_path / "alerts.log").start()
    try:
        send(publisher, wire.status("online"), MessageClass.STATUS)
        wait_for(lambda: store.gateways(), 20, what="the engine subscribed")
        send(publisher, wire.event("boiler-fault", "alarm"))  # a major alert, to be acknowledged while down
        send(publisher, wire.event("smk-dorm-f1a", "alarm"))
        send(publisher, wire.event("smk-dorm-f1b", "alarm"))
        fire = wait_for(lambda: [a for a in store.alerts() if a.rule == "fire" and a.severity == "critical"], 15,
                        what="the confirmed fire")[0]
        wait_for(lambda: "leader" in paths(), 15, what="the leader told when the staff's deadline ran out")
        service.kill()  # mid-escalation: the leader's deadline is running
        killed_at = time.time()
        esc = store.get(fire.id, with_trail=True).escalation
        started = esc["started_at"]
        assert esc["level"] == 1 and esc["due_at"] == pytest.approx(started + 2 * ACK_S)

        # while it is down: an acknowledgement through the store (as the API makes it) and a new alarm
        boiler = next(a for a in store.alerts() if a.rule == "boiler_fault")
        store.acknowledge(boiler.id, "duty-staff（值班员）", "锅炉房已派人")
        send(publisher, wire.event("smk-kitchen", "alarm"))
        wait_for(lambda: time.time() > started + 3 * ACK_S + 0.5, 15, what="two deadlines to pass while down")
        before = paths()

        service = Service(cfg, broker, db, tmp_path / "alerts.log").start()
        wait_for(lambda: "province" in paths(), 20, what="the climb to go on after the restart")
        wait_for(lambda: [a for a in store.alerts() if a.rule == "fire" and a.subject.endswith("kitchen")], 15,
                 what="the alarm sent while the engine was down")
        breaches = store.query("SELECT level, due_at, reason FROM breaches WHERE alert_id=? ORDER BY id", (fire.id,))
        assert [b["level"] for b in breaches][:3] == [0, 1, 2]
        assert [b["due_at"] for b in breaches][:3] == pytest.approx([started + ACK_S * k for k in (1, 2, 3)])
        climb = [(r["contact"], r["level"]) for r in store.query(
            "SELECT contact, level FROM outbox WHERE alert_id=? AND kind='escalation' ORDER BY id", (fire.id,))]
        assert climb[:3] == [("leader", 1), ("bureau", 2), ("province", 3)]  # in order, none skipped
        assert {"bureau", "province"} <= set(paths()[len(before):])  # told after the restart
        assert killed_at < started + 2 * ACK_S  # it really was killed before the leader's deadline
        wait_for(lambda: not store.query("SELECT id FROM outbox WHERE state IN ('queued', 'sending')"), 15,
                 what="every queued notice delivered")
        assert store.query("SELECT COUNT(*) n FROM alerts WHERE rule='fire' AND subject LIKE '%z-dorm-west'")[0]["n"] == 1
        wait_for(lambda: time.time() > started + 5 * ACK_S + 1.5, 30, what="the boiler's deadline to pass")
        assert store.query("SELECT * FROM breaches WHERE alert_id=?", (boiler.id,)) == []  # acknowledged: no climb
        assert store.get(boiler.id).state == "acknowledged"
    finally:
        code = service.stop()
        store.close()
    assert code == 0, (tmp_path / "alerts.log").read_text(errors="replace")[-3000:]
