"""The simulated gateway with the heating-plant kinds, against the real Mosquitto: a running pump at
rest, plausible return water, pressure and humidity, and the pump-failure scenario on the wire."""
from __future__ import annotations

from stationwatch.core.contract import MessageClass

from support import wait_for
from support.simulator import small

PLANT = [
    {"id": "pump-1", "kind": "pump_running", "room": "boiler"},
    {"id": "return-1", "kind": "return_temperature", "room": "boiler"},
    {"id": "pressure-1", "kind": "pressure", "room": "boiler", "low_bar": 1.0},
    {"id": "rh-dorm", "kind": "humidity", "room": "dorm"},
    {"id": "heat-c-dorm", "kind": "heat_alarm", "room": "dorm"},
    {"id": "t-dorm", "kind": "temperature", "room": "dorm"},
]
PLAUSIBLE = {"pump-1": (1.0, 1.0), "return-1": (40.0, 50.0), "pressure-1": (1.3, 1.7), "rh-dorm": (25.0, 60.0),
             "heat-c-dorm": (0.0, 0.0)}


def test_the_heating_plant_reads_plausibly_and_the_pump_runs_at_rest(run, record):
    cfg = small("plant", PLANT)
    rec = record(cfg)
    run(cfg, speed=100)
    wait_for(lambda: all(len(rec.of(MessageClass.READING, s["id"])) >= 2 for s in PLANT), timeout=15,
             what="two readings of every plant sensor")
    for sensor, (low, high) in PLAUSIBLE.items():
        for reading in rec.bodies(MessageClass.READING, sensor):
            assert reading.quality == "ok" and low <= reading.value <= high, (sensor, reading.value)
    assert rec.bodies(MessageClass.READING, "pressure-1")[0].unit == "bar"


def test_pump_failure_stops_the_pump_and_cools_the_return_water(run, record):
    cfg = small("pumpfail", PLANT)
    rec = record(cfg)
    gw = run(cfg, speed=100)
    gw.play("pump-failure", speed=600)
    wait_for(lambda: [b.state for b in rec.bodies(MessageClass.EVENT, "pump-1")] == ["stopped"], timeout=15,
             what="the pump's stopped event")
    wait_for(lambda: any(b.value == 0.0 for b in rec.bodies(MessageClass.READING, "pump-1")), timeout=15,
             what="a reading of the stopped pump")
    wait_for(lambda: min((b.value for b in rec.bodies(MessageClass.READING, "return-1")), default=99) < 35, timeout=20,
             what="the return water cooling")
