"""Administration commands: rules, privacy, audit, key rotation, and the admin side
of organisations, users and mailboxes. Each command calls its use case in
app/services as the server's operator (audited with no actor id, shown as "system")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from app.cli import (
    OrgOpt,  # noqa: F401
    _fail,
    _json_default,
    _operator,
    _org_id,
    _rt,
    app,
    err,
    mailbox_app,
    org_app,
    out,
    user_app,
)
from app.db import read_only, session
from app.services import orgs as org_service

rule_app = typer.Typer(help='"Never log" rules (addresses and domains).', no_args_is_help=True)
privacy_app = typer.Typer(help="Export or erase everything about one person.", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets at rest.", no_args_is_help=True)
app.add_typer(rule_app, name="rule")
app.add_typer(privacy_app, name="privacy")
app.add_typer(secrets_app, name="secrets")
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _print_json(data) -> None:
    out.print_json(json.dumps(data, default=_json_default))


# -- org ------------------------------------------------------------------------------------
@org_app.command("show")
def org_show(org: OrgOpt = None, as_json: JsonOpt = False) -> None:
    """The organisation's settings."""
    rt = _rt()
    oid = _org_id(rt, org)
    with read_only(rt.engine) as conn:
        data = org_service.org_settings(conn, oid)
    if as_json:
        _print_json(data)
        return
    for key, value in data.items():
        out.print(f"{key}: {value if value is not None else '(built-in list)'}", highlight=False)


@org_app.command("set")
def org_set(
    name: Annotated[Optional[str], typer.Option(help="Company name.")] = None,
    domain: Annotated[
        Optional[list[str]], typer.Option("--domain", help="Internal domain (repeatable; replaces the list).")
    ] = None,
    policy: Annotated[Optional[str], typer.Option(help="Contact policy: exchanged | sent | all | none.")] = None,
    visibility: Annotated[Optional[str], typer.Option(help="metadata | subject | snippet.")] = None,
    backfill_days: Annotated[Optional[int], typer.Option(help="How many days of history to import.")] = None,
    sync_interval: Annotated[Optional[int], typer.Option(help="Seconds between syncs of a mailbox.")] = None,
    bulk_detection: Annotated[
        Optional[bool],
        typer.Option("--bulk-detection/--no-bulk-detection", help="Keep newsletters and automated mail out."),
    ] = None,
    free_mail: Annotated[
        Optional[list[str]], typer.Option("--free-mail", help="Free-mail domain (repeatable; replaces the list).")
    ] = None,
    builtin_free_mail: Annotated[
        bool, typer.Option("--builtin-free-mail", help="Go back to the built-in free-mail list.")
    ] = False,
    calendar_past_days: Annotated[Optional[int], typer.Option(help="Calendar days back.")] = None,
    calendar_future_days: Annotated[Optional[int], typer.Option(help="Calendar days ahead.")] = None,
    entra_tenant: Annotated[
        Optional[str], typer.Option(help="Microsoft Entra tenant id for sidebar sign-in ('' clears).")
    ] = None,
    phone_region: Annotated[
        Optional[str],
        typer.Option(help="Country (GB, US) of signature phone numbers written without one ('' clears)."),
    ] = None,
    org: OrgOpt = None,
) -> None:
    """Change organisation settings (only the options given)."""
    changes = {
        "name": name,
        "internal_domains": domain or None,
        "contact_policy": policy,
        "visibility": visibility,
        "backfill_days": backfill_days,
        "sync_interval_seconds": sync_interval,
        "bulk_detection": bulk_detection,
        "calendar_past_days": calendar_past_days,
        "calendar_future_days": calendar_future_days,
        "entra_tenant_id": entra_tenant,
        "phone_region": phone_region,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if builtin_free_mail:
        changes["free_mail_domains"] = None
    elif free_mail:
        changes["free_mail_domains"] = free_mail
    if not changes:
        _fail("nothing to change: see `threadline org set --help`")
    rt = _rt()
    data = org_service.update_org(rt, _operator(rt, org), changes)
    out.print("organisation updated: " + ", ".join(f"{k}={data[k]}" for k in changes), highlight=False)


# -- users --------------------------------------------------------------------------------------
@user_app.command("list")
def user_list(org: OrgOpt = None, as_json: JsonOpt = False) -> None:
    """Users with their role, aliases and tokens (never token values)."""
    rt = _rt()
    oid = _org_id(rt, org)
    with read_only(rt.engine) as conn:
        users = org_service.list_users(conn, oid)
    if as_json:
        _print_json(users)
        return
    table = Table("id", "email", "name", "role", "active", "aliases", "tokens (id: name)")
    for u in users:
        table.add_row(
            str(u["id"]),
            u["email"],
            u["name"],
            u["role"],
            "yes" if u["active"] else "no",
            " ".join(a["address"] for a in u["aliases"]),
            ", ".join(f"{t['id']}: {t['name'] or '-'}" for t in u["tokens"] if t["active"]),
        )
    out.print(table)


def _user_id(rt, oid: int, email: str) -> int:
    with read_only(rt.engine) as conn:
        return org_service.user_id_by_email(conn, oid, email)


def _set_user(email: str, org: int | None, **values) -> str:
    rt = _rt()
    actor = _operator(rt, org)
    org_service.update_user(rt, actor, _user_id(rt, actor.org_id, email), **values)
    return email


@user_app.command("deactivate")
def user_deactivate(email: str, org: OrgOpt = None) -> None:
    """Deactivate a user: their tokens are revoked and their mailboxes paused."""
    _set_user(email, org, active=False)
    out.print(f"{email} deactivated (tokens revoked, mailboxes paused)", highlight=False)


@user_app.command("reactivate")
def user_reactivate(email: str, org: OrgOpt = None) -> None:
    """Reactivate a user (issue a new token; resume their mailboxes)."""
    _set_user(email, org, active=True)
    out.print(f"{email} reactivated", highlight=False)


@user_app.command("role")
def user_role(
    email: str,
    role: Annotated[str, typer.Argument(help="rep | manager (sees every rep's reports) | admin")],
    org: OrgOpt = None,
) -> None:
    """Make a user a rep or an admin."""
    _set_user(email, org, role=role)
    out.print(f"{email} is now {role}", highlight=False)


@user_app.command("alias")
def user_alias(email: str, alias: str, org: OrgOpt = None) -> None:
    """Add another address of a user."""
    rt = _rt()
    actor = _operator(rt, org)
    org_service.add_alias(rt, actor, _user_id(rt, actor.org_id, email), alias)
    out.print(f"alias {alias} added to {email}", highlight=False)


@user_app.command("revoke-token")
def user_revoke_token(
    token_id: Annotated[Optional[int], typer.Argument(help="Token id (see `threadline user list`).")] = None,
    all_of: Annotated[Optional[str], typer.Option("--all", help="Revoke every token of this user instead.")] = None,
    org: OrgOpt = None,
) -> None:
    """Revoke a personal access token (or all of a user's with --all EMAIL)."""
    if (token_id is None) == (all_of is None):
        _fail("give a token id, or --all EMAIL")
    rt = _rt()
    actor = _operator(rt, org)
    if token_id is not None:
        org_service.revoke_token(rt, actor, token_id)
        out.print(f"token {token_id} revoked")
        return
    count = org_service.revoke_user_tokens(rt, actor, _user_id(rt, actor.org_id, all_of))
    out.print(f"{count} token(s) of {all_of} revoked", highlight=False)


# -- mailboxes ----------------------------------------------------------------------------------
def _mailbox_op(mailbox_id: int, org: int | None, fn, done: str, **kw) -> dict | None:
    rt = _rt()
    result = fn(rt, _operator(rt, org), mailbox_id, **kw)
    out.print(done, highlight=False)
    return result


@mailbox_app.command("pause")
def mailbox_pause(mailbox_id: int, org: OrgOpt = None) -> None:
    """Stop syncing a mailbox."""
    from app.services import mailboxes

    _mailbox_op(mailbox_id, org, mailboxes.pause, f"mailbox {mailbox_id} paused")


@mailbox_app.command("resume")
def mailbox_resume(mailbox_id: int, org: OrgOpt = None) -> None:
    """Sync a paused mailbox again."""
    from app.services import mailboxes

    _mailbox_op(mailbox_id, org, mailboxes.resume, f"mailbox {mailbox_id} resumed")


@mailbox_app.command("resync")
def mailbox_resync(mailbox_id: int, org: OrgOpt = None) -> None:
    """Re-sync from scratch: folder cursors reset; stored interactions stay, nothing is duplicated."""
    from app.services import mailboxes

    _mailbox_op(
        mailbox_id, org, mailboxes.resync, f"mailbox {mailbox_id} will be read again from the start at its next sync"
    )


@mailbox_app.command("remove")
def mailbox_remove(
    mailbox_id: int,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also remove the interactions seen only through this mailbox.")
    ] = False,
    org: OrgOpt = None,
) -> None:
    """Remove a mailbox (the timeline keeps its interactions unless --purge)."""
    from app.services import mailboxes

    result = _mailbox_op(mailbox_id, org, mailboxes.remove, f"mailbox {mailbox_id} removed", purge=purge)
    if purge:
        out.print(f"purged {result['removed_interactions']} interactions, {result['removed_contacts']} contacts")


@mailbox_app.command("test")
def mailbox_test(
    mailbox_id: Annotated[Optional[int], typer.Argument(help="A stored mailbox; or give --host etc.")] = None,
    host: Annotated[Optional[str], typer.Option(help="IMAP host (testing before adding).")] = None,
    port: Annotated[int, typer.Option(help="IMAP port.")] = 993,
    security: Annotated[str, typer.Option(help="tls | starttls | none")] = "tls",
    username: Annotated[Optional[str], typer.Option(help="IMAP login name.")] = None,
    org: OrgOpt = None,
) -> None:
    """Test an IMAP connection step by step: DNS, TCP, TLS, login, folder list."""
    from app.cli import _password
    from app.services import mailboxes

    if mailbox_id is not None:
        rt = _rt()
        oid = _org_id(rt, org)
        with session(rt.engine) as s:
            mb = mailboxes.get_mailbox(s, oid, mailbox_id)
            if mb.kind != "imap":
                _fail(f"mailbox {mailbox_id} is not an IMAP mailbox")
            cfg, password = dict(mb.config), rt.box.decrypt(mb.secret_enc) if mb.secret_enc else ""
        host, port, security, username = cfg["host"], int(cfg["port"]), cfg.get("security", "tls"), cfg["username"]
    else:
        if not host or not username:
            _fail("give a mailbox id, or --host and --username (password from THREADLINE_IMAP_PASSWORD)")
        password = _password(f"IMAP password for {username}: ")
    steps = mailboxes.test_imap_connection(host, port, security, username, password)
    for s in steps:
        mark = {True: ("ok", "green"), False: ("FAILED", "red"), None: ("not tried", "dim")}[s["ok"]]
        out.print(Text.assemble(f"{s['step']:8} ", mark, "  ", s["detail"]))
    raise typer.Exit(0 if all(s["ok"] for s in steps) else 1)


# -- rules --------------------------------------------------------------------------------------
@rule_app.command("add")
def rule_add(
    value: Annotated[str, typer.Argument(help="someone@example.com, or a domain (subdomains included)")],
    rep: Annotated[Optional[str], typer.Option("--rep", help="Only this rep's mailboxes.")] = None,
    kind: Annotated[Optional[str], typer.Option(help="address | domain (guessed from the value)")] = None,
    org: OrgOpt = None,
) -> None:
    """Never log this address or domain; what is already stored is removed."""
    from app.services import rules

    rt = _rt()
    actor = _operator(rt, org)
    uid = _user_id(rt, actor.org_id, rep) if rep else None
    result = rules.add_rule(rt, actor, value=value, kind=kind, user_id=uid)
    out.print(
        f"rule {result['id']} ({result['kind']} {result['value']}"
        f"{' for ' + rep if rep else ', whole organisation'}): "
        f"{result['removed_interactions']} stored interactions removed",
        highlight=False,
    )


@rule_app.command("remove")
def rule_remove(rule_id: int, org: OrgOpt = None) -> None:
    """Remove a rule; the next sync reads the affected mailboxes again and brings that mail back."""
    from app.services import rules

    rt = _rt()
    rules.remove_rule(rt, _operator(rt, org), rule_id)
    out.print(f"rule {rule_id} removed; affected mailboxes are re-read at their next sync")


@rule_app.command("list")
def rule_list(
    rep: Annotated[Optional[str], typer.Option("--rep", help="Org-wide rules plus this rep's.")] = None,
    org: OrgOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every rule."""
    from app.services import rules

    rt = _rt()
    oid = _org_id(rt, org)
    with read_only(rt.engine) as conn:
        uid = org_service.user_id_by_email(conn, oid, rep) if rep else None
        rows = rules.list_rules(conn, oid, uid)
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "scope", "kind", "value")
    for r in rows:
        table.add_row(str(r["id"]), r["user_email"] or "organisation", r["kind"], r["value"])
    out.print(table)


# -- privacy --------------------------------------------------------------------------------------
@privacy_app.command("export")
def privacy_export(
    email: str,
    fmt: Annotated[str, typer.Option("--format", help="json | vcard")] = "json",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file.")] = None,
    org: OrgOpt = None,
) -> None:
    """Everything stored about one address (JSON), or their card (vCard 4.0)."""
    from app.services import privacy

    rt = _rt()
    data = privacy.export_person(rt, _operator(rt, org), email, fmt)
    text = privacy.to_vcard(data) if fmt == "vcard" else json.dumps(data, indent=2, default=str)
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"written to {output}")
    else:
        typer.echo(text, nl=fmt != "vcard")


@privacy_app.command("erase")
def privacy_erase(
    email: str,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
    org: OrgOpt = None,
) -> None:
    """Erase a person: contact, addresses, participations, interactions only with them; never synced again."""
    from app.services import privacy

    if not yes:
        _fail("erasing cannot be undone: add --yes", 2)
    rt = _rt()
    r = privacy.erase_person(rt, _operator(rt, org), email, confirm=True)
    out.print(
        f"erased: {r['removed_interactions']} interactions, {r['removed_participations']} participations, "
        f"{r['removed_contacts']} contacts, {r['removed_companies']} companies removed; "
        "later syncs will not bring them back"
    )


# -- audit ----------------------------------------------------------------------------------------
@app.command("audit")
def audit_cmd(
    limit: Annotated[int, typer.Option(help="How many events.")] = 50,
    action: Annotated[Optional[str], typer.Option(help="Only this action (prefix with *: rule.*).")] = None,
    org: OrgOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log, newest first."""
    from app.services import audit

    rt = _rt()
    oid = _org_id(rt, org)
    with read_only(rt.engine) as conn:
        events = audit.list_events(conn, oid, limit=limit, action=action)
    if as_json:
        _print_json(events)
        return
    table = Table("when", "who", "action", "target", "detail")
    for e in events:
        table.add_row(
            f"{e['at']:%Y-%m-%d %H:%M:%S}",
            e["actor"] or str(e["actor_id"]),
            e["action"],
            e["target"],
            json.dumps(e["detail"], default=str)[:120],
        )
    out.print(table)


@app.command("doctor")
def doctor_cmd(
    repair: Annotated[
        bool, typer.Option("--repair", help="Rebuild the contact summaries from the timeline (audited).")
    ] = False,
    org: OrgOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check that what Threadline kept adds up: each mailbox's folders against the server's
    counts, and the contact summaries against a recount (stored and shown in the console).
    Exits 1 while something needs attention."""
    from app.services import mailboxes, reconcile

    rt = _rt()
    oid = _org_id(rt, org)
    check = reconcile.repair_summaries(rt, _operator(rt, org)) if repair else reconcile.check_summaries(rt, oid)
    rows = mailboxes.health_page(rt.engine, oid)
    if as_json:
        _print_json({"summaries": check, "mailboxes": rows})
    else:
        word = "rebuilt and recounted" if repair else "recounted"
        out.print(
            f"contact summaries {word}: {check['disagreeing']} of {check['contacts']} contacts disagree",
            highlight=False,
        )
        for r in rows:
            state = f"needs attention: {r['attention']}" if r["attention"] else r["health"]
            out.print(Text(f"mailbox {r['id']} ({r.get('account') or r['owner']}): {state}"))
            if r["attention"]:
                out.print(Text(f"  fix: {r['attention_fix']}"))
    if check["disagreeing"] or any(r["attention"] for r in rows):
        raise typer.Exit(1)


# -- secrets ----------------------------------------------------------------------------------------
@secrets_app.command("rotate-key")
def secrets_rotate_key() -> None:
    """New encryption key; every stored secret re-encrypted in one transaction; old key kept until done."""
    from app.crypto import SecretError
    from app.services.secrets import rotate

    rt = _rt()
    try:
        counts = rotate(rt)
    except SecretError as exc:
        _fail(str(exc))
    out.print("key rotated; re-encrypted " + ", ".join(f"{n} {k}" for k, n in counts.items()), highlight=False)
