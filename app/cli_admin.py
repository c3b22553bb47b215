"""Administration commands: rules, privacy, audit, key rotation, and the admin side
of organisations, users and mailboxes. Actions are audited with no actor (the CLI)."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from app.cli import _fail, _json_default, _rt, _the_org, app, err, mailbox_app, org_app, out, user_app, OrgOpt  # noqa: F401
from app.db import read_only, session, write_transaction
from app.services import orgs as org_service
from app.services.orgs import Invalid, NotFound

rule_app = typer.Typer(help='"Never log" rules (addresses and domains).', no_args_is_help=True)
privacy_app = typer.Typer(help="Export or erase everything about one person.", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets at rest.", no_args_is_help=True)
app.add_typer(rule_app, name="rule")
app.add_typer(privacy_app, name="privacy")
app.add_typer(secrets_app, name="secrets")
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _org_id(rt, org: int | None) -> int:
    with session(rt.engine) as s:
        return _the_org(s, org).id


@contextmanager
def _writing(rt):
    try:
        with write_transaction(rt.engine) as conn:
            yield conn
    except (Invalid, NotFound) as exc:
        _fail(str(exc))


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
    domain: Annotated[Optional[list[str]], typer.Option("--domain", help="Internal domain (repeatable; replaces the list).")] = None,
    policy: Annotated[Optional[str], typer.Option(help="Contact policy: exchanged | sent | all | none.")] = None,
    visibility: Annotated[Optional[str], typer.Option(help="metadata | subject | snippet.")] = None,
    backfill_days: Annotated[Optional[int], typer.Option(help="How many days of history to import.")] = None,
    sync_interval: Annotated[Optional[int], typer.Option(help="Seconds between syncs of a mailbox.")] = None,
    bulk_detection: Annotated[Optional[bool], typer.Option("--bulk-detection/--no-bulk-detection", help="Keep newsletters and automated mail out.")] = None,
    free_mail: Annotated[Optional[list[str]], typer.Option("--free-mail", help="Free-mail domain (repeatable; replaces the list).")] = None,
    builtin_free_mail: Annotated[bool, typer.Option("--builtin-free-mail", help="Go back to the built-in free-mail list.")] = False,
    calendar_past_days: Annotated[Optional[int], typer.Option(help="Calendar days back.")] = None,
    calendar_future_days: Annotated[Optional[int], typer.Option(help="Calendar days ahead.")] = None,
    entra_tenant: Annotated[Optional[str], typer.Option(help="Microsoft Entra tenant id for sidebar sign-in ('' clears).")] = None,
    org: OrgOpt = None,
) -> None:
    """Change organisation settings (only the options given)."""
    changes = {"name": name, "internal_domains": domain or None, "contact_policy": policy, "visibility": visibility,
               "backfill_days": backfill_days, "sync_interval_seconds": sync_interval,
               "bulk_detection": bulk_detection, "calendar_past_days": calendar_past_days,
               "calendar_future_days": calendar_future_days, "entra_tenant_id": entra_tenant}
    changes = {k: v for k, v in changes.items() if v is not None}
    if builtin_free_mail:
        changes["free_mail_domains"] = None
    elif free_mail:
        changes["free_mail_domains"] = free_mail
    if not changes:
        _fail("nothing to change: see `threadline org set --help`")
    rt = _rt()
    oid = _org_id(rt, org)
    with _writing(rt) as conn:
        data = org_service.update_org(conn, oid, changes, actor_id=None)
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
        table.add_row(str(u["id"]), u["email"], u["name"], u["role"], "yes" if u["active"] else "no",
                      " ".join(a["address"] for a in u["aliases"]),
                      ", ".join(f"{t['id']}: {t['name'] or '-'}" for t in u["tokens"] if t["active"]))
    out.print(table)


def _set_user(email: str, org: int | None, **values) -> str:
    rt = _rt()
    oid = _org_id(rt, org)
    with _writing(rt) as conn:
        uid = org_service.user_id_by_email(conn, oid, email)
        org_service.update_user(conn, oid, uid, actor_id=None, **values)
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
def user_role(email: str, role: Annotated[str, typer.Argument(help="rep | admin")], org: OrgOpt = None) -> None:
    """Make a user a rep or an admin."""
    _set_user(email, org, role=role)
    out.print(f"{email} is now {role}", highlight=False)


@user_app.command("alias")
def user_alias(email: str, alias: str, org: OrgOpt = None) -> None:
    """Add another address of a user."""
    rt = _rt()
    oid = _org_id(rt, org)
    with _writing(rt) as conn:
        org_service.add_alias(conn, oid, org_service.user_id_by_email(conn, oid, email), alias, actor_id=None)
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
    oid = _org_id(rt, org)
    with _writing(rt) as conn:
        if token_id is not None:
            org_service.revoke_token(conn, oid, token_id, actor_id=None)
            out.print(f"token {token_id} revoked")
            return
        uid = org_service.user_id_by_email(conn, oid, all_of)
        ids = [t["id"] for u in org_service.list_users(conn, oid) if u["id"] == uid for t in u["tokens"] if t["active"]]
        for tid in ids:
            org_service.revoke_token(conn, oid, tid, actor_id=None)
    out.print(f"{len(ids)} token(s) of {all_of} revoked", highlight=False)


# -- mailboxes ----------------------------------------------------------------------------------
def _mailbox_op(mailbox_id: int, org: int | None, fn, done: str, **kw) -> dict | None:
    rt = _rt()
    oid = _org_id(rt, org)
    with _writing(rt) as conn:
        result = fn(conn, oid, mailbox_id, actor_id=None, **kw)
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

    _mailbox_op(mailbox_id, org, mailboxes.resync,
                f"mailbox {mailbox_id} will be read again from the start at its next sync")


@mailbox_app.command("remove")
def mailbox_remove(mailbox_id: int, purge: Annotated[bool, typer.Option(
        "--purge", help="Also remove the interactions seen only through this mailbox.")] = False,
        org: OrgOpt = None) -> None:
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
            try:
                mb = mailboxes.get_mailbox(s, oid, mailbox_id)
            except NotFound as exc:
                _fail(str(exc))
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
def rule_add(value: Annotated[str, typer.Argument(help="someone@example.com, or a domain (subdomains included)")],
             rep: Annotated[Optional[str], typer.Option("--rep", help="Only this rep's mailboxes.")] = None,
             kind: Annotated[Optional[str], typer.Option(help="address | domain (guessed from the value)")] = None,
             org: OrgOpt = None) -> None:
    """Never log this address or domain; what is already stored is removed."""
    from app.services import rules

    rt = _rt()
    oid = _org_id(rt, org)
    with _writing(rt) as conn:
        uid = org_service.user_id_by_email(conn, oid, rep) if rep else None
        result = rules.add_rule(conn, oid, kind=kind or rules.guess_kind(value), value=value, user_id=uid,
                                actor_id=None)
    out.print(f"rule {result['id']} ({result['kind']} {result['value']}"
              f"{' for ' + rep if rep else ', whole organisation'}): "
              f"{result['removed_interactions']} stored interactions removed", highlight=False)


@rule_app.command("remove")
def rule_remove(rule_id: int, org: OrgOpt = None) -> None:
    """Remove a rule; the next sync reads the affected mailboxes again and brings that mail back."""
    from app.services import rules

    rt = _rt()
    oid = _org_id(rt, org)
    with _writing(rt) as conn:
        rules.remove_rule(conn, oid, rule_id, actor_id=None)
    out.print(f"rule {rule_id} removed; affected mailboxes are re-read at their next sync")


@rule_app.command("list")
def rule_list(rep: Annotated[Optional[str], typer.Option("--rep", help="Org-wide rules plus this rep's.")] = None,
              org: OrgOpt = None, as_json: JsonOpt = False) -> None:
    """Every rule."""
    from app.services import rules

    rt = _rt()
    oid = _org_id(rt, org)
    with read_only(rt.engine) as conn:
        try:
            uid = org_service.user_id_by_email(conn, oid, rep) if rep else None
        except (Invalid, NotFound) as exc:
            _fail(str(exc))
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
def privacy_export(email: str,
                   fmt: Annotated[str, typer.Option("--format", help="json | vcard")] = "json",
                   output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file.")] = None,
                   org: OrgOpt = None) -> None:
    """Everything stored about one address (JSON), or their card (vCard 4.0)."""
    from app.services import audit, privacy
    from sync.exclusions import person_tag

    if fmt not in ("json", "vcard"):
        _fail("--format must be json or vcard")
    rt = _rt()
    oid = _org_id(rt, org)
    with _writing(rt) as conn:
        data = privacy.export_person(conn, oid, email, rt.box)
        audit.record(conn, oid, None, "person.export", f"person {person_tag(conn, rt.box, oid, data['address'])}",
                     {"format": fmt})
    text = privacy.to_vcard(data) if fmt == "vcard" else json.dumps(data, indent=2, default=str)
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"written to {output}")
    else:
        typer.echo(text, nl=fmt != "vcard")


@privacy_app.command("erase")
def privacy_erase(email: str, yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
                  org: OrgOpt = None) -> None:
    """Erase a person: contact, addresses, participations, interactions only with them; never synced again."""
    from app.services import privacy

    if not yes:
        _fail("erasing cannot be undone: add --yes")
    rt = _rt()
    oid = _org_id(rt, org)
    with _writing(rt) as conn:
        r = privacy.erase_person(conn, oid, email, actor_id=None, box=rt.box)
    out.print(f"erased: {r['removed_interactions']} interactions, {r['removed_participations']} participations, "
              f"{r['removed_contacts']} contacts, {r['removed_companies']} companies removed; "
              "later syncs will not bring them back")


# -- audit ----------------------------------------------------------------------------------------
@app.command("audit")
def audit_cmd(limit: Annotated[int, typer.Option(help="How many events.")] = 50,
              action: Annotated[Optional[str], typer.Option(help="Only this action (prefix with *: rule.*).")] = None,
              org: OrgOpt = None, as_json: JsonOpt = False) -> None:
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
        table.add_row(f"{e['at']:%Y-%m-%d %H:%M:%S}", e["actor"] or str(e["actor_id"]), e["action"], e["target"],
                      json.dumps(e["detail"], default=str)[:120])
    out.print(table)


# -- secrets ----------------------------------------------------------------------------------------
@secrets_app.command("rotate-key")
def secrets_rotate_key() -> None:
    """New encryption key; every stored secret re-encrypted in one transaction; old key kept until done."""
    from app.crypto import SecretError, rotate_key

    rt = _rt()
    try:
        counts = rotate_key(rt.settings, rt.engine)
    except SecretError as exc:
        _fail(str(exc))
    with write_transaction(rt.engine) as conn:
        from sqlalchemy import select

        from app.models import Organisation
        from app.services import audit

        for (oid,) in conn.execute(select(Organisation.__table__.c.id)):
            audit.record(conn, oid, None, "secrets.rotate_key", "secret.key", counts)
    out.print("key rotated; re-encrypted " + ", ".join(f"{n} {k}" for k, n in counts.items()), highlight=False)
