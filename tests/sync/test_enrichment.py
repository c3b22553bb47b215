"""Contacts enriched from their own signatures, through a real Dovecot mailbox and a
sync, on SQLite and PostgreSQL: title, E.164 phones, company and website; the latest
signature wins; a typed value stays; the snippet stops at the quoted reply."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from app.services import people
from app.services.actor import Actor
from sync import enrichment
from tests.world import NOW, make_world, message

RORY = '"Adams, Rory" <rory@aurora-telecom.co.uk>'
ALICE = "Alice Rep <alice@ourco.com>"

RORY_BODY = """Hi Alice,

Thanks for the quote, we'd like to go ahead with 40 seats.

Best regards,
Rory Adams
Head of Procurement | Aurora Telecom plc
T: 020 7946 0321 | M: 07700 900123
www.aurora-telecom.co.uk

On Mon, 3 Mar 2025 at 10:02, Alice Rep <alice@ourco.com> wrote:
> Hi Rory, here is the quote.
> --
> Alice Rep
> Account Executive | OurCo Inc.
> T: +1 212 555 0100
"""


def rory_mail(title: str, phone: str, when, msgid: str) -> bytes:
    body = f"Hello Alice,\n\nsee below.\n\nKind regards,\nRory Adams\n{title}\nAurora Telecom plc\nTel: {phone}\n"
    return message(RORY, ALICE, "Update", msgid=msgid, when=when, body=body)


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    from sqlalchemy import text

    from app.db import write_transaction as transaction

    with transaction(w.rt.engine) as conn:
        # Every sender a contact, so one inbound message is enough.
        conn.execute(text("UPDATE organisation SET contact_policy = 'all' WHERE id = :o"), {"o": w.org_id})
    return w


def contact(world, address: str) -> dict:
    cid = world.scalar("SELECT contact_id FROM contactaddress WHERE address = :a", a=address)
    with world.rt.engine.connect() as conn:
        from app.services import timeline

        return timeline.contact_card(conn, world.org_id, cid)


def test_a_synced_signature_fills_title_e164_phones_company_and_website(world, imap_user):
    imap_user.deliver(message(RORY, ALICE, "Quote", msgid="q1@aurora", when=NOW - timedelta(days=2), body=RORY_BODY))
    mid = world.add_imap("alice@ourco.com", imap_user)

    report = world.sync(mid)

    assert report.ok and report.imported == 1
    card = contact(world, "rory@aurora-telecom.co.uk")
    assert card["name"] == "Rory Adams"  # "Adams, Rory" in the header, read in order
    assert card["title"] == "Head of Procurement"
    assert (card["phone"], card["mobile"]) == ("+442079460321", "+447700900123")  # GB from .co.uk
    assert card["website"] == "https://www.aurora-telecom.co.uk"
    assert card["company_name"] == "Aurora Telecom plc"
    assert card["company"]["name"] == "Aurora Telecom plc"  # better than "Aurora Telecom" from the domain
    iid = world.scalar("SELECT id FROM interaction WHERE message_key = 'q1@aurora'")
    assert card["provenance"]["title"] == {
        "source": "signature",
        "at": card["provenance"]["title"]["at"],
        "interaction_id": iid,
    }
    assert card["provenance"]["title"]["at"].startswith((NOW - timedelta(days=2)).date().isoformat())
    # The snippet is Rory's words, not our quoted reply; our rep's signature touched nothing.
    snippet = world.scalar("SELECT snippet FROM interaction WHERE id = :i", i=iid)
    assert snippet.startswith("Hi Alice, Thanks for the quote") and "wrote" not in snippet and "OurCo" not in snippet


def test_the_snippet_stops_at_a_german_quoted_reply_and_a_german_signature_is_read(world, imap_user):
    body = (
        "Hallo Frau Rep,\n\nbitte senden Sie uns das Angebot.\n\nMit freundlichen Grüßen\n\nDr. Klaus Berger\n"
        "Vertriebsleiter\nNordlicht Maschinenbau GmbH\nTel.: 040 123456-78\nMobil: 0171 2345678\nFax: 040 123456-99\n\n"
        "Von: Alice Rep <alice@ourco.com>\nGesendet: Montag, 3. März 2025 10:02\nAn: Klaus Berger\n"
        "Betreff: Angebot\n\nSehr geehrter Herr Berger,\nAlice Rep\nTel: +1 212 555 0100\n"
    )
    imap_user.deliver(
        message(
            '"Dr. Klaus Berger" <k.berger@nordlicht-maschinenbau.de>', ALICE, "Angebot", msgid="k1@nordlicht", body=body
        )
    )
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok

    card = contact(world, "k.berger@nordlicht-maschinenbau.de")
    assert (card["name"], card["honorific"]) == ("Klaus Berger", "Dr.")
    assert card["title"] == "Vertriebsleiter"
    assert (card["phone"], card["mobile"]) == ("+494012345678", "+491712345678")  # the fax is not the phone
    assert card["company"]["name"] == "Nordlicht Maschinenbau GmbH"
    snippet = world.scalar("SELECT snippet FROM interaction WHERE message_key = 'k1@nordlicht'")
    assert (
        snippet == "Hallo Frau Rep, bitte senden Sie uns das Angebot. Mit freundlichen Grüßen Dr. Klaus Berger "
        "Vertriebsleiter Nordlicht Maschinenbau GmbH Tel.: 040 123456-78 Mobil: 0171 2345678 Fax: 040 123456-99"
    )


def test_a_later_signature_wins_even_when_the_older_message_arrives_after_it(world, imap_user):
    imap_user.deliver(rory_mail("Head of Procurement", "020 7946 0321", NOW - timedelta(days=5), "r2@aurora"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    assert contact(world, "rory@aurora-telecom.co.uk")["title"] == "Head of Procurement"

    # An older message (synced later, e.g. from the backfill) does not undo the newer one.
    imap_user.deliver(rory_mail("Procurement Manager", "020 7946 0999", NOW - timedelta(days=40), "r1@aurora"))
    assert world.sync(mid).ok
    card = contact(world, "rory@aurora-telecom.co.uk")
    assert (card["title"], card["phone"]) == ("Head of Procurement", "+442079460321")

    # A newer one does: he was promoted and has a new direct line.
    imap_user.deliver(rory_mail("Chief Procurement Officer", "020 7946 0777", NOW - timedelta(hours=1), "r3@aurora"))
    assert world.sync(mid).ok
    card = contact(world, "rory@aurora-telecom.co.uk")
    assert (card["title"], card["phone"]) == ("Chief Procurement Officer", "+442079460777")
    newest = world.scalar("SELECT id FROM interaction WHERE message_key = 'r3@aurora'")
    assert card["provenance"]["phone"]["interaction_id"] == newest


@pytest.mark.parametrize("first", ["r-a@aurora", "r-b@aurora"])
def test_two_signatures_of_the_same_second_give_the_same_winner_whichever_is_read_first(world, imap_user, first):
    """A tie is broken by the message key, not by the order the mail is read in (a killed and
    resumed import reads it in another order than a clean one, and numbers rows differently)."""
    when = NOW - timedelta(days=2)
    titles = {"r-a@aurora": "Procurement Manager", "r-b@aurora": "Head of Procurement"}
    later = next(k for k in titles if k != first)
    imap_user.deliver(rory_mail(titles[first], "020 7946 0321", when, first))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    imap_user.deliver(rory_mail(titles[later], "020 7946 0321", when, later))
    assert world.sync(mid).ok
    card = contact(world, "rory@aurora-telecom.co.uk")
    assert card["title"] == "Head of Procurement"  # from r-b, the greater key, in both orders
    assert card["provenance"]["title"]["interaction_id"] == world.scalar(
        "SELECT id FROM interaction WHERE message_key = 'r-b@aurora'"
    )


def test_a_typed_value_is_never_overwritten_by_a_signature(world, imap_user):
    imap_user.deliver(rory_mail("Head of Procurement", "020 7946 0321", NOW - timedelta(days=5), "t1@aurora"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    cid = world.scalar("SELECT contact_id FROM contactaddress WHERE address = 'rory@aurora-telecom.co.uk'")
    alice = world.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")
    edited = people.update_contact(world.rt, Actor(world.org_id, alice, "rep"), cid, {"title": "Our champion (CPO)"})
    assert edited["provenance"]["title"]["source"] == "typed"

    imap_user.deliver(rory_mail("Chief Procurement Officer", "020 7946 0777", NOW - timedelta(hours=1), "t2@aurora"))
    assert world.sync(mid).ok
    card = contact(world, "rory@aurora-telecom.co.uk")
    assert card["title"] == "Our champion (CPO)"  # typed: kept
    assert card["phone"] == "+442079460777"  # not typed: the newer signature's


def test_a_value_imported_over_a_signatures_is_typed_and_a_later_signature_keeps_off_it(world, imap_user):
    import io

    from app.services import imports

    imap_user.deliver(rory_mail("Head of Procurement", "020 7946 0321", NOW - timedelta(days=5), "i1@aurora"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    assert contact(world, "rory@aurora-telecom.co.uk")["provenance"]["title"]["source"] == "signature"
    assert world.scalar("SELECT name FROM company") == "Aurora Telecom plc"
    op = Actor.operator(world.org_id)
    rows = "email,title\nrory@aurora-telecom.co.uk,Our champion (CPO)\n"
    assert imports.run_import(world.rt, op, io.BytesIO(rows.encode()))["updated"] == 1
    rows = "domain,name\naurora-telecom.co.uk,Aurora Group\n"
    assert imports.run_import(world.rt, op, io.BytesIO(rows.encode()), entity="companies")["updated"] == 1

    imap_user.deliver(rory_mail("Chief Procurement Officer", "020 7946 0777", NOW - timedelta(hours=1), "i2@aurora"))
    assert world.sync(mid).ok
    card = contact(world, "rory@aurora-telecom.co.uk")
    assert card["title"] == "Our champion (CPO)"  # imported by a person: kept
    assert card["phone"] == "+442079460777"  # not in the file: the newer signature's
    assert world.scalar("SELECT name FROM company") == "Aurora Group"


def test_a_value_from_before_enrichment_counts_as_typed(world, imap_user):
    from sqlalchemy import text

    from app.db import write_transaction as transaction

    imap_user.deliver(message("Sam Buyer <sam@pinecrest.com>", ALICE, "Hi", msgid="p0@pinecrest"))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    with transaction(world.rt.engine) as conn:
        conn.execute(
            text("UPDATE contact SET title = 'Buyer (from the old CRM)' WHERE primary_email = 'sam@pinecrest.com'")
        )
        conn.execute(text("UPDATE organisation SET phone_region = 'US' WHERE id = :o"), {"o": world.org_id})
    body = "Hi,\n\nThanks!\n\n--\nSam Buyer\nVP Purchasing\nPinecrest Software Inc.\n(415) 555-0142\n"
    imap_user.deliver(message("Sam Buyer <sam@pinecrest.com>", ALICE, "Re: Hi", msgid="p1@pinecrest", body=body))
    assert world.sync(mid).ok
    card = contact(world, "sam@pinecrest.com")
    assert card["title"] == "Buyer (from the old CRM)"
    assert card["phone"] == "+14155550142"  # .com names no country: the organisation's region


def test_only_the_contacts_own_inbound_mail_enriches_them(world, imap_user):
    imap_user.create_folder("Sent")
    # Our rep's sent reply quotes Rory's signature and carries her own: neither lands on Rory's card.
    sent = (
        "Thanks Rory!\n\nBest,\nAlice Rep\nAccount Executive\nOurCo Inc.\nT: +1 212 555 0100\n\n"
        "On Mon, 3 Mar 2025 at 10:02, Rory Adams <rory@aurora-telecom.co.uk> wrote:\n> Best regards,\n> Rory Adams\n"
        "> Head of Procurement\n> T: 020 7946 0321\n"
    )
    imap_user.deliver(message(ALICE, RORY, "Re: Quote", msgid="s1@ourco", body=sent), folder="Sent")
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    card = contact(world, "rory@aurora-telecom.co.uk")
    assert (card["title"], card["phone"], card["company_name"], card["provenance"]) == (None, None, None, {})
    assert card["company"]["name"] == "Aurora Telecom"  # from the domain, split into words


def test_a_consultants_signature_does_not_rename_the_company_of_their_domain(world, imap_user):
    body = "Hi,\n\nplease find attached.\n\nRegards,\nJo Smith\nSenior Consultant\nBigFour Advisory LLP\nT: +44 20 7946 0500\n"
    imap_user.deliver(message("Jo Smith <jo@aurora-telecom.co.uk>", ALICE, "Report", msgid="c1@aurora", body=body))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    card = contact(world, "jo@aurora-telecom.co.uk")
    assert card["company_name"] == "BigFour Advisory LLP" and card["title"] == "Senior Consultant"
    assert card["company"]["name"] == "Aurora Telecom"


NO_PHONE = "Hello Alice,\n\nsee below.\n\nKind regards,\nRory Adams\nChief Procurement Officer\nAurora Telecom plc\n"


@pytest.mark.parametrize("batches", [1, 2])
def test_each_field_takes_the_latest_signature_giving_it_however_the_mail_is_batched(world, imap_user, batches):
    """A newer signature without a phone leaves the older one's phone, in one batch as in two
    (an import resumed after a kill batches the same mail differently)."""
    older = rory_mail("Head of Procurement", "020 7946 0321", NOW - timedelta(days=9), "p1@aurora")
    newer = message(RORY, ALICE, "Update", msgid="p2@aurora", when=NOW - timedelta(days=1), body=NO_PHONE)
    imap_user.deliver(older)
    mid = world.add_imap("alice@ourco.com", imap_user)
    if batches == 2:
        assert world.sync(mid).ok
    imap_user.deliver(newer)
    assert world.sync(mid).ok
    card = contact(world, "rory@aurora-telecom.co.uk")
    assert (card["title"], card["phone"]) == ("Chief Procurement Officer", "+442079460321")
    keys = {
        f: world.scalar("SELECT message_key FROM interaction WHERE id = :i", i=card["provenance"][f]["interaction_id"])
        for f in ("title", "phone")
    }
    assert keys == {"title": "p2@aurora", "phone": "p1@aurora"}


def test_a_later_consultants_signature_in_the_same_batch_does_not_hide_an_employees(world, imap_user):
    employee = "Hi,\n\nthanks.\n\nRegards,\nRory Adams\nHead of Procurement\nAurora Telecom plc\n"
    consultant = "Hi,\n\nattached.\n\nRegards,\nJo Smith\nSenior Consultant\nBigFour Advisory LLP\n"
    imap_user.deliver(message(RORY, ALICE, "Thanks", msgid="e1@aurora", when=NOW - timedelta(days=3), body=employee))
    imap_user.deliver(
        message(
            "Jo Smith <jo@aurora-telecom.co.uk>",
            ALICE,
            "Report",
            msgid="e2@aurora",
            when=NOW - timedelta(days=1),
            body=consultant,
        )
    )
    assert world.sync(world.add_imap("alice@ourco.com", imap_user)).ok
    assert contact(world, "rory@aurora-telecom.co.uk")["company"]["name"] == "Aurora Telecom plc"


def test_an_enrichment_failure_keeps_every_message_and_is_no_sync_error(world, imap_user, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated enrichment bug")

    monkeypatch.setattr(enrichment, "apply", broken)
    imap_user.deliver(message(RORY, ALICE, "Quote", msgid="f1@aurora", body=RORY_BODY))
    imap_user.deliver(message("x@ext.example", ALICE, "Other", msgid="f2@ext"))
    mid = world.add_imap("alice@ourco.com", imap_user)

    report = world.sync(mid)

    assert report.ok and report.imported == 2
    assert world.sql("SELECT status, last_error FROM mailbox WHERE id = :m", m=mid) == [("active", None)]
    assert world.scalar("SELECT count(*) FROM interaction") == 2
    card = contact(world, "rory@aurora-telecom.co.uk")
    assert card["title"] is None and card["name"] == "Rory Adams"


def test_provenance_is_stored_as_json_per_field(world, imap_user):
    imap_user.deliver(message(RORY, ALICE, "Quote", msgid="j1@aurora", body=RORY_BODY))
    mid = world.add_imap("alice@ourco.com", imap_user)
    assert world.sync(mid).ok
    raw = world.scalar("SELECT provenance FROM contact WHERE primary_email = 'rory@aurora-telecom.co.uk'")
    stored = raw if isinstance(raw, dict) else json.loads(raw)
    assert set(stored) == {"title", "phone", "mobile", "website", "company_name"}
    assert {v["source"] for v in stored.values()} == {"signature"}
    company = world.scalar("SELECT provenance FROM company WHERE domain = 'aurora-telecom.co.uk'")
    company = company if isinstance(company, dict) else json.loads(company)
    assert company["name"]["source"] == "signature"
