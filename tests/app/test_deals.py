"""Deals and pipelines (app/services/deals.py) on SQLite and PostgreSQL: creating and moving
deals, refusing bad input with the field named and nothing written, who sees what, the deal
timeline (contacts, linked threads, stage changes; newest first, paged) and the board."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert
from sqlmodel import Session

from app.db import read_only, write_transaction
from app.models import Interaction, Participant
from app.services import deals, orgs, people
from app.services.actor import Actor
from app.services.errors import Forbidden, Invalid, NotFound
from tests import factories
from tests.world import make_world

_n = itertools.count(1)
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(params=["sqlite", "postgres"])
def w(request, tmp_path):
    url = request.getfixturevalue("postgres_migrated_url") if request.param == "postgres" else None
    w = make_world(tmp_path, url=url)
    w.op = Actor.operator(w.org_id)
    w.admin = Actor(w.org_id, w.add_user("boss@ourco.com", "Boss", admin=True), "admin")
    w.alice = Actor(w.org_id, w.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'"), "rep")
    w.bob = Actor(w.org_id, w.scalar("SELECT id FROM app_user WHERE email = 'bob@ourco.com'"), "rep")
    w.pipe = deals.create_pipeline(w.rt, w.admin, name="Sales")
    w.stage = {s["name"]: s["id"] for s in w.pipe["stages"]}
    w.jane = people.create_contact(w.rt, w.op, email="jane@acmecorp.com", name="Jane Buyer")
    w.joe = people.create_contact(w.rt, w.op, email="joe@acmecorp.com", name="Joe Buyer")
    yield w
    w.rt.engine.dispose()


def mail(w, *, contact: dict | None, at: datetime, thread: str, subject: str, kind: str = "email") -> int:
    key = f"m{next(_n)}@acmecorp.com"
    with write_transaction(w.rt.engine) as conn:
        iid = conn.execute(
            insert(Interaction.__table__).values(
                org_id=w.org_id,
                kind=kind,
                message_key=key,
                occurred_at=at,
                direction="in",
                subject=subject,
                thread_key=thread or key,
                created_at=at,
            )
        ).inserted_primary_key[0]
        address = contact["email"] if contact else f"stranger{next(_n)}@else.example"
        conn.execute(
            insert(Participant.__table__).values(
                org_id=w.org_id,
                interaction_id=iid,
                occurred_at=at,
                address=address,
                role="from",
                contact_id=contact["id"] if contact else None,
                company_id=(contact.get("company") or {}).get("id") if contact else None,
            )
        )
    return iid


def audit_count(w) -> int:
    return w.scalar("SELECT count(*) FROM auditevent")


def test_a_rep_creates_a_deal_in_the_first_open_stage_with_company_from_its_contact(w):
    d = deals.create_deal(
        w.rt, w.alice, name="Acme rollout", contact_ids=[w.jane["id"]], amount_minor=1_250_000, currency="eur"
    )
    assert d["stage"]["name"] == "Qualified" and d["stage"]["probability"] == 10
    assert d["owner"]["id"] == w.alice.user_id
    assert d["company"]["domain"] == "acmecorp.com"
    assert (d["amount_minor"], d["currency"], d["amount"]) == (1_250_000, "EUR", "12,500.00 EUR")
    assert [h["to_stage"]["name"] for h in d["history"]] == ["Qualified"]
    assert w.scalar("SELECT action FROM auditevent ORDER BY id DESC LIMIT 1") == "deal.create"


def test_moving_a_deal_records_who_and_when_and_a_lost_deal_needs_a_reason(w):
    d = deals.create_deal(w.rt, w.alice, name="Acme", contact_ids=[w.jane["id"]])
    moved = deals.update_deal(w.rt, w.alice, d["id"], {"stage_id": w.stage["Proposal sent"]})
    assert moved["history"][0]["from_stage"]["name"] == "Qualified"
    assert moved["history"][0]["to_stage"]["name"] == "Proposal sent"
    assert moved["history"][0]["user"]["id"] == w.alice.user_id
    before = audit_count(w)
    with pytest.raises(Invalid) as exc:
        deals.update_deal(w.rt, w.alice, d["id"], {"stage_id": w.stage["Lost"]})
    assert exc.value.field == "lost_reason" and audit_count(w) == before
    lost = deals.update_deal(w.rt, w.alice, d["id"], {"stage_id": w.stage["Lost"], "lost_reason": "went with a rival"})
    assert lost["closed_at"] is not None and lost["lost_reason"] == "went with a rival"
    reopened = deals.update_deal(w.rt, w.alice, d["id"], {"stage_id": w.stage["Negotiation"]})
    assert reopened["closed_at"] is None and reopened["lost_reason"] is None
    assert len(reopened["history"]) == 4


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"amount_minor": -1}, "amount_minor"),
        ({"amount_minor": 10**15}, "amount_minor"),
        ({"amount_minor": 12.5}, "amount_minor"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"close_date": date(1999, 1, 1)}, "close_date"),
        ({"close_date": "2300-01-01"}, "close_date"),
        ({"close_date": "next week"}, "close_date"),
        ({"name": "  "}, "name"),
        ({"stage_id": "other-pipeline"}, "stage_id"),
        ({"stage_id": "other-org"}, "stage_id"),
        ({"contact_ids": "other-org"}, "contact_ids"),
        ({"owner_id": "other-org"}, "owner_id"),
        ({"created_by": 1}, "created_by"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(w, changes, field):
    d = deals.create_deal(w.rt, w.admin, name="Acme", owner_id=w.alice.user_id, amount_minor=100)
    other_pipe = deals.create_pipeline(w.rt, w.admin, name=f"Renewals {next(_n)}")
    with Session(w.rt.engine) as s:
        org2 = factories.create_org(s, f"Other {next(_n)}", [f"other{next(_n)}.example"])
        stranger = factories.add_user(s, org2, f"admin@o{next(_n)}.example", admin=True)
        org2_id, stranger_id = org2.id, stranger.id
    foreign_pipe = deals.create_pipeline(w.rt, Actor.operator(org2_id), name="Theirs")
    foreign_contact = people.create_contact(w.rt, Actor.operator(org2_id), email="x@foreign.example")
    swap = {
        "other-pipeline": other_pipe["stages"][1]["id"],
        "other-org": foreign_pipe["stages"][1]["id"],
    }
    changes = {k: swap.get(v, v) if isinstance(v, str) else v for k, v in changes.items()}
    if changes.get("contact_ids") == "other-org":
        changes["contact_ids"] = [foreign_contact["id"]]
    if changes.get("owner_id") == "other-org":
        changes["owner_id"] = stranger_id
    before_audit = audit_count(w)
    with read_only(w.rt.engine) as conn:
        before = deals.deal(conn, w.admin, d["id"])
    with pytest.raises(Invalid) as exc:
        deals.update_deal(w.rt, w.admin, d["id"], changes)
    assert exc.value.field == field
    assert audit_count(w) == before_audit
    with read_only(w.rt.engine) as conn:
        assert deals.deal(conn, w.admin, d["id"]) == before
    # the same values refused at creation, with no deal written
    if field not in ("stage_id", "created_by", "owner_id"):
        count = w.scalar("SELECT count(*) FROM deal")
        with pytest.raises(Invalid) as exc:
            deals.create_deal(w.rt, w.admin, **{"name": "New", "owner_id": w.alice.user_id, **changes})
        assert exc.value.field == field and w.scalar("SELECT count(*) FROM deal") == count


def test_another_organisations_deal_is_not_found_and_its_reads_are_empty(w):
    d = deals.create_deal(w.rt, w.alice, name="Ours")
    with Session(w.rt.engine) as s:
        org2 = factories.create_org(s, "Theirs", ["theirs.example"])
        boss2 = factories.add_user(s, org2, "boss@theirs.example", admin=True)
        them = Actor(org2.id, boss2.id, "admin")
    with pytest.raises(NotFound):
        deals.update_deal(w.rt, them, d["id"], {"name": "Stolen"})
    with read_only(w.rt.engine) as conn:
        with pytest.raises(NotFound):
            deals.deal(conn, them, d["id"])
        assert deals.list_deals(conn, them) == []
        assert deals.open_deals_for(conn, org2.id) == []


def test_with_own_visibility_a_rep_sees_and_edits_only_their_own_and_shared_deals(w):
    mine = deals.create_deal(w.rt, w.alice, name="Alice's")
    bobs = deals.create_deal(w.rt, w.bob, name="Bob's")
    shared = deals.create_deal(w.rt, w.bob, name="Bob's shared", shared=True)
    with read_only(w.rt.engine) as conn:  # the default: every rep sees every deal
        assert {d["id"] for d in deals.list_deals(conn, w.alice)} == {mine["id"], bobs["id"], shared["id"]}
    deals.set_visibility(w.rt, w.admin, "own")
    with read_only(w.rt.engine) as conn:
        assert {d["id"] for d in deals.list_deals(conn, w.alice)} == {mine["id"], shared["id"]}
        assert {d["id"] for d in deals.list_deals(conn, w.admin)} == {mine["id"], bobs["id"], shared["id"]}
        board = deals.board(conn, w.alice)
        assert {c["id"] for col in board["columns"] for c in col["deals"]} == {mine["id"], shared["id"]}
    with pytest.raises(NotFound):
        deals.update_deal(w.rt, w.alice, bobs["id"], {"amount_minor": 1})
    assert deals.update_deal(w.rt, w.alice, shared["id"], {"amount_minor": 5})["amount_minor"] == 5
    with pytest.raises(Forbidden):
        deals.update_deal(w.rt, w.alice, mine["id"], {"owner_id": w.bob.user_id})
    with pytest.raises(Forbidden):
        deals.create_deal(w.rt, w.alice, name="For Bob", owner_id=w.bob.user_id)
    with pytest.raises(Forbidden):
        deals.set_visibility(w.rt, w.alice, "all")


def test_the_deal_timeline_has_its_contacts_and_threads_since_it_opened_and_its_stage_changes(w):
    old = mail(w, contact=w.jane, at=NOW - timedelta(days=30), thread="t-old", subject="before the deal")
    d = deals.create_deal(w.rt, w.alice, name="Acme", contact_ids=[w.jane["id"]], thread_keys=["t-deal"])
    later = d["opened_at"] + timedelta(minutes=5)  # NOW is when the module was imported, maybe long before
    from_jane = mail(w, contact=w.jane, at=later, thread="t-other", subject="jane writes")
    # a reply in the linked thread from someone who is no contact: on the deal by its thread
    reply = mail(w, contact=None, at=later + timedelta(minutes=1), thread="t-deal", subject="Re: proposal")
    unrelated = mail(w, contact=w.joe, at=later + timedelta(minutes=2), thread="t-joe", subject="joe only")
    deals.update_deal(w.rt, w.alice, d["id"], {"stage_id": w.stage["Negotiation"]})
    with read_only(w.rt.engine) as conn:
        page = deals.deal_timeline(conn, w.alice, d["id"], limit=2)
        seen = list(page["items"])
        while page["next_cursor"]:
            page = deals.deal_timeline(conn, w.alice, d["id"], cursor=page["next_cursor"], limit=2)
            seen += page["items"]
    ids = [i["interaction"]["id"] for i in seen if i["type"] == "interaction"]
    assert set(ids) == {from_jane, reply}
    assert old not in ids and unrelated not in ids
    changes = [i["stage_change"]["to_stage"]["name"] for i in seen if i["type"] == "stage_change"]
    assert changes == ["Negotiation", "Qualified"]
    stamps = [i["at"] for i in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert len(seen) == 4  # nothing repeated across pages


def test_linking_a_thread_by_message_id_shows_later_replies_on_the_deal(w):
    d = deals.create_deal(w.rt, w.alice, name="Acme")
    start = d["opened_at"]
    root = mail(w, contact=None, at=start + timedelta(minutes=1), thread="root@acmecorp.com", subject="Pricing")
    key = w.scalar("SELECT message_key FROM interaction WHERE id = :i", i=root)
    linked = deals.link_thread(w.rt, w.alice, d["id"], message_id=f"<{key}>")
    assert linked["thread_keys"] == ["root@acmecorp.com"]
    reply = mail(w, contact=None, at=start + timedelta(minutes=9), thread="root@acmecorp.com", subject="Re: Pricing")
    with read_only(w.rt.engine) as conn:
        items = deals.deal_timeline(conn, w.alice, d["id"])["items"]
        assert [i["interaction"]["id"] for i in items if i["interaction"]][:2] == [reply, root]
        assert [x["id"] for x in deals.deals_for_thread(conn, w.alice, f"<{key}>")] == [d["id"]]


def test_a_message_id_that_is_none_is_refused_naming_the_field(w):
    d = deals.create_deal(w.rt, w.alice, name="Acme")
    for bad in ("two words", "<>"):
        with pytest.raises(Invalid) as exc:
            deals.link_thread(w.rt, w.alice, d["id"], message_id=bad)
        assert exc.value.field == "message_id"
    with pytest.raises(Invalid) as exc:
        deals.link_thread(w.rt, w.alice, d["id"])
    assert exc.value.field == "message_id"
    assert w.scalar("SELECT count(*) FROM dealthread") == 0


def test_the_board_shows_amount_days_in_stage_last_touch_and_next_meeting(w):
    d = deals.create_deal(
        w.rt, w.alice, name="Acme", contact_ids=[w.jane["id"]], amount_minor=9900, currency="USD", thread_keys=["tb"]
    )
    meeting_at = NOW + timedelta(days=2)
    mail(w, contact=w.jane, at=meeting_at, thread="ical:x", subject="Demo call", kind="meeting")
    touched = NOW - timedelta(hours=3)
    mail(w, contact=None, at=touched, thread="tb", subject="thread mail")
    won = deals.create_deal(w.rt, w.alice, name="Done deal")
    deals.update_deal(w.rt, w.alice, won["id"], {"stage_id": w.stage["Won"]})
    with read_only(w.rt.engine) as conn:
        board = deals.board(conn, w.alice, now=d["stage_changed_at"] + timedelta(days=3, minutes=1))
    columns = {c["name"]: c for c in board["columns"]}
    assert list(columns) == ["Qualified", "Meeting booked", "Proposal sent", "Negotiation", "Won", "Lost"]
    (card,) = columns["Qualified"]["deals"]
    assert card["id"] == d["id"] and card["amount"] == "99.00 USD" and card["days_in_stage"] == 3
    assert card["last_touch_at"] == touched
    assert columns["Won"]["deals"] == []  # closed deals leave the board
    with read_only(w.rt.engine) as conn:
        card = deals.board(conn, w.alice, now=NOW)["columns"][0]["deals"][0]
    assert card["next_meeting_at"] == meeting_at


def test_open_deals_for_filters_by_owner_contact_and_close_date(w):
    a = deals.create_deal(w.rt, w.alice, name="A", contact_ids=[w.jane["id"]], close_date=date.today() - timedelta(1))
    b = deals.create_deal(w.rt, w.bob, name="B", contact_ids=[w.joe["id"]], close_date=date.today() + timedelta(30))
    c = deals.create_deal(w.rt, w.bob, name="C")
    deals.update_deal(w.rt, w.bob, c["id"], {"stage_id": w.stage["Won"]})
    with read_only(w.rt.engine) as conn:
        assert [d["id"] for d in deals.open_deals_for(conn, w.org_id)] == [a["id"], b["id"]]
        assert [d["id"] for d in deals.open_deals_for(conn, w.org_id, owner_id=w.bob.user_id)] == [b["id"]]
        assert [d["id"] for d in deals.open_deals_for(conn, w.org_id, contact_ids=[w.jane["id"]])] == [a["id"]]
        assert [d["id"] for d in deals.list_deals(conn, w.alice, contact_id=w.joe["id"])] == [b["id"]]
        overdue = deals.open_deals_for(conn, w.org_id, close_before=date.today())
        assert [d["id"] for d in overdue] == [a["id"]] and overdue[0]["contact_ids"] == [w.jane["id"]]


def test_a_pipeline_needs_won_and_lost_stages_and_probabilities_in_range(w):
    for stages, field in (
        ([{"name": "Only", "kind": "open"}, {"name": "Won", "kind": "won"}], "stages"),
        ([{"name": "A", "probability": 140}, {"name": "W", "kind": "won"}, {"name": "L", "kind": "lost"}], "stages"),
        ([{"name": "A", "kind": "maybe"}, {"name": "W", "kind": "won"}, {"name": "L", "kind": "lost"}], "stages"),
    ):
        with pytest.raises(Invalid) as exc:
            deals.create_pipeline(w.rt, w.admin, name=f"P{next(_n)}", stages=stages)
        assert exc.value.field == field
    with pytest.raises(Invalid) as exc:
        deals.create_pipeline(w.rt, w.admin, name="Sales")
    assert exc.value.field == "name"
    with pytest.raises(Forbidden):
        deals.create_pipeline(w.rt, w.alice, name="Mine")
    assert orgs  # the module the world builds users with


def test_the_console_lists_deals_creates_them_and_says_which_field_is_wrong(tmp_path):
    from fastapi.testclient import TestClient

    from app.api import create_app

    w = make_world(tmp_path)
    boss = w.add_user("boss@ourco.com", "Boss", admin=True)
    with Session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, boss))
    people.create_contact(w.rt, Actor.operator(w.org_id), email="jane@acmecorp.com", name="Jane Buyer")
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(w.rt), follow_redirects=False) as client:
        assert "Create a pipeline first" in client.get("/admin/deals", headers=h).text
        made = client.post(
            "/admin/deals/pipelines", headers=h, data={"name": "Sales", "stages": "New, open, 20\nWon, won\nLost, lost"}
        )
        assert made.status_code == 303
        bad = client.post("/admin/deals", headers=h, data={"name": "<b>Acme</b>", "amount": "-5", "currency": "EUR"})
        assert bad.status_code == 422 and "negative" in bad.text
        ok = client.post(
            "/admin/deals",
            headers=h,
            data={"name": "<b>Acme</b>", "amount": "1,200.50", "currency": "EUR", "contacts": "jane@acmecorp.com"},
        )
        assert ok.status_code == 303
        page = client.get("/admin/deals", headers=h).text
        assert "&lt;b&gt;Acme&lt;/b&gt;" in page and "1,200.50 EUR" in page and "<b>Acme</b>" not in page
        assert "New (open, 20%)" in page
        assert client.post("/admin/deals/visibility", headers=h, data={"deal_visibility": "own"}).status_code == 303
    with read_only(w.rt.engine) as conn:
        assert deals.visibility(conn, w.org_id) == "own"
    w.rt.engine.dispose()
