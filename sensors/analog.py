"""Analog sensors on an MCP3008 ADC (gpiozero ``MCP3008``): MQ-2 gas/smoke modules, analog heat
sensors.

The ADC gives a fraction of its reference voltage (0..1). The source's ``calibration`` table maps
it to the sensor's unit by straight lines between points (two points: a two-point calibration;
beyond the ends, the end segments are extended). Then:

- during ``warm_up_s`` after start the reading is quality ``stale`` and never an alarm (an MQ-2's
  heater needs a minute or more before its output means anything);
- an input pinned within ``rail_margin`` of 0 V or of Vref is a FAULT (open circuit / short);
- a binary kind (smoke) reads 1/``alarm`` at or above ``alarm_above`` and goes back to
  0/``normal`` below ``alarm_above - hysteresis``; an analog kind (heat) reports the calibrated
  value, and a value outside the kind's plausible range is a FAULT.

Example (an MQ-2 on channel 0; 0.10 of Vref in clean air, 0.60 at 1000 ppm)::

    >>> from stationwatch.sensors.kinds import KINDS
    >>> from stationwatch.core.wiring import Mcp3008Source
    >>> src = Mcp3008Source(driver="mcp3008", channel=0, alarm_above=300, warm_up_s=0,
    ...                     calibration=[{"raw": 0.10, "value": 0}, {"raw": 0.60, "value": 1000}])
    >>> gas = AnalogInput("gas-kitchen", KINDS["smoke"], src, read_channel=lambda: 0.35, started=0.0)
    >>> gas.read(now=5.0)[0].state
    'alarm'
"""
from __future__ import annotations

import time
from bisect import bisect_right
from typing import Callable, Sequence

from stationwatch.sensors.base import Driver, Sample, Seams, set_up, sources_of
from stationwatch.sensors.kinds import KINDS, SensorKind
from stationwatch.sensors.specs import AdcWiring, CalibrationPointSpec, DeviceTable, GatewaySpec

RAIL_FAULTS = (  # (pinned at, why)
    (0.0, "open circuit: input pinned at 0 V (sensor or load resistor disconnected) / 开路"),
    (1.0, "short circuit: input pinned at Vref / 短路"),
)


def calibrate(table: Sequence[CalibrationPointSpec], raw: float) -> float:
    """Piecewise-linear interpolation of ``raw`` in the table, extrapolating the end segments."""
    raws = [p.raw for p in table]
    i = min(max(bisect_right(raws, raw), 1), len(table) - 1)
    a, b = table[i - 1], table[i]
    return a.value + (raw - a.raw) * (b.value - a.value) / (b.raw - a.raw)


class AnalogInput:
    """One MCP3008 channel, calibrated, with warm-up, open/short detection and (binary kinds) a threshold."""

    family = "mcp3008"

    def __init__(self, sensor: str, kind: SensorKind, source: AdcWiring, *, started: float,
                 pin_factory=None, read_channel: Callable[[], float] | None = None):
        self.sensor = sensor
        self.kind = kind
        self.source = source
        self.started = started
        self._adc = None
        if read_channel is None:
            from gpiozero import MCP3008  # vendor library: only where an ADC is wired

            self._adc = MCP3008(channel=source.channel, port=source.spi_port, device=source.spi_device,
                                pin_factory=pin_factory)
            read_channel = lambda: self._adc.value  # noqa: E731
        self._read_channel = read_channel
        self._alarm = False

    @classmethod
    def build(cls, cfg: DeviceTable, gateway: GatewaySpec, seams: Seams) -> list[Driver]:
        started = time.time()
        return [set_up([s.id], lambda s=s, src=src: cls(s.id, KINDS[s.kind], src, started=started,
                                                         pin_factory=seams.pin_factory))
                for s, src in sources_of(cfg, gateway, "mcp3008")]

    def read(self, now: float) -> list[Sample]:
        try:
            raw = float(self._read_channel())
        except Exception as exc:  # noqa: BLE001 — an unreadable ADC is this sensor's FAULT
            return [Sample.fault(self.sensor, now, f"ADC read failed: {type(exc).__name__}: {exc}")]
        return [self.convert(raw, now)]

    def convert(self, raw: float, now: float) -> Sample:
        """The sample for one raw ADC fraction read at ``now``."""
        src = self.source
        value = calibrate(src.calibration, raw)
        left = self.started + src.warm_up_s - now
        if left > 0:
            return Sample(self.sensor, None if self.kind.binary else value, "stale", now,
                          detail=f"warming up, {left:.0f} s left / 预热中")
        for pinned, why in RAIL_FAULTS:
            if abs(raw - pinned) <= src.rail_margin:
                return Sample.fault(self.sensor, now, why)
        if not self.kind.binary:
            return Sample.measured(self.sensor, self.kind, value, now)
        threshold = src.alarm_above if src.alarm_above is not None else float("inf")
        if value >= threshold:
            self._alarm = True
        elif value < threshold - src.hysteresis:
            self._alarm = False
        return Sample.binary(self.sensor, self.kind, self._alarm, now)

    def close(self) -> None:
        if self._adc is not None:
            self._adc.close()
