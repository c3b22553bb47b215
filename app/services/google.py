"""Google Workspace: service accounts with domain-wide delegation, and the Gmail
mailboxes read through them (IMAP with XOAUTH2, connectors/gmail.py).

Set up once by a Workspace super admin: a service account in Google Cloud, its
numeric client id authorised in the Admin console for domain-wide delegation
with https://www.googleapis.com/auth/gmail.imap_admin, and its JSON key given to Threadline. The key is
stored encrypted on the GoogleWorkspace row (as a Microsoft 365 tenant app's
secret is) and is never shown again; every rep's Gmail is then added by address.
"""

from __future__ import annotations

import json

from sqlmodel import Session, select

from app.models import GoogleWorkspace, Mailbox, User
from app.services import audit
from app.services.actor import Actor, changing_session
from app.services.errors import Conflict, Invalid, NotFound
from app.services.orgs import clean_address, find_user
from connectors.base import ConnectorError
from connectors.googleauth import check, parse_key
from sync.fixes import explain, fix_text

GMAIL_IMAP = {"host": "imap.gmail.com", "port": 993, "security": "tls"}
SOURCE = "gmail"
# Which form field a failed step of the connection test points at.
_STEP_FIELD = {"key": "key", "token": "key", "delegation": "key", "scopes": "key", "user": "check_user"}


def _clean_domain(value: str | None) -> str:
    domain = (value or "").strip().lower().lstrip("@")
    if not domain or "." not in domain or "@" in domain or " " in domain:
        raise Invalid("give the Workspace's primary domain, such as ourco.com", field="domain")
    return domain


def _imap_override(host: str | None, port: int | None, security: str | None) -> dict:
    if not host:
        return {}
    if security not in (None, "tls", "starttls", "none"):
        raise Invalid("security must be tls, starttls or none", field="imap_security")
    return {"imap_host": host.strip(), "imap_port": int(port or 993), "imap_security": security or "tls"}


def connection_test(key_json: str, user: str) -> list[dict]:
    """The connection test's steps (key, token, delegation, scopes, user), each with
    ok true/false/None (not reached), what was found, and for a failure the fix in words."""
    steps = check(key_json, clean_address(user, "check_user"))
    for step in steps:
        step["fix"] = fix_text(None, SOURCE, step["fix"]) if step["ok"] is False and step["fix"] else None
    return steps


def _refuse_unless_passed(steps: list[dict]) -> None:
    failed = next((s for s in steps if s["ok"] is False), None)
    if failed is not None:
        detail = f"{failed['detail'].rstrip('.')}. {failed['fix'] or ''}".strip()
        raise Invalid(
            f"nothing was saved: the connection test failed at the {failed['step']} step: {detail}",
            field=_STEP_FIELD[failed["step"]],
            facts={"steps": steps},
        )


def add_workspace(
    rt,
    actor: Actor,
    *,
    key_json: str,
    domain: str,
    check_user: str | None = None,
    imap_host: str | None = None,
    imap_port: int | None = None,
    imap_security: str | None = None,
    calendar_url: str | None = None,
) -> dict:
    """Add (or replace the key of) a Workspace's service account. With check_user, the
    connection test runs first for that address and a failure saves nothing.
    imap_* and calendar_url point Gmail and Google Calendar elsewhere (tests, proxies)."""
    domain = _clean_domain(domain)
    try:
        _, key = parse_key(key_json)
    except ConnectorError as exc:
        raise Invalid(explain(str(exc), exc.kind, SOURCE, exc.fix), field="key") from None
    if check_user:
        _refuse_unless_passed(connection_test(key_json, check_user))
    with changing_session(rt.engine, actor) as session:
        ws = session.exec(
            select(GoogleWorkspace).where(
                GoogleWorkspace.org_id == actor.org_id, GoogleWorkspace.client_email == key.client_email
            )
        ).first()
        replaced = ws is not None
        if ws is None:
            ws = GoogleWorkspace(
                org_id=actor.org_id,
                domain=domain,
                client_email=key.client_email,
                client_id=key.client_id,
                key_id=key.key_id,
                secret_enc="",
            )
        ws.domain, ws.client_id, ws.key_id = domain, key.client_id, key.key_id
        override = _imap_override(imap_host, imap_port, imap_security)
        if calendar_url:
            override["calendar_url"] = calendar_url.strip()
        ws.config = override or dict(ws.config or {})
        ws.secret_enc = rt.box.encrypt(key_json)
        session.add(ws)
        session.flush()
        audit.record(
            session.connection(),
            actor.org_id,
            actor.user_id,
            "google.workspace_replace_key" if replaced else "google.workspace_add",
            f"google workspace {ws.id} ({ws.domain})",
            {"client_email": ws.client_email, "key_id": ws.key_id, "checked_with": check_user or None},
        )
        return describe_workspace(ws)


def describe_workspace(ws: GoogleWorkspace) -> dict:
    """What identifies a Workspace's service account (never its key)."""
    return {
        "id": ws.id,
        "domain": ws.domain,
        "client_email": ws.client_email,
        "client_id": ws.client_id,
        "key_id": ws.key_id,
        "created_at": ws.created_at,
    }


def find_workspace(session: Session, org_id: int, ref: str) -> GoogleWorkspace:
    ref = str(ref).strip().lower()
    query = select(GoogleWorkspace).where(GoogleWorkspace.org_id == org_id).order_by(GoogleWorkspace.id)
    found = session.exec(query.where(GoogleWorkspace.domain == ref)).first()
    if found is None:
        found = session.exec(query.where(GoogleWorkspace.client_email == ref)).first()
    if found is None and ref.isdigit():
        found = session.exec(query.where(GoogleWorkspace.id == int(ref))).first()
    if found is None:
        raise NotFound(f"no Google Workspace {ref!r}: add it with `threadline mailbox add-google-workspace`")
    return found


def _the_workspace(session: Session, org_id: int, ref: str | None) -> GoogleWorkspace:
    """The Workspace named, or the organisation's only one when none is named."""
    if ref:
        try:
            return find_workspace(session, org_id, ref)
        except NotFound as exc:
            raise Invalid(exc.reason, field="workspace") from None
    found = session.exec(select(GoogleWorkspace).where(GoogleWorkspace.org_id == org_id).limit(2)).all()
    if len(found) != 1:
        raise Invalid(
            "no Google Workspace is connected: add one with `threadline mailbox add-google-workspace`"
            if not found
            else "more than one Google Workspace is connected: name one (--workspace DOMAIN)",
            field="workspace",
        )
    return found[0]


def _mailboxes_of(session: Session, org_id: int, ws_id: int) -> list[Mailbox]:
    rows = session.exec(
        select(Mailbox).where(Mailbox.org_id == org_id, Mailbox.kind == "gmail").order_by(Mailbox.id)
    ).all()
    return [mb for mb in rows if (mb.config or {}).get("workspace") == ws_id]


def list_workspaces(engine, org_id: int) -> list[dict]:
    with Session(engine) as s:
        rows = s.exec(
            select(GoogleWorkspace).where(GoogleWorkspace.org_id == org_id).order_by(GoogleWorkspace.id)
        ).all()
        return [describe_workspace(ws) | {"mailboxes": len(_mailboxes_of(s, org_id, ws.id))} for ws in rows]


def remove_workspace(rt, actor: Actor, ref: str) -> dict:
    """Forget a Workspace's service account key. Refused while Gmail mailboxes read
    through it (removing those is a decision about their timeline)."""
    with changing_session(rt.engine, actor) as session:
        ws = find_workspace(session, actor.org_id, ref)
        using = _mailboxes_of(session, actor.org_id, ws.id)
        if using:
            ids = ", ".join(str(mb.id) for mb in using)
            raise Conflict(
                f"Google Workspace {ws.domain} still has {len(using)} mailbox(es) ({ids}): remove them first "
                "(`threadline mailbox remove ID`)"
            )
        facts = describe_workspace(ws)
        session.delete(ws)
        session.flush()
        audit.record(
            session.connection(),
            actor.org_id,
            actor.user_id,
            "google.workspace_remove",
            f"google workspace {facts['id']} ({facts['domain']})",
            {"client_email": facts["client_email"]},
        )
        return facts


def check_workspace(rt, actor: Actor, ref: str, user: str) -> list[dict]:
    """The connection test for a stored Workspace and one address (the console's Test button)."""
    with Session(rt.engine) as session:
        ws = find_workspace(session, actor.org_id, ref)
        key_json = rt.box.decrypt(ws.secret_enc)
    return connection_test(key_json, user)


def mailbox_facts(session: Session, mailbox: Mailbox) -> dict:
    """What identifies a Gmail mailbox on the admin pages (never a secret)."""
    config = mailbox.config or {}
    ws = session.get(GoogleWorkspace, config.get("workspace")) if config.get("workspace") else None
    if ws is not None and ws.org_id != mailbox.org_id:
        ws = None
    return {"workspace": ws.domain if ws else None, "user": config.get("user")}


def _new_mailbox(session: Session, org_id: int, rep: User, ws: GoogleWorkspace, user: str | None = None) -> Mailbox:
    if not rep.active:
        raise Conflict(f"{rep.email} is deactivated", field="owner")
    address = clean_address(user or rep.email, "user")
    cfg = ws.config or {}
    config = {
        "workspace": ws.id,
        "user": address,
        "username": address,
        "host": cfg.get("imap_host", GMAIL_IMAP["host"]),
        "port": int(cfg.get("imap_port", GMAIL_IMAP["port"])),
        "security": cfg.get("imap_security", GMAIL_IMAP["security"]),
    }
    if cfg.get("calendar_url"):
        config["calendar_url"] = cfg["calendar_url"]
    mailbox = Mailbox(org_id=org_id, owner_id=rep.id, kind="gmail", config=config)
    session.add(mailbox)
    session.flush()
    return mailbox


def add_workspace_mailboxes(
    rt,
    actor: Actor,
    *,
    workspace: str | None = None,
    owner: str | None = None,
    all_reps: bool = False,
    user: str | None = None,
) -> dict:
    """Gmail mailboxes read through a Workspace's service account: one rep's, or
    (all_reps) every enabled user whose address is in the Workspace's domain and who
    has none through it yet. Returns {"added": [...], "outside": [addresses left out]}."""
    from app.services.mailboxes import describe, with_sources

    if not all_reps and not (owner or "").strip():
        raise Invalid("give the rep (owner) or choose all reps", field="owner")
    with changing_session(rt.engine, actor) as session:
        ws = _the_workspace(session, actor.org_id, workspace)
        have = {mb.owner_id for mb in _mailboxes_of(session, actor.org_id, ws.id)}
        outside: list[str] = []
        if all_reps:
            reps = session.exec(
                select(User).where(User.org_id == actor.org_id, User.active.is_(True)).order_by(User.id)
            ).all()
            # Delegation reaches only the domain's users: anyone else would fail at every sync.
            outside = [r.email for r in reps if not r.email.endswith(f"@{ws.domain}")]
            added = [
                _new_mailbox(session, actor.org_id, r, ws)
                for r in reps
                if r.id not in have and r.email.endswith(f"@{ws.domain}")
            ]
        else:
            try:
                rep = find_user(session, actor.org_id, owner or "")
            except NotFound as exc:
                raise Invalid(exc.reason, field="owner") from None
            if rep.id in have:
                raise Conflict(f"{rep.email} already has a Gmail mailbox through {ws.domain}", field="owner")
            added = [_new_mailbox(session, actor.org_id, rep, ws, user)]
        rows = with_sources(session, actor.org_id, [describe(session, mb) for mb in added])
        if rows:
            audit.record(
                session.connection(),
                actor.org_id,
                actor.user_id,
                "mailbox.add",
                f"google workspace {ws.domain}: " + ", ".join(f"mailbox {r['id']} ({r['user']})" for r in rows),
                {"workspace": ws.domain, "all_reps": all_reps, "mailboxes": [r["id"] for r in rows]},
            )
        return {"added": rows, "outside": outside}


# -- a rep's own sign-in (installed app with PKCE) ----------------------------------
# The sign-in in progress travels in the OAuth `state`, encrypted with the server's key
# (Fernet): whichever web process or CLI gets the redirected address back can finish it, and
# nothing is stored until Google has given a refresh token. It names the organisation and
# the admin who started it, and expires after SIGN_IN_MINUTES.
SIGN_IN_MINUTES = 15


def _endpoint_or_none(value: str | None, what: str) -> str | None:
    if not value:
        return None
    value = value.strip()
    if not (value.startswith("https://") or value.startswith(("http://127.0.0.1", "http://localhost"))):
        raise Invalid(f"the {what} must be an https:// URL", field=what.replace(" ", "_"))
    return value


def start_rep_sign_in(
    rt,
    actor: Actor,
    *,
    owner: str,
    client_id: str,
    client_secret: str = "",
    user: str | None = None,
    auth_uri: str | None = None,
    token_uri: str | None = None,
    imap_host: str | None = None,
    imap_port: int | None = None,
    imap_security: str | None = None,
    calendar_url: str | None = None,
) -> dict:
    """The first step of a rep's own Google sign-in: the consent URL for the rep to open and
    the state to give back with the address the browser is sent to. Nothing is stored."""
    import secrets
    import time

    from connectors.googleauth import LOOPBACK_REDIRECT, start_installed_sign_in

    client_id = (client_id or "").strip()
    if not client_id or " " in client_id:
        raise Invalid("give the OAuth client id of the Desktop app (Google Cloud console, Clients)", field="client_id")
    with Session(rt.engine) as session:
        try:
            rep = find_user(session, actor.org_id, owner or "")
        except NotFound as exc:
            raise Invalid(exc.reason, field="owner") from None
        if not rep.active:
            raise Conflict(f"{rep.email} is deactivated", field="owner")
        address = clean_address(user or rep.email, "user")
    verifier = secrets.token_urlsafe(64)  # PKCE code verifier (RFC 7636: 43-128 unreserved characters)
    pending = {
        "org": actor.org_id,
        "by": actor.user_id,
        "owner": rep.email,
        "user": address,
        "client_id": client_id,
        "client_secret": client_secret or "",
        "verifier": verifier,
        "auth_uri": _endpoint_or_none(auth_uri, "auth uri"),
        "token_uri": _endpoint_or_none(token_uri, "token uri"),
        "imap": _imap_override(imap_host, imap_port, imap_security),
        "calendar_url": (calendar_url or "").strip() or None,
        "at": time.time(),
    }
    state = rt.box.encrypt(json.dumps(pending))
    try:
        started = start_installed_sign_in(
            client_id,
            pending["client_secret"],
            login_hint=address,
            state=state,
            code_verifier=verifier,
            auth_uri=pending["auth_uri"],
            token_uri=pending["token_uri"],
        )
    except ConnectorError as exc:
        raise Invalid(explain(str(exc), exc.kind, SOURCE, exc.fix), field="client_id") from None
    return {
        "url": started.url,
        "state": started.state,
        "redirect_uri": LOOPBACK_REDIRECT,
        "owner": rep.email,
        "user": address,
        "expires_in": SIGN_IN_MINUTES * 60,
    }


def _pending(rt, actor: Actor, state: str) -> dict:
    import time

    try:
        pending = json.loads(rt.box.decrypt((state or "").strip()))
    except Exception:  # noqa: BLE001 - not ours, altered, or from before a key rotation
        raise Invalid("this sign-in is unknown: start it again", field="state") from None
    if pending.get("org") != actor.org_id or pending.get("by") != actor.user_id:
        raise Invalid("this sign-in was started by someone else: start it again", field="state")
    if time.time() - float(pending.get("at") or 0) > SIGN_IN_MINUTES * 60:
        raise Invalid(f"this sign-in is older than {SIGN_IN_MINUTES} minutes: start it again", field="state")
    return pending


def finish_rep_sign_in(rt, actor: Actor, *, state: str, redirected: str) -> dict:
    """The second step: the address the browser was sent to after the rep allowed access (or
    the code alone) is exchanged, with the PKCE verifier, for a refresh token, which is stored
    encrypted as the mailbox's secret. Signing in again for the same rep reconnects their
    mailbox, keeping its folders and cursors."""
    from app.models import UserAlias
    from app.services.mailboxes import describe, with_sources
    from connectors.googleauth import code_from, finish_installed_sign_in, installed_secret

    pending = _pending(rt, actor, state)
    try:
        code = code_from(redirected, state.strip())
    except ConnectorError as exc:
        raise Invalid(explain(str(exc), exc.kind, SOURCE, exc.fix), field="redirected_url") from None
    try:
        signed = finish_installed_sign_in(
            pending["client_id"],
            pending["client_secret"],
            code=code,
            code_verifier=pending["verifier"],
            state=state.strip(),
            auth_uri=pending["auth_uri"],
            token_uri=pending["token_uri"],
        )
    except ConnectorError as exc:
        raise Invalid(explain(str(exc), exc.kind, SOURCE, exc.fix), field="redirected_url") from None
    with changing_session(rt.engine, actor) as session:
        try:
            rep = find_user(session, actor.org_id, pending["owner"])
        except NotFound as exc:
            raise Invalid(exc.reason, field="owner") from None
        aliases = {a.lower() for a in session.exec(select(UserAlias.address).where(UserAlias.user_id == rep.id))}
        if signed.email and signed.email not in {rep.email, pending["user"], *aliases}:
            raise Invalid(
                f"the sign-in was for {signed.email}, not {pending['user']}: the rep must sign in with their own "
                f"Google account (or add {signed.email} as an alias of {rep.email})",
                field="owner",
            )
        address = signed.email or pending["user"]
        imap = pending["imap"] or {}
        config = {
            "mode": "installed",
            "client_id": pending["client_id"],
            "user": address,
            "username": address,
            "host": imap.get("imap_host", GMAIL_IMAP["host"]),
            "port": int(imap.get("imap_port", GMAIL_IMAP["port"])),
            "security": imap.get("imap_security", GMAIL_IMAP["security"]),
        }
        for key in ("token_uri", "calendar_url"):
            if pending.get(key):
                config[key] = pending[key]
        mailbox = next(
            (
                mb
                for mb in session.exec(
                    select(Mailbox).where(
                        Mailbox.org_id == actor.org_id, Mailbox.owner_id == rep.id, Mailbox.kind == "gmail"
                    )
                )
                if (mb.config or {}).get("mode") == "installed"
            ),
            None,
        )
        reconnect = mailbox is not None
        if mailbox is None:
            mailbox = Mailbox(org_id=actor.org_id, owner_id=rep.id, kind="gmail")
        else:  # reconnecting: keep the folders and cursors, replace the sign-in, sync soon
            mailbox.failure_count = 0
            mailbox.next_sync_at = None
        mailbox.config = config
        mailbox.secret_enc = rt.box.encrypt(installed_secret(pending["client_secret"], signed.refresh_token))
        session.add(mailbox)
        session.flush()
        audit.record(
            session.connection(),
            actor.org_id,
            actor.user_id,
            "mailbox.reconnect" if reconnect else "mailbox.add",
            f"mailbox {mailbox.id} (gmail {address}, own sign-in)",
            {"mode": "installed", "owner": rep.email, "client_id": pending["client_id"]},
        )
        return with_sources(session, actor.org_id, [describe(session, mailbox)])[0] | {"reconnected": reconnect}
