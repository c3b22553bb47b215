"""The daily digest email, received by a real SMTP server (aiosmtpd on loopback) from mail
synced out of a real Dovecot mailbox: its content and escaping, once per local day across
scheduler ticks and workers, nothing for reps who chose none, and every failing step of the
SMTP conversation named (in the test email, in the console, in the recorded error)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from datetime import timedelta

import httpx
import pytest
import trustme
from sqlalchemy import text
from sqlmodel import Session

from app.db import read_only, write_transaction
from app.runtime import open_runtime
from app.services import digest, followups, orgs
from app.services.actor import Actor
from app.settings import load_settings
from tests import factories
from tests.servers.base import free_port
from tests.servers.smtp import REFUSED_DOMAIN, SmtpServer
from tests.world import NOW, make_world, message, runtime_env

DAY = timedelta(days=1)
HOSTILE = "<script>alert(1)</script> pricing & terms"


@pytest.fixture
def smtp_server():
    with SmtpServer("digest", "s3cret") as server:
        yield server


@pytest.fixture
def synced(tmp_path, imap_user_factory):
    """Alice wrote to Carol at Acme 9 days ago (a hostile subject) and had no answer: an
    overdue "waiting on them" follow-up. Bob has no digest."""
    world = make_world(tmp_path)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    alice.deliver(
        message("alice@ourco.com", "Carol <carol@acme.com>", HOSTILE, msgid="p1@ourco.com", when=NOW - 9 * DAY)
    )
    world.sync(box)
    return world


def configure(world, server: SmtpServer, password: str = "s3cret", security: str = "none") -> Actor:
    admin = Actor.operator(world.org_id)
    digest.set_smtp(
        world.rt,
        admin,
        host=server.host,
        port=server.port,
        security=security,
        username=server.username,
        password=password,
        from_address="threadline@ourco.com",
    )
    return admin


def wants_digest(world, email: str, hour: int = 0, tz: str = "UTC") -> int:
    admin = Actor.operator(world.org_id)
    with Session(world.rt.engine) as s:
        uid = orgs.find_user(s, world.org_id, email).id
    followups.set_calendar(world.rt, admin, uid, tz=tz, digest=True, digest_hour=hour)
    return uid


def parts(msg) -> tuple[str, str]:
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def test_the_digest_brings_the_reps_day_as_text_and_html_and_an_emails_script_arrives_as_text(synced, smtp_server):
    configure(synced, smtp_server)
    wants_digest(synced, "alice@ourco.com")
    assert digest.send_due(synced.rt, NOW) == {"sent": 1, "failed": 0}
    [got] = smtp_server.received
    assert got.rcpt_tos == ["alice@ourco.com"] and got.mail_from == "threadline@ourco.com"
    assert got.authenticated_as == "digest"
    assert got.message["Auto-Submitted"] == "auto-generated"
    assert got.message["Subject"].startswith("Your day, ") and got.message["Subject"].endswith(": 1 follow-up")
    text, html = parts(got.message)
    assert f"OVERDUE Waiting on them: Carol - {HOSTILE}" in text
    assert "Tasks due (0)" in text and "Open your day: http://127.0.0.1:8000/home" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; pricing &amp; terms" in html
    assert "<script" not in html
    assert synced.scalar("SELECT smtp_last_error FROM organisation") is None
    assert synced.scalar("SELECT smtp_last_sent_at FROM organisation") is not None


def test_two_workers_ticking_twice_send_each_rep_one_digest_per_local_day_and_none_to_a_rep_who_chose_none(
    synced, smtp_server
):
    configure(synced, smtp_server)
    wants_digest(synced, "alice@ourco.com")
    # Bob chose none (the default); Dan is in Tokyo at 07:00 UTC: his 16:00, after his hour 9.
    synced.add_user("dan@ourco.com", "Dan")
    wants_digest(synced, "dan@ourco.com", hour=9, tz="Asia/Tokyo")
    other = open_runtime(load_settings(runtime_env(synced.rt.settings.data_dir, THREADLINE_IDLE="0")))
    at = NOW.replace(hour=7, minute=0, second=0)
    results: list[dict] = []

    def worker(rt, now):
        results.append(digest.send_due(rt, now))

    for tick in (at, at + timedelta(minutes=1)):
        threads = [threading.Thread(target=worker, args=(rt, tick)) for rt in (synced.rt, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(r.rcpt_tos[0] for r in smtp_server.received) == ["alice@ourco.com", "dan@ourco.com"]
    assert sum(r["sent"] for r in results) == 2
    # The next local day, once more each; a restart (a fresh runtime) changes nothing.
    restarted = open_runtime(load_settings(runtime_env(synced.rt.settings.data_dir, THREADLINE_IDLE="0")))
    assert digest.send_due(restarted, at + DAY)["sent"] == 2
    assert digest.send_due(synced.rt, at + DAY + timedelta(hours=1))["sent"] == 0
    assert len(smtp_server.received) == 4
    assert "bob@ourco.com" not in {r.rcpt_tos[0] for r in smtp_server.received}


def test_no_digest_before_the_reps_local_hour(synced, smtp_server):
    configure(synced, smtp_server)
    wants_digest(synced, "alice@ourco.com", hour=9, tz="America/New_York")
    at = NOW.replace(hour=12, minute=0, second=0)  # 07:00 or 08:00 in New York
    assert digest.send_due(synced.rt, at) == {"sent": 0, "failed": 0}
    assert digest.send_due(synced.rt, at + timedelta(hours=2)) == {"sent": 1, "failed": 0}
    assert len(smtp_server.received) == 1


def test_the_scheduler_job_sends_one_digest_over_several_ticks(synced, smtp_server):
    from sync.scheduler import SyncService

    configure(synced, smtp_server)
    wants_digest(synced, "alice@ourco.com")
    job_id, run, _ = digest.job(synced.rt)
    service = SyncService(synced.rt, idle=False, jobs=[(job_id, run, 0.3)])
    service.start()
    try:
        deadline = time.monotonic() + 20
        while not smtp_server.received and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # several more ticks of the job
    finally:
        service.stop()
    assert [r.rcpt_tos for r in smtp_server.received] == [["alice@ourco.com"]]


def test_a_refused_login_is_recorded_with_its_step_the_day_is_kept_and_sent_once_the_password_is_fixed(
    synced, smtp_server
):
    admin = configure(synced, smtp_server, password="wrong")
    wants_digest(synced, "alice@ourco.com")
    assert digest.send_due(synced.rt, NOW) == {"sent": 0, "failed": 1}
    with read_only(synced.rt.engine) as conn:
        error = digest.smtp_settings(conn, synced.org_id)["last_error"]
    assert error.startswith("the digest to alice@ourco.com failed at the auth step: ")
    assert "refused the user name or password" in error
    assert smtp_server.received == []
    assert synced.scalar("SELECT digest_sent_on FROM app_user WHERE email = 'alice@ourco.com'") is None
    # Not retried at every tick while the error stands...
    assert digest.send_due(synced.rt, NOW + timedelta(minutes=1)) == {"sent": 0, "failed": 0}
    # ...and sent once the admin fixes the password (which clears the error).
    digest.set_smtp(
        synced.rt,
        admin,
        host=smtp_server.host,
        port=smtp_server.port,
        security="none",
        username="digest",
        password="s3cret",
        from_address="threadline@ourco.com",
    )
    assert digest.send_due(synced.rt, NOW + timedelta(minutes=2)) == {"sent": 1, "failed": 0}


def test_the_test_email_names_the_step_that_failed(synced, smtp_server):
    admin = configure(synced, smtp_server, password="wrong")
    failed = digest.send_test(synced.rt, admin, "alice@ourco.com")
    assert (failed["ok"], failed["failed_step"]) == (False, "auth")
    assert [(s["step"], s["ok"]) for s in failed["steps"]] == [
        ("connect", True),
        ("tls", None),
        ("auth", False),
        ("sender", None),
        ("recipient", None),
        ("data", None),
    ]
    configure(synced, smtp_server)
    refused = digest.send_test(synced.rt, admin, f"nobody@{REFUSED_DOMAIN}")
    assert refused["failed_step"] == "recipient" and "550" in refused["detail"]
    configure(synced, smtp_server, security="starttls")
    no_tls = digest.send_test(synced.rt, admin, "alice@ourco.com")
    assert no_tls["failed_step"] == "tls" and "does not offer STARTTLS" in no_tls["detail"]
    nothing_there = free_port()
    digest.set_smtp(
        synced.rt, admin, host="127.0.0.1", port=nothing_there, security="none", from_address="crm@ourco.com"
    )
    gone = digest.send_test(synced.rt, admin, "alice@ourco.com")
    assert gone["failed_step"] == "connect" and f"could not reach 127.0.0.1:{nothing_there}" in gone["detail"]
    configure(synced, smtp_server)
    ok = digest.send_test(synced.rt, admin, "alice@ourco.com")
    assert ok["ok"] and ok["failed_step"] is None
    assert [r.message["Subject"] for r in smtp_server.received] == ["Threadline test email (OurCo)"]
    assert synced.scalar("SELECT count(*) FROM auditevent WHERE action = 'smtp.test'") == 5


def test_starttls_with_a_trusted_certificate_signs_in_and_delivers(synced, tmp_path):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with SmtpServer("digest", "s3cret", tls_context=server_ctx) as server:
        admin = configure(synced, server, security="starttls")
        wants_digest(synced, "alice@ourco.com")
        assert digest.send_test(synced.rt, admin, "alice@ourco.com", tls_context=client_ctx)["ok"]
        assert digest.send_due(synced.rt, NOW, tls_context=client_ctx) == {"sent": 1, "failed": 0}
        # Without trusting the test CA, the TLS step fails and says so.
        untrusted = digest.send_test(synced.rt, admin, "alice@ourco.com")
        assert untrusted["failed_step"] == "tls" and "certificate" in untrusted["detail"].lower()
    assert len(server.received) == 2 and all(r.authenticated_as == "digest" for r in server.received)


def test_the_smtp_password_is_encrypted_at_rest_never_returned_and_its_change_audited_without_it(synced, live_app):
    admin_id = synced.add_user("boss@ourco.com", "Boss", admin=True)
    with Session(synced.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin_id))
        rep_token = factories.issue_token(s, orgs.find_user(s, synced.org_id, "alice@ourco.com"))
    base = live_app(synced)
    h = {"Authorization": f"Bearer {token}"}
    body = {
        "host": "smtp.ourco.com",
        "port": 587,
        "security": "starttls",
        "username": "digest",
        "password": "pa55-w0rd!",
    }
    refused = httpx.put(base + "/api/admin/smtp", json=body | {"from_address": "not an address"}, headers=h, timeout=10)
    assert refused.status_code == 422 and refused.json()["field"] == "from_address"
    assert "pa55-w0rd!" not in refused.text
    assert synced.scalar("SELECT smtp_secret_enc FROM organisation") is None
    saved = httpx.put(base + "/api/admin/smtp", json=body | {"from_address": "crm@ourco.com"}, headers=h, timeout=10)
    assert saved.status_code == 200, saved.text
    assert saved.json()["password_set"] is True and "pa55-w0rd!" not in saved.text
    shown = httpx.get(base + "/api/admin/smtp", headers=h, timeout=10).json()
    assert shown["host"] == "smtp.ourco.com" and shown["from_address"] == "crm@ourco.com" and "password" not in shown
    stored = synced.scalar("SELECT smtp_secret_enc FROM organisation")
    assert "pa55-w0rd!" not in stored and synced.rt.box.decrypt(stored) == "pa55-w0rd!"
    # Changing the port keeps the stored password (none given).
    httpx.put(
        base + "/api/admin/smtp",
        json=body | {"port": 2525, "password": None, "from_address": "crm@ourco.com"},
        headers=h,
        timeout=10,
    )
    assert synced.rt.box.decrypt(synced.scalar("SELECT smtp_secret_enc FROM organisation")) == "pa55-w0rd!"
    # Another server, or the same one in clear, with the stored password: an admin who does not know
    # it could send it to a server of their own with "send a test". Asked for again instead.
    for moved in ({"host": "smtp.elsewhere.example"}, {"security": "none"}, {"username": "other"}):
        asked = httpx.put(
            base + "/api/admin/smtp",
            json=body | {"port": 2525, "password": None, "from_address": "crm@ourco.com"} | moved,
            headers=h,
            timeout=10,
        )
        assert asked.status_code == 422 and asked.json()["field"] == "password", (moved, asked.text)
        assert "enter the password again" in asked.json()["detail"]
    assert httpx.get(base + "/api/admin/smtp", headers=h, timeout=10).json()["host"] == "smtp.ourco.com"
    events = httpx.get(base + "/api/admin/audit", params={"action": "smtp.*"}, headers=h, timeout=10).json()
    assert [e["action"] for e in events] == ["smtp.update", "smtp.update"]
    assert events[1]["detail"]["password"] == "changed" and events[0]["detail"]["changed"] == {
        "port": {"from": 587, "to": 2525}
    }
    assert "pa55-w0rd!" not in json.dumps(events)
    assert (
        httpx.get(base + "/api/admin/smtp", headers={"Authorization": f"Bearer {rep_token}"}, timeout=10).status_code
        == 403
    )
    # A rep sets their own digest hour; an absurd hour is refused with its field.
    me = {"Authorization": f"Bearer {rep_token}"}
    bad = httpx.patch(base + "/api/me/calendar", json={"digest_hour": 24}, headers=me, timeout=10)
    assert bad.status_code == 422
    ok = httpx.patch(base + "/api/me/calendar", json={"digest_enabled": True, "digest_hour": 7}, headers=me, timeout=10)
    assert ok.json()["digest_enabled"] is True and ok.json()["digest_hour"] == 7


def test_the_console_sets_the_server_sends_a_test_and_shows_the_recorded_error(synced, smtp_server, live_app, page):
    admin_id = synced.add_user("boss@ourco.com", "Boss", admin=True)
    with Session(synced.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin_id))
    base = live_app(synced)
    page.set_viewport_size({"width": 1200, "height": 1000})
    page.goto(base + "/admin/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin")
    page.goto(base + "/admin/org")
    form = "#smtp-form "
    page.fill(form + "input[name=host]", smtp_server.host)
    page.fill(form + "input[name=port]", str(smtp_server.port))
    page.select_option(form + "select[name=security]", "none")
    page.fill(form + "input[name=username]", "digest")
    page.fill(form + "input[name=password]", "not-the-password")
    page.fill(form + "input[name=from_address]", "crm@ourco.com")
    page.click("#save-smtp")
    assert "SMTP server saved" in page.inner_text("main")
    assert "not-the-password" not in page.content()
    page.fill("#smtp-test-form input[name=to]", "alice@ourco.com")
    page.click("#smtp-test")
    assert "FAILED" in page.inner_text("#test-steps li[data-step=auth]")
    assert "ok" in page.inner_text("#test-steps li[data-step=connect]")
    assert "failed at the auth step" in page.inner_text("#smtp-error")
    # A scheduled digest failing the same way is what the page shows next.
    wants_digest(synced, "alice@ourco.com")
    with write_transaction(synced.rt.engine) as conn:  # as if the test's error were long ago
        conn.execute(text("UPDATE organisation SET smtp_last_error = NULL, smtp_last_error_at = NULL"))
    assert digest.send_due(synced.rt, NOW)["failed"] == 1
    page.goto(base + "/admin/org")
    assert "the digest to alice@ourco.com failed at the auth step" in page.inner_text("#smtp-error")
    # The right password, kept blank afterwards: the stored one stays.
    page.fill(form + "input[name=password]", "s3cret")
    page.click("#save-smtp")
    page.click("#smtp-test")
    assert "Test email sent" in page.inner_text("main")
    assert smtp_server.received[0].rcpt_tos == ["boss@ourco.com"]


def test_the_cli_sets_the_server_from_stdin_tests_it_and_sets_a_reps_digest(synced, smtp_server, monkeypatch):
    from typer.testing import CliRunner

    from app.cli import app

    for key, value in runtime_env(synced.rt.settings.data_dir).items():
        monkeypatch.setenv(key, value)
    cli = CliRunner()
    args = ["smtp", "set", "--host", smtp_server.host, "--port", str(smtp_server.port), "--security", "none"]
    args += ["--username", "digest", "--from", "crm@ourco.com", "--password-stdin"]
    saved = cli.invoke(app, args, input="wrong-one\n")
    assert saved.exit_code == 0, saved.output
    assert "password_set: True" in saved.output and "wrong-one" not in saved.output
    failed = cli.invoke(app, ["smtp", "test", "--to", "alice@ourco.com"])
    assert failed.exit_code == 1 and "auth: FAILED" in failed.output and "connect: ok" in failed.output
    shown = cli.invoke(app, ["smtp", "show"])
    assert "failed at the auth step" in shown.output and "wrong-one" not in shown.output
    assert cli.invoke(app, args, input="s3cret\n").exit_code == 0
    assert cli.invoke(app, ["smtp", "test", "--to", "alice@ourco.com"]).exit_code == 0
    chosen = cli.invoke(app, ["digest", "set", "--rep", "alice@ourco.com", "--hour", "6"])
    assert chosen.exit_code == 0 and "daily digest at 06:00 UTC" in chosen.output
    assert synced.scalar("SELECT digest_hour FROM app_user WHERE email = 'alice@ourco.com'") == 6
    off = cli.invoke(app, ["digest", "set", "--rep", "alice@ourco.com", "--none"])
    assert off.exit_code == 0 and not synced.scalar(
        "SELECT digest_enabled FROM app_user WHERE email = 'alice@ourco.com'"
    )
    assert cli.invoke(app, ["digest", "set", "--rep", "alice@ourco.com"]).exit_code == 2
    events = [r[0] for r in synced.sql("SELECT action FROM auditevent WHERE action LIKE 'smtp.%' ORDER BY id")]
    assert events == ["smtp.update", "smtp.test", "smtp.update", "smtp.test"]
