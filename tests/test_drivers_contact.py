"""Contact inputs through gpiozero's MockFactory: the test drives the pins like the wire would."""
from __future__ import annotations

import pytest
import yaml

pytest.importorskip("gpiozero")
from gpiozero.pins.mock import MockFactory  # noqa: E402

from stationwatch.core.config import parse_config  # noqa: E402
from stationwatch.core.wiring import GpioSource  # noqa: E402
from stationwatch.sensors.base import EdgeDriver, FaultyDriver, build_drivers  # noqa: E402
from stationwatch.sensors.contact import ContactInput  # noqa: E402
from stationwatch.sensors.kinds import KINDS  # noqa: E402

from support import EXAMPLES, wait_for  # noqa: E402


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.close()


def contact(factory, kind, **source) -> ContactInput:
    return ContactInput(f"{kind}-1", KINDS[kind], GpioSource(driver="gpio", **source), pin_factory=factory)


def state(driver) -> tuple:
    s = driver.read(now=1.0)[0]
    return s.value, s.state, s.quality


def test_normally_open_smoke_contact_alarms_when_it_closes(factory):
    smoke = contact(factory, "smoke", pin=17)
    pin = factory.pin(17)
    assert state(smoke) == (0.0, "normal", "ok")  # pulled up: contact open
    pin.drive_low()  # detector relay closes to GND
    assert state(smoke) == (1.0, "alarm", "ok")
    pin.drive_high()
    assert state(smoke) == (0.0, "normal", "ok")
    smoke.close()


def test_normally_closed_door_reed_opens_and_a_cut_wire_reads_open_not_closed(factory):
    door = contact(factory, "door", pin=22, wiring="nc")
    pin = factory.pin(22)
    pin.drive_low()  # magnet at the reed: contact closed, door shut
    assert state(door) == (0.0, "closed", "ok")
    pin.drive_high()  # door opened — or the wire was cut: both read open (fail-safe)
    assert state(door) == (1.0, "open", "ok")
    door.close()


def test_a_contact_to_3v3_with_an_external_pull_down(factory):
    boiler = contact(factory, "boiler_fault", pin=5, pull_up=False)
    pin = factory.pin(5)
    assert state(boiler) == (0.0, "normal", "ok")
    pin.drive_high()  # fault contact closes to 3V3
    assert state(boiler) == (1.0, "alarm", "ok")
    boiler.close()


def test_an_open_supervision_contact_is_a_wiring_fault_whatever_the_alarm_contact_says(factory):
    smoke = contact(factory, "smoke", pin=17, supervision_pin=27)
    alarm_pin, eol_pin = factory.pin(17), factory.pin(27)
    eol_pin.drive_low()  # end-of-line relay energised: loop intact
    assert state(smoke) == (0.0, "normal", "ok")
    eol_pin.drive_high()  # loop power lost or wire cut
    value, st, quality = state(smoke)
    assert (value, st, quality) == (None, "fault", "fault")
    assert "wiring fault" in smoke.read(1.0)[0].detail
    alarm_pin.drive_low()
    assert state(smoke)[1] == "fault"  # a fault is never a fire
    eol_pin.drive_low()
    assert state(smoke) == (1.0, "alarm", "ok")
    smoke.close()


def test_debounce_is_handed_to_the_pin(factory):
    door = contact(factory, "door", pin=6, debounce_ms=80)
    assert factory.pin(6).bounce == pytest.approx(0.08)
    door.close()
    no_bounce = contact(factory, "door", pin=6, debounce_ms=0)
    assert factory.pin(6).bounce is None
    no_bounce.close()


def test_every_change_is_reported_as_it_happens(factory):
    smoke = contact(factory, "smoke", pin=17, supervision_pin=27)
    assert isinstance(smoke, EdgeDriver)
    seen = []
    smoke.on_change(seen.append)
    alarm_pin, eol_pin = factory.pin(17), factory.pin(27)
    eol_pin.drive_low()
    alarm_pin.drive_low()
    alarm_pin.drive_high()
    eol_pin.drive_high()
    wait_for(lambda: len(seen) >= 4, what="four edge events")
    assert [s.state for s in seen] == ["normal", "alarm", "normal", "fault"]
    smoke.close()


def test_a_contact_cannot_read_an_analog_kind(factory):
    with pytest.raises(ValueError, match="not binary"):
        contact(factory, "temperature", pin=17)


def _config_with_contacts(sources: dict[str, dict]):
    data = yaml.safe_load((EXAMPLES / "city-station.yaml").read_text(encoding="utf-8"))
    for sensor in data["sensors"]:
        if sensor["id"] in sources:
            sensor["source"] = sources[sensor["id"]]
    return parse_config(data)


def test_build_drivers_wires_each_contact_and_a_busy_pin_is_a_fault_not_a_crash(factory):
    cfg = _config_with_contacts({
        "smk-dorm-m1": {"driver": "gpio", "pin": 17},
        "door-exit-main": {"driver": "gpio", "pin": 22, "wiring": "nc"},
        "boiler-fault": {"driver": "gpio", "pin": 23},
    })
    from gpiozero import DigitalOutputDevice
    squatter = DigitalOutputDevice(23, pin_factory=factory)  # something else holds GPIO23
    drivers = build_drivers(cfg, cfg.gateways[0], pin_factory=factory, probe={})
    try:
        contacts = [d for d in drivers if isinstance(d, (ContactInput, FaultyDriver))]
        got = {s.sensor: s for d in contacts for s in d.read(5.0)}
        assert got["smk-dorm-m1"].state == "normal"
        factory.pin(22).drive_high()
        assert {s.sensor: s for d in contacts for s in d.read(6.0)}["door-exit-main"].state == "open"
        assert got["boiler-fault"].quality == "fault" and "setup failed" in got["boiler-fault"].detail
    finally:
        for d in drivers:
            d.close()
        squatter.close()
