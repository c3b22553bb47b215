"""The sidebar when things go wrong or take long, and used with the keyboard only: a slow
answer, a server out of reach, a database refusing a write, focus kept where the rep was
(real headless Chromium against the app on loopback)."""

from __future__ import annotations

import json

from tests.app.test_activity_api import JANE, MARK
from tests.app.test_panel import mail, open_pane, site, standalone, wait_state  # noqa: F401 - site is the module's fixture

# Holds every call to the API for window.__delay ms before it leaves the browser (its headers
# already set): a slow server. window.__delayLookups holds only the lookups.
SLOW_FETCH = """(() => {
  const real = window.fetch;
  window.__delay = 0;
  window.__delayLookups = 0;
  window.fetch = (url, init) => new Promise(r => setTimeout(r,
    String(url).includes("/api/lookup") ? window.__delayLookups || window.__delay : window.__delay))
    .then(() => real(url, init));
})()"""


def focused(page) -> str:
    return page.evaluate(
        "(() => { const a = document.activeElement; return a.tagName + ' ' + (a.name || a.textContent.trim()); })()"
    )


def test_while_a_slow_answer_is_on_its_way_the_pane_says_whom_it_loads_and_no_longer_shows_the_last_person(site, page):  # noqa: F811
    sd, base = site
    page.add_init_script(SLOW_FETCH)
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    page.evaluate("window.__delay = 4000")
    page.evaluate("item => window.__officeStub.selectItem(item)", mail(("Mark Roe", MARK)))
    page.wait_for_timeout(1000)
    main = page.locator("main")
    # Jane's card, with buttons that would add a note to her, is not left under Mark's email.
    assert "Jane Doe" not in main.inner_text()
    assert page.locator("main button").count() == 0
    assert "Loading Mark Roe" in main.inner_text()
    assert main.get_attribute("aria-busy") == "true"
    wait_state(page, "ready", MARK)
    assert page.locator("h1").inner_text() == "Mark Roe"
    assert main.get_attribute("aria-busy") is None


def test_a_quick_refresh_of_the_same_person_keeps_the_card_on_screen(site, page):  # noqa: F811
    sd, base = site
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    page.evaluate("""() => { window.__blank = false; new MutationObserver(() => {
        if (!document.querySelector('main h1')) window.__blank = true; }).observe(document.querySelector('main'), {childList: true}); }""")
    page.get_by_role("button", name="Edit", exact=True).click()
    page.locator("form.edit-form input[name=title]").fill("Head of Data")
    page.locator("form.edit-form button[type=submit]").click()
    page.wait_for_selector("#status:has-text('Contact saved')")
    wait_state(page, "ready", JANE)
    assert page.locator(".title").inner_text() == "Head of Data"
    assert page.evaluate("window.__blank") is False


def test_a_server_out_of_reach_is_named_as_such_with_a_way_to_try_again(site, page):  # noqa: F811
    sd, base = site
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    page.route("**/api/lookup*", lambda route: route.abort("connectionrefused"))
    page.evaluate("item => window.__officeStub.selectItem(item)", mail(("Mark Roe", MARK)))
    wait_state(page, "error", MARK)
    text = page.locator("main [role=alert]").inner_text()
    assert "Threadline could not be reached" in text and "Failed to fetch" not in text
    page.unroute("**/api/lookup*")
    page.get_by_role("button", name="Try again").click()
    wait_state(page, "ready", MARK)


def test_a_note_refused_by_the_database_or_lost_on_the_way_says_why_and_keeps_the_text(site, page):  # noqa: F811
    sd, base = site
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    refused = {"detail": "the database is read-only; try again later, or tell your administrator", "error": "database"}
    page.route(
        "**/notes",
        lambda route: route.fulfill(status=503, content_type="application/json", body=json.dumps(refused)),
    )
    page.get_by_role("button", name="Add note", exact=True).click()
    note = page.locator("form.note-form textarea[name=note]")
    note.fill("Called: <b>wants</b> the pilot in Q3 \u2014 \u05e9\u05dc\u05d5\u05dd")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Note not saved')")
    assert page.locator("#status").inner_text() == "Note not saved: " + refused["detail"]
    assert note.input_value() == "Called: <b>wants</b> the pilot in Q3 \u2014 \u05e9\u05dc\u05d5\u05dd"
    assert focused(page) == "TEXTAREA note"  # the keyboard is back where the text is
    page.unroute("**/notes")
    page.route("**/notes", lambda route: route.abort("connectionrefused"))
    page.locator("form.note-form button[type=submit]").click()
    page.wait_for_selector("#status:has-text('could not be reached')")
    assert "Failed to fetch" not in page.locator("#status").inner_text()
    assert note.input_value().startswith("Called: <b>wants</b>")
    page.unroute("**/notes")
    page.locator("form.note-form button[type=submit]").click()
    page.wait_for_selector("#status:has-text('Note added')")
    assert focused(page) == "BUTTON Add note"


def test_the_stage_can_be_chosen_with_the_arrow_keys_and_the_last_one_is_saved(site, page):  # noqa: F811
    sd, base = site
    open_pane(page, base, mail(("Mark Roe", MARK)), token=sd.tokens["alice"])
    wait_state(page, "ready", MARK)
    stage = page.locator("select[name=stage]")
    assert stage.input_value() == ""
    stage.focus()
    # Chromium (and Outlook's WebView2) fires "change" at every arrow key on a closed select.
    for _ in range(3):
        page.keyboard.press("ArrowDown")
        page.wait_for_timeout(150)
    assert focused(page) == "SELECT stage"
    assert stage.input_value() == "opportunity"
    page.wait_for_selector("#status:has-text('Stage saved')")
    page.wait_for_timeout(300)
    assert sd.world.scalar("SELECT stage FROM contact WHERE primary_email = :e", e=MARK) == "opportunity"
    assert stage.input_value() == "opportunity"
    assert focused(page) == "SELECT stage"


def test_saving_the_edit_form_with_the_keyboard_leaves_the_focus_on_edit(site, page):  # noqa: F811
    sd, base = site
    open_pane(page, base, mail(("Mark Roe", MARK)), token=sd.tokens["alice"])
    wait_state(page, "ready", MARK)
    page.get_by_role("button", name="Edit", exact=True).focus()
    page.keyboard.press("Enter")
    assert focused(page) == "INPUT name"
    page.keyboard.press("Tab")
    page.keyboard.type("CFO")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Contact saved')")
    page.wait_for_selector(".title:has-text('CFO')")
    assert focused(page) == "BUTTON Edit"


def test_done_on_a_follow_up_with_the_keyboard_moves_the_focus_to_the_next_one(site, browser):  # noqa: F811
    sd, base = site
    with standalone(browser, sd, base, "/home") as page:
        page.wait_for_selector(".followups > li")
        before = page.locator(".followups > li").count()
        assert before >= 2
        second = page.locator(".followups > li").nth(1).get_attribute("data-followup")
        page.locator(".followups > li").first.get_by_role("button", name="Done").focus()
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => document.querySelectorAll('.followups > li').length === {before - 1}")
        page.wait_for_selector("#status:has-text('Done.')")
        assert focused(page) == "BUTTON Done"
        assert page.evaluate("document.activeElement.closest('li').dataset.followup") == second


def test_a_token_revoked_while_a_note_is_typed_offers_a_sign_in_above_it_and_the_note_is_saved_once_after(site, page):  # noqa: F811
    from app.services import orgs
    from app.services.actor import Actor

    sd, base = site
    actor = Actor.operator(sd.world.org_id)
    issued = orgs.create_token(sd.rt, actor, sd.users["alice"], "pane, revoked")
    open_pane(page, base, mail(("Jane Doe", JANE)), token=issued["token"])
    wait_state(page, "ready", JANE)
    page.get_by_role("button", name="Add note", exact=True).click()
    note = page.locator("form.note-form textarea[name=note]")
    text = "Revoked mid-note: wants the pilot in Q3"
    note.fill(text)
    orgs.revoke_token(sd.rt, actor, issued["id"])
    page.locator("form.note-form button[type=submit]").click()
    page.wait_for_selector("#reauth", timeout=10_000)
    assert page.locator("#status").inner_text() == (
        "Note not saved: your sign-in was refused (invalid or revoked token): sign in again."
    )
    assert "revoked or has expired" in page.locator("#reauth [role=alert]").inner_text()
    assert note.input_value() == text  # nothing the rep typed is lost
    fresh = orgs.create_token(sd.rt, actor, sd.users["alice"], "pane, fresh")
    page.locator("#reauth input[name=token]").fill(fresh["token"])
    page.locator("#reauth button[type=submit]").click()
    page.wait_for_selector("#status:has-text('Signed in again')")
    assert page.locator("#reauth").count() == 0 and note.input_value() == text
    page.locator("form.note-form button[type=submit]").click()
    page.wait_for_selector("#status:has-text('Note added')")
    assert sd.world.scalar("SELECT count(*) FROM interaction WHERE kind = 'note' AND body = :b", b=text) == 1
    # The new token is the one kept on this device.
    assert page.evaluate("localStorage.getItem('threadline.token')") == fresh["token"]


def test_a_server_that_never_answers_is_given_up_after_twenty_seconds_with_a_way_to_try_again(site, page):  # noqa: F811
    sd, base = site
    page.clock.install()
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    page.route("**/api/lookup*", lambda route: None)  # taken, never answered
    page.evaluate("item => window.__officeStub.selectItem(item)", mail(("Mark Roe", MARK)))
    page.wait_for_selector("main .loading:has-text('Loading Mark Roe')")
    page.clock.fast_forward(19_000)
    assert page.evaluate("document.body.dataset.state") == "loading"
    page.clock.fast_forward(2_000)
    wait_state(page, "error", MARK)
    assert "did not answer within 20 seconds" in page.locator("main [role=alert]").inner_text()
    page.unroute_all(behavior="ignoreErrors")
    page.get_by_role("button", name="Try again").click()
    wait_state(page, "ready", MARK)


def test_a_refusal_of_a_token_already_replaced_does_not_sign_the_rep_out_again(site, page):  # noqa: F811
    from app.services import orgs
    from app.services.actor import Actor

    sd, base = site
    actor = Actor.operator(sd.world.org_id)
    issued = orgs.create_token(sd.rt, actor, sd.users["alice"], "pane, replaced")
    page.add_init_script(SLOW_FETCH)
    open_pane(page, base, mail(("Jane Doe", JANE)), token=issued["token"])
    wait_state(page, "ready", JANE)
    page.get_by_role("button", name="Add note", exact=True).click()
    page.locator("form.note-form textarea[name=note]").fill("Replaced token")
    orgs.revoke_token(sd.rt, actor, issued["id"])
    # A refresh of Jane leaves with the old token and is answered late...
    page.evaluate("window.__delayLookups = 4000")
    page.evaluate("item => window.__officeStub.selectItem(item)", mail(("Jane Doe", JANE)))
    # ... after the note's refusal has offered a sign-in and the rep has signed in again.
    page.locator("form.note-form button[type=submit]").click()
    page.wait_for_selector("#reauth", timeout=10_000)
    fresh = orgs.create_token(sd.rt, actor, sd.users["alice"], "pane, replacement")
    page.locator("#reauth input[name=token]").fill(fresh["token"])
    page.locator("#reauth button[type=submit]").click()
    page.wait_for_selector("#status:has-text('Signed in again')")
    page.wait_for_timeout(4500)  # the late refusal has come back
    wait_state(page, "ready", JANE)
    assert page.evaluate("window.__officeStub.roaming.threadlineToken") == fresh["token"]
