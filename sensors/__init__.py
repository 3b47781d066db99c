"""Sensors, plain Python: the table of sensor kinds, the register maps, and the drivers that read
real hardware (GPIO, MCP3008, 1-Wire, Modbus, camera probes, the gateway's own health) through
injected seams. Drivers read their config through the protocols of :mod:`stationwatch.sensors.specs`,
which the validated config and the gateway's plan both satisfy.
"""
