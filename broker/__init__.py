"""The central server's message path: Mosquitto's config, per-gateway accounts, ACL, TLS and the
bridge to the province; ingest from the broker into InfluxDB; and the local Mosquitto and InfluxDB
that the demo and the tests start with the project's own config."""
