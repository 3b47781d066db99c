"""Heat detector contacts and pump running contacts read by the drivers, through the same seams as
the other driver tests: gpiozero's MockFactory pins, and a REAL pymodbus RTU server on a pseudo-terminal
line answering as the generic 8-channel digital-input module (register map ``di-8ch``)."""
from __future__ import annotations

import asyncio
import threading

import pytest
import yaml

pytest.importorskip("gpiozero")
pytest.importorskip("pymodbus")
from gpiozero.pins.mock import MockFactory  # noqa: E402
from pymodbus.server import ModbusSerialServer  # noqa: E402
from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: E402

from stationwatch.core.config import parse_config  # noqa: E402
from stationwatch.sensors.base import build_drivers  # noqa: E402

from modbus_line import Line  # noqa: E402
from support import EXAMPLES, wait_for  # noqa: E402

GW, DI_UNIT = "gw-sl-main", 7


def config(sensors: list[dict], buses: list[dict] | None = None):
    """The example city station with these sensors added (and these buses on its gateway)."""
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["sensors"] += sensors
    if buses:
        data["gateways"][0]["buses"] = buses
    return parse_config(data)


def sensor(id_: str, kind: str, room: str, source: dict, **extra) -> dict:
    return {"id": id_, "name": id_, "kind": kind, "gateway": GW, "room": room, "source": source, **extra}


def read_by_sensor(drivers, now: float) -> dict:
    return {s.sensor: s for d in drivers for s in d.read(now)}


# ---- GPIO contacts ----------------------------------------------------------------------------
@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.close()


def test_heat_and_pump_contacts_on_gpio_read_their_kinds_states(factory):
    cfg = config([
        sensor("heat-dorm-f1", "heat_alarm", "dorm-f1", {"driver": "gpio", "pin": 19, "wiring": "nc"}),
        sensor("pump-main", "pump_running", "boiler", {"driver": "gpio", "pin": 21}),
    ])
    drivers = build_drivers(cfg, cfg.gateways[0], pin_factory=factory, probe={})
    contacts = [d for d in drivers if getattr(d, "family", "") == "gpio"]
    try:
        heat, pump = factory.pin(19), factory.pin(21)
        heat.drive_low()  # NC panel output closed: normal
        pump.drive_low()  # current switch closed: the motor draws current
        got = read_by_sensor(contacts, 1.0)
        assert (got["heat-dorm-f1"].state, got["heat-dorm-f1"].value) == ("normal", 0.0)
        assert (got["pump-main"].state, got["pump-main"].value) == ("running", 1.0)
        heat.drive_high()  # the detector operates (or the wire is cut: fail-safe, reads alarm)
        pump.drive_high()  # the pump stops
        got = read_by_sensor(contacts, 2.0)
        assert (got["heat-dorm-f1"].state, got["heat-dorm-f1"].value) == ("alarm", 1.0)
        assert (got["pump-main"].state, got["pump-main"].value) == ("stopped", 0.0)
    finally:
        for d in drivers:
            d.close()


def test_a_heat_contact_reports_its_alarm_edge_at_once(factory):
    cfg = config([sensor("heat-kitchen-c", "heat_alarm", "kitchen", {"driver": "gpio", "pin": 19})])
    drivers = build_drivers(cfg, cfg.gateways[0], pin_factory=factory, probe={})
    try:
        [contact] = [d for d in drivers if hasattr(d, "on_change") and getattr(d, "sensor", "") == "heat-kitchen-c"]
        seen = []
        contact.on_change(seen.append)
        factory.pin(19).drive_low()  # NO contact closes: alarm
        wait_for(lambda: [s.state for s in seen] == ["alarm"], 5, what="the alarm edge")
    finally:
        for d in drivers:
            d.close()


# ---- the 8-channel DI module on RS-485 --------------------------------------------------------
class DiModule:
    """A pymodbus RTU server as the DI module: inputs 1..8 are discrete inputs 0..7 (function 02),
    kept as the low bits of one shared register (pymodbus' bit addressing)."""

    def __init__(self, port: str, unit: int, inputs: int):
        self.unit = unit
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self._call(self._start(port, inputs))

    async def _start(self, port: str, inputs: int):
        device = SimDevice(id=self.unit, simdata=[SimData(0, values=[inputs], datatype=DataType.REGISTERS)],
                           use_bit_addressing=True)
        server = ModbusSerialServer([device], port=port, baudrate=9600)
        await server.serve_forever(background=True)
        return server

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def set_inputs(self, inputs: int):
        self._call(self.server.async_setValues(self.unit, 3, 0, [inputs]))

    def close(self):
        self._call(self.server.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture
def line():
    wire = Line()
    yield wire
    wire.close()


def di(point: str) -> dict:
    return {"driver": "modbus", "bus": "rs485-1", "unit": DI_UNIT, "register_map": "di-8ch", "point": point}


def test_contacts_on_the_di_module_are_read_over_modbus(line):
    module = DiModule(line.server_port, DI_UNIT, inputs=0b0000_0100)  # DI3 energised: the pump runs
    cfg = config([
        sensor("heat-store", "heat_alarm", "store", di("di1"), interval_s=1),
        sensor("pump-main", "pump_running", "boiler", di("di3"), interval_s=1),
        sensor("smk-canteen", "smoke", "canteen", di("di8"), interval_s=1),
    ], buses=[{"id": "rs485-1", "port": line.client_port, "timeout_s": 0.2}])
    drivers = build_drivers(cfg, cfg.gateways[0], probe={})
    buses = [d for d in drivers if getattr(d, "family", "") == "modbus"]

    def poll_round(start: float) -> dict:  # every point falls due within its 1 s interval
        got: dict = {}
        for step in range(11):
            got.update(read_by_sensor(buses, start + step / 10))
        return got

    try:
        assert len(buses) == 1
        got = poll_round(0.0)
        assert {k: (s.quality, s.state) for k, s in got.items()} == {
            "heat-store": ("ok", "normal"), "pump-main": ("ok", "running"), "smk-canteen": ("ok", "normal")}
        module.set_inputs(0b1000_0001)  # DI1 heat alarm, DI3 pump stopped, DI8 smoke alarm
        got = poll_round(2.0)
        assert {k: s.state for k, s in got.items()} == {
            "heat-store": "alarm", "pump-main": "stopped", "smk-canteen": "alarm"}
        assert got["heat-store"].value == 1.0 and got["pump-main"].value == 0.0
    finally:
        for d in drivers:
            d.close()
        module.close()


# ---- the gateway agent: a heat contact sounds the local alarm, a pump does not -------------------
def test_a_heat_contact_sounds_the_local_alarm_with_no_broker_and_a_stopped_pump_does_not(tmp_path, factory):
    from stationwatch.core.contract import MessageClass, parse
    from stationwatch.gateway.agent import Agent
    from stationwatch.gateway.alarm import LocalAlarm
    from stationwatch.gateway.spool import Spool

    from support.gateway import BUTTON, NOWHERE, OUTPUTS, gateway_of, outputs

    base = config([
        sensor("heat-dorm-f1", "heat_alarm", "dorm-f1", {"driver": "gpio", "pin": 19}),
        sensor("pump-main", "pump_running", "boiler", {"driver": "gpio", "pin": 21}),
    ])
    cfg, gw = gateway_of(base, tmp_path, interval_s=0.05)
    cfg = cfg.model_copy(update={"sensors": [s for s in cfg.sensors if s.source is not None]})
    drivers = [d for d in build_drivers(cfg, gw, pin_factory=factory, probe={}) if getattr(d, "family", "") == "gpio"]
    factory.pin(21).drive_low()  # the pump runs (its contact closed to GND against the pull-up)
    alarm = LocalAlarm(OUTPUTS, BUTTON, factory)

    def events(spool) -> list[tuple[str, str]]:
        return [(m.device, m.body.state) for m in (parse(r.topic, r.payload) for r in spool.pending({}, 100)
                                                   if r.kind is MessageClass.EVENT)]

    with Spool(tmp_path / "spool.db") as spool, Agent(cfg, gw, NOWHERE, drivers, spool=spool, alarm=alarm):
        wait_for(lambda: [r for r in spool.pending({}, 100) if r.kind is MessageClass.READING
                          and parse(r.topic, r.payload).device == "pump-main"], 5, what="the pump seen running")
        assert ("pump-main", "running") not in events(spool), "a pump running at start is its healthy state, no event"
        factory.pin(21).drive_high()  # the pump stops: a heating problem, not a local fire alarm
        wait_for(lambda: ("pump-main", "stopped") in events(spool), 5, what="the pump's stopped event")
        assert outputs(factory) == (False, False, False)
        factory.pin(19).drive_low()  # the heat detector's relay closes
        wait_for(lambda: outputs(factory) == (True, True, True), 1.0, what="buzzer, relay and LED on")
        wait_for(lambda: ("heat-dorm-f1", "alarm") in events(spool), 5, what="the heat alarm event")
