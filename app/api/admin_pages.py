"""The admin console at /admin: server-rendered pages (Jinja2, autoescaped), admins only.

Sign-in: the admin pastes a personal access token on /admin/login. The console
then keeps a session on the server (a consolesession row: user, the token's id,
expiry, CSRF token) and gives the browser only a random id for it (HttpOnly,
SameSite=Strict; over HTTPS `__Host-` prefixed and Secure). Signing out,
revoking the token or deactivating the user ends the session. Every form posts
the session's CSRF token back (synchronizer token). Scripts may also call the
pages with an `Authorization: Bearer` header (no cookie, so no CSRF check is needed).

A session begins only from a sign-in form this console served: see "sign in / out"
for why, and for what plain HTTP cannot protect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from datetime import timedelta, timezone
from pathlib import Path
from typing import Optional
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import delete, func, insert, or_, select, update
from starlette.concurrency import run_in_threadpool

from app.api.admin import export_download, scheduler_of
from app.api.deps import Caller, caller_from, runtime_of
from app.db import read_only, write_transaction
from app.models import ApiToken, ConsoleSession, Mailbox, Organisation, User
from app.models.base import utcnow
from app.models.org import CONTACT_POLICIES, VISIBILITY_LEVELS
from app.services import audit, calendars, digest, google, m365, mailboxes, orgs, people, privacy, reconcile, rules
from app.services.actor import Actor
from app.services.errors import Invalid, NotFound, ServiceError, http_status
from app.services.orgs import hash_token
from app.textsafe import shown
from sync.addresses import FREE_MAIL_DOMAINS

ADMIN_DIR = Path(__file__).resolve().parent.parent / "admin"
COOKIE, LOGIN_COOKIE = "tl_admin", "tl_login"
SESSION_SECONDS, LOGIN_SECONDS = 8 * 3600, 1800
router = APIRouter(prefix="/admin", include_in_schema=False, default_response_class=HTMLResponse)
_bearer = HTTPBearer(auto_error=False)
T, U, CS, O = ApiToken.__table__, User.__table__, ConsoleSession.__table__, Organisation.__table__

env = Environment(
    loader=FileSystemLoader(str(ADMIN_DIR / "templates")),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


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
    "org": "Organisation settings saved.",
    "smtp": "SMTP server saved: send a test email to check it.",
    "user": "User added.",
    "updated": "User updated.",
    "deactivated": "User deactivated: their tokens are revoked and their mailboxes paused.",
    "reactivated": "User reactivated.",
    "alias": "Alias added.",
    "alias_removed": "Alias removed.",
    "revoked": "Token revoked.",
    "added": "Mailbox added. Press Sync now to import it.",
    "connected": "Mailbox connected: its first import has started.",
    "added_found": "Server found and connection tested: mailbox added. Press Sync now to import it.",
    "paused": "Mailbox paused.",
    "resumed": "Mailbox resumed.",
    "resync": "Folder cursors reset: the next sync reads the whole mailbox again (no duplicates).",
    "sync": "Sync started.",
    "password": "Password replaced.",
    "removed": "Mailbox removed.",
    "rule": "Rule added.",
    "rule_removed": "Rule removed: the next sync brings that mail back.",
    "filters": "Filter settings saved.",
    "erased": "Person erased.",
    "caldav_added": "Calendar account added. Press Sync now to import its meetings.",
    "tenant": "Microsoft 365 tenant connected: now add its reps' mailboxes below.",
    "tenant_removed": "Tenant app removed, with its credential. Delete the app registration or its secret in "
    "Microsoft Entra too.",
    "pipeline": "Pipeline created.",
    "deal": "Deal created.",
    "deal_visibility": "Deal visibility saved.",
    "m365_all": "Microsoft 365 mailboxes added for every enabled rep who had none through this tenant.",
    "workspace": "Google Workspace connected: now add its reps' Gmail below.",
    "workspace_removed": "Google Workspace removed, with its key. Delete the key in the Google Cloud console and the "
    "client id from domain-wide delegation too.",
    "gmail_all": "Gmail added for every enabled rep of the domain who had none yet.",
    "summaries_check": "Summaries recounted: the result is below.",
    "summaries_repair": "Summaries rebuilt from the timeline and recounted.",
}
SOURCE_KINDS = ("imap", "caldav", "m365", "google")
# The add-mailbox form's provider list (admin.js fills the form from it): each
# provider's published IMAP server, and what its accounts need to let IMAP in.
IMAP_PRESETS = (
    ("Fastmail", "imap.fastmail.com", 993, "tls", "Fastmail needs an app password (Settings → Privacy & Security)."),
    (
        "Gmail / Google Workspace",
        "imap.gmail.com",
        993,
        "tls",
        "Google needs an app password (Google Account → Security); a Google Workspace is better connected once, "
        "under Google Workspace (no passwords).",
    ),
    ("iCloud Mail", "imap.mail.me.com", 993, "tls", "iCloud needs an app-specific password (account.apple.com)."),
    ("Yahoo Mail", "imap.mail.yahoo.com", 993, "tls", "Yahoo needs an app password (Account security)."),
    (
        "Zoho Mail",
        "imap.zoho.com",
        993,
        "tls",
        "Zoho: turn IMAP access on in Mail settings; EU accounts use imap.zoho.eu.",
    ),
    ("GMX", "imap.gmx.net", 993, "tls", "GMX: turn on POP3/IMAP access in the mailbox settings."),
    ("OVHcloud", "ssl0.ovh.net", 993, "tls", ""),
    ("IONOS", "imap.ionos.com", 993, "tls", "German IONOS accounts use imap.ionos.de."),
)

IMAP_FIELDS = ("owner", "email", "host", "port", "security", "username")


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
    conn.execute(
        insert(CS).values(
            session_hash=_session_hash(value),
            org_id=org_id,
            user_id=user_id,
            token_id=token_id,
            csrf=csrf,
            created_at=now,
            expires_at=now + timedelta(seconds=SESSION_SECONDS),
        )
    )
    return value, csrf


def _secure(request: Request) -> bool:
    rt = runtime_of(request)
    return request.url.scheme == "https" or rt.settings.public_url.startswith("https://")


# Cookies do not separate ports, and a sibling subdomain may set cookies for the
# whole parent domain, so any page served next to the console could write a
# cookie named like the console's. Over HTTPS the console's cookies are named
# `__Host-…` and sent Secure, Path=/, without Domain: a browser takes such a
# cookie only from a secure response of this very host, so a plain-http page on
# another port or a sibling subdomain cannot plant one, and the console reads no
# other name. Plain HTTP (local use) has no such guarantee: see README.


def _cookie_name(request: Request, base: str) -> str:
    return "__Host-" + base if _secure(request) else base


def _set_cookie(resp: Response, request: Request, base: str, value: str, max_age: int) -> None:
    secure = _secure(request)
    resp.set_cookie(
        _cookie_name(request, base),
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/" if secure else "/admin",
    )


def _drop_cookie(resp: Response, request: Request, base: str) -> None:
    secure = _secure(request)  # a __Host- cookie is only replaced by one with the same attributes
    resp.delete_cookie(
        _cookie_name(request, base), path="/" if secure else "/admin", secure=secure, httponly=True, samesite="strict"
    )


class Console:
    """The signed-in admin of this request."""

    def __init__(self, caller: Caller, csrf: str | None, name: str, org_name: str):
        self.caller, self.csrf, self.name, self.org_name = caller, csrf, name, org_name

    @property
    def org_id(self) -> int:
        return self.caller.org_id

    @property
    def user_id(self) -> int:
        return self.caller.user_id

    @property
    def actor(self) -> Actor:
        return Actor.of(self.caller)


def _from_session(request: Request) -> tuple[Caller, str, str] | None:
    """(caller, CSRF token, organisation name) of the session cookie, if it is a live session.

    Only the cookie name of this scheme is read: over HTTPS the `__Host-` one, which
    only this host's own secure responses can have set, i.e. the sign-in POST below.
    A session id under the plain name, even a real session of another organisation's
    admin, is ignored there (it may have been planted by a page on another port)."""
    value = request.cookies.get(_cookie_name(request, COOKIE))
    if not value:
        return None
    rt = runtime_of(request)
    with read_only(rt.engine) as conn:
        row = conn.execute(
            select(U.c.id, U.c.org_id, U.c.email, U.c.role, CS.c.csrf, O.c.name.label("org_name"))
            .join(CS, CS.c.user_id == U.c.id)
            .join(T, T.c.id == CS.c.token_id)
            .join(O, O.c.id == U.c.org_id)
            .where(
                CS.c.session_hash == _session_hash(value),
                CS.c.ended_at.is_(None),
                CS.c.expires_at > utcnow(),
                T.c.user_id == U.c.id,
                T.c.revoked_at.is_(None),
                U.c.active.is_(True),
            )
        ).first()
    if row is None:
        return None
    return Caller(row.id, row.org_id, row.email, row.role), row.csrf, row.org_name


async def console(request: Request, creds: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> Console:
    if creds is not None and creds.credentials:
        rt = runtime_of(request)
        caller, csrf = await caller_from(rt, creds), None  # 401 on a bad token
        with read_only(rt.engine) as conn:
            org_name = conn.execute(select(O.c.name).where(O.c.id == caller.org_id)).scalar_one()
    else:
        found = _from_session(request)
        if found is None:
            raise HTTPException(303, "sign in first", headers={"Location": "/admin/login"})
        caller, csrf, org_name = found
    if not caller.is_admin:
        raise HTTPException(403, "the console is for admins")
    if request.method == "POST" and csrf is not None:
        # Session-authenticated form: it must carry this session's CSRF token (checked in _form()).
        request.state.csrf_expected = csrf
    return Console(caller, csrf, caller.email, org_name)


async def _form(request: Request) -> dict:
    form = await request.form()
    expected = getattr(request.state, "csrf_expected", None)
    # Bytes: compare_digest refuses (500) non-ASCII str, and a form may send anything.
    if expected is not None and not hmac.compare_digest(str(form.get("csrf", "")).encode(), expected.encode()):
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


def refused(exc: ServiceError) -> dict:
    """How the console shows a service's refusal: the page again, with the reason as its
    flash message and the HTTP status the API would give. (Actions with no page to show
    again let the error through to the app's one handler.)"""
    return {"status": http_status(exc), "error": exc.reason, "error_field": exc.field}


# -- sign in / out -------------------------------------------------------------------

# Login CSRF: a page next to the console (another port of the same host, a sibling
# subdomain) must not be able to sign this browser in to an account of its
# choosing, e.g. its author's admin account of another organisation, where the
# victim would then type mailbox passwords and rules. So a session begins only
# from a sign-in form the console served to this browser:
# - the form step issues a pre-session value (issue time, random, HMAC under a key
#   derived from the secret key, so only the server can make one and it expires)
#   as a cookie and as the form's hidden field; the POST needs both, equal, valid;
# - the POST must come from a page of the console's own origin (Sec-Fetch-Site, or
#   Origin from browsers without it): the other page could have fetched a genuine
#   pre-session value for itself and planted it, but it cannot make the browser
#   say the form was posted from here;
# - success issues a fresh random session id (nothing the browser brought is
#   reused, so a planted id cannot be fixed in) and drops the pre-session value.
# Over HTTPS both cookies are `__Host-` ones that no other page can plant (see
# _cookie_name). Over plain HTTP a page on another port can still plant a real
# session id of its author's (no cookie is safe from it there), which is why the
# console must be served over HTTPS in production and shows its organisation's
# name in the header.


def _login_mac(rt, issued: str, nonce: str) -> str:
    return hmac.new(rt.box.derive("console sign-in form"), f"{issued}.{nonce}".encode(), hashlib.sha256).hexdigest()


def _new_login_value(rt, now: float | None = None) -> str:
    issued, nonce = str(int(time.time() if now is None else now)), secrets.token_urlsafe(24)
    return f"{issued}.{nonce}.{_login_mac(rt, issued, nonce)}"


def _login_value_ok(rt, value: str) -> bool:
    issued, _, rest = value.partition(".")
    nonce, _, mac = rest.partition(".")
    if not (issued.isascii() and issued.isdigit() and len(issued) < 16 and nonce and mac):
        return False
    fresh = -60 <= time.time() - int(issued) <= LOGIN_SECONDS  # a minute of clock skew between processes
    return fresh and hmac.compare_digest(mac.encode(), _login_mac(rt, issued, nonce).encode())


def _posted_from_this_console(request: Request) -> bool:
    """Whether the browser says the form was posted by a page of the console's own origin.
    Clients that send neither header are not browsers a page could have led here."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = {request.headers.get("host", ""), urlsplit(runtime_of(request).settings.public_url).netloc}
    return urlsplit(origin).netloc in own - {""}


def _login_form(request: Request, status: int = 200, error: str | None = None) -> HTMLResponse:
    """The sign-in page with a new pre-session value (never one the browser brought)."""
    value = _new_login_value(runtime_of(request))
    resp = render(request, "login.html", None, status=status, login_csrf=value, error=error)
    _set_cookie(resp, request, LOGIN_COOKIE, value, LOGIN_SECONDS)
    return resp


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return _login_form(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    rt = runtime_of(request)
    value = request.cookies.get(_cookie_name(request, LOGIN_COOKIE), "")
    if not (
        _posted_from_this_console(request)
        and _login_value_ok(rt, value)
        and hmac.compare_digest(str(form.get("csrf", "")).encode(), value.encode())
    ):
        return _login_form(request, 403, "The sign-in form expired or came from elsewhere; try again here.")
    token = str(form.get("token", "")).strip()
    with read_only(rt.engine) as conn:
        row = (
            conn.execute(
                select(T.c.id, U.c.id.label("uid"), U.c.org_id, U.c.role)
                .join(U, U.c.id == T.c.user_id)
                .where(T.c.token_hash == hash_token(token), T.c.revoked_at.is_(None), U.c.active.is_(True))
            ).first()
            if token
            else None
        )
    if row is None:
        return _login_form(request, 401, "That token is not valid (revoked, or its user is deactivated).")
    if row.role != "admin":
        return _login_form(request, 403, "This token belongs to a rep: the console is for admins.")
    with write_transaction(rt.engine) as conn:
        session_id, _ = _start_session(conn, row.org_id, row.uid, row.id)
    resp = RedirectResponse("/admin", status_code=303)
    _set_cookie(resp, request, COOKIE, session_id, SESSION_SECONDS)
    _drop_cookie(resp, request, LOGIN_COOKIE)
    return resp


@router.post("/logout")
async def logout(request: Request, con: Console = Depends(console)) -> Response:
    await _form(request)
    value = request.cookies.get(_cookie_name(request, COOKIE))
    if value:
        with write_transaction(runtime_of(request).engine) as conn:
            conn.execute(
                update(CS)
                .where(CS.c.session_hash == _session_hash(value), CS.c.ended_at.is_(None))
                .values(ended_at=utcnow())
            )
    resp = RedirectResponse("/admin/login", status_code=303)
    _drop_cookie(resp, request, COOKIE)
    return resp


@router.get("/static/admin.css")
def stylesheet() -> Response:
    return Response(
        (ADMIN_DIR / "static" / "admin.css").read_text(),
        media_type="text/css",
        headers={"Cache-Control": "max-age=3600"},
    )


@router.get("/static/admin.js")
def script() -> Response:
    """The console's one script: provider presets on the add-mailbox form (the pages work without it)."""
    return Response(
        (ADMIN_DIR / "static" / "admin.js").read_text(),
        media_type="text/javascript",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/static/login.js")
def login_script() -> Response:
    return Response(
        (ADMIN_DIR / "static" / "login.js").read_text(),
        media_type="text/javascript",
        headers={"Cache-Control": "max-age=3600"},
    )


# -- sync health (home) -------------------------------------------------------------------


@router.get("")
def home(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    rows = mailboxes.health_page(runtime_of(request).engine, con.org_id)
    if not rows:  # nothing to sync yet: the first-run page is the home page
        return _start(request, con)
    with read_only(runtime_of(request).engine) as conn:
        check = reconcile.summary_check(conn, con.org_id)
    return render(request, "health.html", con, rows=rows, check=check)


@router.post("/summaries/{action}")
async def summaries_action(request: Request, action: str, con: Console = Depends(console)) -> Response:
    """Recount the per-contact summaries now (check), or rebuild them from the timeline (repair)."""
    await _form(request)
    rt = runtime_of(request)
    if action == "check":
        reconcile.check_summaries(rt, con.org_id)
    elif action == "repair":
        reconcile.repair_summaries(rt, con.actor)
    else:
        raise HTTPException(404, f"no action {action}")
    return back("/admin", f"summaries_{action}")


# -- first run ---------------------------------------------------------------------------
# From an organisation with no mailbox to a real customer in the sidebar: company domains,
# reps (a token each, shown once), the first mailbox (found from its address), then the
# first customer. Each step calls the same use cases as the other pages.


def _start(request: Request, con: Console, status: int = 200, **ctx) -> HTMLResponse:
    rt = runtime_of(request)
    with read_only(rt.engine) as conn:
        org = orgs.org_settings(conn, con.org_id)
        users = [u for u in orgs.list_users(conn, con.org_id) if u["active"]]
        customer = people.first_customer(conn, con.org_id)
    rows = mailboxes.health_page(rt.engine, con.org_id)
    importing = bool(rows) and customer is None and any(r["health"] in ("pending", "importing") for r in rows)
    ctx.setdefault("values", {"owner": con.name})
    return render(
        request,
        "start.html",
        con,
        status=status,
        org=org,
        users=users,
        rows=rows,
        customer=customer,
        reps=[u for u in users if u["role"] != "admin"],
        refresh=importing,
        **ctx,
    )


@router.get("/start")
def start_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    return _start(request, con)


@router.post("/start/domains")
async def start_domains(request: Request, con: Console = Depends(console)) -> Response:
    return _save_org(request, con, await _form(request), ("name",), _start, "/admin/start")


@router.post("/start/reps")
async def start_reps(request: Request, con: Console = Depends(console)) -> Response:
    """One rep per line ("Name <address>" or an address): each added and given a token, shown once."""
    form = await _form(request)
    rt = runtime_of(request)
    invited: list[dict] = []
    try:
        wanted = [_rep_line(line) for line in str(form.get("reps", "")).splitlines() if line.strip()]
        if not wanted:
            raise Invalid("give at least one address, one per line", field="reps")
        for name, address in wanted:
            user = orgs.create_user(rt, con.actor, address, name=name, role="rep")
            invited.append(orgs.create_token(rt, con.actor, user["id"], "first sign-in"))
    except ServiceError as exc:  # the tokens already issued are shown all the same: they are shown once
        return _start(request, con, invited=invited, **refused(exc))
    return _start(
        request,
        con,
        invited=invited,
        message=f"{len(invited)} rep(s) added. Give each their token now: it is not shown again.",
    )


def _rep_line(line: str) -> tuple[str, str]:
    from email.utils import parseaddr

    name, address = parseaddr(line.strip())
    return name.strip(), orgs.clean_address(address or line, "reps")


@router.post("/start/mailbox")
async def start_mailbox(request: Request, con: Console = Depends(console)) -> Response:
    mb, shown = await _connect_imap(request, con, await _form(request))
    if mb is None:
        return _start(request, con, **shown)
    mailboxes.sync_now(runtime_of(request), con.actor, mb["id"], scheduler=scheduler_of(request))
    return back("/admin/start", "connected")


@router.post("/start/sidebar")
async def start_sidebar(request: Request, con: Console = Depends(console)) -> Response:
    """A sidebar token for the admin (replacing the previous one made here) in a link that
    signs this browser's sidebar in on the first customer."""
    await _form(request)
    rt = runtime_of(request)
    issued = orgs.replace_token(rt, con.actor, con.user_id, "sidebar (first run)")
    with read_only(rt.engine) as conn:
        customer = people.first_customer(conn, con.org_id)
    if customer is None:
        return _start(request, con, status=409, error="No customer yet: wait for the first import.")
    return _start(request, con, sidebar_link=f"/panel?email={quote(customer['email'])}#token={issued['token']}")


@router.get("/mailboxes/new")
def new_mailbox(request: Request, con: Console = Depends(console), kind: str = "imap") -> HTMLResponse:
    return _mailbox_form(request, con, kind=kind if kind in SOURCE_KINDS else "imap")


def _mailbox_form(request, con, status: int = 200, *, kind: str = "imap", **ctx) -> HTMLResponse:
    """The add-a-source page, one tab per kind. Form values come back on errors, never
    a password or a client secret."""
    rt = runtime_of(request)
    with read_only(rt.engine) as conn:
        users = [u for u in orgs.list_users(conn, con.org_id) if u["active"]]
    ctx.setdefault("values", {"port": 993, "security": "tls"} if kind == "imap" else {})
    return render(
        request,
        "mailbox_new.html",
        con,
        status=status,
        users=users,
        kind=kind,
        presets=IMAP_PRESETS,
        tenants=m365.tenants(rt.engine, con.org_id),
        workspaces=google.list_workspaces(rt.engine, con.org_id),
        **ctx,
    )


@router.post("/mailboxes/test")
async def test_mailbox(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in IMAP_FIELDS}
    values["check"] = form.get("check") == "1"
    password = str(form.get("password", ""))
    if values["host"]:
        steps = await run_in_threadpool(
            mailboxes.test_imap_connection,
            values["host"],
            values["port"],
            values["security"],
            values["username"] or values["email"] or values["owner"],
            password,
        )
        return _mailbox_form(request, con, kind="imap", values=values, steps=steps)
    try:  # no host: find it, and show where it was found
        found = await run_in_threadpool(
            mailboxes.find_imap_server, runtime_of(request), values["email"] or values["owner"], password
        )
    except ServiceError as exc:
        values.update(exc.facts.get("server") or {})
        return _mailbox_form(request, con, kind="imap", values=values, steps=exc.facts.get("steps"), **refused(exc))
    values.update({k: found[k] for k in ("host", "port", "security", "username")})
    return _mailbox_form(
        request,
        con,
        kind="imap",
        values=values,
        steps=found["steps"],
        message=f"Found {found['host']}:{found['port']} ({found['security']}) in {found['source']}."
        + (f" {found['note']}" if found["note"] else ""),
    )


async def _connect_imap(request: Request, con: Console, form: dict) -> tuple[dict | None, dict]:
    """The IMAP form's mailbox added (found from the address, or as typed): (mailbox, values),
    or (None, what to show again) when refused. Shared by the add page and the first-run page."""
    values = {k: str(form.get(k, "")).strip() for k in IMAP_FIELDS}
    values["check"] = form.get("check") == "1"
    try:
        port = int(values["port"] or 993)
    except ValueError:
        return None, {"values": values, "status": 422, "error": f"not a port number: {values['port']}"}
    try:
        mb = await run_in_threadpool(  # finding the server and the check reach the network
            lambda: mailboxes.connect_imap(
                runtime_of(request),
                con.actor,
                owner=values["owner"],
                email=values["email"] or None,
                password=str(form.get("password", "")),
                host=values["host"] or None,
                port=port,
                security=values["security"] or "tls",
                username=values["username"] or None,
                check=values["check"],
            )
        )
    except ServiceError as exc:
        shown = refused(exc)
        if exc.facts.get("steps"):  # the steps below say what failed: the flash need not repeat it
            shown["error"] = "Nothing was saved: the connection test below failed." + (
                f" {exc.reason}" if not values["host"] else ""
            )
        return None, {"values": values, "steps": exc.facts.get("steps"), **shown}
    return mb, values


@router.post("/mailboxes")
async def add_mailbox(request: Request, con: Console = Depends(console)) -> Response:
    mb, shown = await _connect_imap(request, con, await _form(request))
    if mb is None:
        return _mailbox_form(request, con, kind="imap", **shown)
    return back(f"/admin/mailboxes/{mb['id']}", "added_found" if mb["found"] else "added")


@router.post("/mailboxes/caldav")
async def add_caldav(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    values = {k: str(form.get(k, "")) for k in ("owner", "url", "username", "sync")}
    values["check"] = form.get("check") == "1"
    try:
        added = await run_in_threadpool(  # the check logs in to the CalDAV server
            lambda: calendars.add_caldav(
                runtime_of(request),
                con.actor,
                owner=values["owner"],
                url=values["url"],
                username=values["username"],
                password=str(form.get("password", "")),
                check=values["check"],
                sync=values["sync"] or "auto",
            )
        )
    except ServiceError as exc:
        return _mailbox_form(request, con, kind="caldav", values=values, **refused(exc))
    return back(f"/admin/mailboxes/{added['id']}", "caldav_added")


@router.post("/m365/tenants/{tenant_id}/remove")
async def remove_tenant(request: Request, tenant_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    try:
        m365.remove_tenant(runtime_of(request), con.actor, str(tenant_id))
    except ServiceError as exc:
        return _mailbox_form(request, con, kind="m365", values={}, **refused(exc))
    return RedirectResponse("/admin/mailboxes/new?kind=m365&ok=tenant_removed", status_code=303)


@router.post("/m365/tenants")
async def add_tenant(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in ("tenant_id", "client_id", "authority", "graph_url")}
    values["check"] = form.get("check") == "1"
    try:
        await run_in_threadpool(  # the check asks Microsoft Entra for a token
            lambda: m365.add_tenant(
                runtime_of(request),
                con.actor,
                tenant_id=values["tenant_id"],
                client_id=values["client_id"],
                secret=str(form.get("client_secret", "")),
                authority=values["authority"] or None,
                graph_url=values["graph_url"] or None,
                check=values["check"],
            )
        )
    except ServiceError as exc:
        return _mailbox_form(request, con, kind="m365", values=values, **refused(exc))
    return RedirectResponse("/admin/mailboxes/new?kind=m365&ok=tenant", status_code=303)


@router.post("/mailboxes/m365")
async def add_m365(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in ("tenant", "owner", "user")}
    values["imap"] = form.get("imap") == "1"
    all_reps = values["owner"] == "*"
    try:
        added = m365.add_tenant_mailboxes(
            runtime_of(request),
            con.actor,
            tenant=values["tenant"],
            owner=None if all_reps else values["owner"],
            all_reps=all_reps,
            user=values["user"] or None,
            imap=values["imap"],
        )
    except ServiceError as exc:
        return _mailbox_form(request, con, kind="m365", values=values, **refused(exc))
    if all_reps or len(added) != 1:
        return back("/admin", "m365_all")
    return back(f"/admin/mailboxes/{added[0]['id']}", "added")


GOOGLE_FIELDS = ("domain", "check_user")


@router.post("/google/test")
async def test_google(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    """The connection test for a key and an address, step by step; nothing is stored."""
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in GOOGLE_FIELDS}
    try:
        steps = await run_in_threadpool(  # asks Google for tokens
            google.connection_test, str(form.get("key", "")), values["check_user"]
        )
    except ServiceError as exc:
        return _mailbox_form(request, con, kind="google", values=values, **refused(exc))
    return _mailbox_form(request, con, kind="google", values=values, steps=steps)


@router.post("/google/workspaces")
async def add_workspace(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in GOOGLE_FIELDS}
    try:
        await run_in_threadpool(  # the connection test asks Google for tokens
            lambda: google.add_workspace(
                runtime_of(request),
                con.actor,
                key_json=str(form.get("key", "")),
                domain=values["domain"],
                check_user=values["check_user"] or None,
            )
        )
    except ServiceError as exc:
        shown = refused(exc)
        steps = exc.facts.get("steps")
        if steps:  # the steps below say what failed
            shown["error"] = "Nothing was saved: the connection test below failed."
        return _mailbox_form(request, con, kind="google", values=values, steps=steps, **shown)
    return RedirectResponse("/admin/mailboxes/new?kind=google&ok=workspace", status_code=303)


@router.post("/google/workspaces/{workspace_id}/remove")
async def remove_workspace(request: Request, workspace_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    try:
        google.remove_workspace(runtime_of(request), con.actor, str(workspace_id))
    except ServiceError as exc:
        return _mailbox_form(request, con, kind="google", values={}, **refused(exc))
    return RedirectResponse("/admin/mailboxes/new?kind=google&ok=workspace_removed", status_code=303)


@router.post("/mailboxes/google")
async def add_gmail(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in ("workspace", "owner", "user")}
    all_reps = values["owner"] == "*"
    try:
        added = google.add_workspace_mailboxes(
            runtime_of(request),
            con.actor,
            workspace=values["workspace"] or None,
            owner=None if all_reps else values["owner"],
            all_reps=all_reps,
            user=values["user"] or None,
        )["added"]
    except ServiceError as exc:
        return _mailbox_form(request, con, kind="google", values=values, **refused(exc))
    if all_reps or len(added) != 1:
        return back("/admin", "gmail_all")
    return back(f"/admin/mailboxes/{added[0]['id']}", "added")


@router.post("/google/sign-in")
async def start_google_sign_in(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    """A rep's own Google sign-in, first step: the page again with the consent link for the rep
    and the form to paste back the address the browser went to. Nothing is stored."""
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in ("owner", "client_id", "user")}
    try:
        started = google.start_rep_sign_in(
            runtime_of(request),
            con.actor,
            owner=values["owner"],
            client_id=values["client_id"],
            client_secret=str(form.get("client_secret", "")).strip(),
            user=values["user"] or None,
        )
    except ServiceError as exc:
        return _mailbox_form(request, con, kind="google", values=values, **refused(exc))
    return _mailbox_form(request, con, kind="google", values=values, sign_in=started)


@router.post("/google/sign-in/finish")
async def finish_google_sign_in(request: Request, con: Console = Depends(console)) -> Response:
    """Second step: the redirected address is exchanged for the rep's refresh token (stored encrypted)."""
    form = await _form(request)
    try:
        mb = await run_in_threadpool(  # asks Google's token endpoint
            lambda: google.finish_rep_sign_in(
                runtime_of(request),
                con.actor,
                state=str(form.get("state", "")),
                redirected=str(form.get("redirected_url", "")),
            )
        )
    except ServiceError as exc:
        return _mailbox_form(request, con, kind="google", values={}, **refused(exc))
    return back(f"/admin/mailboxes/{mb['id']}", "added")


@router.get("/mailboxes/{mailbox_id}")
def mailbox_page(request: Request, mailbox_id: int, con: Console = Depends(console)) -> HTMLResponse:
    mb = mailboxes.mailbox_detail(runtime_of(request).engine, con.org_id, mailbox_id)
    return render(
        request,
        "mailbox.html",
        con,
        mb=mb,
        folders=mb["folders"],
        unreadable=mb["unreadable"],
        skipped_items=mb["skipped_items"],
    )


@router.post("/mailboxes/{mailbox_id}/{action}")
async def mailbox_action(request: Request, mailbox_id: int, action: str, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    rt = runtime_of(request)
    simple = {
        "pause": (mailboxes.pause, "paused"),
        "resume": (mailboxes.resume, "resumed"),
        "resync": (mailboxes.resync, "resync"),
    }
    if action in simple:
        fn, ok = simple[action]
        fn(rt, con.actor, mailbox_id)
        return back(f"/admin/mailboxes/{mailbox_id}", ok)
    if action == "sync":
        mailboxes.sync_now(rt, con.actor, mailbox_id, scheduler=scheduler_of(request))
        return back(f"/admin/mailboxes/{mailbox_id}", "sync")
    if action == "password":
        mailboxes.set_password(rt, con.actor, mailbox_id, str(form.get("password", "")))
        return back(f"/admin/mailboxes/{mailbox_id}", "password")
    if action == "remove":
        mailboxes.remove(rt, con.actor, mailbox_id, purge=form.get("purge") == "1")
        return back("/admin", "removed")
    raise HTTPException(404, f"no action {action}")


# -- organisation ---------------------------------------------------------------------------


def _split(text: str) -> list[str]:
    return [p for p in text.replace(",", " ").split() if p]


def _org_page(request: Request, con: Console, status: int = 200, **ctx) -> HTMLResponse:
    with read_only(runtime_of(request).engine) as conn:
        org = orgs.org_settings(conn, con.org_id)
        smtp = digest.smtp_settings(conn, con.org_id)
    return render(
        request,
        "org.html",
        con,
        status=status,
        org=org,
        smtp=smtp,
        policies=CONTACT_POLICIES,
        levels=VISIBILITY_LEVELS,
        **ctx,
    )


@router.post("/smtp")
async def smtp_save(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    try:
        digest.set_smtp(
            runtime_of(request),
            con.actor,
            host=str(form.get("host", "")),
            port=form.get("port", ""),  # type: ignore[arg-type] - the service checks it is a number
            security=str(form.get("security", "starttls")),
            username=str(form.get("username", "")),
            password=str(form["password"]) if form.get("password") else None,  # empty: keep the stored one
            from_address=str(form.get("from_address", "")),
        )
    except ServiceError as exc:
        return _org_page(request, con, **refused(exc))
    return back("/admin/org", "smtp")


@router.post("/smtp/test")
async def smtp_test(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    to = str(form.get("to", "")).strip() or None
    try:
        result = digest.send_test(runtime_of(request), con.actor, to)
    except ServiceError as exc:
        return _org_page(request, con, **refused(exc))
    if result["ok"]:
        return _org_page(
            request, con, message=f"Test email sent: {result['detail']}.", steps=result["steps"], test_to=to
        )
    return _org_page(request, con, error=result["detail"], steps=result["steps"], test_to=to)


@router.get("/org")
def org_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    return _org_page(request, con)


@router.post("/org")
async def org_save(request: Request, con: Console = Depends(console)) -> Response:
    return _save_org(
        request,
        con,
        await _form(request),
        (
            "name",
            "contact_policy",
            "visibility",
            "backfill_days",
            "sync_interval_seconds",
            "calendar_past_days",
            "calendar_future_days",
            "phone_region",
        ),
        _org_page,
        "/admin/org",
    )


def _save_org(request: Request, con: Console, form: dict, fields: tuple[str, ...], page, url: str) -> Response:
    """The organisation's settings from a form (the fields given, and the domains when sent)."""
    changes = {k: form.get(k) for k in fields if form.get(k) not in (None, "")}
    if "internal_domains" in form:
        changes["internal_domains"] = _split(str(form["internal_domains"]))
    try:
        orgs.update_org(runtime_of(request), con.actor, changes)
    except ServiceError as exc:
        return page(request, con, **refused(exc))
    return back(url, "org")


# -- users ------------------------------------------------------------------------------------


@router.get("/users")
def users_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    return _users(request, con)


def _users(request: Request, con: Console, status: int = 200, **ctx) -> HTMLResponse:
    mb = Mailbox.__table__
    with read_only(runtime_of(request).engine) as conn:
        users = orgs.list_users(conn, con.org_id)
        # Deactivating pauses all of a user's mailboxes: the menu says how many.
        owned = dict(
            conn.execute(
                select(mb.c.owner_id, func.count()).where(mb.c.org_id == con.org_id).group_by(mb.c.owner_id)
            ).all()
        )
    return render(request, "users.html", con, status=status, users=users, mailboxes=owned, **ctx)


@router.post("/users")
async def users_add(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    try:
        orgs.create_user(
            runtime_of(request),
            con.actor,
            str(form.get("email", "")),
            name=str(form.get("name", "")),
            role=str(form.get("role", "rep")),
            aliases=_split(str(form.get("aliases", ""))),
        )
    except ServiceError as exc:
        return _users(request, con, **refused(exc))
    return back("/admin/users", "user")


@router.post("/users/{user_id}/{action}")
async def user_action(request: Request, user_id: int, action: str, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    rt = runtime_of(request)
    try:
        if action == "update":
            orgs.update_user(rt, con.actor, user_id, name=form.get("name"), role=form.get("role") or None)
            ok = "updated"
        elif action in ("deactivate", "reactivate"):
            orgs.update_user(rt, con.actor, user_id, active=action == "reactivate")
            ok = action + "d"
        elif action == "alias":
            orgs.add_alias(rt, con.actor, user_id, str(form.get("address", "")))
            ok = "alias"
        elif action == "token":
            issued = orgs.create_token(rt, con.actor, user_id, str(form.get("name", "")))
            return _users(
                request, con, new_token={"token": issued["token"], "email": issued["email"], "name": issued["name"]}
            )
        else:
            raise HTTPException(404, f"no action {action}")
    except ServiceError as exc:
        if isinstance(exc, NotFound):  # the user in the address: a plain 404, not the list again
            raise
        return _users(request, con, **refused(exc))
    return back("/admin/users", ok)


@router.post("/aliases/{alias_id}/delete")
async def alias_delete(request: Request, alias_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    orgs.remove_alias(runtime_of(request), con.actor, alias_id)
    return back("/admin/users", "alias_removed")


@router.post("/tokens/{token_id}/revoke")
async def token_revoke(request: Request, token_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    orgs.revoke_token(runtime_of(request), con.actor, token_id)
    return back("/admin/users", "revoked")


# -- rules ---------------------------------------------------------------------------------------


def _rules(request: Request, con: Console, status: int = 200, **ctx) -> HTMLResponse:
    with read_only(runtime_of(request).engine) as conn:
        ctx.update(
            rules=rules.list_rules(conn, con.org_id),
            users=orgs.list_users(conn, con.org_id),
            org=orgs.org_settings(conn, con.org_id),
        )
    return render(request, "rules.html", con, status=status, builtin_free=sorted(FREE_MAIL_DOMAINS), **ctx)


@router.get("/rules")
def rules_page(request: Request, con: Console = Depends(console)) -> HTMLResponse:
    return _rules(request, con)


@router.post("/rules")
async def rules_add(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    user = str(form.get("user_id", "") or "")
    try:
        result = rules.add_rule(
            runtime_of(request),
            con.actor,
            value=str(form.get("value", "")),
            kind=str(form.get("kind") or "") or None,
            user_id=int(user) if user.isdigit() else None,
        )
    except ServiceError as exc:
        return _rules(request, con, **refused(exc))
    return _rules(
        request,
        con,
        message=f"Rule added for {result['value']}: {result['removed_interactions']} stored interactions removed.",
    )


@router.post("/rules/settings")
async def rules_settings(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    changes = {
        "bulk_detection": form.get("bulk_detection") == "1",
        "free_mail_domains": None
        if form.get("free_mail_builtin") == "1"
        else _split(str(form.get("free_mail_domains", ""))),
    }
    try:
        orgs.update_org(runtime_of(request), con.actor, changes)
    except ServiceError as exc:
        return _rules(request, con, **refused(exc))
    return back("/admin/rules", "filters")


@router.post("/rules/{rule_id}/delete")
async def rules_delete(request: Request, rule_id: int, con: Console = Depends(console)) -> Response:
    await _form(request)
    rules.remove_rule(runtime_of(request), con.actor, rule_id)
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
        return export_download(
            privacy.export_person(runtime_of(request), con.actor, str(form.get("email", "")), fmt), fmt
        )
    except ServiceError as exc:
        return render(request, "privacy.html", con, **refused(exc))


@router.post("/privacy/erase")
async def privacy_erase(request: Request, con: Console = Depends(console)) -> Response:
    form = await _form(request)
    if form.get("confirm") != "1":
        return render(
            request, "privacy.html", con, status=422, error="Tick the box to confirm: erasing cannot be undone."
        )
    try:
        result = privacy.erase_person(runtime_of(request), con.actor, str(form.get("email", "")), confirm=True)
    except ServiceError as exc:
        return render(request, "privacy.html", con, **refused(exc))
    return render(request, "privacy.html", con, erased=result, message="Person erased.")


@router.get("/audit")
def audit_page(
    request: Request, con: Console = Depends(console), action: Optional[str] = None, before_id: Optional[int] = None
) -> HTMLResponse:
    with read_only(runtime_of(request).engine) as conn:
        events = audit.list_events(conn, con.org_id, limit=100, action=action or None, before_id=before_id)
    return render(request, "audit.html", con, events=events, action=action or "")
