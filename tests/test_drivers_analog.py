"""MCP3008 analog inputs through gpiozero's MockFactory and a mock chip on its SPI pins.

``FakeMCP3008`` is the chip's side of the bit-banged SPI exchange (gpiozero's ``MockSPIDevice``):
it answers the start bit, the single-ended bit and three channel bits with a null bit and the
10-bit conversion of the level the test set on that channel.

gpiozero 2.0.1's software-SPI bus object builds its own base ``Device`` without the injected
factory, so the fixture also makes the mock factory gpiozero's default (``Device.pin_factory``, as
gpiozero's own test suite does); the driver still receives it through ``pin_factory=``.
"""
from __future__ import annotations

import pytest

pytest.importorskip("gpiozero")
from gpiozero import Device  # noqa: E402
from gpiozero.pins.mock import MockFactory, MockSPIDevice  # noqa: E402

from stationwatch.core.wiring import CalibrationPoint, Mcp3008Source  # noqa: E402
from stationwatch.sensors.analog import AnalogInput, calibrate  # noqa: E402
from stationwatch.sensors.kinds import KINDS  # noqa: E402

MQ2 = [{"raw": 0.10, "value": 0}, {"raw": 0.60, "value": 1000}]  # clean air .. 1000 ppm


class FakeMCP3008(MockSPIDevice):
    """An MCP3008 on SPI0 CE0 (SCLK 11, MOSI 10, MISO 9, CE0 8); ``levels`` are fractions of Vref."""

    def __init__(self, factory):
        super().__init__(11, 10, 9, 8, pin_factory=factory)
        self.levels = [0.0] * 8
        self.phase = "idle"

    def on_start(self):
        super().on_start()
        self.phase = "idle"

    def on_bit(self):
        bit = self.rx_buf[-1]
        if self.phase == "idle" and bit:  # start bit
            self.phase, self.rx_buf = "mode", []
        elif self.phase == "mode":  # 1: single-ended
            self.phase, self.rx_buf = "channel", []
        elif self.phase == "channel" and len(self.rx_buf) == 3:
            code = max(0, min(1023, round(self.levels[self.rx_word()] * 1023)))
            self.tx_word(code, 12)  # sample period bit, null bit, 10 result bits
            self.phase = "result"


@pytest.fixture
def factory():
    f = MockFactory()
    previous, Device.pin_factory = Device.pin_factory, f
    yield f
    Device.pin_factory = previous
    f.close()


@pytest.fixture
def chip(factory):
    with FakeMCP3008(factory) as c:
        yield c


def adc_input(factory, kind="smoke", *, started=0.0, **source) -> AnalogInput:
    source.setdefault("calibration", MQ2)
    src = Mcp3008Source(driver="mcp3008", **source)
    return AnalogInput(f"{kind}-1", KINDS[kind], src, started=started, pin_factory=factory)


def test_the_chip_mock_speaks_the_mcp3008_protocol(factory, chip):
    from gpiozero import MCP3008
    chip.levels[3] = 0.5
    with MCP3008(channel=3, pin_factory=factory) as adc:
        assert adc.value == pytest.approx(0.5, abs=2 / 1023)


def test_mq2_reading_above_the_threshold_is_an_alarm(factory, chip):
    gas = adc_input(factory, channel=0, alarm_above=300, warm_up_s=0)
    chip.levels[0] = 0.12  # ≈ 40 ppm
    assert gas.read(10.0)[0].state == "normal"
    chip.levels[0] = 0.35  # ≈ 500 ppm
    s = gas.read(11.0)[0]
    assert (s.value, s.state, s.quality) == (1.0, "alarm", "ok")
    gas.close()


def test_readings_during_warm_up_are_stale_and_never_an_alarm(factory, chip):
    gas = adc_input(factory, channel=1, alarm_above=300, warm_up_s=60, started=1000.0)
    chip.levels[1] = 0.55  # a cold MQ-2 reads high
    s = gas.read(1030.0)[0]
    assert s.quality == "stale" and s.state is None and s.value is None
    assert "warming up" in s.detail
    assert gas.read(1061.0)[0].state == "alarm"  # warm: now it counts
    gas.close()


@pytest.mark.parametrize("level,why", [(0.0, "open circuit"), (1.0, "short circuit")])
def test_an_input_pinned_at_a_rail_is_a_fault(factory, chip, level, why):
    gas = adc_input(factory, channel=2, alarm_above=300, warm_up_s=0)
    chip.levels[2] = level
    s = gas.read(5.0)[0]
    assert (s.value, s.state, s.quality) == (None, "fault", "fault")
    assert why in s.detail
    gas.close()


def test_hysteresis_keeps_the_alarm_until_the_value_falls_clearly_below(factory, chip):
    gas = adc_input(factory, channel=0, alarm_above=300, hysteresis=50, warm_up_s=0)
    chip.levels[0] = 0.30  # ≈ 400 ppm
    assert gas.read(1.0)[0].state == "alarm"
    chip.levels[0] = 0.24  # ≈ 280 ppm: below the threshold, inside the hysteresis
    assert gas.read(2.0)[0].state == "alarm"
    chip.levels[0] = 0.22  # ≈ 240 ppm
    assert gas.read(3.0)[0].state == "normal"
    gas.close()


def test_an_analog_heat_sensor_reads_degrees_from_a_calibration_table(factory, chip):
    table = [{"raw": 0.1, "value": -20}, {"raw": 0.3, "value": 20}, {"raw": 0.8, "value": 120}]
    heat = adc_input(factory, "heat", channel=4, calibration=table, warm_up_s=0)
    chip.levels[4] = 0.55
    s = heat.read(1.0)[0]
    assert s.quality == "ok" and s.state is None and s.value == pytest.approx(70, abs=0.5)
    chip.levels[4] = 0.95  # 150 °C: beyond the kind's plausible range
    assert heat.read(2.0)[0].quality == "fault"
    heat.close()


def test_calibration_interpolates_and_extends_the_end_segments():
    table = [CalibrationPoint(raw=r, value=v) for r, v in ((0.1, 0), (0.5, 100), (0.9, 500))]
    assert calibrate(table, 0.3) == pytest.approx(50)
    assert calibrate(table, 0.7) == pytest.approx(300)
    assert calibrate(table, 0.05) == pytest.approx(-12.5)
    assert calibrate(table, 1.0) == pytest.approx(600)


def test_an_adc_that_cannot_be_read_is_a_fault():
    def broken():
        raise OSError(5, "Input/output error")

    src = Mcp3008Source(driver="mcp3008", channel=0, calibration=MQ2, alarm_above=300, warm_up_s=0)
    gas = AnalogInput("gas-1", KINDS["smoke"], src, started=0.0, read_channel=broken)
    s = gas.read(1.0)[0]
    assert s.quality == "fault" and "ADC read failed" in s.detail


def test_calibration_points_must_increase():
    with pytest.raises(ValueError, match="strictly increasing"):
        Mcp3008Source(driver="mcp3008", channel=0, calibration=[{"raw": 0.5, "value": 0}, {"raw": 0.2, "value": 1}])
