"""`threadline followups ...`: a rep's follow-up queue, for admins at the server."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from app.cli import OrgOpt, _json_default, _operator, _rt, _the_org, app, err, out
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


# -- the daily digest ---------------------------------------------------------------------------

smtp_app = typer.Typer(help="The SMTP server the daily digest email goes through.", no_args_is_help=True)
digest_app = typer.Typer(help="Each rep's daily digest email.", no_args_is_help=True)
app.add_typer(smtp_app, name="smtp")
app.add_typer(digest_app, name="digest")


def _print_smtp(data: dict) -> None:
    for key, value in data.items():
        out.print(f"{key}: {value if value is not None else '-'}", highlight=False)


@smtp_app.command("show")
def smtp_show(org: OrgOpt = None) -> None:
    """The SMTP server (never the password), and the last error if the last email failed."""
    from app.services import digest

    rt = _rt()
    with session(rt.engine) as s:
        org_id = _the_org(s, org).id
    with read_only(rt.engine) as conn:
        _print_smtp(digest.smtp_settings(conn, org_id))


@smtp_app.command("set")
def smtp_set(
    host: Annotated[str, typer.Option(help="The SMTP server's host name.")],
    from_address: Annotated[str, typer.Option("--from", help="The address digests are sent from.")],
    port: Annotated[int, typer.Option(help="Port: 587 for STARTTLS, 465 for implicit TLS.")] = 587,
    security: Annotated[str, typer.Option(help="starttls | tls | none.")] = "starttls",
    username: Annotated[str, typer.Option(help="User name to sign in with (empty: no sign-in).")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (never an argument).")
    ] = False,
    org: OrgOpt = None,
) -> None:
    """Set the SMTP server; the password is read from standard input, stored encrypted."""
    import sys

    from app.services import digest

    rt = _rt()
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    _print_smtp(
        digest.set_smtp(
            rt,
            _operator(rt, org),
            host=host,
            port=port,
            security=security,
            username=username,
            password=password,
            from_address=from_address,
        )
    )


@smtp_app.command("test")
def smtp_test(to: Annotated[str, typer.Option(help="Where to send the test email.")], org: OrgOpt = None) -> None:
    """Send a test email and say which step failed (connect, tls, auth, sender, recipient, data)."""
    from app.services import digest

    rt = _rt()
    result = digest.send_test(rt, _operator(rt, org), to)
    for step in result["steps"]:
        state = "ok" if step["ok"] else ("FAILED" if step["ok"] is False else "-")
        out.print(f"{step['step']}: {state} {step['detail'] if step['ok'] is not True else ''}", highlight=False)
    if not result["ok"]:
        err.print(f"error: {result['detail']}", markup=False, highlight=False)
        raise typer.Exit(1)


@digest_app.command("set")
def digest_set(
    rep: Annotated[str, typer.Option(help="The rep's email address.")],
    hour: Annotated[Optional[int], typer.Option(help="Daily, at this hour of the rep's local time (0-23).")] = None,
    none: Annotated[bool, typer.Option("--none", help="No digest for this rep.")] = False,
    org: OrgOpt = None,
) -> None:
    """A rep's digest: daily at a local hour, or none."""
    from app.services import followups

    if none == (hour is not None):
        err.print("error: give either --hour H or --none")
        raise typer.Exit(2)
    rt = _rt()
    actor = _operator(rt, org)
    with read_only(rt.engine) as conn:
        user_id = followups.user_id_by_email(conn, actor.org_id, rep)
    result = followups.set_calendar(rt, actor, user_id, digest=not none, digest_hour=hour)
    if result["digest_enabled"]:
        out.print(f"{rep}: daily digest at {result['digest_hour']:02d}:00 {result['timezone']}", highlight=False)
    else:
        out.print(f"{rep}: no digest", highlight=False)
