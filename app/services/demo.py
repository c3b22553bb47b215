"""`threadline serve --demo`: a generated company, synced through the real engine."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlmodel import select

from app.db import session
from app.models import Mailbox, Organisation, User
from app.runtime import Runtime
from app.services import orgs
from sync.engine import sync_mailbox

DEMO_SEED = 7
DEMO_MESSAGES = 4000


def seed_demo(rt: Runtime, console=None) -> str:
    from demodata import generate

    corpus, _ = generate(seed=DEMO_SEED, n_messages=DEMO_MESSAGES)
    with session(rt.engine) as s:
        org = s.exec(select(Organisation).where(Organisation.name == corpus.org_name)).first()
        if org is None:
            org = orgs.create_org(s, corpus.org_name, list(corpus.internal_domains))
            generated_at = datetime.now(timezone.utc).isoformat()
            for n, (name, email) in enumerate(corpus.reps):
                user = orgs.add_user(s, org, email, name=name, admin=n == 0)
                s.add(Mailbox(org_id=org.id, owner_id=user.id, kind="demo",
                              config={"seed": DEMO_SEED, "messages": DEMO_MESSAGES, "generated_at": generated_at,
                                      "owner": email}))
            s.commit()
        admin = s.exec(select(User).where(User.org_id == org.id, User.role == "admin").order_by(User.id)).first()
        mailbox_ids = s.exec(select(Mailbox.id).where(Mailbox.org_id == org.id, Mailbox.kind == "demo")).all()
        token = orgs.issue_token(s, admin, "demo")
        org_name = org.name
    for mailbox_id in mailbox_ids:
        report = sync_mailbox(rt.engine, rt.box, mailbox_id, worker=rt.settings.worker_id)
        if console is not None and report is not None:
            console.print(f"  demo mailbox {mailbox_id}: {report.imported} messages imported "
                          f"({report.skipped} skipped as internal or bulk)", highlight=False)
    return f"{org_name}; admin {admin.email}; API token {token}"
