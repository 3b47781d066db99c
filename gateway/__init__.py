"""The gateway agent that runs on a station's Raspberry Pi, and the simulated station."""
