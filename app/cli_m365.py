"""Microsoft 365 commands: tenant apps and Graph mailboxes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from app.cli import OrgOpt, _fail, _operator, _password, _rt, err, mailbox_app, out
from app.db import session
from app.services import orgs as org_service

SECRET_ENV = "THREADLINE_M365_CLIENT_SECRET"
AuthorityOpt = Annotated[
    Optional[str],
    typer.Option(
        "--authority", help="Sign-in authority URL (national clouds); default https://login.microsoftonline.com/TENANT."
    ),
]
GraphUrlOpt = Annotated[
    Optional[str],
    typer.Option("--graph-url", help="Graph endpoint (national clouds); default https://graph.microsoft.com/v1.0."),
]


def add_m365_tenant(
    tenant_id: Annotated[str, typer.Option("--tenant-id", help="Directory (tenant) id or domain.")],
    client_id: Annotated[str, typer.Option("--client-id", help="Application (client) id of the app registration.")],
    certificate: Annotated[
        Optional[Path],
        typer.Option("--certificate", help="PEM file with the certificate's private key (instead of a client secret)."),
    ] = None,
    thumbprint: Annotated[Optional[str], typer.Option("--thumbprint", help="The certificate's thumbprint.")] = None,
    authority: AuthorityOpt = None,
    graph_url: GraphUrlOpt = None,
    check: Annotated[bool, typer.Option(help="Fetch a token now to prove the credential works.")] = True,
    org: OrgOpt = None,
) -> None:
    """Connect a Microsoft 365 tenant with an app registration (application permissions).

    The client secret comes from THREADLINE_M365_CLIENT_SECRET or a prompt, never argv.
    Running it again for the same tenant replaces the credential (e.g. a rotated secret)."""
    from app.services import m365

    secret = pem = None
    if certificate is not None:
        try:
            pem = certificate.read_text()
        except OSError as exc:
            _fail(f"cannot read the certificate file: {exc.strerror}")
    else:
        secret = _password(f"client secret of app {client_id}: ", SECRET_ENV, " (or pass --certificate)")
    rt = _rt()
    t = m365.add_tenant(
        rt,
        _operator(rt, org),
        tenant_id=tenant_id,
        client_id=client_id,
        secret=secret,
        certificate_pem=pem,
        thumbprint=thumbprint,
        authority=authority,
        graph_url=graph_url,
        check=check,
    )
    out.print(
        f"tenant {t['id']} ready: {t['tenant_id']} (app {t['client_id']}, {t['auth_kind']}); add "
        f"reps with `threadline mailbox add-m365 --owner REP --tenant {t['tenant_id']}` or --all-reps",
        highlight=False,
    )


def add_m365(
    owner: Annotated[Optional[str], typer.Option(help="The rep whose mailbox this is.")] = None,
    tenant: Annotated[
        Optional[str],
        typer.Option("--tenant", help="Use this tenant app (tenant id or number): no sign-in by the rep."),
    ] = None,
    all_reps: Annotated[bool, typer.Option("--all-reps", help="With --tenant: every enabled rep.")] = False,
    user: Annotated[
        Optional[str],
        typer.Option("--user", help="With --tenant: the mailbox address if it differs from the rep's address."),
    ] = None,
    client_id: Annotated[
        Optional[str],
        typer.Option("--client-id", help="Without --tenant: the public client app the rep signs in to (device code)."),
    ] = None,
    tenant_id: Annotated[
        str, typer.Option("--tenant-id", help="Without --tenant: the rep's tenant.")
    ] = "organizations",
    imap: Annotated[
        bool,
        typer.Option("--imap", help="Read mail over Exchange Online IMAP (XOAUTH2) instead of Graph (no calendar)."),
    ] = False,
    authority: AuthorityOpt = None,
    graph_url: GraphUrlOpt = None,
    org: OrgOpt = None,
) -> None:
    """Add a rep's Microsoft 365 mailbox: tenant-wide (--tenant) or by the rep signing in (--client-id)."""
    from app.services import m365

    if not owner and not all_reps:
        _fail("pass --owner REP (or --tenant ... --all-reps)")
    if tenant is None and not client_id:
        _fail("pass --tenant TENANT (tenant-wide app) or --client-id APP (the rep signs in)")
    rt = _rt()
    if tenant is not None:
        added = m365.add_tenant_mailboxes(
            rt, _operator(rt, org), tenant=tenant, owner=owner, all_reps=all_reps, user=user, imap=imap
        )
        for mb in added:
            out.print(f"mailbox {mb['id']} added for {mb['user']} through tenant {mb['tenant']}", highlight=False)
        if not added:
            out.print("every enabled rep already has a mailbox through this tenant")
        return
    if all_reps:
        _fail("--all-reps needs --tenant: each rep signs in for their own mailbox")
    actor = _operator(rt, org)
    with session(rt.engine) as s:
        org_service.find_user(s, actor.org_id, owner)  # a wrong owner is refused before the sign-in
    username, cache = m365.device_sign_in(
        client_id,
        tenant_id,
        lambda msg: err.print(msg, highlight=False),
        authority=authority,
        imap=imap,
        graph_url=graph_url,
    )
    mb = m365.add_delegated_mailbox(
        rt,
        actor,
        owner=owner,
        client_id=client_id,
        tenant_id=tenant_id,
        username=username,
        token_cache=cache,
        authority=authority,
        graph_url=graph_url,
        imap=imap,
    )
    out.print(
        f"mailbox {mb['id']} connected for {owner} (signed in as {username}); run "
        f"`threadline sync --once --mailbox {mb['id']}`",
        highlight=False,
    )


def list_m365_tenants(org: OrgOpt = None) -> None:
    """The connected tenant apps, with how many mailboxes read through each (never their credentials)."""
    from app.services import m365

    rt = _rt()
    tenants = m365.tenants(rt.engine, _operator(rt, org).org_id)
    if not tenants:
        out.print("no Microsoft 365 tenant connected")
    for t in tenants:
        out.print(
            f"{t['id']}  {t['tenant_id']}  app {t['client_id']}  {t['auth_kind']}  {t['mailboxes']} mailbox(es)",
            highlight=False,
        )


def remove_m365_tenant(
    tenant: Annotated[
        str, typer.Argument(help="The tenant id, or its number in `threadline mailbox list-m365-tenants`.")
    ],
    org: OrgOpt = None,
) -> None:
    """Forget a tenant app and its stored credential (refused while mailboxes read through it)."""
    from app.services import m365

    rt = _rt()
    facts = m365.remove_tenant(rt, _operator(rt, org), tenant)
    out.print(
        f"tenant {facts['tenant_id']} removed with its credential; delete the app registration (or its "
        "secret) in Microsoft Entra too",
        highlight=False,
    )


def _register() -> None:
    """Register on app.cli's mailbox group; under `python -m app.cli` that module is
    __main__ and `app.cli` is a second copy, so register on both."""
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
        group.command("add-m365-tenant")(add_m365_tenant)
        group.command("add-m365")(add_m365)
        group.command("list-m365-tenants")(list_m365_tenants)
        group.command("remove-m365-tenant")(remove_m365_tenant)


_register()
