"""`threadline serve --demo`: a generated company, synced through the real engine.

The demo lives in its own data folder (app/settings.py: demo_settings), never in the
database a real organisation is set up in."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select as select_
from sqlmodel import select

from app.db import read_only, session
from app.models import Company, Mailbox, Organisation, User
from app.runtime import Runtime
from app.services import followups, orgs, people
from app.services.actor import Actor
from app.services.demo_deals import seed_deals
from sync.engine import sync_mailbox

DEMO_SEED = 7
DEMO_MESSAGES = 4000
TOKEN_NAME = "demo"


def seed_demo(rt: Runtime, console=None, *, now: datetime | None = None) -> dict:
    """Create (once) and sync the demo company. Returns what the demo prints: the organisation,
    its admin, a fresh admin token (earlier demo tokens are revoked) and a customer worth
    looking up. `now`: when the demo's mail is generated up to (the tests pin the hour)."""
    from demodata import generate

    corpus, _ = generate(seed=DEMO_SEED, n_messages=DEMO_MESSAGES)
    with session(rt.engine) as s:
        org = s.exec(select(Organisation).where(Organisation.name == corpus.org_name)).first()
        org_id = org.id if org is not None else None
    if org_id is None:
        # The demo company is set up through the same use cases as a real one (audited).
        org_id = orgs.create_org(rt, corpus.org_name, list(corpus.internal_domains))["id"]
        actor = Actor.operator(org_id)
        generated_at = (now or datetime.now(timezone.utc)).isoformat()
        with session(rt.engine) as s:
            for n, (name, email) in enumerate(corpus.reps):
                user = orgs.create_user(rt, actor, email, name=name, role="admin" if n == 0 else "rep")
                s.add(
                    Mailbox(
                        org_id=org_id,
                        owner_id=user["id"],
                        kind="demo",
                        config={
                            "seed": DEMO_SEED,
                            "messages": DEMO_MESSAGES,
                            "generated_at": generated_at,
                            "owner": email,
                        },
                    )
                )
            s.commit()
    with session(rt.engine) as s:
        admin = s.exec(select(User).where(User.org_id == org_id, User.role == "admin").order_by(User.id)).first()
        mailbox_ids = s.exec(select(Mailbox.id).where(Mailbox.org_id == org_id, Mailbox.kind == "demo")).all()
        org_name = s.get(Organisation, org_id).name
    token = orgs.replace_token(rt, Actor.operator(org_id), admin.id, TOKEN_NAME)["token"]
    for mailbox_id in mailbox_ids:
        report = sync_mailbox(rt.engine, rt.box, mailbox_id, worker=rt.settings.worker_id)
        if console is not None and report is not None:
            console.print(
                f"  demo mailbox {mailbox_id}: {report.imported} messages imported "
                f"({report.skipped} skipped as internal or bulk)",
                highlight=False,
            )
    seed_deals(rt, org_id, corpus)
    _mark_key_accounts(rt, org_id)
    followups.sweep_now(rt, org_id)  # "going quiet" now, not at the scheduler's first sweep
    with read_only(rt.engine) as conn:
        customer = people.first_customer(conn, org_id)
    return {"org": org_name, "admin": admin.email, "token": token, "customer": customer and customer["email"]}


def _mark_key_accounts(rt: Runtime, org_id: int) -> None:
    """The scenes' key account (demodata/scenes.py), through the use case, once."""
    from demodata.scenes import KEY_ACCOUNT_DOMAINS

    k = Company.__table__
    with read_only(rt.engine) as conn:
        found = conn.execute(
            select_(k.c.id).where(k.c.org_id == org_id, k.c.domain.in_(KEY_ACCOUNT_DOMAINS), k.c.key_account.is_(False))
        ).scalars()
        ids = list(found)
    for company_id in ids:
        followups.set_key_account(rt, Actor.operator(org_id), kind="company", target_id=company_id)
