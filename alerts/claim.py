"""One alert engine per store and per MQTT client id, until engines are partitioned by site.

Two engines on one store would each judge half of the messages with the same memory; two engines
with one client id take the broker's persistent session from each other, again and again, and
split a zone's detectors between them (a two-detector fire may stay a pre-alarm). So
``stationwatch alerts`` claims both before it connects, and refuses to start (exit status 2) when
either is taken, saying by whom:

* **the store**: an exclusive ``flock`` on ``{store}.engine.lock`` beside it. The kernel drops the
  lock with the process, so a SIGKILLed or crashed engine never blocks its own restart. The file
  says who holds it (pid, host, client id, since when); it is never deleted.
* **the client id**: before connecting with it, a look with a client id of its own at the id's
  retained beat (``sw/svc/v1/alerts/{client_id}/beat``, online with a will: core/heartbeat.py).
  Offline (a clean stop, or the will of a killed engine) or none: free. Online: the engine is live
  only if it beats again within :data:`LISTEN_S`; a retained ``online`` nobody refreshes (the
  broker lost power before it could publish the will) does not keep the next engine out.

>>> claim = claim_store(tmp / "alerts.db", "stationwatch-alerts")      # doctest: +SKIP
>>> claim_store(tmp / "alerts.db", "other")                            # doctest: +SKIP
Traceback (most recent call last):
EngineTaken: 告警库 … 已被另一个告警引擎使用 …
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from stationwatch.core.contract import ContractError, parse_service, service_topic
from stationwatch.core.mqtt import BrokerAddress, MqttLink
from stationwatch.core.wire import payload

from .records import AlertError

log = logging.getLogger(__name__)

BEAT_S = 2.0  # the engine's heartbeat, in the store (read by /health and the watcher) and on MQTT
LISTEN_S = 3 * BEAT_S + 1  # a retained "online": this long for a live beat before it counts as stale
CONNECT_S = 3.0  # the look at the client id waits this long for the broker


class EngineTaken(AlertError):
    """Another alert engine holds the store or the client id; the message says which and what to do."""


def lock_path(db_path: str | Path) -> Path:
    """``/var/lib/stationwatch/alerts.db`` → ``…/alerts.db.engine.lock`` (symbolic links resolved:
    one store, one lock, whatever path names it)."""
    real = Path(db_path).resolve()
    return real.with_name(real.name + ".engine.lock")


@dataclass
class StoreClaim:
    """The engine's exclusive hold on one store, for as long as the process lives."""
    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


def claim_store(db_path: str | Path, client_id: str) -> StoreClaim:
    """Take the store for this engine, or :class:`EngineTaken` naming the store and its holder."""
    path = lock_path(db_path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise EngineTaken(
            f"告警库 {Path(db_path).resolve()} 已被另一个告警引擎使用（{holder['zh']}）：一个告警库只能由一个引擎使用。"
            f"请先停止该引擎；被强制结束的引擎不会留下锁。"
            f" / the alert store {Path(db_path).resolve()} is in use by another alert engine ({holder['en']}):"
            f" one engine per store. Stop that engine first (a killed engine leaves no lock behind),"
            f" or give this one its own --db and --client-id.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "client_id": client_id,
                              "since": time.time()}).encode(), 0)
    return StoreClaim(path, fd)


def _holder(fd: int) -> dict[str, str]:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = datetime.fromtimestamp(float(info["since"])).isoformat(timespec="seconds")
        return {"zh": f"进程 {info['pid']}，主机 {info['host']}，客户端编号 {info['client_id']}，自 {since} 起",
                "en": f"pid {info['pid']} on {info['host']}, client id '{info['client_id']}', since {since}"}
    except (ValueError, KeyError, TypeError, OSError):
        return {"zh": "持有者不明", "en": "holder unknown"}


def check_client_id(address: BrokerAddress, client_id: str, *, connect_s: float = CONNECT_S,
                    listen_s: float = LISTEN_S) -> bool:
    """True when no live engine uses ``client_id``; False when the broker could not be asked (not
    reachable in ``connect_s``); :class:`EngineTaken` when one is live. A broker that refuses the
    look (its account may not use another client id) is answered True, with a warning: the look is
    a courtesy of the broker's ACL, and the engine must not stay down for it."""
    beat, echo = service_topic("alerts", client_id), service_topic("alerts", client_id, "check")
    got: list[tuple[bool, bytes]] = []
    echoed, fresh = threading.Event(), threading.Event()

    def on_message(topic_name: str, body: bytes, msg) -> None:
        if topic_name == echo:
            echoed.set()
        elif topic_name == beat:
            got.append((bool(msg.retain), body))
            if not msg.retain and _state(topic_name, body) == "online":
                fresh.set()

    link = MqttLink(address, f"{client_id}-check-{os.getpid()}", on_message=on_message)
    try:
        link.start(wait=connect_s)
    except ConnectionRefusedError as exc:
        log.warning("could not check whether another engine uses client id %r: %s", client_id, exc)
        return True
    except ConnectionError:
        return False
    try:
        link.subscribe_wait(beat, 1)
        link.subscribe_wait(echo, 1)
        # the broker hands out a subscription's retained message before it handles our next packet:
        # once our own echo is back, the retained beat (if any) is in `got`
        link.client.publish(echo, payload(time.time()), qos=1)
        if not echoed.wait(connect_s):
            return False
        retained = [body for was_retained, body in got if was_retained]
        if fresh.is_set() or (retained and _state(beat, retained[-1]) == "online" and fresh.wait(listen_s)):
            raise EngineTaken(
                f"另一个告警引擎正在使用消息服务器客户端编号 {client_id}（{address.host}:{address.port}，心跳正常）："
                f"同一编号的两个引擎会互相抢占会话、分走同一防火分区的探测器。请先停止该引擎，或为本引擎指定另一个"
                f" --client-id 和告警库 --db。 / another alert engine is live with MQTT client id '{client_id}' on"
                f" {address.host}:{address.port} (it is beating): two engines with one client id take the broker"
                f" session from each other and split a zone's detectors between them. Stop that engine first,"
                f" or run this one with its own --client-id and --db.")
        if retained and _state(beat, retained[-1]) == "online":
            log.warning("client id %r: a retained 'online' beat, but no beat for %.0f s: taken as gone", client_id,
                        listen_s)
        return True
    except TimeoutError:
        return False
    finally:
        link.stop()


def _state(topic_name: str, body: bytes) -> str | None:
    try:
        msg = parse_service(topic_name, body)
    except ContractError:
        return None
    return msg.body.state if msg.body is not None else None

