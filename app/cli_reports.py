"""`threadline report NAME`: a report's tables as CSV (or the whole report as JSON), at the server."""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Annotated, Optional

import typer

from app.cli import OrgOpt, _operator, _rt, app, out
from app.db import read_only

NAMES = "activity | response-times | new-contacts | cold-accounts | pipeline"


@app.command("report")
def report(
    name: Annotated[str, typer.Argument(help=NAMES)],
    start: Annotated[
        Optional[str], typer.Option("--from", help="First day, YYYY-MM-DD (default: 12 weeks back)")
    ] = None,
    end: Annotated[Optional[str], typer.Option("--to", help="Last day, YYYY-MM-DD (default: today)")] = None,
    rep: Annotated[Optional[str], typer.Option(help="One rep's email address (default: everyone)")] = None,
    table: Annotated[Optional[str], typer.Option(help="Only this table of the report (its key)")] = None,
    org: OrgOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON")] = False,
) -> None:
    """Print a report as the reports page shows it: each table as CSV (spreadsheet formulas
    neutralised), with a blank line between tables."""
    from app.api.reports import table_csv
    from app.services import followups, reports

    rt = _rt()
    actor = _operator(rt, org)
    with read_only(rt.engine) as conn:
        rep_id = followups.user_id_by_email(conn, actor.org_id, rep) if rep else None
        data = reports.run(conn, actor, name, start=start, end=end, rep_id=rep_id)
    tables = [t for t in data["tables"] if table is None or t["key"] == table]
    if not tables:
        from app.services.errors import Invalid

        raise Invalid(f"table must be one of {', '.join(t['key'] for t in data['tables'])}", field="table")
    if as_json:
        out.print_json(
            json.dumps({**data, "tables": tables}, default=lambda v: v.isoformat() if isinstance(v, date) else str(v))
        )
        return
    sys.stdout.write("\n".join(table_csv(t) for t in tables))
