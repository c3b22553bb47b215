"""The sidebar pages: the Outlook task pane, the standalone panel and the full
contact page, plus their static files (plain HTML/CSS/JS under app/web/).

Every page carries a Content-Security-Policy: scripts only from this origin
(and, in the Outlook pane, Office.js and MSAL.js from their CDNs), no inline
script, no plugins, framing only by Outlook (pane) or nobody else (panel).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

from app.api.deps import RuntimeDep
from app.api.schemas import EntraConfig, PanelConfig
from app.services.people import STAGES

# The pages and their files stay out of /docs; the one JSON route is in it.
router = APIRouter(tags=["sidebar"])
WEB = Path(__file__).resolve().parent.parent / "web"
STATIC = {
    "panel.js": "text/javascript",
    "panel.css": "text/css",
    "signin.js": "text/javascript",
    "legacy.js": "text/javascript",
    "dates.js": "text/javascript",
    "deals.js": "text/javascript",
    "board.js": "text/javascript",
    "board.css": "text/css",
    "tokenlink.js": "text/javascript",
}
OFFICE_JS = "https://appsforoffice.microsoft.com"
# The exact file, not the whole CDN: a CSP source with a path allows only it.
MSAL_CDN = "https://cdn.jsdelivr.net/npm/@azure/msal-browser@3.27.0/lib/msal-browser.min.js"
LOGIN = "https://login.microsoftonline.com"
# Where Outlook on the web and the new Outlook host add-in frames.
# Outlook's web hosts: the only cross-origin callers of the API (CORS) and, with
# their subdomains, the only pages that may frame the pane.
OUTLOOK_ORIGINS = (
    "https://outlook.office.com",
    "https://outlook.office365.com",
    "https://outlook.live.com",
    "https://outlook.cloud.microsoft",
)
OUTLOOK_FRAMERS = (*OUTLOOK_ORIGINS, "https://*.outlook.com", "https://*.office.com")


def _csp(*, outlook: bool) -> str:
    scripts = "'self'" + (f" {OFFICE_JS} {MSAL_CDN}" if outlook else "")
    framers = "'self' " + " ".join(OUTLOOK_FRAMERS) if outlook else "'self'"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' {LOGIN}" if outlook else "connect-src 'self'",
            f"frame-src {OFFICE_JS} {LOGIN}" if outlook else "frame-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "object-src 'none'",
            f"frame-ancestors {framers}",
        ]
    )


SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


@lru_cache(maxsize=8)
def _read(name: str) -> bytes:
    return (WEB / name).read_bytes()


def _page(name: str, *, outlook: bool) -> Response:
    return Response(
        _read(name),
        media_type="text/html; charset=utf-8",
        headers={**SECURITY, "Content-Security-Policy": _csp(outlook=outlook)},
    )


@router.get("/panel", response_class=HTMLResponse, include_in_schema=False)
def panel() -> Response:
    """The standalone panel: /panel?email=someone@example.com (add &full=1 for full width)."""
    return _page("panel.html", outlook=False)


@router.get("/home", response_class=HTMLResponse, include_in_schema=False)
def home() -> Response:
    """The rep's day: follow-ups due, tasks, meetings, deals needing attention."""
    return _page("panel.html", outlook=False)


@router.get("/panel/contact/{contact_id}", response_class=HTMLResponse, include_in_schema=False)
def contact_page(contact_id: int) -> Response:
    """A contact's full record on a page of its own."""
    return _page("panel.html", outlook=False)


@router.get("/panel/outlook", response_class=HTMLResponse, include_in_schema=False)
def outlook_pane() -> Response:
    """The Outlook task pane (the manifest's SourceLocation): the panel plus Office.js."""
    return _page("outlook.html", outlook=True)


@router.get("/panel/signin", response_class=HTMLResponse, include_in_schema=False)
def signin_dialog() -> Response:
    """Microsoft sign-in in an Office dialog, for hosts without nested app authentication."""
    return _page("signin.html", outlook=True)


@router.get("/panel/static/{name}", response_class=Response, include_in_schema=False)  # JS and CSS
def static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404, "not found")
    return Response(_read(name), media_type=f"{STATIC[name]}; charset=utf-8", headers=SECURITY)


def _signin_tenant(rt) -> str:
    """Where reps sign in: the one connected tenant (a single-tenant app registration,
    Entra's default, refuses /common and /organizations with AADSTS50194), or any
    work account when several organisations share this server (a multi-tenant app)."""
    from sqlalchemy import select

    from app.db import read_only
    from app.models import Organisation

    O = Organisation.__table__
    with read_only(rt.engine) as conn:
        tenants = (
            conn.execute(select(O.c.entra_tenant_id).where(O.c.entra_tenant_id.is_not(None)).limit(2)).scalars().all()
        )
    return tenants[0] if len(tenants) == 1 else "organizations"


@router.get("/panel/config.json")
def panel_config(rt: RuntimeDep, response: Response) -> PanelConfig:
    """What the pane needs before signing in: the lifecycle stages and the Entra app (no secrets)."""
    s = rt.settings
    entra = None
    if s.entra_client_id:
        entra = EntraConfig(
            client_id=s.entra_client_id,
            scope=s.entra_scope,
            scope_uri=f"api://{s.entra_client_id}/{s.entra_scope}",
            authority=s.entra_authority,
            tenant=_signin_tenant(rt),
        )
    response.headers.update(SECURITY)
    return PanelConfig(stages=list(STAGES), entra=entra)
