"""The sidebar in real headless Chromium against the app served on loopback.

Office.js is replaced by tests/app/office_stub.js: Playwright intercepts the
CDN URL and serves the stand-in, which provides Office.onReady, the mailbox
item and ItemChanged. Every other external request is blocked, so nothing
leaves the machine. One world (module scope) and one browser (session) serve
all tests; each test gets a fresh browser context.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from pathlib import Path

import httpx
import pytest

from app.api import create_app
from app.db import write_transaction
from connectors.base import Attendee, MeetingRecord
from sync.engine import org_context
from sync.ingest import MailboxContext
from sync.meetings import ingest_meetings
from tests.app.test_activity_api import JANE, MARK, NOW, SAM, XSS_SUBJECT, seed
from tests.servers import AppServer

OFFICE_JS = "https://appsforoffice.microsoft.com/lib/1/hosted/office.js"
STUB = (Path(__file__).parent / "office_stub.js").read_text()
DOCS = Path(__file__).resolve().parents[2] / "docs"
LIGHT = {
    "bodyBackgroundColor": "#FFFFFF",
    "bodyForegroundColor": "#242424",
    "controlBackgroundColor": "#F5F5F5",
    "controlForegroundColor": "#242424",
}
DARK = {
    "bodyBackgroundColor": "#1F1F1F",
    "bodyForegroundColor": "#FFFFFF",
    "controlBackgroundColor": "#2B2B2B",
    "controlForegroundColor": "#FFFFFF",
}
ALICE = {"displayName": "Alice Rep", "emailAddress": "alice@ourco.com"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    sd = seed(tmp_path_factory.mktemp("panel"))
    server = AppServer(create_app(sd.rt)).start()
    yield sd, server.url
    server.stop()
    sd.rt.engine.dispose()


def mail(frm: tuple[str, str], subject: str = "Re: Proposal", *, cc=(), key: str | None = None) -> dict:
    return {
        "from": {"displayName": frm[0], "emailAddress": frm[1]},
        "to": [ALICE],
        "cc": [{"displayName": n, "emailAddress": a} for n, a in cc],
        "subject": subject,
        "internetMessageId": f"<{key or 'k-' + frm[1]}>",
        "conversationId": "AAQkAD" + frm[1],
        "dateTimeCreated": (NOW - timedelta(hours=1)).isoformat(),
    }


def open_pane(page, base: str, item: dict | None, *, token: str | None, theme: dict | None = LIGHT):
    """The Outlook task pane with the Office.js stand-in; the token as the add-in keeps it (roamingSettings)."""
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(base) else route.continue_())
    page.route(OFFICE_JS, lambda route: route.fulfill(status=200, body=STUB, content_type="text/javascript"))
    init = {"item": item, "theme": theme, "userProfile": ALICE, "roaming": {"threadlineToken": token} if token else {}}
    page.add_init_script(f"window.__OFFICE_INIT = {json.dumps(init)};")
    page.goto(f"{base}/panel/outlook")


def wait_state(page, state: str, email: str | None = None):
    sel = f'body[data-state="{state}"]' + (f'[data-email="{email}"]' if email else "")
    page.wait_for_selector(sel, timeout=10_000)


def api(base: str, sd, who: str, method: str, path: str, **kw):
    return httpx.request(method, base + path, headers=sd.h(who), timeout=10, **kw)


@contextmanager
def standalone(browser, sd, base: str, path: str, *, width: int = 320, who: str = "alice", **options):
    """The standalone panel at `path` in a fresh context, with `who`'s token already stored."""
    context = browser.new_context(viewport={"width": width, "height": 900}, **options)
    try:
        page = context.new_page()
        page.add_init_script(f"localStorage.setItem('threadline.token', {json.dumps(sd.tokens[who])});")
        page.goto(base + path)
        yield page
    finally:
        context.close()


# -- reading ----------------------------------------------------------------------------------


def test_card_summary_timeline_for_a_known_sender_and_infinite_scroll(site, page):
    sd, base = site
    open_pane(page, base, mail(("Jane Doe", JANE), cc=[("Mark Roe", MARK)]), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    assert page.locator("h1").inner_text() == "Jane Doe"
    assert page.locator(".chip.company").inner_text() == "Acme"
    stats = page.locator(".stats strong").all_inner_texts()
    assert stats == ["20", "11", "0"]  # 20 in, 10 out from alice + 1 from bob
    assert "Bob Rep" in page.locator(".colleagues").inner_text()
    assert "Alice Rep" in page.locator(".colleagues").inner_text()
    # First useful paint well under 300 ms after the API answered.
    paint = page.evaluate("performance.getEntriesByName('tl:first-useful-paint')[0].duration")
    assert 0 <= paint < 300, paint
    # One API call for card + summary + first page.
    items = page.locator("#timeline > li")
    assert items.count() == 20
    assert page.locator("#timeline .subject").first.inner_text() == "Pricing from Bob"
    # Infinite scroll: the rest arrives by cursor pages.
    page.locator(".sentinel").scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelectorAll('#timeline > li').length === 31", timeout=10_000)
    assert page.locator(".sentinel").is_hidden()
    assert page.locator("#timeline .subject").last.inner_text() == "Proposal 0"
    # Fits 320 px: no horizontal scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    # Every form control has a label.
    unlabeled = page.evaluate("""[...document.querySelectorAll('input, select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).length""")
    assert unlabeled == 0
    # Other people at the same company.
    assert "Mark Roe" in page.locator(".company-contacts").inner_text()
    # The full record opens on a page of its own.
    href = page.locator("a.full-link").get_attribute("href")
    assert href.startswith("/panel/contact/")


def test_the_company_section_sits_above_the_timeline_and_stays_put_while_it_pages_in(site, page):
    sd, base = site
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    top = lambda sel: page.evaluate(f"document.querySelector({sel!r}).getBoundingClientRect().top + scrollY")
    company, timeline = top("#h-company"), top("#h-timeline")
    assert company < timeline, (company, timeline)
    assert company < 800  # on the first screen of the 320x800 pane
    page.locator(".sentinel").scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelectorAll('#timeline > li').length === 31", timeout=10_000)
    assert top("#h-company") == company


# The rep's clock: 09:00 on 31 March 2024 in Berlin, the morning summer time began.
RELATIVE_DAYS = [
    ("2024-03-30T22:44:00+01:00", "yesterday"),  # 10 hours ago, but yesterday
    ("2024-03-30T16:52:00+01:00", "yesterday"),
    ("2024-03-31T00:05:00+01:00", "today"),
    ("2024-03-31T08:59:00+02:00", "today"),
    ("2024-03-29T23:59:00+01:00", "2 days ago"),
    ("2024-03-30T23:30:00Z", "today"),  # 01:30 in Berlin
    ("2024-03-31T23:30:00+02:00", "today"),
    ("2024-04-01T00:30:00+02:00", "tomorrow"),
    ("2024-04-05T10:00:00+02:00", "in 5 days"),
    ("2024-01-31T09:00:00+01:00", "2 months ago"),
    ("2021-03-31T09:00:00+02:00", "3 years ago"),
    (None, "never"),
    ("not a date", "—"),
]


def test_relative_days_are_calendar_days_in_the_reps_time_zone(site, browser):
    sd, base = site
    context = browser.new_context(timezone_id="Europe/Berlin")
    try:
        page = context.new_page()
        page.goto(f"{base}/panel")
        got = page.evaluate(
            """cases => cases.map(([value]) =>
            window.ThreadlineDates.relativeDay(value, '2024-03-31T09:00:00+02:00'))""",
            RELATIVE_DAYS,
        )
        assert list(zip([v for v, _ in RELATIVE_DAYS], got)) == [(v, want) for v, want in RELATIVE_DAYS]
    finally:
        context.close()
    # The pane uses it: Sam's last mail, two days ago, reads so in New York too.
    with standalone(browser, sd, base, f"/panel?email={SAM}", timezone_id="America/New_York") as page:
        wait_state(page, "ready", SAM)
        want = page.evaluate("v => window.ThreadlineDates.relativeDay(v)", (NOW - timedelta(days=2)).isoformat())
        assert want in ("2 days ago", "yesterday", "3 days ago")
        assert "last " + want in page.locator("#h-summary + .stats + .meta").inner_text()


RITA = "rita@recur.io"


def _weekly_series_with_rita(sd, past: int, coming: int) -> None:
    """A weekly meeting alice holds with Rita: `past` occurrences held, `coming` ahead."""
    first = datetime.combine((NOW - timedelta(weeks=past)).date(), time(10), tzinfo=NOW.tzinfo) + timedelta(days=1)
    records = []
    for week in range(past + coming):
        at = first + timedelta(weeks=week)
        rid = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        records.append(
            MeetingRecord(
                remote_id=f"weekly.ics#{rid}",
                uid="weekly-1@recur.io",
                recurrence_id=rid,
                start=at,
                end=at + timedelta(minutes=30),
                subject="Weekly check-in",
                location="Room 2",
                organizer=Attendee("alice@ourco.com", "Alice Rep", "organizer", "accepted"),
                attendees=[Attendee(RITA, "Rita Recur", "attendee", "accepted")],
            )
        )
    mbx, folder, uid, email = sd.mailboxes["alice"]
    with write_transaction(sd.rt.engine) as conn:
        ingest_meetings(
            conn, org_context(conn, sd.world.org_id, sd.rt.box), MailboxContext(mbx, folder, uid, email), records
        )


def test_a_recurring_meeting_is_one_entry_every_week_next_on(site, page):
    sd, base = site
    sd.deliver(
        "alice",
        frm=("Rita Recur", RITA),
        to=[("Alice Rep", "alice@ourco.com")],
        subject="Agenda",
        when=NOW - timedelta(hours=3),
    )
    _weekly_series_with_rita(sd, past=6, coming=4)
    open_pane(page, base, mail(("Rita Recur", RITA)), token=sd.tokens["alice"])
    wait_state(page, "ready", RITA)
    # Four upcoming occurrences: one entry, above the timeline.
    upcoming = page.locator(".upcoming > li")
    assert upcoming.count() == 1
    assert page.locator("#h-next").inner_text().lower() == "next meeting"
    assert upcoming.locator(".subject").inner_text() == "Weekly check-in"
    assert upcoming.locator(".meta").inner_text().startswith("every week, next on ")
    top = lambda sel: page.evaluate(f"document.querySelector({sel!r}).getBoundingClientRect().top")
    assert top("#h-next") < top("#h-timeline")
    # Six held: one timeline entry listing the six dates.
    meetings = page.locator("#timeline > li.item-meeting")
    assert meetings.count() == 1
    assert meetings.locator("details.occurrences summary").inner_text() == "6 occurrences, every week"
    assert meetings.locator("details.occurrences li").count() == 6
    assert page.locator("#timeline > li").count() == 2  # and the email
    # The cadence in words, from the occurrences' start times.
    cases = [
        (["2024-01-01T10:00:00Z", "2024-01-08T10:00:00Z", "2024-01-15T10:00:00Z"], "every week"),
        (["2024-01-01T10:00:00Z", "2024-01-15T10:00:00Z"], "every 2 weeks"),
        (["2024-01-01T09:00:00Z", "2024-01-02T09:00:00Z"], "every day"),
        (["2024-01-31T09:00:00Z", "2024-02-29T09:00:00Z", "2024-03-31T09:00:00Z"], "every month"),
        (["2024-01-01T09:00:00Z", "2024-01-04T09:00:00Z", "2024-01-15T09:00:00Z"], ""),
        (["2024-01-01T09:00:00Z"], ""),
    ]
    got = page.evaluate("cases => cases.map(([starts]) => window.ThreadlineDates.cadence(starts))", cases)
    assert got == [want for _, want in cases]


def test_switching_person_and_mail_updates_the_pane(site, page):
    sd, base = site
    open_pane(page, base, mail(("Jane Doe", JANE), cc=[("Mark Roe", MARK)]), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    buttons = page.locator("nav.people button")
    assert buttons.all_inner_texts() == ["Jane Doe", "Mark Roe"]
    buttons.nth(1).click()
    wait_state(page, "ready", MARK)
    assert page.locator("h1").inner_text() == "Mark Roe"
    assert page.locator("nav.people button[aria-pressed=true]").inner_text() == "Mark Roe"
    # Outlook selects another mail: ItemChanged.
    page.evaluate("item => window.__officeStub.selectItem(item)", mail(("Sam Spam", SAM), "Buy now"))
    wait_state(page, "ready", SAM)
    assert page.locator("h1").inner_text() == "Sam Spam"
    assert page.locator("nav.people").count() == 0
    # Two quick changes: the pane ends on the last one, whatever order the answers come in.
    page.evaluate(
        """([a, b]) => { window.__officeStub.selectItem(a); window.__officeStub.selectItem(b); }""",
        [mail(("Jane Doe", JANE)), mail(("Mark Roe", MARK))],
    )
    wait_state(page, "ready", MARK)
    page.wait_for_timeout(300)
    assert page.locator("h1").inner_text() == "Mark Roe"
    # Nothing selected (pinned pane, empty folder): item is null.
    page.evaluate("window.__officeStub.selectItem(null)")
    wait_state(page, "empty")
    assert "Select an email" in page.locator("main").inner_text()


def test_subject_with_markup_is_shown_as_text(site, page):
    sd, base = site
    xss_name = '<img src=x onerror="window.__xss=2">Evil'
    open_pane(page, base, mail(("Jane Doe", JANE), XSS_SUBJECT), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    assert page.get_by_text(XSS_SUBJECT, exact=True).is_visible()
    # An unknown sender whose display name carries markup.
    page.evaluate("item => window.__officeStub.selectItem(item)", mail((xss_name, "evil@badco.io"), XSS_SUBJECT))
    wait_state(page, "unknown", "evil@badco.io")
    assert page.locator("h1").inner_text() == xss_name
    assert page.locator("input[name=name]").input_value() == xss_name
    page.wait_for_timeout(200)
    assert page.locator("img, b, script:not([src])").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_a_name_and_subject_that_reverse_themselves_are_shown_in_their_real_order(site, page):
    sd, base = site
    rlo, rlm = "\u202e", "\u200f"
    anna = (f"{rlm}Anna {rlo}GNP.exe", "anna@bidi.io")  # drawn as "Anna exe.PNG" if left alone
    sd.deliver(
        "alice",
        frm=anna,
        to=[("Alice Rep", "alice@ourco.com")],
        subject=f"Invoice {rlo}GNP.exe",
        when=NOW - timedelta(hours=5),
    )
    open_pane(page, base, mail(anna, f"Invoice {rlo}GNP.exe"), token=sd.tokens["alice"])
    wait_state(page, "ready", "anna@bidi.io")
    assert page.locator("h1").inner_text() == "Anna [U+202E]GNP.exe"
    assert page.locator("#timeline .subject").first.inner_text() == "Invoice [U+202E]GNP.exe"
    assert not re.search("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]", page.locator("body").inner_text())
    # On screen only: the data, and the edit form that writes them back, keep the original.
    card = api(base, sd, "alice", "GET", "/api/lookup", params={"email": "anna@bidi.io"}).json()
    assert card["contact"]["name"] == f"{rlm}Anna {rlo}GNP.exe"
    assert card["timeline"]["items"][0]["subject"] == f"Invoice {rlo}GNP.exe"
    page.click("text=Edit")
    assert page.locator("input[name=name]").input_value() == f"{rlm}Anna {rlo}GNP.exe"


def test_mail_claiming_a_colleague_without_proof_shows_as_received_from_an_unverified_sender(site, page):
    sd, base = site
    vic = ("Vic Tim", "vic@phish-target.io")
    sd.deliver(
        "alice", frm=vic, to=[("Alice Rep", "alice@ourco.com")], subject="Hello Alice", when=NOW - timedelta(hours=8)
    )
    # In Alice's inbox, claiming Bob; nothing vouches for it (no Sent copy, no trusted stamp).
    sd.deliver(
        "alice",
        frm=("Bob Rep", "bob@ourco.com"),
        to=[("Alice Rep", "alice@ourco.com")],
        cc=[vic],
        subject="Wire the deposit today",
        when=NOW - timedelta(hours=4),
    )
    open_pane(page, base, mail(vic, "Hello Alice"), token=sd.tokens["alice"])
    wait_state(page, "ready", vic[1])
    forged = page.locator("#timeline > li").first
    assert forged.locator(".subject").inner_text() == "Wire the deposit today"
    assert forged.locator(".kind").inner_text().lower() == "email received"
    assert forged.locator(".chip.unverified").inner_text() == "Unverified sender"
    assert "From Bob Rep" in forged.inner_text()
    assert page.locator(".stats strong").all_inner_texts() == ["2", "0", "0"]
    colleagues = page.locator(".colleagues").inner_text()
    assert "Alice Rep" in colleagues and "Bob Rep" not in colleagues
    assert page.locator("#timeline > li").nth(1).locator(".chip.unverified").count() == 0


def test_a_mass_mailing_lists_its_kept_recipients_and_says_how_many_more_it_named(site, page):
    sd, base = site
    dora = ("Dora Crowd", "dora@crowd-events.io")
    crowd = [(f"Guest {i}", f"guest{i}@crowd-events.io") for i in range(3)]
    sd.deliver(
        "alice",
        frm=dora,
        to=[("Alice Rep", "alice@ourco.com")],
        cc=crowd,
        subject="Summit invitation",
        when=NOW - timedelta(hours=2),
        recipients_not_kept=9_500,
    )
    item = api(base, sd, "alice", "GET", "/api/lookup", params={"email": dora[1]}).json()["timeline"]["items"][0]
    assert (item["subject"], item["recipients_not_kept"]) == ("Summit invitation", 9_500)
    open_pane(page, base, mail(dora, "Summit invitation"), token=sd.tokens["alice"])
    wait_state(page, "ready", dora[1])
    shown = page.locator("#timeline > li").first.locator(".meta").all_inner_texts()
    assert any("and 9,500 more recipients not listed" in line for line in shown), shown


# -- acting ----------------------------------------------------------------------------------


def test_add_note_and_task_mark_done_edit_stage_and_tags(site, page):
    sd, base = site
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    jane_id = int(page.evaluate("document.body.dataset.contactId"))
    # Keyboard only: open the note form, type, submit.
    page.get_by_role("button", name="Add note", exact=True).focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.name") == "note"
    page.keyboard.type("Wants a pilot in Q3 <b>soon</b>")
    page.locator("form.note-form button[type=submit]").click()
    first = page.locator("#timeline > li").first
    first.wait_for()
    page.wait_for_function("() => document.querySelector('#timeline > li').dataset.kind === 'note'")
    assert "Wants a pilot in Q3 <b>soon</b>" in first.inner_text()
    # A colleague sees it at once.
    seen = api(base, sd, "bob", "GET", "/api/lookup", params={"email": JANE}).json()
    assert seen["timeline"]["items"][0]["kind"] == "note"
    assert (seen["timeline"]["items"][0].get("body") or seen["timeline"]["items"][0]["snippet"]).startswith(
        "Wants a pilot in Q3"
    )
    # A follow-up task with a due date, then done.
    page.get_by_role("button", name="Add task", exact=True).click()
    page.locator("form.task-form input[name=title]").fill("Send the pilot plan")
    page.locator("form.task-form input[name=due]").fill((NOW + timedelta(days=7)).date().isoformat())
    page.locator("form.task-form button[type=submit]").click()
    page.wait_for_function("() => document.querySelector('#timeline > li').dataset.kind === 'task'")
    task = page.locator("#timeline > li").first
    assert "Send the pilot plan" in task.inner_text() and "Due" in task.inner_text()
    task_id = int(task.get_attribute("data-id"))
    task.locator("input[type=checkbox]").check()
    page.wait_for_selector(f'#timeline > li[data-id="{task_id}"].done')
    assert sd.world.scalar("SELECT done_at FROM interaction WHERE id = :i", i=task_id) is not None
    due = datetime.fromisoformat(str(sd.world.scalar("SELECT due_at FROM interaction WHERE id = :i", i=task_id)))
    chosen = datetime.combine((NOW + timedelta(days=7)).date(), time(9, 0))
    assert abs(due.replace(tzinfo=None) - chosen) <= timedelta(hours=14)  # 09:00 in the browser's time zone
    # Lifecycle stage from the fixed list.
    options = page.locator("select[name=stage] option").all_inner_texts()
    assert options == ["—", "lead", "qualified", "opportunity", "customer", "churned"]
    page.locator("select[name=stage]").select_option("customer")
    page.wait_for_selector("#status:has-text('Stage saved')")
    wait_state(page, "ready", JANE)
    assert sd.world.scalar("SELECT stage FROM contact WHERE id = :i", i=jane_id) == "customer"
    # Edit fields and tags.
    page.get_by_role("button", name="Edit", exact=True).click()
    page.locator("form.edit-form input[name=title]").fill("Head of Data")
    page.locator("form.edit-form input[name=tags]").fill("pilot, emea")
    page.locator("form.edit-form button[type=submit]").click()
    page.wait_for_selector("#status:has-text('Contact saved')")
    page.wait_for_function("() => document.querySelectorAll('.tags .chip').length === 2")
    assert page.locator(".tags .chip").all_inner_texts() == ["pilot", "emea"]
    assert page.locator(".title").inner_text() == "Head of Data"
    assert page.locator("select[name=stage]").input_value() == "customer"
    # Nobody owns Jane yet: the rep takes her.
    page.locator("button.take-owner").click()
    page.wait_for_selector("#status:has-text('You own this contact now')")
    assert sd.world.scalar("SELECT owner_id FROM contact WHERE id = :i", i=jane_id) == sd.users["alice"]
    page.wait_for_selector("dd.owner:has-text('Alice Rep')")


def test_unknown_sender_added_as_contact_in_one_click(site, page):
    sd, base = site
    open_pane(page, base, mail(("Una Known", "una@newco.io"), "Hello"), token=sd.tokens["alice"])
    wait_state(page, "unknown", "una@newco.io")
    assert "is not in Threadline yet" in page.locator("main").inner_text()
    assert page.locator("form.add-contact input[name=name]").input_value() == "Una Known"
    page.get_by_role("button", name="Add as contact").click()
    wait_state(page, "ready", "una@newco.io")
    assert page.locator("h1").inner_text() == "Una Known"
    assert page.locator(".chip.company").inner_text() == "Newco"
    r = api(base, sd, "bob", "GET", "/api/lookup", params={"email": "una@newco.io"})
    assert r.status_code == 200 and r.json()["contact"]["stage"] == "lead"


def test_an_unknown_sender_at_a_known_company_shows_who_works_with_it_and_a_name(site, browser):
    sd, base = site
    # No display name to go on (not in Outlook): the address gives one.
    with standalone(browser, sd, base, "/panel?email=lena.lane@acme.com") as page:
        wait_state(page, "unknown", "lena.lane@acme.com")
        assert page.locator("form.add-contact input[name=name]").input_value() == "Lena Lane"
        assert page.locator(".colleague-count").inner_text() == "2 colleagues work with Acme: Alice Rep, Bob Rep"
        assert page.locator(".company-last").inner_text().startswith("Latest: ")
        assert "Jane Doe" in page.locator(".company-context .company-contacts").inner_text()
        top = lambda sel: page.evaluate(f"document.querySelector({sel!r}).getBoundingClientRect().top")
        assert top(".company-context") < top("form.add-contact")


def test_log_this_email_when_the_mailbox_is_not_synced(site, page):
    sd, base = site
    item = mail(("Lou Logged", "lou@logged.io"), "Quote request", key="quote.1@logged.io")
    open_pane(page, base, item, token=sd.tokens["alice"])
    wait_state(page, "unknown", "lou@logged.io")
    page.get_by_role("button", name="Log this email").click()
    wait_state(page, "ready", "lou@logged.io")
    page.wait_for_selector("#status:has-text('Email logged')")
    assert page.locator("#timeline .subject").first.inner_text() == "Quote request"
    assert sd.world.scalar("SELECT COUNT(*) FROM interaction WHERE message_key = 'quote.1@logged.io'") == 1


def test_never_log_sits_in_a_menu_that_says_how_many_stored_emails_it_deletes(site, page):
    sd, base = site
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    assert page.locator("button.never-log").is_hidden()  # no red button under Edit
    page.locator(".more-actions summary").click()
    consequence = page.locator(".more-actions .consequence")
    page.wait_for_function("() => !document.querySelector('.more-actions button.never-log').disabled")
    # 31 emails with Jane; Bob's one is in his mailbox, not alice's.
    assert consequence.inner_text().startswith(
        f"Deletes the 30 stored emails with {JANE} that only your mailbox holds."
    )
    assert page.locator("button.never-log").inner_text() == "Never log and delete 30 emails"
    assert sd.world.scalar("SELECT COUNT(*) FROM exclusionrule WHERE value = :v", v=JANE) == 0  # nothing done yet


def test_never_log_the_sender(site, page):
    sd, base = site
    open_pane(page, base, mail(("Sam Spam", SAM), "Buy now"), token=sd.tokens["alice"])
    wait_state(page, "ready", SAM)
    page.locator(".more-actions summary").click()
    button = page.locator("button.never-log")
    page.wait_for_function("() => !document.querySelector('.more-actions button.never-log').disabled")
    assert "Deletes the 1 stored email with " + SAM in page.locator(".more-actions .consequence").inner_text()
    button.click()
    # Sam's mail is gone (it was only in alice's mailbox) and so is the contact.
    wait_state(page, "unknown", SAM)
    page.wait_for_selector("#status:has-text('no longer logged')")
    assert sd.world.sql("SELECT user_id, kind, value FROM exclusionrule WHERE value = :v", v=SAM) == [
        (sd.users["alice"], "address", SAM)
    ]


# -- sign-in ------------------------------------------------------------------------------------


def test_tokens_refused_and_other_organisation_sees_nothing(site, page, browser):
    sd, base = site
    # A made-up token: the pane asks to sign in again, with the server's reason.
    open_pane(page, base, mail(("Jane Doe", JANE)), token="tl_made-up-token")
    wait_state(page, "signin")
    assert "invalid or revoked token" in page.locator("main").inner_text()
    assert "Proposal" not in page.locator("body").inner_text()
    # A personal access token entered once, kept in the add-in's roaming settings.
    page.get_by_label("Personal access token").fill(sd.tokens["alice"])
    page.get_by_role("button", name="Save token").click()
    wait_state(page, "ready", JANE)
    assert page.evaluate("window.__officeStub.roaming.threadlineToken") == sd.tokens["alice"]
    # Another organisation's token: Jane is unknown there, none of OurCo's data shows.
    context = browser.new_context(viewport={"width": 320, "height": 800})
    page = context.new_page()
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["carol"])
    wait_state(page, "unknown", JANE)
    text = page.locator("body").inner_text()
    assert "Proposal" not in text and "Acme" not in text and "Bob Rep" not in text
    jane_id = api(base, sd, "alice", "GET", "/api/lookup", params={"email": JANE}).json()["contact"]["id"]
    r = api(base, sd, "carol", "POST", f"/api/contacts/{jane_id}/notes", json={"body": "sneaky"})
    assert r.status_code == 404
    context.close()


# -- standalone panel, themes, screenshots --------------------------------------------------------


def test_standalone_panel_with_csp_and_dark_scheme(site, browser):
    sd, base = site
    context = browser.new_context(viewport={"width": 320, "height": 800}, color_scheme="dark")
    try:
        page = context.new_page()
        page.add_init_script(f"localStorage.setItem('threadline.token', {json.dumps(sd.tokens['alice'])});")
        response = page.goto(f"{base}/panel?email={JANE}")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'self'" in csp
        wait_state(page, "ready", JANE)
        assert page.locator("h1").inner_text() == "Jane Doe"
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(31, 31, 31)", bg
        # The full record on a page of its own.
        jane_id = page.evaluate("document.body.dataset.contactId")
        page.goto(f"{base}/panel/contact/{jane_id}")
        wait_state(page, "ready", JANE)
        assert page.evaluate("document.body.classList.contains('full')")
        # CORS: only the app's own origin and Outlook's hosts.
        ok = httpx.options(
            f"{base}/api/lookup",
            headers={"Origin": "https://outlook.office.com", "Access-Control-Request-Method": "GET"},
        )
        assert ok.headers.get("access-control-allow-origin") == "https://outlook.office.com"
        bad = httpx.options(
            f"{base}/api/lookup", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in bad.headers
    finally:
        context.close()


def test_the_standalone_panel_finds_contacts_by_name_and_lists_the_recently_viewed(site, browser):
    sd, base = site
    with standalone(browser, sd, base, "/panel", width=360) as page:
        wait_state(page, "empty")
        assert page.locator("#h-recent").count() == 0  # nobody viewed yet
        page.get_by_label("Find a contact by name or email").fill("jan")
        hit = page.locator(".search-results .hits button").first
        hit.wait_for(timeout=10_000)
        assert hit.inner_text() == "Jane Doe"
        assert "Acme" in page.locator(".search-results .hits li").first.inner_text()
        hit.click()
        wait_state(page, "ready", JANE)
        page.goto(f"{base}/panel?email={MARK}")
        wait_state(page, "ready", MARK)
        page.goto(f"{base}/panel")
        wait_state(page, "empty")
        assert page.locator(".recent button").all_inner_texts() == ["Mark Roe", "Jane Doe"]
        # An address typed in full opens straight away, known or not.
        page.get_by_label("Find a contact by name or email").fill("nobody@newco.io")
        page.keyboard.press("Enter")
        wait_state(page, "unknown", "nobody@newco.io")


def test_outlook_themes_light_and_dark_with_screenshots(site, page, tmp_path):
    sd, base = site
    jane_id = api(base, sd, "alice", "GET", "/api/lookup", params={"email": JANE}).json()["contact"]["id"]
    r = api(
        base,
        sd,
        "alice",
        "PATCH",
        f"/api/contacts/{jane_id}",
        json={
            "title": "Head of Data",
            "phone": "+44 20 7946 0018",
            "tags": ["pilot", "emea"],
            "stage": "opportunity",
            "owner_id": sd.users["alice"],
        },
    )
    assert r.status_code == 200
    open_pane(page, base, mail(("Jane Doe", JANE), cc=[("Mark Roe", MARK)]), token=sd.tokens["alice"], theme=LIGHT)
    wait_state(page, "ready", JANE)
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    page.screenshot(path=str(tmp_path / "sidebar-light.png"))
    # Outlook switches to its dark theme (OfficeThemeChanged).
    page.evaluate("t => window.__officeStub.setTheme(t)", DARK)
    page.wait_for_function("() => document.body.dataset.theme === 'dark'")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(31, 31, 31)"
    assert page.evaluate("getComputedStyle(document.querySelector('h1')).color") == "rgb(255, 255, 255)"
    page.screenshot(path=str(tmp_path / "sidebar-dark.png"))
    for name in ("sidebar-light.png", "sidebar-dark.png"):
        assert (tmp_path / name).stat().st_size > 5_000
        # THREADLINE_UPDATE_SCREENSHOTS=1 refreshes the pictures in docs/.
        if os.environ.get("THREADLINE_UPDATE_SCREENSHOTS") == "1":
            shutil.copyfile(tmp_path / name, DOCS / name)


def test_screenshots_of_the_pane_at_360_and_1280_px(site, browser, tmp_path):
    """docs/pane-*.png: the standalone pane at 360 px and a full record at 1280 px, menus open.
    THREADLINE_UPDATE_SCREENSHOTS=1 refreshes them."""
    sd, base = site
    jane_id = api(base, sd, "alice", "GET", "/api/lookup", params={"email": JANE}).json()["contact"]["id"]
    shots = {
        "pane-360.png": (360, f"/panel?email={JANE}", "ready"),
        "pane-1280.png": (1280, f"/panel/contact/{jane_id}", "ready"),
        "pane-unknown-360.png": (360, "/panel?email=lena.lane@acme.com", "unknown"),
    }
    for name, (width, path, state) in shots.items():
        with standalone(browser, sd, base, path, width=width) as page:
            wait_state(page, state)
            if state == "ready":
                page.locator(".more-actions summary").click()
                page.wait_for_function("() => !document.querySelector('.more-actions button.never-log').disabled")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(tmp_path / name), clip={"x": 0, "y": 0, "width": width, "height": 900})
        assert 5_000 < (tmp_path / name).stat().st_size < 150_000
        if os.environ.get("THREADLINE_UPDATE_SCREENSHOTS") == "1":
            shutil.copyfile(tmp_path / name, DOCS / name)


def test_an_outlook_too_old_for_the_pane_says_so_instead_of_loading_forever(site, browser):
    """Outlook 2016/2019 show add-ins in Internet Explorer 11: stand-in, a page
    without fetch/Promise/Symbol. The pane explains instead of spinning."""
    sd, base = site
    context = browser.new_context(viewport={"width": 320, "height": 600})
    try:
        page = context.new_page()
        page.add_init_script("delete window.fetch; window.Symbol = undefined;")
        page.goto(f"{base}/panel?email={JANE}")
        text = page.locator("main").inner_text(timeout=5000)
        assert "Internet Explorer" in text and "/panel" in text
        modern = context.new_page()
        modern.add_init_script(f"localStorage.setItem('threadline.token', {json.dumps(sd.tokens['alice'])});")
        modern.goto(f"{base}/panel?email={JANE}")
        wait_state(modern, "ready", JANE)
        assert "Internet Explorer" not in modern.locator("main").inner_text()
    finally:
        context.close()
