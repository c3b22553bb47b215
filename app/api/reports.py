"""Reports: the JSON of each report, its charts as SVG, its tables as CSV, and the /reports page.

Every route takes the caller from the token; app/services/reports.py decides what they may see
(managers and admins: every rep; a rep: their own numbers). The SVG and the CSV are made from the
very rows the JSON carries, so a chart, its table view and its download show the same numbers.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from app.api import charts
from app.api.deps import CallerDep, RuntimeDep, read_conn
from app.api.panel import SECURITY, _page, _read
from app.services import reports
from app.services.actor import Actor
from app.services.errors import Invalid

router = APIRouter(tags=["reports"])
ReportName = Literal["activity", "response-times", "new-contacts", "cold-accounts", "pipeline"]
STATIC = {"reports.js": "text/javascript", "reports.css": "text/css"}


class ReportColumn(BaseModel):
    key: str
    label: str
    kind: Literal["text", "int", "number", "date"]


class ReportTable(BaseModel):
    key: str
    title: str
    chart: Literal["multiples", "hbars", "stacked", "bars", "figures"]
    columns: list[ReportColumn]
    series: list[str]  # the columns drawn as bars
    labels: list[str]  # the numeric columns written beside them
    rows: list[list[str | int | float | None]]


class ReportRep(BaseModel):
    id: int
    name: str
    email: str


class Report(BaseModel):
    report: str
    title: str
    start: date
    end: date
    rep_id: int | None
    reps: list[ReportRep]  # whom the caller may pick (a rep: only themselves)
    tables: list[ReportTable]
    notes: list[str]


class PipelineRef(BaseModel):
    id: int
    name: str


class PipelineReport(Report):
    pipelines: list[PipelineRef]
    pipeline_id: int | None
    currency: str


class Filters:
    """The filters every report takes."""

    def __init__(
        self,
        start: Annotated[date | None, Query(description="First day (default: Monday 11 weeks before end)")] = None,
        end: Annotated[date | None, Query(description="Last day (default: today, UTC)")] = None,
        rep: Annotated[int | None, Query(description="One rep's user id (a rep always gets their own)")] = None,
    ):
        self.values = {"start": start, "end": end, "rep_id": rep}


FiltersDep = Annotated[Filters, Depends()]
SortQ = Annotated[Literal["strength", "quiet", "name"], Query(description="Order of the cold accounts")]
LimitQ = Annotated[int, Query(ge=1, le=500, description="How many cold accounts to show")]


def _run(rt, caller, name: str, **filters) -> dict:
    with read_conn(rt) as conn:
        return reports.run(conn, Actor.of(caller), name, **filters)


@router.get("/api/reports/activity", response_model=Report, summary="Emails out, in and meetings per rep per week")
def activity(caller: CallerDep, rt: RuntimeDep, f: FiltersDep) -> Any:
    return _run(rt, caller, "activity", **f.values)


@router.get(
    "/api/reports/response-times", response_model=Report, summary="Median and p90 time to answer, per rep, both ways"
)
def response_times(caller: CallerDep, rt: RuntimeDep, f: FiltersDep) -> Any:
    return _run(rt, caller, "response-times", **f.values)


@router.get("/api/reports/new-contacts", response_model=Report, summary="New contacts and companies per week by source")
def new_contacts(caller: CallerDep, rt: RuntimeDep, f: FiltersDep) -> Any:
    return _run(rt, caller, "new-contacts", **f.values)


@router.get("/api/reports/cold-accounts", response_model=Report, summary="Companies with no activity for 60 or 90 days")
def cold_accounts(
    caller: CallerDep, rt: RuntimeDep, f: FiltersDep, sort: SortQ = "strength", limit: LimitQ = 25
) -> Any:
    return _run(rt, caller, "cold-accounts", sort=sort, limit=limit, **f.values)


@router.get(
    "/api/reports/pipeline",
    response_model=PipelineReport,
    summary="Open value by stage, win rate, time to close and the weighted forecast",
)
def pipeline(
    caller: CallerDep,
    rt: RuntimeDep,
    f: FiltersDep,
    pipeline: Annotated[int | None, Query(description="Pipeline id (default: the first)")] = None,
    currency: Annotated[str | None, Query(max_length=3, description="ISO 4217 code (default: the most used)")] = None,
) -> Any:
    return _run(rt, caller, "pipeline", pipeline_id=pipeline, currency=currency, **f.values)


def _extra(name: str, sort: str, limit: int, pipeline: int | None, currency: str | None) -> dict:
    if name == "cold-accounts":
        return {"sort": sort, "limit": limit}
    if name == "pipeline":
        return {"pipeline_id": pipeline, "currency": currency}
    return {}


def _table(report: dict, key: str | None) -> dict:
    tables = report["tables"]
    if key is None:
        return tables[0]
    for t in tables:
        if t["key"] == key:
            return t
    raise Invalid(f"table must be one of {', '.join(t['key'] for t in tables)}", field="table")


TableQ = Annotated[str | None, Query(max_length=40, description="Which of the report's tables (default: the first)")]
PipelineQ = Annotated[int | None, Query(description="pipeline report: the pipeline id")]
CurrencyQ = Annotated[str | None, Query(max_length=3, description="pipeline report: the currency")]


@router.get(
    "/api/reports/{report}.svg",
    response_class=Response,
    summary="One report table drawn as an SVG chart",
    responses={200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}}},
)
def report_svg(
    report: ReportName,
    caller: CallerDep,
    rt: RuntimeDep,
    f: FiltersDep,
    table: TableQ = None,
    width: Annotated[int, Query(ge=charts.MIN_WIDTH, le=charts.MAX_WIDTH)] = charts.DEFAULT_WIDTH,
    sort: SortQ = "strength",
    limit: LimitQ = 25,
    pipeline: PipelineQ = None,
    currency: CurrencyQ = None,
) -> Response:
    data = _run(rt, caller, report, **_extra(report, sort, limit, pipeline, currency), **f.values)
    svg = charts.render(_table(data, table), width)
    headers = {**SECURITY, "Content-Security-Policy": "default-src 'none'"}
    return Response(svg, media_type="image/svg+xml; charset=utf-8", headers=headers)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A cell as written to CSV: text that a spreadsheet would run as a formula gets a leading
    apostrophe (names and subjects come from mail); numbers are written as the table shows them."""
    text = reports.cell_text(value)
    if isinstance(value, str) and text.startswith(FORMULA_START):
        return "'" + text
    return text


def table_csv(table: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([csv_cell(c["label"]) for c in table["columns"]])
    for row in table["rows"]:
        writer.writerow([csv_cell(v) for v in row])
    return buf.getvalue()


@router.get(
    "/api/reports/{report}.csv",
    response_class=Response,
    summary="One report table as CSV: exactly the numbers its chart plots",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def report_csv(
    report: ReportName,
    caller: CallerDep,
    rt: RuntimeDep,
    f: FiltersDep,
    table: TableQ = None,
    sort: SortQ = "strength",
    limit: LimitQ = 25,
    pipeline: PipelineQ = None,
    currency: CurrencyQ = None,
) -> Response:
    data = _run(rt, caller, report, **_extra(report, sort, limit, pipeline, currency), **f.values)
    t = _table(data, table)
    name = f"threadline-{report}-{t['key']}-{data['start']}-{data['end']}.csv"
    headers = {**SECURITY, "Content-Disposition": f'attachment; filename="{name}"'}
    # With a byte order mark, so spreadsheet programs read the names as UTF-8.
    return Response("\ufeff" + table_csv(t), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/reports", response_class=HTMLResponse, include_in_schema=False)
def reports_page() -> Response:
    """The reports page (reports.js reads /api/reports/... with the token the panel stores)."""
    return _page("reports.html", outlook=False)


@router.get("/reports/static/{name}", response_class=Response, include_in_schema=False)
def reports_static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404, "not found")
    return Response(_read(name), media_type=f"{STATIC[name]}; charset=utf-8", headers=SECURITY)
