"""The console's import and contacts pages in real headless Chromium: choose a CSV, preview it with
its columns mapped, run a dry run that lists the rows in error by number and writes nothing, fix
the mapping, import, then find the contacts through a saved segment and export it."""

from __future__ import annotations

from playwright.sync_api import expect

from app.db import session
from app.services import orgs
from tests import factories
from tests.world import make_world

CSV = (
    "Courriel,Full name,Stage,Tags\n"
    "ann@acmecorp.com,<b>Ann</b> Acme,customer,vip\n"
    "not-an-address,Nobody,lead,\n"
    "ben@acmecorp.com,Ben Acme,prospect,vip\n"
    "cat@globexcorp.com,Cat Globex,lead,\n"
)


def test_an_admin_previews_dry_runs_and_imports_a_csv_then_saves_and_exports_a_segment(tmp_path, live_app, page):
    w = make_world(tmp_path)
    admin = w.add_user("boss@ourco.com", "Boss", admin=True)
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin))
    base = live_app(w)
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(base + "/admin/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin*")

    page.goto(base + "/admin/import")
    file = tmp_path / "people.csv"
    file.write_text(CSV, encoding="utf-8")
    page.set_input_files("#file", str(file))
    page.click("#preview")
    page.wait_for_selector("#preview-rows:not([hidden])")
    assert "Read as utf-8" in page.inner_text("#status")
    # "Courriel" is no known header: the email column is unmapped until the admin picks it.
    assert page.input_value("select[name=map_email]") == ""
    assert page.input_value("select[name=map_name]") == "Full name"
    # the name is shown as text, never as markup
    assert page.locator("#preview-rows tbody tr").first.inner_text().count("<b>Ann</b>") == 1

    page.click("#dry-run")
    expect(page.locator("#status")).to_contain_text("no column gives the email")

    page.select_option("select[name=map_email]", "Courriel")
    page.click("#dry-run")
    page.wait_for_selector("#row-errors:not([hidden])")
    status = page.inner_text("#status")
    assert "Dry run, nothing written" in status and "2 in error" in status
    errors = [r.split("\t") for r in page.locator("#row-errors tbody tr").all_inner_texts()]
    assert [(e[0], e[1]) for e in errors] == [("3", "email"), ("4", "stage")]
    assert w.scalar("SELECT count(*) FROM contact") == 0

    page.click("#run")  # refused too: rows in error
    expect(page.locator("#status")).to_contain_text("Nothing written: 4 rows")
    assert w.scalar("SELECT count(*) FROM contact") == 0

    fixed = tmp_path / "fixed.csv"
    fixed.write_text(CSV.replace("not-an-address", "dan@acmecorp.com").replace("prospect", "lead"), encoding="utf-8")
    page.set_input_files("#file", str(fixed))
    page.click("#preview")
    page.wait_for_selector("select[name=map_email] option[value=Courriel]", state="attached")
    page.select_option("select[name=map_email]", "Courriel")
    page.click("#run")
    expect(page.locator("#status")).to_contain_text("Imported")
    assert "4 new" in page.inner_text("#status")
    assert w.scalar("SELECT count(*) FROM contact") == 4
    assert w.scalar("SELECT count(*) FROM auditevent WHERE action = 'import.contacts'") == 1

    page.goto(base + "/admin/contacts?tags=vip")
    rows = page.locator("#results tbody tr.row").all_inner_texts()
    assert len(rows) == 2 and any("<b>Ann</b> Acme" in r for r in rows)
    page.fill("#save-segment input[name=name]", "VIPs")
    page.check("#save-segment input[name=shared]")
    page.click("#save-segment button")
    page.wait_for_url("**/admin/contacts?segment=*")
    assert "VIPs" in page.inner_text("#chosen")
    assert page.locator("#segment option:checked").inner_text().startswith("VIPs")
    with page.expect_download() as dl:
        page.click("#export-csv")
    text = open(dl.value.path(), encoding="utf-8").read()
    assert text.splitlines()[0].startswith("email,name") and "ben@acmecorp.com" in text and "cat@" not in text
