"""The hazard register (问题清单): entries with a rectification deadline, path and standard, signed off
with a trace (签字留痕); entries the system raises from its own evidence; deadlines up the reporting
chain; the API's register routes. See docs/register.md."""
