"""Is a gateway in trouble before it dies? Its own health (``health/{metric}``, sensors/health.py):
under-voltage, throttling, a nearly full disk (the spool lives there) and a clock that is not
synchronised (every timestamp it sends would be wrong) — each a ``gateway_health`` alert for the
staff on duty, severity ``warning``: a maintenance job (检修), not an emergency, so it never takes
the fire chain. One alert per gateway and problem; it clears when the sample says the problem is gone.

And the gateway's local alarm (``health/local_alarm``): when the siren in the building is silenced
(button, ``cmd:silence``, ``cmd:ack``) or goes quiet, the open fire alert of the detectors' fire
zone says so in its audit trail (actor ``gateway:{id}``), and the last state per gateway is kept
in the rules' memory (namespace ``local_alarm``).

The disk threshold is a rule setting (``rules.gateway_disk_free_min_pct``, 10 % by default, and
``rules.gateway_disk_free_hysteresis_pct``, 2 %).
"""
from __future__ import annotations

from typing import Any, Iterator

from stationwatch.core.contract import LOCAL_ALARM, SPOOL, Message

from .situation import Observation, Situation
from .verdicts import Clear, Verdict, raised, subject

KIND = "gateway_health"  # the observation kind of every health message
# flag metric → (中文, English): raised while the gateway reports it as "alarm"
FLAGS: dict[str, tuple[str, str]] = {
    "under_voltage": ("电源欠压（电源或线缆故障，网关可能随时掉电）",
                      "under-voltage (power supply or cable failing; the gateway may drop out)"),
    "throttled": ("CPU 降频（过热或供电不足）", "CPU throttled (overheating or weak power)"),
    "clock_unsynced": ("时钟未同步（上报时间可能不准）", "clock not synchronised (its timestamps may be wrong)"),
    "spool": ("本地缓存无法写入（磁盘满、只读或损坏；告警仍会发出，读数可能丢失）",
              "disk spool cannot be written (full, read-only or damaged; alarms still go out, readings may be lost)"),
}
# health/spool with detail "replaced: …": the gateway started on a new spool (it stays raised for a person)
REPLACED = ("本地缓存文件损坏，已另存并新建（部分读数可能丢失，请检查存储卡）",
            "disk spool was damaged: set aside and replaced (some readings may be lost; check the SD card)")
LOCAL_ALARM_NOTES = {
    "silenced": ("本地声光报警已消音", "local alarm silenced"),
    "quiet": ("本地声光报警已停止（探测器恢复正常）", "local alarm quiet (detectors back to normal)"),
    "sounding": ("本地声光报警响起", "local alarm sounding"),
}
BY = {"button": ("现场按钮", "button on site"), "cmd:silence": ("中心消音指令", "silence command"),
      "cmd:ack": ("中心确认", "acknowledged centrally")}


def observe(sit: Situation, msg: Message, gateway: Any, now: float) -> Observation:
    """A health message as an observation: its device is the gateway, it has no room."""
    sit.start(now)
    site = sit.cfg.site(msg.site)
    return Observation(msg, gateway, KIND, site, None, msg.body.ts, now)


def _problem(sit: Situation, obs: Observation) -> tuple[bool | None, str, str]:
    """(True: in trouble, False: fine, None: no news), and what to say."""
    metric, body = obs.msg.device, obs.body
    if body.quality != "ok":
        return None, "", ""  # the check itself failed: says nothing about the problem
    if metric == SPOOL and body.state == "alarm" and (body.detail or "").startswith("replaced"):
        zh, en = REPLACED
        return True, zh, en
    if metric in FLAGS:
        zh, en = FLAGS[metric]
        return {"alarm": True, "normal": False}.get(body.state), zh, en
    if metric == "disk_free" and body.value is not None:
        low, band = sit.settings.gateway_disk_free_min_pct, sit.settings.gateway_disk_free_hysteresis_pct
        zh, en = f"磁盘将满（剩余 {body.value:.1f}%）", f"disk nearly full ({body.value:.1f} % free)"
        return (True if body.value < low else False if body.value >= low + band else None), zh, en
    return None, "", ""


def gateway_health(sit: Situation, obs: Observation) -> Iterator[Verdict]:
    if obs.msg.device == LOCAL_ALARM:
        return
    trouble, zh, en = _problem(sit, obs)
    if trouble is None:
        return
    subj = subject(obs, obs.msg.gateway, obs.msg.device)
    if not trouble:
        yield Clear(KIND, subj, obs.ts, "gateway healthy again / 网关恢复正常")
        return
    gw = obs.device
    yield raised(obs, KIND, subj, "warning", f"网关需检修：{obs.site.name} {gw.name} {zh}",
                 f"Gateway needs maintenance: {gw.name}, {obs.site.name}: {en}",
                 metric=obs.msg.device, value=obs.body.value, reason=obs.body.detail)


def local_alarm(sit: Situation, store: Any, db: Any, obs: Observation) -> list[int]:
    """Note a local alarm change on the open fire alerts of its detectors' zones; returns their ids."""
    body, gw = obs.body, obs.msg.gateway
    before = sit.mem.get("local_alarm", gw) or {}
    detectors = set(body.detectors) | ({body.by} if body.state == "quiet" else set())
    if body.state == "quiet":  # none in alarm now: the alert is the one the last detectors belonged to
        detectors |= set(before.get("detectors", ()))
    sit.mem.put("local_alarm", gw, {"state": body.state, "by": body.by, "detectors": sorted(body.detectors),
                                    "ts": body.ts})
    if body.state == "sounding":
        return []  # the alarm event that set it off raises the alert after this message
    zones = {sit.devices[d].room for d in detectors if d in sit.devices}
    site = obs.site
    subjects = {f"{site.id}/{site.room(room).fire_zone}" for room in zones}
    zh, en = LOCAL_ALARM_NOTES[body.state]
    how_zh, how_en = BY.get(body.by, (body.by, body.by))
    note = f"{zh}（{how_zh}）/ {en} ({how_en})" if body.state == "silenced" else f"{zh} / {en}"
    noted = []
    for subj in sorted(subjects):
        for candidate in (subj, f"{subj}/drill"):
            alert = store.active("fire", candidate)
            if alert is not None:
                store.audit(db, alert.id, f"gateway:{gw}", f"local_alarm_{body.state}", note, at=obs.received)
                noted.append(alert.id)
    return noted
