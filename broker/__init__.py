"""The MQTT side of StationWatch: the contract (topics and payloads), the organisation config it is
keyed by, the one paho adapter, ingest into InfluxDB, and the local Mosquitto/InfluxDB the demo and
the tests start with the project's own config."""
