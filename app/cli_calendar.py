"""`threadline calendar ...`: calendar accounts (CalDAV)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from app.cli import OrgOpt, _json_default, _operator, _password, _rt, _the_org, app, err, out
from app.db import session

PASSWORD_ENV = "THREADLINE_CALDAV_PASSWORD"
calendar_app = typer.Typer(help="Calendar accounts (CalDAV) whose meetings join the timeline.", no_args_is_help=True)
app.add_typer(calendar_app, name="calendar")


@calendar_app.command("add-caldav")
def add_caldav(
    owner: Annotated[str, typer.Option(help="The rep whose calendars these are.")],
    url: Annotated[str, typer.Option(help="CalDAV server or account URL, e.g. https://dav.example.com/.")],
    username: Annotated[str, typer.Option(help="CalDAV login name.")],
    check: Annotated[
        bool, typer.Option(help="Log in and list the calendars now (nothing is stored if that fails).")
    ] = True,
    sync: Annotated[str, typer.Option(help="auto (RFC 6578 sync-token where offered) | ctag")] = "auto",
    org: OrgOpt = None,
) -> None:
    """Add a rep's CalDAV account. The password comes from THREADLINE_CALDAV_PASSWORD or a prompt, never argv."""
    from app.services import calendars

    password = _password(f"CalDAV password for {username}: ", PASSWORD_ENV)
    rt = _rt()
    mb = calendars.add_caldav(
        rt, _operator(rt, org), owner=owner, url=url, username=username, password=password, check=check, sync=sync
    )
    found = mb["calendars"]
    if check:
        out.print(f"found {len(found)} calendar(s): {', '.join(found) or 'none'}", highlight=False)
    out.print(
        f"calendar account {mb['id']} added for {owner}; run `threadline sync --once --mailbox {mb['id']}`",
        highlight=False,
    )


@calendar_app.command("list")
def list_calendars(
    org: OrgOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False
) -> None:
    """Every calendar account with its calendars, status and last error."""
    from app.services import calendars

    rt = _rt()
    with session(rt.engine) as s:
        o = _the_org(s, org)
        rows = calendars.describe_all(s, o.id)
    if as_json:
        out.print_json(json.dumps(rows, default=_json_default))
        return
    if not rows:
        err.print("no calendar accounts yet: add one with `threadline calendar add-caldav`")
        return
    table = Table("id", "owner", "url", "status", "calendars", "meetings", "last success", "last error")
    for r in rows:
        cals = ", ".join(f"{c['name']}{'' if c['status'] == 'ok' else ' (error)'}" for c in r["calendars"])
        table.add_row(
            str(r["id"]),
            r["owner"] or "",
            r["url"] or "",
            r["status"],
            cals or "-",
            str(r["meetings_imported"]),
            r["last_success_at"].strftime("%Y-%m-%d %H:%M") if r["last_success_at"] else "never",
            (r["last_error"] or "")[:80],
        )
    out.print(table)
