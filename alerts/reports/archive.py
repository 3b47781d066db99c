"""Making the monthly reports, archiving them with each file's SHA-256, and the schedule that makes them
on the 1st of each month (idempotent: a report already archived is not made again; a missed run —
the service was down on the 1st — is caught up when it starts).

One site's report is its figures (:mod:`.figures`, from the store and InfluxDB) drawn twice (PDF,
XLSX). A bureau's run makes every site's report and the city summary; the InfluxDB queries of the
next site run while the current one is drawn, so the run takes about as long as its queries, and
only two sites' figures are ever held at once.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, time as dtime
from pathlib import Path
from typing import Callable

from stationwatch.core.config import Site, StationConfig

from ..records import AlertError
from ..register.store import Register
from ..roster import Directory
from ..store import Store
from . import pdf, xlsx
from .figures import SiteFigures, site_figures
from .period import Month
from .sections import L, city_sections, site_sections
from .series import Series

log = logging.getLogger(__name__)
RENDERERS = {"pdf": pdf.render, "xlsx": xlsx.render}
SITE_TITLE = L("救助管理站月度安全隐患报告", "Monthly safety and hazard report")
CITY_TITLE = L("月度安全隐患汇总（全市）", "Monthly safety and hazard summary, all sites")
CATCH_UP_MONTHS = 12  # a service down longer than this makes only the last year's missing reports


@dataclass(frozen=True)
class Made:
    scope: str  # site | bureau
    scope_id: str
    month: str
    format: str
    path: Path
    sha256: str
    size: int


class ReportError(AlertError):
    """A report cannot be made as asked; the message names the field."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Reports:
    def __init__(self, cfg: StationConfig, store: Store, series: Series, clock: Callable[[], float] = time.time):
        self.cfg, self.store, self.series, self.clock = cfg, store, series, clock
        self.register = Register(store)

    # ---- making
    def figures(self, site: Site, month: Month, now: float | None = None) -> SiteFigures:
        now = self.clock() if now is None else now
        start, end = month.bounds(site.tz)
        data = self.series.site(self.cfg, site, month, until=min(end, now))
        return site_figures(self.cfg, self.store, self.register, site, month, data, now)

    def site(self, site_id: str, month: Month, formats: list[str], out: Path, now: float | None = None) -> list[Made]:
        site = self.cfg.site(site_id)
        if site is None:
            raise ReportError(f"site: no site '{site_id}' / 站点不存在; known: {', '.join(s.id for s in self.cfg.sites)}")
        return self._draw_site(self.figures(site, month, now), formats, out)

    def bureau(self, bureau_id: str, month: Month, formats: list[str], out: Path, now: float | None = None,
               progress: Callable[[str], None] | None = None) -> list[Made]:
        """Every site of the bureau (and the bureaus below), then the city summary."""
        bureau = next((b for b in self.cfg.bureaus if b.id == bureau_id), None)
        if bureau is None:
            raise ReportError(f"bureau: no bureau '{bureau_id}' / 民政局不存在; known: "
                              + ", ".join(b.id for b in self.cfg.bureaus))
        ids = Directory(self.cfg).sites_of_bureau(bureau_id)
        sites = [s for s in self.cfg.sites if s.id in ids]
        made: list[Made] = []
        summary: list[SiteFigures] = []
        with ThreadPoolExecutor(1, thread_name_prefix="report-fetch") as pool:
            ahead = pool.submit(self.figures, sites[0], month, now) if sites else None
            for i, site in enumerate(sites):
                figures = ahead.result()
                ahead = pool.submit(self.figures, sites[i + 1], month, now) if i + 1 < len(sites) else None
                made += self._draw_site(figures, formats, out)
                summary.append(_light(figures))
                if progress:
                    progress(site.name)
        subtitle = f"{bureau.name} · {month.label}"
        for fmt in formats:
            path = out / f"city-{bureau.id}-{month.label}.{fmt}"
            RENDERERS[fmt](path, CITY_TITLE, subtitle, city_sections(bureau.name, summary, self.cfg.reports.language),
                           self.cfg.reports.language)
            made.append(Made("bureau", bureau.id, month.label, fmt, path, sha256_of(path), path.stat().st_size))
        if progress:
            progress(L("城市汇总", "city summary").text())
        return made

    def _draw_site(self, f: SiteFigures, formats: list[str], out: Path) -> list[Made]:
        out.mkdir(parents=True, exist_ok=True)
        lang = self.cfg.reports.language
        sections = site_sections(f, lang)
        subtitle = f"{f.site.name}（{f.site.id}）· {f.month.label}"
        made = []
        for fmt in formats:
            path = out / f"{f.site.id}-{f.month.label}.{fmt}"
            RENDERERS[fmt](path, SITE_TITLE, subtitle, sections, lang)
            made.append(Made("site", f.site.id, f.month.label, fmt, path, sha256_of(path), path.stat().st_size))
        return made

    # ---- the archive
    def archive_dir(self) -> Path:
        base = Path(self.cfg.reports.archive_dir)
        return base if base.is_absolute() else Path(self.store.path).resolve().parent / base

    def archived(self, scope: str | None = None, scope_id: str | None = None, month: str | None = None) -> list[dict]:
        where, args = [], []
        for column, value in (("scope", scope), ("scope_id", scope_id), ("month", month)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        sql = "SELECT * FROM reports" + (" WHERE " + " AND ".join(where) if where else "")
        return [dict(r) for r in self.store.query(sql + " ORDER BY month DESC, scope, scope_id, format", tuple(args))]

    def record(self, made: list[Made], by: str) -> None:
        """Note each file with its SHA-256 and make it read-only; a report archived once stays as it was."""
        with self.store.tx() as db:
            for m in made:
                os.chmod(m.path, 0o444)
                db.execute("INSERT INTO reports (scope, scope_id, month, format, path, sha256, size, generated_at,"
                           " generated_by) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (scope, scope_id, month, format)"
                           " DO NOTHING", (m.scope, m.scope_id, m.month, m.format, str(m.path), m.sha256, m.size,
                                           self.clock(), by))

    def due(self, now: float) -> list[tuple[str, Month]]:
        """(bureau id, month) whose reports should exist by now and are not archived: every ended month
        since the store's first alert (at most :data:`CATCH_UP_MONTHS`), once ``run_at`` on the 1st has passed."""
        first = self.store.query("SELECT MIN(first_at) t FROM alerts")[0]["t"]
        out = []
        tops = [b for b in self.cfg.bureaus if b.level == "city"] or [b for b in self.cfg.bureaus if not b.parent]
        run_at = dtime.fromisoformat(self.cfg.reports.run_at)
        for bureau in tops:
            ids = Directory(self.cfg).sites_of_bureau(bureau.id)
            sites = [s for s in self.cfg.sites if s.id in ids]
            if not sites:
                continue
            tz = sites[0].tz
            month = Month.of(now, tz).previous()
            for _ in range(CATCH_UP_MONTHS):
                if first is None or month.bounds(tz)[1] <= first:
                    break
                ready = datetime.combine(month.next().first_day(), run_at, tz).timestamp()
                have = {(r["format"]) for r in self.archived("bureau", bureau.id, month.label)}
                if now >= ready and not set(self.cfg.reports.formats) <= have:
                    out.append((bureau.id, month))
                month = month.previous()
        return sorted(out, key=lambda x: x[1])

    def run_due(self, now: float | None = None) -> list[Made]:
        now = self.clock() if now is None else now
        made: list[Made] = []
        for bureau_id, month in self.due(now):
            out = self.archive_dir() / month.label
            log.info("monthly reports %s for %s", month.label, bureau_id)
            batch = self.bureau(bureau_id, month, list(self.cfg.reports.formats), out, now)
            self.record(batch, "schedule")
            made += batch
        return made


def _light(f: SiteFigures) -> SiteFigures:
    """What the city summary keeps of a site: its figures less the dismissal reasons (only the site's report
    lists them); a bureau's run holds these small records, not the sites' series."""
    f.dismissals = []
    return f


def run_schedule(cfg: StationConfig, db_path: str | Path, influx_url: str, database: str, stop: threading.Event,
                 check_s: float = 600.0) -> None:
    """The report service: makes what is due now (a missed run included), then looks again every
    ``check_s`` — the 1st's reports are made within that long after ``reports.run_at``."""
    store = Store(db_path)
    series = Series(influx_url, database)
    reports = Reports(cfg, store, series)
    try:
        while not stop.is_set():
            try:
                for m in reports.run_due():
                    log.warning("report archived: %s (sha256 %s)", m.path, m.sha256)
            except Exception:  # InfluxDB down, disk full: try again at the next look
                log.exception("monthly reports could not be made; trying again in %.0f s", check_s)
            stop.wait(check_s)
    finally:
        series.close()
        store.close()
