"""Every change goes through one use case (app/services), whoever asks: the API, the
console or the CLI. Each use case checks its actor in its own transaction and writes
exactly one audit record; these tests enumerate them all, so a new one without a case
here fails `test_every_use_case_has_a_case`."""

from __future__ import annotations

import inspect
import itertools
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlmodel import Session

from app.services import (
    activity,
    calendars,
    deals,
    duplicates,
    followups,
    m365,
    mailboxes,
    orgs,
    people,
    privacy,
    reconcile,
    rules,
)
from app.services.actor import Actor
from app.services.errors import Conflict, Forbidden, NotFound
from tests import factories
from tests.cli import CliResult, cli_env, run_cli
from tests.world import make_world

SERVICE_MODULES = (
    activity,
    calendars,
    deals,
    duplicates,
    followups,
    m365,
    mailboxes,
    orgs,
    people,
    privacy,
    reconcile,
    rules,
)
_n = itertools.count()


def uniq(prefix: str = "x") -> str:
    return f"{prefix}{next(_n)}"


class Scheduler:
    """Stands in for this process's sync scheduler: sync_now only wakes it."""

    def __init__(self):
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


# Each case prepares its target as the operator (those records are counted before the
# call) and returns the call to make as the actor under test.
def _user(w) -> int:
    return orgs.create_user(w.rt, w.op, f"{uniq('u')}@ourco.com")["id"]


def _mailbox(w) -> int:
    return mailboxes.add_imap(
        w.rt,
        w.op,
        owner="alice@ourco.com",
        host="127.0.0.1",
        port=1,
        security="none",
        username=uniq("imap"),
        password="pw",
    )["id"]


def _tenant(w) -> str:
    return m365.add_tenant(w.rt, w.op, tenant_id=uniq("tenant"), client_id="app", secret="s", check=False)["tenant_id"]


def _contact(w) -> int:
    return people.create_contact(w.rt, w.op, email=f"{uniq('c')}@client.example", name="Client")["id"]


def _deal(w) -> int:
    if not w.scalar("SELECT count(*) FROM pipeline WHERE org_id = :o", o=w.org_id):
        deals.create_pipeline(w.rt, w.op, name="Sales")
    alice = w.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")
    return deals.create_deal(w.rt, w.op, name=uniq("Deal"), owner_id=alice)["id"]


def _followup(w) -> int:
    """A fresh open follow-up of the rep alice@ourco.com."""
    from datetime import timedelta

    from sqlalchemy import insert

    from app.db import write_transaction
    from app.models import FollowUp

    now = datetime.now(timezone.utc) - timedelta(days=5)
    with write_transaction(w.rt.engine) as conn:
        rep = orgs.user_id_by_email(conn, w.org_id, "alice@ourco.com")
        return conn.execute(
            insert(FollowUp.__table__).values(
                org_id=w.org_id,
                thread_key=uniq("thr"),
                kind="owe",
                user_id=rep,
                address="x@client.example",
                since=now,
                due_at=now,
                status="open",
                updated_at=now,
            )
        ).inserted_primary_key[0]


CASES = {
    "followups.snooze": lambda w: (lambda fid: lambda a: followups.snooze(w.rt, a, fid, span="1w"))(_followup(w)),
    "followups.dismiss": lambda w: (lambda fid: lambda a: followups.dismiss(w.rt, a, fid))(_followup(w)),
    "followups.set_key_account": lambda w: (
        lambda cid: lambda a: followups.set_key_account(w.rt, a, kind="contact", target_id=cid)
    )(_contact(w)),
    "followups.set_calendar": lambda w: (
        lambda a: followups.set_calendar(
            w.rt,
            a,
            a.user_id if a.role == "rep" else w.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'"),
            tz="Europe/Paris",
        )
    ),
    "orgs.update_org": lambda w: lambda a: orgs.update_org(w.rt, a, {"backfill_days": 100 + next(_n)}),
    "orgs.create_user": lambda w: lambda a: orgs.create_user(w.rt, a, f"{uniq('n')}@ourco.com"),
    "orgs.update_user": lambda w: (lambda uid: lambda a: orgs.update_user(w.rt, a, uid, name=uniq("Name")))(_user(w)),
    "orgs.add_alias": lambda w: (lambda uid: lambda a: orgs.add_alias(w.rt, a, uid, f"{uniq('al')}@ourco.com"))(
        _user(w)
    ),
    "orgs.remove_alias": lambda w: (lambda aid: lambda a: orgs.remove_alias(w.rt, a, aid))(
        orgs.add_alias(w.rt, w.op, _user(w), f"{uniq('al')}@ourco.com")["id"]
    ),
    "orgs.create_token": lambda w: (lambda uid: lambda a: orgs.create_token(w.rt, a, uid, "t"))(_user(w)),
    "orgs.replace_token": lambda w: (lambda uid: lambda a: orgs.replace_token(w.rt, a, uid, "demo"))(_user(w)),
    "orgs.revoke_token": lambda w: (lambda tid: lambda a: orgs.revoke_token(w.rt, a, tid))(
        orgs.create_token(w.rt, w.op, _user(w), "t")["id"]
    ),
    "orgs.revoke_user_tokens": lambda w: (lambda uid: lambda a: orgs.revoke_user_tokens(w.rt, a, uid))(_user(w)),
    "mailboxes.add_imap": lambda w: (
        lambda a: mailboxes.add_imap(
            w.rt,
            a,
            owner="alice@ourco.com",
            host="127.0.0.1",
            port=1,
            security="none",
            username=uniq("i"),
            password="pw",
        )
    ),
    "mailboxes.connect_imap": lambda w: (
        lambda a: mailboxes.connect_imap(
            w.rt,
            a,
            owner="alice@ourco.com",
            password="pw",
            host="127.0.0.1",
            port=1,
            security="none",
            username=uniq("c"),
            check=False,
        )
    ),
    "mailboxes.pause": lambda w: (lambda mid: lambda a: mailboxes.pause(w.rt, a, mid))(_mailbox(w)),
    "mailboxes.resume": lambda w: (lambda mid: lambda a: mailboxes.resume(w.rt, a, mid))(_mailbox(w)),
    "mailboxes.resync": lambda w: (lambda mid: lambda a: mailboxes.resync(w.rt, a, mid))(_mailbox(w)),
    # a rep may sync their own mailbox (alice's, as the rep actor is alice); an admin any
    "mailboxes.sync_now": lambda w: (lambda mid: lambda a: mailboxes.sync_now(w.rt, a, mid, scheduler=Scheduler()))(
        _mailbox(w)
    ),
    "mailboxes.set_password": lambda w: (lambda mid: lambda a: mailboxes.set_password(w.rt, a, mid, "new-pw"))(
        _mailbox(w)
    ),
    "mailboxes.remove": lambda w: (lambda mid: lambda a: mailboxes.remove(w.rt, a, mid))(_mailbox(w)),
    "calendars.add_caldav": lambda w: (
        lambda a: calendars.add_caldav(
            w.rt,
            a,
            owner="alice@ourco.com",
            url="https://dav.example/",
            username=uniq("cal"),
            password="pw",
            check=False,
        )
    ),
    "m365.add_tenant": lambda w: (
        lambda a: m365.add_tenant(w.rt, a, tenant_id=uniq("t"), client_id="app", secret="s", check=False)
    ),
    "m365.remove_tenant": lambda w: (lambda t: lambda a: m365.remove_tenant(w.rt, a, t))(_tenant(w)),
    "m365.add_tenant_mailboxes": lambda w: (
        lambda t: lambda a: m365.add_tenant_mailboxes(w.rt, a, tenant=t, owner="bob@ourco.com")
    )(_tenant(w)),
    "m365.add_delegated_mailbox": lambda w: (
        lambda u: (
            lambda a: m365.add_delegated_mailbox(
                w.rt, a, owner=u, client_id="app", tenant_id="organizations", username=u, token_cache="{}"
            )
        )
    )(orgs.create_user(w.rt, w.op, f"{uniq('d')}@ourco.com")["email"]),
    "reconcile.repair_summaries": lambda w: lambda a: reconcile.repair_summaries(w.rt, a),
    "rules.add_rule": lambda w: lambda a: rules.add_rule(w.rt, a, value=f"{uniq('r')}.example"),
    "rules.remove_rule": lambda w: (lambda rid: lambda a: rules.remove_rule(w.rt, a, rid))(
        rules.add_rule(w.rt, w.op, value=f"{uniq('r')}.example")["id"]
    ),
    "privacy.export_person": lambda w: lambda a: privacy.export_person(w.rt, a, "someone@client.example"),
    "privacy.erase_person": lambda w: (lambda email: lambda a: privacy.erase_person(w.rt, a, email, confirm=True))(
        people.create_contact(w.rt, w.op, email=f"{uniq('e')}@client.example")["email"]
    ),
    # A rep's own use cases (the sidebar): reps may call them.
    "people.create_contact": lambda w: lambda a: people.create_contact(w.rt, a, email=f"{uniq('p')}@client.example"),
    "people.update_contact": lambda w: (lambda cid: lambda a: people.update_contact(w.rt, a, cid, {"title": "CTO"}))(
        _contact(w)
    ),
    "people.never_log": lambda w: lambda a: people.never_log(w.rt, a, email=f"{uniq('nl')}@client.example"),
    "activity.add_note": lambda w: (lambda cid: lambda a: activity.add_note(w.rt, a, cid, "a note"))(_contact(w)),
    "activity.add_task": lambda w: (lambda cid: lambda a: activity.add_task(w.rt, a, cid, "call back", None))(
        _contact(w)
    ),
    "activity.update_task": lambda w: (lambda tid: lambda a: activity.update_task(w.rt, a, tid, done=True))(
        activity.add_task(w.rt, w.op, _contact(w), "call back", None)["id"]
    ),
    "duplicates.dismiss": lambda w: (lambda a_, b_: lambda a: duplicates.dismiss(w.rt, a, a_, b_))(
        _contact(w), _contact(w)
    ),
    "duplicates.merge": lambda w: (lambda a_, b_: lambda a: duplicates.merge(w.rt, a, a_, b_))(
        _contact(w), _contact(w)
    ),
    "duplicates.unmerge": lambda w: (lambda audit_id: lambda a: duplicates.unmerge(w.rt, a, audit_id))(
        duplicates.merge(w.rt, w.op, _contact(w), _contact(w))["audit_id"]
    ),
    "deals.create_pipeline": lambda w: lambda a: deals.create_pipeline(w.rt, a, name=uniq("Pipeline")),
    "deals.set_visibility": lambda w: lambda a: deals.set_visibility(w.rt, a, "all"),
    # a rep creates deals they own and edits the deals they see
    "deals.create_deal": lambda w: (lambda _: lambda a: deals.create_deal(w.rt, a, name=uniq("Deal")))(_deal(w)),
    "deals.update_deal": lambda w: (lambda did: lambda a: deals.update_deal(w.rt, a, did, {"amount_minor": 500}))(
        _deal(w)
    ),
    "deals.link_thread": lambda w: (lambda did: lambda a: deals.link_thread(w.rt, a, did, thread_key=uniq("t")))(
        _deal(w)
    ),
    "activity.log_email": lambda w: (
        lambda a: activity.log_email(
            w.rt,
            a,
            internet_message_id=f"<{uniq('m')}@client.example>",
            subject="Hello",
            sender={"email": "jane@client.example", "name": "Jane"},
            to=[{"email": "alice@ourco.com"}],
            cc=[],
            date=datetime(2026, 1, 5, tzinfo=timezone.utc),
        )
    ),
}
REP_CASES = {k for k in CASES if k.split(".")[0] in ("people", "activity", "followups")} | {
    "mailboxes.sync_now",
    "deals.create_deal",
    "deals.update_deal",
    "deals.link_thread",
}


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    w = make_world(tmp_path_factory.mktemp("use-cases"))
    w.op = Actor.operator(w.org_id)
    admin = orgs.create_user(w.rt, w.op, "boss@ourco.com", role="admin")["id"]
    gone = orgs.create_user(w.rt, w.op, "gone@ourco.com", role="admin")["id"]
    orgs.update_user(w.rt, w.op, gone, active=False)
    rep = w.scalar("SELECT id FROM app_user WHERE email = 'alice@ourco.com'")
    with Session(w.rt.engine) as s:
        other_org = factories.create_org(s, "Elsewhere", ["elsewhere.example"])
        stranger = factories.add_user(s, other_org, "boss@elsewhere.example", admin=True).id
    w.actors = {
        "admin": Actor(w.org_id, admin, "admin"),
        "rep": Actor(w.org_id, rep, "rep"),
        "deactivated": Actor(w.org_id, gone, "admin"),
        # claims our organisation with a user of another one (a forged or stale actor)
        "foreign": Actor(w.org_id, stranger, "admin"),
    }
    return w


def audit_count(w) -> int:
    return w.scalar("SELECT count(*) FROM auditevent")


def test_every_use_case_has_a_case():
    found = set()
    for module in SERVICE_MODULES:
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            params = list(inspect.signature(fn).parameters)
            if fn.__module__ == module.__name__ and params[:2] == ["rt", "actor"]:
                found.add(f"{module.__name__.rsplit('.', 1)[1]}.{name}")
    assert found == set(CASES), f"missing: {sorted(found - set(CASES))}; stale: {sorted(set(CASES) - found)}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_use_case_writes_exactly_one_audit_record_naming_its_actor(w, case):
    actor = w.actors["rep" if case in REP_CASES else "admin"]
    call = CASES[case](w)
    before = audit_count(w)
    call(actor)
    assert audit_count(w) == before + 1
    assert w.scalar("SELECT actor_id FROM auditevent ORDER BY id DESC LIMIT 1") == actor.user_id


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("who", ["deactivated", "foreign"])
def test_a_use_case_refuses_a_deactivated_or_foreign_actor_and_changes_nothing(w, case, who):
    call = CASES[case](w)
    before = audit_count(w)
    with pytest.raises(Forbidden):
        call(w.actors[who])
    assert audit_count(w) == before


@pytest.mark.parametrize("case", sorted(set(CASES) - REP_CASES))
def test_an_admin_use_case_refuses_a_rep(w, case):
    call = CASES[case](w)
    with pytest.raises(Forbidden, match="admin"):
        call(w.actors["rep"])


def test_creating_an_organisation_is_audited(w):
    org = orgs.create_org(w.rt, "Fresh Co", ["fresh.example"], another=True)
    assert w.scalar("SELECT count(*) FROM auditevent WHERE org_id = :o AND action = 'org.create'", o=org["id"]) == 1


def test_issuing_a_token_to_a_deactivated_user_is_refused(w):
    gone = w.actors["deactivated"].user_id
    with pytest.raises(Conflict, match="deactivated"):
        orgs.create_token(w.rt, w.op, gone, "again")


# -- the CLI goes through the same use cases (these all disagreed with the API before) ----------


def _cli(data_dir: Path, *args: str, env: dict | None = None) -> CliResult:
    return run_cli(args, cli_env(data_dir, **(env or {})))


def test_the_cli_audits_refuses_alias_collisions_and_deactivated_users_like_the_api(tmp_path):
    assert _cli(tmp_path, "org", "init", "--name", "OurCo", "--domain", "ourco.com").returncode == 0
    assert _cli(tmp_path, "user", "add", "alice@ourco.com", "--admin", "--alias", "al@ourco.com").returncode == 0
    taken = _cli(tmp_path, "user", "add", "bob@ourco.com", "--alias", "al@ourco.com")
    assert taken.returncode == 5 and "already a user or an alias" in taken.stderr, taken.stderr
    bad = _cli(tmp_path, "user", "add", "not an address")
    assert bad.returncode == 2 and "not a valid email address" in bad.stderr
    assert _cli(tmp_path, "user", "add", "bob@ourco.com").returncode == 0
    assert _cli(tmp_path, "user", "deactivate", "bob@ourco.com").returncode == 0
    refused = _cli(tmp_path, "user", "token", "bob@ourco.com")
    assert refused.returncode == 5 and "deactivated" in refused.stderr and "tl_" not in refused.stdout
    missing = _cli(tmp_path, "user", "token", "nobody@ourco.com")
    assert missing.returncode == 3 and "no user nobody@ourco.com" in missing.stderr
    token = _cli(tmp_path, "user", "token", "alice@ourco.com")
    assert token.returncode == 0 and token.stdout.strip().startswith("tl_")
    added = _cli(
        tmp_path,
        "mailbox",
        "add-imap",
        "--owner",
        "alice@ourco.com",
        "--host",
        "127.0.0.1",
        "--port",
        "1",
        "--security",
        "none",
        "--username",
        "alice",
        "--no-check",
        env={"THREADLINE_IMAP_PASSWORD": "first"},
    )
    assert added.returncode == 0, added.stderr
    assert _cli(tmp_path, "mailbox", "set-password", "1", env={"THREADLINE_IMAP_PASSWORD": "second"}).returncode == 0
    tenant = _cli(
        tmp_path,
        "mailbox",
        "add-m365-tenant",
        "--tenant-id",
        "ourco.onmicrosoft.com",
        "--client-id",
        "app",
        "--no-check",
        env={"THREADLINE_M365_CLIENT_SECRET": "s3cret"},
    )
    assert tenant.returncode == 0, tenant.stderr
    events = json.loads(_cli(tmp_path, "audit", "--json", "--limit", "50").stdout)
    actions = [e["action"] for e in reversed(events)]
    assert actions == [
        "org.create",
        "user.add",
        "user.add",
        "user.deactivate",
        "token.issue",
        "mailbox.add",
        "mailbox.set_password",
        "m365.tenant_add",
    ], actions
    assert all(e["actor"] == "system" for e in events)
    assert "s3cret" not in json.dumps(events) and "second" not in json.dumps(events)


def test_a_rep_may_sync_only_their_own_mailbox_and_never_a_paused_one(w):
    theirs = mailboxes.add_imap(
        w.rt,
        w.op,
        owner="bob@ourco.com",
        host="127.0.0.1",
        port=1,
        security="none",
        username=uniq("bob"),
        password="pw",
    )["id"]
    with pytest.raises(NotFound):
        mailboxes.sync_now(w.rt, w.actors["rep"], theirs, scheduler=Scheduler())
    mine = _mailbox(w)
    mailboxes.pause(w.rt, w.op, mine)
    with pytest.raises(Conflict, match="paused"):
        mailboxes.sync_now(w.rt, w.actors["rep"], mine, scheduler=Scheduler())
    mailboxes.resume(w.rt, w.op, mine)
    assert mailboxes.sync_now(w.rt, w.actors["rep"], mine, scheduler=Scheduler()) == "queued"
