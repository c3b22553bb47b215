"""Reports (/api/reports/..., their SVG charts and CSV, /reports in headless Chromium) over mail
synced from real Dovecot mailboxes.

The expected figures are counted here, in Python, from the raw messages the fixture delivers
(MAIL below), never from the SQL the reports run: weeks, directions, answer times, first
contacts and quiet days are worked out from the message list itself.
"""

from __future__ import annotations

import csv
import io
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import text
from sqlmodel import Session

from app.api import charts
from app.api.reports import csv_cell
from app.db import write_transaction
from app.services import deals, orgs, reports, strength
from app.services.actor import Actor
from app.services.errors import Forbidden, Invalid
from app.textsafe import shown
from tests import factories
from tests.app._mail import new_imap_user, remove_imap_users
from tests.world import NOW, make_world, message

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>window.__pwned=1</script>"Evil" & Co \u202egpj.exe'
REPS = {"alice@ourco.com": "Alice Rep", "bob@ourco.com": "Bob Rep"}
D, H = timedelta(days=1), timedelta(hours=1)


@dataclass(frozen=True)
class Mail:
    key: str
    frm: str
    to: tuple[str, ...]
    at: datetime
    root: str | None = None  # the thread's first message, None for a first message
    prev: str | None = None
    boxes: tuple[str, ...] = ()  # whose mailbox holds a copy
    name: str | None = None  # the sender's display name


def _day(days_ago: float, hour: int = 9) -> datetime:
    d = (NOW - timedelta(days=days_ago)).replace(hour=hour, minute=0, second=0, microsecond=0)
    return min(d, NOW - H)


def _thread(steps, boxes) -> list[Mail]:
    """(key, from, to, time) steps of one thread, each replying to the one before."""
    out: list[Mail] = []
    for key, frm, to, at in steps:
        out.append(Mail(key, frm, to, at, out[0].key if out else None, out[-1].key if out else None, boxes))
    return out


A, B = "alice@ourco.com", "bob@ourco.com"
CAROL, DAN, OLGA, VERA, MAL = (
    "carol@acme.com",
    "dan@globex.com",
    "olga@oldco.io",
    "vera@veryold.net",
    "mallory@malcorp.com",
)
t1 = _day(20)
t2 = _day(10)
t3 = _day(40)
MAIL: list[Mail] = [
    # alice and Carol: alice answers in 3 h; Carol in 45 h, then a reminder; alice answers the first of the two
    *_thread(
        [
            ("c1@acme.com", CAROL, (A,), t1),
            ("a1@ourco.com", A, (CAROL,), t1 + 3 * H),
            ("c2@acme.com", CAROL, (A,), t1 + 48 * H),
            ("c3@acme.com", CAROL, (A,), t1 + 49 * H),
            ("a2@ourco.com", A, (CAROL,), t1 + 53 * H),
        ],
        (A,),
    ),
    # Dan writes to bob with alice in copy: one email in for each; bob answers in 24 h, Dan in 6 h
    *_thread(
        [
            ("d1@globex.com", DAN, (B, A), t2),
            ("b1@ourco.com", B, (DAN,), t2 + 24 * H),
            ("d2@globex.com", DAN, (B,), t2 + 30 * H),
        ],
        (A, B),
    ),
    # alice writes first to Dan: he answers in 30 h, she in 2 h
    *_thread(
        [
            ("a3@ourco.com", A, (DAN,), t3),
            ("d3@globex.com", DAN, (A,), t3 + 30 * H),
            ("a4@ourco.com", A, (DAN,), t3 + 32 * H),
        ],
        (A,),
    ),
    # quiet for 70 days (cold, 60-89) and for 100 days (cold, 90+)
    *_thread([("o1@oldco.io", OLGA, (A,), _day(70)), ("a5@ourco.com", A, (OLGA,), _day(70, 13))], (A,)),
    *_thread([("v1@veryold.net", VERA, (B,), _day(100)), ("b2@ourco.com", B, (VERA,), _day(100, 10))], (B,)),
    # a sender whose display name is markup, 75 days ago, so their company is cold too
    Mail("m1@malcorp.com", MAL, (B,), _day(75), boxes=(B,), name=HOSTILE),
    Mail("b3@ourco.com", B, (MAL,), _day(75, 12), "m1@malcorp.com", "m1@malcorp.com", (B,)),
]


def raw(m: Mail) -> bytes:
    frm = f'"{m.name}" <{m.frm}>' if m.name else (f"{REPS[m.frm]} <{m.frm}>" if m.frm in REPS else m.frm)
    extra = f"In-Reply-To: <{m.prev}>\r\nReferences: <{m.root}> <{m.prev}>" if m.prev else ""
    return message(frm, ", ".join(m.to), f"About {m.key}", msgid=m.key, when=m.at, extra=extra)


def monday(d: datetime | date) -> str:
    d = d.date() if isinstance(d, datetime) else d
    return (d - timedelta(days=d.weekday())).isoformat()


# -- the expected figures, from MAIL alone ---------------------------------------------------


def expected_activity(start: date, end: date) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    for m in MAIL:
        if not start <= m.at.date() <= end:
            continue
        if m.frm in REPS:
            out.setdefault((REPS[m.frm], monday(m.at)), [0, 0, 0])[0] += 1
        else:  # a rep's mailbox holding mail that does not name them: they had it in Bcc
            for rep in sorted(set(m.to) | set(m.boxes)):
                if rep in REPS:
                    out.setdefault((REPS[rep], monday(m.at)), [0, 0, 0])[1] += 1
    return out


def expected_answers(start: date, end: date) -> dict[tuple[str, str], list[float]]:
    """(rep name, 'rep' | 'customer') -> answer times in hours, walking each thread's turns."""
    threads: dict[str, list[Mail]] = {}
    for m in MAIL:
        if start <= m.at.date() <= end:
            threads.setdefault(m.root or m.key, []).append(m)
    out: dict[tuple[str, str], list[float]] = {}
    for msgs in threads.values():
        msgs.sort(key=lambda m: m.at)
        turn_start = None
        for m in msgs:
            ours = m.frm in REPS
            if turn_start is None or (turn_start.frm in REPS) != ours:
                if turn_start is not None:
                    rep = m.frm if ours else turn_start.frm
                    hours = (m.at - turn_start.at).total_seconds() / 3600
                    out.setdefault((REPS[rep], "rep" if ours else "customer"), []).append(hours)
                turn_start = m
    return out


def nearest_rank(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    k = max(1, -(-pct * len(ordered) // 100))
    return round(ordered[k - 1], 1)


def expected_first_weeks() -> tuple[dict[str, str], dict[str, str]]:
    """Each customer's and each customer company's first week (by the first email)."""
    people: dict[str, datetime] = {}
    for m in MAIL:
        for who in (m.frm, *m.to):
            if who not in REPS:
                people[who] = min(people.get(who, m.at), m.at)
    firms: dict[str, datetime] = {}
    for who, at in people.items():
        dom = who.split("@")[1]
        firms[dom] = min(firms.get(dom, at), at)
    return {k: monday(v) for k, v in people.items()}, {k: monday(v) for k, v in firms.items()}


def expected_cold(end: date) -> dict[str, tuple[int, int]]:
    """domain -> (days quiet, strength at the last email) for companies quiet 60 days or more."""
    as_of = datetime.combine(end + D, time(), timezone.utc)
    last: dict[str, datetime] = {}
    for m in MAIL:
        for who in (m.frm, *m.to):
            if who not in REPS:
                dom = who.split("@")[1]
                last[dom] = max(last.get(dom, m.at), m.at)
    out = {}
    for dom, at in last.items():
        if as_of - at < timedelta(days=60):
            continue
        window = [m for m in MAIL if dom in (m.frm.split("@")[1], *(t.split("@")[1] for t in m.to))]
        window = [m for m in window if at - timedelta(days=90) <= m.at <= at]
        ins = sum(1 for m in window if m.frm not in REPS)
        outs = len(window) - ins
        out[dom] = ((as_of - at).days, strength.score(ins, outs, 0, at, at)["score"])
    return out


# -- the world --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory, dovecot):
    created: list[str] = []
    w = make_world(tmp_path_factory.mktemp("reports"))
    boxes = {}
    for rep in REPS:
        user = new_imap_user(dovecot, created)
        boxes[rep] = (user, w.add_imap(rep, user))
    for m in MAIL:
        for rep in m.boxes:
            boxes[rep][0].deliver(raw(m))
    for _, box in boxes.values():
        w.sync(box)
    boss = w.add_user("boss@ourco.com", "Boss", admin=True)
    meg = w.add_user("meg@ourco.com", "Meg Manager")
    orgs.update_user(w.rt, Actor.operator(w.org_id), meg, role="manager")
    with Session(w.rt.engine) as s:
        org2 = factories.create_org(s, "Other Org", ["other.org"])
        other = factories.add_user(s, org2, "admin@other.org", admin=True)
        tokens = {
            "alice": factories.issue_token(s, orgs.find_user(s, w.org_id, A)),
            "bob": factories.issue_token(s, orgs.find_user(s, w.org_id, B)),
            "meg": factories.issue_token(s, s.get(orgs.User, meg)),
            "boss": factories.issue_token(s, s.get(orgs.User, boss)),
            "other": factories.issue_token(s, other),
        }
    # The company of the hostile sender gets that sender's display name, as a name taken from
    # the mail's signature would (issue 13: enrichment), so the chart must show markup as text.
    with write_transaction(w.rt.engine) as conn:
        conn.execute(text("UPDATE company SET name = :n WHERE domain = 'malcorp.com'"), {"n": HOSTILE})
    ids = {r.email: r.id for r in w.sql("SELECT id, email FROM app_user WHERE org_id = :o", o=w.org_id)}
    yield w, tokens, ids
    w.rt.engine.dispose()
    remove_imap_users(dovecot, created)


@pytest.fixture(scope="module")
def api(site):
    from fastapi.testclient import TestClient

    from app.api import create_app

    w, tokens, ids = site
    client = TestClient(create_app(w.rt))

    def call(who: str, path: str, **params):
        return client.get(path, params=params, headers={"Authorization": f"Bearer {tokens[who]}"})

    yield call
    client.close()


def site_ids(api) -> dict[str, int]:
    """User ids by address, as the API lists them to a manager."""
    return {r["email"]: r["id"] for r in api("boss", "/api/reports/activity").json()["reps"]}


def rows_of(report: dict, key: str | None = None) -> list[list]:
    table = report["tables"][0] if key is None else next(t for t in report["tables"] if t["key"] == key)
    return table["rows"]


# -- figures ----------------------------------------------------------------------------------


def test_activity_counts_each_reps_emails_out_and_in_per_week_as_the_mailboxes_hold_them(api):
    r = api("meg", "/api/reports/activity")
    assert r.status_code == 200, r.text
    body = r.json()
    start, end = date.fromisoformat(body["start"]), date.fromisoformat(body["end"])
    assert start.weekday() == 0 and (end - start).days // 7 == 11 and end == datetime.now(timezone.utc).date()
    got = {(row[0], row[1]): row[2:] for row in rows_of(body) if any(row[2:])}
    assert got == {k: [*v] for k, v in expected_activity(start, end).items()}
    # twelve weeks for every rep who had any activity, zeros included
    assert len(rows_of(body)) == 12 * len({k[0] for k in got})
    # the hostile thread's 75-day-old mail is inside the 12 weeks and counted for bob
    assert got[("Bob Rep", monday(_day(75)))] == [1, 1, 0]


def test_response_times_give_the_median_and_p90_of_each_reps_and_customers_answers(api):
    body = api("boss", "/api/reports/response-times").json()
    start, end = date.fromisoformat(body["start"]), date.fromisoformat(body["end"])
    want = expected_answers(start, end)
    assert want[("Alice Rep", "rep")] and want[("Alice Rep", "customer")] and want[("Bob Rep", "rep")]
    for row in rows_of(body):
        name = row[0]
        for offset, who in ((1, "rep"), (4, "customer")):
            samples = want.get((name, who), [])
            assert row[offset] == len(samples), (name, who)
            if samples:
                assert row[offset + 1] == nearest_rank(samples, 50) and row[offset + 2] == nearest_rank(samples, 90)
            else:
                assert row[offset + 1] is None and row[offset + 2] is None
    assert {row[0] for row in rows_of(body)} == {name for name, _ in want}
    # one rep's figures (walked over their own threads only) are their row of the team's
    team = {row[0]: row for row in rows_of(body)}
    for rep, name in REPS.items():
        one = api("boss", "/api/reports/response-times", rep=site_ids(api)[rep]).json()
        assert rows_of(one) == [team[name]]
    # alice: 3 h and 5 h to Carol (from her first unanswered email, not her reminder), 2 h to Dan, 4 h to Olga
    assert sorted(want[("Alice Rep", "rep")]) == [2.0, 3.0, 4.0, 5.0]


def test_new_contacts_and_companies_fall_in_the_week_of_their_first_email_by_source(api):
    body = api("meg", "/api/reports/new-contacts", start=(NOW - 120 * D).date().isoformat()).json()
    people, firms = expected_first_weeks()
    contacts = {row[0]: row[1:] for row in rows_of(body, "contacts")}
    companies = {row[0]: row[1:] for row in rows_of(body, "companies")}
    by_week: dict[str, int] = {}
    for wk in people.values():
        by_week[wk] = by_week.get(wk, 0) + 1
    firm_week: dict[str, int] = {}
    for wk in firms.values():
        firm_week[wk] = firm_week.get(wk, 0) + 1
    sources = list(reports.SOURCES)
    assert {wk: v[sources.index("email")] for wk, v in contacts.items() if v[sources.index("email")]} == by_week
    assert {wk: v[sources.index("email")] for wk, v in companies.items() if v[sources.index("email")]} == firm_week


def test_a_contact_added_by_hand_counts_as_manual_in_this_week(api, site):
    w, tokens, ids = site
    from fastapi.testclient import TestClient

    from app.api import create_app

    with TestClient(create_app(w.rt)) as c:
        r = c.post(
            "/api/contacts",
            json={"email": "nina@newfirm.example", "name": "Nina"},
            headers={"Authorization": f"Bearer {tokens['alice']}"},
        )
        assert r.status_code == 201, r.text
    body = api("meg", "/api/reports/new-contacts").json()
    this_week = monday(datetime.now(timezone.utc))
    row = next(r for r in rows_of(body, "contacts") if r[0] == this_week)
    assert row[1 + reports.SOURCES.index("manual")] == 1


def test_cold_accounts_are_the_companies_quiet_for_60_days_with_their_strength_when_it_went_quiet(api):
    body = api("boss", "/api/reports/cold-accounts").json()
    want = expected_cold(date.fromisoformat(body["end"]))
    assert set(want) == {"oldco.io", "veryold.net", "malcorp.com"}
    got = {row[1]: (row[3], row[5]) for row in rows_of(body)}
    assert got == want
    buckets = {row[1]: row[4] for row in rows_of(body)}
    assert buckets == {"oldco.io": "60-89 days", "malcorp.com": "60-89 days", "veryold.net": "90+ days"}
    by_quiet = api("boss", "/api/reports/cold-accounts", sort="quiet").json()
    assert [row[1] for row in rows_of(by_quiet)] == sorted(want, key=lambda d: -want[d][0])
    strongest = [row[5] for row in rows_of(body)]
    assert strongest == sorted(strongest, reverse=True)


def test_the_pipeline_report_sums_open_value_by_stage_win_rate_time_to_close_and_the_weighted_forecast(site, api):
    w, tokens, ids = site
    op = Actor.operator(w.org_id)
    pipe = deals.create_pipeline(w.rt, op, name="Reports pipeline")
    stage = {s["name"]: s for s in pipe["stages"]}
    first_open = next(s for s in pipe["stages"] if s["kind"] == "open")
    next_month = (date.today().replace(day=1) + timedelta(days=40)).replace(day=10)
    made = [
        deals.create_deal(
            w.rt,
            op,
            name="A",
            pipeline_id=pipe["id"],
            stage_id=first_open["id"],
            owner_id=ids[A],
            amount_minor=100_000,
            close_date=next_month,
        ),
        deals.create_deal(
            w.rt,
            op,
            name="B",
            pipeline_id=pipe["id"],
            stage_id=first_open["id"],
            owner_id=ids[B],
            amount_minor=50_050,
            close_date=next_month,
        ),
    ]
    won_stage = next(s for s in pipe["stages"] if s["kind"] == "won")
    lost_stage = next(s for s in pipe["stages"] if s["kind"] == "lost")
    won = deals.create_deal(w.rt, op, name="W", pipeline_id=pipe["id"], owner_id=ids[A], amount_minor=7_000)
    lost = deals.create_deal(w.rt, op, name="L", pipeline_id=pipe["id"], owner_id=ids[B], amount_minor=9_000)
    deals.update_deal(w.rt, op, won["id"], {"stage_id": won_stage["id"]})
    deals.update_deal(w.rt, op, lost["id"], {"stage_id": lost_stage["id"], "lost_reason": "price"})
    with write_transaction(w.rt.engine) as conn:
        conn.execute(
            text("UPDATE deal SET opened_at = :t WHERE id = :i"),
            {"t": datetime.now(timezone.utc) - timedelta(days=30, hours=12), "i": won["id"]},
        )
    body = api("meg", "/api/reports/pipeline", pipeline=pipe["id"]).json()
    assert body["currency"] == "EUR" and body["pipeline_id"] == pipe["id"]
    summary = {row[0]: row[1] for row in rows_of(body, "summary")}
    assert summary == {"Win rate (%)": 50, "Deals won": 1, "Deals lost": 1, "Average days to close (won)": 30.5}
    stages = {row[0]: row[2:] for row in rows_of(body, "stages")}
    assert stages[first_open["name"]] == [2, 1500.5]
    assert all(v == [0, 0] for k, v in stages.items() if k != first_open["name"])
    month = f"{next_month.year:04d}-{next_month.month:02d}"
    forecast = {row[0]: row[1:] for row in rows_of(body, "forecast")}
    weighted = round((100_000 + 50_050) * first_open["probability"] / 100) / 100
    assert forecast[month] == [2, 1500.5, weighted]
    mine = api("alice", "/api/reports/pipeline", pipeline=pipe["id"]).json()
    assert {row[0]: row[2:] for row in rows_of(mine, "stages")}[first_open["name"]] == [1, 1000]
    assert {r[0]: r[1] for r in rows_of(mine, "summary")}["Deals lost"] == 0
    assert made and stage


# -- who sees what ----------------------------------------------------------------------------


def test_a_rep_sees_only_their_own_numbers_and_is_refused_anyone_elses(api, site):
    w, tokens, ids = site
    mine = api("alice", "/api/reports/activity").json()
    assert mine["rep_id"] == ids[A] and [r["email"] for r in mine["reps"]] == [A]
    assert {row[0] for row in rows_of(mine)} == {"Alice Rep"}
    for path in ("/api/reports/activity", "/api/reports/response-times.svg", "/api/reports/cold-accounts.csv"):
        refused = api("alice", path, rep=ids[B])
        assert refused.status_code == 403 and "own" in refused.json()["detail"]
    times = api("alice", "/api/reports/response-times").json()
    assert [row[0] for row in rows_of(times)] == ["Alice Rep"]


def test_managers_and_admins_see_every_rep_and_may_pick_one(api, site):
    w, tokens, ids = site
    for who in ("meg", "boss"):
        team = api(who, "/api/reports/activity").json()
        assert team["rep_id"] is None and {row[0] for row in rows_of(team)} == {"Alice Rep", "Bob Rep"}
        bob = api(who, "/api/reports/activity", rep=ids[B]).json()
        assert {row[0] for row in rows_of(bob)} == {"Bob Rep"}
    assert api("meg", "/api/admin/org").status_code == 403  # a manager has no admin rights


def test_another_organisation_sees_nothing_of_this_one(api, site):
    w, tokens, ids = site
    for name in reports.REPORTS:
        r = api("other", f"/api/reports/{name}")
        assert r.status_code == 200
        assert "ourco.com" not in r.text and "acme" not in r.text and "Alice" not in r.text
        assert all(
            not any(isinstance(v, (int, float)) and v for v in row)
            for t in r.json()["tables"]
            for row in t["rows"]
            if t["key"] != "summary"
        )
    assert api("other", "/api/reports/activity", rep=ids[A]).status_code == 422


def test_bad_filters_are_refused_with_the_field_at_fault(api, site):
    w, tokens, ids = site
    r = api("boss", "/api/reports/activity", start="2026-05-01", end="2026-04-01")
    assert r.status_code == 422 and r.json()["field"] == "start"
    assert api("boss", "/api/reports/activity", start="2020-01-01", end="2026-01-01").json()["field"] == "start"
    assert api("boss", "/api/reports/activity", start="yesterday").status_code == 422
    assert api("boss", "/api/reports/pipeline", pipeline=999999).json()["field"] == "pipeline"
    assert api("boss", "/api/reports/activity.csv", table="nope").json()["field"] == "table"
    with pytest.raises(Invalid):
        with w.rt.engine.connect() as conn:
            reports.cold_accounts(conn, Actor.operator(w.org_id), sort="size")
    with pytest.raises(Forbidden):
        with w.rt.engine.connect() as conn:
            reports.activity(conn, Actor(w.org_id, ids[A], "rep"), rep_id=ids[B])


# -- the chart, the table and the CSV agree ---------------------------------------------------


def marks(svg_text: str) -> dict[tuple[int, str], str]:
    root = ET.fromstring(svg_text)
    return {
        (int(g.get("data-row")), g.get("data-key")): g.get("data-value")
        for g in root.iter(f"{SVG}g")
        if g.get("data-row") is not None
    }


def keys_of(table: dict) -> list[str]:
    return [c["key"] for c in table["columns"]]


def read_csv(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


@pytest.mark.parametrize("name", reports.REPORTS)
def test_the_csv_holds_exactly_the_numbers_the_chart_plots(api, name):
    params = {"start": (NOW - 120 * D).date().isoformat()}
    body = api("boss", f"/api/reports/{name}", **params).json()
    for table in body["tables"]:
        svg = api("boss", f"/api/reports/{name}.svg", table=table["key"], **params)
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        got = marks(svg.text)
        if table["chart"] != "figures" and not any(
            isinstance(row[keys_of(table).index(k)], (int, float)) and row[keys_of(table).index(k)]
            for row in table["rows"]
            for k in table["series"]
        ):
            assert got == {} and "Nothing in this range." in svg.text  # said in words, not drawn as zeros
            continue
        sheet = read_csv(api("boss", f"/api/reports/{name}.csv", table=table["key"], **params).content)
        assert sheet[0] == [c["label"] for c in table["columns"]]
        rows = sheet[1:]
        assert len(rows) == len(table["rows"])
        keys = [c["key"] for c in table["columns"]]
        for (row, key), value in got.items():
            assert rows[row][keys.index(key)] == value, (table["key"], row, key)
        for i, row in enumerate(rows):
            for key in table["series"]:
                if row[keys.index(key)] != "":
                    assert (i, key) in got, (table["key"], i, key)
            for key in table["labels"]:
                if row[keys.index(key)] not in ("", "0"):
                    assert (i, key) in got, (table["key"], i, key)
        assert got or not any(table["rows"])


def test_the_svg_shows_a_hostile_company_name_from_mail_as_text(api):
    r = api("boss", "/api/reports/cold-accounts.svg")
    assert "<script" not in r.text and "\u202e" not in r.text
    root = ET.fromstring(r.text)  # well-formed XML
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}title")]
    assert shown(HOSTILE) in texts[1:] or any(shown(HOSTILE) in t for t in texts)
    assert root.get("role") == "img" and root.find(f"{SVG}title").text == "Accounts going cold"
    sheet = read_csv(api("boss", "/api/reports/cold-accounts.csv").content)
    assert HOSTILE in [row[0] for row in sheet]  # the export keeps the original text


def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe():
    for bad in ("=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(bad) == "'" + bad
    assert csv_cell("Acme") == "Acme" and csv_cell(12) == "12" and csv_cell(2.5) == "2.5" and csv_cell(None) == ""


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40), st.integers(min_value=0, max_value=10**9))
def test_any_label_makes_well_formed_svg_that_shows_it_as_text(label, value):
    table = {
        "key": "t",
        "title": label,
        "chart": "hbars",
        "columns": [
            {"key": "name", "label": "Name", "kind": "text"},
            {"key": "n", "label": label or "n", "kind": "int"},
        ],
        "series": ["n"],
        "labels": [],
        "rows": [[label, value]],
    }
    for chart in ("hbars", "bars", "stacked", "figures"):
        root = ET.fromstring(charts.render({**table, "chart": chart}, 360))
        # XML parsers read a carriage return as a line feed; nothing else may change
        want = charts._NOT_XML.sub("\ufffd", shown(label)).replace("\r\n", "\n").replace("\r", "\n")
        assert (root.find(f"{SVG}title").text or "") == want
        assert not list(root.iter(f"{SVG}script")) and not list(root.iter(f"{SVG}foreignObject"))


# -- the page ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(site):
    from app.api import create_app
    from tests.servers import AppServer

    w, tokens, ids = site
    server = AppServer(create_app(w.rt)).start()
    yield server.url
    server.stop()


def _open(browser, base: str, token: str, width: int):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.add_init_script(f"localStorage.setItem('threadline.token', {json.dumps(token)});")
    page.goto(base + "/reports")
    page.wait_for_selector("body[data-state=ready]", timeout=30_000)
    return context, page


def test_the_reports_page_shows_the_charts_switches_to_the_table_and_filters_by_rep(served, site, browser):
    w, tokens, ids = site
    context, page = _open(browser, served, tokens["meg"], 1280)
    try:
        for name in reports.REPORTS:
            section = page.locator(f'section[data-report="{name}"]')
            assert section.get_attribute("data-state") == "ready", name
            assert section.locator("figure svg[role=img]").count() >= 1
        activity = page.locator('section[data-report="activity"]')
        assert activity.locator("svg g[data-key=emails_out] rect").count() == 24  # two reps, twelve weeks
        assert page.evaluate("window.__pwned") is None
        cold = page.locator('section[data-report="cold-accounts"] svg').first
        assert shown(HOSTILE)[:20] in cold.text_content()
        activity.get_by_role("button", name="Table").click()
        table = activity.locator("table")
        table.wait_for()
        assert activity.locator("figure").first.is_hidden()
        assert {t.strip() for t in table.locator("tbody th").all_inner_texts()} == {"Alice Rep", "Bob Rep"}
        activity.get_by_label("Rep", exact=True).select_option(label="Bob Rep")
        page.wait_for_function(
            """() => { const s = document.querySelector('section[data-report="activity"]');
                       return s.dataset.state === 'ready' && [...s.querySelectorAll('tbody th')]
                         .every(th => th.textContent === 'Bob Rep'); }"""
        )
        assert table.locator("tbody tr").count() == 12
        assert activity.get_by_role("button", name="Table").get_attribute("aria-pressed") == "true"
        if os.environ.get("THREADLINE_UPDATE_SCREENSHOTS"):
            activity.get_by_role("button", name="Chart").click()
            page.screenshot(path=os.path.join(DOCS, "reports-1280.png"), full_page=True)
    finally:
        context.close()
    if os.environ.get("THREADLINE_UPDATE_SCREENSHOTS"):
        context, page = _open(browser, served, tokens["meg"], 360)
        try:
            page.screenshot(path=os.path.join(DOCS, "reports-360.png"), full_page=True)
        finally:
            context.close()


def test_a_rep_on_the_reports_page_gets_their_own_numbers_and_no_rep_choice(served, site, browser):
    w, tokens, ids = site
    context, page = _open(browser, served, tokens["alice"], 900)
    try:
        rep = page.locator('section[data-report="activity"]').get_by_label("Rep", exact=True)
        assert rep.is_disabled() and rep.locator("option").all_inner_texts() == ["Alice Rep"]
        assert "Your own numbers" in page.locator("#who").inner_text()
    finally:
        context.close()


# -- the CLI ----------------------------------------------------------------------------------


def test_the_cli_prints_a_reports_tables_as_the_csv_download_does(site, api, monkeypatch):
    from typer.testing import CliRunner

    from app.cli import app
    from tests.world import runtime_env

    w, tokens, ids = site
    for key, value in runtime_env(w.rt.settings.data_dir).items():
        monkeypatch.setenv(key, value)
    org = ["--org", str(w.org_id)]  # the fixture made a second organisation
    result = CliRunner().invoke(app, ["report", "activity", "--rep", B, *org])
    assert result.exit_code == 0, result.output
    download = api("boss", "/api/reports/activity.csv", rep=ids[B]).content.decode("utf-8-sig")
    # the same rows and cells; the runner's captured stdout reads line ends as "\n"
    assert result.stdout.splitlines() == download.splitlines() and "Bob Rep" in result.stdout
    bad = CliRunner().invoke(app, ["report", "weekly", *org])
    assert bad.exit_code != 0 and "report must be one of" in str(bad.exception)


# -- the manager role -------------------------------------------------------------------------


def test_a_manager_is_refused_admin_use_cases_and_the_last_admin_cannot_become_a_manager(tmp_path):
    from app.services.errors import Conflict

    w = make_world(tmp_path, reps=())
    op = Actor.operator(w.org_id)
    boss = orgs.create_user(w.rt, op, "boss@ourco.com", role="admin")["id"]
    meg = orgs.create_user(w.rt, op, "meg@ourco.com", role="manager")
    assert meg["role"] == "manager"
    with pytest.raises(Forbidden):
        orgs.create_user(w.rt, Actor(w.org_id, meg["id"], "manager"), "new@ourco.com")
    with pytest.raises(Conflict):
        orgs.update_user(w.rt, Actor(w.org_id, boss, "admin"), boss, role="manager")
    with pytest.raises(Invalid):
        orgs.create_user(w.rt, op, "x@ourco.com", role="boss")
    w.rt.engine.dispose()
