"""The alert history and the engine's own figures, fed into InfluxDB for the charts.

Why InfluxDB and not an annotation endpoint of the API: Grafana's built-in InfluxDB data source
reads it (no plugin, no API token inside Grafana), a chart's annotations and its data come from
the same database and time axis, and the history is kept with the alarm records (``records``,
400 days, GB 50440) — also on a province server that never sees this API.

**The alert engine never waits for InfluxDB.** :class:`AlertFeed` is a thread of its own that
follows the store's audit trail, which is append-only with increasing ids, from a cursor kept in
the store: an InfluxDB outage delays the annotations and loses none, and a restart resumes where
the feed stopped. Each audit row is one point whose time is the row's millisecond plus its id in
the nanoseconds, so two transitions in the same millisecond never overwrite each other and
writing a row again (a crash before the cursor moved) overwrites itself.

Measurements (docs/influxdb-schema.md):

| measurement | policy | tags | fields |
|---|---|---|---|
| ``alert`` | records | site, rule, action, severity, room | alert_id, title, text, subject, state, actor, drill |
| ``alert_open`` | raw | site | one count per severity (real alerts), drills (open), drills_month, breaches_month |
| ``pipeline`` | raw | service=alerts, instance | the engine's counters (``*_total``), outbox_queued |
| ``notification`` | raw | channel (the URL's scheme only: never a token) | sent_total, failed_total, pending_total |
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Protocol

from stationwatch.core.alert_types import SEVERITIES
from stationwatch.core.config import StationConfig

from .store import Store

log = logging.getLogger(__name__)

FEED_S = 1.0  # the audit trail is followed this often
FIGURES_S = 10.0  # open alerts, engine counters and deliveries are written this often
BATCH = 500
CURSOR = ("influx_feed", "audit_id")  # (namespace, key) of the cursor in the store's memory

# audit actions that become annotations: what the chart says (中文 / English). Others (each notice
# sent, a condition recurring inside its hold) stay in the trail and the API, not on the charts.
ANNOTATED: dict[str, tuple[str, str]] = {
    "raise": ("告警", "raised"), "pending": ("待定", "pending"), "fire": ("告警生效", "firing"),
    "reopen": ("告警复发", "reopened"), "escalate": ("级别升高", "severity up"),
    "deescalate": ("级别降低", "severity down"), "confirm": ("复核确认", "confirmed on site"),
    "acknowledge": ("已确认", "acknowledged"), "resolve": ("已解除", "resolved"),
    "dismiss": ("误报排除", "dismissed"), "expire": ("未达持续时间", "expired"),
    "breach": ("超时未确认", "deadline missed"),
    "local_alarm_silenced": ("现场消音", "siren silenced"), "local_alarm_quiet": ("现场报警停止", "siren quiet"),
}


class Sink(Protocol):
    def write(self, points: list[dict[str, Any]]) -> None:
        """Write InfluxDB v1 JSON points (``time`` in nanoseconds) or raise."""


@dataclass
class InfluxSink:
    """InfluxDB 1.x through the ``influxdb`` client (the same server ingest writes to)."""
    url: str
    database: str = "stationwatch"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        from urllib.parse import urlsplit

        from influxdb import InfluxDBClient
        u = urlsplit(self.url)
        self._client = InfluxDBClient(host=u.hostname or "127.0.0.1", port=u.port or 8086, username=u.username,
                                      password=u.password, database=self.database, ssl=u.scheme == "https",
                                      timeout=self.timeout, retries=1)

    def write(self, points: list[dict[str, Any]]) -> None:
        by_policy: dict[str, list[dict[str, Any]]] = {}
        for p in points:
            by_policy.setdefault(p.pop("policy"), []).append(p)
        for policy, batch in by_policy.items():
            self._client.write_points(batch, time_precision="n", retention_policy=policy, batch_size=5000)

    def close(self) -> None:
        self._client.close()


def _ns(at: float, unique: int = 0) -> int:
    return int(round(at * 1000)) * 1_000_000 + unique % 1_000_000


def alert_point(row: dict[str, Any]) -> dict[str, Any]:
    """One audit row (joined with its alert) as an ``alert`` point."""
    zh, en = ANNOTATED[row["action"]]
    who = "" if row["actor"] == "engine" else f"（{row['actor']}）"
    note = f"：{row['note']}" if row["note"] else ""
    tags = {"site": row["site"], "rule": row["rule"], "action": row["action"], "severity": row["severity"]}
    if row["room"]:
        tags["room"] = row["room"]
    return {"measurement": "alert", "policy": "records", "tags": tags, "time": _ns(row["at"], row["id"]),
            "fields": {"alert_id": int(row["alert_id"]), "title": f"{zh}：{row['title_zh']} / {en}: {row['title_en']}",
                       "text": f"#{row['alert_id']} {zh}{who}{note}", "subject": row["subject"],
                       "state": row["state"], "actor": row["actor"], "drill": bool(row["drill"])}}


def _month_start(now: float, tz) -> float:
    local = datetime.fromtimestamp(now, tz)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def figures(cfg: StationConfig, store: Store, now: float, stats: dict[str, Any], instance: str) -> list[dict]:
    """Open alerts per site and severity, drills this month (site time), the engine's counters and
    deliveries per channel: gauges, so a query over any range answers (with zeros)."""
    ns = _ns(now)
    points = []
    for site in cfg.sites:
        open_rows = store.query("SELECT severity, drill, COUNT(*) n FROM alerts WHERE site=? AND state IN"
                                " ('pending', 'firing', 'acknowledged') GROUP BY severity, drill", (site.id,))
        fields: dict[str, Any] = {name: 0 for name in SEVERITIES} | {"drills": 0}
        for r in open_rows:
            key = "drills" if r["drill"] else r["severity"]
            fields[key] += r["n"]
        month = _month_start(now, site.tz)
        fields["drills_month"] = store.query("SELECT COUNT(*) n FROM alerts WHERE site=? AND drill=1 AND first_at>=?",
                                             (site.id, month))[0]["n"]
        fields["breaches_month"] = store.query("SELECT COUNT(*) n FROM breaches WHERE site=? AND at>=?",
                                               (site.id, month))[0]["n"]
        points.append({"measurement": "alert_open", "policy": "raw", "tags": {"site": site.id}, "time": ns,
                       "fields": {k: float(v) for k, v in fields.items()}})
    counters = {f"{k}_total": float(v) for k, v in stats.items() if isinstance(v, (int, float)) and k != "started"}
    counters["outbox_queued"] = float(store.query("SELECT COUNT(*) n FROM outbox WHERE state IN ('queued', 'sending')")[0]["n"])
    points.append({"measurement": "pipeline", "policy": "raw", "tags": {"service": "alerts", "instance": instance},
                   "time": ns, "fields": counters})
    channels: dict[str, dict[str, float]] = {}
    for r in store.query("SELECT channel, state, COUNT(*) n FROM deliveries GROUP BY channel, state"):
        scheme = r["channel"].split("://", 1)[0] if "://" in r["channel"] else "unknown"
        counts = channels.setdefault(scheme, {"sent_total": 0.0, "failed_total": 0.0, "pending_total": 0.0})
        key = {"sent": "sent_total", "failed": "failed_total"}.get(r["state"], "pending_total")
        counts[key] += r["n"]
    points += [{"measurement": "notification", "policy": "raw", "tags": {"channel": scheme}, "time": ns, "fields": c}
               for scheme, c in sorted(channels.items())]
    return points


class AlertFeed:
    """Follows the audit trail into ``alert`` points and writes the figures; a thread beside the engine."""

    def __init__(self, cfg: StationConfig, db_path: str | Path, sink: Sink, *, instance: str = "alerts",
                 stats: Callable[[], dict[str, Any]] = dict, feed_s: float = FEED_S, figures_s: float = FIGURES_S):
        self.cfg, self.sink, self.instance, self.stats = cfg, sink, instance, stats
        self.store = Store(db_path)
        self.feed_s, self.figures_s = feed_s, figures_s
        self.written = 0
        self._thread: threading.Thread | None = None

    @property
    def cursor(self) -> int:
        return int(self.store.load_memory().get(CURSOR[0], {}).get(CURSOR[1], 0))

    def follow(self) -> int:
        """Write the audit rows after the cursor (one batch); move the cursor. Returns rows read."""
        rows = [dict(r) for r in self.store.query(
            "SELECT u.id, u.alert_id, u.at, u.actor, u.action, u.note, a.site, a.room, a.rule, a.severity, a.state,"
            " a.subject, a.title_zh, a.title_en, a.drill FROM audit u JOIN alerts a ON a.id = u.alert_id"
            " WHERE u.id > ? ORDER BY u.id LIMIT ?", (self.cursor, BATCH))]
        points = [alert_point(r) for r in rows if r["action"] in ANNOTATED]
        if points:
            self.sink.write(points)
            self.written += len(points)
        if rows:
            self.store.save_memory({CURSOR: rows[-1]["id"]})
        return len(rows)

    def write_figures(self, now: float | None = None) -> None:
        self.sink.write(figures(self.cfg, self.store, time.time() if now is None else now, self.stats(), self.instance))

    def run(self, stop: threading.Event) -> None:
        next_figures, delay = 0.0, self.feed_s
        while not stop.is_set():
            try:
                while self.follow() == BATCH and not stop.is_set():
                    pass
                if time.monotonic() >= next_figures:
                    self.write_figures()
                    next_figures = time.monotonic() + self.figures_s
                delay = self.feed_s
            except Exception as exc:  # InfluxDB down or refusing: the engine goes on; so do we, later
                log.warning("alert history not written to InfluxDB (%s); retrying in %.0f s", str(exc)[:200], delay)
                delay = min(delay * 2, 30.0)
            stop.wait(delay)
        self.store.close()

    def start(self, stop: threading.Event) -> "AlertFeed":
        self._thread = threading.Thread(target=self.run, args=(stop,), name="alert-feed", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def engine_stats(engine) -> Callable[[], dict[str, Any]]:
    return lambda: asdict(engine.stats)
