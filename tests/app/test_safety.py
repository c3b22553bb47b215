"""Guards found in review: an erased person cannot be re-added by hand, a rule
never destroys reps' notes, and the public Graph webhook refuses huge bodies."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.db import write_transaction
from app.services import activity, people, privacy, rules
from tests.world import make_world


def _user(world, email):
    return world.scalar("SELECT id FROM app_user WHERE email = :e", e=email)


def test_an_erased_person_cannot_be_added_again_by_hand(tmp_path):
    world = make_world(tmp_path)
    alice = _user(world, "alice@ourco.com")
    with write_transaction(world.rt.engine) as conn:
        people.create_contact(conn, world.org_id, alice, box=world.rt.box, email="jane@acme.com", name="Jane")
        privacy.erase_person(conn, world.org_id, "jane@acme.com", actor_id=alice, box=world.rt.box)
    with write_transaction(world.rt.engine) as conn, pytest.raises(people.Invalid, match="erased"):
        people.create_contact(conn, world.org_id, alice, box=world.rt.box, email="Jane@ACME.com", name="Jane Again")
    assert world.scalar("SELECT COUNT(*) FROM contact") == 0


def test_a_never_log_rule_keeps_the_reps_notes_and_tasks(tmp_path):
    world = make_world(tmp_path)
    alice = _user(world, "alice@ourco.com")
    with write_transaction(world.rt.engine) as conn:
        jane = people.create_contact(conn, world.org_id, alice, box=world.rt.box, email="jane@acme.com", name="Jane")
        activity.log_email(conn, world.org_id, alice, "alice@ourco.com", box=world.rt.box,
                           internet_message_id="<hello@acme.com>", subject="Hello",
                           sender={"email": "jane@acme.com", "name": "Jane"}, to=[{"email": "alice@ourco.com"}],
                           cc=[], date=None)
        activity.add_note(conn, world.org_id, alice, jane, "Prefers calls on Tuesdays")
        activity.add_task(conn, world.org_id, alice, jane, "Send the proposal", None)
    assert sorted(r[0] for r in world.sql("SELECT kind FROM interaction")) == ["email", "note", "task"]
    with write_transaction(world.rt.engine) as conn:
        rules.add_rule(conn, world.org_id, kind="domain", value="acme.com", user_id=None, actor_id=alice)
    # The email from Jane is gone; what the rep wrote stays.
    assert sorted(tuple(r) for r in world.sql("SELECT kind, COALESCE(body, subject) FROM interaction")) == [
        ("note", "Prefers calls on Tuesdays"), ("task", "Send the proposal")]
    assert world.scalar("SELECT COUNT(*) FROM contact") == 1


def test_graph_webhook_refuses_bodies_over_a_mebibyte(tmp_path):
    world = make_world(tmp_path)
    client = TestClient(create_app(world.rt))
    huge = b'{"value": [' + b" " * (2 << 20) + b"]}"
    r = client.post("/graph/notifications", content=huge, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    chunked = client.post("/graph/notifications", content=iter([huge[:1 << 19]] * 3),
                          headers={"Content-Type": "application/json"})
    assert chunked.status_code == 400
    echo = client.post("/graph/notifications?validationToken=abc%3Cscript%3E")
    assert echo.text == "abc<script>" and echo.headers["content-type"].startswith("text/plain")
    assert echo.headers["x-content-type-options"] == "nosniff"
