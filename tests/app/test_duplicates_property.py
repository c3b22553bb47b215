"""Property: on any small timeline, merging two contacts keeps every row (the survivor's
timeline is the union of both) and undoing the merge gives back every table row for row."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import insert

from app.db import read_only, session, write_transaction
from app.models import (
    Company,
    Contact,
    ContactAddress,
    Deal,
    DealContact,
    FollowUp,
    Interaction,
    Participant,
    Pipeline,
    PipelineStage,
)
from app.services import duplicates, timeline
from app.services.actor import Actor
from sync import stats
from tests import factories
from tests.world import make_world

T0 = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
ORG_TABLES = {
    "contact": "id",
    "contactaddress": "id",
    "participant": "id",
    "followup": "id",
    "dealcontact": "deal_id, contact_id",
    "contactstats": "contact_id",
    "contactcolleague": "contact_id, user_id",
    "company": "id",
}

contact_st = st.fixed_dictionaries(
    {
        "company": st.sampled_from([None, 0, 1]),
        "addresses": st.integers(1, 3),
        "name": st.sampled_from(["", "Rory Adams", "Dana Cole"]),
        "tags": st.lists(st.sampled_from(["a", "b", "vip"]), max_size=2, unique=True),
        "key": st.booleans(),
        "title": st.sampled_from([None, "CTO"]),
    }
)
mail_st = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["email", "email", "meeting", "note"]),
        "direction": st.sampled_from(["in", "out"]),
        "people": st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), min_size=1, max_size=3),
        "rep": st.booleans(),
        "followup": st.booleans(),
    }
)
data_st = st.fixed_dictionaries(
    {
        "contacts": st.lists(contact_st, min_size=2, max_size=4),
        "mail": st.lists(mail_st, max_size=6),
        "deals": st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True), max_size=2),
        "pair": st.tuples(st.integers(0, 3), st.integers(0, 3)).filter(lambda p: p[0] != p[1]),
    }
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = make_world(tmp_path_factory.mktemp("merge-property"))
    yield w
    w.rt.engine.dispose()


_orgs = iter(range(1, 10_000))


def build(w, data: dict) -> tuple[int, list[int]]:
    """A fresh organisation holding the drawn contacts, mail, follow-ups and deals."""
    n = next(_orgs)
    with session(w.rt.engine) as s:
        org = factories.create_org(s, f"Org {n}", [f"our{n}.example"])
        rep = factories.add_user(s, org, f"rep@our{n}.example").id
        org_id = org.id
    with write_transaction(w.rt.engine) as conn:
        companies = [
            conn.execute(
                insert(Company.__table__).values(org_id=org_id, domain=f"c{i}.example", name=f"C{i}", created_at=T0)
            ).inserted_primary_key[0]
            for i in range(2)
        ]
        contacts, addresses = [], []
        for i, c in enumerate(data["contacts"]):
            own = [f"p{i}.{k}@c{c['company'] or 0}.example" for k in range(c["addresses"])]
            cid = conn.execute(
                insert(Contact.__table__).values(
                    org_id=org_id,
                    name=c["name"],
                    search_name=c["name"].lower(),
                    primary_email=own[0],
                    company_id=None if c["company"] is None else companies[c["company"]],
                    tags=c["tags"],
                    key_account=c["key"],
                    title=c["title"],
                    created_at=T0,
                )
            ).inserted_primary_key[0]
            for a in own:
                conn.execute(insert(ContactAddress.__table__).values(org_id=org_id, contact_id=cid, address=a))
            contacts.append(cid)
            addresses.append((cid, c["company"], own))
        for j, m in enumerate(data["mail"]):
            at = T0 + timedelta(hours=j)
            iid = conn.execute(
                insert(Interaction.__table__).values(
                    org_id=org_id,
                    kind=m["kind"],
                    message_key=f"m{j}",
                    occurred_at=at,
                    direction=m["direction"],
                    thread_key=f"t{j % 2}",
                    created_at=T0,
                )
            ).inserted_primary_key[0]
            seen = set()
            for who, k in m["people"]:
                cid, company, own = addresses[who % len(addresses)]
                address = own[k % len(own)]
                if address in seen:
                    continue
                seen.add(address)
                conn.execute(
                    insert(Participant.__table__).values(
                        org_id=org_id,
                        interaction_id=iid,
                        occurred_at=at,
                        address=address,
                        role="about" if m["kind"] == "note" else "from",
                        contact_id=cid,
                        company_id=None if company is None else companies[company],
                    )
                )
                if m["followup"]:
                    conn.execute(
                        insert(FollowUp.__table__).values(
                            org_id=org_id,
                            thread_key=f"f{j}-{address}",
                            kind="owe",
                            user_id=rep,
                            interaction_id=iid,
                            contact_id=cid,
                            address=address,
                            since=at,
                            due_at=at,
                            status="open",
                            updated_at=T0,
                        )
                    )
            if m["rep"]:
                conn.execute(
                    insert(Participant.__table__).values(
                        org_id=org_id,
                        interaction_id=iid,
                        occurred_at=at,
                        address=f"rep@our{n}.example",
                        role="to",
                        user_id=rep,
                    )
                )
        if data["deals"]:
            pipe = conn.execute(
                insert(Pipeline.__table__).values(org_id=org_id, name="P", created_at=T0)
            ).inserted_primary_key[0]
            stage = conn.execute(
                insert(PipelineStage.__table__).values(
                    org_id=org_id, pipeline_id=pipe, name="S", position=0, kind="open"
                )
            ).inserted_primary_key[0]
            for k, members in enumerate(data["deals"]):
                deal = conn.execute(
                    insert(Deal.__table__).values(
                        org_id=org_id,
                        pipeline_id=pipe,
                        stage_id=stage,
                        name=f"D{k}",
                        owner_id=rep,
                        amount_minor=0,
                        currency="EUR",
                        opened_at=T0,
                        stage_changed_at=T0,
                        updated_at=T0,
                    )
                ).inserted_primary_key[0]
                for who in {m % len(contacts) for m in members}:
                    conn.execute(
                        insert(DealContact.__table__).values(deal_id=deal, contact_id=contacts[who], org_id=org_id)
                    )
        stats.recompute(conn, org_id, contacts)
    return org_id, contacts


def tables(w, org_id: int) -> dict:
    return {
        t: [tuple(r) for r in w.sql(f"SELECT * FROM {t} WHERE org_id = :o ORDER BY {key}", o=org_id)]
        for t, key in ORG_TABLES.items()
    }


def timeline_of(w, org_id: int, contact_id: int) -> set[int]:
    with read_only(w.rt.engine) as conn:
        return {i["id"] for i in timeline.contact_timeline(conn, org_id, contact_id, limit=100)["items"]}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=data_st)
def test_merge_then_undo_is_the_identity_and_merge_keeps_every_row(world, data):
    w = world
    org_id, contacts = build(w, data)
    keep, gone = (contacts[i % len(contacts)] for i in data["pair"])
    if keep == gone:
        return
    before = tables(w, org_id)
    union = timeline_of(w, org_id, keep) | timeline_of(w, org_id, gone)
    op = Actor.operator(org_id)
    result = duplicates.merge(w.rt, op, keep, gone)
    merged = tables(w, org_id)
    assert len(merged["contactaddress"]) == len(before["contactaddress"])
    assert len(merged["participant"]) == len(before["participant"])
    assert len(merged["followup"]) == len(before["followup"])
    assert {r[0] for r in merged["dealcontact"]} == {r[0] for r in before["dealcontact"]}  # every deal keeps someone
    assert timeline_of(w, org_id, keep) == union
    with read_only(w.rt.engine) as conn:
        assert stats.check(conn, org_id)[1] == []  # the kept summaries are the recount of the rows
    duplicates.unmerge(w.rt, op, result["audit_id"])
    assert tables(w, org_id) == before
