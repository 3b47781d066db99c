"""The gateway agent that runs on a station's Raspberry Pi (spool, local alarm, runtime plan), and
the simulated station the demo and the tests run it on."""
