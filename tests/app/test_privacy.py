"""Privacy requests against a timeline filled by a real IMAP sync (Dovecot): export
(JSON and vCard 4.0) and erasure, which a later re-sync must not undo."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.crypto import rotate_key, secret_box
from app.db import read_only, session, write_transaction
from app.services import deals, mailboxes, orgs, privacy
from app.services.actor import Actor
from sync.exclusions import erased_hash, erasure_key, legacy_erased_hash
from tests import factories
from tests.world import make_world, message


def test_export_and_erase_survive_a_real_resync(tmp_path, imap_user):
    w = make_world(tmp_path)
    admin = w.add_user("boss@ourco.com", "Boss", admin=True)
    imap_user.deliver(message("Erin Gone <erin@solocorp.com>", "alice@ourco.com", "Only Erin", msgid="e1@solo"))
    imap_user.deliver(message("alice@ourco.com", "erin@solocorp.com", "Reply to Erin", msgid="e2@ourco"))
    imap_user.deliver(
        message(
            "Erin Gone <erin@solocorp.com>",
            "alice@ourco.com",
            "Erin and Sam",
            cc="Sam Stay <sam@sharedcorp.com>",
            msgid="e3@solo",
        )
    )
    imap_user.deliver(message("Sam Stay <sam@sharedcorp.com>", "alice@ourco.com", "Only Sam", msgid="s1@shared"))
    mid = w.add_imap("alice@ourco.com", imap_user)
    assert w.sync(mid).ok
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin))
    client = TestClient(create_app(w.rt))
    h = {"Authorization": f"Bearer {token}"}

    exported = client.post("/api/admin/privacy/export", headers=h, json={"email": "ERIN@solocorp.com"})
    assert exported.status_code == 200
    data = exported.json()
    assert data["contact"]["name"] == "Erin Gone" and data["contact"]["company"]["domain"] == "solocorp.com"
    assert sorted(i["subject"] for i in data["interactions"]) == ["Erin and Sam", "Only Erin", "Reply to Erin"]
    card = client.post("/api/admin/privacy/export", headers=h, json={"email": "erin@solocorp.com", "format": "vcard"})
    assert card.headers["content-type"].startswith("text/vcard")
    lines = card.text.split("\r\n")
    assert lines[:3] == ["BEGIN:VCARD", "VERSION:4.0", "FN:Erin Gone"] and lines[-2] == "END:VCARD"
    assert "EMAIL;PREF=1:erin@solocorp.com" in lines and "ORG:" + data["contact"]["company"]["name"] in lines

    assert client.post("/api/admin/privacy/erase", headers=h, json={"email": "erin@solocorp.com"}).status_code == 422
    erased = client.post("/api/admin/privacy/erase", headers=h, json={"email": "erin@solocorp.com", "confirm": True})
    assert erased.status_code == 200, erased.text
    assert erased.json()["removed_interactions"] == 2

    def state():
        return {
            "subjects": sorted(r[0] for r in w.sql("SELECT subject FROM interaction")),
            "erin": w.scalar("SELECT count(*) FROM participant WHERE address = 'erin@solocorp.com'")
            + w.scalar("SELECT count(*) FROM contactaddress WHERE address = 'erin@solocorp.com'")
            + w.scalar("SELECT count(*) FROM interaction WHERE from_address = 'erin@solocorp.com'"),
            "companies": sorted(r[0] for r in w.sql("SELECT domain FROM company")),
            "contacts": sorted(r[0] for r in w.sql("SELECT primary_email FROM contact")),
        }

    after = state()
    # the shared message stays (Sam is on it), without Erin; the company solocorp.com is gone
    assert after == {
        "subjects": ["Erin and Sam", "Only Sam"],
        "erin": 0,
        "companies": ["sharedcorp.com"],
        "contacts": ["sam@sharedcorp.com"],
    }
    with read_only(w.rt.engine) as conn:
        key = erasure_key(conn, w.rt.box, w.org_id)
    # The tombstone is keyed: its hash cannot be recomputed from the address alone.
    assert (
        w.scalar(
            "SELECT count(*) FROM erasedperson WHERE address_hash = :h",
            h=erased_hash(key, w.org_id, "erin@solocorp.com"),
        )
        == 1
    )
    assert (
        w.scalar(
            "SELECT count(*) FROM erasedperson WHERE address_hash = :h",
            h=legacy_erased_hash(w.org_id, "erin@solocorp.com"),
        )
        == 0
    )
    stored_key = w.scalar("SELECT erasure_key_enc FROM organisation WHERE id = :o", o=w.org_id)
    assert stored_key and key.hex() not in stored_key
    # the audit log records the erasure without the address
    events = client.get("/api/admin/audit", headers=h).json()
    erase = next(e for e in events if e["action"] == "person.erase")
    assert "erin" not in json.dumps(erase).lower()

    # A real re-sync from scratch (every message read again) does not bring Erin back.
    mailboxes.resync(w.rt, Actor.operator(w.org_id), mid)
    imap_user.deliver(message("Erin Gone <erin@solocorp.com>", "alice@ourco.com", "Erin again", msgid="e4@solo"))
    report = w.sync(mid)
    assert report.ok
    assert state() == after
    again = client.post("/api/admin/privacy/export", headers=h, json={"email": "erin@solocorp.com"}).json()
    assert again["contact"] is None and again["interactions"] == [] and again["erased_at"]


def test_vcard_escapes_and_folds():
    export = {
        "address": "a@b.example",
        "exported_at": "2024-01-01T00:00:00+00:00",
        "interactions": [],
        "contact": {
            "name": 'Doe, Jane; "Q"',
            "primary_email": "a@b.example",
            "addresses": ["a@b.example"],
            "company": {"name": "X" * 120, "domain": "b.example"},
            "title": None,
            "phone": None,
            "tags": [],
        },
    }
    text = privacy.to_vcard(export)
    assert 'FN:Doe\\, Jane\\; "Q"' in text
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    assert "\r\n X" in text  # the long ORG line is folded


def _erin_world(tmp_path, imap_user):
    w = make_world(tmp_path)
    admin = w.add_user("boss@ourco.com", "Boss", admin=True)
    imap_user.deliver(message("Erin Gone <erin@solocorp.com>", "alice@ourco.com", "Hello", msgid="e1@solo"))
    mid = w.add_imap("alice@ourco.com", imap_user)
    assert w.sync(mid).ok
    with session(w.rt.engine) as s:
        token = factories.issue_token(s, s.get(orgs.User, admin))
    return w, mid, TestClient(create_app(w.rt)), {"Authorization": f"Bearer {token}"}


def test_erasure_removes_the_rules_and_audit_entries_that_name_the_person(tmp_path, imap_user):
    w, mid, client, h = _erin_world(tmp_path, imap_user)
    rule = client.post("/api/admin/rules", headers=h, json={"kind": "address", "value": "Erin@solocorp.com"})
    assert rule.status_code in (200, 201), rule.text
    assert client.post("/api/admin/rules", headers=h, json={"kind": "domain", "value": "spam.example"}).status_code in (
        200,
        201,
    )
    client.post("/api/admin/privacy/export", headers=h, json={"email": "erin@solocorp.com"})
    before = json.dumps(client.get("/api/admin/audit", headers=h).json()).lower()
    assert "erin@solocorp.com" in before  # the rule's audit entry named her

    erased = client.post("/api/admin/privacy/erase", headers=h, json={"email": "erin@solocorp.com", "confirm": True})
    assert erased.status_code == 200 and erased.json()["removed_rules"] == 1
    assert erased.json()["scrubbed_audit_events"] >= 1
    assert [r[0] for r in w.sql("SELECT value FROM exclusionrule")] == ["spam.example"]
    after = client.get("/api/admin/audit", headers=h).json()
    assert "erin@solocorp.com" not in json.dumps(after).lower()
    tags = {e["target"] for e in after if e["action"] in ("person.erase", "rule.add")}
    assert any(t.startswith("erased person ") for t in tags)
    # Still never synced again, now without the rule.
    imap_user.deliver(message("Erin Gone <erin@solocorp.com>", "alice@ourco.com", "Again", msgid="e2@solo"))
    assert w.sync(mid).ok
    assert w.scalar("SELECT count(*) FROM participant WHERE address = 'erin@solocorp.com'") == 0


def test_tombstones_written_before_keys_existed_still_keep_people_out(tmp_path, imap_user):
    w = make_world(tmp_path)
    with write_transaction(w.rt.engine) as conn:
        from sqlalchemy import text

        conn.execute(
            text("INSERT INTO erasedperson (org_id, address_hash, erased_at) VALUES (:o, :h, :t)"),
            {"o": w.org_id, "h": legacy_erased_hash(w.org_id, "old@gone.example"), "t": "2026-01-01 00:00:00"},
        )
    imap_user.deliver(message("Old <old@gone.example>", "alice@ourco.com", "Back?", msgid="o1@gone"))
    imap_user.deliver(message("New <new@here.example>", "alice@ourco.com", "Hi", msgid="n1@here"))
    mid = w.add_imap("alice@ourco.com", imap_user)
    assert w.sync(mid).ok
    assert [r[0] for r in w.sql("SELECT primary_email FROM contact")] == ["new@here.example"]
    with read_only(w.rt.engine) as conn:
        assert privacy.collect_person(conn, w.org_id, "old@gone.example", w.rt.box)["erased_at"]


def test_tombstones_survive_a_key_rotation(tmp_path, imap_user):
    w, mid, client, h = _erin_world(tmp_path, imap_user)
    assert (
        client.post(
            "/api/admin/privacy/erase", headers=h, json={"email": "erin@solocorp.com", "confirm": True}
        ).status_code
        == 200
    )
    counts = rotate_key(w.rt.settings, w.rt.engine)
    assert counts["organisation.erasure_key_enc"] == 1
    w.rt.box = secret_box(w.rt.settings)  # what a restarted process loads: only the new key
    mailboxes.resync(w.rt, Actor.operator(w.org_id), mid)
    assert w.sync(mid).ok
    assert w.scalar("SELECT count(*) FROM participant WHERE address = 'erin@solocorp.com'") == 0
    assert w.scalar("SELECT count(*) FROM contact") == 0


def test_erasing_a_person_on_a_deal_takes_them_off_it_and_keeps_the_deal_and_its_company(tmp_path, imap_user):
    w, mid, client, h = _erin_world(tmp_path, imap_user)
    op = Actor.operator(w.org_id)
    deals.create_pipeline(w.rt, op, name="Sales")
    erin = w.scalar("SELECT contact_id FROM contactaddress WHERE address = 'erin@solocorp.com'")
    alice = w.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")
    deal = deals.create_deal(w.rt, op, name="Solo renewal", contact_ids=[erin], owner_id=alice)
    company = w.scalar("SELECT company_id FROM deal WHERE id = :d", d=deal["id"])
    assert company is not None  # the deal took Erin's company

    erased = client.post("/api/admin/privacy/erase", headers=h, json={"email": "erin@solocorp.com", "confirm": True})

    assert erased.status_code == 200, erased.text
    assert w.scalar("SELECT count(*) FROM contact") == 0
    assert w.sql("SELECT name, company_id FROM deal") == [("Solo renewal", company)]
    assert w.scalar("SELECT count(*) FROM dealcontact") == 0
    assert w.scalar("SELECT count(*) FROM company WHERE id = :c", c=company) == 1


def test_removing_a_mailbox_with_purge_keeps_a_contact_who_is_on_a_deal(tmp_path, imap_user):
    w, mid, client, h = _erin_world(tmp_path, imap_user)
    op = Actor.operator(w.org_id)
    deals.create_pipeline(w.rt, op, name="Sales")
    erin = w.scalar("SELECT contact_id FROM contactaddress WHERE address = 'erin@solocorp.com'")
    alice = w.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")
    deal = deals.create_deal(w.rt, op, name="Solo renewal", contact_ids=[erin], owner_id=alice)

    outcome = mailboxes.remove(w.rt, op, mid, purge=True)

    assert outcome["removed_interactions"] == 1 and outcome["removed_contacts"] == 0
    assert w.sql("SELECT deal_id, contact_id FROM dealcontact") == [(deal["id"], erin)]
    assert w.scalar("SELECT address FROM contactaddress WHERE contact_id = :c", c=erin) == "erin@solocorp.com"


def test_erasure_leaves_no_follow_up_naming_the_person_even_where_they_were_no_contact(tmp_path, imap_user):
    w = make_world(tmp_path)
    w.set_org(contact_policy="none")  # nobody becomes a contact: follow-ups name the address alone
    imap_user.deliver(message("Erin <erin@acme.com>", "alice@ourco.com", "Terms", msgid="t1@acme", cc="dan@acme.com"))
    imap_user.deliver(
        message("alice@ourco.com", "erin@acme.com", "Offer", msgid="o1@ourco", cc="dan@acme.com"), folder="Sent"
    )
    mid = w.add_imap("alice@ourco.com", imap_user)
    assert w.sync(mid).ok
    assert w.scalar("SELECT count(*) FROM followup WHERE address = 'erin@acme.com'") == 2

    privacy.erase_person(w.rt, Actor.operator(w.org_id), "erin@acme.com", confirm=True)

    # The mail stays (Dan is on it), but nothing stored names her any more.
    assert w.scalar("SELECT count(*) FROM interaction") == 2
    assert w.scalar("SELECT count(*) FROM followup WHERE address = 'erin@acme.com'") == 0
    assert w.scalar("SELECT count(*) FROM participant WHERE address = 'erin@acme.com'") == 0
    assert w.scalar("SELECT count(*) FROM interaction WHERE from_address = 'erin@acme.com'") == 0


def test_mail_claiming_a_colleagues_from_with_only_the_erased_person_outside_goes_with_them(tmp_path, imap_user):
    """A colleague's From that nothing vouched for is stored without their user: erasure took that
    row for another external person and kept the mail, where a clean sync skips it (erased person)."""
    w = make_world(tmp_path)
    hop = (
        b"Received: from mail.ourco.com (mail.ourco.com [10.0.0.2]) by mx.ourco.com; Mon, 1 Jun 2026 10:00:00 +0000\r\n"
    )
    imap_user.deliver(hop + message("bob@ourco.com", "erin@acme.com", "Terms", msgid="t1@ourco", cc="alice@ourco.com"))
    imap_user.deliver(message("Dan <dan@acme.com>", "alice@ourco.com", "Hello", msgid="h1@acme"))
    mid = w.add_imap("alice@ourco.com", imap_user)
    assert w.sync(mid).ok
    assert w.scalar("SELECT unverified_sender FROM interaction WHERE message_key = 't1@ourco'")

    privacy.erase_person(w.rt, Actor.operator(w.org_id), "erin@acme.com", confirm=True)

    assert [r[0] for r in w.sql("SELECT message_key FROM interaction")] == ["h1@acme"]
    assert w.scalar("SELECT count(*) FROM participant WHERE address = 'erin@acme.com'") == 0


def test_a_person_erased_while_a_sync_runs_is_left_out_of_its_later_batches(tmp_path, imap_user):
    w = make_world(tmp_path)
    for n in range(3):
        imap_user.deliver(message("Erin <erin@acme.com>", "alice@ourco.com", f"Mail {n}", msgid=f"m{n}@acme"))
    imap_user.deliver(message("Dan <dan@acme.com>", "alice@ourco.com", "Hello", msgid="d1@acme"))
    mid = w.add_imap("alice@ourco.com", imap_user)
    w.set_batch_size(mid, 1)
    erased = []

    def erase_after_the_first_batch(report):
        if not erased and w.scalar("SELECT count(*) FROM participant WHERE address = 'erin@acme.com'"):
            erased.append(privacy.erase_person(w.rt, Actor.operator(w.org_id), "erin@acme.com", confirm=True))

    assert w.sync(mid, fetch_in_child=False, progress=erase_after_the_first_batch).ok
    assert erased and erased[0]["removed_contacts"] == 1
    # The run read its "never log" rules and tombstones when it started; the erasure still holds.
    assert w.scalar("SELECT count(*) FROM participant WHERE address = 'erin@acme.com'") == 0
    assert w.scalar("SELECT count(*) FROM contactaddress WHERE address = 'erin@acme.com'") == 0
    assert w.sql("SELECT subject FROM interaction") == [("Hello",)]


def test_the_exclusions_stamp_moves_when_the_newest_rule_is_replaced(tmp_path):
    # SQLite gives a removed highest id to the next row: a stamp of (count, highest id) stayed
    # the same, and a running sync kept the removed rule and missed the new one.
    from sqlalchemy import select

    from app.services import rules
    from sync.exclusions import stamp_of

    w = make_world(tmp_path)
    actor = Actor.operator(w.org_id)

    def stamp():
        with read_only(w.rt.engine) as conn:
            return tuple(conn.execute(select(*stamp_of(w.org_id))).one())

    rules.add_rule(w.rt, actor, value="old@acme.com")
    newest = rules.add_rule(w.rt, actor, value="typo@acmme.com")
    before = stamp()
    rules.remove_rule(w.rt, actor, newest["id"])
    again = rules.add_rule(w.rt, actor, value="typo@acme.com")
    assert again["id"] == newest["id"] or w.rt.engine.dialect.name != "sqlite"  # the id came back
    assert stamp() != before


@pytest.mark.parametrize("change", ["erasure", "never-log rule"])
def test_a_change_to_the_exclusions_made_while_a_batch_writes_waits_for_it_and_removes_what_it_wrote(
    tmp_path, imap_user, monkeypatch, change
):
    # On PostgreSQL the batch had read the exclusions before the change committed, and then
    # wrote the person's new mail back onto the timeline (sync/exclusions.py: the gate).
    import threading

    import sync.engine as engine_module
    from app.services import rules

    w = make_world(tmp_path)
    imap_user.deliver(message("Erin <erin@acme.com>", "alice@ourco.com", "Before", msgid="e0@acme"))
    mid = w.add_imap("alice@ourco.com", imap_user)
    assert w.sync(mid, fetch_in_child=False).ok
    imap_user.deliver(message("Erin <erin@acme.com>", "alice@ourco.com", "During", msgid="e1@acme"))
    imap_user.deliver(message("Dan <dan@acme.com>", "alice@ourco.com", "Hello", msgid="d1@acme"))
    real_ingest, writing, go_on = engine_module.ingest, threading.Event(), threading.Event()

    def ingest_after_a_pause(conn, org, mbx, mail):
        if mail and not writing.is_set():  # the batch has read its stamp and holds its locks
            writing.set()
            go_on.wait(30)
        return real_ingest(conn, org, mbx, mail)

    monkeypatch.setattr(engine_module, "ingest", ingest_after_a_pause)
    reports: list = []
    sync = threading.Thread(target=lambda: reports.append(w.sync(mid, fetch_in_child=False)))
    sync.start()
    assert writing.wait(30)
    actor = Actor.operator(w.org_id)
    if change == "erasure":
        act = lambda: privacy.erase_person(w.rt, actor, "erin@acme.com", confirm=True)  # noqa: E731
    else:
        act = lambda: rules.add_rule(w.rt, actor, value="erin@acme.com")  # noqa: E731
    changing = threading.Thread(target=act)
    changing.start()
    changing.join(2)  # the old code committed here, under the batch's feet
    go_on.set()
    sync.join(60)
    changing.join(60)
    assert not sync.is_alive() and not changing.is_alive()
    assert reports and reports[0].ok
    assert w.sql("SELECT subject FROM interaction ORDER BY subject") == [("Hello",)]
    assert w.scalar("SELECT count(*) FROM participant WHERE address = 'erin@acme.com'") == 0


def test_an_email_logged_by_hand_while_its_sender_is_erased_is_not_written_back(tmp_path, monkeypatch):
    # The sidebar's "log this email" applies the exclusions like a sync batch: on PostgreSQL it
    # read them before the erasure committed and then wrote Erin's mail and a new contact for her.
    import threading

    import sync.ingest as ingest_module
    from app.services import activity

    w = make_world(tmp_path)
    alice = Actor(w.org_id, w.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'"), "rep")
    real_ingest, writing, go_on = ingest_module.ingest, threading.Event(), threading.Event()

    def ingest_after_a_pause(conn, org, mbx, mail):
        writing.set()
        go_on.wait(30)
        return real_ingest(conn, org, mbx, mail)

    monkeypatch.setattr(ingest_module, "ingest", ingest_after_a_pause)
    logged: list = []
    log = threading.Thread(
        target=lambda: logged.append(
            activity.log_email(
                w.rt,
                alice,
                internet_message_id="<erin-1@acme.com>",
                subject="Pricing",
                sender={"email": "erin@acme.com", "name": "Erin"},
                to=[{"email": "alice@ourco.com"}],
                cc=[],
                date=None,
            )
        )
    )
    log.start()
    assert writing.wait(30)
    erasing = threading.Thread(
        target=lambda: privacy.erase_person(w.rt, Actor.operator(w.org_id), "erin@acme.com", confirm=True)
    )
    erasing.start()
    erasing.join(2)  # the old code committed here, under the logging's feet
    go_on.set()
    log.join(60)
    erasing.join(60)
    assert not log.is_alive() and not erasing.is_alive() and logged
    assert w.scalar("SELECT count(*) FROM participant WHERE address = 'erin@acme.com'") == 0
    assert w.scalar("SELECT count(*) FROM contactaddress WHERE address = 'erin@acme.com'") == 0


def test_a_rule_removed_while_a_sync_runs_brings_back_the_mail_it_kept_out(tmp_path, imap_user):
    # The run went on with the cursors it had read, and wrote them back over the reset: the mail
    # the rule had kept out, already passed over, never came back.
    from app.services import rules

    w = make_world(tmp_path)
    for n in range(3):
        imap_user.deliver(message("Dan <dan@acme.com>", "alice@ourco.com", f"Dan {n}", msgid=f"d{n}@acme"))
    imap_user.deliver(message("Erin <erin@acme.com>", "alice@ourco.com", "Erin", msgid="e1@acme"))  # read first
    mid = w.add_imap("alice@ourco.com", imap_user)
    w.set_batch_size(mid, 1)
    rule = rules.add_rule(w.rt, Actor.operator(w.org_id), value="erin@acme.com")
    removed = []

    def remove_after_the_first_batch(report):
        if not removed:
            rules.remove_rule(w.rt, Actor.operator(w.org_id), rule["id"])
            removed.append(report.imported)

    first = w.sync(mid, fetch_in_child=False, progress=remove_after_the_first_batch)
    assert removed and not first.ok and first.error_kind == "lease"  # stopped: read again from the start
    assert w.sync(mid, fetch_in_child=False).ok
    assert sorted(r[0] for r in w.sql("SELECT subject FROM interaction")) == ["Dan 0", "Dan 1", "Dan 2", "Erin"]
