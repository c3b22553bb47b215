"""The report summaries (sync/reportsums.py: repday, answersample) against a recount from the raw
timeline, after every kind of change the timeline goes through: a first sync from real Dovecot
mailboxes, the same mail synced again through a second mailbox, an erasure, a contact merge and
its undo, a never-log rule, a mailbox removed with its mail, and meetings created, moved,
cancelled and dropped. And meetings reach the activity report, counted against the records the
calendar sent."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from app.db import read_only, session
from app.models import Mailbox
from app.services import duplicates, mailboxes, privacy, reports, rules
from app.services.actor import Actor
from app.services.errors import ServiceError
from connectors.base import Attendee, Batch, Folder, MeetingRecord
from sync import reportsums
from tests.app._mail import new_imap_user, remove_imap_users
from tests.world import NOW, make_world, message

A, B = "alice@ourco.com", "bob@ourco.com"
CAROL, CAROL2, DAN, ERIN, FRED = (
    "carol@acme.com",
    "carol.buyer@acme.com",
    "dan@globex.com",
    "erin@initech.com",
    "fred@umbrella.org",
)
H = timedelta(hours=1)


def at(days_ago: float, hour: int = 9) -> datetime:
    return (NOW - timedelta(days=days_ago)).replace(hour=hour, minute=0, second=0, microsecond=0)


def mail(key: str, frm: str, to: str, when: datetime, prev: str | None = None, cc: str | None = None) -> bytes:
    extra = f"In-Reply-To: <{prev}>\r\nReferences: <{prev}>" if prev else ""
    return message(frm, to, f"About {key}", msgid=key, when=when, cc=cc, extra=extra)


# alice's mailbox: threads with Carol (answered both ways), Dan (bob in copy), Erin (to be erased)
# and Carol's second address (a duplicate contact, to be merged)
ALICE_MAIL = [
    mail("c1@acme.com", CAROL, A, at(20)),
    mail("a1@ourco.com", A, CAROL, at(20) + 3 * H, "c1@acme.com"),
    mail("c2@acme.com", CAROL, A, at(18), "a1@ourco.com"),
    mail("c3@acme.com", CAROL, A, at(18) + 2 * H, "c2@acme.com"),
    mail("a2@ourco.com", A, CAROL, at(17), "c3@acme.com"),
    mail("d1@globex.com", DAN, B, at(10), cc=A),
    mail("e1@initech.com", ERIN, A, at(30)),
    mail("a3@ourco.com", A, ERIN, at(29), "e1@initech.com"),
    mail("e2@initech.com", ERIN, f"{A}, {CAROL}", at(28), "a3@ourco.com"),
    mail("x1@acme.com", f"Carol Buyer <{CAROL2}>", A, at(15)),
    mail("a4@ourco.com", A, f"Carol Buyer <{CAROL2}>", at(14), "x1@acme.com"),
]
# bob's mailbox: the Dan thread again (the same messages), his answer, and Fred, who only he knows
BOB_MAIL = [
    mail("d1@globex.com", DAN, B, at(10), cc=A),
    mail("b1@ourco.com", B, DAN, at(9), "d1@globex.com"),
    mail("d2@globex.com", DAN, B, at(8), "b1@ourco.com"),
    mail("f1@umbrella.org", FRED, B, at(40)),
    mail("b2@ourco.com", B, FRED, at(39), "f1@umbrella.org"),
]


def agrees(w) -> dict:
    """The kept summaries equal the recount; returns the kept activity for further checks."""
    with read_only(w.rt.engine) as conn:
        assert reportsums.check(conn, w.org_id) == []
        activity, samples = reportsums.kept(conn, w.org_id)
    return {"activity": activity, "samples": samples}


def user_ids(w) -> dict[str, int]:
    return {r.email: r.id for r in w.sql("SELECT id, email FROM app_user WHERE org_id = :o", o=w.org_id)}


def contact_of(w, address: str) -> int:
    return w.scalar("SELECT contact_id FROM contactaddress WHERE address = :a", a=address)


@pytest.fixture
def world(tmp_path, dovecot):
    created: list[str] = []
    w = make_world(tmp_path)
    yield w, created
    w.rt.engine.dispose()
    remove_imap_users(dovecot, created)


def test_the_summaries_equal_a_recount_through_sync_resync_erasure_merge_undo_rule_and_mailbox_removal(world, dovecot):
    w, created = world
    admin = Actor.operator(w.org_id)
    alice_user, bob_user = new_imap_user(dovecot, created), new_imap_user(dovecot, created)
    alice_box, bob_box = w.add_imap(A, alice_user), w.add_imap(B, bob_user)
    ids = user_ids(w)

    for raw in ALICE_MAIL:
        alice_user.deliver(raw)
    assert w.sync(alice_box).ok
    first = agrees(w)
    assert first["activity"] and first["samples"]
    alice_before = {k: v for k, v in first["activity"].items() if k[0] == ids[A]}

    # The same Dan message again through bob's mailbox: alice's figures do not move (it is one
    # interaction however many mailboxes hold it); bob gains his own mail.
    for raw in BOB_MAIL:
        bob_user.deliver(raw)
    assert w.sync(bob_box).ok
    second = agrees(w)
    assert {k: v for k, v in second["activity"].items() if k[0] == ids[A]} == alice_before
    assert sum(v[0] for k, v in second["activity"].items() if k[0] == ids[B]) == 2  # b1, b2 sent
    assert sum(v[1] for k, v in second["activity"].items() if k[0] == ids[B]) == 3  # d1, d2, f1 received
    assert len(second["samples"]) > len(first["samples"])

    # Erasure: Erin's own thread goes (her mail to Carol too, it had no other outsider... Carol
    # is one, so e2 stays without Erin) and the answers credited through her address change.
    privacy.erase_person(w.rt, admin, ERIN, confirm=True)
    erased = agrees(w)
    assert erased["activity"] != second["activity"]
    assert not any(s[5] == ERIN for s in erased["samples"])

    # A merge and its undo move contacts, not mail: the summaries stay right (and equal).
    merged = duplicates.merge(w.rt, admin, contact_of(w, CAROL), contact_of(w, CAROL2))
    assert agrees(w) == erased
    duplicates.unmerge(w.rt, admin, merged["audit_id"])
    assert agrees(w) == erased

    # A never-log rule takes Dan's company off the timeline.
    rules.add_rule(w.rt, admin, value="globex.com")
    ruled = agrees(w)
    assert sum(v[0] for k, v in ruled["activity"].items() if k[0] == ids[B]) == 1  # b2 to Fred only
    assert not any(s[0].endswith("globex.com>") or "globex" in s[0] for s in ruled["samples"])

    # Bob's mailbox removed with the mail only it held: nothing of bob's is left.
    mailboxes.remove(w.rt, admin, bob_box, purge=True)
    removed = agrees(w)
    assert not any(k[0] == ids[B] for k in removed["activity"])
    assert removed["activity"] and removed["samples"]
    assert alice_box


# -- meetings ------------------------------------------------------------------------------------


class ScriptedCalendar:
    """Plays back the batches a test writes, in place of a calendar source (the real CalDAV
    connector is tested against Radicale): the engine's meeting rules are what is tested."""

    def __init__(self, script: list[Batch]):
        self.script = script

    def list_folders(self):
        return [Folder("calendar:Work", "calendar")]

    def fetch_changes(self, folder, cursor, since):
        yield from self.script

    def close(self):
        pass


def meeting(uid: str, start: datetime, people: tuple[str, ...], status: str = "confirmed", seq: int = 0):
    return MeetingRecord(
        remote_id=uid,
        uid=f"{uid}@acme.com",
        recurrence_id=None,
        start=start,
        end=start + H,
        subject=f"Meeting {uid}",
        organizer=Attendee(CAROL, "Carol Buyer", "organizer", "accepted"),
        attendees=[Attendee(p, p.split("@")[0].title(), "attendee", "accepted") for p in people],
        status=status,
        location="Room 1",
        sequence=seq,
        method=None,
    )


def calendar_of(w, owner: str) -> int:
    with session(w.rt.engine) as s:
        uid = w.scalar("SELECT id FROM app_user WHERE email = :e", e=owner)
        box = Mailbox(org_id=w.org_id, owner_id=uid, kind="caldav", config={"url": "scripted"})
        s.add(box)
        s.commit()
        return box.id


def play(w, box_id: int, records=(), removed=()) -> None:
    script = [Batch(records=list(records), bad=[], cursor={"n": 1}, backfill_done=True, removed=list(removed))]
    report = w.sync(box_id, connector_factory=lambda *a: ScriptedCalendar(script))
    assert report.ok, report.error


def monday(d: datetime) -> str:
    day = d.date()
    return (day - timedelta(days=day.weekday())).isoformat()


def expected_meetings(calendar: dict[str, MeetingRecord], owner: str = A) -> dict[tuple[str, str], int]:
    """(rep name, week) -> meetings not cancelled, counted from the records as the calendar holds
    them: its attendees who are reps, and the calendar's owner (it is in their calendar)."""
    names = {A: "Alice Rep", B: "Bob Rep"}
    out: dict[tuple[str, str], int] = {}
    for rec in calendar.values():
        if rec.status == "cancelled":
            continue
        for who in ({a.address for a in rec.attendees} | {owner}) & names.keys():
            key = (names[who], monday(rec.start))
            out[key] = out.get(key, 0) + 1
    return out


def meetings_in_report(w) -> dict[tuple[str, str], int]:
    with read_only(w.rt.engine) as conn:
        body = reports.activity(conn, Actor.operator(w.org_id))
    return {(row[0], row[1]): row[4] for row in body["tables"][0]["rows"] if row[4]}


def test_meetings_count_in_the_activity_report_per_rep_and_week_through_moves_cancellations_and_removal(tmp_path):
    w = make_world(tmp_path)
    box = calendar_of(w, A)
    calendar = {
        "m1": meeting("m1", at(3, 10), (A, B)),
        "m2": meeting("m2", at(10, 14), (A,)),
        "m3": meeting("m3", at(10, 16), (A, B)),
        "m4": meeting("m4", at(24, 11), (B,), status="cancelled"),
        "m5": meeting("m5", at(40, 9), (A,)),
    }
    play(w, box, calendar.values())
    agrees(w)
    got = meetings_in_report(w)
    assert got == expected_meetings(calendar) and sum(got.values()) == 6

    # m2 moves three weeks back, m3 is cancelled, m4 takes place after all, m5 leaves the calendar
    calendar["m2"] = meeting("m2", at(31, 14), (A,), seq=1)
    calendar["m3"] = meeting("m3", at(10, 16), (A, B), status="cancelled", seq=1)
    calendar["m4"] = meeting("m4", at(24, 11), (B,), seq=1)
    play(w, box, [calendar["m2"], calendar["m3"], calendar["m4"]], removed=["m5"])
    del calendar["m5"]
    agrees(w)
    got = meetings_in_report(w)
    assert got == expected_meetings(calendar) and sum(got.values()) == 5


def test_migration_0019_fills_the_summaries_from_the_timeline_already_there(world, dovecot):
    from alembic import command

    from app.db import alembic_config

    w, created = world
    user = new_imap_user(dovecot, created)
    box = w.add_imap(A, user)
    for raw in ALICE_MAIL:
        user.deliver(raw)
    assert w.sync(box).ok
    kept = agrees(w)
    assert kept["activity"] and kept["samples"]
    w.rt.engine.dispose()
    cfg = alembic_config(w.rt.engine.url.render_as_string(hide_password=False))
    command.downgrade(cfg, "0018")
    command.upgrade(cfg, "0019")
    assert agrees(w) == kept


# -- any sequence of changes -----------------------------------------------------------------------

POOL = [
    ("alice", mail("p1@acme.com", CAROL, A, at(12))),
    ("alice", mail("p2@ourco.com", A, CAROL, at(12) + 5 * H, "p1@acme.com")),
    ("alice", mail("p3@acme.com", CAROL, A, at(11), "p2@ourco.com")),
    ("alice", mail("p4@acme.com", CAROL, A, at(11) + H, "p3@acme.com")),
    ("alice", mail("p5@ourco.com", A, CAROL, at(10), "p4@acme.com")),
    ("both", mail("p6@globex.com", DAN, B, at(9), cc=A)),
    ("bob", mail("p7@ourco.com", B, DAN, at(8), "p6@globex.com")),
    ("both", mail("p8@globex.com", DAN, f"{B}, {A}", at(7), "p7@ourco.com")),
    ("alice", mail("p9@initech.com", ERIN, A, at(30))),
    ("both", mail("p10@ourco.com", A, ERIN, at(29), "p9@initech.com", cc=B)),
    ("bob", mail("p11@acme.com", f"Carol Buyer <{CAROL2}>", B, at(6))),
    ("bob", mail("p12@ourco.com", B, f"Carol Buyer <{CAROL2}>", at(5), "p11@acme.com")),
]
OPS = st.one_of(
    st.tuples(st.just("deliver"), st.sampled_from(["alice", "bob"]), st.integers(0, len(POOL) - 1)),
    st.tuples(st.just("erase"), st.sampled_from([CAROL, DAN, ERIN])),
    st.tuples(st.just("merge"), st.sampled_from([CAROL, CAROL2, DAN]), st.sampled_from([CAROL, CAROL2, ERIN])),
    st.tuples(st.just("undo")),
    st.tuples(st.just("rule"), st.sampled_from(["globex.com", "initech.com"])),
    st.tuples(st.just("remove"), st.sampled_from(["alice", "bob"])),
)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(OPS, min_size=2, max_size=8))
def test_after_any_sequence_of_syncs_erasures_merges_undos_rules_and_removals_the_summaries_equal_a_recount(
    tmp_path_factory, dovecot, ops
):
    created: list[str] = []
    w = make_world(tmp_path_factory.mktemp("sums"))
    admin = Actor.operator(w.org_id)
    try:
        users = {"alice": new_imap_user(dovecot, created), "bob": new_imap_user(dovecot, created)}
        boxes = {"alice": w.add_imap(A, users["alice"]), "bob": w.add_imap(B, users["bob"])}
        merges: list[int] = []
        for op in ops:
            if op[0] == "deliver":
                who, n = op[1], op[2]
                if who in boxes and POOL[n][0] in (who, "both"):
                    users[who].deliver(POOL[n][1])
                    assert w.sync(boxes[who]).ok
            elif op[0] == "erase":
                if contact_of(w, op[1]) is not None:
                    privacy.erase_person(w.rt, admin, op[1], confirm=True)
            elif op[0] == "merge":
                keep, gone = contact_of(w, op[1]), contact_of(w, op[2])
                if keep is not None and gone is not None and keep != gone:
                    merges.append(duplicates.merge(w.rt, admin, keep, gone)["audit_id"])
            elif op[0] == "undo":
                if merges:
                    try:
                        duplicates.unmerge(w.rt, admin, merges.pop())
                    except ServiceError:
                        pass  # voided by an erasure, or already undone: nothing moved
            elif op[0] == "rule":
                try:
                    rules.add_rule(w.rt, admin, value=op[1])
                except ServiceError:
                    pass  # the same rule twice
            elif op[0] == "remove" and op[1] in boxes:
                mailboxes.remove(w.rt, admin, boxes.pop(op[1]), purge=True)
            agrees(w)
    finally:
        w.rt.engine.dispose()
        remove_imap_users(dovecot, created)
