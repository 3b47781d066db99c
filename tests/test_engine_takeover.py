"""Alert engines partitioned by site on one PostgreSQL store (alerts/leases.py): the leases spread the
sites, a lease not renewed is taken over, and an engine that lost its lease cannot write (fencing) —
also as a real process paused (SIGSTOP) past its lease and woken up after another took over.
Then three real `stationwatch alerts` processes on the suite's Mosquitto and one PostgreSQL store,
the one owning the station SIGKILLed in the middle of an escalation: another takes the station over
within 30 s and the climb goes on — no alert lost or raised twice, no level skipped, every notice
delivered to the HTTP receiver exactly once per row queued."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from stationwatch.alerts.leases import LEASE_S, LeaseLost, Leases, preferred
from stationwatch.alerts.store import Store
from stationwatch.core.config import CENTRE
from stationwatch.core.contract import MessageClass
from stationwatch.core.mqtt import MqttLink

from support import wait_for
from support.alerts import SITE, Wire, send
from support.escalation import ACK_S, chain_yaml

CLI = [sys.executable, "-m", "stationwatch.cli"]
SITES = [f"site-{i:02d}" for i in range(30)]


class FakeTime:
    def __init__(self, t: float = 1.8e9):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_leases_spread_the_sites_a_dead_engines_sites_are_taken_and_its_late_write_is_refused(postgres_url):
    now = FakeTime()
    stores = [Store(postgres_url) for _ in range(3)]
    engines = [Leases(store, name, SITES, clock=now) for store, name in zip(stores, "abc")]
    try:
        for _ in range(2):  # the first round sees the others join; the second hands sites to who ranks first
            for e in engines:
                e.beat()
        owners = engines[0].owners()
        assert set(owners) == set(SITES) and all(o[0] in "abc" for o in owners.values())
        held = [e.sites for e in engines]
        assert sum(len(h) for h in held) == len(SITES) and not (held[0] & held[1] or held[1] & held[2])
        assert all(len(h) >= 5 for h in held), [len(h) for h in held]  # rendezvous: about a third each
        a, b, c = engines
        lost = set(a.sites)
        stores[0].guard = a.fence
        now.t += LEASE_S + 0.1  # `a` stops beating (paused, or dead)
        for e in (b, c):
            e.beat()
        assert lost <= b.sites | c.sites and not (b.sites & c.sites)
        owners = b.owners()
        assert all(owners[s][0] in "bc" and owners[s][1] == 2 for s in lost)  # a new fencing token each
        with pytest.raises(LeaseLost, match="lease lost"):  # `a` wakes up and writes as if it still owned them
            stores[0].beat("alerts:a", {"late": True})
        assert stores[1].last_beat("alerts:a") is None  # rolled back
        assert not a.sites
    finally:
        for s in stores:
            s.close()


class Engine:
    """`stationwatch alerts --store postgresql://…` in a process of its own."""

    def __init__(self, cfg: Path, broker: str, url: str, client_id: str, workdir: Path):
        self.client_id, self.log = client_id, workdir / f"{client_id}.log"
        self.proc = subprocess.Popen(CLI + ["alerts", "-c", str(cfg), "--broker", broker, "--store", url,
                                            "--client-id", client_id], cwd=workdir, stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def owner(store: Store, site: str) -> tuple[str, int] | None:
    rows = store.query("SELECT owner, token FROM site_leases WHERE site=? AND expires_at>?", (site, time.time()))
    return (rows[0]["owner"], rows[0]["token"]) if rows else None


def test_three_engines_one_killed_mid_escalation_its_site_is_taken_over_and_nothing_is_lost_or_doubled(
        tmp_path, postgres_url, mosquitto, broker_address, receiver, publisher):
    cfg, wire = chain_yaml(tmp_path, receiver.port), Wire()
    broker = f"127.0.0.1:{mosquitto.port}"
    names = [f"alerts-part-{tmp_path.name[-6:]}-{i}" for i in range(3)]
    store = Store(postgres_url)
    paths = lambda: [r["path"].strip("/") for r in receiver.received()]  # noqa: E731
    engines = {name: Engine(cfg, broker, postgres_url, name, tmp_path) for name in names}
    try:
        settled = lambda: all((owner(store, p) or ("",))[0] == preferred(p, names) for p in (SITE, CENTRE))  # noqa: E731
        wait_for(settled, 30, what="three engines alive, the station and the centre with the engine ranking first")
        send(publisher, wire.status("online"), MessageClass.STATUS)
        wait_for(lambda: store.gateways(), 20, what="the station's owner hearing its gateway")
        send(publisher, wire.event("smk-dorm-f1a", "alarm"))
        send(publisher, wire.event("smk-dorm-f1b", "alarm"))
        fire = wait_for(lambda: [a for a in store.alerts() if a.rule == "fire" and a.severity == "critical"], 15,
                        what="the confirmed fire")[0]
        wait_for(lambda: "leader" in paths(), 15, what="the leader told when the staff's deadline ran out")
        # the send recorded: a notice cut off between the HTTP answer and its row is sent again (at least
        # once, alerts/outbox.py), which would be a second POST the receiver counts
        wait_for(lambda: store.query("SELECT 1 FROM outbox WHERE contact='leader' AND state='sent'"), 5,
                 what="the leader's notice recorded as sent")
        dead, token = owner(store, SITE)
        engines[dead].kill()  # mid-escalation: the leader's deadline is running
        killed_at = time.time()
        started = store.get(fire.id, with_trail=True).escalation["started_at"]
        assert killed_at < started + 2 * ACK_S  # it really was killed before the leader's deadline
        send(publisher, wire.event("smk-kitchen", "alarm"))  # while nobody owns the station

        heir = wait_for(lambda: (o := owner(store, SITE)) and o[0] != dead and o, 30, what="the station taken over")
        took = time.time() - killed_at
        assert took <= 30 and heir[1] == token + 1, (took, heir)
        wait_for(lambda: "province" in paths(), 30, what="the climb to go on under the new owner")
        wait_for(lambda: [a for a in store.alerts() if a.rule == "fire" and a.subject.endswith("kitchen")], 15,
                 what="the alarm sent while the station had no owner")
        wait_for(lambda: not store.query("SELECT id FROM outbox WHERE state IN ('queued', 'sending')"), 15,
                 what="every queued notice delivered")

        breaches = store.query("SELECT level, due_at FROM breaches WHERE alert_id=? ORDER BY id", (fire.id,))
        levels = [b["level"] for b in breaches]  # the top level's deadline may have run out too
        assert levels[:3] == [0, 1, 2] and levels == list(range(len(levels)))  # each once, in order, none skipped
        assert [b["due_at"] for b in breaches] == pytest.approx([started + ACK_S * (k + 1) for k in levels])
        climb = [(r["contact"], r["level"]) for r in store.query(
            "SELECT contact, level FROM outbox WHERE alert_id=? AND kind='escalation' ORDER BY id", (fire.id,))]
        assert climb == [("leader", 1), ("bureau", 2), ("province", 3)]  # in order, none skipped, none twice
        assert store.query("SELECT COUNT(*) n FROM alerts WHERE rule='fire' AND subject LIKE '%z-dorm-west'")[0]["n"] == 1
        assert store.query("SELECT COUNT(*) n FROM alerts WHERE rule='fire' AND subject LIKE '%kitchen'")[0]["n"] == 1
        sent = Counter(r["contact"] for r in store.query("SELECT contact FROM outbox WHERE state='sent'"))
        assert Counter(p.split("?")[0] for p in paths()) == {"staff": sent["duty-staff"], **{
            c: sent[c] for c in ("leader", "bureau", "province") if sent[c]}}  # each row delivered once
        print(f"station taken over {took:.1f} s after the SIGKILL (lease {LEASE_S:.0f} s)")
    finally:
        codes = {name: e.stop() for name, e in engines.items()}
        store.close()
        for name in names:
            MqttLink(broker_address, name, clean_start=True).start().stop()  # their sessions go with them
        send(publisher, wire.event("smk-dorm-f1a", "normal"))
        send(publisher, wire.event("smk-dorm-f1b", "normal"))
        send(publisher, wire.event("smk-kitchen", "normal"))
    assert all(code in (0, -9) for code in codes.values()), {n: (tmp_path / f"{n}.log").read_text(
        errors="replace")[-2000:] for n in names}


def test_an_engine_paused_past_its_lease_writes_nothing_for_the_site_it_lost(
        tmp_path, postgres_url, mosquitto, broker_address, receiver, publisher):
    cfg, wire = chain_yaml(tmp_path, receiver.port), Wire()
    broker = f"127.0.0.1:{mosquitto.port}"
    names = [f"alerts-pause-{tmp_path.name[-6:]}-{i}" for i in range(2)]
    store = Store(postgres_url)
    engines = {name: Engine(cfg, broker, postgres_url, name, tmp_path) for name in names}
    paused = None
    try:
        wait_for(lambda: owner(store, SITE) and len(
            store.query("SELECT id FROM engines WHERE expires_at>?", (time.time(),))) == 2, 30,
            what="two engines alive and the station leased")
        send(publisher, wire.status("online"), MessageClass.STATUS)
        wait_for(lambda: store.gateways(), 20, what="the station's owner hearing its gateway")
        paused, token = owner(store, SITE)
        engines[paused].proc.send_signal(signal.SIGSTOP)  # a frozen VM, a stalled disk: alive, but not beating
        heir = wait_for(lambda: (o := owner(store, SITE)) and o[0] != paused and o, 30, what="the station taken over")
        assert heir[1] == token + 1
        send(publisher, wire.event("smk-kitchen", "alarm"))  # both engines receive it: only the owner may judge it
        kitchen = wait_for(lambda: [a for a in store.alerts() if a.subject.endswith("kitchen")], 15,
                           what="the new owner's alert")[0]
        engines[paused].proc.send_signal(signal.SIGCONT)  # it wakes up believing it owns the station
        log = tmp_path / f"{paused}.log"
        wait_for(lambda: re.search(r"lease lost|let go \[[^\]]*'sl-station'", log.read_text(errors="replace")), 20,
                 what="the woken engine finding its lease gone")
        wait_for(lambda: store.query("SELECT 1 FROM engines WHERE id=? AND expires_at>?", (paused, time.time())), 10,
                 what="the woken engine beating again")
        again = store.get(kitchen.id, with_trail=True)
        assert again.count == 1 and [t["action"] for t in again.audit].count("raise") == 1  # judged once
    finally:
        if paused is not None and engines[paused].proc.poll() is None:
            engines[paused].proc.send_signal(signal.SIGCONT)
        codes = {name: e.stop() for name, e in engines.items()}
        store.close()
        for name in names:
            MqttLink(broker_address, name, clean_start=True).start().stop()
        send(publisher, wire.event("smk-kitchen", "normal"))
    assert all(code == 0 for code in codes.values()), {n: (tmp_path / f"{n}.log").read_text(
        errors="replace")[-2000:] for n in names}
