"""`threadline contacts ...`: duplicate contacts, merging two and undoing a merge."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from app.cli import OrgOpt, _json_default, _operator, _org_id, _rt, contacts_app, err, out
from app.db import read_only


@contacts_app.command("duplicates")
def duplicates_cmd(
    org: OrgOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many candidates.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Contacts that look like one person, most likely first, with the evidence."""
    from app.services import duplicates

    rt = _rt()
    org_id = _org_id(rt, org)
    rows = duplicates.candidates(rt, org_id, limit=limit)
    if as_json:
        out.print_json(json.dumps(rows, default=_json_default))
        return
    if not rows:
        err.print("no duplicates found")
        return
    table = Table("keep", "merge", "confidence", "evidence")
    for c in rows:
        by_id = {p["id"]: p for p in c["contacts"]}
        keep, other = by_id[c["keep_id"]], by_id[c["merge_id"]]
        table.add_row(
            f"{keep['id']} {keep['name']} <{', '.join(keep['addresses'])}>",
            f"{other['id']} {other['name']} <{', '.join(other['addresses'])}>",
            f"{c['confidence']:.0%}",
            "; ".join(e["examples"][0]["text"] for e in c["evidence"]),
        )
    out.print(table)
    err.print("merge one with: threadline contacts merge KEEP MERGE (ids or addresses)")


@contacts_app.command("merge")
def merge_cmd(
    keep: Annotated[str, typer.Argument(help="The contact kept: its id or one of its addresses.")],
    other: Annotated[str, typer.Argument(help="The contact merged into it: its id or one of its addresses.")],
    org: OrgOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Merge contact OTHER into KEEP: every address, email, note, task, deal and follow-up moves."""
    from app.services import duplicates

    rt = _rt()
    actor = _operator(rt, org)
    with read_only(rt.engine) as conn:
        keep_id = duplicates.contact_ref(conn, actor.org_id, keep)
        other_id = duplicates.contact_ref(conn, actor.org_id, other)
    if not yes and not typer.confirm(f"Merge contact {other_id} into contact {keep_id}?"):
        err.print("nothing merged")
        raise typer.Exit(1)
    result = duplicates.merge(rt, actor, keep_id, other_id)
    moved = result["moved"]
    out.print(
        f"merged contact {other_id} into {keep_id}: {moved['addresses']} addresses, "
        f"{moved['participants']} participations, {moved['followups']} follow-ups, "
        f"{moved['deals_moved'] + moved['deals_dropped']} deals; undo with: "
        f"threadline contacts unmerge {result['audit_id']}"
    )


@contacts_app.command("unmerge")
def unmerge_cmd(
    audit_id: Annotated[int, typer.Argument(help="The merge's audit event id (printed by merge, in the audit log).")],
    org: OrgOpt = None,
) -> None:
    """Undo a merge: the merged contact comes back with the rows the merge moved."""
    from app.services import duplicates

    rt = _rt()
    result = duplicates.unmerge(rt, _operator(rt, org), audit_id)
    out.print(
        f"contact {result['contact_id']} restored from {result['survivor_id']}: {result['addresses']} addresses, "
        f"{result['participants'] + result['later_participants']} participations"
        + (
            f"; {result['addresses_not_restored']} addresses not restored (no longer logged)"
            if result["addresses_not_restored"]
            else ""
        )
    )
