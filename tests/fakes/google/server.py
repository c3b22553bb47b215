"""A fake Google OAuth 2.0 token endpoint (service-account JWT grants with
domain-wide delegation) and tokeninfo endpoint, on a loopback HTTP port.

What it checks, and the documentation for each behaviour, is in README.md.
The token endpoint verifies the grant the way Google documents it; the
tokeninfo endpoint answers in Google's shape so that a Dovecot configured with
`passdb { driver = oauth2 }` and Google's example settings (`tokeninfo_url`,
`username_attribute = email`) accepts the tokens it issued for XOAUTH2.
Tests play the Workspace admin: create service accounts and keys, authorise a
client id for delegation with scopes, add, suspend and remove users.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.google.calendar import CALENDAR_PATH, FakeCalendar
from tests.servers import LOOPBACK

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
REVOKED = "Token has been expired or revoked."
# The JWT's aud is Google's token endpoint whatever URL the request goes to (the
# documented value; google-auth sends it even when the key's token_uri differs).
AUDIENCE = "https://oauth2.googleapis.com/token"
MAX_LIFETIME = 3600  # "The maximum ... is 1 hour after the issued time"
CLOCK_SKEW = 300  # what Google tolerates of a client's clock (the error asks for "a clock with skew")

# Error texts as Google gives them (README.md cites where).
UNAUTHORIZED = (
    "Client is unauthorized to retrieve access tokens using this method, or client not authorized "
    "for any of the scopes requested."
)
SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class ServiceAccount:
    client_email: str
    client_id: str
    project_id: str
    keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)  # private_key_id -> public key
    disabled: bool = False


@dataclass
class Consent:
    """An authorization code waiting for its exchange."""

    client_id: str
    redirect_uri: str
    challenge: str
    email: str
    scopes: tuple[str, ...]
    expires: float
    used: bool = False


@dataclass
class Grant:
    """A refresh token of a user's consent to a Desktop client."""

    client_id: str
    email: str
    scopes: tuple[str, ...]
    revoked: bool = False


@dataclass
class Issued:
    token: str
    client_id: str
    email: str
    user_id: str
    scopes: tuple[str, ...]
    expires: float


class FakeGoogle:
    def __init__(self, domain: str = "ourco.example"):
        self.domain = domain
        self.accounts: dict[str, ServiceAccount] = {}  # client_email ->
        self.delegation: dict[str, set[str]] = {}  # client id -> scopes an admin authorised
        self.users: dict[str, str] = {}  # address -> numeric user id
        self.suspended: set[str] = set()
        self.tokens: dict[str, Issued] = {}
        self.grants: list[dict] = []  # every JWT grant's verified claims (or the error it got)
        self.lifetime = 3599
        self.faults: list[tuple[int, dict]] = []  # answers given to the next token requests, first first
        self.clients: dict[str, str] = {}  # Desktop OAuth clients: client id -> client secret
        self.consents: dict[str, Consent] = {}  # authorization code ->
        self.refresh_tokens: dict[str, Grant] = {}
        self.rotate = False  # refreshes answer a new refresh token, and the old one stops working
        self.exchanges: list[dict] = []  # every code / refresh grant request (secrets left out) and its answer
        self.calendar = FakeCalendar(self)  # the Calendar API, served on the same port
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> "FakeGoogle":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
                if urlsplit(self.path).path != "/token":
                    return self._send(404, {"error": "not_found"})
                basic = self.headers.get("Authorization", "")
                if basic.startswith("Basic "):  # client_secret_basic (RFC 6749 2.3.1), as requests-oauthlib sends it
                    user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
                    form.setdefault("client_id", unquote(user))
                    form.setdefault("client_secret", unquote(password))
                status, body = fake.token_request(form)
                self._send(status, body)

            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path.startswith(CALENDAR_PATH) and parts.path.endswith("/events"):
                    calendar_id = unquote(parts.path[len(CALENDAR_PATH) : -len("/events")])
                    status, body, headers = fake.calendar.events_list(
                        calendar_id, query, self.headers.get("Authorization", "")
                    )
                    return self._send(status, body, headers)
                if parts.path != "/tokeninfo":
                    return self._send(404, {"error": "not_found"})
                status, body = fake.tokeninfo(query.get("access_token", ""))
                self._send(status, body)

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-google", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self) -> None:
        with self._lock:
            self.accounts.clear()
            self.delegation.clear()
            self.users.clear()
            self.suspended.clear()
            self.tokens.clear()
            self.grants.clear()
            self.clients.clear()
            self.consents.clear()
            self.refresh_tokens.clear()
            self.exchanges.clear()
            self.rotate = False
            self.faults.clear()
            self.lifetime = 3599
        self.calendar.reset()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def calendar_url(self) -> str:
        """The Calendar API's base URL (Google's: https://www.googleapis.com/calendar/v3)."""
        return f"{self.url}{CALENDAR_PATH.removesuffix('/calendars/')}"

    @property
    def auth_uri(self) -> str:
        """Google's is https://accounts.google.com/o/oauth2/auth (the consent page)."""
        return f"{self.url}/o/oauth2/auth"

    @property
    def tokeninfo_url(self) -> str:
        return f"{self.url}/tokeninfo?access_token="

    # -- what an admin does ---------------------------------------------------------
    def service_account(self, name: str = "threadline", project: str = "threadline-test") -> str:
        """Create a service account and a key for it; returns the key as the JSON text
        the Google Cloud console downloads."""
        email = f"{name}@{project}.iam.gserviceaccount.com"
        with self._lock:
            account = self.accounts.get(email)
            if account is None:
                account = ServiceAccount(email, str(10**20 + secrets.randbelow(10**20)), project)
                self.accounts[email] = account
        return self.new_key(email)

    def new_key(self, client_email: str) -> str:
        account = self.accounts[client_email]
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        with self._lock:
            account.keys[key_id] = private.public_key()
        return json.dumps(
            {
                "type": "service_account",
                "project_id": account.project_id,
                "private_key_id": key_id,
                "private_key": pem,
                "client_email": account.client_email,
                "client_id": account.client_id,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": self.token_uri,
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "universe_domain": "googleapis.com",
            }
        )

    def delete_key(self, key_json: str) -> None:
        key = json.loads(key_json)
        with self._lock:
            self.accounts[key["client_email"]].keys.pop(key["private_key_id"], None)

    def delegate(self, client_id: str, scopes) -> None:
        """Admin console > Security > API controls > Domain-wide delegation: add (or edit) a client id."""
        with self._lock:
            self.delegation[str(client_id)] = set(scopes)

    def undelegate(self, client_id: str) -> None:
        """Delete the client id from domain-wide delegation. Tokens already issued stay valid
        until they expire, as Google's do; new grants are refused."""
        with self._lock:
            self.delegation.pop(str(client_id), None)

    def add_user(self, email: str) -> None:
        with self._lock:
            self.users.setdefault(email.lower(), str(10**20 + secrets.randbelow(10**20)))

    def suspend(self, email: str) -> None:
        with self._lock:
            self.suspended.add(email.lower())

    def expire_tokens(self) -> None:
        with self._lock:
            for issued in self.tokens.values():
                issued.expires = 0

    # -- a rep's own sign-in (installed app, PKCE) ------------------------------------
    def desktop_client(self) -> tuple[str, str]:
        """Google Cloud console > Clients > Create client > Desktop app: (client id, secret)."""
        client_id = f"{secrets.randbelow(10**12)}-{secrets.token_hex(16)}.apps.googleusercontent.com"
        secret = "GOCSPX-" + secrets.token_urlsafe(21)
        with self._lock:
            self.clients[client_id] = secret
        return client_id, secret

    def consent(self, url: str, email: str, *, allow: bool = True, drop_scopes=()) -> str:
        """The rep opens the consent URL in a browser, signs in as `email` and allows (or
        denies) access: returns the address the browser is sent to, as Google builds it."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert urlsplit(url).path == "/o/oauth2/auth", url
        client_id, redirect = query.get("client_id", ""), query.get("redirect_uri", "")
        # What Google checks before showing the consent screen (error pages, no redirect).
        assert client_id in self.clients, "Error 401: invalid_client"
        loopback = urlsplit(redirect)
        assert loopback.scheme == "http" and loopback.hostname in ("127.0.0.1", "localhost", "::1"), redirect
        assert query.get("response_type") == "code"
        assert query.get("code_challenge_method") == "S256" and len(query.get("code_challenge", "")) == 43
        assert query.get("access_type") == "offline"
        scopes = tuple(s for s in query.get("scope", "").split() if s not in drop_scopes)
        back = {"state": query.get("state", "")}
        if not allow:
            return f"{redirect}?{urlencode({'error': 'access_denied', **back})}"
        assert email.lower() in self.users, f"{email} has no Google account here"
        code = "4/0" + secrets.token_urlsafe(40)
        with self._lock:
            self.consents[code] = Consent(
                client_id, redirect, query["code_challenge"], email.lower(), scopes, time.time() + 600
            )
        return f"{redirect}?{urlencode({**back, 'code': code, 'scope': ' '.join(scopes)})}"

    def revoke(self, email: str) -> None:
        """The rep removes the app's access (myaccount.google.com > Security > Third-party
        connections), or an admin resets their password: every refresh token of theirs stops working."""
        with self._lock:
            for grant in self.refresh_tokens.values():
                if grant.email == email.lower():
                    grant.revoked = True

    def _issue(self, client_id: str, email: str, scopes: tuple[str, ...]) -> str:
        token = "ya29." + secrets.token_urlsafe(32)
        self.tokens[token] = Issued(token, client_id, email, self.users[email], scopes, time.time() + self.lifetime)
        return token

    def _id_token(self, client_id: str, email: str) -> str:
        import jwt

        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": client_id,
            "azp": client_id,
            "sub": self.users[email],
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        return jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")  # unchecked by the client (OIDC 3.1.3.7)

    def _client_ok(self, form: dict) -> bool:
        secret = self.clients.get(form.get("client_id", ""))
        return secret is not None and secrets.compare_digest(secret, form.get("client_secret", ""))

    def _code_grant(self, form: dict) -> tuple[int, dict]:
        def error(code: str, description: str, status: int = 400):
            return status, {"error": code, "error_description": description}

        if not self._client_ok(form):
            return error("invalid_client", "Unauthorized", 401)
        with self._lock:
            consent = self.consents.get(form.get("code", ""))
            if consent is None or consent.used or consent.expires < time.time():
                return error("invalid_grant", "Bad Request")  # Google's answer for a used or unknown code
            if consent.client_id != form["client_id"] or consent.redirect_uri != form.get("redirect_uri"):
                return error("invalid_grant", "Bad Request")
            verifier = form.get("code_verifier", "")
            if not verifier:
                return error("invalid_grant", "Missing code verifier.")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if not secrets.compare_digest(digest, consent.challenge):
                return error("invalid_grant", "Invalid code verifier.")
            consent.used = True
            refresh = "1//0" + secrets.token_urlsafe(60)
            self.refresh_tokens[refresh] = Grant(consent.client_id, consent.email, consent.scopes)
            body = {
                "access_token": self._issue(consent.client_id, consent.email, consent.scopes),
                "expires_in": self.lifetime,
                "refresh_token": refresh,
                "scope": " ".join(consent.scopes),
                "token_type": "Bearer",
            }
            if "openid" in consent.scopes:
                body["id_token"] = self._id_token(consent.client_id, consent.email)
        return 200, body

    def _refresh_grant(self, form: dict) -> tuple[int, dict]:
        if not self._client_ok(form):
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        with self._lock:
            grant = self.refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None or grant.revoked or grant.client_id != form["client_id"]:
                return 400, {"error": "invalid_grant", "error_description": REVOKED}
            body = {
                "access_token": self._issue(grant.client_id, grant.email, grant.scopes),
                "expires_in": self.lifetime,
                "scope": " ".join(grant.scopes),
                "token_type": "Bearer",
            }
            if self.rotate:
                grant.revoked = True  # the old one stops working, so only a client that kept the new one goes on
                fresh = "1//0" + secrets.token_urlsafe(60)
                self.refresh_tokens[fresh] = Grant(grant.client_id, grant.email, grant.scopes)
                body["refresh_token"] = fresh
        return 200, body

    # -- the endpoints ------------------------------------------------------------
    def inject(self, status: int, body: dict, times: int = 1) -> None:
        """Answer the next `times` token requests with this, whatever they ask (fault injection)."""
        with self._lock:
            self.faults.extend([(status, body)] * times)

    def token_request(self, form: dict) -> tuple[int, dict]:
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            return fault
        if form.get("grant_type") in (AUTHORIZATION_CODE, REFRESH_TOKEN):
            code_grant = form["grant_type"] == AUTHORIZATION_CODE
            status, body = self._code_grant(form) if code_grant else self._refresh_grant(form)
            with self._lock:
                self.exchanges.append(
                    {
                        "grant_type": form["grant_type"],
                        "client_id": form.get("client_id"),
                        "pkce": bool(form.get("code_verifier")),
                        "status": status,
                        "error": body.get("error"),
                        "rotated": "refresh_token" in body and not code_grant,
                    }
                )
            return status, body
        status, body, claims = self._grant(form)
        with self._lock:
            self.grants.append({"status": status, "error": body.get("error"), "claims": claims})
        return status, body

    def _grant(self, form: dict) -> tuple[int, dict, dict | None]:
        def error(code: str, description: str, status: int = 400):
            return status, {"error": code, "error_description": description}, claims

        claims: dict | None = None
        if form.get("grant_type") != JWT_BEARER:
            return error("unsupported_grant_type", "Invalid grant_type: " + str(form.get("grant_type")))
        assertion = form.get("assertion") or ""
        parts = assertion.split(".")
        if len(parts) != 3:
            return error("invalid_request", "Invalid JWT: malformed assertion")
        try:
            header = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
        except (ValueError, TypeError):
            return error("invalid_request", "Invalid JWT: malformed assertion")
        if header.get("alg") != "RS256":
            return error("invalid_grant", "Invalid JWT Signature.")
        account = self.accounts.get(str(claims.get("iss", "")).lower())
        if account is None:
            return error("invalid_grant", "Invalid grant: account not found")
        keys = [account.keys[header["kid"]]] if header.get("kid") in account.keys else list(account.keys.values())
        signed = f"{parts[0]}.{parts[1]}".encode()
        if not any(_verifies(key, signature, signed) for key in keys):
            return error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") != AUDIENCE:
            return error("invalid_grant", "Invalid JWT: Failed audience check.")
        now = time.time()
        try:
            iat, exp = float(claims["iat"]), float(claims["exp"])
        except (KeyError, TypeError, ValueError):
            return error("invalid_grant", SHORT_LIVED)
        if exp - iat > MAX_LIFETIME or iat > now + CLOCK_SKEW or exp < now - CLOCK_SKEW:
            return error("invalid_grant", SHORT_LIVED)
        scopes = tuple(str(claims.get("scope") or "").split())
        if not scopes:
            return error("invalid_scope", "Empty or missing scope not allowed.")
        subject = str(claims.get("sub") or "").lower()
        if not subject:  # the service account for itself: not what Threadline asks for
            return error("invalid_scope", "Threadline's fake serves only delegated grants (sub).")
        granted = self.delegation.get(account.client_id)
        if not granted or not set(scopes) <= granted:
            return error("unauthorized_client", UNAUTHORIZED, 401)
        if subject not in self.users or subject in self.suspended:
            return error("invalid_grant", "Invalid email or User ID")
        token = "ya29." + secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = Issued(
                token, account.client_id, subject, self.users[subject], scopes, now + self.lifetime
            )
        return 200, {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"}, claims

    def tokeninfo(self, access_token: str) -> tuple[int, dict]:
        issued = self.tokens.get(access_token)
        if issued is None or issued.expires <= time.time():
            return 400, {"error": "invalid_token", "error_description": "Invalid Value"}
        left = int(issued.expires - time.time())
        return 200, {
            "azp": issued.client_id,
            "aud": issued.client_id,
            "sub": issued.user_id,
            "scope": " ".join(issued.scopes),
            "exp": str(int(issued.expires)),
            "expires_in": str(left),
            "email": issued.email,
            "email_verified": "true",
            "access_type": "online",
        }


def _verifies(key: rsa.RSAPublicKey, signature: bytes, signed: bytes) -> bool:
    try:
        key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False
