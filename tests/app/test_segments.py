"""Saved segments (app/services/segments.py) on SQLite and PostgreSQL: each filter checked against
the expected set computed independently from the rows the test wrote, shared against private
visibility, organisation scoping, validation with the field named, and a page in a fixed number of
statements whatever its size."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, insert

from app.db import read_only, session, write_transaction
from app.models import Interaction, Participant
from app.services import deals, people, segments
from app.services.actor import Actor
from app.services.errors import Invalid, NotFound
from tests import factories
from tests.world import make_world

NOW = datetime.now(timezone.utc).replace(microsecond=0)
_n = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgres"])
def w(request, tmp_path):
    url = request.getfixturevalue("postgres_migrated_url") if request.param == "postgres" else None
    w = make_world(tmp_path, url=url)
    w.op = Actor.operator(w.org_id)
    w.admin = Actor(w.org_id, w.add_user("boss@ourco.com", "Boss", admin=True), "admin")
    w.alice = Actor(w.org_id, w.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'"), "rep")
    w.bob = Actor(w.org_id, w.scalar("SELECT id FROM app_user WHERE email = 'bob@ourco.com'"), "rep")
    yield w
    w.rt.engine.dispose()


def mail(w, contact: dict, at: datetime, direction: str = "in") -> None:
    with write_transaction(w.rt.engine) as conn:
        iid = conn.execute(
            insert(Interaction.__table__).values(
                org_id=w.org_id,
                kind="email",
                message_key=f"seg{next(_n)}@example",
                occurred_at=at,
                direction=direction,
                subject="s",
                thread_key=f"t{next(_n)}",
                created_at=at,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(Participant.__table__).values(
                org_id=w.org_id,
                interaction_id=iid,
                occurred_at=at,
                address=contact["email"],
                role="from" if direction == "in" else "to",
                contact_id=contact["id"],
                company_id=(contact.get("company") or {}).get("id"),
            )
        )


def people_set(w) -> list[dict]:
    """Twelve contacts with known tags, stages, owners, domains, last mail and deals."""
    spec = [
        # email, tags, stage, owner, days since last mail (None: never), emails
        ("ann@acmecorp.com", ["vip", "emea"], "customer", "alice", 2, 30),
        ("ben@acmecorp.com", ["vip"], "lead", "bob", 40, 1),
        ("cat@globexcorp.com", ["emea"], "customer", None, 100, 3),
        ("dan@globexcorp.com", [], "qualified", "alice", None, 0),
        ("eve@sub.initech.co.uk", ["vip", "apac"], "opportunity", "bob", 10, 8),
        ("fay@initech.co.uk", [], None, None, 200, 2),
        ("gus@gmail.com", ["VIP"], "churned", "alice", 5, 4),
        ("hal@umbrellacorp.com", ["apac"], "lead", None, 61, 6),
    ]
    made = []
    for email, tags, stage, owner, days, n in spec:
        owner_id = getattr(w, owner).user_id if owner else None
        c = people.create_contact(
            w.rt, w.op, email=email, name=email.split("@")[0].title(), tags=tags, stage=stage, owner_id=owner_id
        )
        if days is not None:
            for k in range(n):
                mail(w, c, NOW - timedelta(days=days + k * 0.01), "in" if k % 2 else "out")
        made.append({**c, "spec_tags": tags, "spec_stage": stage, "spec_owner": owner_id, "days": days, "n": n})
    return made


def ids(page) -> set[str]:
    return {r["email"] for r in page["items"]}


def run(w, filters, entity="contacts", **kw) -> dict:
    with read_only(w.rt.engine) as conn:
        return segments.query(conn, w.org_id, entity, segments.clean_filters(filters), now=NOW, **kw)


def test_each_filter_matches_the_contacts_computed_from_the_test_data(w):
    made = people_set(w)
    pipe = deals.create_pipeline(w.rt, w.admin, name="Sales")
    deals.create_deal(w.rt, w.alice, name="Open one", pipeline_id=pipe["id"], contact_ids=[made[0]["id"]])
    lost_stage = next(s["id"] for s in pipe["stages"] if s["kind"] == "won")
    closed = deals.create_deal(w.rt, w.alice, name="Won one", pipeline_id=pipe["id"], contact_ids=[made[1]["id"]])
    deals.update_deal(w.rt, w.alice, closed["id"], {"stage_id": lost_stage})

    def expect(pred) -> set[str]:
        return {m["email"] for m in made if pred(m)}

    def last(m):
        return None if m["days"] is None else NOW - timedelta(days=m["days"])

    assert ids(run(w, {"tags": ["vip"]})) == expect(lambda m: "vip" in [t.lower() for t in m["spec_tags"]])
    assert ids(run(w, {"tags": "vip, emea"})) == expect(lambda m: {"vip", "emea"} <= set(m["spec_tags"]))
    assert ids(run(w, {"stage": ["lead", "customer"]})) == expect(lambda m: m["spec_stage"] in ("lead", "customer"))
    assert ids(run(w, {"owner_id": w.alice.user_id})) == expect(lambda m: m["spec_owner"] == w.alice.user_id)
    assert ids(run(w, {"owner_id": 0})) == expect(lambda m: m["spec_owner"] is None)
    assert ids(run(w, {"domain": "initech.co.uk"})) == expect(lambda m: m["email"].endswith("initech.co.uk"))
    assert ids(run(w, {"domain": "gmail.com"})) == {"gus@gmail.com"}
    cut = (NOW - timedelta(days=60)).date()
    cut_at = datetime.combine(cut, datetime.min.time(), tzinfo=timezone.utc)
    assert ids(run(w, {"last_before": cut.isoformat()})) == expect(lambda m: last(m) is None or last(m) < cut_at)
    assert ids(run(w, {"last_after": cut.isoformat()})) == expect(lambda m: last(m) is not None and last(m) >= cut_at)
    assert ids(run(w, {"has_open_deal": True})) == {made[0]["email"]}
    assert ids(run(w, {"has_open_deal": "false"})) == expect(lambda m: m["email"] != made[0]["email"])
    # Strength: the service's score over the last 90 days, recomputed here from the written mail.
    from app.services.strength import score

    def strength_of(m) -> int:
        if m["days"] is None or m["days"] > 90:
            return 0
        n_in = sum(1 for k in range(m["n"]) if k % 2)
        return score(n_in, m["n"] - n_in, 0, last(m), NOW)["score"]

    strong = expect(lambda m: strength_of(m) >= 40)
    assert strong and strong != expect(lambda m: True)
    assert ids(run(w, {"min_strength": 40})) == strong
    assert ids(run(w, {"max_strength": 0})) == expect(lambda m: strength_of(m) == 0)
    page = run(w, {"stage": ["customer"]})
    assert {r["email"]: r["strength"] for r in page["items"]} == {
        m["email"]: strength_of(m) for m in made if m["spec_stage"] == "customer"
    }


def test_where_reps_see_only_their_own_deals_the_open_deal_filter_looks_only_at_those(w):
    # Otherwise "has an open deal" tells a rep which contacts and companies are in a colleague's
    # deals, which deal visibility "own" keeps from them.
    made = people_set(w)
    pipe = deals.create_pipeline(w.rt, w.admin, name="Sales")
    deals.create_deal(w.rt, w.bob, name="Bob's", pipeline_id=pipe["id"], contact_ids=[made[2]["id"]])
    deals.create_deal(w.rt, w.alice, name="Alice's", pipeline_id=pipe["id"], contact_ids=[made[0]["id"]])
    deals.set_visibility(w.rt, w.admin, "own")
    mine, everyone = {made[0]["email"]}, {made[0]["email"], made[2]["email"]}
    assert ids(run(w, {"has_open_deal": True}, viewer=w.alice)) == mine
    assert made[2]["email"] in ids(run(w, {"has_open_deal": False}, viewer=w.alice))
    assert ids(run(w, {"has_open_deal": True}, viewer=w.admin)) == everyone
    companies = {r["domain"] for r in run(w, {"has_open_deal": True}, "companies", viewer=w.alice)["items"]}
    assert made[2]["email"].split("@")[1] not in companies
    seg = segments.create_segment(w.rt, w.alice, name="In a deal", filters={"has_open_deal": True})
    with read_only(w.rt.engine) as conn:
        assert ids(segments.run_segment(conn, w.alice, seg["id"], now=NOW)) == mine
    deals.set_visibility(w.rt, w.admin, "all")
    assert ids(run(w, {"has_open_deal": True}, viewer=w.alice)) == everyone


def test_company_segments_filter_by_their_people_domain_and_open_deals(w):
    made = people_set(w)
    pipe = deals.create_pipeline(w.rt, w.admin, name="Sales")
    deals.create_deal(w.rt, w.alice, name="Globex deal", pipeline_id=pipe["id"], contact_ids=[made[2]["id"]])
    names = lambda page: {r["domain"] for r in page["items"]}  # noqa: E731
    assert names(run(w, {}, "companies")) == {"acmecorp.com", "globexcorp.com", "initech.co.uk", "umbrellacorp.com"}
    assert names(run(w, {"tags": ["vip"]}, "companies")) == {"acmecorp.com", "initech.co.uk"}
    assert names(run(w, {"has_open_deal": True}, "companies")) == {"globexcorp.com"}
    assert names(run(w, {"last_after": (NOW - timedelta(days=30)).date().isoformat()}, "companies")) == {
        "acmecorp.com",
        "initech.co.uk",
    }
    acme = next(r for r in run(w, {"domain": "acmecorp.com"}, "companies")["items"])
    assert acme["contacts"] == 2


def test_pages_continue_after_the_last_id_and_cover_every_match_once(w):
    people_set(w)
    seen, after = [], 0
    while True:
        page = run(w, {}, after_id=after, limit=3)
        seen += [r["email"] for r in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert len(seen) == len(set(seen)) == 8


def test_a_page_takes_the_same_number_of_statements_for_five_or_fifty_contacts(w):
    def count_for(n: int) -> int:
        for _k in range(n):
            people.create_contact(w.rt, w.op, email=f"p{next(_n)}@bulk{n}.example", tags=["bulk"])
        statements = []
        with read_only(w.rt.engine) as conn:
            listener = lambda *a: statements.append(a[2])  # noqa: E731
            event.listen(w.rt.engine, "before_cursor_execute", listener)
            try:
                page = segments.query(conn, w.org_id, "contacts", {"domain": f"bulk{n}.example"}, limit=100, now=NOW)
            finally:
                event.remove(w.rt.engine, "before_cursor_execute", listener)
        assert len(page["items"]) == n
        return len([s for s in statements if s.lstrip().upper().startswith("SELECT")])

    assert count_for(5) == count_for(50) == 2  # the page, and the page's strengths


def test_bad_filters_are_refused_with_the_field_named(w):
    cases = [
        ({"stage": "prospect"}, "stage"),
        ({"last_before": "31/12/2026"}, "last_before"),
        ({"min_strength": 101}, "min_strength"),
        ({"min_strength": "strong"}, "min_strength"),
        ({"min_strength": 60, "max_strength": 20}, "min_strength"),
        ({"has_open_deal": "maybe"}, "has_open_deal"),
        ({"domain": "a b.com"}, "domain"),
        ({"colour": "red"}, "colour"),
    ]
    for raw, fld in cases:
        with pytest.raises(Invalid) as exc:
            segments.clean_filters(raw)
        assert exc.value.field == fld, raw
    with pytest.raises(Invalid) as exc:
        segments.create_segment(w.rt, w.alice, name="  ", filters={})
    assert exc.value.field == "name"
    assert w.scalar("SELECT count(*) FROM segment") == 0


def test_a_private_segment_is_seen_by_its_author_only_and_a_shared_one_by_the_whole_organisation(w):
    mine = segments.create_segment(w.rt, w.alice, name="My VIPs", filters={"tags": ["vip"]})
    shared = segments.create_segment(w.rt, w.alice, name="Customers", filters={"stage": "customer"}, shared=True)
    with read_only(w.rt.engine) as conn:
        assert {s["name"] for s in segments.list_segments(conn, w.alice)} == {"My VIPs", "Customers"}
        assert {s["name"] for s in segments.list_segments(conn, w.bob)} == {"Customers"}
        with pytest.raises(NotFound):
            segments.get_segment(conn, w.bob, mine["id"])
        with pytest.raises(NotFound):
            segments.run_segment(conn, w.bob, mine["id"])
        assert segments.run_segment(conn, w.bob, shared["id"])["segment"]["name"] == "Customers"
    from app.services.errors import Forbidden

    with pytest.raises(NotFound):
        segments.delete_segment(w.rt, w.bob, mine["id"])
    with pytest.raises(Forbidden):
        segments.update_segment(w.rt, w.bob, shared["id"], {"name": "Mine now"})
    segments.update_segment(w.rt, w.admin, shared["id"], {"name": "All customers"})
    segments.delete_segment(w.rt, w.alice, mine["id"])
    actions = [r[0] for r in w.sql("SELECT action FROM auditevent WHERE action LIKE 'segment.%' ORDER BY id")]
    assert actions == ["segment.create", "segment.create", "segment.update", "segment.delete"]


def test_another_organisation_sees_neither_the_segments_nor_the_contacts(w):
    people_set(w)
    shared = segments.create_segment(w.rt, w.admin, name="Everyone", filters={}, shared=True)
    with session(w.rt.engine) as s:
        org = factories.create_org(s, "Other", ["other.example"])
        other_org = org.id
        other_user = factories.add_user(s, org, "x@other.example", name="X", admin=True).id
    stranger = Actor(other_org, other_user, "admin")
    with read_only(w.rt.engine) as conn:
        assert segments.list_segments(conn, stranger) == []
        with pytest.raises(NotFound):
            segments.run_segment(conn, stranger, shared["id"])
        assert segments.query(conn, other_org, "contacts", {}, now=NOW)["items"] == []
        assert segments.query(conn, other_org, "companies", {}, now=NOW)["items"] == []
