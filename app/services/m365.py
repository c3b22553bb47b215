"""Microsoft 365: tenant app registrations and Graph (or Exchange IMAP) mailboxes.

Two ways to connect a rep's mailbox:
- tenant-wide: an Entra app with application permissions (Mail.Read,
  Calendars.Read, admin consent) reads every enabled rep's mailbox; the app's
  client secret or certificate is stored encrypted on the M365Tenant row;
- delegated: the rep signs in once with the device-code flow; the msal token
  cache (refresh token) is the mailbox's encrypted secret.
"""

from __future__ import annotations

import json
from typing import Callable

from sqlmodel import Session, select

from app.models import M365Tenant, Mailbox, User, UserAlias
from app.services import audit
from app.services.actor import Actor, changing_session
from app.services.errors import Conflict, Invalid, NotFound
from app.services.orgs import clean_address, find_user
from connectors.base import ConnectorError
from connectors.m365auth import (
    IMAP_USER_SCOPES,
    AppTokenSource,
    finish_device_flow,
    graph_scopes,
    start_device_flow,
)
from sync.fixes import explain_error

EXCHANGE_IMAP = {"host": "outlook.office365.com", "port": 993, "security": "tls"}


def _clean_url(value: str | None, what: str) -> str | None:
    if not value:
        return None
    value = value.strip().rstrip("/")
    if not value.startswith("https://"):
        raise Invalid(f"the {what} must be an https:// URL", field=what.replace(" ", "_").lower())
    return value


def add_tenant(
    rt,
    actor: Actor,
    *,
    tenant_id: str,
    client_id: str,
    secret: str | None = None,
    certificate_pem: str | None = None,
    thumbprint: str | None = None,
    authority: str | None = None,
    graph_url: str | None = None,
    check: bool = True,
) -> dict:
    """Add (or update) a tenant app; with check, a token is fetched first so a wrong
    secret, tenant or missing consent is reported now rather than at the first sync."""
    tenant_id, client_id = tenant_id.strip(), client_id.strip()
    if not tenant_id or not client_id:
        raise Invalid(
            "the tenant id and the client (application) id are required",
            field="client_id" if tenant_id else "tenant_id",
        )
    if certificate_pem:
        if not thumbprint:
            raise Invalid(
                "a certificate needs its thumbprint (--thumbprint, hex SHA-1 as Entra shows it)", field="thumbprint"
            )
        auth_kind = "certificate"
        credential_text = json.dumps({"private_key": certificate_pem, "thumbprint": thumbprint.replace(":", "")})
        credential = json.loads(credential_text)
    elif secret:
        auth_kind, credential_text, credential = "secret", secret, secret
    else:
        raise Invalid("a client secret or a certificate is required", field="client_secret")
    config = {
        k: v
        for k, v in (
            ("authority", _clean_url(authority, "authority")),
            ("graph_url", _clean_url(graph_url, "Graph URL")),
        )
        if v
    }
    if check:
        try:
            AppTokenSource(
                tenant_id,
                client_id,
                credential,
                authority=config.get("authority"),
                scopes=graph_scopes(config.get("graph_url"), delegated=False),
            ).token(force_refresh=True)
        except ConnectorError as exc:
            raise Invalid(
                f"Microsoft Entra did not give the app a token: {explain_error(exc, 'm365')}", field="client_secret"
            ) from exc
    with changing_session(rt.engine, actor) as session:
        tenant = session.exec(
            select(M365Tenant).where(M365Tenant.org_id == actor.org_id, M365Tenant.tenant_id == tenant_id)
        ).first()
        if tenant is None:
            tenant = M365Tenant(org_id=actor.org_id, tenant_id=tenant_id, client_id=client_id)
        tenant.client_id, tenant.auth_kind, tenant.config = client_id, auth_kind, config
        tenant.secret_enc = rt.box.encrypt(credential_text)
        session.add(tenant)
        session.flush()
        audit.record(
            session.connection(),
            actor.org_id,
            actor.user_id,
            "m365.tenant_add",
            f"m365 tenant {tenant.id} ({tenant.tenant_id})",
            {"client_id": tenant.client_id, "auth_kind": tenant.auth_kind, "checked": check},
        )
        return describe_tenant(tenant)


def find_tenant(session: Session, org_id: int, ref: str) -> M365Tenant:
    ref = str(ref).strip()
    query = select(M365Tenant).where(M365Tenant.org_id == org_id)
    found = session.exec(query.where(M365Tenant.tenant_id == ref)).first()
    if found is None and ref.isdigit():
        found = session.exec(query.where(M365Tenant.id == int(ref))).first()
    if found is None:
        raise NotFound(f"no Microsoft 365 tenant {ref!r}: add it with `threadline mailbox add-m365-tenant`")
    return found


def remove_tenant(rt, actor: Actor, ref: str) -> dict:
    """Forget a tenant app and its credential. Refused while mailboxes still read
    through it: removing those first is a decision about their timeline (keep or purge).
    The app registration itself lives in Microsoft Entra: delete it or its secret there too."""
    with changing_session(rt.engine, actor) as session:
        tenant = find_tenant(session, actor.org_id, ref)
        using = session.exec(
            select(Mailbox.id)
            .where(Mailbox.org_id == actor.org_id, Mailbox.tenant_ref == tenant.id)
            .order_by(Mailbox.id)
        ).all()
        if using:
            ids = ", ".join(str(i) for i in using)
            raise Conflict(
                f"tenant {tenant.tenant_id} still has {len(using)} mailbox(es) ({ids}): remove them "
                "first (`threadline mailbox remove ID`, or Remove on each mailbox's page)"
            )
        facts = describe_tenant(tenant)
        session.delete(tenant)
        session.flush()
        audit.record(
            session.connection(),
            actor.org_id,
            actor.user_id,
            "m365.tenant_remove",
            f"m365 tenant {facts['id']} ({facts['tenant_id']})",
            {"client_id": facts["client_id"]},
        )
        return facts


def list_tenants(session: Session, org_id: int) -> list[dict]:
    """The organisation's tenant apps with their mailbox counts (never the credential)."""
    tenants = session.exec(select(M365Tenant).where(M365Tenant.org_id == org_id).order_by(M365Tenant.id)).all()
    out = []
    for t in tenants:
        count = len(session.exec(select(Mailbox.id).where(Mailbox.org_id == org_id, Mailbox.tenant_ref == t.id)).all())
        out.append(describe_tenant(t) | {"mailboxes": count})
    return out


def tenants(engine, org_id: int) -> list[dict]:
    with Session(engine) as s:
        return list_tenants(s, org_id)


def describe_tenant(tenant: M365Tenant) -> dict:
    config = tenant.config or {}
    return {
        "id": tenant.id,
        "tenant_id": tenant.tenant_id,
        "client_id": tenant.client_id,
        "auth_kind": tenant.auth_kind,
        "authority": config.get("authority"),
        "graph_url": config.get("graph_url"),
        "created_at": tenant.created_at,
    }


def mailbox_facts(session: Session, mailbox: Mailbox) -> dict:
    """What identifies a Microsoft 365 mailbox on the admin pages: the tenant, the
    mailbox address, app or delegated access, Graph or IMAP (never a secret)."""
    config = mailbox.config or {}
    tenant = session.get(M365Tenant, mailbox.tenant_ref) if mailbox.tenant_ref else None
    if tenant is not None and tenant.org_id != mailbox.org_id:
        tenant = None
    return {
        "tenant": tenant.tenant_id if tenant else config.get("tenant_id"),
        "tenant_ref": tenant.id if tenant else None,
        "user": config.get("user"),
        "mode": config.get("mode", "app"),
        "protocol": config.get("protocol", "graph"),
    }


def _existing(session: Session, owner: User, *, tenant_ref: int | None, protocol: str) -> Mailbox | None:
    for mb in session.exec(select(Mailbox).where(Mailbox.owner_id == owner.id, Mailbox.kind == "m365")).all():
        if (mb.config or {}).get("protocol", "graph") == protocol and mb.tenant_ref == tenant_ref:
            return mb
    return None


def _new_tenant_mailbox(
    session: Session, org_id: int, rep: User, tenant: M365Tenant, *, user: str | None = None, imap: bool = False
) -> Mailbox:
    """A new tenant-wide mailbox for `rep` (the caller has checked they have none through this tenant)."""
    if not rep.active:
        raise Conflict(f"{rep.email} is deactivated", field="owner")
    protocol = "imap" if imap else "graph"
    config: dict = {"mode": "app", "protocol": protocol, "user": clean_address(user or rep.email, "user")}
    if imap:
        config.update(EXCHANGE_IMAP, username=config["user"])
    mailbox = Mailbox(org_id=org_id, owner_id=rep.id, kind="m365", tenant_ref=tenant.id, config=config)
    session.add(mailbox)
    session.flush()
    return mailbox


def add_tenant_mailboxes(
    rt,
    actor: Actor,
    *,
    tenant: str,
    owner: str | None = None,
    all_reps: bool = False,
    user: str | None = None,
    imap: bool = False,
) -> list[dict]:
    """Mailboxes read with a tenant app's application permissions: one rep's, or (all_reps)
    one for every enabled user who has none through this tenant yet. One audit record
    lists what was added."""
    from app.services.mailboxes import describe, with_sources

    if not all_reps and not (owner or "").strip():
        raise Invalid("give the rep (owner) or choose all reps", field="owner")
    with changing_session(rt.engine, actor) as session:
        # The tenant and the rep are values in the request: unknown ones make it invalid.
        try:
            t = find_tenant(session, actor.org_id, tenant)
        except NotFound as exc:
            raise Invalid(exc.reason, field="tenant") from None
        if all_reps:
            # Who already reads Graph mail through this tenant: one query, not one per rep.
            have = {
                mb.owner_id
                for mb in session.exec(
                    select(Mailbox).where(Mailbox.org_id == actor.org_id, Mailbox.tenant_ref == t.id)
                )
                if (mb.config or {}).get("protocol", "graph") == "graph"
            }
            reps = session.exec(
                select(User).where(User.org_id == actor.org_id, User.active.is_(True)).order_by(User.id)
            ).all()
            added = [_new_tenant_mailbox(session, actor.org_id, rep, t) for rep in reps if rep.id not in have]
        else:
            try:
                rep = find_user(session, actor.org_id, owner)
            except NotFound as exc:
                raise Invalid(exc.reason, field="owner") from None
            if _existing(session, rep, tenant_ref=t.id, protocol="imap" if imap else "graph"):
                raise Conflict(f"{rep.email} already has a Microsoft 365 mailbox through this tenant", field="owner")
            added = [_new_tenant_mailbox(session, actor.org_id, rep, t, user=user, imap=imap)]
        rows = with_sources(session, actor.org_id, [describe(session, mb) for mb in added])
        audit.record(
            session.connection(),
            actor.org_id,
            actor.user_id,
            "mailbox.add",
            f"m365 tenant {t.tenant_id}: " + ", ".join(f"mailbox {r['id']} ({r['user']})" for r in rows),
            {
                "tenant": t.tenant_id,
                "all_reps": all_reps,
                "mailboxes": [r["id"] for r in rows],
                "protocol": "imap" if imap else "graph",
            },
        )
        return rows


def device_sign_in(
    client_id: str,
    tenant_id: str,
    show: Callable[[str], None],
    *,
    authority: str | None = None,
    imap: bool = False,
    graph_url: str | None = None,
) -> tuple[str, str]:
    """Run the device-code flow: `show` gets the sign-in instructions; returns
    (signed-in username, serialized token cache)."""
    try:
        app, flow, cache = start_device_flow(
            client_id,
            tenant_id,
            authority=_clean_url(authority, "authority"),
            scopes=IMAP_USER_SCOPES if imap else graph_scopes(graph_url, delegated=True),
        )
        show(flow["message"])
        return finish_device_flow(app, flow, cache)
    except ConnectorError as exc:
        raise Invalid(f"Microsoft sign-in failed: {explain_error(exc, 'm365')}") from exc
    except ValueError as exc:  # msal: unusable authority
        raise Invalid(f"Microsoft sign-in failed: {exc}") from exc


def add_delegated_mailbox(
    rt,
    actor: Actor,
    *,
    owner: str,
    client_id: str,
    tenant_id: str,
    username: str,
    token_cache: str,
    authority: str | None = None,
    graph_url: str | None = None,
    imap: bool = False,
) -> dict:
    """A rep's own sign-in (delegated Mail.Read + Calendars.Read, or IMAP); signing in again
    for the same rep reconnects their mailbox and keeps its folders and cursors."""
    with changing_session(rt.engine, actor) as session:
        return _store_delegated(
            session,
            rt.box,
            actor,
            owner=owner,
            client_id=client_id,
            tenant_id=tenant_id,
            username=username,
            token_cache=token_cache,
            authority=authority,
            graph_url=graph_url,
            imap=imap,
        )


def _store_delegated(
    session: Session,
    box,
    actor: Actor,
    *,
    owner: str,
    client_id: str,
    tenant_id: str,
    username: str,
    token_cache: str,
    authority: str | None,
    graph_url: str | None,
    imap: bool,
) -> dict:
    from app.services.mailboxes import describe, with_sources

    rep = find_user(session, actor.org_id, owner)
    signed_in = clean_address(username) if username else ""
    aliases = {a.lower() for a in session.exec(select(UserAlias.address).where(UserAlias.user_id == rep.id))}
    if signed_in and signed_in != rep.email and signed_in not in aliases:
        raise Invalid(
            f"the sign-in was for {signed_in}, not {rep.email}: sign in with the rep's own account "
            f"(or add {signed_in} as an alias of {rep.email})",
            field="owner",
        )
    protocol = "imap" if imap else "graph"
    config: dict = {
        "mode": "delegated",
        "protocol": protocol,
        "client_id": client_id.strip(),
        "tenant_id": tenant_id.strip() or "organizations",
        "user": signed_in or rep.email,
    }
    for key, value in (
        ("authority", _clean_url(authority, "authority")),
        ("graph_url", _clean_url(graph_url, "Graph URL")),
    ):
        if value:
            config[key] = value
    if imap:
        config.update(EXCHANGE_IMAP, username=config["user"])
    mailbox = _existing(session, rep, tenant_ref=None, protocol=protocol)
    reconnect = mailbox is not None
    if mailbox is None:
        mailbox = Mailbox(org_id=actor.org_id, owner_id=rep.id, kind="m365")
    else:  # reconnecting: keep the folders and cursors, replace the sign-in
        mailbox.failure_count = 0
    mailbox.config, mailbox.secret_enc = config, box.encrypt(token_cache)
    session.add(mailbox)
    session.flush()
    audit.record(
        session.connection(),
        actor.org_id,
        actor.user_id,
        "mailbox.reconnect" if reconnect else "mailbox.add",
        f"mailbox {mailbox.id} (m365 {config['user']})",
        {"mode": "delegated", "protocol": protocol, "owner": rep.email},
    )
    return with_sources(session, actor.org_id, [describe(session, mailbox)])[0]
