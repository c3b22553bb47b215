"""The rep's day: /api/me/day, /home in headless Chromium (snooze by one click), the CLI list,
and who knows a contact best, over mail synced from a real Dovecot mailbox."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from app.services import orgs
from tests import factories
from tests.world import NOW, make_world, message, runtime_env

DAY = timedelta(days=1)


@pytest.fixture
def synced(tmp_path, imap_user_factory):
    world = make_world(tmp_path)
    alice, bob = imap_user_factory(), imap_user_factory()
    a_box, b_box = world.add_imap("alice@ourco.com", alice), world.add_imap("bob@ourco.com", bob)
    alice.deliver(
        message("alice@ourco.com", "Carol <carol@acme.com>", "Proposal", msgid="p1@ourco.com", when=NOW - 9 * DAY)
    )
    # Alice and Carol wrote both ways (long enough ago to be settled); Bob only once
    for n in range(3):
        alice.deliver(
            message(
                "Carol <carol@acme.com>",
                "alice@ourco.com",
                f"Q{n}",
                msgid=f"c{n}@acme.com",
                when=NOW - 80 * DAY + n * DAY,
            )
        )
        alice.deliver(
            message(
                "alice@ourco.com",
                "carol@acme.com",
                f"Re: Q{n}",
                msgid=f"a{n}@ourco.com",
                when=NOW - 79 * DAY + n * DAY,
                extra=f"In-Reply-To: <c{n}@acme.com>",
            )
        )
    bob.deliver(message("bob@ourco.com", "carol@acme.com", "Intro", msgid="b1@ourco.com", when=NOW - 60 * DAY))
    world.sync(a_box)
    world.sync(b_box)
    with Session(world.rt.engine) as s:
        token = factories.issue_token(s, orgs.find_user(s, world.org_id, "alice@ourco.com"))
    return world, token, tmp_path


def test_the_day_lists_the_overdue_follow_up_and_who_knows_the_contact_best(synced, live_app):
    world, token, _ = synced
    base = live_app(world)
    h = {"Authorization": f"Bearer {token}"}
    day = httpx.get(base + "/api/me/day", headers=h, timeout=10).json()
    assert [(f["kind"], f["subject"], f["overdue"]) for f in day["followups"]] == [("waiting", "Proposal", True)]
    assert day["deals"] == [] and day["meetings_today"] == []
    lookup = httpx.get(base + "/api/lookup", params={"email": "carol@acme.com"}, headers=h, timeout=10).json()
    colleagues = lookup["summary"]["colleagues"]
    assert [c["email"] for c in colleagues] == ["alice@ourco.com", "bob@ourco.com"]
    assert colleagues[0]["strength"] > colleagues[1]["strength"]
    assert colleagues[0]["strength_explanation"] == "7 emails both ways in the last 90 days"
    companies = httpx.get(base + "/api/companies", headers=h, timeout=10).json()
    assert companies[0]["domain"] == "acme.com" and companies[0]["score"] > 0


def test_snoozing_on_the_day_page_takes_one_click(synced, live_app, browser):
    world, token, _ = synced
    base = live_app(world)
    context = browser.new_context(viewport={"width": 900, "height": 800})
    try:
        page = context.new_page()
        page.add_init_script(f"localStorage.setItem('threadline.token', {json.dumps(token)});")
        page.goto(base + "/home")
        item = page.locator("[data-followup]")
        item.wait_for()
        assert "Proposal" in item.inner_text() and "overdue" in item.inner_text().lower()
        item.get_by_role("button", name="Snooze 1 day").click()
        page.get_by_text("Nothing to chase today.").wait_for()
    finally:
        context.close()
    assert world.scalar("SELECT count(*) FROM auditevent WHERE action = 'followup.snooze'") == 1
    assert world.scalar("SELECT status FROM followup WHERE snoozed_until IS NOT NULL") == "open"


def test_the_cli_lists_a_reps_follow_ups(synced, monkeypatch):
    world, _, tmp_path = synced
    from app.cli import app

    for key, value in runtime_env(world.rt.settings.data_dir).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["followups", "list", "--rep", "alice@ourco.com", "--json"])
    assert result.exit_code == 0, result.output
    assert [(r["kind"], r["subject"]) for r in json.loads(result.output)] == [("waiting", "Proposal")]
    missing = CliRunner().invoke(app, ["followups", "list", "--rep", "nobody@ourco.com"])
    assert missing.exit_code != 0 and "no user 'nobody@ourco.com'" in str(missing.exception)  # main() maps it to 3


@pytest.mark.sqlite
def test_the_days_meetings_and_tasks_are_read_through_their_partial_indexes_and_never_walk_the_reps_rows(tmp_path):
    # bench/day.py: without them the day took seconds for a busy rep. Each index leads with
    # org_id, so the queries must name the interaction's organisation, not only the participant's.
    from app.db import read_only
    from app.services import day
    from tests.sqlplans import sqlite_plan, statements

    world = make_world(tmp_path)
    with statements(world.rt.engine) as seen, read_only(world.rt.engine) as conn:
        day.tasks_due(conn, world.org_id, 1, NOW)
        day.meetings(conn, world.org_id, 1, NOW - DAY, NOW)
    plans = [
        sqlite_plan(world.rt.engine, sql, params)
        for sql, params in seen
        if sql.lstrip().upper().startswith("SELECT") and "FROM interaction" in sql
    ]
    assert any("USING INDEX ix_interaction_author_due" in p for p in plans), plans
    meetings_plan = next(p for p in plans if "USING INDEX ix_interaction_meeting_time" in p)
    # Whether the rep is on a meeting: a look-up by the meeting, never a walk of the rep's rows.
    assert "ix_participant_user_time" not in meetings_plan, meetings_plan
