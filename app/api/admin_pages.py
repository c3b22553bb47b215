"""The admin console at /admin: server-rendered pages (Jinja2, autoescaped), admins only.

Sign-in: the admin pastes a personal access token on /admin/login. The console
then keeps a session on the server (a consolesession row: user, the token's id,
expiry, CSRF token) and gives the browser only a random id for it (HttpOnly,
SameSite=Strict, Secure on https). Signing out, revoking the token or
deactivating the user ends the session. Every form posts the session's CSRF
token back (synchronizer token). Scripts may also call the pages with an
`Authorization: Bearer` header (no cookie, so no CSRF check is needed).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from contextlib import contextmanager
from datetime import timedelta, timezone
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import delete, insert, or_, select, update
from sqlmodel import Session

from app.api.admin import (add_caldav_account, add_m365_mailboxes, add_m365_tenant, export_response,
                           remove_m365_tenant, start_sync,
                           with_sources)
from app.api.deps import Caller, caller_from, runtime_of
from app.db import read_only, write_transaction
from app.models import ApiToken, ConsoleSession, User
from app.models.base import utcnow
from app.models.org import CONTACT_POLICIES, VISIBILITY_LEVELS
from app.services import audit, mailboxes, orgs, privacy, rules
from app.services.orgs import Invalid, NotFound, hash_token
from app.textsafe import shown
from sync.addresses import FREE_MAIL_DOMAINS

ADMIN_DIR = Path(__file__).resolve().parent.parent / "admin"
COOKIE, LOGIN_COOKIE = "tl_admin", "tl_login"
SESSION_SECONDS = 8 * 3600
router = APIRouter(prefix="/admin", include_in_schema=False)
_bearer = HTTPBearer(auto_error=False)
T, U, CS = ApiToken.__table__, User.__table__, ConsoleSession.__table__

env = Environment(loader=FileSystemLoader(str(ADMIN_DIR / "templates")),
                  autoescape=select_autoescape(default=True, default_for_string=True))


def _when(value) -> str:
    if not value:
        return "never"
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


env.filters["when"] = _when
env.filters["pretty_json"] = lambda v: json.dumps(v, indent=1, sort_keys=True, default=str)
env.filters["shown"] = shown  # values from mail: bidirectional controls neutralised (app/textsafe.py)

OK_MESSAGES = {
    "org": "Organisation settings saved.", "user": "User added.", "updated": "User updated.",
    "deactivated": "User deactivated: their tokens are revoked and their mailboxes paused.",
    "reactivated": "User reactivated.", "alias": "Alias added.", "alias_removed": "Alias removed.",
    "revoked": "Token revoked.", "added": "Mailbox added. Press Sync now to import it.",
    "paused": "Mailbox paused.", "resumed": "Mailbox resumed.",
    "resync": "Folder cursors reset: the next sync reads the whole mailbox again (no duplicates).",
    "sync": "Sync started.", "password": "Password replaced.", "removed": "Mailbox removed.",
    "rule": "Rule added.", "rule_removed": "Rule removed: the next sync brings that mail back.",
    "filters": "Filter settings saved.", "erased": "Person erased.",
    "caldav_added": "Calendar account added. Press Sync now to import its meetings.",
    "tenant": "Microsoft 365 tenant connected: now add its reps' mailboxes below.",
    "tenant_removed": "Tenant app removed, with its credential. Delete the app registration or its secret in "
                      "Microsoft Entra too.",
    "m365_all": "Microsoft 365 mailboxes added for every enabled rep who had none through this tenant.",
}
SOURCE_KINDS = ("imap", "caldav", "m365")


# -- sessions -------------------------------------------------------------------------

# A session is a row (app/models/org.py ConsoleSession): the cookie carries a
# random id whose SHA-256 is stored, so signing out, revoking the token or
# deactivating the user ends it on the server, and a copy of the database holds
# no usable cookie.

def _session_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _start_session(conn, org_id: int, user_id: int, token_id: int) -> tuple[str, str]:
    """A new session: (cookie value, CSRF token). Sessions that ended or expired are cleared on the way."""
    now = utcnow()
    conn.execute(delete(CS).where(or_(CS.c.expires_at < now, CS.c.ended_at.is_not(None))))
    value, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    conn.execute(insert(CS).values(session_hash=_session_hash(value), org_id=org_id, user_id=user_id,
                                   token_id=token_id, csrf=csrf, created_at=now,
                                   expires_at=now + timedelta(seconds=SESSION_SECONDS)))
    return value, csrf


def _secure(request: Request) -> bool:
    rt = runtime_of(request)
    return request.url.scheme == "https" or rt.settings.public_url.startswith("https://")


class Console:
    """The signed-in admin of this request."""

    def __init__(self, caller: Caller, csrf: str | None, name: str):
        self.caller, self.csrf, self.name = caller, csrf, name

    @property
    def org_id(self) -> int:
        return self.caller.org_id

    @property
    def user_id(self) -> int:
        return self.caller.user_id


def _from_session(request: Request) -> tuple[Caller, str] | None:
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    rt = runtime_of(request)
    with read_only(rt.engine) as conn:
        row = conn.execute(select(U.c.id, U.c.org_id, U.c.email, U.c.role, CS.c.csrf)
                           .join(CS, CS.c.user_id == U.c.id).join(T, T.c.id == CS.c.token_id)
                           .where(CS.c.session_hash == _session_hash(value), CS.c.ended_at.is_(None),
                                  CS.c.expires_at > utcnow(), T.c.user_id == U.c.id, T.c.revoked_at.is_(None),
                                  U.c.active.is_(True))).first()
    if row is None:
        return None
    return Caller(row.id, row.org_id, row.email, row.role), row.csrf


async def console(request: Request, creds: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> Console:
    if creds is not None and creds.credentials:
        caller, csrf = await caller_from(runtime_of(request), creds), None  # 401 on a bad token
    else:
        found = _from_session(request)
        if found is None:
            raise HTTPException(303, "sign in first", headers={"Location": "/admin/login"})
        caller, csrf = found
    if not caller.is_admin:
        raise HTTPException(403, "the console is for admins")
    if request.method == "POST" and csrf is not None:
        # Session-authenticated form: it must carry this session's CSRF token (checked in _form()).
        request.state.csrf_expected = csrf
    return Console(caller, csrf, caller.email)


async def _form(request: Request) -> dict:
    form = await request.form()
    expected = getattr(request.state, "csrf_expected", None)
    if expected is not None and not hmac.compare_digest(str(form.get("csrf", "")), expected):
        raise HTTPException(403, "the form expired or came from elsewhere (CSRF check failed): reload the page")
    return {k: v for k, v in form.multi_items()} | {"_multi": form}


def render(request: Request, name: str, con: Console | None, status: int = 200, **ctx) -> HTMLResponse:
    ok = request.query_params.get("ok")
    ctx.setdefault("message", OK_MESSAGES.get(ok) if ok else None)
    html = env.get_template(name).render(request=request, me=con, csrf=(con.csrf or "") if con else "", **ctx)
    resp = HTMLResponse(html, status_code=status)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
    return resp


def back(url: str, ok: str) -> RedirectResponse:
    return RedirectResponse(f"{url}?ok={ok}", status_code=303)


# -- sign in / out -------------------------------------------------------------------

@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    resp = render(request, "login.html", None, login_csrf=nonce)
    resp.set_cookie(LOGIN_COOKIE, nonce, max_age=1800, httponly=True, samesite="strict", secure=_secure(request),
                    path="/admin")
    return resp


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(str(form.get("csrf", "")), nonce):
        return render(request, "login.html", None, status=403, login_csrf=nonce,
                      error="The sign-in form expired; try again.")
    token = str(form.get("token", "")).strip()
    rt = runtime_of(request)
    with read_only(rt.engine) as conn:
        row = conn.execute(select(T.c.id, U.c.id.label("uid"), U.c.org_id, U.c.role).join(U, U.c.id == T.c.user_id)
                           .where(T.c.token_hash == hash_token(token), T.c.revoked_at.is_(None),
                                  U.c.active.is_(True))).first() if token else None
    if row is None:
        return render(request, "login.html", None, status=401, login_csrf=nonce,
                      error="That token is not valid (revoked, or its user is deactivated).")
    if row.role != "admin":
        return render(request, "login.html", None, status=403, login_csrf=nonce,
                      error="This token belongs to a rep: the console is for admins.")
    with write_transaction(rt.engine) as conn:
        value, _ = _start_session(conn, row.org_id, row.uid, row.id)
    resp = RedirectResponse("/admin", status_code=303)
    resp.set_cookie(COOKIE, value, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                    secure=_secure(request), path="/admin")
    resp.delete_cookie(LOGIN_COOKIE, path="/admin")
    return resp


@router.post("/logout")
async def logout(request: Request, con: Console = Depends(console)) -> Response:
    await _form(request)
    value = request.cookies.get(COOKIE)
    if value:
        with write_transaction(runtime_of(request).engine) as conn:
            conn.execute(update(CS).where(CS.c.session_hash == _session_hash(value), CS.c.ended_at.is_(None))
                         .values(ended_at=utcnow()))
    resp = RedirectResponse("/admin/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/admin")
    return resp


@router.get("/static/admin.css")
def stylesheet() -> Response:
    return Response((ADMIN_DIR / "static" / "admin.css").read_text(), media_type="text/css",
                    headers={"Cache-Control": "max-age=3600"})


# -- sync health (home) -------------------------------------------------------------------

@router.get("")
def home(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    rt = runtime_of(request)
    with Session(rt.engine) as s:
        rows = with_sources(s, con.org_id, mailboxes.health(s, con.org_id))
    return render(request, "health.html", con, rows=rows)


@router.get("/mailboxes/new")
def new_mailbox(request: Request, con: Console = Depends(console), kind: str = "imap") -> HTMLResponse:
    return _mailbox_form(request, con, kind=kind if kind in SOURCE_KINDS else "imap")


def _mailbox_form(request, con, status: int = 200, *, kind: str = "imap", **ctx) -> HTMLResponse:
    """The add-a-source page, one tab per kind. Form values come back on errors, never
    a password or a client secret."""
    from app.services import m365

    rt = runtime_of(request)
    # Read-only: this page is also rendered while a failed add's session still holds
    # the SQLite write lock (an ordinary Session would wait for it).
    with read_only(rt.engine) as conn:
        users = [u for u in orgs.list_users(conn, con.org_id) if u["active"]]
        with Session(bind=conn) as s:
            tenants = m365.list_tenants(s, con.org_id)
    ctx.setdefault("values", {"port": 993, "security": "tls"} if kind == "imap" else {})
    return render(request, "mailbox_new.html", con, status=status, users=users, kind=kind, tenants=tenants,
                  **ctx)


@router.post("/mailboxes/test")
async def test_mailbox(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    form = await _form(request)
    values = {k: form.get(k, "") for k in ("owner", "host", "port", "security", "username")}
    steps = mailboxes.test_imap_connection(values["host"], values["port"], values["security"], values["username"],
                                           str(form.get("password", "")))
    return _mailbox_form(request, con, kind="imap", values=values, steps=steps)


@router.post("/mailboxes")
async def add_mailbox(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    values = {k: form.get(k, "") for k in ("owner", "host", "port", "security", "username")}
    rt = runtime_of(request)
    try:
        port = int(values["port"] or 0)
    except ValueError:
        return _mailbox_form(request, con, status=422, kind="imap", values=values,
                             error=f"not a port number: {values['port']}")
    with Session(rt.engine, expire_on_commit=False) as s:
        try:
            org = orgs.the_org(s, con.org_id)
            mb = mailboxes.add_imap(s, rt.box, org, owner=values["owner"], host=values["host"], port=port,
                                    security=values["security"], username=values["username"],
                                    password=str(form.get("password", "")))
        except (Invalid, NotFound) as exc:
            return _mailbox_form(request, con, status=422, kind="imap", values=values, error=str(exc))
    with write_transaction(rt.engine) as conn:
        audit.record(conn, con.org_id, con.user_id, "mailbox.add", f"mailbox {mb.id} (imap {values['username']})",
                     {"host": values["host"], "owner": values["owner"]})
    return back(f"/admin/mailboxes/{mb.id}", "added")


@router.post("/mailboxes/caldav")
async def add_caldav(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    values = {k: str(form.get(k, "")) for k in ("owner", "url", "username", "sync")}
    values["check"] = form.get("check") == "1"
    try:
        added = await run_in_threadpool(  # the check logs in to the CalDAV server
            add_caldav_account, runtime_of(request), con, owner=values["owner"], url=values["url"],
            username=values["username"], password=str(form.get("password", "")), check=values["check"],
            sync=values["sync"] or "auto")
    except (Invalid, NotFound) as exc:
        return _mailbox_form(request, con, status=422, kind="caldav", values=values, error=str(exc))
    return back(f"/admin/mailboxes/{added['id']}", "caldav_added")


@router.post("/m365/tenants/{tenant_id}/remove")
async def remove_tenant(request: Request, tenant_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    try:
        remove_m365_tenant(runtime_of(request), con, str(tenant_id))
    except HTTPException as exc:
        return _mailbox_form(request, con, status=exc.status_code, kind="m365", values={}, error=str(exc.detail))
    return RedirectResponse("/admin/mailboxes/new?kind=m365&ok=tenant_removed", status_code=303)


@router.post("/m365/tenants")
async def add_tenant(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in ("tenant_id", "client_id", "authority", "graph_url")}
    values["check"] = form.get("check") == "1"
    try:
        await run_in_threadpool(  # the check asks Microsoft Entra for a token
            add_m365_tenant, runtime_of(request), con, tenant_id=values["tenant_id"],
            client_id=values["client_id"], secret=str(form.get("client_secret", "")),
            authority=values["authority"] or None, graph_url=values["graph_url"] or None, check=values["check"])
    except (Invalid, NotFound) as exc:
        return _mailbox_form(request, con, status=422, kind="m365", values=values, error=str(exc))
    return RedirectResponse("/admin/mailboxes/new?kind=m365&ok=tenant", status_code=303)


@router.post("/mailboxes/m365")
async def add_m365(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in ("tenant", "owner", "user")}
    values["imap"] = form.get("imap") == "1"
    all_reps = values["owner"] == "*"
    try:
        added = add_m365_mailboxes(runtime_of(request), con, tenant=values["tenant"],
                                   owner=None if all_reps else values["owner"], all_reps=all_reps,
                                   user=values["user"] or None, imap=values["imap"])
    except (Invalid, NotFound) as exc:
        return _mailbox_form(request, con, status=422, kind="m365", values=values, error=str(exc))
    if all_reps or len(added) != 1:
        return back("/admin", "m365_all")
    return back(f"/admin/mailboxes/{added[0]['id']}", "added")


@router.get("/mailboxes/{mailbox_id}")
def mailbox_page(request: Request, mailbox_id: int, con: Console = Depends(console)) -> HTMLResponse:
    rt = runtime_of(request)
    with Session(rt.engine) as s:
        rows = mailboxes.health(s, con.org_id, mailbox_id)
        if not rows:
            raise HTTPException(404, f"no mailbox {mailbox_id}")
        with_sources(s, con.org_id, rows)
        detail = mailboxes.describe(s, mailboxes.get_mailbox(s, con.org_id, mailbox_id), with_folders=True)
    return render(request, "mailbox.html", con, mb=rows[0], folders=detail["folders"], unreadable=detail["unreadable"])


@router.post("/mailboxes/{mailbox_id}/{action}")
async def mailbox_action(request: Request, mailbox_id: int, action: str, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    rt = runtime_of(request)
    simple = {"pause": (mailboxes.pause, "paused"), "resume": (mailboxes.resume, "resumed"),
              "resync": (mailboxes.resync, "resync")}
    try:
        if action in simple:
            fn, ok = simple[action]
            with write_transaction(rt.engine) as conn:
                fn(conn, con.org_id, mailbox_id, actor_id=con.user_id)
            return back(f"/admin/mailboxes/{mailbox_id}", ok)
        if action == "sync":
            start_sync(request, rt, con.org_id, mailbox_id, con.user_id)
            return back(f"/admin/mailboxes/{mailbox_id}", "sync")
        if action == "password":
            with write_transaction(rt.engine) as conn:
                mailboxes.set_password(conn, rt.box, con.org_id, mailbox_id, str(form.get("password", "")),
                                       actor_id=con.user_id)
            return back(f"/admin/mailboxes/{mailbox_id}", "password")
        if action == "remove":
            with write_transaction(rt.engine) as conn:
                mailboxes.remove(conn, con.org_id, mailbox_id, purge=form.get("purge") == "1", actor_id=con.user_id)
            return back("/admin", "removed")
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except Invalid as exc:
        raise HTTPException(422, str(exc)) from exc
    raise HTTPException(404, f"no action {action}")


# -- organisation ---------------------------------------------------------------------------

def _split(text: str) -> list[str]:
    return [p for p in text.replace(",", " ").split() if p]


@router.get("/org")
def org_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    with read_only(runtime_of(request).engine) as conn:
        org = orgs.org_settings(conn, con.org_id)
    return render(request, "org.html", con, org=org, policies=CONTACT_POLICIES, levels=VISIBILITY_LEVELS)


@router.post("/org")
async def org_save(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    changes = {k: form.get(k) for k in ("name", "contact_policy", "visibility", "backfill_days",
                                        "sync_interval_seconds", "calendar_past_days", "calendar_future_days")
               if form.get(k) not in (None, "")}
    if "internal_domains" in form:
        changes["internal_domains"] = _split(str(form["internal_domains"]))
    try:
        with write_transaction(runtime_of(request).engine) as conn:
            orgs.update_org(conn, con.org_id, changes, actor_id=con.user_id)
    except Invalid as exc:
        with read_only(runtime_of(request).engine) as conn:
            org = orgs.org_settings(conn, con.org_id)
        return render(request, "org.html", con, status=422, org=org, policies=CONTACT_POLICIES,
                      levels=VISIBILITY_LEVELS, error=str(exc))
    return back("/admin/org", "org")


# -- users ------------------------------------------------------------------------------------

@router.get("/users")
def users_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    return _users(request, con)


def _users(request: Request, con: Console, status: int = 200, **ctx) -> HTMLResponse:
    with read_only(runtime_of(request).engine) as conn:
        users = orgs.list_users(conn, con.org_id)
    return render(request, "users.html", con, status=status, users=users, **ctx)


@router.post("/users")
async def users_add(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    try:
        with write_transaction(runtime_of(request).engine) as conn:
            orgs.create_user(conn, con.org_id, str(form.get("email", "")), name=str(form.get("name", "")),
                             role=str(form.get("role", "rep")), aliases=_split(str(form.get("aliases", ""))),
                             actor_id=con.user_id)
    except (Invalid, NotFound) as exc:
        return _users(request, con, status=422, error=str(exc))
    return back("/admin/users", "user")


@router.post("/users/{user_id}/{action}")
async def user_action(request: Request, user_id: int, action: str, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    rt = runtime_of(request)
    try:
        with write_transaction(rt.engine) as conn:
            if action == "update":
                orgs.update_user(conn, con.org_id, user_id, name=form.get("name"), role=form.get("role") or None,
                                 actor_id=con.user_id)
                ok = "updated"
            elif action in ("deactivate", "reactivate"):
                orgs.update_user(conn, con.org_id, user_id, active=action == "reactivate", actor_id=con.user_id)
                ok = action + "d"
            elif action == "alias":
                orgs.add_alias(conn, con.org_id, user_id, str(form.get("address", "")), actor_id=con.user_id)
                ok = "alias"
            elif action == "token":
                issued = orgs.create_token(conn, con.org_id, user_id, str(form.get("name", "")),
                                           actor_id=con.user_id)
                email = orgs.get_user(conn, con.org_id, user_id).email
            else:
                raise HTTPException(404, f"no action {action}")
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except Invalid as exc:
        return _users(request, con, status=422, error=str(exc))
    if action == "token":
        return _users(request, con, new_token={"token": issued["token"], "email": email, "name": issued["name"]})
    return back("/admin/users", ok)


@contextmanager
def _changing(request: Request):
    """A write transaction whose NotFound (another organisation's id, or a stale page) answers 404."""
    try:
        with write_transaction(runtime_of(request).engine) as conn:
            yield conn
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


@router.post("/aliases/{alias_id}/delete")
async def alias_delete(request: Request, alias_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    with _changing(request) as conn:
        orgs.remove_alias(conn, con.org_id, alias_id, actor_id=con.user_id)
    return back("/admin/users", "alias_removed")


@router.post("/tokens/{token_id}/revoke")
async def token_revoke(request: Request, token_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    with _changing(request) as conn:
        orgs.revoke_token(conn, con.org_id, token_id, actor_id=con.user_id)
    return back("/admin/users", "revoked")


# -- rules ---------------------------------------------------------------------------------------

def _rules(request: Request, con: Console, status: int = 200, **ctx) -> HTMLResponse:
    with read_only(runtime_of(request).engine) as conn:
        ctx.update(rules=rules.list_rules(conn, con.org_id), users=orgs.list_users(conn, con.org_id),
                   org=orgs.org_settings(conn, con.org_id))
    return render(request, "rules.html", con, status=status, builtin_free=sorted(FREE_MAIL_DOMAINS), **ctx)


@router.get("/rules")
def rules_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    return _rules(request, con)


@router.post("/rules")
async def rules_add(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    value = str(form.get("value", ""))
    user = str(form.get("user_id", "") or "")
    try:
        with write_transaction(runtime_of(request).engine) as conn:
            result = rules.add_rule(conn, con.org_id, kind=str(form.get("kind") or rules.guess_kind(value)),
                                    value=value, user_id=int(user) if user.isdigit() else None,
                                    actor_id=con.user_id)
    except (Invalid, NotFound) as exc:
        return _rules(request, con, status=422, error=str(exc))
    return _rules(request, con, message=f"Rule added for {result['value']}: "
                                        f"{result['removed_interactions']} stored interactions removed.")


@router.post("/rules/settings")
async def rules_settings(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    changes = {"bulk_detection": form.get("bulk_detection") == "1",
               "free_mail_domains": None if form.get("free_mail_builtin") == "1"
               else _split(str(form.get("free_mail_domains", "")))}
    try:
        with write_transaction(runtime_of(request).engine) as conn:
            orgs.update_org(conn, con.org_id, changes, actor_id=con.user_id)
    except Invalid as exc:
        return _rules(request, con, status=422, error=str(exc))
    return back("/admin/rules", "filters")


@router.post("/rules/{rule_id}/delete")
async def rules_delete(request: Request, rule_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    with _changing(request) as conn:
        rules.remove_rule(conn, con.org_id, rule_id, actor_id=con.user_id)
    return back("/admin/rules", "rule_removed")


# -- privacy and audit --------------------------------------------------------------------------

@router.get("/privacy")
def privacy_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    return render(request, "privacy.html", con)


@router.post("/privacy/export")
async def privacy_export(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    fmt = "vcard" if form.get("format") == "vcard" else "json"
    try:
        return export_response(runtime_of(request), con.caller, str(form.get("email", "")), fmt)
    except HTTPException as exc:
        return render(request, "privacy.html", con, status=exc.status_code, error=exc.detail)


@router.post("/privacy/erase")
async def privacy_erase(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    if form.get("confirm") != "1":
        return render(request, "privacy.html", con, status=422,
                      error="Tick the box to confirm: erasing cannot be undone.")
    try:
        rt = runtime_of(request)
        with write_transaction(rt.engine) as conn:
            result = privacy.erase_person(conn, con.org_id, str(form.get("email", "")), actor_id=con.user_id,
                                          box=rt.box)
    except Invalid as exc:
        return render(request, "privacy.html", con, status=422, error=str(exc))
    return render(request, "privacy.html", con, erased=result, message="Person erased.")


@router.get("/audit")
def audit_page(request: Request, con: Console = Depends(console), action: Optional[str] = None,
               before_id: Optional[int] = None) -> HTMLResponse:
    with read_only(runtime_of(request).engine) as conn:
        events = audit.list_events(conn, con.org_id, limit=100, action=action or None, before_id=before_id)
    return render(request, "audit.html", con, events=events, action=action or "")
