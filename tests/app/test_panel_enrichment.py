"""The sidebar's contact card shows what signatures filled in, says where each value
came from, and an edit marks as typed only the fields the person changed (real
headless Chromium against the app on loopback)."""

from __future__ import annotations

import json

from sqlalchemy import text

from app.db import write_transaction
from tests.app.test_activity_api import JANE
from tests.app.test_panel import mail, open_pane, site, wait_state  # noqa: F401 - site is the module's fixture

SIGNED = {"source": "signature", "at": "2026-11-20T09:30:00+00:00", "interaction_id": None}


def _provenance(sd) -> dict:
    raw = sd.world.scalar("SELECT provenance FROM contact WHERE primary_email = :e", e=JANE)
    return raw if isinstance(raw, dict) else json.loads(raw)


def test_the_card_shows_enriched_fields_with_their_source_and_an_edit_marks_only_changed_fields_typed(site, page):  # noqa: F811
    sd, base = site
    provenance = {"title": SIGNED, "mobile": SIGNED, "website": SIGNED}
    with write_transaction(sd.rt.engine) as conn:
        conn.execute(
            text(
                "UPDATE contact SET title = 'Head of Data', mobile = '+447700900123', "
                "website = 'https://www.acme.example', provenance = :p WHERE primary_email = :e"
            ),
            {"p": json.dumps(provenance), "e": JANE},
        )
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    assert page.locator("dd.mobile").inner_text() == "+447700900123"
    assert page.locator("dd.mobile").get_attribute("title").startswith("From their signature")
    link = page.locator("dd.website a")
    assert (
        link.get_attribute("href") == "https://www.acme.example" and link.get_attribute("rel") == "noopener noreferrer"
    )
    assert page.locator(".title").get_attribute("title").startswith("From their signature")

    page.get_by_role("button", name="Edit", exact=True).click()
    page.locator("form.edit-form input[name=mobile]").fill("+44 7700 900999")
    page.locator("form.edit-form button[type=submit]").click()
    page.wait_for_selector("#status:has-text('Contact saved')")
    page.wait_for_selector("dd.mobile:has-text('+44 7700 900999')")

    stored = _provenance(sd)
    assert stored["mobile"]["source"] == "typed"  # changed by the person
    assert stored["title"] == SIGNED and stored["website"] == SIGNED  # sent unchanged: still the signature's
    assert page.locator("dd.mobile").get_attribute("title").startswith("Typed")


def test_a_website_that_is_not_http_is_shown_as_text_not_as_a_link(site, page):  # noqa: F811
    sd, base = site
    with write_transaction(sd.rt.engine) as conn:
        conn.execute(
            text("UPDATE contact SET website = 'javascript:alert(1)' WHERE primary_email = :e"),
            {"e": JANE},
        )
    open_pane(page, base, mail(("Jane Doe", JANE)), token=sd.tokens["alice"])
    wait_state(page, "ready", JANE)
    assert page.locator("dd.website").inner_text() == "javascript:alert(1)"
    assert page.locator("dd.website a").count() == 0
