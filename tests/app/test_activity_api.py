"""What reps do from the sidebar, through the HTTP API: notes, tasks, contacts
created and edited, an email logged by hand, "never log".

The timeline is filled through the real ingest pipeline (sync/ingest.py) into
a real mailbox/folder of each rep, without an IMAP server: the sidebar only
cares about what ingest stores. `seed()` is shared with tests/app/test_panel.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.api import create_app
from app.db import session, write_transaction
from app.models import FolderState, Mailbox
from app.services import orgs
from connectors.base import MessageRecord
from sync.engine import org_context
from sync.ingest import MailboxContext, ingest
from tests import factories
from tests.world import make_world

XSS_SUBJECT = '<img src=x onerror="window.__xss=1"> quote & <b>terms</b>'
JANE, MARK, SAM, UNA = "jane@acme.com", "mark@acme.com", "sam@spammy.io", "una@newco.io"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@dataclass
class Seed:
    world: object
    tokens: dict[str, str]
    users: dict[str, int]
    mailboxes: dict[str, tuple[int, int, int, str]] = field(default_factory=dict)  # rep -> (mbx, folder, uid, email)
    n: int = 0

    @property
    def rt(self):
        return self.world.rt

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def deliver(
        self,
        rep: str,
        *,
        frm: tuple[str, str],
        to: list[tuple[str, str]],
        subject: str,
        when: datetime,
        key: str | None = None,
        cc: list[tuple[str, str]] = (),
        recipients_not_kept: int = 0,
    ) -> str:
        """One message into a rep's mailbox through the real ingest (what a sync does)."""
        self.n += 1
        key = key or f"m{self.n}.{rep}@test"
        mbx, folder, uid, email = self.mailboxes[rep]
        record = MessageRecord(
            remote_id=f"1/{self.n}",
            message_key=key,
            date=when,
            from_=[frm],
            to=list(to),
            cc=list(cc),
            bcc=[],
            subject=subject,
            in_reply_to=None,
            references=[],
            snippet=f"snippet of {subject}"[:200],
            recipients_not_kept=recipients_not_kept,
        )
        with write_transaction(self.rt.engine) as conn:
            ingest(
                conn,
                org_context(conn, self.world.org_id, self.world.rt.box),
                MailboxContext(mbx, folder, uid, email),
                [record],
            )
        return key


def _mailbox(rt, org_id: int, owner_id: int) -> tuple[int, int]:
    with write_transaction(rt.engine) as conn:
        mbx = conn.execute(
            insert(Mailbox.__table__).values(
                org_id=org_id,
                owner_id=owner_id,
                kind="imap",
                config={},
                skipped={},
                status="paused",
                sync_stage="idle",
                failure_count=0,
                messages_imported=0,
                created_at=NOW,
            )
        ).inserted_primary_key[0]
        folder = conn.execute(
            insert(FolderState.__table__).values(
                org_id=org_id,
                mailbox_id=mbx,
                name="INBOX",
                role="inbox",
                selected=True,
                cursor={},
                backfill_done=True,
                messages=0,
                status="ok",
            )
        ).inserted_primary_key[0]
    return mbx, folder


def seed(tmp_path, *, jane_messages: int = 30) -> Seed:
    """OurCo (alice, bob) with Jane (busy), Mark (same company) and Sam; OtherCo (carol)."""
    w = make_world(tmp_path, reps=(("alice@ourco.com", "Alice Rep"), ("bob@ourco.com", "Bob Rep")))
    tokens, users = {}, {}
    with session(w.rt.engine) as s:
        org1 = orgs.the_org(s, w.org_id)
        for key, email in (("alice", "alice@ourco.com"), ("bob", "bob@ourco.com")):
            user = orgs.find_user(s, w.org_id, email)
            users[key] = user.id
            tokens[key] = factories.issue_token(s, user, "test")
        org2 = factories.create_org(s, "OtherCo", ["otherco.com"])
        carol = factories.add_user(s, org2, "carol@otherco.com", name="Carol")
        users["carol"] = carol.id
        tokens["carol"] = factories.issue_token(s, carol, "test")
        assert org1.id == w.org_id
    sd = Seed(w, tokens, users)
    for rep in ("alice", "bob"):
        mbx, folder = _mailbox(w.rt, w.org_id, users[rep])
        sd.mailboxes[rep] = (mbx, folder, users[rep], f"{rep}@ourco.com")
    alice = ("Alice Rep", "alice@ourco.com")
    jane = ("Jane Doe", JANE)
    for i in range(jane_messages):
        when = NOW - timedelta(days=60 - i)
        if i % 3 == 1:
            sd.deliver("alice", frm=alice, to=[jane], subject=f"Re: Proposal {i}", when=when)
        else:
            subject = XSS_SUBJECT if i == jane_messages - 3 else f"Proposal {i}"
            sd.deliver(
                "alice",
                frm=jane,
                to=[alice],
                cc=[("Mark Roe", MARK)] if i == jane_messages - 1 else [],
                subject=subject,
                when=when,
            )
    sd.deliver(
        "bob", frm=("Bob Rep", "bob@ourco.com"), to=[jane], subject="Pricing from Bob", when=NOW - timedelta(days=20)
    )
    sd.deliver("alice", frm=("Mark Roe", MARK), to=[alice], subject="Hello from Mark", when=NOW - timedelta(days=3))
    sd.deliver("alice", frm=("Sam Spam", SAM), to=[alice], subject="Buy now", when=NOW - timedelta(days=2))
    return sd


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> Seed:
    s = seed(tmp_path_factory.mktemp("activity"), jane_messages=6)
    yield s
    s.rt.engine.dispose()


@pytest.fixture(scope="module")
def client(sd) -> TestClient:
    c = TestClient(create_app(sd.rt))
    yield c
    c.close()


def _lookup(client, sd, who: str, email: str) -> dict:
    r = client.get("/api/lookup", params={"email": email}, headers=sd.h(who))
    assert r.status_code == 200, r.text
    return r.json()


def _contact_id(client, sd, email: str) -> int:
    return _lookup(client, sd, "alice", email)["contact"]["id"]


# -- notes and tasks -----------------------------------------------------------------------


def test_note_is_on_the_contact_and_company_timeline_for_colleagues(client, sd):
    jane = _contact_id(client, sd, JANE)
    r = client.post(
        f"/api/contacts/{jane}/notes", json={"body": "Met at the fair.\nWants a pilot in Q3."}, headers=sd.h("alice")
    )
    assert r.status_code == 201, r.text
    note = r.json()
    assert note["kind"] == "note" and note["body"] == "Met at the fair.\nWants a pilot in Q3."
    assert note["author"]["id"] == sd.users["alice"]
    # Bob (a colleague) sees it at once, newest first, on the lookup and the paged timeline.
    first = _lookup(client, sd, "bob", JANE)["timeline"]["items"][0]
    assert first["id"] == note["id"] and first["kind"] == "note"
    page = client.get(f"/api/contacts/{jane}/timeline", headers=sd.h("bob")).json()
    assert page["items"][0]["id"] == note["id"]
    # ... and on the company's timeline: the "about" participant carries the company.
    company = _lookup(client, sd, "bob", JANE)["contact"]["company"]["id"]
    ctl = client.get(f"/api/companies/{company}/timeline", headers=sd.h("bob"))
    assert ctl.status_code == 200 and note["id"] in [i["id"] for i in ctl.json()["items"]]
    key, role, contact_id = sd.world.sql(
        "SELECT i.message_key, p.role, p.contact_id FROM interaction i "
        "JOIN participant p ON p.interaction_id = i.id WHERE i.id = :i",
        i=note["id"],
    )[0]
    assert key.startswith("note:") and role == "about" and contact_id == jane


def test_task_with_due_date_marked_done_and_reopened(client, sd):
    jane = _contact_id(client, sd, JANE)
    due = (NOW + timedelta(days=3)).isoformat()
    r = client.post(
        f"/api/contacts/{jane}/tasks", json={"title": "Send the pilot plan", "due_at": due}, headers=sd.h("alice")
    )
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["kind"] == "task" and task["subject"] == "Send the pilot plan" and task["done_at"] is None
    assert datetime.fromisoformat(task["due_at"].replace("Z", "+00:00")) == NOW + timedelta(days=3)
    done = client.patch(f"/api/tasks/{task['id']}", json={"done": True}, headers=sd.h("bob"))
    assert done.status_code == 200 and done.json()["done_at"] is not None
    assert sd.world.scalar("SELECT done_at FROM interaction WHERE id = :i", i=task["id"]) is not None
    again = client.patch(f"/api/tasks/{task['id']}", json={"done": False}, headers=sd.h("alice"))
    assert again.json()["done_at"] is None
    # A note is not a task.
    note = client.post(f"/api/contacts/{jane}/notes", json={"body": "x"}, headers=sd.h("alice")).json()
    assert client.patch(f"/api/tasks/{note['id']}", json={"done": True}, headers=sd.h("alice")).status_code == 404


def test_other_organisation_gets_404_and_no_token_gets_401(client, sd):
    jane = _contact_id(client, sd, JANE)
    task = client.post(f"/api/contacts/{jane}/tasks", json={"title": "t"}, headers=sd.h("alice")).json()
    carol = sd.h("carol")
    assert client.post(f"/api/contacts/{jane}/notes", json={"body": "x"}, headers=carol).status_code == 404
    assert client.post(f"/api/contacts/{jane}/tasks", json={"title": "x"}, headers=carol).status_code == 404
    assert client.patch(f"/api/tasks/{task['id']}", json={"done": True}, headers=carol).status_code == 404
    assert client.patch(f"/api/contacts/{jane}", json={"stage": "lead"}, headers=carol).status_code == 404
    assert client.get("/api/lookup", params={"email": JANE}, headers=carol).status_code == 404
    assert sd.world.scalar("SELECT done_at FROM interaction WHERE id = :i", i=task["id"]) is None
    for method, url, body in (
        ("post", f"/api/contacts/{jane}/notes", {"body": "x"}),
        ("patch", f"/api/contacts/{jane}", {"stage": "lead"}),
        ("post", "/api/contacts", {"email": "x@y.com"}),
        ("post", "/api/never-log", {"email": SAM}),
        ("post", "/api/log-email", {"internet_message_id": "<a@b>", "from": {"email": JANE}}),
    ):
        r = getattr(client, method)(url, json=body)
        assert r.status_code == 401, (url, r.text)
        r = getattr(client, method)(url, json=body, headers={"Authorization": "Bearer tl_not-a-real-token"})
        assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked token"


# -- contacts ----------------------------------------------------------------------------------


def test_edit_contact_fields_tags_stage_and_owner(client, sd):
    jane = _contact_id(client, sd, JANE)
    r = client.patch(
        f"/api/contacts/{jane}",
        headers=sd.h("alice"),
        json={
            "title": "  Head of   Data ",
            "phone": "+44 20 7946 0000",
            "stage": "Qualified",
            "tags": ["pilot", " Pilot ", "emea", ""],
            "owner_id": sd.users["bob"],
        },
    )
    assert r.status_code == 200, r.text
    card = r.json()
    assert (card["title"], card["phone"], card["stage"], card["tags"]) == (
        "Head of Data",
        "+44 20 7946 0000",
        "qualified",
        ["pilot", "emea"],
    )
    seen = _lookup(client, sd, "bob", JANE)["contact"]
    assert seen["stage"] == "qualified" and seen["tags"] == ["pilot", "emea"]
    owner = seen.get("owner") or {"id": seen.get("owner_id")}
    assert owner["id"] == sd.users["bob"]
    assert client.patch(f"/api/contacts/{jane}", json={"stage": "won"}, headers=sd.h("alice")).status_code == 422
    assert (
        client.patch(f"/api/contacts/{jane}", json={"owner_id": sd.users["carol"]}, headers=sd.h("alice")).status_code
        == 422
    )
    assert client.get("/api/stages", headers=sd.h("alice")).json() == [
        "lead",
        "qualified",
        "opportunity",
        "customer",
        "churned",
    ]
    assert sd.world.scalar("SELECT COUNT(*) FROM auditevent WHERE action = 'contact.update'") >= 1


def test_create_contact_with_company_from_domain(client, sd):
    r = client.post(
        "/api/contacts",
        headers=sd.h("alice"),
        json={"email": " Una@NewCo.io ", "name": "Una Known", "title": "CTO", "stage": "lead", "tags": ["inbound"]},
    )
    assert r.status_code == 201, r.text
    card = r.json()
    assert card["email"] == UNA and card["name"] == "Una Known" and card["company"]["domain"] == "newco.io"
    assert card["company"]["name"] == "Newco" and card["stage"] == "lead" and card["tags"] == ["inbound"]
    assert _lookup(client, sd, "bob", UNA)["contact"]["id"] == card["id"]
    dup = client.post("/api/contacts", json={"email": UNA}, headers=sd.h("bob"))
    assert dup.status_code == 409 and dup.json()["contact_id"] == card["id"]
    assert client.post("/api/contacts", json={"email": "bob@ourco.com"}, headers=sd.h("alice")).status_code == 422
    assert client.post("/api/contacts", json={"email": "not an address"}, headers=sd.h("alice")).status_code == 422
    # Free-mail addresses get no company.
    free = client.post("/api/contacts", json={"email": "pat@gmail.com", "name": "Pat"}, headers=sd.h("alice"))
    assert free.status_code == 201 and free.json()["company"] is None


def test_an_address_a_never_log_rule_covers_cannot_be_added_as_a_contact_by_hand(tmp_path):
    """The rule keeps the person's mail off the timeline; a contact made from the sidebar would have
    put them in search, segments and exports all the same (imports already refused them)."""
    from app.services import rules
    from app.services.actor import Actor

    own = seed(tmp_path)
    rules.add_rule(own.rt, Actor.operator(own.world.org_id), value="lawfirm.example")  # the company's rule
    with TestClient(create_app(own.rt)) as client:
        r = client.post("/api/contacts", json={"email": "counsel@lawfirm.example"}, headers=own.h("alice"))
        assert r.status_code == 422 and "never log" in r.text
        assert client.post("/api/never-log", json={"email": UNA}, headers=own.h("alice")).status_code == 201
        mine = client.post("/api/contacts", json={"email": UNA}, headers=own.h("alice"))
        assert mine.status_code == 422  # her own rule
        assert client.post("/api/contacts", json={"email": UNA}, headers=own.h("bob")).status_code == 201  # not his
    assert own.world.scalar("SELECT count(*) FROM contactaddress WHERE address = 'counsel@lawfirm.example'") == 0


def test_an_unknown_address_at_a_known_company_comes_with_the_companys_context(tmp_path):
    own = seed(tmp_path, jane_messages=2)
    # Pat is only copied on Jane's mail: no contact, but the name Pat wrote under is stored.
    own.deliver(
        "alice",
        frm=("Jane Doe", JANE),
        to=[("Alice Rep", "alice@ourco.com")],
        cc=[("Pat Example", "pat@acme.com")],
        subject="Intro to Pat",
        when=NOW - timedelta(hours=5),
    )
    with TestClient(create_app(own.rt)) as client:
        r = client.get("/api/lookup", params={"email": "Lena.Lane@ACME.com"}, headers=own.h("alice"))
        assert r.status_code == 404
        assert r.json()["detail"] == "no contact with this address"
        about = r.json()["unknown"]
        assert about["name"] == "Lena Lane"  # from the address
        assert about["company"]["name"] == "Acme"
        assert {c["email"] for c in about["company_contacts"]} == {JANE, MARK}
        assert {c["email"] for c in about["colleagues"]} == {"alice@ourco.com", "bob@ourco.com"}
        assert about["last_interaction"]["subject"] == "Intro to Pat"
        pat = client.get("/api/lookup", params={"email": "pat@acme.com"}, headers=own.h("alice"))
        assert pat.status_code == 404 and pat.json()["unknown"]["name"] == "Pat Example"  # as it wrote
        # Nothing to go on: no company, no guessed name.
        none = client.get("/api/lookup", params={"email": "info@nowhere.example"}, headers=own.h("alice")).json()
        assert none["unknown"]["name"] == "" and none["unknown"]["company"] is None
        assert none["unknown"]["colleagues"] == [] and none["unknown"]["last_interaction"] is None
        assert client.get("/api/lookup", params={"email": "not an address"}, headers=own.h("alice")).json() == {
            "detail": "no contact with this address",
            "unknown": None,
        }
        # Another organisation learns nothing about OurCo's Acme.
        theirs = client.get("/api/lookup", params={"email": "lena.lane@acme.com"}, headers=own.h("carol"))
        assert theirs.status_code == 404
        assert theirs.json()["unknown"]["company"] is None and theirs.json()["unknown"]["colleagues"] == []
        assert (
            "Acme" not in theirs.text
            and "Pat" not in client.get("/api/lookup", params={"email": "pat@acme.com"}, headers=own.h("carol")).text
        )
    own.rt.engine.dispose()


# -- logging an email by hand --------------------------------------------------------------------


def test_logged_email_is_not_duplicated_by_a_later_sync(client, sd):
    payload = {
        "internet_message_id": "<CAF=logged.1@mail.newco.io>",
        "subject": "Intro from the add-in",
        "from": {"name": "Lou Logged", "email": "lou@logged.io"},
        "to": [{"name": "Alice Rep", "email": "alice@ourco.com"}],
        "cc": [],
        "date": (NOW - timedelta(hours=2)).isoformat(),
        "conversation_id": "AAQk...",
    }
    r = client.post("/api/log-email", json=payload, headers=sd.h("alice"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["logged"] and out["created"]
    assert (
        sd.world.scalar("SELECT message_key FROM interaction WHERE id = :i", i=out["interaction_id"])
        == "CAF=logged.1@mail.newco.io"
    )
    items = _lookup(client, sd, "bob", "lou@logged.io")["timeline"]["items"]
    assert [i["subject"] for i in items] == ["Intro from the add-in"]
    # The same mail logged again, then synced from alice's mailbox: still one interaction.
    again = client.post("/api/log-email", json=payload, headers=sd.h("bob")).json()
    assert again["logged"] and not again["created"] and again["interaction_id"] == out["interaction_id"]
    sd.deliver(
        "alice",
        frm=("Lou Logged", "lou@logged.io"),
        to=[("Alice Rep", "alice@ourco.com")],
        subject="Intro from the add-in",
        when=NOW - timedelta(hours=2),
        key="CAF=logged.1@mail.newco.io",
    )
    assert sd.world.scalar("SELECT COUNT(*) FROM interaction WHERE message_key = 'CAF=logged.1@mail.newco.io'") == 1
    assert (
        sd.world.scalar("SELECT COUNT(*) FROM interactionsource WHERE interaction_id = :i", i=out["interaction_id"])
        == 1
    )
    # Internal-only mail is not logged, and says why.
    internal = client.post(
        "/api/log-email",
        headers=sd.h("alice"),
        json={**payload, "internet_message_id": "<int.1@ourco.com>", "from": {"email": "bob@ourco.com"}},
    )
    assert internal.status_code == 200 and internal.json()["logged"] is False
    assert internal.json()["reason"] == "internal"
    bad = client.post("/api/log-email", headers=sd.h("alice"), json={**payload, "internet_message_id": "a b"})
    assert bad.status_code == 422


def test_a_mass_mailing_logged_by_hand_keeps_500_recipients_a_field_and_counts_the_rest(client, sd):
    crowd = [{"name": f"Guest {i}", "email": f"guest{i}@crowd-events.io"} for i in range(1_200)]
    r = client.post(
        "/api/log-email",
        headers=sd.h("alice"),
        json={
            "internet_message_id": "<summit.1@crowd-events.io>",
            "subject": "Summit",
            "from": {"name": "Dora", "email": "dora@crowd-events.io"},
            "to": [{"name": "Alice Rep", "email": "alice@ourco.com"}, *crowd[:10]],
            "cc": crowd,  # ten of them are in To as well: counted once
            "date": (NOW - timedelta(hours=3)).isoformat(),
        },
    )
    assert r.status_code == 200, r.text
    iid = r.json()["interaction_id"]
    assert sd.world.scalar("SELECT recipients_not_kept FROM interaction WHERE id = :i", i=iid) == 700
    assert sd.world.scalar("SELECT COUNT(*) FROM participant WHERE interaction_id = :i", i=iid) == 502


# -- never log ---------------------------------------------------------------------------------------


def test_never_log_says_first_how_many_stored_emails_it_would_delete(tmp_path):
    own = seed(tmp_path, jane_messages=3)
    with TestClient(create_app(own.rt)) as client:
        ask = lambda who, email: client.get("/api/never-log", params={"email": email}, headers=own.h(who))
        assert ask("alice", JANE).json() == {"emails": 3, "meetings": 0}
        assert ask("bob", JANE).json()["emails"] == 1  # "Pricing from Bob", in his mailbox only
        assert ask("bob", SAM).json()["emails"] == 0
        assert ask("carol", JANE).json()["emails"] == 0  # another organisation
        bad = ask("alice", "bob@ourco.com")
        assert bad.status_code == 422 and bad.json()["field"] == "email"
        assert ask("alice", "not an address").status_code == 422
        # Asking changes nothing.
        assert own.world.scalar("SELECT COUNT(*) FROM exclusionrule") == 0
        assert (
            client.post("/api/never-log", json={"email": JANE}, headers=own.h("alice")).json()["removed_interactions"]
            == 3
        )
    own.rt.engine.dispose()


def test_never_log_removes_the_reps_own_mail_and_is_idempotent(client, sd):
    assert _lookup(client, sd, "alice", SAM)["timeline"]["items"]
    r = client.post("/api/never-log", json={"email": SAM}, headers=sd.h("alice"))
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "address" and r.json()["value"] == SAM
    rules = sd.world.sql("SELECT user_id, kind, value FROM exclusionrule")
    assert rules == [(sd.users["alice"], "address", SAM)]
    # Sam's only mail was in alice's mailbox: gone from everyone's timeline (and the contact with it).
    assert client.get("/api/lookup", params={"email": SAM}, headers=sd.h("bob")).status_code == 404
    assert client.post("/api/never-log", json={"email": SAM}, headers=sd.h("alice")).status_code == 201
    assert sd.world.scalar("SELECT COUNT(*) FROM exclusionrule") == 1
    assert client.post("/api/never-log", json={"email": "bob@ourco.com"}, headers=sd.h("alice")).status_code == 422
