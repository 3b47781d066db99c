"""Who watches the watchers, inside the engine: the pipeline's hops, the broker's outages, and
gateways that go quiet without a will that counts.

| hop | how it is known alive | silent past its grace → |
|---|---|---|
| ``ingest`` | its retained heartbeat ``sw/svc/v1/ingest/{instance}/beat`` (with a will) | ``pipeline_silent`` (major) |
| ``influxdb`` | ingest's canary: a point written and read back, reported in ingest's beat | ``pipeline_silent`` (major) |
| ``broker`` | the engine's own publish → receive round trip, every beat | ``pipeline_silent`` (critical) |
| ``api``, ``watcher`` | their heartbeat in the store | ``pipeline_silent`` (major / warning) |

Each is dated from its last heartbeat, not from the moment of detection, and resolves when the hop
is back; every outage is also kept as a span (hop, from, to) in the store. A hop is supervised from
its first heartbeat, or from the engine's start when ``supervision.expect`` names it. The engine and
its dispatcher are watched from outside, by the watcher (alerts/watcher.py).

**One cause, one alarm.** While the broker (or the engine's link to it) is down, and for
``reconnect_grace_s`` after it is back, the silence of sensors, cameras and gateways is the
broker's: no ``sensor_fault`` or ``camera_offline`` for silence, and a will is held instead of paged
(a broker stopped for a restart publishes every will). When the grace is over, a gateway whose will
still stands, or that has not been heard since the broker came back, is lost — dated from its last
message. (A gateway not heard since the broker came back is first asked — a patrol — and lost only
if it does not answer.) A gateway that said goodbye cleanly and is not back after ``gateway_return_s``
is lost too.
"""
from __future__ import annotations

from typing import Iterator

from stationwatch.core.config import CENTRE, CENTRE_NAME
from stationwatch.core.contract import ServiceMessage

from .situation import Situation
from .store import Raised, Store
from .verdicts import Clear, Verdict

RULE = "pipeline_silent"
SEVERITY = {"broker": "critical", "ingest": "major", "influxdb": "major", "api": "major", "watcher": "warning"}
HOP_NAMES = {"broker": ("消息服务器 (MQTT)", "the MQTT broker"), "ingest": ("入库服务", "ingest"),
             "influxdb": ("时序数据库 InfluxDB", "InfluxDB"), "api": ("接口与值班看板", "the API and duty board"),
             "watcher": ("独立看护进程", "the independent watcher")}
STORE_BEATS = ("api", "watcher")  # hops whose heartbeat the engine reads in the store
WHY = {"broker": ("告警无法从网关送达中心", "alarms cannot reach the centre"),
       "ingest": ("读数未入库", "readings are not being stored"),
       "influxdb": ("读数无法写入", "readings cannot be written"),
       "api": ("值班看板不可用，无法确认告警", "the duty board is down: alerts cannot be acknowledged"),
       "watcher": ("告警引擎失去外部看护", "the alert engine is no longer watched from outside")}


class Pipeline:
    """The hops' state, kept in the rules' memory: namespace ``hop`` (hop → last time known alive)
    and ``hop_down`` (hop → since when it is down, while it is)."""

    def __init__(self, sit: Situation, store: Store, now: float):
        self.sit, self.store = sit, store
        self.settings = sit.cfg.supervision
        self.since = now  # this engine's start: silence before it is nobody's news
        self.linked = False  # the engine runs on a live MQTT link (run_engine); not when driven in-process
        self.link_up = False
        self.link_changed = now
        self.link_lost_at = now  # when the link last went down: nothing is heard until it is back

    # ---- what the engine tells it
    def link(self, up: bool, now: float) -> None:
        """The engine's MQTT link came up or went down."""
        if not self.linked:
            self.linked, self.since, self.link_lost_at = True, now, now
        if up != self.link_up:
            self.link_up, self.link_changed = up, now
            if not up:
                self.link_lost_at = now

    def round_trip(self, now: float) -> None:
        """A probe the engine published came back through the broker."""
        self._alive("broker", now)

    def service(self, msg: ServiceMessage, now: float) -> None:
        """A service's heartbeat (sw/svc/v1/…/beat)."""
        body = msg.body
        if msg.service != "ingest" or body is None:
            return
        if body.state == "online":  # a will or a goodbye: silent from its last beat on (a restart
            self._alive("ingest", body.ts)  # within the grace pages nobody)
            ok_at = body.info.get("influx_ok_at")
            if isinstance(ok_at, (int, float)):
                self._alive("influxdb", float(ok_at))

    def _alive(self, hop: str, at: float) -> None:
        last = self._last(hop)
        if last is None or at > last:
            self.sit.mem.put("hop", hop, at)

    def _last(self, hop: str) -> float | None:
        return self.sit.mem.get("hop", hop)

    # ---- what the rules ask
    def broker_unsettled(self, now: float) -> bool:
        """True while silence is the broker's: the link is down, no round trip came back lately, or
        the link came back less than ``reconnect_grace_s`` ago."""
        if not self.linked:
            return False
        if not self.link_up:
            return True
        if now - self.link_changed < self.settings.reconnect_grace_s:
            return True
        last = self._last("broker")
        return last is not None and now - last > 3 * self.settings.beat_s

    def settled_at(self) -> float:
        """When the broker's silence ends counting for the gateways: link back + the grace."""
        return self.link_changed + self.settings.reconnect_grace_s

    # ---- the time rule
    def tick(self, now: float) -> Iterator[Verdict]:
        for hop, at in self._store_beats():
            self._alive(hop, at)
        for hop in SEVERITY:
            last = self._last(hop)
            if hop == "broker" and not self.linked:
                continue
            expected = hop == "broker" or hop in self.settings.expect
            if last is None and not expected:
                continue  # supervised from its first heartbeat
            since = last if last is not None else self.since
            grace = self.settings.grace(hop)
            down = now - max(since, self.since) > grace
            was_down = self.sit.mem.get("hop_down", hop) is not None
            if down and not was_down:
                self.sit.mem.put("hop_down", hop, since)
                self.store.outage_started(hop, since, f"silent for over {grace:g} s")
            elif not down and was_down:
                self.sit.mem.pop("hop_down", hop)
                self.store.outage_ended(hop, since)
            if down:
                yield _silent(hop, since, now, grace)
            elif last is not None:
                yield Clear(RULE, f"{CENTRE}/{hop}", now, f"{HOP_NAMES[hop][1]} is back / 已恢复")

    def _store_beats(self) -> Iterator[tuple[str, float]]:
        for hop in STORE_BEATS:
            found = self.store.last_beat(hop)
            if found is not None:
                yield hop, found[0]


def _silent(hop: str, since: float, now: float, grace: float) -> Raised:
    zh, en = HOP_NAMES[hop]
    why_zh, why_en = WHY[hop]
    return Raised(RULE, f"{CENTRE}/{hop}", SEVERITY[hop], CENTRE, None, None,
                  f"监测链路中断：{zh}（超过 {grace:.0f} 秒无心跳，{why_zh}）",
                  f"Pipeline silent: {en} (no heartbeat for over {grace:.0f} s; {why_en})",
                  {"hop": hop, "last_beat": since, "silent_s": round(now - since, 1), "place": CENTRE_NAME}, since)
