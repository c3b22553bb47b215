"""The HTTP API, end to end: a real IMAP sync (Dovecot) fills the timeline of a
SQLite database, then every route is exercised through FastAPI's TestClient.

One world is built per module (two organisations, four mailboxes) because the
sync is the expensive part; every test only reads it (or writes things no
other test looks at).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.api import create_app
from app.db import session
from app.models import Interaction, Mailbox, User
from app.runtime import open_runtime
from app.services import deals, mailboxes as mailbox_service, orgs
from app.services.actor import Actor
from app.settings import load_settings
from sync.engine import sync_mailbox
from tests import factories
from tests.app._mail import new_imap_user, remove_imap_users, rfc5322
from tests.conftest import ImapUser
from tests.world import runtime_env

XSS_SUBJECT = 'Quote <img src=x onerror=alert(1)> & "friends"'
XSS_BODY = "<script>alert('x')</script> see the attached quote\r\n"
ORG2_SECRET_SUBJECT = "Org2 only: hello from Jane"

# Expected facts about the first organisation's data.
JANE = "jane@sub.acme.co.uk"
MARK = "mark@acme.co.uk"
PAT = "pat.smith@gmail.com"
JANE_KEYS = ["m13@acme", "m1@acme", "m2@ourco", "m3@acme", "m4@ourco", "m5@acme", "m6@acme", "m12@ourco"]
ACME_KEYS = JANE_KEYS + ["m7@acme"]
ORG1_ONLY_STRINGS = [
    "Intro call",
    "Pricing",
    "Contract",
    "Hello from Mark",
    "Personal note",
    "Proposal for Acme",
    "alice@ourco.com",
    "bob@ourco.com",
    PAT,
    MARK,
]


@dataclass
class World:
    rt: object
    client: TestClient
    base: datetime
    tokens: dict[str, str]
    user_ids: dict[str, int]
    mailbox_ids: dict[str, int]
    imap: dict[str, ImapUser]
    org1_id: int
    interactions: dict[str, tuple[int, datetime]] = field(default_factory=dict)  # org1 message key -> (id, at)

    def t(self, n: float) -> datetime:
        return self.base + timedelta(days=n)

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, who: str, url: str, **kw):
        return self.client.get(url, headers=self.h(who), **kw)

    def expected_order(self, keys: list[str]) -> list[int]:
        """Interaction ids of these messages, newest first, ties broken by id (newest id first)."""
        pairs = sorted((self.interactions[k] for k in keys), key=lambda p: (p[1], p[0]), reverse=True)
        return [iid for iid, _ in pairs]


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def world(dovecot, tmp_path_factory):
    created: list[str] = []

    def imap_user() -> ImapUser:
        return new_imap_user(dovecot, created)

    rt = open_runtime(load_settings(runtime_env(tmp_path_factory.mktemp("api-data"))))
    base = (datetime.now(timezone.utc) - timedelta(days=30)).replace(hour=12, minute=0, second=0, microsecond=0)

    def t(n: float) -> datetime:
        return base + timedelta(days=n)

    imap = {"alice": imap_user(), "bob": imap_user(), "carol": imap_user(), "dave": imap_user()}
    for u in imap.values():
        u.create_folder("Sent")

    jane = '"Jane Doe" <jane@sub.acme.co.uk>'
    a, b = imap["alice"], imap["bob"]
    # -- alice's mailbox ------------------------------------------------------------
    a.deliver(
        rfc5322(
            frm=jane,
            to="Alice Adams <alice@ourco.com>",
            subject="Intro call",
            date=t(1),
            mid="m1@acme",
            body="Hi Alice,\r\nshall we talk on Monday?\r\n",
        ),
        internaldate=t(1),
    )
    a.deliver(
        rfc5322(
            frm="Alice Adams <alice@ourco.com>",
            to=jane,
            subject="Re: Intro call",
            date=t(2),
            mid="m2@ourco",
            in_reply_to="m1@acme",
        ),
        folder="Sent",
        internaldate=t(2),
    )
    a.deliver(
        rfc5322(
            frm=jane,
            to="alice@ourco.com",
            cc="Bob Brown <bob@ourco.com>",
            subject=XSS_SUBJECT,
            date=t(3),
            mid="m3@acme",
            body=XSS_BODY,
        ),
        internaldate=t(3),
    )
    contract = rfc5322(frm=jane, to="alice@ourco.com, bob@ourco.com", subject="Contract", date=t(5), mid="m5@acme")
    a.deliver(contract, internaldate=t(5))
    # Same second as m5, sent to alice's alias: a tie the cursor must break by id.
    a.deliver(
        rfc5322(
            frm=jane, to="alice.adams@ourco.com", cc="alice@ourco.com", subject="Same second", date=t(5), mid="m6@acme"
        ),
        internaldate=t(5),
    )
    # Only alice's alias is named: still alice's one copy, one interaction.
    a.deliver(
        rfc5322(frm=jane, to="Alice <alice.adams@ourco.com>", subject="Early alias note", date=t(0.5), mid="m13@acme"),
        internaldate=t(0.5),
    )
    a.deliver(
        rfc5322(
            frm='"Mark Roe" <mark@acme.co.uk>',
            to="alice@ourco.com",
            subject="Hello from Mark",
            date=t(6),
            mid="m7@acme",
        ),
        internaldate=t(6),
    )
    a.deliver(
        rfc5322(
            frm='"Pat Smith" <pat.smith@gmail.com>',
            to="alice@ourco.com",
            subject="Personal note",
            date=t(7),
            mid="m8@gmail",
        ),
        internaldate=t(7),
    )
    a.deliver(
        rfc5322(
            frm='"Acme News" <noreply@acme.co.uk>',
            to="alice@ourco.com",
            subject="Newsletter",
            date=t(7),
            mid="m9@acme",
            headers=("List-Unsubscribe: <mailto:unsub@acme.co.uk>",),
        ),
        internaldate=t(7),
    )
    a.deliver(
        rfc5322(frm="bob@ourco.com", to="alice@ourco.com", subject="Lunch?", date=t(7), mid="m10@ourco"),
        internaldate=t(7),
    )
    a.deliver(
        rfc5322(frm=None, to="alice@ourco.com", subject="No sender at all", date=t(7), mid="m11@x"), internaldate=t(7)
    )
    a.deliver(
        rfc5322(
            frm="alice@ourco.com",
            to=jane,
            cc='"Mark Roe" <mark@acme.co.uk>',
            subject="Proposal for Acme",
            date=t(8),
            mid="m12@ourco",
        ),
        folder="Sent",
        internaldate=t(8),
    )
    # -- bob's mailbox --------------------------------------------------------------
    b.deliver(
        rfc5322(frm="Bob Brown <bob@ourco.com>", to=jane, subject="Pricing", date=t(4), mid="m4@ourco"),
        folder="Sent",
        internaldate=t(4),
    )
    b.deliver(contract, internaldate=t(5))  # the same message in a second mailbox: one interaction
    # -- the other organisation (carol, dave) ----------------------------------------
    imap["carol"].deliver(
        rfc5322(
            frm='"Jane D." <jane@sub.acme.co.uk>',
            to="carol@otherco.com",
            subject=ORG2_SECRET_SUBJECT,
            date=t(2),
            mid="o1@acme",
        ),
        internaldate=t(2),
    )
    imap["carol"].deliver(
        rfc5322(frm='"Zed Zulu" <zed@zeta.io>', to="carol@otherco.com", subject="Zed hello", date=t(3), mid="o2@zeta"),
        internaldate=t(3),
    )
    imap["dave"].deliver(
        rfc5322(frm='"Zed Zulu" <zed@zeta.io>', to="dave@otherco.com", subject="Zed to Dave", date=t(4), mid="o3@zeta"),
        internaldate=t(4),
    )

    tokens, user_ids, mailbox_ids = {}, {}, {}
    with session(rt.engine) as s:
        org1 = factories.create_org(s, "OurCo", ["ourco.com"])
        org2 = factories.create_org(s, "OtherCo", ["otherco.com"])
        people = {
            "alice": (org1, "alice@ourco.com", "Alice Adams", False, ["alice.adams@ourco.com"]),
            "bob": (org1, "bob@ourco.com", "Bob Brown", False, []),
            "boss": (org1, "boss@ourco.com", "Boss", True, []),
            "revoked": (org1, "gone@ourco.com", "Gone", True, []),
            "inactive": (org1, "left@ourco.com", "Left", True, []),
            "carol": (org2, "carol@otherco.com", "Carol", False, []),
            "dave": (org2, "dave@otherco.com", "Dave", True, []),
        }
        for key, (org, email, name, admin, aliases) in people.items():
            user = factories.add_user(s, org, email, name=name, admin=admin, aliases=aliases)
            user_ids[key] = user.id
            tokens[key] = factories.issue_token(s, user, "test")
        factories.revoke_tokens(s, s.get(User, user_ids["revoked"]))
        left = s.get(User, user_ids["inactive"])
        left.active = False
        s.add(left)
        s.commit()
        org1_id, org2_id = org1.id, org2.id
    for key in ("alice", "bob", "carol", "dave"):
        u = imap[key]
        actor = Actor.operator(org1_id if key in ("alice", "bob") else org2_id)
        mb = mailbox_service.add_imap(
            rt,
            actor,
            owner=people[key][1],
            host=u.host,
            port=u.port,
            security="none",
            username=u.username,
            password=u.password,
        )
        mailbox_ids[key] = mb["id"]

    for key in ("alice", "bob", "carol", "dave"):
        report = sync_mailbox(rt.engine, rt.box, mailbox_ids[key])
        assert report is not None and report.ok, report

    w = World(rt, TestClient(create_app(rt)), base, tokens, user_ids, mailbox_ids, imap, org1_id)
    with rt.engine.connect() as conn:
        I = Interaction.__table__
        for key, iid, at in conn.execute(select(I.c.message_key, I.c.id, I.c.occurred_at).where(I.c.org_id == org1_id)):
            w.interactions[key] = (iid, at if at.tzinfo else at.replace(tzinfo=timezone.utc))
    yield w
    w.client.close()
    rt.engine.dispose()
    remove_imap_users(dovecot, created)


def _walk(w: World, who: str, url: str, limit: int, max_pages: int = 50) -> tuple[list[int], list[dict]]:
    ids, pages, cursor = [], [], None
    for _ in range(max_pages):
        params = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = w.get(who, url, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(page)
        assert len(page["items"]) <= limit
        ids.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids, pages
        assert page["items"], "a page with a next cursor must not be empty"
    pytest.fail(f"pagination of {url} did not terminate after {max_pages} pages")


def _jane(w: World, who: str = "alice") -> dict:
    r = w.get(who, "/api/lookup", params={"email": JANE})
    assert r.status_code == 200, r.text
    return r.json()


# -- sanity of the world -----------------------------------------------------------


def test_sync_built_the_expected_interactions(world):
    # m9 (bulk), m10 (internal) and m11 (no From) are not interactions; m5 is stored once.
    assert sorted(world.interactions) == sorted(ACME_KEYS + ["m8@gmail"])


# -- lookup --------------------------------------------------------------------------


def test_lookup_contact_card(world):
    data = world.get("alice", "/api/lookup", params={"email": "  Jane@SUB.Acme.co.uk "}).json()
    card = data["contact"]
    assert card["name"] == "Jane Doe"
    assert card["email"] == JANE
    assert card["emails"] == [JANE]
    # The company is keyed by the registrable domain, not the host name.
    assert card["company"]["domain"] == "acme.co.uk"
    assert card["company"]["name"] == "Acme"
    assert world.get("alice", f"/api/contacts/{card['id']}").json() == card


def test_lookup_summary(world):
    summary = _jane(world)["summary"]
    assert summary["emails_in"] == 5  # m13, m1, m3, m5, m6
    assert summary["emails_out"] == 3  # m2, m4 (bob), m12
    assert summary["meetings"] == 0
    assert _at(summary["first_interaction_at"]) == world.t(0.5)
    assert _at(summary["last_interaction_at"]) == world.t(8)
    colleagues = [(c["email"], c["name"], c["interactions"]) for c in summary["colleagues"]]
    # Most recent first: alice wrote m12 on day 8, bob's last was m5 on day 5. A colleague
    # named twice on one message (m6: alias in To, main address in Cc) knows them from ONE interaction.
    assert colleagues == [("alice@ourco.com", "Alice Adams", 7), ("bob@ourco.com", "Bob Brown", 3)]
    assert _at(summary["colleagues"][0]["last_interaction_at"]) == world.t(8)
    assert _at(summary["colleagues"][1]["last_interaction_at"]) == world.t(5)


def test_lookup_timeline_is_newest_first(world):
    timeline = _jane(world)["timeline"]
    assert timeline["next_cursor"] is None
    items = timeline["items"]
    assert [i["id"] for i in items] == world.expected_order(JANE_KEYS)
    stamps = [_at(i["occurred_at"]) for i in items]
    assert stamps == sorted(stamps, reverse=True)
    by_subject = {i["subject"]: i for i in items}
    intro = by_subject["Intro call"]
    assert intro["direction"] == "in"
    assert intro["sender"] == {"address": JANE, "name": "Jane Doe"}
    assert intro["snippet"] == "Hi Alice, shall we talk on Monday?"
    assert [c["address"] for c in intro["colleagues"]] == ["alice@ourco.com"]
    assert by_subject["Re: Intro call"]["direction"] == "out"
    assert by_subject["Re: Intro call"]["thread_key"] == intro["thread_key"]
    pricing = by_subject["Pricing"]
    assert pricing["direction"] == "out"
    assert pricing["sender"]["address"] == "bob@ourco.com"
    assert {c["id"] for c in by_subject[XSS_SUBJECT]["colleagues"]} == {world.user_ids["alice"], world.user_ids["bob"]}
    proposal = by_subject["Proposal for Acme"]
    assert {p["address"] for p in proposal["participants"]} == {JANE, MARK}


def test_lookup_limit_pages_the_embedded_timeline(world):
    data = world.get("alice", "/api/lookup", params={"email": JANE, "limit": 3}).json()
    assert [i["id"] for i in data["timeline"]["items"]] == world.expected_order(JANE_KEYS)[:3]
    assert data["timeline"]["next_cursor"]


@pytest.mark.parametrize(
    "email", ["nobody@nowhere.example.com", "noreply@acme.co.uk", "alice@ourco.com", "not an address"]
)
def test_lookup_unknown_address_is_404(world, email):
    # noreply@ only sent bulk mail; alice is a colleague, not a contact.
    assert world.get("alice", "/api/lookup", params={"email": email}).status_code == 404


def test_free_mail_contact_has_no_company(world):
    r = world.get("alice", "/api/lookup", params={"email": PAT})
    assert r.status_code == 200
    data = r.json()
    assert data["contact"]["name"] == "Pat Smith"
    assert data["contact"]["company"] is None
    assert data["summary"]["emails_in"] == 1 and data["summary"]["emails_out"] == 0
    assert [i["subject"] for i in data["timeline"]["items"]] == ["Personal note"]


# -- pagination ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 8, 9])
def test_contact_timeline_cursor_walks_everything_once(world, limit):
    contact_id = _jane(world)["contact"]["id"]
    ids, pages = _walk(world, "alice", f"/api/contacts/{contact_id}/timeline", limit)
    assert len(ids) == len(set(ids)), "an interaction was returned twice"
    assert ids == world.expected_order(JANE_KEYS)
    assert len(pages) == -(-len(JANE_KEYS) // limit)  # no empty trailing page
    assert all(len(p["items"]) == limit for p in pages[:-1])


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_company_timeline_cursor_walks_everything_once(world, limit):
    company_id = _jane(world)["contact"]["company"]["id"]
    ids, pages = _walk(world, "alice", f"/api/companies/{company_id}/timeline", limit)
    # m12 has two Acme people on it: it must still come once.
    assert len(ids) == len(set(ids)), "an interaction was returned twice"
    assert ids == world.expected_order(ACME_KEYS)


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "%%%",
        base64.urlsafe_b64encode(b"no separator").decode(),
        base64.urlsafe_b64encode(b"yesterday|12").decode(),
        base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|twelve").decode(),
        base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|1|2").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe|1").decode(),
    ],
)
def test_bad_cursor_is_400(world, cursor):
    card = _jane(world)["contact"]
    for url in (f"/api/contacts/{card['id']}/timeline", f"/api/companies/{card['company']['id']}/timeline"):
        r = world.get("alice", url, params={"cursor": cursor})
        assert r.status_code == 400, (url, r.status_code, r.text)


def test_cursor_without_timezone_is_400_not_500(world):
    """A cursor is client input: a well-formed one with a naive timestamp must be rejected, not crash."""
    card = _jane(world)["contact"]
    cursor = base64.urlsafe_b64encode(b"2999-01-01T00:00:00|999999").decode().rstrip("=")
    client = TestClient(create_app(world.rt), raise_server_exceptions=False)
    r = client.get(f"/api/contacts/{card['id']}/timeline", params={"cursor": cursor}, headers=world.h("alice"))
    assert r.status_code in (200, 400), (r.status_code, r.text)
    if r.status_code == 200:  # accepted as UTC: then it must page like any cursor
        assert [i["id"] for i in r.json()["items"]] == world.expected_order(JANE_KEYS)


def test_timeline_limit_is_bounded(world):
    contact_id = _jane(world)["contact"]["id"]
    for limit in (0, 101, -1):
        r = world.get("alice", f"/api/contacts/{contact_id}/timeline", params={"limit": limit})
        assert r.status_code == 422


# -- search and companies ------------------------------------------------------------------


def _search(w: World, q: str, who: str = "alice") -> list[dict]:
    r = w.get(who, "/api/contacts", params={"q": q})
    assert r.status_code == 200, r.text
    return r.json()


def test_search_by_name_prefix(world):
    hits = _search(world, "ja")
    assert [h["email"] for h in hits] == [JANE]
    assert hits[0]["name"] == "Jane Doe" and hits[0]["company"] == "Acme"
    assert [h["email"] for h in _search(world, "MARK R")] == [MARK]
    assert [h["email"] for h in _search(world, "pat")] == [PAT]
    assert _search(world, "pat")[0]["company"] is None


def test_search_by_email_prefix(world):
    assert [h["email"] for h in _search(world, "jane@sub")] == [JANE]
    assert [h["email"] for h in _search(world, "PAT.SMITH@GM")] == [PAT]


def test_search_is_prefix_only_and_escapes_wildcards(world):
    assert _search(world, "doe") == []  # the surname is not a prefix of the name
    assert _search(world, "acme.co.uk") == []  # nor is the domain a prefix of the address
    assert _search(world, "%") == []
    assert _search(world, "_") == []
    assert _search(world, "j%") == []
    assert world.get("alice", "/api/contacts", params={"q": ""}).status_code == 422


def test_company_detail_and_timeline(world):
    company_id = _jane(world)["contact"]["company"]["id"]
    r = world.get("alice", f"/api/companies/{company_id}")
    assert r.status_code == 200
    data = r.json()
    assert (data["id"], data["name"], data["domain"]) == (company_id, "Acme", "acme.co.uk")
    assert sorted(c["email"] for c in data["contacts"]) == [JANE, MARK]
    page = world.get("alice", f"/api/companies/{company_id}/timeline", params={"limit": 100}).json()
    assert [i["id"] for i in page["items"]] == world.expected_order(ACME_KEYS)
    assert page["next_cursor"] is None


def test_unknown_ids_are_404(world):
    for url in (
        "/api/contacts/987654",
        "/api/contacts/987654/timeline",
        "/api/companies/987654",
        "/api/companies/987654/timeline",
        "/api/mailboxes/987654",
    ):
        assert world.get("boss", url).status_code == 404, url


# -- mailboxes -------------------------------------------------------------------------------


def test_mailbox_status_fields(world):
    rows = world.get("alice", "/api/mailboxes").json()
    assert [r["id"] for r in rows] == [world.mailbox_ids["alice"]]
    mb = rows[0]
    assert mb["owner"] == "alice@ourco.com"
    assert mb["kind"] == "imap"
    assert mb["server"] == f"{world.imap['alice'].host}:{world.imap['alice'].port}"
    assert mb["username"] == world.imap["alice"].username
    assert mb["status"] == "active"
    assert mb["stage"] == "idle"
    assert mb["healthy"] is True
    assert mb["last_error"] is None
    assert mb["last_success_at"] is not None
    assert mb["messages_imported"] == 9  # INBOX m1 m3 m5 m6 m7 m8 m13, Sent m2 m12
    assert mb["skipped"] == {"bulk or automated": 1, "internal": 1, "unreadable": 1}


def test_mailbox_never_exposes_the_password(world):
    for who, mid in (("alice", world.mailbox_ids["alice"]), ("boss", world.mailbox_ids["bob"])):
        for url in ("/api/mailboxes", f"/api/mailboxes/{mid}"):
            text = world.get(who, url).text
            assert world.imap["alice"].password not in text
            assert world.imap["bob"].password not in text
            assert "secret" not in text


def test_mailbox_detail_has_folders_with_cursors(world):
    r = world.get("alice", f"/api/mailboxes/{world.mailbox_ids['alice']}")
    assert r.status_code == 200
    data = r.json()
    folders = {f["name"]: f for f in data["folders"]}
    assert set(folders) == {"INBOX", "Sent"}
    assert folders["INBOX"]["role"] == "inbox" and folders["Sent"]["role"] == "sent"
    assert folders["INBOX"]["messages"] == 7 and folders["Sent"]["messages"] == 2
    for f in folders.values():
        assert f["selected"] is True and f["status"] == "ok" and f["backfill_done"] is True
        assert isinstance(f["cursor"]["uidvalidity"], int)
        assert f["cursor"]["backfill_done"] is True
        assert f["last_synced_at"] is not None
    assert folders["INBOX"]["cursor"]["top_uid"] == 10  # ten messages delivered to INBOX
    assert [(u["folder"], u["reason"]) for u in data["unreadable"]] == [("INBOX", "missing From header")]


def test_rep_sees_only_own_mailboxes_admin_sees_all(world):
    ids = world.mailbox_ids
    assert [m["id"] for m in world.get("bob", "/api/mailboxes").json()] == [ids["bob"]]
    assert [m["id"] for m in world.get("boss", "/api/mailboxes").json()] == [ids["alice"], ids["bob"]]
    assert world.get("alice", f"/api/mailboxes/{ids['bob']}").status_code == 404
    assert world.get("bob", f"/api/mailboxes/{ids['alice']}").status_code == 404
    assert world.get("boss", f"/api/mailboxes/{ids['bob']}").status_code == 200
    bob = world.get("boss", f"/api/mailboxes/{ids['bob']}").json()
    assert bob["owner"] == "bob@ourco.com" and bob["messages_imported"] == 2
    # a rep cannot trigger a sync of a colleague's mailbox either
    assert world.client.post(f"/api/mailboxes/{ids['bob']}/sync", headers=world.h("alice")).status_code == 404


def test_sync_now_queues_own_mailbox(world):
    mid = world.mailbox_ids["bob"]
    r = world.client.post(f"/api/mailboxes/{mid}/sync", headers=world.h("bob"))
    assert r.status_code == 202 and r.json() == {"queued": True}
    with session(world.rt.engine) as s:
        due = s.get(Mailbox, mid).next_sync_at
    assert due is not None and due <= datetime.now(timezone.utc)


# -- auth and tenancy ---------------------------------------------------------------------------


def _api_routes(w: World) -> list[tuple[str, str]]:
    # From the OpenAPI document, so routes added later are covered too.
    routes = []
    for path, ops in w.client.get("/openapi.json").json()["paths"].items():
        if path.startswith("/api"):
            routes.extend((method.upper(), path) for method in ops)
    assert len(routes) >= 8
    return routes


def _deal_id(w: World, jane_id: int) -> int:
    """A deal of the first organisation with Jane on it (its pipeline made once)."""
    op = Actor.operator(w.org1_id)
    if not w.get("alice", "/api/pipelines").json():
        deals.create_pipeline(w.rt, op, name="Sales")
    return deals.create_deal(w.rt, op, name="Org1 deal", owner_id=w.user_ids["alice"], contact_ids=[jane_id])["id"]


def _segment_id(w: World) -> int:
    """A shared segment of the first organisation: every contact, so Jane would show if it leaked."""
    r = w.client.post("/api/segments", json={"name": "Org1 everyone", "shared": True}, headers=w.h("alice"))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _fill(w: World, path: str) -> str:
    """A concrete URL pointing at the FIRST organisation's objects."""
    jane = w.get("alice", "/api/lookup", params={"email": JANE}).json()["contact"]
    return (
        path.replace("{contact_id}", str(jane["id"]))
        .replace("{company_id}", str(jane["company"]["id"]))
        .replace("{mailbox_id}", str(w.mailbox_ids["alice"]))
        .replace("{deal_id}", str(_deal_id(w, jane["id"])) if "{deal_id}" in path else "")
        .replace("{segment_id}", str(_segment_id(w)) if "{segment_id}" in path else "")
    )


QUERY = {"email": PAT, "q": "pat"}
REPORTS = ("activity", "response-times", "new-contacts", "cold-accounts", "pipeline")


def test_every_api_route_needs_a_token(world):
    for method, path in _api_routes(world):
        url = _fill(world, path)
        for headers in (
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer tl_not-a-real-token"},
            {"Authorization": f"Basic {world.tokens['alice']}"},
            world.h("revoked"),
            world.h("inactive"),
        ):
            r = world.client.request(method, url, params=QUERY, headers=headers)
            assert r.status_code == 401, (method, url, headers, r.status_code)
            assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
            assert "Jane" not in r.text and "Pat" not in r.text


def test_revoking_a_token_takes_effect_immediately(world):
    with session(world.rt.engine) as s:
        user = factories.add_user(s, orgs.the_org(s, world.org1_id), "temp@ourco.com", admin=True)
        token = factories.issue_token(s, user)
        h = {"Authorization": f"Bearer {token}"}
        assert world.client.get("/api/mailboxes", headers=h).status_code == 200
        assert factories.revoke_tokens(s, user) == 1
    assert world.client.get("/api/mailboxes", headers=h).status_code == 401
    assert world.client.get("/api/lookup", params={"email": JANE}, headers=h).status_code == 401


@pytest.mark.parametrize("who", ["carol", "dave"])
def test_other_organisation_sees_nothing_of_ours_on_any_route(world, who):
    # Reads here, against a timeline built by a real sync; every route, writes
    # included, is in tests/app/test_access_matrix.py.
    routes = [r for r in _api_routes(world) if r[0] == "GET" and not r[1].startswith("/api/admin")]
    # Each report is its own query: every one of them is asked for.
    routes = [(m, p.replace("{report}", name)) for m, p in routes for name in (REPORTS if "{report}" in p else [""])]
    for method, path in routes:
        url = _fill(world, path)
        r = world.client.request(method, url, params=QUERY, headers=world.h(who))
        # 403: a route for admins or managers, and this caller is neither (the access matrix checks who may).
        assert r.status_code in (200, 403, 404), (method, url, r.status_code, r.text)
        if r.status_code == 200:
            for s in ORG1_ONLY_STRINGS + [world.imap["alice"].username, world.imap["bob"].username]:
                assert s not in r.text, (method, url, s)
        if "{" in path:
            assert r.status_code == 404, (method, url, r.status_code)


@pytest.mark.parametrize("who", ["carol", "dave"])
def test_other_organisation_has_its_own_jane(world, who):
    ours = _jane(world)
    r = world.get(who, "/api/lookup", params={"email": JANE})
    assert r.status_code == 200
    theirs = r.json()
    assert theirs["contact"]["id"] != ours["contact"]["id"]
    assert theirs["contact"]["name"] == "Jane D."
    assert theirs["contact"]["company"]["id"] != ours["contact"]["company"]["id"]
    assert theirs["summary"]["emails_in"] == 1 and theirs["summary"]["emails_out"] == 0
    assert [c["email"] for c in theirs["summary"]["colleagues"]] == ["carol@otherco.com"]
    assert [i["subject"] for i in theirs["timeline"]["items"]] == [ORG2_SECRET_SUBJECT]
    company = world.get(who, f"/api/companies/{theirs['contact']['company']['id']}").json()
    assert [c["email"] for c in company["contacts"]] == [JANE]  # not our Mark
    ctl = world.get(who, f"/api/companies/{theirs['contact']['company']['id']}/timeline").json()
    assert [i["subject"] for i in ctl["items"]] == [ORG2_SECRET_SUBJECT]
    assert [h["id"] for h in _search(world, "ja", who)] == [theirs["contact"]["id"]]
    assert _search(world, "mark", who) == [] and _search(world, "pat", who) == []
    assert world.get(who, "/api/lookup", params={"email": MARK}).status_code == 404
    # and the other way round
    assert _search(world, "zed", "alice") == [] and _search(world, "zed", "boss") == []
    assert world.get("boss", "/api/lookup", params={"email": "zed@zeta.io"}).status_code == 404
    assert ORG2_SECRET_SUBJECT not in world.get("boss", "/api/lookup", params={"email": JANE}).text
    ctl_ours = world.get("boss", f"/api/contacts/{theirs['contact']['id']}/timeline")
    assert ctl_ours.status_code == 404


def test_other_organisation_mailboxes(world):
    ids = world.mailbox_ids
    assert [m["id"] for m in world.get("carol", "/api/mailboxes").json()] == [ids["carol"]]
    assert [m["id"] for m in world.get("dave", "/api/mailboxes").json()] == [ids["carol"], ids["dave"]]
    assert [m["id"] for m in world.get("boss", "/api/mailboxes").json()] == [ids["alice"], ids["bob"]]
    for mid in (ids["alice"], ids["bob"]):
        assert world.get("dave", f"/api/mailboxes/{mid}").status_code == 404
        assert world.client.post(f"/api/mailboxes/{mid}/sync", headers=world.h("dave")).status_code == 404
    assert world.get("boss", f"/api/mailboxes/{ids['dave']}").status_code == 404
    with session(world.rt.engine) as s:
        assert s.get(Mailbox, ids["alice"]).next_sync_at > datetime.now(timezone.utc)  # not queued by dave


# -- values from email are data -------------------------------------------------------------------


def test_values_from_email_come_back_verbatim(world):
    r = world.get("alice", "/api/lookup", params={"email": JANE})
    assert r.headers["content-type"].startswith("application/json")
    items = {i["subject"]: i for i in r.json()["timeline"]["items"]}
    assert XSS_SUBJECT in items, list(items)
    assert items[XSS_SUBJECT]["snippet"] == "<script>alert('x')</script> see the attached quote"
    iid = items[XSS_SUBJECT]["id"]
    contact_id = r.json()["contact"]["id"]
    ids, pages = _walk(world, "alice", f"/api/contacts/{contact_id}/timeline", 100)
    assert [i["subject"] for p in pages for i in p["items"] if i["id"] == iid] == [XSS_SUBJECT]


# -- ops --------------------------------------------------------------------------------------------


def test_healthz_and_docs(world):
    r = world.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}
    docs = world.client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "swagger" in docs.text.lower()
    spec = world.client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for p in (
        "/api/lookup",
        "/api/contacts",
        "/api/contacts/{contact_id}/timeline",
        "/api/companies/{company_id}",
        "/api/mailboxes",
        "/api/mailboxes/{mailbox_id}",
    ):
        assert p in paths, p
    assert any(s.get("scheme") == "bearer" for s in spec.json()["components"]["securitySchemes"].values())
