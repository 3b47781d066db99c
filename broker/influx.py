"""Writing points to InfluxDB. One small interface (:class:`PointWriter`) so the v1 backend
(Debian's InfluxDB 1.6.7, tested for real) and a v2/v3 backend can stand behind the same ingest.

The schema (docs/influxdb-schema.md): a point's identity is measurement + tags + gateway
timestamp, so a replayed message overwrites the point it already wrote instead of duplicating it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from stationwatch.core.contract import (
    LOCAL_ALARM,
    Event,
    HealthSample,
    Heartbeat,
    LocalAlarmState,
    Message,
    MessageClass,
    Reading,
    Status,
)

log = logging.getLogger(__name__)

# Retention (GB 50440: alarm and audit records ≥ 1 year).
RAW_POLICY = "raw"          # every reading, heartbeat and health sample, 30 days
RECORDS_POLICY = "records"  # events, gateway status, local alarm changes: alarm records, 400 days
TREND_POLICY = "trend"      # 1-minute means of readings, 400 days (broker/trend.py, or a continuous query)
POLICIES = {RAW_POLICY: "30d", RECORDS_POLICY: "400d", TREND_POLICY: "400d"}
RETENTION_S = {name: int(duration[:-1]) * 86400 for name, duration in POLICIES.items()}
RETENTION_MARGIN_S = 3600  # points this close to the edge are kept out too: the edge moves while we write


class PointsRejected(Exception):
    """The database refused (some of) a batch for what is in it, not because it is unavailable:
    retrying the same batch can never succeed. ``partial``: the other points were written."""

    def __init__(self, message: str, partial: bool):
        self.partial = partial
        super().__init__(message)


@dataclass
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, object]
    time_ms: int
    policy: str = RAW_POLICY
    line: str | None = None  # its line protocol, when whoever made it wrote that too (broker/express.py)

    def as_v1(self) -> dict:
        return {"measurement": self.measurement, "tags": self.tags, "fields": self.fields, "time": self.time_ms}


class PointWriter(Protocol):
    def ensure_schema(self, trend_query: bool = True) -> None: ...
    def write(self, points: list[Point]) -> None:
        """Write all points or raise; after a raise none may be assumed written."""
    def canary(self, instance: str, n: int) -> bool:
        """Write the canary point ``n`` of ``instance`` and read it back: True when the database
        returned it (it takes writes and answers queries); raise or False otherwise."""
    def close(self) -> None: ...


INFLUX_MAX_MS = 9_223_372_036_854  # InfluxDB's last representable time (int64 ns), 2262-04-11
CANARY = "canary"  # measurement of ingest's liveness check of the database (raw policy, one point per check)


def canary_point(instance: str, n: int) -> Point:
    return Point(CANARY, {"instance": instance}, {"n": n}, int(time.time() * 1000))


def _common(msg: Message, device) -> dict[str, str]:
    tags = {"site": msg.site, "gateway": msg.gateway}
    if device is not None:
        tags["room"] = device.room
    return tags


def _reading(msg: Message, device) -> Point:
    b: Reading = msg.body
    fields: dict[str, object] = {"quality": b.quality, "seq": b.seq, "historical": b.historical}
    if b.value is not None:
        fields["value"] = float(b.value)
    return Point("reading", {**_common(msg, device), "sensor": msg.device, "kind": device.kind}, fields, _ms(b.ts))


def _event(msg: Message, device) -> Point:
    b: Event = msg.body
    fields: dict[str, object] = {"state": b.state, "seq": b.seq, "historical": b.historical, "drill": b.drill}
    if b.value is not None:
        fields["value"] = float(b.value)
    kind = getattr(device, "kind", "camera")
    return Point("event", {**_common(msg, device), "device": msg.device, "kind": kind}, fields, _ms(b.ts), RECORDS_POLICY)


def _heartbeat(msg: Message, device) -> Point:
    b: Heartbeat = msg.body
    # `up` is `online` as a number, so InfluxQL can take its min, mean and count (availability)
    fields: dict[str, object] = {"online": b.online, "up": 1.0 if b.online else 0.0, "seq": b.seq,
                                 "historical": b.historical}
    if b.latency_ms is not None:
        fields["latency_ms"] = float(b.latency_ms)
    return Point("heartbeat", {**_common(msg, device), "camera": msg.device}, fields, _ms(b.ts))


def _status(msg: Message, device) -> Point:
    b: Status = msg.body
    # state is a tag: a will carries the connect time as its ts, and must not overwrite the birth
    fields = {"reason": b.reason or "", "config_version": b.config_version or "", "online": b.state == "online"}
    return Point("gateway_status", {**_common(msg, None), "state": b.state}, fields, _ms(b.ts), RECORDS_POLICY)


def _health(msg: Message, device) -> Point:
    if msg.device == LOCAL_ALARM:  # a siren started or was silenced: an alarm record, kept as long as events
        a: LocalAlarmState = msg.body
        fields: dict[str, object] = {"state": a.state, "by": a.by, "detectors": ",".join(a.detectors),
                                     "seq": a.seq, "historical": a.historical}
        return Point("local_alarm", _common(msg, None), fields, _ms(a.ts), RECORDS_POLICY)
    b: HealthSample = msg.body
    fields = {"quality": b.quality, "seq": b.seq, "historical": b.historical}
    if b.value is not None:
        fields["value"] = float(b.value)
    if b.state is not None:
        fields["state"] = b.state
    if b.detail:
        fields["detail"] = b.detail
    return Point("gateway_health", {**_common(msg, None), "metric": msg.device}, fields, _ms(b.ts))


TO_POINT = {MessageClass.READING: _reading, MessageClass.EVENT: _event, MessageClass.HEARTBEAT: _heartbeat, MessageClass.STATUS: _status,
            MessageClass.HEALTH: _health}


def to_point(msg: Message, device) -> Point | None:
    """The point a message is stored as; None for classes that are not stored (commands)."""
    convert = TO_POINT.get(msg.kind)
    return convert(msg, device) if convert else None


def _ms(ts: float) -> int:
    return int(round(ts * 1000))


class DatabaseUnavailable(ConnectionError):
    """InfluxDB answered, but not with a verdict on the points (5xx: overloaded, shutting down): retry."""


@dataclass
class InfluxV1Writer:
    """InfluxDB 1.x through its HTTP v1 API: points as line protocol built here
    (:mod:`.line_protocol`) posted to ``/write`` on one kept-alive connection; queries and the schema
    through the ``influxdb`` client. ``gzip`` compresses the body (worth it over a slow link, not on
    the same machine: docs/BENCHMARKS.md)."""
    url: str
    database: str
    timeout: float = 10.0
    gzip: bool = False
    chunk: int = 10_000  # lines per request
    _client: object = field(default=None, repr=False)

    def __post_init__(self):
        import requests
        from influxdb import InfluxDBClient

        from .line_protocol import LineBuilder
        u = urlsplit(self.url)
        self._client = InfluxDBClient(host=u.hostname or "127.0.0.1", port=u.port or 8086,
                                      username=u.username, password=u.password,
                                      database=self.database, ssl=u.scheme == "https",
                                      timeout=self.timeout, retries=1)
        self._write_url = f"{u.scheme or 'http'}://{u.hostname or '127.0.0.1'}:{u.port or 8086}/write"
        self._session = requests.Session()
        if u.username:
            self._session.auth = (u.username, u.password or "")
        self._lines = LineBuilder()

    def ensure_schema(self, trend_query: bool = True) -> None:
        """The database, its retention policies, and the continuous query of the 1-minute trend — or,
        with ``trend_query`` False (a single ingest makes the trend itself: broker/trend.py), no
        such query: one left by an earlier setup is dropped, or both would write the same minutes."""
        c = self._client
        c.query(f'CREATE DATABASE "{self.database}"', method="POST")
        existing = {p["name"] for p in c.get_list_retention_policies(self.database)}
        for name, duration in POLICIES.items():
            if name not in existing:
                c.create_retention_policy(name, duration, "1", database=self.database, default=name == RAW_POLICY)
        if not trend_query:
            if any(q["name"] == "reading_1m" for q in c.query("SHOW CONTINUOUS QUERIES").get_points(measurement=self.database)):
                c.query(f'DROP CONTINUOUS QUERY "reading_1m" ON "{self.database}"', method="POST")
            return
        cq = f'CREATE CONTINUOUS QUERY "reading_1m" ON "{self.database}" BEGIN {self._trend_select()} GROUP BY time(1m), * END'
        try:
            c.query(cq, method="POST")
        except Exception as exc:  # exists already with the same text: fine
            if "already exists" not in str(exc):
                raise

    def _trend_select(self, where: str = "") -> str:
        return (f'SELECT mean("value") AS "value", min("value") AS "min", max("value") AS "max" '
                f'INTO "{self.database}"."{TREND_POLICY}"."reading_1m" FROM "{self.database}"."{RAW_POLICY}"."reading"'
                + (f" WHERE {where}" if where else ""))

    def downsample(self, start_ms: int, end_ms: int, site: str | None = None) -> None:
        """The ``trend`` one-minute means of a past period (of one ``site``, or all). Ingest's trend
        (broker/trend.py) asks for this where it cannot know a minute from memory (readings replayed
        from a spool, out of order, its first minute); the same minutes computed again overwrite themselves."""
        where = f"time >= {start_ms}ms AND time < {end_ms}ms"
        if site is not None:
            where += " AND \"site\" = '" + site.replace("\\", "\\\\").replace("'", "\\'") + "'"
        self._client.query(f"{self._trend_select(where)} GROUP BY time(1m), *", method="POST")

    def write(self, points: list[Point]) -> None:
        """All points, one request per retention policy (and per ``chunk`` lines). A point line protocol
        cannot carry, or InfluxDB refusing points (4xx), raise :class:`PointsRejected`; InfluxDB away
        or answering 5xx raise something else (ingest keeps the batch and tries again)."""
        import gzip

        from .line_protocol import Unwritable
        by_policy: dict[str, list[Point]] = {}
        for p in points:
            by_policy.setdefault(p.policy, []).append(p)
        try:  # every body first: an unwritable point refuses the batch before anything is sent
            bodies = [(policy, self._lines.lines(batch[i:i + self.chunk]))
                      for policy, batch in by_policy.items() for i in range(0, len(batch), self.chunk)]
        except Unwritable as exc:
            raise PointsRejected(str(exc), partial=False) from None
        partial: list[str] = []
        for policy, body in bodies:
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if self.gzip:
                body = gzip.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
            r = self._session.post(self._write_url, params={"db": self.database, "rp": policy, "precision": "ms"},
                                   data=body, headers=headers, timeout=self.timeout)
            if r.status_code == 204:
                continue
            text = _error_text(r)
            if not 400 <= r.status_code < 500:
                raise DatabaseUnavailable(f"InfluxDB /write answered {r.status_code}: {text[:300]}")
            if "partial write" not in text:
                raise PointsRejected(f"{r.status_code}: {text}", partial=False)
            partial.append(text)  # InfluxDB wrote the rest of this batch
        if partial:
            raise PointsRejected("; ".join(partial), partial=True)

    def query(self, influxql: str):
        return self._client.query(influxql, epoch="ms")

    def canary(self, instance: str, n: int) -> bool:
        self.write([canary_point(instance, n)])
        rows = list(self.query(f'SELECT last("n") FROM "{RAW_POLICY}"."{CANARY}" WHERE "instance" = '
                               f"'{instance.replace(chr(39), '')}'").get_points())
        return bool(rows) and rows[0].get("last") == n

    def close(self) -> None:
        self._session.close()
        self._client.close()


def _error_text(response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text


def line_protocol(point: Point) -> str:
    """One point as InfluxDB line protocol (millisecond precision); see :mod:`.line_protocol`."""
    from .line_protocol import SHARED
    return SHARED.line(point)


@dataclass
class InfluxV2Writer:
    """InfluxDB 2.x/3.x through the v2 write API (``POST /api/v2/write``) via ``influxdb-client``.

    Buckets play the part of retention policies: each point goes to ``{bucket}`` for raw data or
    ``{bucket}-{policy}`` for the long-kept records and trends. Buckets, their retention and the
    downsampling task are created by the operator (docs/influxdb-schema.md); this writer only
    writes. Not runnable here (Debian ships 1.6.7); see docs/influxdb-schema.md for what is verified.
    """
    url: str
    org: str
    bucket: str
    token: str
    timeout_ms: int = 10_000
    _client: object = field(default=None, repr=False)
    _api: object = field(default=None, repr=False)

    def __post_init__(self):
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        self._client = InfluxDBClient(url=self.url, token=self.token, org=self.org, timeout=self.timeout_ms)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def bucket_for(self, policy: str) -> str:
        return self.bucket if policy == RAW_POLICY else f"{self.bucket}-{policy}"

    def ensure_schema(self, trend_query: bool = True) -> None:
        """Nothing to create from here: buckets belong to the operator. Checks the server answers."""
        if not self._client.ping():
            raise ConnectionError(f"InfluxDB at {self.url} does not answer /ping")

    def write(self, points: list[Point]) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        by_bucket: dict[str, list[str]] = {}
        for p in points:
            by_bucket.setdefault(self.bucket_for(p.policy), []).append(line_protocol(p))
        for bucket, lines in by_bucket.items():
            try:
                self._api.write(bucket=bucket, org=self.org, record=lines, write_precision=WritePrecision.MS)
            except ApiException as exc:
                if exc.status in (400, 422):  # v2 refuses the whole batch for a bad point
                    raise PointsRejected(f"{exc.status}: {exc.body}", partial=False) from None
                raise

    def canary(self, instance: str, n: int) -> bool:
        """Written and read back with Flux (not run here: no InfluxDB 2.x/3.x on these machines)."""
        self.write([canary_point(instance, n)])
        flux = (f'from(bucket: "{self.bucket}") |> range(start: -10m) |> filter(fn: (r) => r._measurement == "{CANARY}"'
                f' and r.instance == "{instance}") |> last()')
        tables = self._client.query_api().query(flux, org=self.org)
        return any(record.get_value() == n for table in tables for record in table.records)

    def close(self) -> None:
        self._client.close()


def make_writer(url: str, database: str, api: str = "v1", org: str = "", token: str = "") -> PointWriter:
    """The writer for an InfluxDB generation: ``v1`` (database + retention policies) or ``v2``
    (org + buckets named after ``database``)."""
    if api == "v1":
        return InfluxV1Writer(url, database)
    if api == "v2":
        return InfluxV2Writer(url, org, database, token)
    raise ValueError(f"unknown InfluxDB API '{api}' (v1 or v2)")
