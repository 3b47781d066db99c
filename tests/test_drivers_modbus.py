"""The Modbus RTU driver against a REAL pymodbus RTU server on a pseudo-terminal line.

The "RS-485 line" is two pty pairs joined by a relay thread: the pymodbus server opens one slave
end, the driver opens the other through ``serial.serial_for_url(os.ttyname(fd))``, and the relay
copies bytes between the masters — which lets a test corrupt a reply on the wire (a CRC error) or
put noise in front of it. A unit that is not on the line never answers: the stand-in server serves
only its own units (pymodbus 3.16's ``ignore_missing_devices`` does not work with ``SimDevice``
lists, so the server's public ``trace_packet`` hook silences answers for absent units).
"""
from __future__ import annotations

import time

import pytest
import serial
import yaml

pymodbus = pytest.importorskip("pymodbus")

from stationwatch.core.config import parse_config  # noqa: E402
from stationwatch.core.wiring import Bus  # noqa: E402
from stationwatch.sensors.base import FaultyDriver, build_drivers  # noqa: E402
from stationwatch.sensors.kinds import KINDS  # noqa: E402
from stationwatch.sensors.modbus import BusSchedule, ModbusBus, Poll  # noqa: E402
from stationwatch.sensors.regmap import RegisterMapError, RegisterPoint, register_map, register_map_names  # noqa: E402

from modbus_line import HEATING, TH, Line, Server  # noqa: E402
from support import EXAMPLES  # noqa: E402


def s16(value: int) -> int:
    return value & 0xFFFF


@pytest.fixture
def line():
    wire = Line()
    yield wire
    wire.close()


@pytest.fixture
def server(line):
    # th-transmitter: 0 humidity ×0.1, 1 temperature ×0.1; heating controller: 0 supply, 1 return,
    # 2 outdoor (×0.1 °C), 3 pressure ×0.01 bar, 16 status (bit 0 pump, bit 1 boiler fault)
    heating = [653, 481, s16(-72), 150] + [0] * 12 + [0b01]
    srv = Server(line.server_port, {TH: [456, 215], HEATING: heating})
    yield srv
    srv.close()


def bus_on(line, **kw) -> Bus:
    return Bus(id="rs485-1", port=line.client_port, timeout_s=0.2, **kw)


def poll(sensor, kind, unit, regmap, point, interval_s=10.0) -> Poll:
    return Poll(sensor, KINDS[kind], unit, register_map(regmap).points[point], interval_s)


def everything(line) -> ModbusBus:
    """A driver for five points on two units, all due on the first read (one poll each)."""
    polls = [poll("t-dorm", "temperature", TH, "th-transmitter", "temperature"),
             poll("supply", "supply_temperature", HEATING, "heating-controller", "supply_temperature"),
             poll("outdoor", "outdoor_temperature", HEATING, "heating-controller", "outdoor_temperature"),
             poll("boiler", "boiler_fault", HEATING, "heating-controller", "boiler_fault")]
    return ModbusBus(bus_on(line), polls, serial_for_url=serial.serial_for_url)


def read_all(driver: ModbusBus, now: float = 0.0) -> dict:
    """Read every point once, whatever the stagger: step ``now`` through one interval."""
    samples = {}
    for step in range(11):
        samples.update({s.sensor: s for s in driver.read(now + step)})
    return samples


# ---- reading real devices ---------------------------------------------------------------------

def test_several_units_on_one_line_decode_through_their_register_maps(line, server):
    driver = everything(line)
    try:
        got = read_all(driver)
    finally:
        driver.close()
    assert got["t-dorm"].value == pytest.approx(21.5) and got["t-dorm"].quality == "ok"
    assert got["supply"].value == pytest.approx(65.3)
    assert got["outdoor"].value == pytest.approx(-7.2)  # signed int16
    assert (got["boiler"].value, got["boiler"].state) == (0.0, "normal")


def test_a_changed_register_is_read_on_the_next_poll(line, server):
    driver = everything(line)
    try:
        read_all(driver)
        server.set_registers(HEATING, 16, [0b11])  # boiler fault bit set
        server.set_registers(TH, 1, [s16(-35)])
        got = read_all(driver, now=100.0)
    finally:
        driver.close()
    assert (got["boiler"].value, got["boiler"].state) == (1.0, "alarm")
    assert got["t-dorm"].value == pytest.approx(-3.5)


def test_the_device_reporting_its_probe_broken_is_a_fault(line, server):
    server.set_registers(TH, 1, [32767])  # the transmitter's "probe open" value
    driver = everything(line)
    try:
        got = read_all(driver)
    finally:
        driver.close()
    assert got["t-dorm"].quality == "fault" and got["t-dorm"].value is None
    assert "probe broken" in got["t-dorm"].detail


# ---- faults on the line -------------------------------------------------------------------------

def test_an_absent_unit_times_out_as_a_fault_and_the_others_still_read(line, server):
    polls = [poll("ghost-t", "temperature", 9, "th-transmitter", "temperature"),
             poll("ghost-h", "supply_temperature", 9, "heating-controller", "supply_temperature"),
             poll("t-dorm", "temperature", TH, "th-transmitter", "temperature")]
    driver = ModbusBus(bus_on(line), polls)
    try:
        got = read_all(driver)
    finally:
        driver.close()
    assert got["ghost-t"].quality == "fault" and "no answer from unit 9" in got["ghost-t"].detail
    assert got["ghost-h"].quality == "fault"
    assert got["t-dorm"].value == pytest.approx(21.5)


def test_a_silent_unit_costs_one_timeout_per_round_not_one_per_point(line, server):
    polls = [poll(f"ghost-{i}", "temperature", 9, "th-transmitter", "temperature", interval_s=5) for i in range(4)]
    driver = ModbusBus(bus_on(line), polls)
    for p in polls:  # all due at once
        p.next_due = 0.0
    try:
        started = time.monotonic()
        got = driver.read(0.0)
        took = time.monotonic() - started
    finally:
        driver.close()
    assert [s.quality for s in got] == ["fault"] * 4
    assert all("unit 9" in s.detail for s in got)
    assert took < 0.2 * 3  # one 0.2 s timeout, not four


def test_a_crc_error_on_the_wire_is_a_fault_and_the_next_poll_recovers(line, server):
    bus = bus_on(line)
    driver = ModbusBus(bus, [poll("t-dorm", "temperature", TH, "th-transmitter", "temperature", interval_s=1)])
    try:
        line.corrupt_replies = 1
        bad = driver.read(0.0)
        good = driver.read(1.0)
    finally:
        driver.close()
    assert bad[0].quality == "fault" and "garbled answer from unit 1" in bad[0].detail
    assert good[0].quality == "ok" and good[0].value == pytest.approx(21.5)


def test_noise_in_front_of_a_reply_is_a_fault_never_an_exception(line, server):
    driver = ModbusBus(bus_on(line), [poll("t-dorm", "temperature", TH, "th-transmitter", "temperature", 1)])
    try:
        line.noise_before_reply = b"\xff\x00\x13\x37"
        first = driver.read(0.0)[0]
        second = driver.read(1.0)[0]
    finally:
        driver.close()
    assert first.quality == "fault" and "garbled" in first.detail
    assert second.value == pytest.approx(21.5)


def test_an_exception_answer_is_a_fault_naming_the_code(line, server):
    beyond = RegisterPoint(table="holding", address=500, type="int16", scale=0.1, unit="°C")
    driver = ModbusBus(bus_on(line), [Poll("t-x", KINDS["temperature"], TH, beyond, 10.0)])
    try:
        got = driver.read(0.0)[0]
    finally:
        driver.close()
    assert got.quality == "fault" and "illegal data address" in got.detail


def test_a_missing_adapter_is_a_fault_and_the_port_is_opened_again_later(line, server):
    attempts = []

    def flaky_serial_for_url(url, **kw):  # the injected seam: the adapter is plugged in on the 2nd try
        attempts.append(url)
        if len(attempts) == 1:
            raise serial.SerialException(f"could not open port {url}: No such file or directory")
        return serial.serial_for_url(url, **kw)

    driver = ModbusBus(bus_on(line), [poll("t-dorm", "temperature", TH, "th-transmitter", "temperature", 1)],
                       serial_for_url=flaky_serial_for_url)
    try:
        first = driver.read(0.0)[0]
        second = driver.read(1.0)[0]
    finally:
        driver.close()
    assert first.quality == "fault" and "cannot open" in first.detail
    assert second.quality == "ok" and attempts == [line.client_port] * 2


# ---- schedule and budget ------------------------------------------------------------------------

def test_a_9600_baud_line_carries_about_40_single_register_polls_a_second():
    bus = Bus(id="b", port="/dev/null")
    assert 38 <= bus.polls_per_s <= 42
    assert Bus(id="b", port="/dev/null", baudrate=19200).polls_per_s > 70
    assert bus.poll_s(2) > bus.poll_s(1)


def test_the_schedule_staggers_points_and_reports_its_load():
    bus = Bus(id="b", port="/dev/null")
    point = register_map("th-transmitter").points["temperature"]
    polls = [Poll(f"t{i}", KINDS["temperature"], 1, point, 10.0) for i in range(10)]
    schedule = BusSchedule(bus, polls)
    assert schedule.load == pytest.approx(10 * bus.poll_s(1) / 10.0)
    assert not schedule.overloaded
    per_second = [len(schedule.due(float(t))) for t in range(10)]
    assert per_second == [1] * 10  # spread over the interval, not a burst of ten
    assert [p.sensor for p in schedule.due(10.0)] == ["t0"]


def test_a_late_reader_skips_missed_periods_instead_of_bursting():
    point = register_map("th-transmitter").points["temperature"]
    schedule = BusSchedule(Bus(id="b", port="/dev/null"), [Poll("t", KINDS["temperature"], 1, point, 1.0)])
    assert len(schedule.due(0.0)) == 1
    assert len(schedule.due(100.0)) == 1  # once, not a hundred times
    assert schedule.due(100.5) == []


def test_more_polling_than_the_line_carries_is_reported():
    point = register_map("th-transmitter").points["temperature"]
    polls = [Poll(f"t{i}", KINDS["temperature"], 1, point, 1.0) for i in range(60)]
    schedule = BusSchedule(Bus(id="b", port="/dev/null"), polls)
    assert schedule.overloaded and "60 points use 15" in schedule.describe()


# ---- register maps as data ----------------------------------------------------------------------

def test_register_maps_ship_as_data_files():
    assert {"th-transmitter", "heating-controller", "xy-md02"} <= set(register_map_names())
    heating = register_map("heating-controller")
    assert heating.points["boiler_fault"].binary and heating.points["supply_temperature"].unit == "°C"
    with pytest.raises(RegisterMapError, match="no register map 'nope'"):
        register_map("nope")


def test_point_decoding_covers_the_types():
    assert RegisterPoint(address=0, type="int16").decode([0xFFF6]) == -10
    assert RegisterPoint(address=0, type="uint32").decode([1, 2]) == 65538
    assert RegisterPoint(address=0, type="uint32", word_order="little").decode([2, 1]) == 65538
    assert RegisterPoint(address=0, type="float32").decode([0x41A4, 0x0000]) == pytest.approx(20.5)
    assert RegisterPoint(address=0, type="bit", bit=3).decode([0b1000]) == 1
    assert RegisterPoint(table="coil", address=0, type="bit").decode([True, False]) == 1


# ---- built from the config --------------------------------------------------------------------

def test_build_drivers_makes_one_driver_per_bus_through_the_serial_seam(line, server):
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    data["gateways"][0]["buses"] = [{"id": "rs485-1", "port": line.client_port, "timeout_s": 0.2},
                                    {"id": "rs485-2", "port": "/dev/does-not-exist"}]
    by_id = {s["id"]: s for s in data["sensors"]}
    by_id["t-dorm-m1"]["source"] = {"driver": "modbus", "bus": "rs485-1", "unit": TH,
                                    "register_map": "th-transmitter", "point": "temperature"}
    by_id["supply-main"]["source"] = {"driver": "modbus", "bus": "rs485-1", "unit": HEATING,
                                      "register_map": "heating-controller", "point": "supply_temperature"}
    by_id["t-outdoor"]["source"] = {"driver": "modbus", "bus": "rs485-2", "unit": 5,
                                    "register_map": "heating-controller", "point": "outdoor_temperature"}
    cfg = parse_config(data)
    opened = []

    def serial_for_url(url, **kw):
        opened.append(url)
        return serial.serial_for_url(url, **kw)

    drivers = [d for d in build_drivers(cfg, cfg.gateways[0], serial_for_url=serial_for_url, probe={})
               if isinstance(d, (ModbusBus, FaultyDriver))]
    try:
        assert len(drivers) == 2
        got = {}
        for d in drivers:
            for step in range(61):
                got.update({s.sensor: s for s in d.read(float(step))})
    finally:
        for d in drivers:
            d.close()
    assert got["t-dorm-m1"].value == pytest.approx(21.5)
    assert got["supply-main"].value == pytest.approx(65.3)
    assert got["t-outdoor"].quality == "fault" and "cannot open /dev/does-not-exist" in got["t-outdoor"].detail
    assert line.client_port in opened
