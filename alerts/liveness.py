"""Is everything still watching? Sensor faults and silence (GB 50166 §4.3.2: no data for 100 s is a
FAULT), camera heartbeats (GB/T 28181 §9.6.1: offline after 3 misses) and gateways lost without a
goodbye (their MQTT last will).

Silence is timed on the engine's clock — a silent device sends no time at all. A gateway's will
carries the time the gateway *connected* (the broker fixes the will at connect), so a lost gateway
is dated by the will's arrival. A retained status delivered again after a reconnect is no news, nor
is a will of an older session than the gateway's last birth (it came late).

While the broker is unsettled (alerts/supervision.py) silence is the broker's: no silence alarm,
and a will is held; once it has settled, a held will, a gateway not heard since the broker came
back, and a gateway that said goodbye and did not return in ``gateway_return_s`` are lost.
"""
from __future__ import annotations

from typing import Iterator

from stationwatch.core.contract import MessageClass

from .situation import Observation, Situation
from .store import Raised
from .verdicts import Clear, Verdict, names, plausible_value, raised, subject

FAULTY_QUALITY = {"fault": "fault", "stale": "stale"}
# GB/T 28181; 救助管理机构重大事故隐患判定标准: a blind camera in the observation room or a public
# area is a major hazard; elsewhere a warning.
CAMERA_SEVERITY = {"medical_observation": "major", "public": "major", "exit": "major", "corridor": "major",
                   "canteen": "major", "minors_dormitory": "major"}


def sensor_fault(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """A detector that reports a fault, a faulty reading quality, or a value outside its physical
    range. Any good message clears it."""
    body, where = obs.body, names(obs)
    if obs.msg.kind is MessageClass.EVENT:
        reason = "fault" if body.state == "fault" else None
    elif body.quality != "ok":
        reason = FAULTY_QUALITY.get(body.quality, "fault")
    else:
        reason = None if plausible_value(obs) is not None or body.value is None else "out_of_range"
    if reason is None:
        sit.mem.pop("silent", obs.device.id)
        yield Clear("sensor_fault", subject(obs, obs.device.id), obs.ts, "sensor reports again / 传感器恢复")
        return
    yield raised(obs, "sensor_fault", subject(obs, obs.device.id), "warning",
                 f"传感器故障：{where['site']} {where['device']}",
                 f"Sensor fault: {where['device']}, {where['site']} ({reason})", reason=reason,
                 value=getattr(body, "value", None))


WAKES = ("gateway", "lost", "suspect", "silent")  # memory whose change may make a device's silence count at once
FULL_SCAN_S = 30.0  # every device is looked at this often even when none can be due (a safety net)
PART_SIZE = 4_096  # devices looked at together (~15 ms); a country's 128,000 sensors are 32 parts
PARTS_PER_TICK = 4  # parts looked at in one tick for the safety net or a change of WAKES (those due by time: all)


class SilenceWatch:
    """When the devices must be looked at again. A country has 128,000 sensors, and looking at each
    every second was a quarter of the engine; but none can fall silent before the earliest of their
    last message + limit, as of the last look, unless what excused one changes (its gateway's state,
    a patrol, its own silence flag: :data:`WAKES`) or the memory is taken over (a takeover).

    Kept per part of :data:`PART_SIZE` devices: looking at all of a country's sensors at once (the
    safety net, every 30 s) took ~0.5 s, and an alarm arriving meanwhile waited for it. A part whose
    earliest silence has come is looked at in that tick, however many there are; the others (safety
    net, WAKES changed) at most :data:`PARTS_PER_TICK` a tick, those looked at longest ago first — for
    a country a WAKES change is seen by all parts within ~9 ticks, not in one. A deployment of up to
    4,096 devices of a kind is one part, looked at as before."""

    def __init__(self) -> None:
        self._due: dict[tuple[str, int], float] = {}  # (kind, part) → the earliest a silence may start
        self._seen: dict[tuple[str, int], tuple] = {}  # (kind, part) → the WAKES' versions after the last look
        self._full: dict[tuple[str, int], float] = {}  # (kind, part) → when it was last looked at

    def parts(self, sit: Situation, kind: str, n_parts: int, now: float) -> list[int]:
        """The parts to look at now: every one due by time, then up to PARTS_PER_TICK others."""
        versions = sit.mem.versions(WAKES)
        timely, other = [], []
        for part in range(n_parts):
            key = (kind, part)
            if now >= self._due.get(key, float("-inf")):
                timely.append(part)
            elif now - self._full.get(key, float("-inf")) >= FULL_SCAN_S or self._seen.get(key) != versions:
                other.append(part)
        other.sort(key=lambda part: self._full.get((kind, part), float("-inf")))
        return timely + other[:PARTS_PER_TICK]

    def looked(self, sit: Situation, kind: str, part: int, now: float, soonest: float) -> None:
        key = (kind, part)
        self._due[key], self._seen[key], self._full[key] = soonest, sit.mem.versions(WAKES), now


def _gone_silent(sit: Situation, devices, limit_of, now: float, kind: str):
    """(device, site, room, limit, silent for) of each device whose last message is older than
    ``limit_of(device)`` seconds, once until it is heard again; not while its gateway is down or
    being asked whether it lives (a patrol after the broker came back). Looks only at the parts in
    which one may be due (:class:`SilenceWatch`)."""
    if sit.pipeline is not None and sit.pipeline.broker_unsettled(now):
        return  # the broker's silence, not theirs (alerts/supervision.py)
    for part in sit.silence.parts(sit, kind, max(1, -(-len(devices) // PART_SIZE)), now):
        soonest = float("inf")
        for device in devices[part * PART_SIZE:(part + 1) * PART_SIZE]:
            limit, last = limit_of(device), sit.last_seen(device.id)
            if sit.mem.get("silent", device.id) or sit.gateway_down(device.gateway) or last is None \
                    or sit.mem.get("suspect", device.gateway) is not None:  # its gateway is being asked: its cause
                continue
            if now - last <= limit:
                soonest = min(soonest, last + limit)
                continue
            sit.mem.put("silent", device.id, True)
            site = sit.cfg.site_of(device)
            yield device, site, site.room(device.room), limit, round(now - last, 1)
        sit.silence.looked(sit, kind, part, now, soonest)


def sensors_stale(sit: Situation, now: float) -> Iterator[Verdict]:
    """No data from a sensor for ``sensor_stale_s`` (or ``stale_intervals`` of its own interval)."""
    limit_of = lambda sensor: max(sit.settings.sensor_stale_s, sit.settings.stale_intervals * sensor.interval_s)  # noqa: E731
    for sensor, site, room, limit, silent_s in _gone_silent(sit, sit.cfg.sensors, limit_of, now, "sensor"):
        yield Raised("sensor_fault", f"{site.id}/{sensor.id}", "warning", site.id, room.id, room.fire_zone,
                     f"传感器无数据：{site.name} {sensor.name}（超过 {limit:.0f} 秒）",
                     f"Sensor silent: {sensor.name}, {site.name} (no data for over {limit:.0f} s)",
                     {"device": sensor.id, "reason": "stale", "silent_s": silent_s}, now)


def _camera_severity(room) -> str:
    return CAMERA_SEVERITY.get(room.kind, "warning")


def camera_offline(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """``misses`` consecutive failed probes → offline; a good heartbeat clears."""
    cam, subj = obs.device, subject(obs, obs.device.id)
    if obs.body.online:
        sit.mem.pop("misses", cam.id)
        sit.mem.pop("silent", cam.id)
        yield Clear("camera_offline", subj, obs.ts, "camera answers again / 摄像机恢复")
        return
    misses = sit.mem.get("misses", cam.id, 0) + 1
    sit.mem.put("misses", cam.id, misses)
    if misses >= cam.misses:
        where = names(obs)
        yield raised(obs, "camera_offline", subj, _camera_severity(obs.room),
                     f"摄像机离线：{where['site']} {where['room']} {where['device']}（连续 {misses} 次无响应）",
                     f"Camera offline: {where['device']} in {where['room']}, {where['site']} ({misses} failed probes)",
                     reason="probe_failed", misses=misses)


def cameras_silent(sit: Situation, now: float) -> Iterator[Verdict]:
    """No heartbeat for ``misses × heartbeat_s`` → the camera (or its probe) is offline."""
    for cam, site, room, limit, silent_s in _gone_silent(sit, sit.cfg.cameras, lambda c: c.misses * c.heartbeat_s, now,
                                                                "camera"):
        yield Raised("camera_offline", f"{site.id}/{cam.id}", _camera_severity(room), site.id, room.id,
                     room.fire_zone, f"摄像机离线：{site.name} {room.name} {cam.name}（{limit:.0f} 秒无心跳）",
                     f"Camera offline: {cam.name} in {room.name}, {site.name} (no heartbeat for {limit:.0f} s)",
                     {"device": cam.id, "reason": "silent", "silent_s": silent_s}, now)


def gateway_offline(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    """A gateway lost without goodbye (its will) is critical: nothing of its site is watched. A will
    while the broker is unsettled is held (see :func:`gateways_lost`). A clean shutdown raises
    nothing at once (it is recorded); coming back online clears."""
    if not obs.news:
        return
    gw, subj = sit.cfg.gateway(obs.msg.gateway), subject(obs, obs.msg.gateway)
    if obs.body.state == "online":
        for ns in ("held_will", "bye", "lost"):
            sit.mem.pop(ns, gw.id)
        yield Clear("gateway_offline", subj, obs.received, "gateway online again / 网关恢复在线")
    elif obs.body.reason == "will":
        if sit.pipeline is not None and sit.pipeline.linked:  # confirmed (or not) by gateways_lost
            sit.mem.put("held_will", gw.id, [obs.received, obs.ts])
            return
        yield raised(obs, "gateway_offline", subj, "critical",
                     f"网关失联：{obs.site.name} {gw.name}（该网关下所有设备无法监测）",
                     f"Gateway lost: {gw.name}, {obs.site.name} (its devices are unwatched)",
                     at=obs.received, device=gw.id, reason="will", connected_ts=obs.ts)
    elif obs.body.reason == "shutdown":
        sit.mem.put("bye", gw.id, obs.received)


LOST_WHY = {  # reason → (中文, English)
    "will": ("连接中断", "connection lost"),
    "will_after_outage": ("连接中断，消息服务器恢复后仍未重新上线", "connection lost; not back after the broker recovered"),
    "silent": ("消息服务器恢复后未再收到其任何消息", "not heard from since the broker came back"),
    "shutdown": ("已正常关机，逾期未重新上线", "shut down cleanly and not back in time"),
}


def _lost(sit: Situation, gateway_id: str, at: float, reason: str, **detail: object) -> Raised:
    gw = sit.cfg.gateway(gateway_id)
    site = sit.cfg.site(gw.site)
    zh, en = LOST_WHY[reason]
    sit.mem.put("lost", gateway_id, at)  # its devices' silence is its own, and it is not patrolled
    return Raised("gateway_offline", f"{site.id}/{gw.id}", "critical", site.id, None, None,
                  f"网关失联：{site.name} {gw.name}（{zh}；该网关下所有设备无法监测）",
                  f"Gateway lost: {gw.name}, {site.name} ({en}; its devices are unwatched)",
                  {"device": gw.id, "reason": reason, "last_heard": at, **detail}, at)


def gateways_lost(sit: Situation, now: float) -> Iterator[Verdict]:
    """Held wills and goodbyes that did not end in a return, and gateways silent since the broker came back."""
    pipeline = sit.pipeline
    settled = pipeline is None or not pipeline.broker_unsettled(now)
    confirm = sit.cfg.supervision.will_confirm_s
    for gw_id, (held_at, connected_ts) in list(sit.mem.space("held_will").items()):
        if settled and now - held_at >= confirm:
            sit.mem.pop("held_will", gw_id)
            if sit.gateway_down(gw_id) and sit.cfg.gateway(gw_id) is not None:
                if pipeline.link_changed <= held_at:  # the link held: an ordinary will, dated by its arrival
                    yield _lost(sit, gw_id, held_at, "will", connected_ts=connected_ts)
                else:  # it came with the broker's own trouble: dated from the gateway's last message
                    yield _lost(sit, gw_id, sit.heard(gw_id) or held_at, "will_after_outage")
    return_s = sit.cfg.supervision.gateway_return_s
    watching = pipeline.since if pipeline is not None else 0.0
    for gw_id, bye_at in list(sit.mem.space("bye").items()):
        if now >= max(bye_at, watching) + return_s:
            sit.mem.pop("bye", gw_id)
            if sit.gateway_down(gw_id) and sit.cfg.gateway(gw_id) is not None:
                yield _lost(sit, gw_id, bye_at, "shutdown")
    if pipeline is not None and pipeline.linked and settled and sit.mem.get("engine", "swept") != pipeline.link_changed:
        sit.mem.put("engine", "swept", pipeline.link_changed)
        for gw in sit.cfg.gateways:
            heard = sit.heard(gw.id)
            # heard after the link went down means heard since it came back (nothing is heard meanwhile)
            if not sit.gateway_down(gw.id) and heard is not None and heard < pipeline.link_lost_at:
                sit.mem.put("suspect", gw.id, now)  # not heard since: ask it (patrol) before calling it lost
                sit.mem.put("patrol", gw.id, {"next": now})
    timeout = sit.cfg.supervision.patrol_timeout_s
    for gw_id, since in list(sit.mem.space("suspect").items()):
        heard = sit.heard(gw_id)
        if heard is not None and heard >= since:
            sit.mem.pop("suspect", gw_id)  # it answered, or spoke: alive
        elif now - since > timeout + 1.0 and sit.cfg.gateway(gw_id) is not None:
            sit.mem.pop("suspect", gw_id)
            yield _lost(sit, gw_id, heard or since, "silent")
