"""Invitations in mail (iMIP) through the IMAP connector and a real Dovecot:
only the text/calendar part is fetched, REQUEST / REPLY / CANCEL become
MeetingRecords next to the MessageRecords, bad invitations are recorded."""

from __future__ import annotations

import base64
import quopri
from datetime import timedelta
from email.utils import format_datetime

from connectors.base import MeetingRecord, MessageRecord, meeting_key
from connectors.imap import ImapConnector, ImapSettings
from tests.connectors.test_ical import event, stamp, vcalendar
from tests.world import NOW, message

SOON = NOW.replace(minute=0, second=0) + timedelta(days=5)


def invitation(
    ics: str,
    *,
    method: str = "REQUEST",
    msgid: str,
    frm: str = "Bob <bob@ext.com>",
    to: str = "alice@ourco.com",
    subject: str = "Invitation: Demo",
    attach_ics: bool = True,
    encoding: str = "base64",
) -> bytes:
    """An Outlook-shaped invitation: multipart/mixed(multipart/alternative(text, html,
    text/calendar; method=...), application/ics attachment)."""
    if encoding == "base64":
        cal_body = base64.encodebytes(ics.encode()).decode().replace("\n", "\r\n")
    elif encoding == "quoted-printable":
        cal_body = quopri.encodestring(ics.encode()).decode()
    else:
        cal_body = ics
    alt = (
        f"--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYou are invited.\r\n"
        f"--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>You are invited.</p>\r\n"
        f'--ALT\r\nContent-Type: text/calendar; charset="utf-8"; method={method}\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n{cal_body}\r\n--ALT--\r\n"
    )
    parts = f'--MIX\r\nContent-Type: multipart/alternative; boundary="ALT"\r\n\r\n{alt}'
    if attach_ics:
        parts += (
            '--MIX\r\nContent-Type: application/ics; name="invite.ics"\r\n'
            'Content-Disposition: attachment; filename="invite.ics"\r\nContent-Transfer-Encoding: base64\r\n'
            f"\r\n{base64.encodebytes(ics.encode()).decode()}\r\n"
        )
    parts += "--MIX--\r\n"
    head = (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {format_datetime(NOW - timedelta(days=1))}\r\n"
        f'Message-ID: <{msgid}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="MIX"\r\n\r\n'
    )
    return (head + parts).encode()


def intro_call(to: str = "alice@ourco.com", *, msgid: str = "inv1@acme.com") -> bytes:
    """Carla (a customer) invites `to` to a half-hour intro call two days from now."""
    soon = NOW + timedelta(days=2)
    req = event(
        "call@acme.com",
        stamp(soon),
        end=stamp(soon + timedelta(minutes=30)),
        organizer="carla@acme.com",
        summary="Intro call",
        attendees=((to, "NEEDS-ACTION"),),
    )
    return invitation(vcalendar(req, method="REQUEST"), msgid=msgid, frm="carla@acme.com", to=to)


def single_part_invitation(ics: str, *, msgid: str, method: str = "REQUEST") -> bytes:
    head = (
        f"From: bob@ext.com\r\nTo: alice@ourco.com\r\nSubject: Invite\r\n"
        f"Date: {format_datetime(NOW - timedelta(days=1))}\r\nMessage-ID: <{msgid}>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/calendar; charset=utf-8; method={method}\r\n\r\n"
    )
    return (head + ics).encode()


def fetch_all(imap_user, **kw):
    settings = ImapSettings(
        imap_user.host, imap_user.port, "none", imap_user.username, batch_size=kw.pop("batch", 1000)
    )
    conn = ImapConnector(settings, imap_user.password, want_snippet=kw.pop("want_snippet", True))
    inbox = next(f for f in conn.list_folders() if f.role == "inbox")
    batches = list(conn.fetch_changes(inbox, {}, NOW - timedelta(days=30)))
    conn.close()
    records = [r for b in batches for r in b.records]
    return (
        [r for r in records if isinstance(r, MessageRecord)],
        [r for r in records if isinstance(r, MeetingRecord)],
        [x for b in batches for x in b.bad],
        batches,
    )


def test_request_reply_cancel_from_mail(imap_user):
    req = vcalendar(
        event(
            "demo@ext.com",
            stamp(SOON),
            end=stamp(SOON + timedelta(hours=1)),
            organizer="bob@ext.com",
            attendees=(("alice@ourco.com", "NEEDS-ACTION"), ("carl@ext.com", "ACCEPTED")),
            summary="Demo",
            extra="LOCATION:Zoom",
        ),
        method="REQUEST",
    )
    reply = vcalendar(
        event("demo@ext.com", stamp(SOON), organizer="bob@ext.com", attendees=(("carl@ext.com", "DECLINED"),)),
        method="REPLY",
    )
    cancel = vcalendar(
        event(
            "demo@ext.com",
            stamp(SOON),
            organizer="bob@ext.com",
            sequence=3,
            attendees=(("alice@ourco.com", "NEEDS-ACTION"),),
        ),
        method="CANCEL",
    )
    imap_user.deliver(message("x@ext.com", "alice@ourco.com", "Plain mail", msgid="plain@x"))
    imap_user.deliver(invitation(req, msgid="req@ext.com"))
    imap_user.deliver(
        invitation(
            reply,
            method="REPLY",
            msgid="reply@ext.com",
            attach_ics=False,
            encoding="quoted-printable",
            frm="Carl <carl@ext.com>",
        )
    )
    imap_user.deliver(single_part_invitation(cancel, msgid="cancel@ext.com", method="CANCEL"))
    messages, meetings, bad, batches = fetch_all(imap_user)
    assert bad == []
    assert sorted(m.message_key for m in messages) == ["cancel@ext.com", "plain@x", "reply@ext.com", "req@ext.com"]
    # As mail they are calendar messages (they open no follow-up); the plain one is not.
    assert {m.message_key: m.invitation for m in messages} == {
        "cancel@ext.com": "CANCEL",
        "plain@x": None,
        "reply@ext.com": "REPLY",
        "req@ext.com": "REQUEST",
    }
    by_method = {m.method: m for m in meetings}
    assert sorted(by_method) == ["CANCEL", "REPLY", "REQUEST"] and len(meetings) == 3
    r = by_method["REQUEST"]
    uid_of = {m.message_key: m.remote_id for m in messages}
    assert r.remote_id == uid_of["req@ext.com"] + "#ics"
    assert (r.uid, r.recurrence_id, r.subject, r.location, r.start, r.status) == (
        "demo@ext.com",
        None,
        "Demo",
        "Zoom",
        SOON,
        "confirmed",
    )
    assert r.organizer.address == "bob@ext.com"
    assert [(a.address, a.response) for a in r.attendees] == [
        ("alice@ourco.com", "needs-action"),
        ("carl@ext.com", "accepted"),
    ]
    assert [(a.address, a.response) for a in by_method["REPLY"].attendees] == [("carl@ext.com", "declined")]
    assert (by_method["CANCEL"].status, by_method["CANCEL"].sequence) == ("cancelled", 3)
    assert by_method["CANCEL"].remote_id == uid_of["cancel@ext.com"] + "#ics"
    assert {meeting_key(m.uid, m.recurrence_id) for m in meetings} == {"ical:demo@ext.com"}


def test_written_mail_with_an_ics_attached_or_a_shared_event_is_not_a_calendar_message(imap_user):
    req = vcalendar(
        event("demo@ext.com", stamp(SOON), organizer="bob@ext.com", attendees=(("alice@ourco.com", "NEEDS-ACTION"),)),
        method="REQUEST",
    )
    # Written mail with an .ics file attached, and an event shared (PUBLISH): not calendar messages.
    attached = (
        f"From: Bob <bob@ext.com>\r\nTo: alice@ourco.com\r\nSubject: Contract and invite\r\n"
        f"Date: {format_datetime(NOW - timedelta(days=1))}\r\nMessage-ID: <attached@ext.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="MIX"\r\n\r\n'
        "--MIX\r\nContent-Type: text/plain\r\n\r\nInvite attached; can you send the signed contract?\r\n"
        '--MIX\r\nContent-Type: application/ics; name="invite.ics"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{base64.encodebytes(req.encode()).decode()}\r\n--MIX--\r\n"
    ).encode()
    imap_user.deliver(attached)
    imap_user.deliver(
        single_part_invitation(req.replace("METHOD:REQUEST", "METHOD:PUBLISH"), msgid="pub@ext.com", method="PUBLISH")
    )

    messages, _, _, _ = fetch_all(imap_user)
    assert {m.message_key: m.invitation for m in messages} == {"attached@ext.com": None, "pub@ext.com": None}


def test_recurring_invitation_expands_like_the_calendar(imap_user):
    start = SOON.replace(hour=15)
    series = event(
        "weekly@ext.com",
        ";TZID=W. Europe Standard Time:" + start.strftime("%Y%m%dT%H%M%S"),
        organizer="bob@ext.com",
        attendees=(("alice@ourco.com", "NEEDS-ACTION"),),
        extra="RRULE:FREQ=WEEKLY;COUNT=3",
    )
    imap_user.deliver(invitation(vcalendar(series, method="REQUEST"), msgid="weekly@ext.com"))
    _, meetings, bad, _ = fetch_all(imap_user)
    assert bad == [] and len(meetings) == 3
    assert len({m.remote_id for m in meetings}) == 3
    assert all(m.remote_id.startswith(m.remote_id.split("#")[0] + "#ics#") for m in meetings)
    assert [m.recurrence_id for m in meetings] == [m.start.strftime("%Y-%m-%dT%H:%M:%SZ") for m in meetings]


def test_invitation_parts_are_fetched_without_the_rest_of_the_message(imap_user, fault_proxy):
    ics = vcalendar(
        event("big@ext.com", stamp(SOON), organizer="bob@ext.com", attendees=(("alice@ourco.com", "NEEDS-ACTION"),)),
        method="REQUEST",
    )
    raw = invitation(ics, msgid="big@ext.com", attach_ics=False)
    padding = (
        '--MIX\r\nContent-Type: application/pdf; name="deck.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + base64.encodebytes(b"\0" * 400_000).decode()
        + "\r\n"
    )
    raw = raw.replace(b"--MIX--\r\n", padding.encode() + b"--MIX--\r\n")
    imap_user.deliver(raw)
    proxy = fault_proxy(imap_user)
    settings = ImapSettings(proxy.host, proxy.port, "none", imap_user.username)
    conn = ImapConnector(settings, imap_user.password, want_snippet=False)
    inbox = next(f for f in conn.list_folders() if f.role == "inbox")
    batches = list(conn.fetch_changes(inbox, {}, NOW - timedelta(days=30)))
    conn.close()
    assert [r.uid for b in batches for r in b.records if isinstance(r, MeetingRecord)] == ["big@ext.com"]
    assert len(raw) > 500_000 and proxy.bytes_s2c < 20_000  # the 540 KB attachment never crossed the wire


def test_bad_invitations_are_recorded_and_mail_still_imported(imap_user):
    broken = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:b@x\r\nDTSTART:20xx\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    mars = vcalendar(
        event("mars@ext.com", ";TZID=Mars/Olympus:20300101T100000", organizer="bob@ext.com"), method="REQUEST"
    )
    imap_user.deliver(invitation(broken, msgid="broken@ext.com"))
    imap_user.deliver(invitation(mars, msgid="mars@ext.com", encoding="7bit"))
    imap_user.deliver(message("x@ext.com", "alice@ourco.com", "After", msgid="after@x"))
    messages, meetings, bad, _ = fetch_all(imap_user)
    assert sorted(m.message_key for m in messages) == ["after@x", "broken@ext.com", "mars@ext.com"]
    assert meetings == []
    reasons = sorted(b.reason for b in bad)
    assert len(reasons) == 2 and "unknown time zone 'Mars/Olympus'" in reasons[0] and "unreadable event" in reasons[1]
    assert all(b.remote_id.endswith("#ics") for b in bad)


def test_many_batches_with_invitations_keep_order(imap_user):
    """Small batches, many multipart messages: BODYSTRUCTURE and part FETCHes run
    between the pipelined header FETCHes; every message and every invitation
    arrives exactly once, also on a second pass (Dovecot answers from its cache,
    fast enough to interleave answers of commands sent together)."""
    items = []
    for i in range(300):
        if i % 10 == 0:
            ics = vcalendar(
                event(
                    f"m{i}@ext.com",
                    stamp(SOON + timedelta(hours=i)),
                    organizer="bob@ext.com",
                    attendees=(("alice@ourco.com", "NEEDS-ACTION"),),
                ),
                method="REQUEST",
            )
            raw = invitation(ics, msgid=f"inv{i}@ext.com")
        elif i % 2:
            raw = invitation("no calendar here", msgid=f"multi{i}@x", attach_ics=False).replace(
                b"text/calendar", b"text/x-other"
            )  # multipart, without an invitation
        else:
            raw = message(f"p{i}@ext.com", "alice@ourco.com", f"M{i}", msgid=f"msg{i}@x")
        items.append((raw, "INBOX", NOW - timedelta(days=1)))
    imap_user.deliver_many(items)
    for _ in range(2):
        messages, meetings, bad, batches = fetch_all(imap_user, batch=20)
        assert bad == [] and len(messages) == 300 and len({m.message_key for m in messages}) == 300
        assert sorted(m.uid for m in meetings) == sorted(f"m{i}@ext.com" for i in range(0, 300, 10))
        for b in batches:  # each invitation travels with its message's batch
            keys = {r.remote_id for r in b.records if isinstance(r, MessageRecord)}
            assert all(m.remote_id[:-4] in keys for m in b.records if isinstance(m, MeetingRecord))


def test_an_invitation_only_speaks_for_its_sender(imap_user):
    """Anyone can mail an .ics with a known UID: a REQUEST or CANCEL counts only
    from the organiser, a REPLY only for the sender's own answer."""
    spoofed = vcalendar(
        event(
            "demo@ext.com",
            stamp(SOON + timedelta(days=3)),
            organizer="bob@ext.com",
            sequence=9,
            attendees=(("alice@ourco.com", "NEEDS-ACTION"),),
            summary="Moved!",
        ),
        method="REQUEST",
    )
    sneaky_reply = vcalendar(
        event(
            "demo@ext.com",
            stamp(SOON),
            organizer="bob@ext.com",
            attendees=(("carl@ext.com", "DECLINED"), ("mallory@evil.com", "ACCEPTED")),
        ),
        method="REPLY",
    )
    imap_user.deliver(invitation(spoofed, msgid="spoof@evil.com", frm="Bob <mallory@evil.com>"))
    imap_user.deliver(invitation(sneaky_reply, method="REPLY", msgid="sneaky@evil.com", frm="mallory@evil.com"))
    messages, meetings, bad, _ = fetch_all(imap_user)
    assert sorted(m.message_key for m in messages) == ["sneaky@evil.com", "spoof@evil.com"]
    assert [b.reason for b in bad] == [
        "invitation ignored: sent by mallory@evil.com, not by the meeting's organiser or the replying attendee"
    ]
    # The reply is kept, but only for the sender's own line.
    [reply] = meetings
    assert reply.method == "REPLY" and [(a.address, a.response) for a in reply.attendees] == [
        ("mallory@evil.com", "accepted")
    ]
