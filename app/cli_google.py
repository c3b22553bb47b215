"""Google Workspace commands: a service account with domain-wide delegation, and Gmail mailboxes."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from app.cli import OrgOpt, _fail, _operator, _rt, err, mailbox_app, out


def _read_key(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        _fail(f"cannot read the key file: {exc.strerror}")
        raise  # _fail exits; for the type checker


def add_google_workspace(
    domain: Annotated[str, typer.Option("--domain", help="The Workspace's primary domain, e.g. ourco.com.")],
    key: Annotated[
        Path, typer.Option("--key", help="The service account's JSON key file (Google Cloud console, Keys).")
    ],
    check_user: Annotated[
        Optional[str],
        typer.Option("--check-user", help="Test the connection for this address first; nothing is saved if it fails."),
    ] = None,
    imap_host: Annotated[Optional[str], typer.Option("--imap-host", hidden=True)] = None,
    imap_port: Annotated[Optional[int], typer.Option("--imap-port", hidden=True)] = None,
    imap_security: Annotated[Optional[str], typer.Option("--imap-security", hidden=True)] = None,
    calendar_url: Annotated[Optional[str], typer.Option("--calendar-url", hidden=True)] = None,
    org: OrgOpt = None,
) -> None:
    """Connect a Google Workspace through a service account with domain-wide delegation.

    The key is read from its file and stored encrypted; delete the file afterwards.
    Running it again with a new key of the same service account replaces the key."""
    from app.services import google

    key_json = _read_key(key)
    rt = _rt()
    ws = google.add_workspace(
        rt,
        _operator(rt, org),
        key_json=key_json,
        domain=domain,
        check_user=check_user,
        imap_host=imap_host,
        imap_port=imap_port,
        imap_security=imap_security,
        calendar_url=calendar_url,
    )
    out.print(
        f"Google Workspace {ws['domain']} ready (service account {ws['client_email']}, key {ws['key_id'][:8]}…); "
        f"add reps with `threadline mailbox add-google --all-reps`",
        highlight=False,
    )


def add_google(
    owner: Annotated[Optional[str], typer.Option(help="The rep whose Gmail this is.")] = None,
    all_reps: Annotated[bool, typer.Option("--all-reps", help="Every enabled rep of the Workspace's domain.")] = False,
    workspace: Annotated[
        Optional[str], typer.Option("--workspace", help="The Workspace's domain (needed only when several).")
    ] = None,
    user: Annotated[
        Optional[str], typer.Option("--user", help="The Gmail address if it differs from the rep's address.")
    ] = None,
    client_id: Annotated[
        Optional[str],
        typer.Option(
            "--client-id",
            help="The rep signs in themselves through this Desktop OAuth client (no Workspace admin needed); "
            "its secret from THREADLINE_GOOGLE_CLIENT_SECRET or a prompt.",
        ),
    ] = None,
    auth_uri: Annotated[Optional[str], typer.Option("--auth-uri", hidden=True)] = None,
    token_uri: Annotated[Optional[str], typer.Option("--token-uri", hidden=True)] = None,
    imap_host: Annotated[Optional[str], typer.Option("--imap-host", hidden=True)] = None,
    imap_port: Annotated[Optional[int], typer.Option("--imap-port", hidden=True)] = None,
    imap_security: Annotated[Optional[str], typer.Option("--imap-security", hidden=True)] = None,
    calendar_url: Annotated[Optional[str], typer.Option("--calendar-url", hidden=True)] = None,
    org: OrgOpt = None,
) -> None:
    """Add reps' Gmail: read through the Workspace's service account (no sign-in by the rep), or
    with --client-id signed in by the rep themselves (Google's installed-app flow with PKCE)."""
    from app.services import google

    if not owner and not all_reps:
        _fail("pass --owner REP or --all-reps")
    if client_id is not None:
        if all_reps or not owner:
            _fail("--client-id needs --owner REP: each rep signs in for their own mailbox")
        _rep_signs_in(
            owner=owner or "",
            client_id=client_id,
            user=user,
            org=org,
            auth_uri=auth_uri,
            token_uri=token_uri,
            imap_host=imap_host,
            imap_port=imap_port,
            imap_security=imap_security,
            calendar_url=calendar_url,
        )
        return
    rt = _rt()
    result = google.add_workspace_mailboxes(
        rt, _operator(rt, org), workspace=workspace, owner=owner, all_reps=all_reps, user=user
    )
    for mb in result["added"]:
        out.print(f"mailbox {mb['id']} added for {mb['user']} through {mb['workspace']}", highlight=False)
    if not result["added"]:
        out.print("every enabled rep of the domain already has a Gmail mailbox")
    if result["outside"]:
        out.print(f"not in the Workspace's domain, left out: {', '.join(result['outside'])}", highlight=False)


SECRET_ENV = "THREADLINE_GOOGLE_CLIENT_SECRET"


def _client_secret() -> str:
    """The Desktop client's secret: the environment, else a prompt (may be left empty), never argv."""
    secret = os.environ.get(SECRET_ENV)
    if secret is None and sys.stdin.isatty():
        secret = getpass.getpass("client secret of the Desktop OAuth client (Enter if it has none): ")
    return (secret or "").strip()


def _rep_signs_in(*, owner: str, client_id: str, user: str | None, org, **overrides) -> None:
    """Print the consent URL, read back the address the browser went to, store the sign-in."""
    from app.services import google

    secret = _client_secret()
    rt = _rt()
    actor = _operator(rt, org)
    started = google.start_rep_sign_in(
        rt, actor, owner=owner, client_id=client_id, client_secret=secret, user=user, **overrides
    )
    err.print(
        f"The rep ({started['user']}) opens this address in a browser, signs in to their Google account and "
        f"allows access:\n\n{started['url']}\n\nThe browser then goes to an address starting with "
        f"{started['redirect_uri']} that does not open: copy that whole address from the address bar and "
        f"paste it here (within {started['expires_in'] // 60} minutes).",
        highlight=False,
        soft_wrap=True,
    )
    err.print("Redirected address: ", end="", highlight=False)
    redirected = sys.stdin.readline().strip()
    if not redirected:
        _fail("nothing pasted: nothing was saved")
    mb = google.finish_rep_sign_in(rt, actor, state=started["state"], redirected=redirected)
    verb = "reconnected" if mb.get("reconnected") else "added"
    out.print(
        f"mailbox {mb['id']} {verb} for {started['owner']} (Gmail {mb['user']}, the rep's own Google sign-in); "
        f"run `threadline sync --once --mailbox {mb['id']}`",
        highlight=False,
    )


def test_google_workspace(
    user: Annotated[str, typer.Option("--user", help="The address to test with (a rep of the domain).")],
    workspace: Annotated[Optional[str], typer.Argument(help="The Workspace's domain or number.")] = None,
    org: OrgOpt = None,
) -> None:
    """Test the stored service account for one address: key, token, delegation, scopes, user."""
    from app.services import google

    rt = _rt()
    actor = _operator(rt, org)
    ref = workspace or next(iter(google.list_workspaces(rt.engine, actor.org_id)), {}).get("domain", "")
    steps = google.check_workspace(rt, actor, ref, user)
    for step in steps:
        mark = {True: "ok", False: "FAILED", None: "not tested"}[step["ok"]]
        out.print(f"{step['step']:<10} {mark:<10} {step['detail']}", highlight=False)
        if step["fix"]:
            out.print(f"{'':<21} {step['fix']}", highlight=False)
    if any(s["ok"] is False for s in steps):
        raise typer.Exit(1)


def list_google_workspaces(org: OrgOpt = None) -> None:
    """The connected Google Workspaces with how many mailboxes read through each (never their keys)."""
    from app.services import google

    rt = _rt()
    rows = google.list_workspaces(rt.engine, _operator(rt, org).org_id)
    if not rows:
        out.print("no Google Workspace connected")
    for ws in rows:
        out.print(
            f"{ws['id']}  {ws['domain']}  {ws['client_email']}  client id {ws['client_id']}  "
            f"{ws['mailboxes']} mailbox(es)",
            highlight=False,
        )


def remove_google_workspace(
    workspace: Annotated[str, typer.Argument(help="The Workspace's domain or number.")], org: OrgOpt = None
) -> None:
    """Forget a Workspace's service account key (refused while Gmail mailboxes read through it)."""
    from app.services import google

    rt = _rt()
    facts = google.remove_workspace(rt, _operator(rt, org), workspace)
    out.print(
        f"Google Workspace {facts['domain']} removed with its key; delete the key in the Google Cloud console "
        "and the client id from domain-wide delegation too",
        highlight=False,
    )


def _register() -> None:
    """Register on app.cli's mailbox group (and on __main__'s copy under `python -m app.cli`)."""
    targets = [mailbox_app]
    main = sys.modules.get("__main__")
    main_group = getattr(main, "mailbox_app", None)
    if (
        main_group is not None
        and main_group is not mailbox_app
        and Path(getattr(main, "__file__", "") or "").name == "cli.py"
    ):
        targets.append(main_group)
    for group in targets:
        group.command("add-google-workspace")(add_google_workspace)
        group.command("add-google")(add_google)
        group.command("test-google-workspace")(test_google_workspace)
        group.command("list-google-workspaces")(list_google_workspaces)
        group.command("remove-google-workspace")(remove_google_workspace)


_register()
