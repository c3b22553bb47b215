"""Guards found in review: an erased person cannot be re-added by hand, a rule
never destroys reps' notes, and the public Graph webhook refuses huge bodies."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.services import activity, people, privacy, rules
from app.services.actor import Actor
from app.services.errors import Invalid
from tests.world import make_world


def _user(world, email):
    return world.scalar("SELECT id FROM app_user WHERE email = :e", e=email)


def test_an_erased_person_cannot_be_added_again_by_hand(tmp_path):
    world = make_world(tmp_path)
    alice = _user(world, "alice@ourco.com")
    rep = Actor(world.org_id, alice, "rep")
    people.create_contact(world.rt, rep, email="jane@acme.com", name="Jane")
    privacy.erase_person(world.rt, Actor.operator(world.org_id), "jane@acme.com", confirm=True)
    with pytest.raises(Invalid, match="erased"):
        people.create_contact(world.rt, rep, email="Jane@ACME.com", name="Jane Again")
    assert world.scalar("SELECT COUNT(*) FROM contact") == 0


def test_a_never_log_rule_keeps_the_reps_notes_and_tasks(tmp_path):
    world = make_world(tmp_path)
    alice = _user(world, "alice@ourco.com")
    me = Actor(world.org_id, alice, "rep")
    jane = people.create_contact(world.rt, me, email="jane@acme.com", name="Jane")["id"]
    activity.log_email(
        world.rt,
        me,
        internet_message_id="<hello@acme.com>",
        subject="Hello",
        sender={"email": "jane@acme.com", "name": "Jane"},
        to=[{"email": "alice@ourco.com"}],
        cc=[],
        date=None,
    )
    activity.add_note(world.rt, me, jane, "Prefers calls on Tuesdays")
    activity.add_task(world.rt, me, jane, "Send the proposal", None)
    assert sorted(r[0] for r in world.sql("SELECT kind FROM interaction")) == ["email", "note", "task"]
    rules.add_rule(world.rt, Actor.operator(world.org_id), kind="domain", value="acme.com")
    # The email from Jane is gone; what the rep wrote stays.
    assert sorted(tuple(r) for r in world.sql("SELECT kind, COALESCE(body, subject) FROM interaction")) == [
        ("note", "Prefers calls on Tuesdays"),
        ("task", "Send the proposal"),
    ]
    assert world.scalar("SELECT COUNT(*) FROM contact") == 1


def test_graph_webhook_refuses_bodies_over_a_mebibyte(tmp_path):
    world = make_world(tmp_path)
    client = TestClient(create_app(world.rt))
    huge = b'{"value": [' + b" " * (2 << 20) + b"]}"
    r = client.post("/graph/notifications", content=huge, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    chunked = client.post(
        "/graph/notifications", content=iter([huge[: 1 << 19]] * 3), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 400
    echo = client.post("/graph/notifications?validationToken=abc%3Cscript%3E")
    assert echo.text == "abc<script>" and echo.headers["content-type"].startswith("text/plain")
    assert echo.headers["x-content-type-options"] == "nosniff"
