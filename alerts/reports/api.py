"""The monthly reports' resource of the API, ``/api/reports`` (one router):

``GET /api/reports?month=``          archived reports of the caller's scope, each with its SHA-256
``GET /api/reports/{id}/file``       one archived file (``X-Content-SHA256`` carries the recorded checksum)
``POST /api/reports``                make a site's or a bureau's report for a month now (``serve --influx``);
                                     a month that has ended is archived, the running month is a draft

Every role that may read a site may read its reports — inspectors (督查) included: a report changes nothing.
A bureau's summary is for those whose scope holds every site of that bureau.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path as PathParam, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, model_validator

from ..api_limits import MAX_ID, ErrorOut, Ident, errors
from ..auth import CurrentUser, Principal
from ..register.access import Act, refusal
from ..roster import Directory
from .archive import ReportError, Reports
from .period import Month
from .series import Series, SeriesError

MONTH = r"^20\d{2}-(0[1-9]|1[0-2])$"  # 2000-01 … 2099-12: no station's data is older, none is made later
MonthText = Annotated[str, Field(pattern=MONTH, description="2026-11")]
ReportId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="archived report number", examples=[1])]


class ReportOut(BaseModel):
    id: int | None
    scope: str
    scope_id: str
    month: str
    format: str
    sha256: str
    size: int
    generated_at: float
    archived: bool
    url: str | None


class ReportIn(BaseModel):
    # exactly one scope, said in the schema too (clients and fuzzers read it)
    model_config = {"json_schema_extra": {"oneOf": [{"required": ["site"], "not": {"required": ["bureau"]}},
                                                    {"required": ["bureau"], "not": {"required": ["site"]}}]}}
    site: Ident = None  # type: ignore[assignment]  # absent, never null (the schema says so)
    bureau: Ident = None  # type: ignore[assignment]
    month: MonthText
    formats: Annotated[list[Literal["pdf", "xlsx"]], Field(min_length=1, max_length=2)] = ["pdf", "xlsx"]

    @model_validator(mode="after")
    def _one_scope(self) -> "ReportIn":
        if (self.site is None) == (self.bureau is None):
            raise ValueError("site or bureau: name exactly one / 须指定站点或民政局之一")
        return self


def _allowed(request: Request, principal: Principal, scope: str, scope_id: str) -> bool:
    if scope == "site":
        return scope_id in principal.sites and refusal(principal, Act.READ) is None
    return Directory(request.app.state.cfg).sites_of_bureau(scope_id) <= principal.sites and refusal(principal, Act.READ) is None


def _reports(request: Request) -> Reports:
    state = request.app.state
    url = getattr(state, "influx_url", None)
    if getattr(state, "reports", None) is None:
        series = Series(url, getattr(state, "influx_database", "stationwatch")) if url else None
        state.reports = Reports(state.cfg, state.store, series)
    return state.reports


reports = APIRouter(prefix="/api/reports", tags=["monthly reports"], responses=errors(401, 403, 422))


@reports.get("", response_model=list[ReportOut])
def list_reports(request: Request, principal: CurrentUser,
                 month: Annotated[str | None, Query(pattern=MONTH)] = None) -> list[ReportOut]:
    """Archived monthly reports of the caller's scope, newest month first, with each file's SHA-256."""
    rows = _reports(request).archived(month=month)
    return [ReportOut(**{k: r[k] for k in ("id", "scope", "scope_id", "month", "format", "sha256", "size",
                                            "generated_at")}, archived=True, url=f"/api/reports/{r['id']}/file")
            for r in rows if _allowed(request, principal, r["scope"], r["scope_id"])]


@reports.get("/{report_id}/file", response_class=FileResponse, responses=errors(404))
def get_file(report_id: ReportId, request: Request, principal: CurrentUser) -> FileResponse:
    """The archived file, exactly as made; compare its SHA-256 with ``X-Content-SHA256``."""
    row = next((r for r in _reports(request).archived() if r["id"] == report_id), None)
    if row is None or not Path(row["path"]).exists():
        raise HTTPException(404, f"报告 #{report_id} 不存在 / no report #{report_id}")
    if not _allowed(request, principal, row["scope"], row["scope_id"]):
        raise HTTPException(403, "该报告不在您的范围内 / that report is not in your scope")
    media = "application/pdf" if row["format"] == "pdf" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return FileResponse(row["path"], media_type=media, filename=Path(row["path"]).name,
                        headers={"X-Content-SHA256": row["sha256"]})


@reports.post("", response_model=list[ReportOut], status_code=201,
              responses={**errors(413), 502: {"model": ErrorOut, "description": "InfluxDB did not answer / 时序数据库无应答"},
                         503: {"model": ErrorOut, "description": "the API was started without InfluxDB (serve --influx)"}})
def make_report(body: ReportIn, request: Request, principal: CurrentUser) -> list[ReportOut]:
    """Make a report now. A month that has ended goes to the archive (once: an archived report is returned as
    it was made); the running month is made as a draft counted up to now, and not archived."""
    cfg = request.app.state.cfg
    scope, scope_id = ("site", body.site) if body.site else ("bureau", body.bureau)
    known = {s.id for s in cfg.sites} if scope == "site" else {b.id for b in cfg.bureaus}
    if scope_id not in known or not _allowed(request, principal, scope, scope_id):  # unknown as not yours: no enumeration
        raise HTTPException(403, f"该{'站点' if scope == 'site' else '民政局'}不存在或不在您的范围内 / "
                                 f"that {scope} does not exist or is not in your scope")
    made_by = _reports(request)
    if made_by.series is None:
        raise HTTPException(503, "接口未连接时序数据库（serve --influx）/ the API was started without --influx")
    month, now = Month.parse(body.month), time.time()
    site = cfg.site(body.site) if body.site else next(s for s in cfg.sites if s.id in
                                                       Directory(cfg).sites_of_bureau(scope_id))
    ended = month.bounds(site.tz)[1] <= now
    have = {r["format"]: r for r in made_by.archived(scope, scope_id, month.label)}
    if ended and set(body.formats) <= set(have):
        return [ReportOut(**{k: have[f][k] for k in ("id", "scope", "scope_id", "month", "format", "sha256", "size",
                                                    "generated_at")}, archived=True, url=f"/api/reports/{have[f]['id']}/file")
                for f in body.formats]
    out = made_by.archive_dir() / month.label if ended else Path(tempfile.mkdtemp(prefix="stationwatch-draft-"))
    try:
        make = made_by.site if scope == "site" else made_by.bureau
        made = make(scope_id, month, list(body.formats), out, now)
    except (ReportError, SeriesError) as exc:
        if isinstance(exc, SeriesError):
            raise HTTPException(502, str(exc)) from None
        raise HTTPException(422, [{"loc": ["body"], "type": "value_error", "msg": str(exc)}]) from None
    if ended:
        made_by.record(made, principal.actor)
        return list_reports(request, principal, month.label)
    return [ReportOut(id=None, scope=m.scope, scope_id=m.scope_id, month=m.month, format=m.format, sha256=m.sha256,
                      size=m.size, generated_at=now, archived=False, url=None) for m in made]
