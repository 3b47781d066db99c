"""The express lane: readings — single ``reading`` messages and ``readings`` batches, nearly all of
ingest's traffic — from sensors the config knows on the gateway that sent them, well formed and on
time, taken in one pass: msgspec's typed JSON decoder checks the shape, a few dict look-ups the
organisation, and the points are built from a series' tags kept per sensor.

Everything else goes the full way (:mod:`.admission`: the contract's pydantic models, the checks one by
one), which takes it or refuses it and says why. The lane never refuses and never explains: it may
take less than the contract allows (a number written as a string, an unknown key, a clock that needs
a look), never more, and what it takes becomes exactly the points and the sequence records the full
way would make (tests/test_express.py feeds both the same messages, good and bad, and compares).

Why: through pydantic a batch item cost ~16 µs and a single reading ~29 µs before a point was
written (docs/BENCHMARKS.md); InfluxDB takes a point for a few µs.
"""
from __future__ import annotations

from stationwatch.core.readings_codec import BATCH, SINGLE, UNTAKEN, Quality
from stationwatch.core.wire import MAX_PAYLOAD, ROOT, MessageClass

from .influx import INFLUX_MAX_MS, Point
from .line_protocol import LineBuilder, Unwritable, string_field
from .sequences import SequenceLedger

_ROOT = tuple(ROOT.split("/"))
READINGS, READING = MessageClass.READINGS.value, MessageClass.READING.value
_QUALITY_FIELD = {q: f"quality={string_field(q)}" for q in Quality.__args__}
_HISTORICAL_FIELD = {False: "historical=false", True: "historical=true"}


class ExpressLane:
    """``points(topic, payload, arrival)`` → the readings' points, or None: take the full way."""

    def __init__(self, inventory, clock, sequences: SequenceLedger):
        self.inventory, self.clock, self.sequences = inventory, clock, sequences
        self.clock_flagged = 0
        self.taken = 0  # messages the lane took (the rest went the full way)
        self._lines = LineBuilder()
        # (gateway, sensor) → its point's tags, its topic (for the sequence record), its series in line protocol
        self._series: dict[tuple[str, str], tuple[dict[str, str], str, str]] = {}

    def _sensor(self, site: str, gateway: str, sensor: str) -> tuple[dict[str, str], str, str] | None:
        found = self._series.get((gateway, sensor))
        if found is None:
            device = self.inventory.sensors.get(sensor)
            if device is None or device.gateway != gateway:
                return None  # the full way names what is wrong
            # the tags and the topic of the full way's point and sequence record (influx._reading)
            tags = {"site": site, "gateway": gateway, "room": device.room, "sensor": sensor, "kind": device.kind}
            try:
                series = self._lines.series("reading", tags)
            except Unwritable:
                return None  # the writer refuses the point, the full way quarantines it
            found = (tags, "/".join((*_ROOT, site, gateway, READING, sensor)), series)
            self._series[(gateway, sensor)] = found
        return found

    def points(self, topic: str, payload: bytes, arrival: float) -> list[Point] | None:
        parts = topic.split("/")
        if len(parts) == 5 and parts[4] == READINGS:
            decoder = BATCH
        elif len(parts) == 6 and parts[4] == READING:
            decoder = SINGLE
        else:
            return None
        site, gateway = parts[2], parts[3]
        if (parts[0], parts[1]) != _ROOT or self.inventory.gateway_site.get(gateway) != site or len(payload) > MAX_PAYLOAD:
            return None
        try:
            body = decoder.decode(payload)
        except UNTAKEN:
            return None
        historical = body.historical
        items = body.items if decoder is BATCH else [body]
        judge = self.clock.judge
        looked: list[tuple] = []
        for it in items:  # first every check that has no effect: any doubt, and the full way takes the message
            found = self._sensor(site, gateway, parts[5] if decoder is SINGLE else it.sensor)
            if found is None:
                return None
            if it.ts * 1000 > INFLUX_MAX_MS:
                return None
            skew = it.ts - arrival
            verdict = judge(skew, historical)
            if verdict is not None and verdict != "flag":
                return None
            looked.append((it, found, skew if verdict else None))
        out: list[Point] = []
        flagged = 0
        check = self.sequences.check
        past = _HISTORICAL_FIELD[historical]
        for it, (tags, item_topic, series), skew in looked:
            value, seq, quality = it.value, it.seq, it.quality
            content = hash((item_topic, (("v", 1), ("ts", it.ts), ("seq", seq), ("value", value),
                                         ("unit", it.unit), ("quality", quality))))  # sequences.content_of
            if check(gateway, seq, it.ts, content, historical) == "conflict":
                return None  # the full way quarantines it (the items before it are duplicates there now)
            # the point and its line as influx._reading and LineBuilder.line make them, field for field
            fields: dict[str, object] = {"quality": quality, "seq": seq, "historical": historical}
            line = f"{series} {_QUALITY_FIELD[quality]},seq={seq}i,{past}"
            if value is not None:
                fields["value"] = value
                line += f",value={value!r}"
            if skew is not None:
                flagged += 1
                fields["skew_s"] = round(skew, 3)
                line += f",skew_s={fields['skew_s']!r}"
            ms = int(round(it.ts * 1000))
            out.append(Point("reading", tags, fields, ms, line=f"{line} {ms}"))
        self.taken += 1
        self.clock_flagged += flagged
        return out
