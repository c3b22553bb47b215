"""The follow-up queue from real mailboxes (Dovecot): opened and closed by mail alone, once per
thread, with the clock passed in (no sleeping)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from sqlalchemy import text

from app.db import read_only, write_transaction
from app.services import followups as queue
from app.services.actor import Actor
from sync import followups
from tests.world import NOW, make_world, message

DAY = timedelta(days=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    return request.getfixturevalue("postgres_migrated_url") if request.param == "postgresql" else None


def _rows(world):
    return world.sql(
        "SELECT f.kind, u.email, f.address, f.status, f.closed_reason FROM followup f "
        "LEFT JOIN app_user u ON u.id = f.user_id ORDER BY f.thread_key"
    )


def _t(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _due(world, email, now):
    uid = world.scalar("SELECT id FROM app_user WHERE email = :e", e=email)
    with read_only(world.rt.engine) as conn:
        return queue.due(conn, world.org_id, uid, now)


def test_an_unanswered_email_is_waiting_on_them_after_three_business_days_once_per_thread(
    tmp_path, imap_user_factory, db_url
):
    world = make_world(tmp_path, url=db_url)
    alice, bob = imap_user_factory(), imap_user_factory()
    a_box, b_box = world.add_imap("alice@ourco.com", alice), world.add_imap("bob@ourco.com", bob)
    sent = NOW - 2 * DAY
    out = message("alice@ourco.com", "carol@acme.com", "Proposal", msgid="p1@ourco.com", when=sent, cc="bob@ourco.com")
    alice.deliver(out, folder="INBOX")
    bob.deliver(out)  # the same email in a second mailbox
    world.sync(a_box)
    world.sync(b_box)
    world.sync(a_box)  # a re-sync changes nothing
    assert _rows(world) == [("waiting", "alice@ourco.com", "carol@acme.com", "open", None)]
    expected = followups.add_business_days(sent, 3, followups.Calendar())
    assert _t(world.scalar("SELECT due_at FROM followup")) == expected
    assert expected - sent >= 3 * DAY
    # Not on the rep's list before it is due, on it from that day on.
    assert _due(world, "alice@ourco.com", sent + timedelta(hours=1)) == []
    listed = _due(world, "alice@ourco.com", expected + timedelta(minutes=1))
    assert [(f["kind"], f["subject"], f["overdue"]) for f in listed] == [("waiting", "Proposal", True)]
    assert _due(world, "bob@ourco.com", expected + DAY) == []


def test_a_reply_from_anyone_at_their_company_closes_it_and_an_auto_reply_does_not(tmp_path, imap_user_factory, db_url):
    world = make_world(tmp_path, url=db_url)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    alice.deliver(message("alice@ourco.com", "carol@acme.com", "Quote", msgid="q1@ourco.com", when=NOW - 5 * DAY))
    alice.deliver(message("alice@ourco.com", "erin@zeta.com", "Demo", msgid="z1@ourco.com", when=NOW - 5 * DAY))
    world.sync(box)
    # An out-of-office in the thread, then Dave (same company as Carol) answers in a new thread.
    alice.deliver(
        message(
            "Carol <carol@acme.com>",
            "alice@ourco.com",
            "Automatic reply: Quote",
            msgid="ooo@acme.com",
            when=NOW - 5 * DAY + timedelta(minutes=1),
            extra="In-Reply-To: <q1@ourco.com>\r\nAuto-Submitted: auto-replied",
        )
    )
    alice.deliver(
        message(
            "Erin <erin@zeta.com>",
            "alice@ourco.com",
            "Out of office: Demo",
            msgid="ooo@zeta.com",
            when=NOW - 4 * DAY,
            extra="In-Reply-To: <z1@ourco.com>",
        )
    )
    world.sync(box)
    assert [r[3] for r in _rows(world)] == ["open", "open"]
    alice.deliver(
        message("Dave <dave@acme.com>", "alice@ourco.com", "About your quote", msgid="d1@acme.com", when=NOW - 3 * DAY)
    )
    world.sync(box)
    kinds = {(r[2], r[0], r[3], r[4]) for r in _rows(world)}
    assert ("carol@acme.com", "waiting", "closed", "reply") in kinds
    assert ("erin@zeta.com", "waiting", "open", None) in kinds
    # Dave's email now waits for Alice's answer; answering it in his thread turns it round.
    assert ("dave@acme.com", "owe", "open", None) in kinds
    alice.deliver(
        message(
            "alice@ourco.com",
            "dave@acme.com",
            "Re: About your quote",
            msgid="r2@ourco.com",
            when=NOW - 2 * DAY,
            extra="In-Reply-To: <d1@acme.com>\r\nReferences: <d1@acme.com>",
        ),
        folder="INBOX",
    )
    world.sync(box)
    assert ("dave@acme.com", "waiting", "open", None) in {(r[2], r[0], r[3], r[4]) for r in _rows(world)}
    assert world.scalar("SELECT count(*) FROM followup") == 3


def test_you_owe_a_reply_counts_business_hours_in_the_reps_time_zone_and_a_colleague_answer_closes_it(
    tmp_path, imap_user_factory, db_url
):
    world = make_world(tmp_path, url=db_url)
    alice, bob = imap_user_factory(), imap_user_factory()
    a_box, b_box = world.add_imap("alice@ourco.com", alice), world.add_imap("bob@ourco.com", bob)
    uid = world.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")
    queue.set_calendar(world.rt, Actor.operator(world.org_id), uid, tz="Asia/Tokyo", start_hour=9, end_hour=17)
    # A Friday 17:30 in Tokyo (08:30 UTC, no daylight saving), after Alice's day: her 8 hours run
    # Monday 9:00-17:00 Tokyo (00:00-08:00 UTC); counted in UTC it would have been Friday 16:30.
    day = (NOW - 7 * DAY).date()
    day -= timedelta(days=(day.weekday() - 4) % 7)
    friday = datetime(day.year, day.month, day.day, 8, 30, tzinfo=timezone.utc)
    monday = friday + timedelta(days=3)
    asked = message(
        "Carol <carol@acme.com>", "alice@ourco.com, bob@ourco.com", "Question", msgid="c1@acme.com", when=friday
    )
    alice.deliver(asked)
    bob.deliver(asked)
    world.sync(a_box)
    assert _t(world.scalar("SELECT due_at FROM followup WHERE kind = 'owe'")) == monday.replace(hour=8, minute=0)
    # Bob answers on the thread: Alice owes nothing now; Bob waits on Carol.
    bob.deliver(
        message(
            "bob@ourco.com",
            "carol@acme.com",
            "Re: Question",
            msgid="b1@ourco.com",
            when=friday + DAY,
            extra="In-Reply-To: <c1@acme.com>",
        ),
    )
    world.sync(b_box)
    assert _rows(world) == [("waiting", "bob@ourco.com", "carol@acme.com", "open", None)]


def test_a_colleagues_answer_seen_first_unverified_in_the_reps_inbox_closes_it_once_their_sent_copy_vouches(
    tmp_path, imap_user_factory, db_url
):
    # Bob answers Carol's question with Alice in Cc. Alice's copy came through the organisation's
    # relay with no results stamp: received mail from an unverified sender, which opens and
    # closes nothing. Bob's Sent folder then vouches for it: it is his answer, and Alice owes
    # nothing any more.
    world = make_world(tmp_path, url=db_url)
    alice, bob = imap_user_factory(), imap_user_factory()
    a_box, b_box = world.add_imap("alice@ourco.com", alice), world.add_imap("bob@ourco.com", bob)
    hop = (
        b"Received: from mail.ourco.com (mail.ourco.com [10.0.0.2]) by mx.ourco.com; Mon, 1 Jun 2026 10:00:00 +0000\r\n"
    )
    alice.deliver(
        hop + message("Carol <carol@acme.com>", "alice@ourco.com", "Question", msgid="c1@acme.com", when=NOW - 2 * DAY)
    )
    world.sync(a_box)
    answer = message(
        "bob@ourco.com",
        "carol@acme.com",
        "Re: Question",
        msgid="b1@ourco.com",
        when=NOW - DAY,
        cc="alice@ourco.com",
        extra="In-Reply-To: <c1@acme.com>\r\nReferences: <c1@acme.com>",
    )
    alice.deliver(hop + answer)
    world.sync(a_box)
    assert world.scalar("SELECT unverified_sender FROM interaction WHERE message_key = 'b1@ourco.com'")
    assert _rows(world) == [("owe", "alice@ourco.com", "carol@acme.com", "open", None)]
    bob.deliver(answer, folder="Sent")
    world.sync(b_box)
    assert _rows(world) == [("waiting", "bob@ourco.com", "carol@acme.com", "open", None)]
    assert _due(world, "alice@ourco.com", NOW + 7 * DAY) == []


def _bounce(frm: str, bounced: str, msgid: str, when: datetime) -> bytes:
    """A delivery status notification (RFC 3464 in RFC 6522 multipart/report), threaded to the
    bounced message as Exchange's are, from an address that looks like anyone's."""
    return "\r\n".join(
        [
            f"From: {frm}",
            "To: alice@ourco.com",
            "Subject: Undeliverable: Quote",
            f"Date: {format_datetime(when)}",
            f"Message-ID: <{msgid}>",
            f"In-Reply-To: <{bounced}>",
            f"References: <{bounced}>",
            "MIME-Version: 1.0",
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"',
            "",
            "--b1",
            "Content-Type: text/plain",
            "",
            "Delivery has failed to these recipients: carol@acme.com",
            "--b1",
            "Content-Type: message/delivery-status",
            "",
            "Reporting-MTA: dns; mx.acme.com",
            "",
            "Final-Recipient: rfc822; carol@acme.com",
            "Action: failed",
            "Status: 5.1.1",
            "--b1--",
            "",
        ]
    ).encode()


def test_a_bounce_is_not_the_customers_answer_nor_an_email_to_answer(tmp_path, imap_user_factory, db_url):
    world = make_world(tmp_path, url=db_url)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    sent = NOW - 2 * DAY
    alice.deliver(message("alice@ourco.com", "carol@acme.com", "Quote", msgid="q1@ourco.com", when=sent), folder="Sent")
    world.sync(box)
    exchange = "Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@acme.com>"
    alice.deliver(_bounce(exchange, "q1@ourco.com", "ndr1@acme.com", sent + timedelta(minutes=1)))
    world.sync(box)
    # Nobody at Acme answered: Alice still waits on Carol, and owes the bounce nothing.
    assert _rows(world) == [("waiting", "alice@ourco.com", "carol@acme.com", "open", None)]
    assert world.scalar("SELECT count(*) FROM contact WHERE primary_email LIKE 'microsoftexchange%'") == 0


def test_a_meeting_arranged_by_mail_closes_what_it_answers_and_opens_nothing(tmp_path, imap_user_factory, db_url):
    from tests.connectors.test_imip import SOON, event, invitation, stamp, vcalendar

    world = make_world(tmp_path, url=db_url)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    demo = dict(organizer="alice@ourco.com", summary="Demo")
    request = vcalendar(
        event("demo@ourco.com", stamp(SOON), attendees=(("carol@acme.com", "NEEDS-ACTION"),), **demo), method="REQUEST"
    )
    accepted = vcalendar(
        event("demo@ourco.com", stamp(SOON), attendees=(("carol@acme.com", "ACCEPTED"),), **demo), method="REPLY"
    )
    # Carol asks for a call; Alice answers with an invitation (a day ago), Carol accepts it.
    alice.deliver(message("carol@acme.com", "alice@ourco.com", "A call?", msgid="q1@acme.com", when=NOW - 2 * DAY))
    invite = invitation(request, msgid="inv1@ourco.com", frm="Alice <alice@ourco.com>", to="carol@acme.com")
    alice.deliver(invite, folder="Sent")
    answer = invitation(
        accepted, method="REPLY", msgid="acc1@acme.com", frm="Carol <carol@acme.com>", subject="Accepted: Demo"
    )
    alice.deliver(answer)
    # Later, a written question: that one is owed an answer.
    alice.deliver(message("carol@acme.com", "alice@ourco.com", "Agenda?", msgid="q2@acme.com", when=NOW - DAY / 4))
    world.sync(box)
    by_message = dict(
        world.sql(
            "SELECT i.message_key, f.kind || ' ' || f.status || ' ' || coalesce(f.closed_reason, '-') "
            "FROM followup f JOIN interaction i ON i.id = f.interaction_id"
        )
    )
    assert by_message == {
        "q1@acme.com": "owe closed reply",  # answered by the invitation
        "inv1@ourco.com": "waiting closed meeting",  # booking a meeting waits on nobody
        "acc1@acme.com": "owe closed meeting",  # an acceptance is owed no answer
        "q2@acme.com": "owe open -",
    }
    # Both stay on the timeline as mail, and the meeting is there.
    assert world.scalar("SELECT count(*) FROM interaction WHERE kind = 'email'") == 4
    assert world.scalar("SELECT count(*) FROM interaction WHERE kind = 'meeting'") == 1


def test_a_meeting_closes_waiting_and_a_quiet_key_account_opens_going_quiet(tmp_path, imap_user_factory):
    world = make_world(tmp_path)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    alice.deliver(message("alice@ourco.com", "carol@acme.com", "Quote", msgid="q1@ourco.com", when=NOW - 5 * DAY))
    alice.deliver(message("Old <old@legacy.com>", "alice@ourco.com", "Hi", msgid="o1@legacy.com", when=NOW - 60 * DAY))
    world.sync(box)
    contact = world.scalar("SELECT id FROM contact WHERE primary_email = 'carol@acme.com'")
    company = world.scalar("SELECT id FROM company WHERE domain = 'legacy.com'")
    with write_transaction(world.rt.engine) as conn:
        conn.execute(
            text(
                "INSERT INTO interaction (org_id, kind, message_key, occurred_at, direction, thread_key, sequence, "
                "created_at, unverified_sender, automated) "
                "VALUES (:o, 'meeting', 'ical:m1', :at, 'out', 'ical:m1', 0, :now, :no, :no)"
            ),
            {"o": world.org_id, "at": NOW - DAY, "now": NOW, "no": False},
        )
        mid = conn.execute(text("SELECT id FROM interaction WHERE message_key = 'ical:m1'")).scalar()
        conn.execute(
            text(
                "INSERT INTO participant (org_id, interaction_id, occurred_at, address, role, contact_id, company_id) "
                "SELECT :o, :m, :at, 'carol@acme.com', 'attendee', id, company_id FROM contact WHERE id = :c"
            ),
            {"o": world.org_id, "m": mid, "at": NOW - DAY, "c": contact},
        )
    queue.set_key_account(world.rt, Actor.operator(world.org_id), kind="company", target_id=company)
    with write_transaction(world.rt.engine) as conn:
        done = followups.sweep(conn, world.org_id, NOW)
    assert done["meeting"] == 1 and done["quiet_opened"] == 1
    rows = {(r[0], r[3], r[4]) for r in _rows(world)}
    assert ("waiting", "closed", "meeting") in rows and ("quiet", "open", None) in rows
    with write_transaction(world.rt.engine) as conn:
        assert followups.sweep(conn, world.org_id, NOW)["quiet_opened"] == 0  # idempotent


def test_a_cancelled_meeting_neither_closes_waiting_nor_keeps_a_key_account_from_going_quiet(
    tmp_path, imap_user_factory, db_url
):
    from tests.connectors.test_ical import event, stamp, vcalendar
    from tests.connectors.test_imip import invitation

    world = make_world(tmp_path, url=db_url)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    alice.deliver(message("alice@ourco.com", "carol@acme.com", "Quote", msgid="q1@ourco.com", when=NOW - 5 * DAY))
    alice.deliver(message("Old <old@legacy.com>", "alice@ourco.com", "Hi", msgid="o1@legacy.com", when=NOW - 60 * DAY))
    # Alice invites Carol to a call about the quote, then calls it off before it takes place.
    start = NOW - timedelta(hours=12)

    def call(sequence: int) -> str:
        return event(
            "call@ourco.com",
            stamp(start),
            end=stamp(start + timedelta(minutes=30)),
            attendees=(("carol@acme.com", "NEEDS-ACTION"),),
            sequence=sequence,
        )

    for method, msgid, seq in (("REQUEST", "inv@ourco.com", 0), ("CANCEL", "cxl@ourco.com", 1)):
        alice.deliver(
            invitation(vcalendar(call(seq), method=method), method=method, msgid=msgid, frm="alice@ourco.com"),
            folder="Sent",
        )
    world.sync(box)
    assert world.sql("SELECT status FROM interaction WHERE kind = 'meeting'") == [("cancelled",)]
    # Legacy, a key account quiet for 60 days, had a call booked too, also called off.
    company = world.scalar("SELECT id FROM company WHERE domain = 'legacy.com'")
    with write_transaction(world.rt.engine) as conn:
        conn.execute(
            text(
                "INSERT INTO interaction (org_id, kind, message_key, occurred_at, direction, thread_key, sequence, "
                "created_at, unverified_sender, automated, status) "
                "VALUES (:o, 'meeting', 'ical:m2', :at, 'out', 'ical:m2', 1, :now, :no, :no, 'cancelled')"
            ),
            {"o": world.org_id, "at": NOW - DAY, "now": NOW, "no": False},
        )
        conn.execute(
            text(
                "INSERT INTO participant (org_id, interaction_id, occurred_at, address, role, contact_id, company_id) "
                "SELECT :o, i.id, i.occurred_at, c.primary_email, 'attendee', c.id, c.company_id "
                "FROM interaction i, contact c WHERE i.message_key = 'ical:m2' AND c.company_id = :k"
            ),
            {"o": world.org_id, "k": company},
        )
    queue.set_key_account(world.rt, Actor.operator(world.org_id), kind="company", target_id=company)
    with write_transaction(world.rt.engine) as conn:
        done = followups.sweep(conn, world.org_id, NOW)
    assert done["meeting"] == 0 and done["quiet_opened"] == 1
    rows = world.sql("SELECT kind, thread_key, status FROM followup ORDER BY thread_key")
    assert ("waiting", "q1@ourco.com", "open") in rows
    assert (("quiet", f"quiet:company:{company}", "open")) in rows


def test_snooze_hides_it_for_a_day_and_done_closes_it(tmp_path, imap_user_factory):
    world = make_world(tmp_path)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    alice.deliver(message("alice@ourco.com", "carol@acme.com", "Quote", msgid="q1@ourco.com", when=NOW - 10 * DAY))
    world.sync(box)
    uid = world.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")
    rep = Actor(world.org_id, uid, "rep")
    # "Due" means due by the end of the rep's (UTC) day: snooze at noon so the day does not end mid-test.
    noon = NOW.replace(hour=12, minute=0, second=0)
    [item] = _due(world, "alice@ourco.com", noon)
    queue.snooze(world.rt, rep, item["id"], span="1d", now=noon)
    assert _due(world, "alice@ourco.com", noon) == []
    assert _due(world, "alice@ourco.com", noon + timedelta(hours=11)) == []
    assert [f["id"] for f in _due(world, "alice@ourco.com", noon + DAY)] == [item["id"]]
    queue.dismiss(world.rt, rep, item["id"])
    assert _due(world, "alice@ourco.com", NOW + 30 * DAY) == []
    assert world.scalar("SELECT count(*) FROM auditevent WHERE action LIKE 'followup.%'") == 2


def test_an_open_deal_makes_its_quiet_contact_going_quiet_and_shows_on_its_owners_day(tmp_path, imap_user_factory):
    from app.services import day, deals

    world = make_world(tmp_path)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    alice.deliver(message("Dana <dana@quiet.com>", "alice@ourco.com", "Hi", msgid="d1@quiet.com", when=NOW - 60 * DAY))
    alice.deliver(message("Eve <eve@busy.com>", "alice@ourco.com", "Hi", msgid="e1@busy.com", when=NOW - DAY))
    world.sync(box)
    dana = world.scalar("SELECT id FROM contact WHERE primary_email = 'dana@quiet.com'")
    eve = world.scalar("SELECT id FROM contact WHERE primary_email = 'eve@busy.com'")
    me = world.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")
    op = Actor.operator(world.org_id)
    deals.create_pipeline(world.rt, op, name="Sales")
    quiet = deals.create_deal(world.rt, op, name="Quiet deal", contact_ids=[dana], owner_id=me)["id"]
    late = deals.create_deal(world.rt, op, name="Late deal", contact_ids=[eve], owner_id=me)["id"]
    deals.create_deal(world.rt, op, name="Fresh deal", contact_ids=[eve], owner_id=me)
    with write_transaction(world.rt.engine) as conn:  # as if opened long ago; one close date already behind us
        conn.execute(text("UPDATE deal SET stage_changed_at = :t"), {"t": NOW - 90 * DAY})
        conn.execute(text("UPDATE deal SET close_date = :d WHERE id = :i"), {"d": (NOW - 2 * DAY).date(), "i": late})

    with write_transaction(world.rt.engine) as conn:
        opened = followups.sweep(conn, world.org_id, NOW)["quiet_opened"]
    # Dana and her company (the deal's, 60 days without mail); Eve wrote yesterday
    assert opened == 2
    quiet_co = world.scalar("SELECT id FROM company WHERE domain = 'quiet.com'")
    assert set(world.sql("SELECT contact_id, company_id, status FROM followup WHERE kind = 'quiet'")) == {
        (dana, None, "open"),
        (None, quiet_co, "open"),
    }

    with read_only(world.rt.engine) as conn:
        attention = day.deals_needing_attention(conn, world.org_id, me, NOW)
    assert [(d["id"], d["reason"].split(" ")[0]) for d in attention] == [(quiet, "no"), (late, "close")]
    assert "60 days" in attention[0]["reason"]


def test_old_mail_opens_nothing_but_an_old_reply_still_closes_the_row_an_older_message_opened(
    tmp_path, imap_user_factory
):
    # A first import's history (older than MAX_AGE) gets no rows of its own; a reply from that
    # history, backfilled later from another mailbox, still closes the thread's open row.
    world = make_world(tmp_path)
    alice, bob = imap_user_factory(), imap_user_factory()
    a_box, b_box = world.add_imap("alice@ourco.com", alice), world.add_imap("bob@ourco.com", bob)
    alice.deliver(message("alice@ourco.com", "carol@acme.com", "Quote", msgid="q1@ourco.com", when=NOW - 45 * DAY))
    alice.deliver(message("alice@ourco.com", "dan@beta.com", "Old news", msgid="o1@ourco.com", when=NOW - 90 * DAY))
    world.sync(a_box)
    assert _rows(world) == []
    # As if the quote had been recorded while it was recent, and nobody had answered since.
    iid = world.scalar("SELECT id FROM interaction WHERE message_key LIKE '%q1@ourco.com%'")
    thread = world.scalar("SELECT thread_key FROM interaction WHERE id = :i", i=iid)
    with write_transaction(world.rt.engine) as conn:
        followups.record(
            conn,
            world.org_id,
            [followups.MailEvent(iid, thread, NOW - 45 * DAY, "out", 1, "carol@acme.com", None, None)],
            now=NOW - 20 * DAY,
        )
    assert [r.status for r in _rows(world)] == ["open"]
    bob.deliver(
        message(
            "carol@acme.com",
            "bob@ourco.com",
            "Re: Quote",
            msgid="r1@acme.com",
            when=NOW - 40 * DAY,
            extra="In-Reply-To: <q1@ourco.com>",
        )
    )
    world.sync(b_box)
    assert [(r.kind, r.status, r.closed_reason) for r in _rows(world)] == [("owe", "closed", "old")]


def test_a_first_import_leaves_no_row_open_that_a_newer_answer_in_another_thread_already_closed(
    tmp_path, imap_user_factory, db_url
):
    # An import reads newest first: the customer's answer (a new thread) is stored before the
    # rep's email it answers, so the ingest writes that email's row open. The run settles the
    # queue before it ends; without that the row stayed open until the scheduler's sweep, and
    # `threadline sync --once` has no scheduler.
    world = make_world(tmp_path, url=db_url)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    world.set_batch_size(box, 1)  # one email a batch: the answer cannot close it within its batch
    alice.deliver(message("alice@ourco.com", "carol@acme.com", "Quote", msgid="q1@ourco.com", when=NOW - 5 * DAY))
    alice.deliver(
        message("Dave <dave@acme.com>", "alice@ourco.com", "About your quote", msgid="d1@acme.com", when=NOW - 3 * DAY)
    )
    assert world.sync(box).ok
    assert {(r[2], r[0], r[3], r[4]) for r in _rows(world)} == {
        ("carol@acme.com", "waiting", "closed", "reply"),
        ("dave@acme.com", "owe", "open", None),
    }
    with write_transaction(world.rt.engine) as conn:
        assert followups.sweep(conn, world.org_id)["reply"] == 0  # nothing left for the scheduler


def test_a_folder_listed_for_the_first_time_is_settled_like_a_first_import(tmp_path, imap_user_factory, db_url):
    # A folder (or label) made after the first import is read from its start, newest first, in a
    # run whose other folders were done long ago: that run ends with the sweep too.
    world = make_world(tmp_path, url=db_url)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    world.set_batch_size(box, 1)
    assert world.sync(box).ok
    alice.create_folder("Projects")
    alice.deliver(
        message("alice@ourco.com", "carol@acme.com", "Quote", msgid="q1@ourco.com", when=NOW - 5 * DAY),
        folder="Projects",
    )
    alice.deliver(
        message("Dave <dave@acme.com>", "alice@ourco.com", "About your quote", msgid="d1@acme.com", when=NOW - 3 * DAY),
        folder="Projects",
    )
    assert world.sync(box).ok
    assert ("carol@acme.com", "waiting", "closed", "reply") in {(r[2], r[0], r[3], r[4]) for r in _rows(world)}


def test_sync_once_ends_with_the_sweep_even_when_nothing_new_came(tmp_path, imap_user_factory, db_url):
    # An import killed after its last batch never ran the sweep its run ends with, and the next run
    # imports nothing: without a scheduler (`threadline sync --once`), the queue stayed wrong.
    from tests.cli import run_cli
    from tests.faults.backfill import cli_env

    world = make_world(tmp_path, url=db_url)
    alice = imap_user_factory()
    box = world.add_imap("alice@ourco.com", alice)
    alice.deliver(message("alice@ourco.com", "carol@acme.com", "Quote", msgid="q1@ourco.com", when=NOW - 5 * DAY))
    alice.deliver(
        message("Dave <dave@acme.com>", "alice@ourco.com", "About your quote", msgid="d1@acme.com", when=NOW - 3 * DAY)
    )
    assert world.sync(box).ok
    with write_transaction(world.rt.engine) as conn:  # as the killed run left it
        conn.exec_driver_sql(
            "UPDATE followup SET status = 'open', closed_reason = NULL, closed_at = NULL WHERE kind = 'waiting'"
        )
    cli = run_cli(["sync", "--once"], cli_env(world))
    assert cli.returncode == 0, cli
    assert ("carol@acme.com", "waiting", "closed", "reply") in {(r[2], r[0], r[3], r[4]) for r in _rows(world)}


@pytest.mark.sqlite
def test_the_cross_thread_read_at_ingest_searches_the_open_rows_by_time_once_per_run(tmp_path):
    # docs/performance.md section 10: reading all of the organisation's rows at every batch made
    # a first import's follow-up step grow with the mailbox; reading the window's rows again in
    # every batch was most of what was left. A run's cache reads each part of the window once.
    from tests.sqlplans import sqlite_plan, statements

    world = make_world(tmp_path)
    cache = followups.RunCache()

    def batch(at, n):
        with write_transaction(world.rt.engine) as conn:
            followups.record(
                conn,
                world.org_id,
                [
                    # old mail: no row is written (there is no interaction to point at here)
                    followups.MailEvent(1, f"t{n}", at, "in", 1, "carol@acme.com", None, None),
                    followups.MailEvent(2, f"u{n}", at, "out", 1, "dan@beta.com", None, None),
                ],
                cache=cache,
            )
        cache.confirm()

    with statements(world.rt.engine) as sent:
        batch(NOW - 60 * DAY, 1)
        batch(NOW - 60 * DAY, 2)  # within what is held: nothing read
        batch(NOW - 50 * DAY, 3)  # only the ten days after what is held
    seen = [(s, p) for s, p in sent if s.lstrip().upper().startswith("SELECT") and "followup.since >=" in s]
    assert len(seen) == 2, seen  # both kinds in one read
    assert _t(seen[1][1][-2]) == _t(seen[0][1][-1]) == _t(NOW - 60 * DAY)
    assert _t(seen[1][1][-1]) == _t(NOW - 50 * DAY)
    plans = [sqlite_plan(world.rt.engine, s, p) for s, p in seen]
    assert all("USING INDEX ix_followup_open_since" in plan and "since>? AND since<?" in plan for plan in plans), plans


def test_another_workers_rows_between_two_batches_of_a_run_are_closed_and_respected(
    tmp_path, imap_user_factory, db_url
):
    # A run holds the open rows it has read (sync/followups.py: RunCache). Between its two
    # batches another worker imports another mailbox of the organisation: it opens a new row
    # and turns a row the run holds from "waiting" into "owe". The run's next batch must see both.
    world = make_world(tmp_path, url=db_url)
    alice, bob = imap_user_factory(), imap_user_factory()
    a_box, b_box = world.add_imap("alice@ourco.com", alice), world.add_imap("bob@ourco.com", bob)
    bob.deliver(message("bob@ourco.com", "frank@delta.com", "Offer", msgid="offer@ourco.com", when=NOW - 10 * DAY))
    world.sync(b_box)
    assert _rows(world) == [("waiting", "bob@ourco.com", "frank@delta.com", "open", None)]
    world.set_batch_size(a_box, 1)
    # Alice's mailbox, one message per batch, imported newest (highest UID) first: the later
    # batches answer what Bob's mailbox holds by then, each in a thread of its own ...
    alice.deliver(message("Dave <dave@acme.com>", "alice@ourco.com", "Yes", msgid="d1@acme.com", when=NOW - 3 * DAY))
    alice.deliver(
        message("alice@ourco.com", "frank@delta.com", "Contract", msgid="c1@ourco.com", when=NOW - 3 * DAY),
        folder="INBOX",
    )
    # ... after the first, which reads the open rows of the 30 days before it (Bob's offer among them).
    alice.deliver(message("Zed <zed@zeta.com>", "alice@ourco.com", "Hello", msgid="z1@zeta.com", when=NOW - 2 * DAY))
    batches = []

    def between(report):
        batches.append(report.imported)
        if len(batches) != 1:
            return
        # Bob's proposal to Carol (Dave's company), and Frank's reply to Bob's offer in its thread
        bob.deliver(message("bob@ourco.com", "carol@acme.com", "Proposal", msgid="p1@ourco.com", when=NOW - 5 * DAY))
        bob.deliver(
            message(
                "Frank <frank@delta.com>",
                "bob@ourco.com",
                "Re: Offer",
                msgid="f1@delta.com",
                when=NOW - 6 * DAY,
                extra="In-Reply-To: <offer@ourco.com>\r\nReferences: <offer@ourco.com>",
            )
        )
        assert world.sync(b_box, worker="other-worker").ok
        assert ("owe", "open") in {(r[0], r[3]) for r in _rows(world) if r[2] == "frank@delta.com"}

    assert world.sync(a_box, progress=between).ok
    assert len(batches) >= 2
    rows = {(r[2], r[0], r[3], r[4]) for r in _rows(world)}
    # Dave answered Bob's proposal (same company, another thread, after it): closed.
    assert ("carol@acme.com", "waiting", "closed", "reply") in rows
    # Alice wrote to Frank after his reply to Bob: what Bob owed Frank is closed too.
    assert ("frank@delta.com", "owe", "closed", "reply") in rows
    assert ("zed@zeta.com", "owe", "open", None) in rows
    assert world.scalar("SELECT count(*) FROM followup") == 5


def test_what_each_kind_of_calendar_message_can_do_to_the_queue():
    from connectors.base import MessageRecord

    def mail(invitation, subject="Demo"):
        return MessageRecord(
            "1/1", "k@x", NOW, [("", "carol@acme.com")], [], [], [], subject, None, [], invitation=invitation
        )

    # An invitation and an answer to one take part: they close what they answer, and open nothing.
    assert followups.mail_role(mail("REQUEST")) == followups.mail_role(mail("REPLY")) == "close"
    # A cancellation (or a counter-proposal) answers nothing: what waits on them stays open.
    assert followups.mail_role(mail("CANCEL")) == followups.mail_role(mail("COUNTER")) == "none"
    assert followups.mail_role(mail(None)) == "open"
    assert followups.mail_role(mail(None, "Automatic reply: Demo")) == "none"


def test_mail_about_thirty_days_old_opens_a_row_or_not_by_its_day_whatever_the_minute_of_the_run(tmp_path):
    """The age limit was counted to the second: a message at the edge opened a row in one import
    and none in another a minute later (two reps' copies, a killed run resumed), so one mailbox's
    queue depended on when it was read. Now the limit is a day (from midnight UTC)."""
    world = make_world(tmp_path)
    run = datetime(2026, 12, 7, 19, 40, tzinfo=timezone.utc)
    with write_transaction(world.rt.engine) as conn:
        for n, sent in enumerate((run - 30 * DAY + timedelta(minutes=1), run - 30 * DAY - timedelta(minutes=1))):
            iid = conn.execute(
                text(
                    "INSERT INTO interaction (org_id, kind, message_key, occurred_at, direction, thread_key, "
                    "unverified_sender, automated, recipients_not_kept, created_at) "
                    "VALUES (:o, 'email', :k, :at, 'out', :k, false, false, 0, :at) RETURNING id"
                ),
                {"o": world.org_id, "k": f"edge{n}@ourco.com", "at": sent},
            ).scalar_one()
            event = followups.MailEvent(iid, f"edge{n}@ourco.com", sent, "out", 1, f"c{n}@acme.com", None, None)
            followups.record(conn, world.org_id, [event], now=run + timedelta(minutes=2 * n))
        run_next_day = run + timedelta(days=1)
        iid = conn.execute(
            text(
                "INSERT INTO interaction (org_id, kind, message_key, occurred_at, direction, thread_key, "
                "unverified_sender, automated, recipients_not_kept, created_at) "
                "VALUES (:o, 'email', 'late@ourco.com', :at, 'out', 'late@ourco.com', false, false, 0, :at) RETURNING id"
            ),
            {"o": world.org_id, "at": run - 30 * DAY},
        ).scalar_one()
        late = followups.MailEvent(iid, "late@ourco.com", run - 30 * DAY, "out", 1, "d@acme.com", None, None)
        followups.record(conn, world.org_id, [late], now=run_next_day)
    # both edge messages were sent on the day 30 days before the run's: each opened its row
    assert sorted(r[0] for r in world.sql("SELECT thread_key FROM followup")) == ["edge0@ourco.com", "edge1@ourco.com"]
