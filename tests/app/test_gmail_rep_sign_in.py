"""A rep connects their own Gmail without a Workspace admin: Google's installed-app flow
with PKCE (the device flow does not allow Gmail's scopes), through the CLI and the admin
API, against the fake Google (consent page, token endpoint checking the code verifier,
refresh with rotation, revocation) and a Gmail-shaped Dovecot taking XOAUTH2."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.db import session
from app.services import orgs
from connectors.googleauth import CALENDAR_SCOPE, USER_MAIL_SCOPE
from sync.engine import sync_mailbox
from tests import factories
from tests.app.test_cli_m365 import flat, run
from tests.world import database_bytes, database_rows, make_world, message, runtime_env

ALICE = "alice@ourco.com"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _loopback_token_endpoint(monkeypatch):
    # oauthlib refuses a plain-http token endpoint unless told otherwise; the fake is plain
    # HTTP on loopback (Google's is https, which needs nothing).
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def gmail_user(google, dovecot_gmail, rep: str = ALICE, n: int = 1) -> None:
    google.add_user(rep)
    dovecot_gmail.add_user(rep, "not-the-way-in")
    for i in range(n):
        dovecot_gmail.deliver(rep, message("carla@acme.com", rep, msgid=f"own-{i}-{rep}"), folder="All Mail")


def overrides(google, dovecot_gmail) -> dict:
    return {
        "auth_uri": google.auth_uri,
        "token_uri": google.token_uri,
        "imap_host": dovecot_gmail.host,
        "imap_port": dovecot_gmail.port,
        "imap_security": "none",
        "calendar_url": google.calendar_url,
    }


def test_a_rep_signs_in_at_the_cli_then_gmail_syncs_and_a_rotated_refresh_token_is_kept(
    google, dovecot_gmail, tmp_path
):
    make_world(tmp_path)
    data = tmp_path / "data"
    gmail_user(google, dovecot_gmail)
    client_id, secret = google.desktop_client()
    o = overrides(google, dovecot_gmail)
    args = [
        "mailbox", "add-google", "--owner", ALICE, "--client-id", client_id,
        "--auth-uri", o["auth_uri"], "--token-uri", o["token_uri"], "--imap-host", o["imap_host"],
        "--imap-port", str(o["imap_port"]), "--imap-security", "none", "--calendar-url", o["calendar_url"],
    ]  # fmt: skip
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")},
        **runtime_env(data),
        "THREADLINE_GOOGLE_CLIENT_SECRET": secret,
        "OAUTHLIB_INSECURE_TRANSPORT": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The rep opens the printed URL and allows access; the admin pastes the redirected address.
    seen: list[str] = []

    def read_until_url():
        for line in proc.stderr:
            seen.append(line)
            if line.strip().startswith(google.auth_uri):
                return line.strip()
        return ""

    url = read_until_url()
    assert url, "".join(seen)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["access_type"] == ["offline"]
    assert USER_MAIL_SCOPE in query["scope"][0] and CALENDAR_SCOPE in query["scope"][0]
    redirected = google.consent(url, ALICE)
    stdout, stderr = proc.communicate(redirected + "\n", timeout=120)
    stderr = "".join(seen) + stderr
    assert proc.returncode == 0, stdout + stderr
    assert "added for alice@ourco.com" in flat(stdout) and "own Google sign-in" in flat(stdout)
    assert [e["grant_type"] for e in google.exchanges] == ["authorization_code"]
    assert google.exchanges[0]["pkce"] and google.exchanges[0]["status"] == 200

    # The refresh token is never printed (and, below, stored only encrypted).
    refresh = next(iter(google.refresh_tokens))
    assert refresh not in stdout + stderr and secret not in stdout + stderr

    # Google rotates the refresh token at the next refresh: the new one is stored and works.
    google.rotate = True
    synced = run(data, "sync", "--once")
    assert synced.returncode == 0 and ": ok" in flat(synced.stdout), synced.stdout + synced.stderr
    assert database_rows(data, "SELECT count(*) FROM interaction") == [(1,)]
    assert google.exchanges[-1]["rotated"] and len(google.refresh_tokens) == 2
    google.expire_tokens()  # the next run must refresh again, with the rotated token
    dovecot_gmail.deliver(ALICE, message("dan@acme.com", ALICE, msgid="second-own"), folder="All Mail")
    again = run(data, "sync", "--once")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [e["status"] for e in google.exchanges if e["grant_type"] == "refresh_token"] == [200, 200]
    assert database_rows(data, "SELECT count(*) FROM interaction") == [(2,)]

    # The rep revokes the app's access: the mailbox needs a reconnect, and says how.
    google.revoke(ALICE)
    google.expire_tokens()
    failed = run(data, "sync", "--once")
    assert failed.returncode == 1
    listed = flat(run(data, "mailbox", "list").stdout)
    assert "revoked or has expired" in listed and "add-google --owner REP --client-id" in listed
    # Read last: reading SQLite's files in this process ends the locks of its other connections.
    dump = database_bytes(data)
    for token in (*google.refresh_tokens, secret):
        assert token.encode() not in dump
    dovecot_gmail.remove_user(ALICE)


@pytest.fixture
def console(tmp_path):
    w = make_world(tmp_path)
    admin = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin))
    client = TestClient(create_app(w.rt))
    client.headers["Authorization"] = f"Bearer {token}"
    yield w, client
    client.close()


def test_the_admin_api_signs_a_rep_in_then_a_revoked_grant_shows_reconnect(console, google, dovecot_gmail, caplog):
    from app.services import google as google_service
    from app.services.actor import Actor

    caplog.set_level(logging.DEBUG)
    w, client = console
    gmail_user(google, dovecot_gmail, n=2)
    client_id, secret = google.desktop_client()
    seen = []
    # The API starts with Google's real endpoints; the test points the same use case at the fake.
    seen.append(client.post("/api/admin/mailboxes/google/sign-in", json={"owner": ALICE, "client_id": client_id}))
    assert seen[-1].status_code == 200 and seen[-1].json()["url"].startswith("https://accounts.google.com/")
    boss = w.sql("SELECT id FROM app_user WHERE email = 'boss@ourco.com'")[0][0]
    actor = Actor(org_id=w.org_id, user_id=boss, role="admin")
    started = google_service.start_rep_sign_in(
        w.rt, actor, owner=ALICE, client_id=client_id, client_secret=secret, **overrides(google, dovecot_gmail)
    )

    # A denied consent, another sign-in's address and a forged state save nothing.
    denied = google.consent(started["url"], ALICE, allow=False)
    seen.append(
        client.post(
            "/api/admin/mailboxes/google/sign-in/finish", json={"state": started["state"], "redirected_url": denied}
        )
    )
    assert seen[-1].status_code == 422 and "access_denied" in seen[-1].json()["detail"]
    seen.append(
        client.post("/api/admin/mailboxes/google/sign-in/finish", json={"state": "forged", "redirected_url": "x"})
    )
    assert seen[-1].status_code == 422 and seen[-1].json()["field"] == "state"
    assert w.sql("SELECT COUNT(*) FROM mailbox")[0][0] == 0

    redirected = google.consent(started["url"], ALICE)
    body = {"state": started["state"], "redirected_url": redirected}
    seen.append(client.post("/api/admin/mailboxes/google/sign-in/finish", json=body))
    assert seen[-1].status_code == 201, seen[-1].text
    mb = seen[-1].json()
    assert mb["kind"] == "gmail" and mb["user"] == ALICE and mb["location"] == "the rep's own Google sign-in"
    # The same code twice: Google refuses a used code, nothing changes.
    seen.append(client.post("/api/admin/mailboxes/google/sign-in/finish", json=body))
    assert seen[-1].status_code == 422 and "invalid_grant" in seen[-1].json()["detail"]

    assert sync_mailbox(w.rt.engine, w.rt.box, mb["id"], fetch_in_child=False).ok
    assert w.sql("SELECT COUNT(*) FROM interaction")[0][0] == 2

    google.revoke(ALICE)
    google.expire_tokens()
    assert not sync_mailbox(w.rt.engine, w.rt.box, mb["id"], fetch_in_child=False).ok
    seen.append(client.get(f"/api/admin/mailboxes/{mb['id']}"))
    row = seen[-1].json()
    assert row["status"] == "failed" and row["last_error_kind"] == "auth"
    assert "revoked or has expired" in row["last_error"]
    seen.append(client.get(f"/admin/mailboxes/{mb['id']}"))
    assert "Reconnect the mailbox: the rep signs in to Google again" in seen[-1].text

    # Signing in again, here from the console's form beside the domain-wide one, reconnects the same mailbox.
    seen.append(client.get("/admin/mailboxes/new?kind=google"))
    assert 'id="google-sign-in"' in seen[-1].text and 'id="add-workspace"' in seen[-1].text
    form = {"owner": ALICE, "client_id": client_id, "client_secret": secret}
    seen.append(client.post("/admin/google/sign-in", data=form))
    assert seen[-1].status_code == 200 and 'id="google-sign-in-finish"' in seen[-1].text
    assert "https://accounts.google.com/o/oauth2/auth?" in seen[-1].text
    again = google_service.start_rep_sign_in(
        w.rt, actor, owner=ALICE, client_id=client_id, client_secret=secret, **overrides(google, dovecot_gmail)
    )
    finish = {"state": again["state"], "redirected_url": google.consent(again["url"], ALICE)}
    seen.append(client.post("/admin/google/sign-in/finish", data=finish, follow_redirects=False))
    assert seen[-1].status_code == 303 and seen[-1].headers["location"] == f"/admin/mailboxes/{mb['id']}?ok=added"
    assert w.sql("SELECT COUNT(*) FROM mailbox")[0][0] == 1
    assert sync_mailbox(w.rt.engine, w.rt.box, mb["id"], fetch_in_child=False).ok
    seen.append(client.get(f"/admin/mailboxes/{mb['id']}"))
    assert "signs in to Google again" not in seen[-1].text

    # While `serve` runs, IDLE signs in with the rep's refresh token too, and keeps a rotated one.
    from sync.scheduler import open_idle_session

    google.rotate = True
    google.expire_tokens()
    before = w.sql("SELECT secret_enc FROM mailbox WHERE id = :i", i=mb["id"])[0][0]
    idle = open_idle_session(w.rt, mb["id"], 5)
    try:
        idle.open()
        assert idle.state == "idling" and idle.folder == "All Mail"
    finally:
        idle.close()
    assert w.sql("SELECT secret_enc FROM mailbox WHERE id = :i", i=mb["id"])[0][0] != before
    google.expire_tokens()  # the old refresh token is refused now: the run works only with the stored new one
    assert sync_mailbox(w.rt.engine, w.rt.box, mb["id"], fetch_in_child=False).ok

    refresh_tokens = list(google.refresh_tokens)
    for response in seen:
        assert secret not in response.text and all(t not in response.text for t in refresh_tokens)
    leaks = [r for r in caplog.records if secret in r.getMessage() or any(t in r.getMessage() for t in refresh_tokens)]
    assert not leaks, [(r.name, r.getMessage()[:200]) for r in leaks]
    actions = [a for (a,) in w.sql("SELECT action FROM auditevent ORDER BY id")]
    assert actions[-2:] == ["mailbox.add", "mailbox.reconnect"]
    dovecot_gmail.remove_user(ALICE)


def test_the_fake_checks_the_pkce_verifier_and_a_grant_without_gmail_or_calendar_saves_nothing(google, tmp_path):
    import requests

    from app.services import google as google_service
    from app.services.actor import Actor
    from app.services.errors import Invalid
    from connectors.googleauth import LOOPBACK_REDIRECT, start_installed_sign_in

    google.add_user(ALICE)
    client_id, secret = google.desktop_client()
    # The token endpoint takes a code only with the verifier whose S256 challenge the consent URL carried.
    started = start_installed_sign_in(client_id, secret, auth_uri=google.auth_uri, token_uri=google.token_uri)
    code = parse_qs(urlsplit(google.consent(started.url, ALICE)).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": LOOPBACK_REDIRECT}
    form |= {"client_id": client_id, "client_secret": secret}
    assert requests.post(google.token_uri, data=form, timeout=10).json()["error_description"] == (
        "Missing code verifier."
    )
    wrong = requests.post(google.token_uri, data={**form, "code_verifier": "x" * 64}, timeout=10)
    assert wrong.status_code == 400 and wrong.json()["error_description"] == "Invalid code verifier."
    right = requests.post(google.token_uri, data={**form, "code_verifier": started.code_verifier}, timeout=10)
    assert right.status_code == 200 and right.json()["refresh_token"]
    again = requests.post(google.token_uri, data={**form, "code_verifier": started.code_verifier}, timeout=10)
    assert again.json()["error"] == "invalid_grant"  # a code is used once

    # The rep unticks Calendar on Google's consent screen: nothing is saved, and the reason is named.
    w = make_world(tmp_path)
    op = Actor.operator(w.org_id)
    pending = google_service.start_rep_sign_in(
        w.rt, op, owner=ALICE, client_id=client_id, client_secret=secret,
        auth_uri=google.auth_uri, token_uri=google.token_uri,
    )  # fmt: skip
    partial = google.consent(pending["url"], ALICE, drop_scopes=(CALENDAR_SCOPE,))
    with pytest.raises(Invalid) as caught:
        google_service.finish_rep_sign_in(w.rt, op, state=pending["state"], redirected=partial)
    assert CALENDAR_SCOPE in caught.value.reason and "every permission" in caught.value.reason
    assert w.sql("SELECT COUNT(*) FROM mailbox")[0][0] == 0
    # Another sign-in for someone else's account is refused too.
    google.add_user("mallory@gmail.com")
    other = google_service.start_rep_sign_in(
        w.rt, op, owner=ALICE, client_id=client_id, client_secret=secret,
        auth_uri=google.auth_uri, token_uri=google.token_uri,
    )  # fmt: skip
    with pytest.raises(Invalid) as caught:
        google_service.finish_rep_sign_in(
            w.rt, op, state=other["state"], redirected=google.consent(other["url"], "mallory@gmail.com")
        )
    assert "mallory@gmail.com, not alice@ourco.com" in caught.value.reason
    assert w.sql("SELECT COUNT(*) FROM mailbox")[0][0] == 0
