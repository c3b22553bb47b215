"""Duplicate contacts through the front doors: the console page in real headless Chromium
(evidence shown as text, merge only with confirmation, undo from the page and the audit log)
and the CLI (`threadline contacts duplicates|merge|unmerge`, in-process: tests/cli.py)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from app.db import session
from app.services import duplicates, orgs
from tests import factories
from tests.app.test_cli_admin import _cli, _ok
from tests.app.test_duplicates import contact_of, deliver_world
from tests.world import NOW, make_world, message

HOSTILE = "<img src=x onerror=alert(1)> Quote"


@pytest.fixture
def synced(tmp_path, imap_user):
    w = make_world(tmp_path)
    deliver_world(imap_user)
    imap_user.deliver(message("Ann Bell <ann@bellco.com>", "alice@ourco.com", HOSTILE, msgid="a1@bellco"))
    imap_user.deliver(
        message(
            "Ann Bell <ann.bell@gmail.com>",
            "alice@ourco.com",
            "Re: " + HOSTILE,
            msgid="a2@gmail",
            when=NOW - timedelta(hours=2),
            extra="In-Reply-To: <a1@bellco>\r\nReferences: <a1@bellco>",
        )
    )
    assert w.sync(w.add_imap("alice@ourco.com", imap_user)).ok
    return w


def test_the_console_shows_candidates_and_merges_only_when_confirmed_then_undoes(synced, live_app, page):
    w = synced
    admin = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin))
    base = live_app(w)
    page.goto(base + "/admin")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin")
    page.click("nav >> text=Duplicates")
    page.wait_for_url(base + "/admin/duplicates")
    rows = page.locator("tr.candidate")
    assert rows.count() == 6
    # the first view searched the whole organisation; the page says so, and how it stays fresh
    fresh = page.locator("#freshness").inner_text()
    assert "brought up to date" in fresh and "by a search of the whole organisation" in fresh
    assert f"every {duplicates.REFRESH_SECONDS // 60} minutes" in fresh
    ann = page.locator("tr.candidate", has_text="ann.bell@gmail.com")
    assert f"(“Re: {HOSTILE}”" in ann.inner_text()  # the subject from mail is text, not markup
    assert page.locator("img[src=x]").count() == 0
    sam = page.locator("tr.candidate", has_text="sam@oldco.com")
    assert "announced a new address" in sam.inner_text() and "95%" in sam.inner_text()

    # Without the box ticked the browser does not send the form; nothing is merged.
    sam.locator("form.merge button").click()
    assert w.scalar("SELECT count(*) FROM contactmerge") == 0
    sam.locator("form.merge input[name=confirm]").check()
    sam.locator("form.merge button").click()
    page.wait_for_url(base + "/admin/duplicates?ok=merged")
    assert "Contacts merged" in page.inner_text("main")
    assert contact_of(w, "sam@oldco.com") == contact_of(w, "sam@newco.io")
    assert page.locator("tr.candidate").count() == 5

    ann = page.locator("tr.candidate", has_text="ann.bell@gmail.com")
    ann.locator("form.dismiss button").click()
    page.wait_for_url(base + "/admin/duplicates?ok=dismissed")
    assert page.locator("tr.candidate", has_text="ann.bell@gmail.com").count() == 0

    # Undo from the audit log.
    page.goto(base + "/admin/audit?action=contact.merge")
    page.locator("form.undo button").click()
    page.wait_for_url(base + "/admin/duplicates?ok=unmerged")
    assert "Merge undone" in page.inner_text("main")
    assert contact_of(w, "sam@oldco.com") != contact_of(w, "sam@newco.io")
    assert "undone" in page.inner_text("#merges")
    assert page.locator("#merges form.undo").count() == 0


def test_the_command_line_lists_merges_and_unmerges(synced, tmp_path):
    w = synced
    data = tmp_path / "data"
    found = json.loads(_ok(data, "contacts", "duplicates", "--json"))
    sam = next(
        c for c in found if {a for p in c["contacts"] for a in p["addresses"]} == {"sam@oldco.com", "sam@newco.io"}
    )
    assert sam["evidence"][0]["kind"] == "address_change"
    table = _ok(data, "contacts", "duplicates")
    assert "sam@oldco.com wrote that their new address is sam@newco.io" in table

    refused = _cli(data, "contacts", "merge", "sam@newco.io", "nobody@nowhere.example", "--yes")
    assert refused.returncode == 3 and "no contact" in refused.stderr  # NotFound
    asked = _cli(data, "contacts", "merge", "sam@newco.io", "sam@oldco.com")  # no terminal to confirm on
    assert asked.returncode != 0 and w.scalar("SELECT count(*) FROM contactmerge") == 0

    merged = _ok(data, "contacts", "merge", "sam@newco.io", "sam@oldco.com", "--yes")
    audit_id = merged.strip().rsplit(" ", 1)[1]
    assert contact_of(w, "sam@oldco.com") == contact_of(w, "sam@newco.io")
    assert "restored" in _ok(data, "contacts", "unmerge", audit_id)
    again = _cli(data, "contacts", "unmerge", audit_id)
    assert again.returncode == 5 and "already undone" in again.stderr  # Conflict
    assert contact_of(w, "sam@oldco.com") != contact_of(w, "sam@newco.io")
