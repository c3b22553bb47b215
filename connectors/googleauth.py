"""Access tokens for Google Workspace through google-auth.

Domain-wide: a Google Cloud service account whose numeric client id a Workspace
admin authorised for domain-wide delegation with Threadline's scopes. For each
rep, google-auth signs a JWT (RS256, the service account's private key) with
`sub` = the rep's address and exchanges it at the key's `token_uri` for an
access token of that rep (RFC 7523; Google's "Using OAuth 2.0 for Server to
Server Applications", "Delegating domain-wide authority"). Nothing is
refreshed or rotated: every token is a new grant, so nothing is written back.

The service account key is the secret: it is passed in as the JSON text the
Google Cloud console gives, kept out of every repr and message.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from google.auth import exceptions as google_errors
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from connectors.base import AuthError, Fix, ThrottledError, TransientError

# Gmail's IMAP takes https://mail.google.com/ with XOAUTH2, or, for a service account with
# domain-wide delegation, gmail.imap_admin: with it every label and every message is shown
# over IMAP whatever the user set ("Show in IMAP", folder size limits), so All Mail, the one
# folder read (connectors/gmail.py), cannot be hidden by a rep's setting.
# (https://developers.google.com/gmail/imap/xoauth2-protocol, "Domain-wide delegation")
MAIL_SCOPE = "https://www.googleapis.com/auth/gmail.imap_admin"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.readonly"
SCOPES = (MAIL_SCOPE, CALENDAR_SCOPE)
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
TIMEOUT = 30
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServiceAccountKey:
    """What identifies a service account key, never the private key itself."""

    client_email: str
    client_id: str
    key_id: str
    project_id: str
    token_uri: str

    @property
    def domain_hint(self) -> str:
        return self.client_email.rpartition("@")[2]


def parse_key(text: str) -> tuple[dict, ServiceAccountKey]:
    """The service account's JSON key (as downloaded from the Google Cloud console):
    (the parsed key for google-auth, its identity). Raises AuthError(fix=SERVICE_KEY)
    for anything else: a key is the one secret here and its text is never repeated."""
    try:
        info = json.loads(text)
    except (TypeError, ValueError):
        raise AuthError("the service account key is not JSON", fix=Fix.SERVICE_KEY) from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise AuthError(
            "this is not a service account key (its JSON must have type service_account)", fix=Fix.SERVICE_KEY
        )
    missing = [k for k in ("client_email", "client_id", "private_key", "private_key_id") if not info.get(k)]
    if missing:
        raise AuthError(f"the service account key lacks {', '.join(missing)}", fix=Fix.SERVICE_KEY)
    token_uri = str(info.get("token_uri") or GOOGLE_TOKEN_URI)
    parts = urlsplit(token_uri)
    # The key says where its JWT goes: only to an https endpoint (or a loopback test server),
    # since the assertion lets whoever receives it act as every rep for an hour.
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise AuthError(f"the key's token_uri must be an https:// URL, not {token_uri!r}", fix=Fix.SERVICE_KEY)
    info["token_uri"] = token_uri
    return info, ServiceAccountKey(
        client_email=str(info["client_email"]).strip().lower(),
        client_id=str(info["client_id"]).strip(),
        key_id=str(info["private_key_id"]).strip(),
        project_id=str(info.get("project_id") or ""),
        token_uri=token_uri,
    )


def explain(exc: google_errors.GoogleAuthError, subject: str) -> AuthError | TransientError | ThrottledError:
    """A failed token request as the error the engine acts on. Google answers
    (https://developers.google.com/identity/protocols/oauth2/service-account#error-codes):
    unauthorized_client when the client id is not authorised for delegation or not
    for every scope asked; invalid_grant "Invalid email or User ID" for a user not in
    the domain, "Invalid JWT Signature." for a deleted or disabled key, and others
    about the JWT itself; admin_policy_enforced when a policy blocks a scope."""
    if isinstance(exc, google_errors.TransportError):
        return TransientError(f"cannot reach Google's sign-in service: {type(exc.__cause__ or exc).__name__}")
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error = str(data.get("error") or "")
    desc = str(data.get("error_description") or "")[:300]
    # Only Google's own error fields are repeated, never the answer's body: a key's token_uri is
    # whatever the admin uploaded, and an endpoint inside the network must not have its answer
    # shown back to whoever pointed the key at it.
    said = f"{error}: {desc}" if error else "an answer without an OAuth error code"
    if error in ("unauthorized_client", "access_denied"):
        return AuthError(
            f"Google refused a token for {subject}: domain-wide delegation is not granted for this service "
            f"account with every scope Threadline needs ({said})",
            fix=Fix.DELEGATION,
        )
    if error == "admin_policy_enforced":
        return AuthError(f"a Google Workspace policy blocks the scopes for {subject} ({said})", fix=Fix.DELEGATION)
    if error == "invalid_grant" and ("email" in desc.lower() or "user" in desc.lower()):
        return AuthError(f"{subject} is not a user of the Google Workspace domain ({said})", fix=Fix.NO_MAILBOX)
    if error in ("invalid_grant", "invalid_client", "disabled_client", "invalid_scope"):
        return AuthError(f"Google refused the service account key ({said})", fix=Fix.SERVICE_KEY)
    if error == "rate_limit_exceeded":  # before "retryable": google-auth retries a 429 too
        return ThrottledError(f"Google's sign-in service asked to slow down ({said})", retry_after=30)
    if getattr(exc, "retryable", False) or error in ("temporarily_unavailable", "server_error", "internal_failure"):
        return TransientError(f"Google's sign-in service is unavailable ({said})")
    return AuthError(f"Google refused the token request ({said or 'no token'})", fix=Fix.SERVICE_KEY)


class ServiceAccountTokenSource:
    """Access tokens of one Workspace user through the service account (domain-wide delegation).

    `token()` is what the IMAP connector calls for XOAUTH2; google-auth keeps the
    token until shortly before it expires, so a long run asks Google again only then."""

    updated_secret = None  # a service account key never rotates by itself

    def __init__(self, key_text: str, subject: str, scopes=(MAIL_SCOPE,)):
        info, self.key = parse_key(key_text)
        self.subject = subject.strip().lower()
        self.scopes = list(scopes)
        try:
            self._credentials = service_account.Credentials.from_service_account_info(
                info, scopes=self.scopes, subject=self.subject
            )
        except (ValueError, TypeError) as exc:  # a private key that does not load
            raise AuthError(
                f"the service account key's private key is unreadable ({type(exc).__name__})", fix=Fix.SERVICE_KEY
            ) from None
        self._lock = threading.Lock()
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"ServiceAccountTokenSource({self.key.client_email} as {self.subject})"

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            creds = self._credentials
            if force_refresh or not creds.valid:
                try:
                    creds.refresh(Request(self._session))
                except google_errors.GoogleAuthError as exc:
                    raise explain(exc, self.subject) from None
                except requests.RequestException as exc:
                    raise TransientError(f"cannot reach Google's sign-in service: {type(exc).__name__}") from None
            return str(creds.token)


# -- the connection test --------------------------------------------------------
# Steps of the test, in order; each names what the admin fixes when it fails.
STEP_KEY = "key"  # the JSON key is a usable service account key
STEP_TOKEN = "token"  # Google gives a token for the key (signature, key not deleted)
STEP_DELEGATION = "delegation"  # the client id is authorised for domain-wide delegation
STEP_SCOPES = "scopes"  # ... with every scope Threadline asks for
STEP_USER = "user"  # the address is a user of the domain


def check(key_text: str, user: str, scopes=SCOPES) -> list[dict]:
    """Ask Google for a token of `user` scope by scope, to tell which step fails.

    Google gives one answer, unauthorized_client, whether the client id is missing
    from domain-wide delegation or lacks one of the scopes asked: a scope asked
    alone that succeeds while another fails tells the two apart."""
    steps: list[dict] = []

    def step(name: str, ok: bool | None, detail: str = "", fix: str | None = None) -> None:
        steps.append({"step": name, "ok": ok, "detail": detail, "fix": fix})

    try:
        _, key = parse_key(key_text)
    except AuthError as exc:
        step(STEP_KEY, False, str(exc), exc.fix)
        return steps
    step(STEP_KEY, True, f"{key.client_email} (client id {key.client_id})")
    results: dict[str, AuthError | TransientError | ThrottledError | None] = {}
    for scope in scopes:
        try:
            ServiceAccountTokenSource(key_text, user, [scope]).token()
            results[scope] = None
        except (AuthError, TransientError, ThrottledError) as exc:
            results[scope] = exc
    errors = [e for e in results.values() if e is not None]
    transient = next((e for e in errors if not isinstance(e, AuthError)), None)
    if transient is not None:
        step(STEP_TOKEN, False, str(transient), None)
        return steps
    by_fix = {e.fix for e in errors}
    if Fix.SERVICE_KEY in by_fix:
        step(STEP_TOKEN, False, str(next(e for e in errors if e.fix == Fix.SERVICE_KEY)), Fix.SERVICE_KEY)
        return steps
    step(STEP_TOKEN, True, "Google accepted the signed request")
    if Fix.NO_MAILBOX in by_fix:
        step(STEP_DELEGATION, None, "not known until the user is right")
        step(STEP_USER, False, str(next(e for e in errors if e.fix == Fix.NO_MAILBOX)), Fix.NO_MAILBOX)
        return steps
    refused = [scope for scope, e in results.items() if e is not None]
    if refused and len(refused) == len(results):
        step(
            STEP_DELEGATION,
            False,
            f"client id {key.client_id} is not authorised for domain-wide delegation with {', '.join(refused)}",
            Fix.DELEGATION,
        )
        return steps
    step(STEP_DELEGATION, True, f"client id {key.client_id} is authorised")
    if refused:
        step(STEP_SCOPES, False, f"not granted: {', '.join(refused)}", Fix.DELEGATION)
        return steps
    step(STEP_SCOPES, True, ", ".join(results))
    step(STEP_USER, True, f"{user} is a user of the domain")
    return steps


# -- one rep's own sign-in (installed app, PKCE) ---------------------------------
# A rep without a Workspace admin signs in through a "Desktop app" OAuth client of the
# organisation's Google Cloud project: Google's installed-app flow with PKCE (S256), the
# code coming back to a loopback redirect the rep copies from the browser's address bar
# (https://developers.google.com/identity/protocols/oauth2/native-app). Not the device flow:
# Google's limited-input device flow accepts only a short list of scopes, and neither Gmail's
# nor Calendar's is on it (invalid_scope; docs/architecture.md). google-auth-oauthlib makes the
# URL, the verifier and the exchange; google-auth refreshes.
# requests-oauthlib logs the token request's body and the tokens obtained at DEBUG: a secret
# never reaches a log, whatever level the process logs at.
for _name in ("requests_oauthlib", "oauthlib"):
    logging.getLogger(_name).setLevel(logging.WARNING)
USER_MAIL_SCOPE = "https://mail.google.com/"  # Gmail's IMAP with XOAUTH2 for a user's own grant
EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email"
USER_SCOPES = (USER_MAIL_SCOPE, CALENDAR_SCOPE, "openid", EMAIL_SCOPE)
GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
# Desktop clients may redirect to any port of the loopback address without registering it;
# nothing needs to listen there: the rep copies the URL the browser could not open.
LOOPBACK_REDIRECT = "http://127.0.0.1:8749/"


def _endpoint(url: str | None, default: str, what: str) -> str:
    url = (url or default).strip()
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise AuthError(f"Google's {what} must be an https:// URL, not {url!r}", fix=Fix.GOOGLE_SIGN_IN)
    return url


def _flow(client_id: str, client_secret: str, auth_uri: str, token_uri: str, **kwargs):
    from google_auth_oauthlib.flow import Flow

    config = {
        "installed": {
            "client_id": client_id,
            "client_secret": client_secret,
            "auth_uri": auth_uri,
            "token_uri": token_uri,
            "redirect_uris": [LOOPBACK_REDIRECT],
        }
    }
    return Flow.from_client_config(config, scopes=list(USER_SCOPES), redirect_uri=LOOPBACK_REDIRECT, **kwargs)


@dataclass(frozen=True)
class PendingSignIn:
    """What the second step needs of the first: the consent URL for the rep, the state
    Google sends back, and the PKCE verifier (a secret until the code is exchanged)."""

    url: str
    state: str
    code_verifier: str = field(repr=False)


@dataclass(frozen=True)
class SignedIn:
    refresh_token: str = field(repr=False)
    email: str  # who signed in (from the ID token the token endpoint gave), "" if Google did not say
    scopes: tuple[str, ...]


def start_installed_sign_in(
    client_id: str,
    client_secret: str,
    *,
    login_hint: str = "",
    state: str | None = None,
    code_verifier: str | None = None,
    auth_uri: str | None = None,
    token_uri: str | None = None,
) -> PendingSignIn:
    """The consent URL (offline access, consent prompt so a refresh token is always issued,
    PKCE S256 from code_verifier, or one google-auth-oauthlib makes) for the rep to open."""
    flow = _flow(
        client_id,
        client_secret,
        _endpoint(auth_uri, GOOGLE_AUTH_URI, "authorization endpoint"),
        _endpoint(token_uri, GOOGLE_TOKEN_URI, "token endpoint"),
        state=state,
        code_verifier=code_verifier,
    )
    extra = {"login_hint": login_hint} if login_hint else {}
    url, given_state = flow.authorization_url(access_type="offline", prompt="consent", **extra)
    return PendingSignIn(url, given_state, flow.code_verifier)


def code_from(redirected: str, state: str) -> str:
    """The authorization code from what the rep pasted: the whole redirected URL (whose state
    must be ours) or the code alone. Google's refusal (access_denied) is an AuthError."""
    from urllib.parse import parse_qs

    text = (redirected or "").strip()
    if not text:
        raise AuthError("paste the address the browser went to after the consent (or its code)")
    if "://" not in text and "=" not in text:
        return text
    query = parse_qs(urlsplit(text).query if "://" in text else text)
    if query.get("error"):
        raise AuthError(
            f"Google did not give access ({query['error'][0]}): the rep must allow every permission asked",
            fix=Fix.GOOGLE_SIGN_IN,
        )
    if query.get("state", [""])[0] != state:
        raise AuthError("that address belongs to another sign-in (its state differs): start again")
    code = query.get("code", [""])[0]
    if not code:
        raise AuthError("that address has no code: copy the whole address the browser went to")
    return code


def finish_installed_sign_in(
    client_id: str,
    client_secret: str,
    *,
    code: str,
    code_verifier: str,
    state: str,
    auth_uri: str | None = None,
    token_uri: str | None = None,
) -> SignedIn:
    """Exchange the code (with the PKCE verifier) at Google's token endpoint."""
    from google.auth import jwt as google_jwt
    from oauthlib.oauth2.rfc6749.errors import OAuth2Error

    flow = _flow(
        client_id,
        client_secret,
        _endpoint(auth_uri, GOOGLE_AUTH_URI, "authorization endpoint"),
        _endpoint(token_uri, GOOGLE_TOKEN_URI, "token endpoint"),
        state=state,
        code_verifier=code_verifier,
    )
    try:
        token = flow.fetch_token(code=code)
    except OAuth2Error as exc:
        said = f"{exc.error}: {exc.description or ''}".strip(": ")[:300]
        raise AuthError(f"Google refused the sign-in code ({said})", fix=Fix.GOOGLE_SIGN_IN) from None
    except Warning as exc:  # oauthlib: the rep granted fewer scopes than asked (granular consent)
        token = getattr(exc, "token", None) or {}
    except requests.RequestException as exc:
        raise TransientError(f"cannot reach Google's sign-in service: {type(exc).__name__}") from None
    granted = (
        tuple(str(token.get("scope") or "").split())
        if isinstance(token.get("scope"), str)
        else tuple(token.get("scope") or ())
    )
    missing = [s for s in (USER_MAIL_SCOPE, CALENDAR_SCOPE) if granted and s not in granted]
    if missing:
        raise AuthError(
            f"the rep did not allow {', '.join(missing)}: sign in again and leave every permission ticked",
            fix=Fix.GOOGLE_SIGN_IN,
        )
    if not token.get("refresh_token"):
        raise AuthError(
            "Google gave no refresh token: sign in again (the consent must be shown)", fix=Fix.GOOGLE_SIGN_IN
        )
    email = ""
    if token.get("id_token"):
        # Straight from the token endpoint over TLS, so its signature need not be checked
        # (OpenID Connect Core 3.1.3.7); only the address is read.
        claims = google_jwt.decode(token["id_token"], verify=False)
        if claims.get("email_verified") in (True, "true"):
            email = str(claims.get("email") or "").strip().lower()
    return SignedIn(str(token["refresh_token"]), email, granted)


def installed_secret(client_secret: str, refresh_token: str) -> str:
    """The mailbox's secret for a rep's own sign-in (stored encrypted)."""
    return json.dumps({"client_secret": client_secret, "refresh_token": refresh_token})


def explain_refresh(exc: google_errors.GoogleAuthError, subject: str) -> AuthError | TransientError | ThrottledError:
    """A refused refresh of a rep's own grant. invalid_grant "Token has been expired or
    revoked." is a revoked grant, a password change on a Gmail scope, a refresh token
    unused for six months or a test-mode app's seven-day limit
    (https://developers.google.com/identity/protocols/oauth2#expiration): the rep signs in again."""
    if isinstance(exc, google_errors.TransportError):
        return TransientError(f"cannot reach Google's sign-in service: {type(exc.__cause__ or exc).__name__}")
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error = str(data.get("error") or "")
    desc = str(data.get("error_description") or "")[:300]
    # Never the answer's body, as in explain(): the token endpoint is the admin's to set.
    said = f"{error}: {desc}" if error else "an answer without an OAuth error code"
    if error == "invalid_grant":
        return AuthError(f"{subject}'s Google sign-in was revoked or has expired ({said})", fix=Fix.GOOGLE_SIGN_IN)
    if error == "rate_limit_exceeded":
        return ThrottledError(f"Google's sign-in service asked to slow down ({said})", retry_after=30)
    if getattr(exc, "retryable", False) or error in ("temporarily_unavailable", "server_error", "internal_failure"):
        return TransientError(f"Google's sign-in service is unavailable ({said})")
    return AuthError(f"Google refused {subject}'s sign-in ({said or 'no token'})", fix=Fix.GOOGLE_SIGN_IN)


class RefreshTokenSource:
    """Access tokens from a rep's own refresh token (the installed-app sign-in).

    Google may answer a refresh with a new refresh token; the old one may then stop working,
    so `updated_secret` holds the new secret and the engine stores it (encrypted)."""

    def __init__(self, secret: str, client_id: str, subject: str, *, token_uri: str | None = None):
        from google.oauth2.credentials import Credentials

        try:
            data = json.loads(secret or "")
            refresh_token = str(data["refresh_token"])
        except (ValueError, KeyError, TypeError):
            raise AuthError("the stored Google sign-in is unreadable", fix=Fix.GOOGLE_SIGN_IN) from None
        self.subject = subject.strip().lower()
        self._client_secret = str(data.get("client_secret") or "")
        self._refresh_token = refresh_token
        self._credentials = Credentials(
            token=None,
            refresh_token=refresh_token,
            token_uri=_endpoint(token_uri, GOOGLE_TOKEN_URI, "token endpoint"),
            client_id=client_id,
            client_secret=self._client_secret,
        )
        self.updated_secret: str | None = None
        self._lock = threading.Lock()
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"RefreshTokenSource({self.subject})"

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            creds = self._credentials
            if force_refresh or not creds.valid:
                try:
                    creds.refresh(Request(self._session))
                except google_errors.GoogleAuthError as exc:
                    raise explain_refresh(exc, self.subject) from None
                except requests.RequestException as exc:
                    raise TransientError(f"cannot reach Google's sign-in service: {type(exc).__name__}") from None
                if creds.refresh_token and creds.refresh_token != self._refresh_token:  # rotated: keep the new one
                    self._refresh_token = creds.refresh_token
                    self.updated_secret = installed_secret(self._client_secret, creds.refresh_token)
            return str(creds.token)
