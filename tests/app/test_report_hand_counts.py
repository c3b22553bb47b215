"""The reports against hand counts of small, exact mail scenarios on a real Dovecot: a week
boundary, a customer answering twice before the rep does, an auto-reply in the middle of a
thread, one rep's mail seen in two colleagues' mailboxes, a deactivated colleague, a merged
contact, a removed mailbox and a folder whose UIDVALIDITY changed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.db import read_only
from app.services import reports
from app.services.actor import Actor
from sync import reportsums
from tests.app._mail import new_imap_user, remove_imap_users
from tests.world import NOW, make_world, message

A, B = "alice@ourco.com", "bob@ourco.com"
CAROL, DAN, ERIN, FRED = "carol@acme.com", "dan@globex.com", "erin@initech.com", "fred@umbrella.org"
H = timedelta(hours=1)
M = timedelta(minutes=1)
# A Sunday two to three weeks back, at 23:59 UTC, and the Monday a couple of minutes later.
SUNDAY = (NOW - timedelta(days=14 + (NOW.weekday() + 1) % 7)).replace(hour=23, minute=59, second=0)
assert SUNDAY.weekday() == 6
MONDAY = SUNDAY + 2 * M
WEEK1 = (SUNDAY - timedelta(days=6)).date().isoformat()
WEEK2 = MONDAY.date().isoformat()
RANGE = {"start": (SUNDAY - timedelta(days=6)).date(), "end": (MONDAY + timedelta(days=6)).date()}


def mail(key, frm, to, when, prev=(), cc=None, extra=""):
    """prev: the thread's earlier Message-IDs, first to last (References; the last is In-Reply-To)."""
    prev = [prev] if isinstance(prev, str) else list(prev)
    refs = " ".join(f"<{p}>" for p in prev)
    more = [f"In-Reply-To: <{prev[-1]}>\r\nReferences: {refs}"] if prev else []
    if extra:
        more.append(extra)
    return message(frm, to, f"About {key.split('@')[0][:1]}", msgid=key, when=when, cc=cc, extra="\r\n".join(more))


@pytest.fixture
def world(tmp_path, dovecot):
    created: list[str] = []
    w = make_world(tmp_path)
    yield w, created
    w.rt.engine.dispose()
    remove_imap_users(dovecot, created)


def agrees(w):
    with read_only(w.rt.engine) as conn:
        assert reportsums.check(conn, w.org_id) == []


def activity(w, **kw):
    with read_only(w.rt.engine) as conn:
        out = reports.activity(conn, Actor.operator(w.org_id), **{**RANGE, **kw})
    return {(r[0], r[1]): tuple(r[2:]) for r in out["tables"][0]["rows"] if any(r[2:])}


def answers(w, **kw):
    with read_only(w.rt.engine) as conn:
        out = reports.response_times(conn, Actor.operator(w.org_id), **{**RANGE, **kw})
    return {r[0]: tuple(r[1:]) for r in out["tables"][0]["rows"]}


def test_a_week_boundary_splits_mail_at_2359_sunday_from_0001_monday_utc(world, dovecot):
    w, created = world
    u = new_imap_user(dovecot, created)
    box = w.add_imap(A, u)
    plus2 = timezone(timedelta(hours=2))
    u.deliver(mail("w1@ourco.com", A, CAROL, SUNDAY))  # Sunday 23:59 UTC
    u.deliver(mail("w2@ourco.com", A, CAROL, (SUNDAY - 30 * M).astimezone(plus2)))  # Monday 01:29 +02:00
    u.deliver(mail("w3@ourco.com", A, CAROL, MONDAY))  # Monday 00:01 UTC
    u.deliver(mail("w4@acme.com", CAROL, A, (MONDAY + M).astimezone(timezone(timedelta(hours=-5)))))
    assert w.sync(box).ok
    agrees(w)
    assert activity(w) == {("Alice Rep", WEEK1): (2, 0, 0), ("Alice Rep", WEEK2): (1, 1, 0)}


def test_answer_times_count_from_the_first_email_of_a_turn_and_skip_auto_replies(world, dovecot):
    w, created = world
    u = new_imap_user(dovecot, created)
    box = w.add_imap(A, u)
    t0 = SUNDAY - timedelta(days=3)
    # Dan answers twice before alice does: her answer is 4 h (from his first), his 1 h.
    u.deliver(mail("d0@ourco.com", A, DAN, t0))
    u.deliver(mail("d1@globex.com", DAN, A, t0 + H, "d0@ourco.com"))
    u.deliver(mail("d2@globex.com", DAN, A, t0 + 3 * H, ["d0@ourco.com", "d1@globex.com"]))
    u.deliver(mail("d3@ourco.com", A, DAN, t0 + 5 * H, ["d0@ourco.com", "d1@globex.com", "d2@globex.com"]))
    # Carol's out-of-office answers in a minute; her real answer comes 6 h after alice wrote.
    u.deliver(mail("c0@ourco.com", A, CAROL, t0))
    u.deliver(mail("c1@acme.com", CAROL, A, t0 + M, "c0@ourco.com", extra="Auto-Submitted: auto-replied"))
    u.deliver(mail("c2@acme.com", CAROL, A, t0 + 6 * H, ["c0@ourco.com", "c1@acme.com"]))
    assert w.sync(box).ok
    agrees(w)
    got = answers(w)
    # rep answers 1 (4 h); customer answers 2: 1 h and 6 h (median 1, p90 6)
    assert got == {"Alice Rep": (1, 4.0, 4.0, 2, 1.0, 6.0)}


def test_mail_in_two_colleagues_mailboxes_counts_once_and_a_deactivated_colleague_keeps_their_numbers(world, dovecot):
    from app.services import orgs

    w, created = world
    ua, ub = new_imap_user(dovecot, created), new_imap_user(dovecot, created)
    ba, bb = w.add_imap(A, ua), w.add_imap(B, ub)
    t0 = SUNDAY - timedelta(days=2)
    shared = [
        mail("f1@umbrella.org", FRED, B, t0, cc=A),
        mail("b1@ourco.com", B, FRED, t0 + 2 * H, "f1@umbrella.org", cc=A),
    ]
    for raw in shared:
        ua.deliver(raw)
        ub.deliver(raw)
    assert w.sync(ba).ok and w.sync(bb).ok
    agrees(w)
    want = {("Alice Rep", WEEK1): (0, 1, 0), ("Bob Rep", WEEK1): (1, 1, 0)}
    assert activity(w) == want
    assert answers(w)["Bob Rep"] == (1, 2.0, 2.0, 0, None, None)
    bob = w.scalar("SELECT id FROM app_user WHERE email = :e", e=B)
    orgs.update_user(w.rt, Actor.operator(w.org_id), bob, active=False)
    assert activity(w) == want
    assert answers(w)["Bob Rep"] == (1, 2.0, 2.0, 0, None, None)
    assert activity(w, rep_id=bob) == {("Bob Rep", WEEK1): (1, 1, 0)}


def new_contacts(w, **kw):
    with read_only(w.rt.engine) as conn:
        out = reports.new_contacts(conn, Actor.operator(w.org_id), **{**RANGE, **kw})
    return {t["key"]: {r[0]: tuple(r[1:]) for r in t["rows"] if any(r[1:])} for t in out["tables"]}


def test_a_merged_contact_is_one_new_contact_in_the_week_of_its_first_email(world, dovecot):
    from app.services import duplicates

    w, created = world
    u = new_imap_user(dovecot, created)
    box = w.add_imap(A, u)
    u.deliver(mail("m1@acme.com", CAROL, A, SUNDAY - H))
    u.deliver(mail("m2@acme.com", "Carol Buyer <carol.buyer@acme.com>", A, MONDAY + H))
    u.deliver(mail("m3@initech.com", ERIN, A, MONDAY + 2 * H))
    assert w.sync(box).ok
    # email, manual, meeting, other
    assert new_contacts(w) == {
        "contacts": {WEEK1: (1, 0, 0, 0), WEEK2: (2, 0, 0, 0)},
        "companies": {WEEK1: (1, 0, 0, 0), WEEK2: (1, 0, 0, 0)},
    }
    keep = w.scalar("SELECT contact_id FROM contactaddress WHERE address = :a", a=CAROL)
    other = w.scalar("SELECT contact_id FROM contactaddress WHERE address = :a", a="carol.buyer@acme.com")
    duplicates.merge(w.rt, Actor.operator(w.org_id), other, keep)
    agrees(w)
    assert new_contacts(w) == {
        "contacts": {WEEK1: (1, 0, 0, 0), WEEK2: (1, 0, 0, 0)},
        "companies": {WEEK1: (1, 0, 0, 0), WEEK2: (1, 0, 0, 0)},
    }


def test_removing_a_mailbox_with_its_mail_takes_only_the_mail_it_alone_held_out_of_the_reports(world, dovecot):
    from app.services import mailboxes

    w, created = world
    ua, ub = new_imap_user(dovecot, created), new_imap_user(dovecot, created)
    ba, bb = w.add_imap(A, ua), w.add_imap(B, ub)
    t0 = SUNDAY - timedelta(days=2)
    shared = [
        mail("s1@umbrella.org", FRED, B, t0, cc=A),
        mail("s2@ourco.com", B, FRED, t0 + 2 * H, "s1@umbrella.org", cc=A),
    ]
    for raw in shared:
        ua.deliver(raw)
        ub.deliver(raw)
    ub.deliver(mail("o1@globex.com", DAN, B, MONDAY + H))
    ub.deliver(mail("o2@ourco.com", B, DAN, MONDAY + 4 * H, "o1@globex.com"))
    assert w.sync(ba).ok and w.sync(bb).ok
    assert activity(w) == {
        ("Alice Rep", WEEK1): (0, 1, 0),
        ("Bob Rep", WEEK1): (1, 1, 0),
        ("Bob Rep", WEEK2): (1, 1, 0),
    }
    assert answers(w)["Bob Rep"] == (2, 2.0, 3.0, 0, None, None)  # nearest rank: the median of two is the first
    mailboxes.remove(w.rt, Actor.operator(w.org_id), bb, purge=True)
    agrees(w)
    assert activity(w) == {("Alice Rep", WEEK1): (0, 1, 0), ("Bob Rep", WEEK1): (1, 1, 0)}
    assert answers(w)["Bob Rep"] == (1, 2.0, 2.0, 0, None, None)
    mailboxes.remove(w.rt, Actor.operator(w.org_id), ba, purge=True)
    agrees(w)
    assert activity(w) == {}
    assert answers(w) == {}


def test_after_a_uidvalidity_reset_the_kept_summaries_equal_a_recount_and_the_hand_count(world, dovecot):
    w, created = world
    u = new_imap_user(dovecot, created)
    box = w.add_imap(A, u)
    t0 = SUNDAY - timedelta(days=3)
    thread = [
        mail("r0@acme.com", CAROL, A, t0),
        mail("r1@ourco.com", A, CAROL, t0 + 2 * H, "r0@acme.com"),
        mail("r2@acme.com", CAROL, A, t0 + 3 * H, ["r0@acme.com", "r1@ourco.com"]),
    ]
    for raw in thread:
        u.deliver(raw)
    assert w.sync(box).ok
    agrees(w)
    assert activity(w) == {("Alice Rep", WEEK1): (1, 2, 0)}
    assert answers(w)["Alice Rep"] == (1, 2.0, 2.0, 1, 1.0, 1.0)

    before = dovecot.uidvalidity(u.username)
    u.recreate_folder("INBOX")
    for raw in thread:
        u.deliver(raw)
    u.deliver(mail("r3@ourco.com", A, CAROL, MONDAY + H, ["r0@acme.com", "r1@ourco.com", "r2@acme.com"]))
    assert dovecot.uidvalidity(u.username) != before
    assert w.sync(box).ok
    agrees(w)
    assert activity(w) == {("Alice Rep", WEEK1): (1, 2, 0), ("Alice Rep", WEEK2): (1, 0, 0)}
    rep = answers(w)["Alice Rep"]
    assert rep[0] == 2 and rep[3] == 1


def cold(w, **kw) -> dict[str, str]:
    with read_only(w.rt.engine) as conn:
        out = reports.cold_accounts(conn, Actor.operator(w.org_id), **kw)
    return {r[1]: r[2] for r in out["tables"][0]["rows"]}


def days_ago(n: int) -> datetime:
    return (NOW - timedelta(days=n)).replace(hour=10, minute=0, second=0)


def test_cold_accounts_on_a_past_end_date_are_those_quiet_then_whatever_came_after(world, dovecot):
    w, created = world
    u = new_imap_user(dovecot, created)
    box = w.add_imap(A, u)
    u.deliver(mail("k1@acme.com", CAROL, A, days_ago(130)))
    u.deliver(mail("k2@globex.com", DAN, A, days_ago(130)))
    u.deliver(mail("k3@globex.com", DAN, A, days_ago(10)))  # after the end: Globex was quiet on it
    assert w.sync(box).ok
    end = (NOW - timedelta(days=40)).date()
    last = days_ago(130).date().isoformat()
    assert cold(w, end=end) == {"acme.com": last, "globex.com": last}
    assert cold(w) == {"acme.com": last}  # today Globex is not cold


def test_a_cancelled_meeting_does_not_keep_an_account_warm(world, dovecot):
    from tests.app.test_report_summaries import calendar_of, meeting, play

    w, created = world
    u = new_imap_user(dovecot, created)
    box = w.add_imap(A, u)
    u.deliver(mail("q1@acme.com", CAROL, A, days_ago(100)))
    assert w.sync(box).ok
    cal = calendar_of(w, A)
    play(w, cal, [meeting("qm", days_ago(20), (A,), status="cancelled")])
    assert w.scalar("SELECT count(*) FROM interaction WHERE kind = 'meeting'") == 1
    assert cold(w) == {"acme.com": days_ago(100).date().isoformat()}
    play(w, cal, [meeting("qm", days_ago(20), (A,), seq=1)])  # it took place after all: not cold
    assert cold(w) == {}
