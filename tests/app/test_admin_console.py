"""The admin console in real headless Chromium against a live app and a real Dovecot:
sign in with a token, add a mailbox through the form, test a wrong password, sync,
pause and remove it."""

from __future__ import annotations

import time

from app.db import session
from app.services import orgs
from tests import factories
from tests.world import make_world, message


def test_console_mailbox_lifecycle(tmp_path, imap_user, live_app, page):
    w = make_world(tmp_path)
    admin = w.add_user("boss@ourco.com", "Boss <b>", admin=True)
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin))
        rep_token = factories.issue_token(s, orgs.find_user(s, w.org_id, "alice@ourco.com"))
    imap_user.deliver(
        message("Jane <jane@acme.com>", "alice@ourco.com", "<script>alert(1)</script> Hello", msgid="c1@acme")
    )
    base = live_app(w)
    page.set_viewport_size({"width": 1200, "height": 900})

    # A rep's token does not open the console.
    page.goto(base + "/admin")
    assert page.url.endswith("/admin/login")
    page.fill("input[name=token]", rep_token)
    page.click("button[type=submit]")
    assert "for admins" in page.inner_text("main")

    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin")
    cookie = next(c for c in page.context.cookies() if c["name"] == "tl_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and token not in cookie["value"]
    assert "No mailbox yet" in page.inner_text("main")

    # Wrong password: the connection test says exactly which step failed.
    page.click("text=Add mailbox")
    page.select_option("select[name=owner]", "alice@ourco.com")
    page.fill("input[name=host]", imap_user.host)
    page.fill("input[name=port]", str(imap_user.port))
    page.select_option("select[name=security]", "none")
    page.fill("input[name=username]", imap_user.username)
    page.fill("input[name=password]", "definitely-wrong")
    page.click("#test-connection")
    failed = page.inner_text("#test-steps li[data-step=login]")
    assert "FAILED" in failed and "wrong username or password" in failed
    assert "ok" in page.inner_text("#test-steps li[data-step=tcp]")
    assert "definitely-wrong" not in page.content()

    # Adding with the wrong password is refused by the check: nothing is stored.
    page.fill("input[name=password]", "definitely-wrong")
    page.click("#add")
    assert "Nothing was saved" in page.inner_text("main")
    assert "FAILED" in page.inner_text("#test-steps li[data-step=login]")
    assert w.scalar("SELECT count(*) FROM mailbox") == 0

    page.fill("input[name=password]", imap_user.password)
    page.click("#test-connection")
    assert "ok" in page.inner_text("#test-steps li[data-step=folders]")
    page.fill("input[name=password]", imap_user.password)
    page.click("#add")
    page.wait_for_url("**/admin/mailboxes/*")
    assert "Mailbox added" in page.inner_text("main")

    page.click("#sync-now")
    deadline = time.monotonic() + 60
    while page.inner_text("#status") != "active":
        assert time.monotonic() < deadline, page.inner_text("main")
        time.sleep(0.3)
        page.reload()
    assert page.inner_text("#health") == "healthy"
    assert int(page.inner_text("#imported")) >= 1
    assert "INBOX" in page.inner_text("#folders") and "uidvalidity" not in page.inner_text("main").lower()
    page.click("#technical summary")  # the cursors are for support, behind a disclosure
    assert "uidvalidity" in page.inner_text("#technical").lower()
    page.goto(base + "/admin")
    row = page.inner_text("#health tbody tr")
    assert "healthy" in row and "alice@ourco.com" in row

    # A wrong password set later shows as failing, with the fix, never as healthy.
    page.click("#health a")
    page.fill("form.row input[name=password]", "wrong-again")
    page.click("#set-password")
    page.click("#sync-now")
    deadline = time.monotonic() + 60
    while page.inner_text("#status") != "failed":
        assert time.monotonic() < deadline, page.inner_text("main")
        time.sleep(0.3)
        page.reload()
    assert page.inner_text("#health") == "failing"
    assert "password" in page.inner_text("#fix").lower()
    assert "wrong-again" not in page.content()
    # The server's words, not Python's bytes, and the fix said once (not also inside the error).
    error = page.inner_text("#last-error")
    assert "[AUTHENTICATIONFAILED]" in error and "b'" not in error, error
    assert page.inner_text("main").lower().count("set-password") == 1, page.inner_text("main")
    page.goto(base + "/admin")
    row = page.inner_text("#health tbody tr")
    assert "b'" not in row and row.lower().count("set-password") == 1, row
    page.click("#health a")

    page.click("#pause")
    assert page.inner_text("#status") == "paused"
    page.click("#remove-menu summary")
    page.click("#remove")
    page.wait_for_url(base + "/admin?ok=removed")
    assert "No mailbox yet" in page.inner_text("main")
    # the timeline keeps the interaction (no purge), and the subject is rendered as text only
    assert w.scalar("SELECT count(*) FROM interaction") == 1
    page.goto(base + "/admin/audit")
    log = page.inner_text("#audit")
    for action in ("mailbox.add", "mailbox.sync_now", "mailbox.set_password", "mailbox.pause", "mailbox.remove"):
        assert action in log
    # Forms without the session's CSRF token are refused.
    status = page.evaluate("""async () => (await fetch('/admin/users', {method: 'POST',
        headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'email=x%40ourco.com'})).status""")
    assert status == 403
