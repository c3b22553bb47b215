"""Validate Microsoft Entra ID (v2.0) access tokens and map them to Threadline users.

The Outlook add-in gets the token through nested app authentication (MSAL.js)
and sends it as a bearer token; nothing else is trusted. The checks:

- the token's tenant (`tid`) belongs to an organisation (Organisation.entra_tenant_id),
  looked up *before* any key is fetched, so strangers cannot make us fetch keys;
- the signature, RS256 only, with the key named by `kid` from that tenant's
  JWKS (`{authority}/{tid}/discovery/v2.0/keys`, cached per tenant);
- `aud` is the API's client id (or `api://<client id>`), `iss` is
  `{authority}/{tid}/v2.0`, `exp`/`nbf` (with a minute of leeway), and `scp`
  holds the API scope;
- `oid` maps to User.entra_object_id in that organisation; the first sign-in
  binds the user by `preferred_username` (or `email`/`upn`) once.

Errors never contain the token.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import jwt
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from app.db import read_only
from app.models import Organisation, User
from app.settings import Settings

O, U = Organisation.__table__, User.__table__
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
LEEWAY_SECONDS = 60
JWKS_TTL_SECONDS = 3600


class EntraError(Exception):
    """The token is not acceptable; the message is safe to show (no token data)."""


@dataclass(frozen=True)
class EntraUser:
    user_id: int
    org_id: int
    email: str
    role: str


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


_clients: dict[str, tuple[float, jwt.PyJWKClient]] = {}
_clients_lock = threading.Lock()


def _jwks_client(url: str) -> jwt.PyJWKClient:
    """One cached key client per tenant JWKS URL; keys are refetched when a kid is unknown
    (PyJWKClient does that) and at the latest after JWKS_TTL_SECONDS."""
    now = time.monotonic()
    with _clients_lock:
        hit = _clients.get(url)
        if hit and now - hit[0] < JWKS_TTL_SECONDS:
            return hit[1]
        client = jwt.PyJWKClient(url, cache_keys=True, lifespan=JWKS_TTL_SECONDS, timeout=10)
        _clients[url] = (now, client)
        return client


def clear_key_cache() -> None:
    with _clients_lock:
        _clients.clear()


def validate(token: str, settings: Settings) -> dict:
    """The verified claims of an Entra access token for this API, or EntraError."""
    if not settings.entra_client_id:
        raise EntraError("Microsoft sign-in is not configured on this server")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise EntraError("malformed token") from exc
    if header.get("alg") != "RS256":
        raise EntraError("token algorithm not allowed")
    tid = unverified.get("tid")
    if not isinstance(tid, str) or not _GUID.match(tid):
        raise EntraError("token has no valid tenant id")
    if not header.get("kid"):
        raise EntraError("token has no key id")
    return _verify(token, tid, settings)


def _verify(token: str, tid: str, settings: Settings) -> dict:
    authority = settings.entra_authority.rstrip("/")
    try:
        key = _jwks_client(f"{authority}/{tid}/discovery/v2.0/keys").get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError as exc:
        raise EntraError("could not fetch the tenant's signing keys") from exc
    except jwt.PyJWTError as exc:
        raise EntraError("unknown signing key") from exc
    client_id = settings.entra_client_id
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=[client_id, f"api://{client_id}"],
            issuer=f"{authority}/{tid}/v2.0",
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "nbf", "iat", "aud", "iss", "tid", "oid"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise EntraError("token expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise EntraError("token not yet valid") from exc
    except jwt.InvalidAudienceError as exc:
        raise EntraError("token is for another application") from exc
    except jwt.InvalidIssuerError as exc:
        raise EntraError("token issuer not accepted") from exc
    except jwt.InvalidSignatureError as exc:
        raise EntraError("token signature invalid") from exc
    except jwt.PyJWTError as exc:
        raise EntraError("token rejected") from exc
    if claims.get("tid") != tid:
        raise EntraError("token tenant mismatch")
    scopes = str(claims.get("scp") or "").split()
    if settings.entra_scope not in scopes:
        raise EntraError("token lacks the required scope")
    return claims


def authenticate(engine: Engine, settings: Settings, token: str) -> EntraUser:
    """Validate the token and find (or, on first sign-in, bind) the Threadline user."""
    if not settings.entra_client_id:
        raise EntraError("Microsoft sign-in is not configured on this server")
    try:
        tid = jwt.decode(token, options={"verify_signature": False}).get("tid")
    except jwt.PyJWTError as exc:
        raise EntraError("malformed token") from exc
    if not isinstance(tid, str) or not _GUID.match(tid):
        raise EntraError("token has no valid tenant id")
    with read_only(engine) as conn:
        org_id = conn.execute(select(O.c.id).where(O.c.entra_tenant_id == tid)).scalar()
    if org_id is None:
        # Checked before any key is fetched: unknown tenants cost us nothing.
        raise EntraError("this Microsoft 365 tenant is not connected to Threadline")
    claims = validate(token, settings)
    oid = str(claims["oid"])
    cols = (U.c.id, U.c.org_id, U.c.email, U.c.role, U.c.active)
    with read_only(engine) as conn:
        row = conn.execute(select(*cols).where(U.c.org_id == org_id, U.c.entra_object_id == oid)).first()
    if row is None:
        # First sign-in: bind the account by its sign-in name, once (a write, so only now).
        login = next(
            (
                str(claims[k]).strip().lower()
                for k in ("preferred_username", "email", "upn")
                if claims.get(k) and "@" in str(claims[k])
            ),
            None,
        )
        if login is None:
            raise EntraError("token names no user")
        with engine.begin() as conn:
            row = conn.execute(
                select(*cols).where(U.c.org_id == org_id, U.c.email == login, U.c.entra_object_id.is_(None))
            ).first()
            if row is None:
                raise EntraError("no Threadline user for this Microsoft account")
            conn.execute(update(U).where(U.c.id == row.id, U.c.entra_object_id.is_(None)).values(entra_object_id=oid))
    if not row.active:
        raise EntraError("this user is deactivated")
    return EntraUser(row.id, row.org_id, row.email, row.role)
