"""Sign-in links (#token=...) in the standalone panel and on the board (real headless Chromium):
taken silently only where nobody else is signed in; someone else's sign-in is asked about first,
naming both, so a link sent by anyone holding a token cannot quietly make a rep work in another
organisation (app/web/tokenlink.js)."""

from __future__ import annotations

import json
from contextlib import contextmanager

from app.db import session
from app.services import orgs
from tests import factories
from tests.app.test_panel import site, wait_state  # noqa: F401 - site is the module's fixture

STORED = "localStorage.getItem('threadline.token')"


@contextmanager
def fresh_page(browser, sd, base: str, path: str, *, who: str | None):
    """A new browser context at `path`, with `who`'s token stored before the first load only."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        if who:
            page.add_init_script(
                "if (!sessionStorage.getItem('seeded')) { sessionStorage.setItem('seeded', '1'); "
                f"localStorage.setItem('threadline.token', {json.dumps(sd.tokens[who])}); }}"
            )
        page.goto(base + path)
        yield page
    finally:
        context.close()


def test_a_link_where_nobody_is_signed_in_signs_in_and_leaves_the_address(site, browser):  # noqa: F811
    sd, base = site
    with fresh_page(browser, sd, base, "/panel#token=" + sd.tokens["alice"], who=None) as page:
        wait_state(page, "empty")
        assert page.evaluate(STORED) == sd.tokens["alice"]
        assert "token" not in page.url
        assert page.locator("#switch-signin").count() == 0


def test_a_link_with_someone_elses_sign_in_is_asked_about_and_staying_keeps_the_reps_own(site, browser):  # noqa: F811
    sd, base = site
    with fresh_page(browser, sd, base, "/panel#token=" + sd.tokens["carol"], who="alice") as page:
        page.wait_for_selector("#switch-signin")
        text = page.locator("#switch-signin").inner_text()
        assert "Carol (carol@otherco.com) of OtherCo" in text and "Alice Rep (alice@ourco.com) of OurCo" in text
        assert "belongs to another organisation" in text  # told by id: names can be made alike
        assert page.evaluate(STORED) == sd.tokens["alice"]  # nothing taken before the rep chose
        assert "token" not in page.url
        page.get_by_role("button", name="Stay signed in as alice@ourco.com").click()
        wait_state(page, "empty")
        assert page.evaluate(STORED) == sd.tokens["alice"]
        assert page.locator("#switch-signin").count() == 0


def test_switching_takes_the_links_sign_in(site, browser):  # noqa: F811
    sd, base = site
    with fresh_page(browser, sd, base, "/panel#token=" + sd.tokens["carol"], who="alice") as page:
        page.get_by_role("button", name="Switch to carol@otherco.com").click()
        wait_state(page, "empty")
        assert page.evaluate(STORED) == sd.tokens["carol"]


def test_a_new_token_of_the_same_rep_or_a_refused_link_asks_nothing(site, browser):  # noqa: F811
    sd, base = site
    with session(sd.rt.engine) as s:
        again = factories.issue_token(s, orgs.find_user(s, sd.world.org_id, "alice@ourco.com"), "second device")
    with fresh_page(browser, sd, base, "/panel#token=" + again, who="alice") as page:
        wait_state(page, "empty")
        assert page.evaluate(STORED) == again and page.locator("#switch-signin").count() == 0
        page.goto(base + "/panel?again=1#token=tl_not-a-token")
        wait_state(page, "empty")
        assert page.evaluate(STORED) == again and page.locator("#switch-signin").count() == 0


def test_a_link_with_an_empty_token_leaves_the_address_and_changes_nothing(site, browser):  # noqa: F811
    sd, base = site
    for fragment in ("#token=", "#token=&x=1"):
        with fresh_page(browser, sd, base, "/panel" + fragment, who="alice") as page:
            wait_state(page, "empty")
            assert page.evaluate(STORED) == sd.tokens["alice"] and "token" not in page.url


def test_the_board_asks_the_same_before_taking_someone_elses_sign_in(site, browser):  # noqa: F811
    sd, base = site
    with fresh_page(browser, sd, base, "/board#token=" + sd.tokens["carol"], who="alice") as page:
        page.wait_for_selector("#switch-signin")
        assert "carol@otherco.com" in page.locator("#switch-signin").inner_text()
        assert page.evaluate(STORED) == sd.tokens["alice"]
        page.get_by_role("button", name="Stay signed in as alice@ourco.com").click()
        # The board then loads as Alice (this organisation has no pipeline yet: its 404, not a sign-in)
        page.wait_for_selector("body:not([data-state=loading]):not([data-state=switch-signin])")
        assert page.evaluate("document.body.dataset.state") != "signin"
        assert page.evaluate(STORED) == sd.tokens["alice"]
