"""The demo company's pipeline and deals (demodata/deals.py), seeded once through the deal
use cases after the demo mailboxes are synced, so each deal's people are real contacts and
its thread is one the reps really wrote in. Deal dates are then set back in time so the
board shows days in stage and the timelines show the mail since each deal opened."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from app.db import write_transaction
from app.models import Company, ContactAddress, Deal, DealStageChange, Interaction, Participant, Pipeline, User
from app.models.base import utcnow
from app.runtime import Runtime
from app.services import deals
from app.services.actor import Actor

D, DSC, PL = Deal.__table__, DealStageChange.__table__, Pipeline.__table__
CA, CO, I, P, U = (
    ContactAddress.__table__,
    Company.__table__,
    Interaction.__table__,
    Participant.__table__,
    User.__table__,
)


def seed_deals(rt: Runtime, org_id: int, corpus) -> int:
    """Create the demo pipeline and its deals unless the organisation has a pipeline already.
    Returns how many deals were created."""
    from demodata.deals import STAGES, deal_plan

    with rt.engine.connect() as conn:
        if conn.execute(select(func.count()).where(PL.c.org_id == org_id)).scalar():
            return 0
    actor = Actor.operator(org_id)
    stages = [{"name": n, "kind": k, "probability": p} for n, k, p in STAGES]
    pipe = deals.create_pipeline(rt, actor, name="New business", stages=stages)
    stage_ids = {s["name"]: s["id"] for s in pipe["stages"]}
    created = 0
    now = utcnow()
    with rt.engine.connect() as conn:
        known = {a.lower() for a in conn.execute(select(CA.c.address).where(CA.c.org_id == org_id)).scalars()}
    for plan in deal_plan(corpus, known=known):
        with rt.engine.connect() as conn:
            contact_ids = list(
                conn.execute(
                    select(CA.c.contact_id).where(CA.c.org_id == org_id, CA.c.address.in_(plan.contact_emails))
                ).scalars()
            )
            owner = conn.execute(select(U.c.id).where(U.c.org_id == org_id, U.c.email == plan.owner_email)).scalar()
            thread = conn.execute(
                select(I.c.thread_key)
                .join(P, P.c.interaction_id == I.c.id)
                .where(P.c.org_id == org_id, P.c.contact_id.in_(contact_ids or [-1]), I.c.kind == "email")
                .order_by(I.c.occurred_at.desc())
                .limit(1)
            ).scalar()
        if not contact_ids or owner is None:
            continue
        d = deals.create_deal(
            rt,
            actor,
            name=plan.name,
            stage_id=stage_ids[plan.stage],
            pipeline_id=pipe["id"],
            contact_ids=contact_ids,
            owner_id=owner,
            amount_minor=plan.amount_minor,
            currency=plan.currency,
            close_date=(now + timedelta(days=plan.close_in_days)).date(),
            thread_keys=[thread] if thread else (),
            lost_reason=plan.lost_reason,
        )
        opened = now - timedelta(days=plan.opened_days_ago)
        moved = now - timedelta(days=plan.days_in_stage)
        with write_transaction(rt.engine) as conn:
            closed = moved if plan.stage in ("Won", "Lost") else None
            conn.execute(
                update(D).where(D.c.id == d["id"]).values(opened_at=opened, stage_changed_at=moved, closed_at=closed)
            )
            conn.execute(update(DSC).where(DSC.c.deal_id == d["id"]).values(at=moved))
        created += 1
    created += _scene_deal(rt, org_id, corpus, pipe["id"], stage_ids)
    return created


def _scene_deal(rt: Runtime, org_id: int, corpus, pipeline_id: int, stage_ids: dict[str, int]) -> int:
    """The demo admin's deal with the key account gone quiet (demodata/scenes.py): so their day
    also lists a deal needing attention. Its last stage change is set back before the scene's
    last email, so nothing has happened on it since."""
    from demodata.scenes import QUIET, QUIET_DAYS_AGO

    company, _, name, address = QUIET
    with rt.engine.connect() as conn:
        contact = conn.execute(select(CA.c.contact_id).where(CA.c.org_id == org_id, CA.c.address == address)).scalar()
        owner = conn.execute(select(U.c.id).where(U.c.org_id == org_id, U.c.email == corpus.reps[0].email)).scalar()
    if contact is None or owner is None:
        return 0
    d = deals.create_deal(
        rt,
        Actor.operator(org_id),
        name=f"{company}: fleet analytics",
        stage_id=stage_ids["Proposal sent"],
        pipeline_id=pipeline_id,
        contact_ids=[contact],
        owner_id=owner,
        amount_minor=3_600_000,
        currency="EUR",
        close_date=(utcnow() + timedelta(days=20)).date(),
    )
    moved = utcnow() - timedelta(days=QUIET_DAYS_AGO + 2)
    with write_transaction(rt.engine) as conn:
        conn.execute(update(D).where(D.c.id == d["id"]).values(opened_at=moved, stage_changed_at=moved))
        conn.execute(update(DSC).where(DSC.c.deal_id == d["id"]).values(at=moved))
    return 1
