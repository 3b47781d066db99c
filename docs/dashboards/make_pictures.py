"""Redraw the README's dashboard pictures from real query results:

    .venv/bin/python docs/dashboards/make_pictures.py

Starts its own Mosquitto and InfluxDB, runs the acceptance test's pipeline (tests/test_dashboards_data.py:
the production gateway agent on the simulated station, ingest, the alert engine feeding its history),
lets the station run quietly for a while, plays the scenarios, then draws each dashboard with the
renderer behind `stationwatch dashboards render` into this folder. Takes about five minutes.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from stationwatch.broker.stack import LocalInfluxDB, LocalMosquitto  # noqa: E402
from stationwatch.core.mqtt import BrokerAddress  # noqa: E402
from stationwatch.dashboards.boards import boards  # noqa: E402
from stationwatch.dashboards.render import render  # noqa: E402
from stationwatch.dashboards.runner import Runner, TimeRange, influx_query  # noqa: E402
from support import Receiver  # noqa: E402
from test_dashboards_data import Played  # noqa: E402

QUIET_S = 150  # the station runs this long before the first scenario, so the charts show "before"
AFTER_S = 40  # and this long after the last, so the counters show what followed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, LocalMosquitto(Path(tmp) / "mq") as mq, \
            LocalInfluxDB(Path(tmp) / "influx") as db, Receiver() as receiver:
        run = Played(Path(tmp), BrokerAddress(mq.host, mq.port), db.url, receiver).start()
        try:
            time.sleep(QUIET_S)
            run.play_all()
            time.sleep(AFTER_S)
            window = TimeRange(run.started_ms - 30_000, int(time.time() * 1000))
            for b in boards(run.cfg):
                print(render(b.model, Runner(b.model, influx_query(run.client), window), HERE / f"{b.uid}.png"))
        finally:
            run.close()


if __name__ == "__main__":
    main()
