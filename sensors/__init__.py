"""Sensor kinds: what each kind of device measures, its unit, its states and its plausible range.

Drivers that read real hardware (GPIO, 1-Wire, Modbus, camera probes) plug in here; the table in
:mod:`stationwatch.sensors.kinds` is the single list of kinds the rest of the system knows.
"""
