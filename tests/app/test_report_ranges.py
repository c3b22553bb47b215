"""The new-contacts and cold-accounts reports read only what their range needs (the contacts
created or first emailed in it, through the indexes of migration 0022; each company's last
activity, one index seek per company). Here both are checked against their definitions, counted
in Python from every row, over random companies, contacts, first emails, hand-made contacts and
activity, with times on and beside the range's edges and many ties, for the team and each rep.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import inspect

from app.db import read_only, session, write_transaction
from app.models import AuditEvent, Company, Contact, ContactColleague, ContactStats, Interaction, Participant
from app.services import reports
from app.services.actor import Actor
from tests.world import NOW, make_world

END = NOW.date()
START = END - timedelta(days=83)
SINCE = datetime.combine(START, time(), timezone.utc)
UNTIL = datetime.combine(END + timedelta(days=1), time(), timezone.utc)
CUTOFF = UNTIL - timedelta(days=reports.COLD_DAYS[0])
YEAR_AGO = datetime.combine(END - timedelta(days=365), time(), timezone.utc)  # cold accounts' default start
US = timedelta(microseconds=1)
EDGES = [t + d for t in (SINCE, UNTIL, CUTOFF, YEAR_AGO) for d in (-US, timedelta(0), US)]
# on the edges, or on the hour somewhere from 200 days before the range to after it (ties are common)
TIMES = st.one_of(st.sampled_from(EDGES), st.integers(-200 * 24, 10 * 24).map(lambda h: SINCE + timedelta(hours=h)))
REPS = ("alice@ourco.com", "bob@ourco.com")

CONTACT = st.fixed_dictionaries(
    {
        "company": st.one_of(st.none(), st.integers(0, 3)),
        "created": TIMES,
        "first_email": st.one_of(st.none(), TIMES),
        "meetings": st.integers(0, 2),
        "owner": st.one_of(st.none(), st.sampled_from(REPS)),
        "colleagues": st.sets(st.sampled_from(REPS)),
        "manual": st.booleans(),
    }
)
ACTIVITY = st.tuples(
    st.integers(0, 3), TIMES, st.sampled_from([("email", "in"), ("email", "out"), ("meeting", "in"), ("note", "out")])
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = make_world(tmp_path_factory.mktemp("ranges"))
    yield w
    w.rt.engine.dispose()


def monday(t: datetime) -> str:
    d = t.date()
    return (d - timedelta(days=d.weekday())).isoformat()


def fill(w, contacts: list[dict], activity: list[tuple]) -> tuple[dict[str, int], list[int], list[int]]:
    """Replace the organisation's timeline with these rows; returns the users, companies and contacts' ids."""
    with write_transaction(w.rt.engine) as conn:
        for table in ("participant", "interaction", "contactcolleague", "contactstats", "contact", "company"):
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE org_id = {int(w.org_id)}")
        conn.exec_driver_sql(f"DELETE FROM auditevent WHERE org_id = {int(w.org_id)} AND action = 'contact.create'")
    users = {r.email: r.id for r in w.sql("SELECT id, email FROM app_user WHERE org_id = :o", o=w.org_id)}
    with session(w.rt.engine) as s:
        firms = [Company(org_id=w.org_id, domain=f"firm{i}.example", name=f"Firm {i}") for i in range(4)]
        s.add_all(firms)
        s.flush()
        people = []
        for i, c in enumerate(contacts):
            p = Contact(
                org_id=w.org_id,
                primary_email=f"p{i}@example.org",
                company_id=firms[c["company"]].id if c["company"] is not None else None,
                owner_id=users[c["owner"]] if c["owner"] else None,
                created_at=c["created"],
            )
            s.add(p)
            s.flush()
            people.append(p.id)
            if c["first_email"] is not None or c["meetings"]:
                s.add(
                    ContactStats(
                        contact_id=p.id,
                        org_id=w.org_id,
                        emails_in=1 if c["first_email"] else 0,
                        meetings=c["meetings"],
                        first_email_at=c["first_email"],
                        last_email_at=c["first_email"],
                    )
                )
            for rep in sorted(c["colleagues"]):
                s.add(ContactColleague(contact_id=p.id, user_id=users[rep], org_id=w.org_id, interactions=1))
            if c["manual"]:
                s.add(AuditEvent(org_id=w.org_id, action="contact.create", target=f"contact:{p.id}"))
        for j, (firm, at, (kind, direction)) in enumerate(activity):
            i = Interaction(
                org_id=w.org_id, kind=kind, message_key=f"m{j}", occurred_at=at, direction=direction, thread_key=f"t{j}"
            )
            s.add(i)
            s.flush()
            s.add(
                Participant(
                    org_id=w.org_id,
                    interaction_id=i.id,
                    occurred_at=at,
                    address=f"someone@firm{firm}.example",
                    role="from",
                    company_id=firms[firm].id,
                )
            )
        s.commit()
        return users, [f.id for f in firms], people


def expected_new(contacts: list[dict], rep: str | None) -> dict[str, dict[tuple[str, str], int]]:
    """The definition: a contact is new at the earlier of its creation and first email, from
    "manual" (added by hand), "email", "meeting" or "other"; a company is new with its first
    contact (earliest, then lowest id); one rep counts the contacts they own or mailed with."""
    mine = [(i, c) for i, c in enumerate(contacts) if rep is None or c["owner"] == rep or rep in c["colleagues"]]

    def first(c):
        return min(c["created"], c["first_email"]) if c["first_email"] is not None else c["created"]

    def source(c):
        return "manual" if c["manual"] else "email" if c["first_email"] else "meeting" if c["meetings"] else "other"

    out: dict[str, dict[tuple[str, str], int]] = {"contacts": {}, "companies": {}}
    firsts: dict[int, tuple] = {}
    for i, c in mine:
        if SINCE <= first(c) < UNTIL:
            key = (monday(first(c)), source(c))
            out["contacts"][key] = out["contacts"].get(key, 0) + 1
        if c["company"] is not None:
            firsts[c["company"]] = min(
                firsts.get(c["company"], (first(c), i, c)), (first(c), i, c), key=lambda x: x[:2]
            )
    for at, _, c in firsts.values():
        if SINCE <= at < UNTIL:
            key = (monday(at), source(c))
            out["companies"][key] = out["companies"].get(key, 0) + 1
    return out


def expected_cold(contacts: list[dict], activity: list[tuple], rep: str | None) -> dict[str, str]:
    """The definition: the companies (of one rep's mailed contacts) whose last activity of any kind
    up to the range's end falls from a year before that end to 60 days before it (activity after
    the end does not warm it on that day): domain -> last activity's day."""
    last: dict[int, datetime] = {}
    for firm, at, _ in activity:
        if at < UNTIL:
            last[firm] = max(last.get(firm, at), at)
    if rep is not None:
        theirs = {c["company"] for c in contacts if rep in c["colleagues"] and c["company"] is not None}
        last = {f: at for f, at in last.items() if f in theirs}
    return {f"firm{f}.example": at.date().isoformat() for f, at in last.items() if YEAR_AGO <= at < CUTOFF}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(contacts=st.lists(CONTACT, max_size=12), activity=st.lists(ACTIVITY, max_size=10))
def test_new_contacts_and_cold_accounts_equal_their_definitions_counted_over_every_row(world, contacts, activity):
    users, _, _ = fill(world, contacts, activity)
    boss = Actor.operator(world.org_id)
    weeks = reports.Scope(world.org_id, START, END, None).weeks()
    for rep in (None, *REPS):
        rep_id = users[rep] if rep else None
        with read_only(world.rt.engine) as conn:
            new = reports.new_contacts(conn, boss, start=START, end=END, rep_id=rep_id)
            cold = reports.cold_accounts(conn, boss, end=END, rep_id=rep_id, limit=500)
        want = expected_new(contacts, rep)
        for table in new["tables"]:
            assert [row[0] for row in table["rows"]] == weeks
            got = {
                (row[0], src): n for row in table["rows"] for src, n in zip(reports.SOURCES, row[1:], strict=True) if n
            }
            assert got == want[table["key"]], (rep, table["key"])
        assert {row[1]: row[2] for row in cold["tables"][0]["rows"]} == expected_cold(contacts, activity, rep), rep


def test_the_report_indexes_are_there_for_the_range_scans(world):
    with read_only(world.rt.engine) as conn:
        names = {
            table: {ix["name"] for ix in inspect(conn).get_indexes(table)}
            for table in ("contact", "contactstats", "contactcolleague")
        }
    assert "ix_contact_org_created" in names["contact"]
    assert "ix_contactstats_org_first_email" in names["contactstats"]
    assert "ix_contactcolleague_org_user" in names["contactcolleague"]


def test_a_company_whose_first_contact_came_before_the_range_is_not_new_in_it_though_a_later_one_is(world):
    before, inside = SINCE - timedelta(days=3), SINCE + timedelta(days=10)
    contacts = [
        # firm 0: known since before the range; its newer contact is new, the company is not
        {
            "company": 0,
            "created": before,
            "first_email": None,
            "meetings": 0,
            "owner": None,
            "colleagues": set(),
            "manual": False,
        },
        {
            "company": 0,
            "created": inside,
            "first_email": inside,
            "meetings": 0,
            "owner": None,
            "colleagues": set(),
            "manual": False,
        },
        # firm 1: created in the range but first emailed before it: neither it nor its company is new
        {
            "company": 1,
            "created": inside,
            "first_email": before,
            "meetings": 0,
            "owner": None,
            "colleagues": set(),
            "manual": False,
        },
        # firm 2: two contacts at the same moment; the company is new once, from the lower id
        {
            "company": 2,
            "created": inside,
            "first_email": None,
            "meetings": 0,
            "owner": None,
            "colleagues": set(),
            "manual": True,
        },
        {
            "company": 2,
            "created": inside,
            "first_email": None,
            "meetings": 1,
            "owner": None,
            "colleagues": set(),
            "manual": False,
        },
    ]
    fill(world, contacts, [])
    with read_only(world.rt.engine) as conn:
        new = reports.new_contacts(conn, Actor.operator(world.org_id), start=START, end=END)
    counts = {
        t["key"]: {src: sum(r[1 + k] for r in t["rows"]) for k, src in enumerate(reports.SOURCES)}
        for t in new["tables"]
    }
    assert counts["contacts"] == {"email": 1, "meeting": 1, "manual": 1, "other": 0}
    assert counts["companies"] == {"email": 0, "meeting": 0, "manual": 1, "other": 0}


def test_a_company_last_active_on_the_cold_cutoff_is_not_cold_and_a_microsecond_before_it_is(world):
    fill(
        world,
        [],
        [(0, CUTOFF, ("email", "in")), (1, CUTOFF - US, ("meeting", "in")), (2, YEAR_AGO - US, ("email", "out"))],
    )
    with read_only(world.rt.engine) as conn:
        cold = reports.cold_accounts(conn, Actor.operator(world.org_id), end=END)
    assert [row[1] for row in cold["tables"][0]["rows"]] == ["firm1.example"]
