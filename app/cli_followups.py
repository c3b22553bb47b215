"""`threadline followups ...`: a rep's follow-up queue, for admins at the server."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from app.cli import OrgOpt, _json_default, _rt, _the_org, app, err, out
from app.db import read_only, session

followups_app = typer.Typer(help="The follow-up queue computed from mail.", no_args_is_help=True)
app.add_typer(followups_app, name="followups")


@followups_app.command("list")
def list_followups(
    rep: Annotated[str, typer.Option(help="The rep's email address.")],
    org: OrgOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """A rep's open follow-ups due by the end of their day, overdue first."""
    from app.services import followups

    rt = _rt()
    with session(rt.engine) as s:
        org_id = _the_org(s, org).id
    with read_only(rt.engine) as conn:
        rows = followups.due(conn, org_id, followups.user_id_by_email(conn, org_id, rep))
    if as_json:
        out.print_json(json.dumps(rows, default=_json_default))
        return
    if not rows:
        err.print(f"nothing due for {rep}")
        return
    table = Table("id", "kind", "who", "subject", "since", "due")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["label"] + (" (overdue)" if r["overdue"] else ""),
            r["who"],
            r["subject"] or "",
            r["since"].strftime("%Y-%m-%d %H:%M"),
            r["due_at"].strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)
