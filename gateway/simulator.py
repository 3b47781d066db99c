"""What ``stationwatch simulate`` does: run the simulated station (:mod:`.simulation`) — the
production gateway agent on a simulated building — or ask the one already running (in ``make
demo``) to play a scenario.

Seen on the wire, the simulated gateway is a real one: client id = gateway id; last will =
retained ``Status(offline, reason="will")``; a retained birth ``Status(online, config_version,
drivers)`` at every connection; readings, events, heartbeats and health through the disk spool,
with the spool's seq; ``Status(offline, reason="shutdown")`` on a clean stop. On its ``cmd/+`` it
takes the agent's commands and ``scenario`` (see :mod:`.scenarios`).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from stationwatch.core.ask import GatewayUnanswered, ask
from stationwatch.core.config import Gateway, StationConfig
from stationwatch.core.mqtt import BrokerAddress

from .scenarios import SCENARIOS, SimulationError, check_scenario
from .simulation import Play, SimulatedStation

__all__ = ["SimulationError", "SimulatedStation", "Play", "SCENARIOS", "pick_gateway", "check_scenario",
           "run_gateway", "request_scenario"]

log = logging.getLogger(__name__)

STATUS_WAIT_S = 3.0  # how long request_scenario waits for the gateway's retained status


def pick_gateway(cfg: StationConfig, gateway_id: str | None) -> Gateway:
    """The gateway called ``gateway_id`` (None: the first one), or :class:`SimulationError`."""
    if gateway_id is None:
        return cfg.gateways[0]
    gw = cfg.gateway(gateway_id)
    if gw is None:
        known = ", ".join(g.id for g in cfg.gateways)
        raise SimulationError(f"unknown gateway '{gateway_id}' / 网关不存在; known gateways: {known}")
    return gw


def run_gateway(cfg: StationConfig, gw: Gateway, address: BrokerAddress, stop: threading.Event,
                speed: float | None = None, scenario: str | None = None, config_version: str | None = None,
                spool_path: str | Path | None = None) -> None:
    """Run the simulated station of gateway ``gw`` until ``stop`` is set; ``speed`` None means real time.

    With ``scenario`` (standalone mode) it is played right after start, at ``speed`` if one was
    given, else at the scenario's own default (so ``heating-failure`` does not take six real
    hours), and the gateway keeps running afterwards."""
    station = SimulatedStation(cfg, gw, address, speed=speed or 1.0, config_version=config_version,
                               spool_path=spool_path).start()
    try:
        if scenario is not None:
            station.play(scenario, speed if speed is not None else check_scenario(scenario).default_speed)
        stop.wait()
    finally:
        station.stop()


def request_scenario(cfg: StationConfig, address: BrokerAddress, gw: Gateway, scenario: str,
                     speed: float | None = None, timeout: float = STATUS_WAIT_S) -> None:
    """Ask the simulated gateway already running (e.g. in ``make demo``) to play ``scenario``, and
    wait for its answer. :class:`SimulationError` if it is not running, does not answer or refuses."""
    check_scenario(scenario)
    args = {"name": scenario} | ({} if speed is None else {"speed": speed})
    try:
        reply = ask(address, gw.site, gw.id, "scenario", args, timeout)
    except GatewayUnanswered as exc:
        raise SimulationError(f"no simulated gateway '{gw.id}' is running / 模拟网关未运行 ({exc}); start one with "
                              "`stationwatch simulate` or use --standalone") from None
    if not reply.ok:
        raise SimulationError(f"gateway '{gw.id}' refused scenario '{scenario}': {reply.detail}")
    log.info("场景已开始 / scenario '%s' started on gateway %s", scenario, gw.id)
