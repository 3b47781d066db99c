"""Alert rules, the durable alert lifecycle, notifications, and the HTTP API."""
