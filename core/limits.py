"""The ``limits:`` section: how much the central server takes in before it refuses, drops or waits,
and how far a gateway's clock may be from the centre's. Read by `stationwatch broker generate`
(the Mosquitto config), by ingest (its queue, the quarantine, timestamps) and by the alert engine
(the time the time-of-day rules go by). Defaults and their reasons: docs/config.md.

>>> Limits().broker.message_kb, Limits().ingest.queue_messages, Limits().clock.tolerance_s
(256, 10000, 60.0)
>>> ClockLimits().judge(-7200.0, historical=False), ClockLimits().judge(86400.0, historical=True)
('flag', 'clock_ahead')
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .fields import Model

DAY = 86400.0
ClockVerdict = Literal["flag", "clock_ahead", "clock_behind"]


class BrokerLimits(Model):
    """Written into the generated mosquitto.conf (docs/broker.md)."""
    message_kb: Annotated[int, Field(ge=16, le=65536)] = 256  # message_size_limit: larger is acknowledged and dropped
    packet_kb: Annotated[int, Field(ge=17, le=262144)] = 512  # max_packet_size: larger disconnects its sender unread
    queued_messages: Annotated[int, Field(ge=1000)] = 2_000_000  # per client, beyond the in-flight window
    queued_mb: Annotated[int, Field(ge=1)] = 256  # per client, payload bytes
    inflight_messages: Annotated[int, Field(ge=1, le=65535)] = 1000  # unacknowledged QoS 1 per client

    @model_validator(mode="after")
    def _packet_holds_a_message(self) -> "BrokerLimits":
        if self.packet_kb <= self.message_kb:
            raise ValueError(f"packet_kb ({self.packet_kb}) must be larger than message_kb ({self.message_kb}): "
                             "a packet carries its topic and header besides the message")
        return self


class IngestLimits(Model):
    """Ingest's queue between the MQTT link and InfluxDB, and its quarantine."""
    queue_messages: Annotated[int, Field(ge=100)] = 10_000  # QoS 1 waits here (back-pressure)
    queue_mb: Annotated[float, Field(gt=0)] = 64.0
    routine_qos0_messages: Annotated[int, Field(ge=10)] = 1_000  # routine QoS 0 beyond this are dropped
    quarantine_mb: Annotated[float, Field(gt=0)] = 64.0  # the oldest refused messages make room

    @model_validator(mode="after")
    def _qos0_below_the_queue(self) -> "IngestLimits":
        if self.routine_qos0_messages >= self.queue_messages:
            raise ValueError(f"routine_qos0_messages ({self.routine_qos0_messages}) must be below queue_messages "
                             f"({self.queue_messages}): the rest of the queue is kept for QoS 1")
        return self


class ClockLimits(Model):
    """How far a message's time (the gateway's clock) may be from its arrival (the centre's)."""
    tolerance_s: Annotated[float, Field(gt=0, le=3600)] = 60.0  # within it: taken as it is, not flagged
    ahead_max_s: Annotated[float, Field(gt=0)] = 3600.0  # further ahead of its arrival: quarantined
    behind_max_s: Annotated[float, Field(gt=0)] = 14 * DAY  # a live message older on arrival: quarantined
    confirm_s: Annotated[float, Field(gt=0, le=3600)] = 30.0  # a gateway clock gone back counts after this

    def judge(self, skew: float, historical: bool) -> ClockVerdict | None:
        """``skew`` = message time − arrival time. None: within the tolerance. A replayed (historical)
        message may be old, never from the future."""
        if skew > self.ahead_max_s:
            return "clock_ahead"
        if not historical and -skew > self.behind_max_s:
            return "clock_behind"
        if skew > self.tolerance_s or (not historical and -skew > self.tolerance_s):
            return "flag"
        return None


class Limits(Model):
    broker: BrokerLimits = BrokerLimits()
    ingest: IngestLimits = IngestLimits()
    clock: ClockLimits = ClockLimits()
