"""The ``stationwatch`` command and the demo runner (``make demo``): the top of the house, the
only folder that imports every other one."""
