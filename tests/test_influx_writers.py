"""Both writer backends behind one interface. v1 is verified against the real InfluxDB 1.6.7 the
suite starts; v2 (no server installable here) is verified on the wire: what influxdb-client sends
to a real HTTP receiver must be the documented v2 write request with correct line protocol."""
from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from stationwatch.broker.stack import free_port
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


AWKWARD = ["two words", "a,b", "k=v", 'say "hi"', "中文 站点", "back\\slash", "C:\\dir\\", "a\\,b", "\\ lead",
           "tab\there", "multi\nline", "emoji 🔥", "=,\\ \"mixed\""]


def test_tags_and_fields_with_awkward_text_come_back_from_the_real_influxdb_as_written(influxdb):
    """Every tag, field key and string field the v1 writer can carry reads back exactly as it was;
    the ones line protocol cannot carry (a tag ending in a backslash, a line break in a tag) are
    refused as points, naming why, and nothing of their batch is written."""
    from stationwatch.broker.influx import PointsRejected
    db = f"w_{uuid.uuid4().hex[:8]}"
    w = InfluxV1Writer(influxdb.url, db)
    w.ensure_schema()
    tag_safe = [t for t in AWKWARD if not t.endswith("\\") and "\n" not in t]
    keys = ["f two words", "f a,b", "f k=v", 'f "q"', "f 中文", "f back\\slash", "f ,= \"", "f 🔥"]
    points = [Point("awk ward,m", {"case": str(i), "text": t, "k ey,=": "v"}, {"s": t, keys[i % len(keys)]: 1.0, "n": i},
                    1_795_000_000_000 + i) for i, t in enumerate(tag_safe)]
    points += [Point("awk ward,m", {"case": f"s{i}"}, {"s": t}, 1_795_000_001_000 + i) for i, t in enumerate(AWKWARD)]
    w.write(points)
    rows = list(w.query('SELECT * FROM "awk ward,m"').get_points())
    by_case = {r["case"]: r for r in rows}
    for i, t in enumerate(tag_safe):
        row = by_case[str(i)]
        assert (row["text"], row["s"], row["k ey,="], row[keys[i % len(keys)]]) == (t, t, "v", 1.0), t
    assert [by_case[f"s{i}"]["s"] for i in range(len(AWKWARD))] == AWKWARD  # string fields carry anything
    for tags, fields, what in (({"text": "C:\\dir\\"}, {"n": 2}, "tag value"), ({"text": "multi\nline"}, {"n": 2}, "tag value"),
                               ({}, {"a\\,b": 2}, "field key")):
        with pytest.raises(PointsRejected) as info:
            w.write([Point("awk", {"case": "ok"}, {"n": 1}, 1_795_000_002_000), Point("awk", tags, fields, 1_795_000_002_001)])
        assert not info.value.partial and what in str(info.value)
    assert list(w.query('SELECT * FROM "awk"').get_points()) == []
    w.close()


def test_the_v1_writer_sends_gzip_when_asked_and_influxdb_takes_it(influxdb):
    db = f"w_{uuid.uuid4().hex[:8]}"
    w = InfluxV1Writer(influxdb.url, db, gzip=True, chunk=300)
    w.ensure_schema()
    w.write([Point("reading", {"sensor": f"t{i % 7}"}, {"value": float(i)}, 1_795_000_000_000 + i) for i in range(1000)]
            + [Point("event", {"device": "smk"}, {"state": "alarm"}, 1_795_000_000_000, RECORDS_POLICY)])
    assert list(w.query('SELECT count("value") FROM "reading"').get_points())[0]["count"] == 1000
    assert list(w.query('SELECT "state" FROM "records"."event"').get_points())[0]["state"] == "alarm"
    w.close()


def test_a_point_influxdb_refuses_is_a_rejection_and_an_unreachable_one_is_not(influxdb):
    from stationwatch.broker.influx import PointsRejected
    db = f"w_{uuid.uuid4().hex[:8]}"
    w = InfluxV1Writer(influxdb.url, db)
    w.ensure_schema()
    w.write([Point("reading", {"sensor": "t1"}, {"value": 1.0}, 1_795_000_000_000)])
    with pytest.raises(PointsRejected) as info:  # a field of another type: InfluxDB's verdict on the point
        w.write([Point("reading", {"sensor": "t1"}, {"value": "warm"}, 1_795_000_000_001),
                 Point("reading", {"sensor": "t2"}, {"value": 2.0}, 1_795_000_000_001)])
    assert info.value.partial and "field type conflict" in str(info.value)
    assert list(w.query('SELECT "value" FROM "reading" WHERE sensor = \'t2\'').get_points())  # the rest was written
    gone = InfluxV1Writer(f"http://127.0.0.1:{free_port()}", db, timeout=2)
    with pytest.raises(Exception) as info:
        gone.write([Point("reading", {"sensor": "t1"}, {"value": 1.0}, 1_795_000_000_000)])
    assert not isinstance(info.value, PointsRejected)  # ingest keeps the batch and tries again
    w.close()
