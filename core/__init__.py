"""The model every part shares: the organisation config with all its sections (sites, rooms,
devices and their wiring, the gateway agent's settings, the alert policy), the MQTT contract
(its plain half for the gateway, its schemas for receivers) and the one MQTT adapter.

Nothing here imports another StationWatch folder except :mod:`stationwatch.sensors` (the table
of sensor kinds and the shipped register maps); see docs/architecture.md. The modules the Pi's
runtime loads (``wire``, ``mqtt``) import neither pydantic nor PyYAML.
"""
