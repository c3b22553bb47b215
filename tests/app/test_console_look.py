"""The console as an admin sees it, in headless Chromium at 1280 and 360 px: styled
pages (light and dark), tables that use the width, destructive actions behind menus
that say what they do, no raw sync cursors, and the add-mailbox form's provider list.

One world (module scope) with mailboxes in several states written straight to the
database: these tests are about the pages, not about syncing. The screenshots in
docs/ come from test_screenshots_of_every_console_page (THREADLINE_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlmodel import select

from app.api import create_app
from app.db import session, write_transaction
from app.models import FolderState, Mailbox
from app.models.base import utcnow
from app.services import orgs, people, rules
from app.services.actor import Actor
from tests import factories
from tests.servers import AppServer
from tests.world import make_world

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = {
    "signin": "/admin/login",
    "health": "/admin",
    "mailbox": "/admin/mailboxes/{alice_box}",
    "add-mailbox": "/admin/mailboxes/new",
    "add-google": "/admin/mailboxes/new?kind=google",
    "users": "/admin/users",
    "organisation": "/admin/org",
    "rules": "/admin/rules",
    "duplicates": "/admin/duplicates",
    "contacts": "/admin/contacts",
    "import": "/admin/import",
    "deals": "/admin/deals",
    "privacy": "/admin/privacy",
    "audit": "/admin/audit",
}


def _mailbox(w, owner_id: int, **values) -> int:
    now = utcnow()
    row = {
        "org_id": w.org_id,
        "owner_id": owner_id,
        "kind": "imap",
        "skipped": {},
        "status": "active",
        "sync_stage": "idle",
        "failure_count": 0,
        "messages_imported": 0,
        "created_at": now - timedelta(days=9),
    }
    row.update(values)
    with write_transaction(w.rt.engine) as conn:
        return conn.execute(insert(Mailbox.__table__).values(**row)).inserted_primary_key[0]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    w = make_world(tmp_path_factory.mktemp("look"))
    boss = w.add_user("boss@ourco.com", "Bea Boss", admin=True)
    w.add_user("temp@ourco.com", "Tim Temp")
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, boss), "console")
        users = {u.email: u.id for u in s.exec(select(orgs.User)).all()}
        factories.issue_token(s, s.get(orgs.User, users["alice@ourco.com"]), "sidebar")
    now = utcnow()
    alice_box = _mailbox(
        w,
        users["alice@ourco.com"],
        messages_imported=12408,
        config={"host": "imap.fastmail.com", "port": 993, "security": "tls", "username": "alice@ourco.com"},
        last_success_at=now - timedelta(minutes=3),
        last_attempt_at=now - timedelta(minutes=3),
        next_sync_at=now + timedelta(minutes=2),
        skipped={"bulk": 311, "internal only": 42},
    )
    _mailbox(
        w,
        users["bob@ourco.com"],
        status="failed",
        messages_imported=880,
        last_error_kind="auth",
        config={"host": "mail.ourco.com", "port": 993, "security": "tls", "username": "bob.rep"},
        last_error="the server refused the username or password",
        last_success_at=now - timedelta(days=2, hours=3),
        last_attempt_at=now - timedelta(minutes=1),
    )
    _mailbox(
        w,
        users["alice@ourco.com"],
        kind="caldav",
        status="paused",
        messages_imported=96,
        config={"url": "https://dav.ourco.com/calendars/alice/", "username": "alice"},
        last_success_at=now - timedelta(days=6),
    )
    with write_transaction(w.rt.engine) as conn:
        for name, role, n in (("INBOX", "inbox", 11902), ("Sent", "sent", 506)):
            conn.execute(
                insert(FolderState.__table__).values(
                    org_id=w.org_id,
                    mailbox_id=alice_box,
                    name=name,
                    role=role,
                    selected=True,
                    status="ok",
                    cursor={"uidvalidity": 1712345678, "highestmodseq": 880123, "top_uid": n + 40, "low_uid": 1},
                    backfill_done=True,
                    messages=n,
                    last_synced_at=now - timedelta(minutes=3),
                )
            )
    op = Actor.operator(w.org_id)
    rules.add_rule(w.rt, op, value="newsletter.example")
    rules.add_rule(w.rt, op, value="private@family.example", user_id=users["alice@ourco.com"])
    # two contacts that look like one person, for the duplicates page
    for email in ("rory.adams@acme-industries.com", "radams@acme-industries.com"):
        people.create_contact(w.rt, op, email=email, name="Rory Adams")
    server = AppServer(create_app(w.rt, run_scheduler=False)).start()
    yield {"world": w, "base": server.url, "token": token, "users": users, "alice_box": alice_box}
    server.stop()
    w.rt.engine.dispose()


@contextmanager
def signed_in(browser, console, width: int, *, dark: bool = False, js: bool = True):
    """A page of a fresh browser context, signed in to the console through its form."""
    context = browser.new_context(
        viewport={"width": width, "height": 800}, java_script_enabled=js, color_scheme="dark" if dark else "light"
    )
    try:
        page = context.new_page()
        page.goto(console["base"] + "/admin/login")
        page.fill("input[name=token]", console["token"])
        page.click("button[type=submit]")
        page.wait_for_url(console["base"] + "/admin")
        yield page
    finally:
        context.close()


def url(console, page_name: str) -> str:
    return console["base"] + PAGES[page_name].format(alice_box=console["alice_box"])


def single_line(page, selector: str) -> bool:
    return page.evaluate(f"""[...document.querySelectorAll({selector!r})]
        .every(e => e.getClientRects().length === 1 && e.getBoundingClientRect().height < 24)""")


# -- the pages ------------------------------------------------------------------------------


def test_the_sign_in_page_is_styled_in_the_panes_look_not_browser_defaults(console, browser):
    for width in (1280, 360):
        context = browser.new_context(viewport={"width": width, "height": 800})
        try:
            page = context.new_page()
            page.goto(console["base"] + "/admin/login")
            button = page.locator("button[type=submit]")
            style = lambda prop, sel="button[type=submit]": page.evaluate(
                f"getComputedStyle(document.querySelector({sel!r}))[{prop!r}]"
            )
            assert style("backgroundColor") == "rgb(11, 87, 181)"  # the pane's accent
            assert style("borderTopLeftRadius", ".signin") == "8px"
            assert "Segoe UI" in style("fontFamily", "body")
            box = button.bounding_box()
            card = page.locator(".signin").bounding_box()
            assert box["width"] > card["width"] * 0.8  # a full-width button in a card, not a default one
            assert page.evaluate("document.documentElement.scrollWidth") <= width
        finally:
            context.close()


def test_the_console_follows_a_dark_system_theme(console, browser):
    with signed_in(browser, console, 1280, dark=True) as page:
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(24, 24, 24)"
        assert page.evaluate("getComputedStyle(document.querySelector('h1')).color") == "rgb(242, 242, 242)"


def test_the_health_table_uses_the_width_keeps_dates_on_one_line_and_names_the_owner_once(console, browser):
    with signed_in(browser, console, 1280) as page:
        table = page.locator("#health").bounding_box()
        assert table["width"] >= 1280 - 2 * 20 - 2  # main's padding only
        assert single_line(page, "#health .when")
        rows = {r.get_attribute("data-mailbox"): r.inner_text() for r in page.locator("#health tbody tr").all()}
        alice = rows[str(console["alice_box"])]
        assert alice.count("alice@ourco.com") == 1  # the account is the owner: not repeated
        bob = next(t for t in rows.values() if "bob.rep" in t)
        assert "for bob@ourco.com" in bob and "Fix: " in bob
        assert "Stage" not in page.inner_text("#health thead") and "idle" not in page.inner_text("#health")
        assert "not syncing now" in alice
        page.set_viewport_size({"width": 360, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        assert page.locator("#health thead").is_hidden()  # rows become labelled cards


def test_the_mailbox_page_keeps_sync_cursors_in_technical_details_and_says_whether_it_is_syncing(console, browser):
    with signed_in(browser, console, 1280) as page:
        page.goto(url(console, "mailbox"))
        main = page.inner_text("main")
        assert "uidvalidity" not in main.lower() and "highestmodseq" not in main.lower()
        assert page.inner_text("#stage") == "not syncing now"
        page.click("#technical summary")
        assert "uidvalidity" in page.inner_text("#technical").lower()
        # Removing is behind a menu that says what stays and what goes.
        assert page.locator("#remove").is_hidden()
        page.click("#remove-menu summary")
        text = page.inner_text("#remove-menu")
        assert "interactions already on the timeline stay" in text and "cannot be undone" in text
        assert page.locator("#remove").is_visible()
        assert page.locator("#resync").is_hidden()
        page.click("#resync-menu summary")
        assert "Nothing is duplicated" in page.inner_text("#resync-menu")


def test_the_users_page_keeps_deactivate_in_a_menu_that_spells_out_the_consequence(console, browser):
    w, users = console["world"], console["users"]
    with signed_in(browser, console, 1280) as page:
        page.goto(url(console, "users"))
        assert page.locator("button.danger:visible").count() == 0
        assert page.locator("#users button:visible").count() == 0  # a Manage menu per row, no button grid
        alice = page.locator("tr.user[data-email='alice@ourco.com']")
        alice.locator("details.manage summary").click()
        text = alice.locator(".menu-body").inner_text()
        assert "revokes their 1 active token" in text and "pauses their 2 mailboxes" in text
        page.locator("h1").click()  # a click elsewhere closes the menu
        assert alice.locator(".menu-body").is_hidden()
        temp = page.locator("tr.user[data-email='temp@ourco.com']")
        temp.locator("details.manage summary").click()
        assert "revokes their 0 active tokens" in temp.inner_text() and "pauses their 0 mailboxes" in temp.inner_text()
        temp.locator("button.deactivate").click()
        page.wait_for_url("**/admin/users?ok=deactivated")
        assert w.scalar("SELECT active FROM app_user WHERE id = :i", i=users["temp@ourco.com"]) in (0, False)
        assert "deactivated" in page.locator("tr.user[data-email='temp@ourco.com']").inner_text()


def test_a_provider_preset_fills_in_server_port_and_security(console, browser):
    with signed_in(browser, console, 360) as page:
        page.goto(url(console, "add-mailbox"))
        page.fill("input[name=port]", "143")
        page.select_option("#preset", label="Fastmail")
        assert page.input_value("input[name=host]") == "imap.fastmail.com"
        assert page.input_value("input[name=port]") == "993"
        assert page.input_value("select[name=security]") == "tls"
        assert "app password" in page.inner_text("#preset-hint")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
    # Without scripts the list would do nothing, so it is not shown; the form still works.
    with signed_in(browser, console, 1280, js=False) as page:
        page.goto(url(console, "add-mailbox"))
        assert page.locator("#preset").is_hidden() and page.locator("input[name=host]").is_visible()


def test_the_navigation_keeps_to_one_line_at_1280_px_and_every_page_stays_on_screen(console, browser):
    with signed_in(browser, console, 1280) as page:
        for name in PAGES.keys() - {"signin"}:
            page.goto(url(console, name))
            tops = page.evaluate(
                "[...document.querySelectorAll('header nav a')].map(a => a.getBoundingClientRect().top)"
            )
            assert len(tops) >= 13 and len(set(tops)) == 1, (name, tops)
            assert page.evaluate("(n => n.scrollWidth <= n.clientWidth)(document.querySelector('header nav'))"), name
            assert page.evaluate(
                "[...document.querySelectorAll('header nav a')].every(a => a.getClientRects().length === 1)"
            )


def test_screenshots_of_every_console_page(console, browser, tmp_path):
    """docs/console-<page>-<width>.png, at 1280 and 360 px, clipped to the first screen."""

    def shoot(page, name: str, width: int) -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= width, name
        out = tmp_path / f"console-{name}-{width}.png"
        page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": width, "height": 800})
        assert 3_000 < out.stat().st_size < 150_000, (out.name, out.stat().st_size)
        if os.environ.get("THREADLINE_UPDATE_SCREENSHOTS") == "1":
            shutil.copyfile(out, DOCS / out.name)

    for width in (1280, 360):
        context = browser.new_context(viewport={"width": width, "height": 800})
        page = context.new_page()
        page.goto(url(console, "signin"))
        shoot(page, "signin", width)
        context.close()
        with signed_in(browser, console, width) as page:
            for name in PAGES.keys() - {"signin"}:
                page.goto(url(console, name))
                if name == "users":
                    page.locator("tr.user[data-email='alice@ourco.com'] details.manage summary").click()
                shoot(page, name, width)
