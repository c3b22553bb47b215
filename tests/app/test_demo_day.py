"""The demo's first open (`./run demo`): the printed admin token's day shows a follow-up of each
kind (waiting on them, you owe a reply, going quiet), on /home in headless Chromium, and the
pane's deal section shows the demo's deals; docs/home-1280.png and docs/pane-deals-360.png
are taken here (THREADLINE_UPDATE_SCREENSHOTS=1 refreshes them).

The demo company is built as `serve --demo` builds it (app/services/demo.py: the same corpus
seed, the real engine, the deals and the follow-up sweep), with 600 messages instead of 4,000
to keep it to seconds: the follow-up scenes (demodata/scenes.py) do not depend on the size."""

from __future__ import annotations

import json
import os
import shutil
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import text

from app.runtime import open_runtime
from app.services import demo
from app.settings import load_settings
from tests.app.test_panel import DOCS, open_pane, wait_state
from tests.world import runtime_env

KINDS = {"waiting": "Waiting on them", "owe": "You owe a reply", "quiet": "Going quiet"}


@pytest.fixture(scope="module")
def demo_company(tmp_path_factory):
    saved = demo.DEMO_MESSAGES
    demo.DEMO_MESSAGES = 600
    try:
        rt = open_runtime(load_settings(runtime_env(tmp_path_factory.mktemp("demo"), THREADLINE_IDLE="0")))
        info = demo.seed_demo(rt)
    finally:
        demo.DEMO_MESSAGES = saved
    yield SimpleNamespace(rt=rt, info=info)
    rt.engine.dispose()


def test_the_demo_admins_day_has_a_follow_up_of_each_kind_on_first_open(demo_company, live_app, browser, tmp_path):
    base = live_app(demo_company)
    token = demo_company.info["token"]
    day = httpx.get(base + "/api/me/day", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    # The scenes' three (demodata/scenes.py), overdue; the generated stream may add more.
    shown = {(f["kind"], f["who"], f["subject"], f["overdue"]) for f in day["followups"]}
    assert ("waiting", "Nora Lindqvist", "Proposal for Bluepeak Outdoor", True) in shown, shown
    assert ("owe", "Tomas Ferreira", "Question about the renewal", True) in shown, shown
    assert ("quiet", "Halvorsen Marine", None, True) in shown, shown
    assert "Halvorsen Marine: fleet analytics" in {d["name"] for d in day["deals"]}  # nothing since the last email
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.add_init_script(f"localStorage.setItem('threadline.token', {json.dumps(token)});")
        page.goto(base + "/home")
        page.locator("[data-followup]").first.wait_for()
        shown = page.locator("[data-followup]").all_inner_texts()
        for label in KINDS.values():
            assert any(label.lower() in item.lower() for item in shown), (label, shown)
        page.screenshot(path=str(tmp_path / "home-1280.png"), full_page=True)
        # The rep chooses the daily digest on the same page: none, or an hour of their day.
        assert page.locator("#digest-hour").input_value() == ""
        page.locator("#digest-hour").select_option("7")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('daily at 07:00')")
    finally:
        context.close()
    assert 5_000 < (tmp_path / "home-1280.png").stat().st_size < 600_000
    with demo_company.rt.engine.connect() as conn:
        chosen = conn.execute(
            text("SELECT digest_enabled, digest_hour FROM app_user WHERE email = :e"), {"e": demo_company.info["admin"]}
        ).one()
    assert tuple(chosen) == (True, 7)
    if os.environ.get("THREADLINE_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(tmp_path / "home-1280.png", DOCS / "home-1280.png")


def test_the_panes_deal_section_shows_a_demo_customers_deals(demo_company, live_app, browser, tmp_path):
    base = live_app(demo_company)
    with demo_company.rt.engine.connect() as conn:
        admin = demo_company.info["admin"]
        email, name, deals = conn.execute(
            text(
                "SELECT c.primary_email, c.name, count(*) FROM deal d JOIN dealcontact dc ON dc.deal_id = d.id "
                "JOIN contact c ON c.id = dc.contact_id JOIN pipelinestage s ON s.id = d.stage_id "
                "WHERE s.kind = 'open' GROUP BY c.id, c.primary_email, c.name ORDER BY count(*) DESC, c.id LIMIT 1"
            )
        ).one()
    item = {
        "from": {"displayName": name, "emailAddress": email},
        "to": [{"displayName": "", "emailAddress": admin}],
        "cc": [],
        "subject": "Re: Next steps",
        "internetMessageId": "<demo-shot@example>",
        "conversationId": "AAQkADdemo",
        "dateTimeCreated": "2026-01-01T09:00:00+00:00",
    }
    context = browser.new_context(viewport={"width": 360, "height": 1000})
    try:
        page = context.new_page()
        open_pane(page, base, item, token=demo_company.info["token"])
        wait_state(page, "ready", email)
        page.wait_for_selector("section.deals[data-loaded]")
        section = page.locator("section.deals")
        assert section.locator("li.deal").count() >= deals
        assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing sticks out
        section.screenshot(path=str(tmp_path / "pane-deals-360.png"))
    finally:
        context.close()
    assert 3_000 < (tmp_path / "pane-deals-360.png").stat().st_size < 300_000
    if os.environ.get("THREADLINE_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(tmp_path / "pane-deals-360.png", DOCS / "pane-deals-360.png")
