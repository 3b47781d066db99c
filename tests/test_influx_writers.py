"""Both writer backends behind one interface. v1 is verified against the real InfluxDB 1.6.7 the
suite starts; v2 (no server installable here) is verified on the wire: what influxdb-client sends
to a real HTTP receiver must be the documented v2 write request with correct line protocol."""
from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from stationwatch.broker.influx import RECORDS_POLICY, InfluxV1Writer, InfluxV2Writer, Point, line_protocol, make_writer


def test_line_protocol_escapes_tags_and_types_fields():
    p = Point("reading", {"site": "a b", "sensor": "x,y", "room": "r=1"},
              {"value": 21.5, "seq": 7, "historical": True, "quality": 'say "ok"'}, 1_795_000_000_123)
    assert line_protocol(p) == ('reading,room=r\\=1,sensor=x\\,y,site=a\\ b '
                                'value=21.5,seq=7i,historical=true,quality="say \\"ok\\"" 1795000000123')


def test_v1_schema_is_created_and_points_land_in_their_policy(influxdb):
    db = f"w_{uuid.uuid4().hex[:8]}"
    w = InfluxV1Writer(influxdb.url, db)
    w.ensure_schema()
    w.ensure_schema()  # safe to run twice
    policies = {p["name"]: p for p in w._client.get_list_retention_policies(db)}
    assert {"raw", "records", "trend"} <= set(policies) and policies["raw"]["default"]
    assert policies["records"]["duration"].startswith("9600h")  # 400 days: alarm records ≥ 1 year
    w.write([Point("reading", {"sensor": "t1"}, {"value": 1.0}, 1_795_000_000_000),
             Point("event", {"device": "s1"}, {"state": "alarm"}, 1_795_000_000_000, RECORDS_POLICY)])
    assert list(w.query('SELECT "value" FROM "reading"').get_points())[0]["value"] == 1.0
    assert list(w.query('SELECT "state" FROM "records"."event"').get_points())[0]["state"] == "alarm"
    cqs = w.query("SHOW CONTINUOUS QUERIES")
    assert any(cq["name"] == "reading_1m" for cq in cqs.get_points(measurement=db))


def test_v2_writer_sends_the_v2_write_request(receiver):
    w = InfluxV2Writer(receiver.url, "mz-city", "stationwatch", "secret-token")
    w.write([Point("reading", {"sensor": "t1", "site": "s"}, {"value": 20.5, "seq": 1}, 1_795_000_000_000),
             Point("event", {"device": "smk"}, {"state": "alarm"}, 1_795_000_000_500, RECORDS_POLICY)])
    w.close()
    sent = {parse_qs(urlsplit(r["path"]).query)["bucket"][0]: r for r in receiver.received()}
    assert set(sent) == {"stationwatch", "stationwatch-records"}
    raw = sent["stationwatch"]
    query = parse_qs(urlsplit(raw["path"]).query)
    assert urlsplit(raw["path"]).path == "/api/v2/write"
    assert query["org"] == ["mz-city"] and query["precision"] == ["ms"]
    assert raw["headers"]["Authorization"] == "Token secret-token"
    assert raw["body"].decode() == "reading,sensor=t1,site=s value=20.5,seq=1i 1795000000000"
    assert sent["stationwatch-records"]["body"].decode() == 'event,device=smk state="alarm" 1795000000500'


def test_v2_write_failure_raises_so_ingest_keeps_the_batch(receiver):
    receiver.status = 503
    w = InfluxV2Writer(receiver.url, "org", "b", "t")
    with pytest.raises(Exception):
        w.write([Point("reading", {"sensor": "t1"}, {"value": 1.0}, 1_795_000_000_000)])
    w.close()


def test_unknown_api_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="v1 or v2"):
        make_writer("http://x", "db", "v9")
