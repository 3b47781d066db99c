"""The gateway runtime: the long-running process on the Pi, started from a plan (gateway/plan.py).

``stationwatch gateway`` validates the config and ``exec``s this module; nobody needs to run it by
hand, but it can be::

    python -m stationwatch.gateway.runtime /var/lib/stationwatch/spool.plan.json \\
        --broker mqtts://mqtt.city.example:8883 --ca-file /etc/stationwatch/ca.crt

It imports only what runs the gateway — paho-mqtt, sqlite3, gpiozero and the driver modules its
plan uses — and neither pydantic nor PyYAML nor the CLI library: on a Pi Zero 2 W (512 MB,
shared with the camera probes and the OS) the agent's budget is 35 MB of RSS, and validation
machinery it no longer needs would take about 15 MB of it. Hence ``argparse`` here.

The broker password comes from ``STATIONWATCH_BROKER_PASSWORD`` (user name: the gateway id), or
from the URL. Exit status 2: the plan or the spool cannot be used (the message says why).
"""
from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import logging
import os
import signal
import sys
import threading

from stationwatch.core.mqtt import BrokerAddress

from .plan import PlanError, load_plan
from .spool import SpoolError

log = logging.getLogger("stationwatch.gateway")


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stationwatch-gateway-runtime",
                                     description="StationWatch gateway runtime / 网关运行进程")
    parser.add_argument("plan", help="the plan written by `stationwatch gateway`")
    parser.add_argument("--broker", default="127.0.0.1:1883", help="host:port or mqtt[s]://host:port")
    parser.add_argument("--ca-file", default=None, help="CA certificate: connect with TLS")
    parser.add_argument("--spool", default=None, help="spool file (default: the plan's spool_path)")
    parser.add_argument("--onewire-base", default=None, help="1-Wire sysfs folder (default /sys/bus/w1/devices)")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        print(f"error / 错误: {exc}", file=sys.stderr)
        return 2
    address = BrokerAddress.parse(args.broker, args.ca_file)
    password = os.environ.get("STATIONWATCH_BROKER_PASSWORD")
    if address.username is None and password:
        address = dataclasses.replace(address, username=plan.gateway.id, password=password)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to the journal
    from .service import run_agent
    try:
        run_agent(plan, plan.gateway, address, stop, config_version=plan.config_version,
                  spool_path=args.spool, register_maps=plan.register_maps,
                  onewire_base=args.onewire_base)
    except SpoolError as exc:
        print(f"error / 错误: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
