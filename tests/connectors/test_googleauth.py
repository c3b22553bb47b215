"""Google sign-in for a Workspace (a service account with domain-wide delegation)
against the fake Google token endpoint, and Gmail's IMAP login (XOAUTH2) against
a Dovecot that validates the tokens with the fake's tokeninfo."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.base import AuthError, ConnectorSpec, Fix
from connectors.gmail import build
from connectors.googleauth import CALENDAR_SCOPE, MAIL_SCOPE, ServiceAccountTokenSource, check, parse_key
from tests.fakes.google.server import AUDIENCE, JWT_BEARER

REP = "rep@ourco.com"


def workspace(google, *, scopes=(MAIL_SCOPE,), users=(REP,)) -> str:
    key = google.service_account()
    if scopes:
        google.delegate(json.loads(key)["client_id"], scopes)
    for user in users:
        google.add_user(user)
    return key


def refusal(key: str, user: str = REP, scopes=(MAIL_SCOPE,)) -> AuthError:
    with pytest.raises(AuthError) as caught:
        ServiceAccountTokenSource(key, user, scopes).token()
    return caught.value


def test_a_delegated_user_gets_a_token_from_a_jwt_signed_with_the_service_accounts_key(google):
    key = workspace(google)
    assert ServiceAccountTokenSource(key, REP).token().startswith("ya29.")
    grant = google.grants[-1]
    claims = grant["claims"]
    assert grant["status"] == 200
    assert claims["iss"] == json.loads(key)["client_email"] and claims["sub"] == REP
    assert claims["scope"] == MAIL_SCOPE and claims["aud"] == AUDIENCE
    assert 0 < claims["exp"] - claims["iat"] <= 3600


def test_a_client_id_without_domain_wide_delegation_is_refused_with_the_delegation_fix(google):
    exc = refusal(workspace(google, scopes=()))
    assert exc.fix == Fix.DELEGATION and "unauthorized_client" in str(exc)


def test_a_scope_the_admin_did_not_authorise_is_refused_like_missing_delegation(google):
    exc = refusal(workspace(google, scopes=(CALENDAR_SCOPE,)))
    assert exc.fix == Fix.DELEGATION


def test_a_user_outside_the_domain_or_suspended_is_refused_as_no_mailbox(google):
    key = workspace(google, users=(REP, "gone@ourco.com"))
    google.suspend("gone@ourco.com")
    for user in ("stranger@elsewhere.com", "gone@ourco.com"):
        exc = refusal(key, user)
        assert exc.fix == Fix.NO_MAILBOX and "Invalid email or User ID" in str(exc)


def test_a_deleted_key_is_refused_as_an_invalid_signature_with_the_key_fix(google):
    key = workspace(google)
    google.delete_key(key)
    exc = refusal(key)
    assert exc.fix == Fix.SERVICE_KEY and "Invalid JWT Signature" in str(exc)


def test_google_unavailable_is_transient_and_a_rate_limit_is_throttling_after_google_auths_retries(google, monkeypatch):
    from google.auth import _exponential_backoff

    from connectors.base import ThrottledError, TransientError

    # google-auth waits 1 s, then 2 s, between its tries: 10 s of this test's 10.8 s (measured).
    # The waits are recorded instead of slept: the tries and what they end in are the same.
    waits: list[float] = []
    monkeypatch.setattr(_exponential_backoff, "time", type("Clock", (), {"sleep": staticmethod(waits.append)}))
    key = workspace(google)
    google.inject(503, {"error": "internal_failure", "error_description": "Backend Error"}, times=3)
    with pytest.raises(TransientError):
        ServiceAccountTokenSource(key, REP).token()
    google.inject(429, {"error": "rate_limit_exceeded", "error_description": "Rate Limit Exceeded"}, times=3)
    with pytest.raises(ThrottledError) as throttled:
        ServiceAccountTokenSource(key, REP).token()
    assert throttled.value.retry_after == 30
    google.inject(503, {"error": "internal_failure"}, times=1)  # one failure: google-auth's own retry gets through
    assert ServiceAccountTokenSource(key, REP).token().startswith("ya29.")
    google.inject(503, {"error": "internal_failure"}, times=3)
    token_step = [s for s in check(key, REP) if s["step"] == "token"][0]
    assert token_step["ok"] is False and token_step["fix"] is None  # nothing for an admin to fix
    assert len(waits) == 2 + 2 + 1 + 2  # google-auth retried each time before giving up (or getting through)


def test_what_is_not_a_service_account_key_is_refused_without_repeating_it(google):
    secret_text = '{"type": "authorized_user", "refresh_token": "1//very-secret"}'
    with pytest.raises(AuthError) as caught:
        parse_key(secret_text)
    assert caught.value.fix == Fix.SERVICE_KEY and "very-secret" not in str(caught.value)
    with pytest.raises(AuthError):
        parse_key("not json at all")
    key = json.loads(workspace(google))
    assert "PRIVATE KEY" not in repr(ServiceAccountTokenSource(json.dumps(key), REP))
    with pytest.raises(AuthError, match="https"):
        parse_key(json.dumps(key | {"token_uri": "http://tokens.example.net/token"}))


def test_a_token_endpoint_that_is_not_google_never_has_its_answer_shown(google):
    # A key's token_uri is what the admin uploaded: pointed at a service inside the network, the
    # refusal must not carry that service's answer back to the console.
    import http.server
    import threading

    class Internal(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"INTERNAL-ONLY: db_password=hunter2"
            self.send_response(403)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Internal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        key = json.loads(workspace(google)) | {"token_uri": f"http://127.0.0.1:{server.server_port}/token"}
        refused = refusal(json.dumps(key))
    finally:
        server.shutdown()
    assert "hunter2" not in str(refused) and "INTERNAL" not in str(refused)
    assert refused.fix == Fix.SERVICE_KEY and "without an OAuth error code" in str(refused)


def _assertion(google, key_json: str, *, private_key=None, **claims) -> dict:
    key = json.loads(key_json)
    now = int(time.time())
    body = {"iss": key["client_email"], "sub": REP, "scope": MAIL_SCOPE, "aud": AUDIENCE, "iat": now, "exp": now + 3600}
    body.update(claims)
    pem = private_key or key["private_key"]
    token = jwt.encode(body, pem, algorithm="RS256", headers={"kid": key["private_key_id"]})
    return google.token_request({"grant_type": JWT_BEARER, "assertion": token})[1]


def test_the_fake_checks_the_grant_as_google_documents_it(google):
    key = workspace(google)
    assert "access_token" in _assertion(google, key)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert _assertion(google, key, private_key=foreign)["error_description"] == "Invalid JWT Signature."
    assert _assertion(google, key, aud=google.token_uri)["error"] == "invalid_grant"
    now = int(time.time())
    assert "short-lived" in _assertion(google, key, iat=now, exp=now + 7200)["error_description"]
    assert "short-lived" in _assertion(google, key, iat=now - 7200, exp=now - 3600)["error_description"]
    assert _assertion(google, key, scope="")["error"] == "invalid_scope"
    header, payload, _ = jwt.encode({"iss": "x"}, "k" * 32, algorithm="HS256").split(".")
    unsigned = f"{header}.{payload}.{base64.urlsafe_b64encode(b'x').decode()}"
    assert google.token_request({"grant_type": JWT_BEARER, "assertion": unsigned})[1]["error"] == "invalid_grant"


def test_the_connection_test_names_the_step_that_failed(google):
    def failed(steps):
        return next(((s["step"], s["fix"]) for s in steps if s["ok"] is False), None)

    both = (MAIL_SCOPE, CALENDAR_SCOPE)
    assert failed(check("{}", REP)) == ("key", Fix.SERVICE_KEY)
    key = workspace(google, scopes=())
    assert failed(check(key, REP)) == ("delegation", Fix.DELEGATION)
    google.delegate(json.loads(key)["client_id"], [MAIL_SCOPE])
    assert failed(check(key, REP, both)) == ("scopes", Fix.DELEGATION)
    assert failed(check(key, "stranger@ourco.com")) == ("user", Fix.NO_MAILBOX)
    assert failed(check(key, REP)) == ("scopes", Fix.DELEGATION)  # Threadline asks for both by default
    google.delegate(json.loads(key)["client_id"], both)
    steps = check(key, REP)
    assert failed(steps) is None and [s["step"] for s in steps] == ["key", "token", "delegation", "scopes", "user"]
    google.delete_key(key)
    assert failed(check(key, REP)) == ("token", Fix.SERVICE_KEY)


def gmail_spec(dovecot, key: str, user: str = REP) -> ConnectorSpec:
    config = {"user": user, "username": user, "host": dovecot.host, "port": dovecot.port, "security": "none"}
    return ConnectorSpec(kind="gmail", config=config, secret=key, owner=user)


def test_gmail_logs_in_with_xoauth2_and_reads_only_all_mail(google, dovecot_gmail):
    key = workspace(google)
    dovecot_gmail.add_user(REP, "unused-password")
    dovecot_gmail.create_folder(REP, "Clients")
    connector = build(gmail_spec(dovecot_gmail, key))
    try:
        folders = {f.name: f.role for f in connector.list_folders()}
    finally:
        connector.close()
    assert folders["All Mail"] == "archive" and folders["calendar:primary"] == "calendar"
    assert {name for name, role in folders.items() if role not in ("skip", "calendar")} == {"All Mail"}
    assert folders["INBOX"] == folders["Clients"] == folders["Sent"] == "skip"


def test_gmail_refusing_a_valid_token_says_imap_sign_in_not_password(google, dovecot_gmail):
    key = workspace(google, users=(REP,))
    dovecot_gmail.add_user(REP, "unused-password")
    google.lifetime = 0  # Google gives it, the IMAP server finds it expired
    connector = build(gmail_spec(dovecot_gmail, key))
    with pytest.raises(AuthError) as caught:
        connector.list_folders()
    assert caught.value.fix == Fix.GMAIL_IMAP


def test_without_an_all_mail_folder_gmail_reads_every_label_like_any_imap_server(imap_user):
    # An admin may hide All Mail from IMAP (without gmail.imap_admin): then nothing is skipped
    # but what any IMAP mailbox skips, and copies are told apart by Message-ID downstream.
    from connectors.gmail import GmailConnector
    from connectors.imap import ImapSettings

    imap_user.create_folder("Clients")
    imap_user.create_folder("Trash")
    settings = ImapSettings(imap_user.host, imap_user.port, "none", imap_user.username)
    connector = GmailConnector(settings, imap_user.password, want_snippet=False)
    try:
        roles = {f.name: f.role for f in connector.list_folders()}
    finally:
        connector.close()
    assert roles == {"INBOX": "inbox", "Clients": "other", "Trash": "skip"}


def test_an_idle_session_logs_in_to_gmail_with_xoauth2_and_a_refused_token_says_gmail_imap(google, dovecot_gmail):
    from connectors.imap import ImapSettings
    from connectors.imapidle import IdleSession

    key = workspace(google)
    dovecot_gmail.add_user(REP, "unused-password")
    settings = ImapSettings(dovecot_gmail.host, dovecot_gmail.port, "none", REP, timeout=5)
    tokens = ServiceAccountTokenSource(key, REP)
    session = IdleSession(settings, "", oauth2_token=tokens.token, folder="All Mail")
    try:
        session.open()
        assert session.state == "idling"
    finally:
        session.close()
    refused = IdleSession(settings, "", oauth2_token=lambda: "ya29.not-a-token", folder="All Mail")
    with pytest.raises(AuthError) as caught:
        refused.open()
    assert caught.value.fix == Fix.GMAIL_IMAP and "ya29" not in str(caught.value)
