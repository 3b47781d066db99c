"""The agent as the process systemd runs (``stationwatch gateway`` → gateway/runtime.py): the local
alarm first — it never depends on the spool —, then the spool, the drivers and the agent, the
systemd notifications and watchdog pings, a clean goodbye at the end.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping, Sequence

from stationwatch.core.mqtt import BrokerAddress
from stationwatch.core.wire import GatewayCommand
from stationwatch.sensors.base import Driver, build_drivers

from .agent import LOOP_MAX_S, Agent
from .alarm import LocalAlarm
from .plan import GatewayPlanSpec, StationSpec
from .spool import Spool
from .watchdog import sd_notify, watchdog_period

log = logging.getLogger(__name__)


def run_agent(cfg: StationSpec, gw: GatewayPlanSpec, address: BrokerAddress, stop: threading.Event, *,
              config_version: str | None = None, drivers: Sequence[Driver] | None = None,
              pin_factory: Any = None, spool_path: str | None = None, ready: threading.Event | None = None,
              commands: Mapping[str, Callable[[Agent, GatewayCommand], None]] | None = None,
              attach: Callable[[Agent], None] | None = None, **driver_seams: Any) -> Agent:
    """Run the agent of gateway ``gw`` until ``stop`` is set, then stop cleanly.

    ``drivers`` default to :func:`stationwatch.sensors.base.build_drivers` with ``pin_factory``
    and ``driver_seams`` (onewire_base, serial_for_url, probe, health, building); the local alarm
    uses the same ``pin_factory``. ``commands`` replaces the command table (the simulated station
    adds ``scenario``); ``attach`` is given the agent before it starts. ``ready`` is set once the
    agent runs. Returns the stopped agent."""
    settings = gw.agent
    # the local alarm first: it never depends on the spool (a failing disk only costs readings)
    alarm = LocalAlarm(settings.outputs, settings.silence_button, pin_factory)
    try:
        spool = Spool(spool_path or settings.spool_path, int(settings.spool_max_mb * 2**20), settings.spool_sync)
    except BaseException:
        alarm.close()
        raise
    try:
        if drivers is None:
            drivers = build_drivers(cfg, gw, pin_factory=pin_factory, **driver_seams)
        agent = Agent(cfg, gw, address, drivers, spool=spool, alarm=alarm, config_version=config_version,
                      commands=commands)
        if attach is not None:
            attach(agent)
        with agent:
            if ready is not None:
                ready.set()
            sd_notify("READY=1")
            period = watchdog_period() or LOOP_MAX_S
            while not stop.wait(period):
                if agent.alive():
                    sd_notify("WATCHDOG=1")
                else:  # systemd restarts us when the pings stop
                    log.error("the polling loop is stuck; not telling the watchdog")
            sd_notify("STOPPING=1")
        return agent
    finally:
        alarm.close()
        spool.close()
