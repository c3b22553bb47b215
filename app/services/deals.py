"""Deals and pipelines: creating and moving deals, linking mail threads, the deal timeline
and the board.

Every change is one `(rt, actor, ...)` use case: checked by `changing()`, one audit record.
A rep may create deals (owned by themselves) and edit the deals they can see; which those
are is the organisation's `deal_visibility` (app.models.DealVisibility). Admins see and
edit every deal; pipelines and the setting are theirs.

Amounts are integer minor units of an ISO 4217 currency (cents for EUR, yen for JPY), so
no float ever rounds a price. A deal's timeline is the interactions of its contacts and
linked threads since it opened, plus its stage changes, newest first, paged by a keyset
cursor like the contact timeline. Every read takes the caller's organisation.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import and_, delete, func, insert, or_, select, true, tuple_, update
from sqlalchemy.engine import Connection

from app.models import (
    Company,
    Contact,
    ContactAddress,
    ContactStats,
    Deal,
    DealContact,
    DealStageChange,
    DealThread,
    DealVisibility,
    Interaction,
    InteractionKind,
    Organisation,
    Participant,
    Pipeline,
    PipelineStage,
    StageKind,
    User,
)
from app.models.base import utcnow
from app.services import audit, timeline
from app.services.activity import message_key
from app.services.actor import Actor, changing
from app.services.errors import Forbidden, Invalid, NotFound

D, DC, DT, DSC = Deal.__table__, DealContact.__table__, DealThread.__table__, DealStageChange.__table__
PL, ST = Pipeline.__table__, PipelineStage.__table__
C, CA, CO, CS = Contact.__table__, ContactAddress.__table__, Company.__table__, ContactStats.__table__
I, P, U, O = Interaction.__table__, Participant.__table__, User.__table__, Organisation.__table__

MAX_NAME = 200
MAX_REASON = 500
MAX_CONTACTS = 50
MAX_THREADS = 50
MAX_STAGES = 20
# 100 billion in major units of a two-decimal currency: above that a figure is a typo.
MAX_AMOUNT_MINOR = 10**13
CLOSE_DATE_PAST = timedelta(days=5 * 366)  # a close date further back than this is a typo
CLOSE_DATE_FUTURE = timedelta(days=10 * 366)
MAX_PAGE = 100

# ISO 4217 codes in use; all have two minor digits except those listed below.
CURRENCIES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD
    CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD
    HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL
    LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR
    PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP
    TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL""".split()
)
MINOR_DIGITS = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}

DEFAULT_STAGES = (
    {"name": "Qualified", "kind": StageKind.OPEN, "probability": 10},
    {"name": "Meeting booked", "kind": StageKind.OPEN, "probability": 25},
    {"name": "Proposal sent", "kind": StageKind.OPEN, "probability": 50},
    {"name": "Negotiation", "kind": StageKind.OPEN, "probability": 75},
    {"name": "Won", "kind": StageKind.WON, "probability": 100},
    {"name": "Lost", "kind": StageKind.LOST, "probability": 0},
)


def minor_digits(currency: str) -> int:
    return MINOR_DIGITS.get(currency, 2)


def format_amount(amount_minor: int, currency: str) -> str:
    """12345, "EUR" -> "123.45 EUR" (plain digits: the browser formats for the reader's locale)."""
    digits = minor_digits(currency)
    if not digits:
        return f"{amount_minor:,} {currency}"
    whole, part = divmod(abs(amount_minor), 10**digits)
    sign = "-" if amount_minor < 0 else ""
    return f"{sign}{whole:,}.{part:0{digits}d} {currency}"


def parse_amount(text: str, currency: str) -> int:
    """ "12,500.50" in EUR -> 1250050 minor units (commas and spaces group thousands)."""
    currency = _currency(currency)
    clean = str(text or "").replace(",", "").replace(" ", "").replace("_", "")
    try:
        value = Decimal(clean)
    except InvalidOperation:
        raise Invalid(f"amount must be a number such as 12500.00, not {text!r}", field="amount") from None
    minor = value.scaleb(minor_digits(currency))
    if not value.is_finite() or minor != minor.to_integral_value():
        raise Invalid(f"{text!r} has more decimals than {currency} has", field="amount")
    if minor.copy_abs() > MAX_AMOUNT_MINOR * 10:
        raise Invalid("amount is implausibly large", field="amount")
    return _amount(int(minor))


# -- validation -------------------------------------------------------------------------------


def _name(value, field: str = "name") -> str:
    text = " ".join(str(value or "").split())
    if not text:
        raise Invalid(f"{field} must not be empty", field=field)
    if len(text) > MAX_NAME:
        raise Invalid(f"{field} is longer than {MAX_NAME} characters", field=field)
    return text


def _amount(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("amount_minor must be a whole number of minor units (cents)", field="amount_minor")
    if value < 0:
        raise Invalid("amount_minor must not be negative", field="amount_minor")
    if value > MAX_AMOUNT_MINOR:
        raise Invalid(f"amount_minor is implausibly large (at most {MAX_AMOUNT_MINOR:,})", field="amount_minor")
    return value


def _currency(value) -> str:
    code = str(value or "").strip().upper()
    if code not in CURRENCIES:
        raise Invalid(f"currency must be an ISO 4217 code such as EUR or USD, not {value!r}", field="currency")
    return code


def _close_date(value, today: date | None = None) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        try:
            value = date.fromisoformat(str(value))
        except ValueError:
            raise Invalid(f"close_date must be a date (YYYY-MM-DD), not {value!r}", field="close_date") from None
    today = today or utcnow().date()
    if value < today - CLOSE_DATE_PAST:
        raise Invalid(f"close_date {value} is more than five years ago", field="close_date")
    if value > today + CLOSE_DATE_FUTURE:
        raise Invalid(f"close_date {value} is more than ten years ahead", field="close_date")
    return value


def _reason(value) -> str | None:
    text = " ".join(str(value or "").split())
    if len(text) > MAX_REASON:
        raise Invalid(f"lost_reason is longer than {MAX_REASON} characters", field="lost_reason")
    return text or None


def _ids(value, field: str, most: int) -> list[int]:
    try:
        ids = list(dict.fromkeys(int(v) for v in (value or ())))
    except (TypeError, ValueError):
        raise Invalid(f"{field} must be a list of ids", field=field) from None
    if len(ids) > most:
        raise Invalid(f"{field} lists more than {most}", field=field)
    return ids


def _check_contacts(conn: Connection, org_id: int, ids: list[int]) -> None:
    if not ids:
        return
    found = set(conn.execute(select(C.c.id).where(C.c.org_id == org_id, C.c.id.in_(ids))).scalars())
    missing = [i for i in ids if i not in found]
    if missing:
        raise Invalid(f"no contact {missing[0]} in this organisation", field="contact_ids")


def contact_id_by_email(conn: Connection, org_id: int, email: str) -> int:
    found = conn.execute(
        select(CA.c.contact_id).where(CA.c.org_id == org_id, CA.c.address == str(email).strip().lower())
    ).scalar()
    if found is None:
        raise Invalid(f"no contact with the address {email}", field="contact")
    return found


def _check_company(conn: Connection, org_id: int, company_id: int | None) -> None:
    if company_id is None:
        return
    if conn.execute(select(CO.c.id).where(CO.c.id == company_id, CO.c.org_id == org_id)).first() is None:
        raise Invalid(f"no company {company_id} in this organisation", field="company_id")


def _check_owner(conn: Connection, org_id: int, owner_id: int) -> None:
    row = conn.execute(select(U.c.active).where(U.c.id == owner_id, U.c.org_id == org_id)).first()
    if row is None:
        raise Invalid(f"no user {owner_id} in this organisation", field="owner_id")
    if not row.active:
        raise Invalid(f"user {owner_id} is deactivated", field="owner_id")


def _stage(conn: Connection, org_id: int, stage_id, pipeline_id: int | None = None):
    row = conn.execute(select(ST).where(ST.c.id == stage_id, ST.c.org_id == org_id)).first()
    if row is None:
        raise Invalid(f"no stage {stage_id} in this organisation", field="stage_id")
    if pipeline_id is not None and row.pipeline_id != pipeline_id:
        raise Invalid(f"stage {stage_id} belongs to another pipeline", field="stage_id")
    return row


def _pipeline_id(conn: Connection, org_id: int, pipeline_id: int | None) -> int:
    query = select(PL.c.id).where(PL.c.org_id == org_id)
    if pipeline_id is not None:
        query = query.where(PL.c.id == pipeline_id)
    found = conn.execute(query.order_by(PL.c.position, PL.c.id).limit(1)).scalar()
    if found is None:
        if pipeline_id is not None:
            raise Invalid(f"no pipeline {pipeline_id} in this organisation", field="pipeline_id")
        raise Invalid("the organisation has no pipeline yet: an admin creates one first", field="pipeline_id")
    return found


def _thread_keys(conn: Connection, org_id: int, thread_keys, message_ids) -> list[str]:
    """Thread keys as ingest writes them: given directly, or found from a message's
    Internet Message-ID (the stored message's thread; a message not stored yet starts its own)."""
    keys = [str(k).strip()[:500] for k in (thread_keys or ()) if str(k).strip()]
    for mid in message_ids or ():
        try:
            key = message_key(mid)
        except Invalid:  # activity's refusal names its own field
            raise Invalid(f"not a Message-ID: {mid!r}", field="message_id") from None
        stored = conn.execute(select(I.c.thread_key).where(I.c.org_id == org_id, I.c.message_key == key)).scalar()
        keys.append(stored or key[:500])
    keys = list(dict.fromkeys(keys))
    if len(keys) > MAX_THREADS:
        raise Invalid(f"a deal links at most {MAX_THREADS} threads", field="thread_keys")
    return keys


def _role(conn: Connection, actor: Actor) -> str:
    if actor.user_id is None:
        return "admin"
    return conn.execute(select(U.c.role).where(U.c.id == actor.user_id)).scalar() or "rep"


def visibility(conn: Connection, org_id: int) -> str:
    """The organisation's deal visibility setting (DealVisibility)."""
    return conn.execute(select(O.c.deal_visibility).where(O.c.id == org_id)).scalar() or DealVisibility.ALL


def visible_deals(conn: Connection, viewer: Actor, role: str | None = None):
    """The condition on `deal` for the deals this viewer may see and edit."""
    if (role or _role(conn, viewer)) == "admin":
        return true()
    if visibility(conn, viewer.org_id) == DealVisibility.OWN:
        return or_(D.c.owner_id == viewer.user_id, D.c.shared.is_(True))
    return true()


def _deal_row(conn: Connection, viewer: Actor, deal_id: int):
    row = conn.execute(
        select(D).where(D.c.id == deal_id, D.c.org_id == viewer.org_id, visible_deals(conn, viewer))
    ).first()
    if row is None:
        raise NotFound(f"no deal {deal_id}")
    return row


# -- use cases --------------------------------------------------------------------------------


def _clean_stages(stages) -> list[dict]:
    stages = list(stages or DEFAULT_STAGES)
    if not 2 <= len(stages) <= MAX_STAGES:
        raise Invalid(f"a pipeline has between 2 and {MAX_STAGES} stages", field="stages")
    out, names = [], set()
    for s in stages:
        name = _name(s.get("name"), "stages")
        if name.lower() in names:
            raise Invalid(f"two stages are called {name!r}", field="stages")
        names.add(name.lower())
        kind = str(s.get("kind") or StageKind.OPEN)
        if kind not in set(StageKind):
            raise Invalid(f"a stage's kind is one of {', '.join(StageKind)}", field="stages")
        default = {StageKind.WON: 100, StageKind.LOST: 0}.get(StageKind(kind), 0)
        prob = s.get("probability", default)
        if isinstance(prob, bool) or not isinstance(prob, int) or not 0 <= prob <= 100:
            raise Invalid("a stage's win probability is a whole percentage, 0 to 100", field="stages")
        out.append({"name": name, "kind": kind, "probability": prob})
    kinds = [s["kind"] for s in out]
    if StageKind.OPEN not in kinds or StageKind.WON not in kinds or StageKind.LOST not in kinds:
        raise Invalid("a pipeline needs open stages and a won and a lost stage", field="stages")
    return out


def create_pipeline(rt, actor: Actor, *, name: str, stages: list[dict] | None = None) -> dict:
    """An admin's pipeline with its ordered stages (the usual six when none are given)."""
    name = _name(name)
    cleaned = _clean_stages(stages)
    with changing(rt.engine, actor) as conn:
        taken = conn.execute(select(PL.c.id).where(PL.c.org_id == actor.org_id, PL.c.name == name)).first()
        if taken:
            raise Invalid(f"a pipeline called {name!r} exists already", field="name")
        position = conn.execute(select(func.count()).where(PL.c.org_id == actor.org_id)).scalar() or 0
        pid = conn.execute(
            insert(PL).values(org_id=actor.org_id, name=name, position=position, created_at=utcnow())
        ).inserted_primary_key[0]
        conn.execute(
            insert(ST),
            [{"org_id": actor.org_id, "pipeline_id": pid, "position": n, **s} for n, s in enumerate(cleaned)],
        )
        audit.record(conn, actor.org_id, actor.user_id, "pipeline.create", name, {"pipeline_id": pid})
        return pipeline(conn, actor.org_id, pid)


def set_visibility(rt, actor: Actor, value: str) -> dict:
    """The organisation's deal visibility for reps: all deals, or their own and shared ones."""
    if value not in set(DealVisibility):
        raise Invalid(f"deal_visibility is one of {', '.join(DealVisibility)}", field="deal_visibility")
    with changing(rt.engine, actor) as conn:
        before = conn.execute(select(O.c.deal_visibility).where(O.c.id == actor.org_id)).scalar()
        conn.execute(update(O).where(O.c.id == actor.org_id).values(deal_visibility=value))
        audit.record(conn, actor.org_id, actor.user_id, "org.deal_visibility", value, {"from": before, "to": value})
        return {"deal_visibility": value}


def create_deal(
    rt,
    actor: Actor,
    *,
    name: str,
    pipeline_id: int | None = None,
    stage_id: int | None = None,
    company_id: int | None = None,
    contact_ids=(),
    owner_id: int | None = None,
    amount_minor: int = 0,
    currency: str = "EUR",
    close_date=None,
    shared: bool = False,
    thread_keys=(),
    message_ids=(),
    lost_reason: str | None = None,
) -> dict:
    """A new deal in the first stage of its pipeline (or the stage given; a lost one needs
    the reason). A rep's deal is their own; the company defaults to that of the first contact."""
    name = _name(name)
    reason = _reason(lost_reason)
    amount_minor, currency = _amount(amount_minor), _currency(currency)
    close = _close_date(close_date)
    contacts = _ids(contact_ids, "contact_ids", MAX_CONTACTS)
    with changing(rt.engine, actor, admin=False) as conn:
        org_id = actor.org_id
        role = _role(conn, actor)
        if owner_id is None:
            if actor.user_id is None:
                raise Invalid("owner_id is required when acting as the operator", field="owner_id")
            owner_id = actor.user_id
        elif role != "admin" and owner_id != actor.user_id:
            raise Forbidden("a rep creates deals they own; an admin can give one to someone else", field="owner_id")
        _check_owner(conn, org_id, owner_id)
        pid = _pipeline_id(conn, org_id, pipeline_id)
        if stage_id is None:
            stage = conn.execute(
                select(ST).where(ST.c.pipeline_id == pid, ST.c.kind == StageKind.OPEN).order_by(ST.c.position).limit(1)
            ).first()
        else:
            stage = _stage(conn, org_id, stage_id, pid)
        if stage.kind == StageKind.LOST and not reason:
            raise Invalid("a lost deal needs a reason", field="lost_reason")
        if stage.kind != StageKind.LOST and reason:
            raise Invalid("only a lost deal has a lost reason", field="lost_reason")
        _check_contacts(conn, org_id, contacts)
        _check_company(conn, org_id, company_id)
        if company_id is None and contacts:
            company_id = conn.execute(
                select(C.c.company_id).where(C.c.id.in_(contacts), C.c.company_id.is_not(None)).limit(1)
            ).scalar()
        threads = _thread_keys(conn, org_id, thread_keys, message_ids)
        now = utcnow()
        closed = stage.kind != StageKind.OPEN
        deal_id = conn.execute(
            insert(D).values(
                org_id=org_id,
                pipeline_id=pid,
                stage_id=stage.id,
                name=name,
                company_id=company_id,
                owner_id=owner_id,
                amount_minor=amount_minor,
                currency=currency,
                close_date=close,
                shared=bool(shared),
                lost_reason=reason,
                opened_at=now,
                stage_changed_at=now,
                closed_at=now if closed else None,
                created_by=actor.user_id,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        if contacts:
            conn.execute(insert(DC), [{"deal_id": deal_id, "contact_id": c, "org_id": org_id} for c in contacts])
        if threads:
            conn.execute(
                insert(DT),
                [
                    {
                        "deal_id": deal_id,
                        "thread_key": k,
                        "org_id": org_id,
                        "linked_by": actor.user_id,
                        "linked_at": now,
                    }
                    for k in threads
                ],
            )
        conn.execute(
            insert(DSC).values(
                org_id=org_id, deal_id=deal_id, from_stage_id=None, to_stage_id=stage.id, user_id=actor.user_id, at=now
            )
        )
        audit.record(
            conn,
            org_id,
            actor.user_id,
            "deal.create",
            name,
            {"deal_id": deal_id, "stage": stage.name, "amount_minor": amount_minor, "currency": currency},
        )
        return deal(conn, actor, deal_id)


EDITABLE = ("name", "stage_id", "amount_minor", "currency", "close_date", "lost_reason", "owner_id", "shared")


def update_deal(rt, actor: Actor, deal_id: int, changes: dict) -> dict:
    """Edit a deal the actor can see: stage (recorded in its history, with who and when),
    amount, currency, close date, name, lost reason, sharing; only admins give it to someone
    else. Moving to a lost stage needs a reason; moving back to an open one clears it."""
    unknown = set(changes) - set(EDITABLE) - {"contact_ids"}
    if unknown:
        field = sorted(unknown)[0]
        raise Invalid(f"{field} cannot be changed here", field=field)
    values: dict = {}
    if "name" in changes:
        values["name"] = _name(changes["name"])
    if "amount_minor" in changes:
        values["amount_minor"] = _amount(changes["amount_minor"])
    if "currency" in changes:
        values["currency"] = _currency(changes["currency"])
    if "close_date" in changes:
        values["close_date"] = _close_date(changes["close_date"])
    if "lost_reason" in changes:
        values["lost_reason"] = _reason(changes["lost_reason"])
    if "shared" in changes:
        values["shared"] = bool(changes["shared"])
    contacts = _ids(changes["contact_ids"], "contact_ids", MAX_CONTACTS) if "contact_ids" in changes else None
    with changing(rt.engine, actor, admin=False) as conn:
        org_id = actor.org_id
        role = _role(conn, actor)
        row = _deal_row(conn, actor, deal_id)
        if "owner_id" in changes and changes["owner_id"] != row.owner_id:
            if role != "admin":
                raise Forbidden("only an admin gives a deal to someone else", field="owner_id")
            _check_owner(conn, org_id, changes["owner_id"])
            values["owner_id"] = changes["owner_id"]
        now = utcnow()
        stage = None
        if "stage_id" in changes and changes["stage_id"] != row.stage_id:
            stage = _stage(conn, org_id, changes["stage_id"], row.pipeline_id)
            values.update(
                stage_id=stage.id, stage_changed_at=now, closed_at=None if stage.kind == StageKind.OPEN else now
            )
        kind = stage.kind if stage is not None else _stage(conn, org_id, row.stage_id).kind
        if kind == StageKind.LOST:
            if not values.get("lost_reason", row.lost_reason):
                raise Invalid("a lost deal needs a reason", field="lost_reason")
        elif values.get("lost_reason"):
            raise Invalid("only a lost deal has a lost reason", field="lost_reason")
        elif stage is not None:
            values["lost_reason"] = None
        if contacts is not None:
            _check_contacts(conn, org_id, contacts)
        changed = {
            k: v for k, v in values.items() if k not in ("stage_changed_at", "closed_at") and row._mapping[k] != v
        }
        if contacts is not None:
            before = set(conn.execute(select(DC.c.contact_id).where(DC.c.deal_id == deal_id)).scalars())
            if before != set(contacts):
                conn.execute(delete(DC).where(DC.c.deal_id == deal_id))
                if contacts:
                    conn.execute(
                        insert(DC), [{"deal_id": deal_id, "contact_id": c, "org_id": org_id} for c in contacts]
                    )
                changed["contact_ids"] = contacts
        if changed:
            conn.execute(update(D).where(D.c.id == deal_id).values(**values, updated_at=now))
            if stage is not None:
                conn.execute(
                    insert(DSC).values(
                        org_id=org_id,
                        deal_id=deal_id,
                        from_stage_id=row.stage_id,
                        to_stage_id=stage.id,
                        user_id=actor.user_id,
                        at=now,
                    )
                )
            detail = {k: {"from": _plain(row._mapping.get(k)), "to": _plain(v)} for k, v in changed.items()}
            audit.record(conn, org_id, actor.user_id, "deal.update", row.name, {"deal_id": deal_id, "changed": detail})
        return deal(conn, actor, deal_id)


def _plain(value):
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def link_thread(
    rt, actor: Actor, deal_id: int, *, thread_key: str | None = None, message_id: str | None = None
) -> dict:
    """Link a mail thread to a deal: its mail, and every later reply in it, shows on the deal."""
    if not (thread_key or message_id):
        raise Invalid("give the thread_key or the message_id of a message in the thread", field="message_id")
    with changing(rt.engine, actor, admin=False) as conn:
        _deal_row(conn, actor, deal_id)
        keys = _thread_keys(conn, actor.org_id, [thread_key] if thread_key else (), [message_id] if message_id else ())
        key = keys[0]
        exists = conn.execute(select(DT.c.deal_id).where(DT.c.deal_id == deal_id, DT.c.thread_key == key)).first()
        if exists is None:
            count = conn.execute(select(func.count()).where(DT.c.deal_id == deal_id)).scalar() or 0
            if count >= MAX_THREADS:
                raise Invalid(f"a deal links at most {MAX_THREADS} threads", field="thread_key")
            conn.execute(
                insert(DT).values(
                    deal_id=deal_id, thread_key=key, org_id=actor.org_id, linked_by=actor.user_id, linked_at=utcnow()
                )
            )
        audit.record(conn, actor.org_id, actor.user_id, "deal.link_thread", str(deal_id), {"thread_key": key})
        return deal(conn, actor, deal_id)


# -- reads ------------------------------------------------------------------------------------


def _stage_dict(row) -> dict:
    return {"id": row.id, "name": row.name, "kind": row.kind, "probability": row.probability, "position": row.position}


def pipeline(conn: Connection, org_id: int, pipeline_id: int) -> dict:
    row = conn.execute(select(PL).where(PL.c.id == pipeline_id, PL.c.org_id == org_id)).first()
    if row is None:
        raise NotFound(f"no pipeline {pipeline_id}")
    stages = conn.execute(select(ST).where(ST.c.pipeline_id == pipeline_id).order_by(ST.c.position)).all()
    return {"id": row.id, "name": row.name, "stages": [_stage_dict(s) for s in stages]}


def pipelines(conn: Connection, org_id: int) -> list[dict]:
    ids = conn.execute(select(PL.c.id).where(PL.c.org_id == org_id).order_by(PL.c.position, PL.c.id)).scalars()
    return [pipeline(conn, org_id, pid) for pid in ids]


def _aware(value) -> datetime | None:
    return timeline._ts(value)


def _summary(row) -> dict:
    m = row._mapping
    return {
        "id": m["id"],
        "name": m["name"],
        "pipeline_id": m["pipeline_id"],
        "stage": {
            "id": m["stage_id"],
            "name": m["stage_name"],
            "kind": m["stage_kind"],
            "probability": m["stage_probability"],
        },
        "company": {"id": m["company_id"], "name": m["company_name"], "domain": m["company_domain"]}
        if m["company_id"]
        else None,
        "owner": {"id": m["owner_id"], "name": m["owner_name"], "email": m["owner_email"]},
        "amount_minor": m["amount_minor"],
        "currency": m["currency"],
        "amount": format_amount(m["amount_minor"], m["currency"]),
        "close_date": m["close_date"],
        "shared": bool(m["shared"]),
        "lost_reason": m["lost_reason"],
        "opened_at": _aware(m["opened_at"]),
        "stage_changed_at": _aware(m["stage_changed_at"]),
        "closed_at": _aware(m["closed_at"]),
    }


def _summary_query():
    return (
        select(
            D,
            ST.c.name.label("stage_name"),
            ST.c.kind.label("stage_kind"),
            ST.c.probability.label("stage_probability"),
            ST.c.position.label("stage_position"),
            CO.c.name.label("company_name"),
            CO.c.domain.label("company_domain"),
            U.c.name.label("owner_name"),
            U.c.email.label("owner_email"),
        )
        .join(ST, ST.c.id == D.c.stage_id)
        .join(U, U.c.id == D.c.owner_id)
        .outerjoin(CO, CO.c.id == D.c.company_id)
    )


def deal(conn: Connection, viewer: Actor, deal_id: int) -> dict:
    """One deal the viewer may see, with its contacts, linked threads and stage history."""
    row = conn.execute(
        _summary_query().where(D.c.id == deal_id, D.c.org_id == viewer.org_id, visible_deals(conn, viewer))
    ).first()
    if row is None:
        raise NotFound(f"no deal {deal_id}")
    out = _summary(row)
    out["contacts"] = [
        {"id": c.id, "name": c.name, "email": c.primary_email}
        for c in conn.execute(
            select(C.c.id, C.c.name, C.c.primary_email)
            .join(DC, DC.c.contact_id == C.c.id)
            .where(DC.c.deal_id == deal_id, C.c.org_id == viewer.org_id)
            .order_by(C.c.name, C.c.id)
        )
    ]
    out["thread_keys"] = list(
        conn.execute(select(DT.c.thread_key).where(DT.c.deal_id == deal_id).order_by(DT.c.linked_at)).scalars()
    )
    out["history"] = _history(conn, viewer.org_id, deal_id)
    return out


def _history(conn: Connection, org_id: int, deal_id: int, where=None, limit: int | None = None) -> list[dict]:
    frm, to = ST.alias("frm"), ST.alias("tostage")
    query = (
        select(DSC, frm.c.name.label("from_name"), to.c.name.label("to_name"), U.c.name.label("user_name"))
        .join(to, to.c.id == DSC.c.to_stage_id)
        .outerjoin(frm, frm.c.id == DSC.c.from_stage_id)
        .outerjoin(U, U.c.id == DSC.c.user_id)
        .where(DSC.c.deal_id == deal_id, DSC.c.org_id == org_id)
        .order_by(DSC.c.at.desc(), DSC.c.id.desc())
    )
    if where is not None:
        query = query.where(where)
    if limit is not None:
        query = query.limit(limit)
    return [
        {
            "id": r.id,
            "at": _aware(r.at),
            "from_stage": {"id": r.from_stage_id, "name": r.from_name} if r.from_stage_id else None,
            "to_stage": {"id": r.to_stage_id, "name": r.to_name},
            "user": {"id": r.user_id, "name": r.user_name} if r.user_id else None,
        }
        for r in conn.execute(query)
    ]


STATUSES = ("open", "won", "lost", "all")


def list_deals(
    conn: Connection,
    viewer: Actor,
    *,
    pipeline_id: int | None = None,
    status: str = "open",
    owner_id: int | None = None,
    contact_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict]:
    """The deals the viewer may see (one contact's, when given), by stage order then newest first."""
    if status not in STATUSES:
        raise Invalid(f"status is one of {', '.join(STATUSES)}", field="status")
    query = _summary_query().where(D.c.org_id == viewer.org_id, visible_deals(conn, viewer))
    if status != "all":
        query = query.where(ST.c.kind == status)
    if pipeline_id is not None:
        query = query.where(D.c.pipeline_id == pipeline_id)
    if owner_id is not None:
        query = query.where(D.c.owner_id == owner_id)
    if contact_id is not None:
        query = query.where(
            D.c.id.in_(select(DC.c.deal_id).where(DC.c.org_id == viewer.org_id, DC.c.contact_id == contact_id))
        )
    query = query.order_by(ST.c.position, D.c.id.desc()).limit(max(1, min(limit, 1000))).offset(max(0, offset))
    return [_summary(r) for r in conn.execute(query)]


def open_deals_for(
    conn: Connection,
    org_id: int,
    *,
    owner_id: int | None = None,
    contact_ids=None,
    company_id: int | None = None,
    close_before: date | None = None,
) -> list[dict]:
    """Open deals of an organisation, for other features (the follow-up queue, the rep's day):
    optionally one owner's, those with one of these contacts or this company, those whose
    expected close date is before a day. Plain rows: id, name, owner_id, company_id, stage_id,
    stage_name, amount_minor, currency, close_date, opened_at, stage_changed_at, contact_ids."""
    query = (
        select(D, ST.c.name.label("stage_name"))
        .join(ST, ST.c.id == D.c.stage_id)
        .where(D.c.org_id == org_id, ST.c.kind == StageKind.OPEN)
    )
    if owner_id is not None:
        query = query.where(D.c.owner_id == owner_id)
    if company_id is not None:
        query = query.where(D.c.company_id == company_id)
    if close_before is not None:
        query = query.where(D.c.close_date < close_before)
    if contact_ids is not None:
        ids = list(contact_ids)
        if not ids:
            return []
        query = query.where(D.c.id.in_(select(DC.c.deal_id).where(DC.c.org_id == org_id, DC.c.contact_id.in_(ids))))
    rows = conn.execute(query.order_by(D.c.id)).all()
    members: dict[int, list[int]] = {}
    if rows:
        for deal_id, contact_id in conn.execute(
            select(DC.c.deal_id, DC.c.contact_id).where(DC.c.deal_id.in_([r.id for r in rows]))
        ):
            members.setdefault(deal_id, []).append(contact_id)
    return [
        {
            "id": r.id,
            "name": r.name,
            "owner_id": r.owner_id,
            "company_id": r.company_id,
            "stage_id": r.stage_id,
            "stage_name": r.stage_name,
            "amount_minor": r.amount_minor,
            "currency": r.currency,
            "close_date": r.close_date,
            "opened_at": _aware(r.opened_at),
            "stage_changed_at": _aware(r.stage_changed_at),
            "contact_ids": sorted(members.get(r.id, [])),
        }
        for r in rows
    ]


def deal_timeline(conn: Connection, viewer: Actor, deal_id: int, cursor: str | None = None, limit: int = 20) -> dict:
    """The interactions of the deal's contacts and linked threads since it opened, and its
    stage changes, newest first. Pages continue from a cursor on (time, key): an interaction's
    key is its id, a stage change's the negative of its id, so the two never tie."""
    row = _deal_row(conn, viewer, deal_id)
    org_id, limit = viewer.org_id, max(1, min(limit, MAX_PAGE))
    opened = _aware(row.opened_at)
    by_contact = select(P.c.interaction_id).where(
        P.c.org_id == org_id,
        P.c.contact_id.in_(select(DC.c.contact_id).where(DC.c.deal_id == deal_id)),
        P.c.occurred_at >= opened,
    )
    in_thread = I.c.thread_key.in_(select(DT.c.thread_key).where(DT.c.deal_id == deal_id))
    mail = select(I.c.id, I.c.occurred_at).where(
        I.c.org_id == org_id, I.c.occurred_at >= opened, or_(I.c.id.in_(by_contact), in_thread)
    )
    changes_where = None
    if cursor:
        at, key = timeline.decode_cursor(cursor)
        mail = mail.where(tuple_(I.c.occurred_at, I.c.id) < tuple_(at, key))
        # a stage change's key is -id: (at, -id) < (c_at, key) means id > -key at the same time
        changes_where = or_(DSC.c.at < at, and_(DSC.c.at == at, DSC.c.id > -key))
    found = [
        (_aware(at), iid, None)
        for iid, at in conn.execute(mail.order_by(I.c.occurred_at.desc(), I.c.id.desc()).limit(limit + 1))
    ]
    found += [(c["at"], -c["id"], c) for c in _history(conn, org_id, deal_id, changes_where, limit + 1)]
    found.sort(key=lambda f: (f[0], f[1]), reverse=True)
    page, more = found[:limit], len(found) > limit
    items_by_id = {i["id"]: i for i in timeline.interactions(conn, org_id, [k for _, k, c in page if c is None])}
    items = []
    for at, key, change in page:
        if change is not None:
            items.append({"type": "stage_change", "at": at, "interaction": None, "stage_change": change})
        elif key in items_by_id:
            items.append({"type": "interaction", "at": at, "interaction": items_by_id[key], "stage_change": None})
    next_cursor = timeline.encode_cursor(page[-1][0], page[-1][1]) if more and page else None
    return {"items": items, "next_cursor": next_cursor}


def board(conn: Connection, viewer: Actor, pipeline_id: int | None = None, now: datetime | None = None) -> dict:
    """A pipeline's open stages as columns of cards (amount, days in stage, last touch, next
    meeting), plus its closed stages as drop targets without cards. Five statements, whatever
    the number of deals: the deals, then last mail per deal contact (contactstats) and per
    linked thread, and the next meeting per deal contact."""
    now = now or utcnow()
    try:
        pid = _pipeline_id(conn, viewer.org_id, pipeline_id)
    except Invalid as exc:  # a read addresses the pipeline: none (of this organisation) is a 404
        raise NotFound(exc.reason, field="pipeline_id") from None
    shape = pipeline(conn, viewer.org_id, pid)
    rows = conn.execute(
        select(
            D.c.id,
            D.c.name,
            D.c.stage_id,
            D.c.amount_minor,
            D.c.currency,
            D.c.close_date,
            D.c.stage_changed_at,
            D.c.owner_id,
            U.c.name.label("owner_name"),
            CO.c.name.label("company_name"),
        )
        .join(ST, ST.c.id == D.c.stage_id)
        .join(U, U.c.id == D.c.owner_id)
        .outerjoin(CO, CO.c.id == D.c.company_id)
        .where(
            D.c.org_id == viewer.org_id,
            D.c.pipeline_id == pid,
            ST.c.kind == StageKind.OPEN,
            visible_deals(conn, viewer),
        )
        .order_by(D.c.stage_changed_at, D.c.id)
    ).all()
    open_deals = (
        select(D.c.id)
        .join(ST, ST.c.id == D.c.stage_id)
        .where(D.c.org_id == viewer.org_id, D.c.pipeline_id == pid, ST.c.kind == StageKind.OPEN)
    )
    last: dict[int, datetime] = {}
    for deal_id, at in conn.execute(
        select(DC.c.deal_id, func.max(CS.c.last_email_at))
        .join(CS, CS.c.contact_id == DC.c.contact_id)
        .where(DC.c.org_id == viewer.org_id, DC.c.deal_id.in_(open_deals))
        .group_by(DC.c.deal_id)
    ):
        if at is not None:
            last[deal_id] = _aware(at)
    for deal_id, at in conn.execute(
        select(DT.c.deal_id, func.max(I.c.occurred_at))
        .join(I, and_(I.c.org_id == DT.c.org_id, I.c.thread_key == DT.c.thread_key))
        .where(DT.c.org_id == viewer.org_id, DT.c.deal_id.in_(open_deals))
        .group_by(DT.c.deal_id)
    ):
        at = _aware(at)
        if at is not None and (deal_id not in last or at > last[deal_id]):
            last[deal_id] = at
    upcoming: dict[int, datetime] = {}
    for deal_id, at in conn.execute(
        select(DC.c.deal_id, func.min(P.c.occurred_at))
        .join(P, and_(P.c.org_id == DC.c.org_id, P.c.contact_id == DC.c.contact_id))
        .join(I, I.c.id == P.c.interaction_id)
        .where(
            DC.c.org_id == viewer.org_id,
            DC.c.deal_id.in_(open_deals),
            P.c.occurred_at > now,
            I.c.kind == InteractionKind.MEETING,
            or_(I.c.status.is_(None), I.c.status != "cancelled"),
        )
        .group_by(DC.c.deal_id)
    ):
        upcoming[deal_id] = _aware(at)
    cards: dict[int, list[dict]] = {s["id"]: [] for s in shape["stages"]}
    totals: dict[int, dict[str, int]] = {s["id"]: {} for s in shape["stages"]}
    for r in rows:
        since = _aware(r.stage_changed_at)
        cards[r.stage_id].append(
            {
                "id": r.id,
                "name": r.name,
                "company": r.company_name,
                "owner": {"id": r.owner_id, "name": r.owner_name},
                "amount_minor": r.amount_minor,
                "currency": r.currency,
                "amount": format_amount(r.amount_minor, r.currency),
                "close_date": r.close_date,
                "days_in_stage": max(0, (now - since).days) if since else 0,
                "last_touch_at": last.get(r.id),
                "next_meeting_at": upcoming.get(r.id),
            }
        )
        totals[r.stage_id][r.currency] = totals[r.stage_id].get(r.currency, 0) + r.amount_minor
    columns = [
        {
            **s,
            "deals": cards[s["id"]],
            "totals": [format_amount(v, k) for k, v in sorted(totals[s["id"]].items())],
        }
        for s in shape["stages"]
    ]
    return {"pipeline": {"id": shape["id"], "name": shape["name"]}, "columns": columns}


def deals_for_thread(conn: Connection, viewer: Actor, message_id: str) -> list[dict]:
    """The deals the viewer may see that the thread of this message is linked to."""
    keys = _thread_keys(conn, viewer.org_id, (), [message_id])
    ids = select(DT.c.deal_id).where(DT.c.org_id == viewer.org_id, DT.c.thread_key.in_(keys))
    query = _summary_query().where(D.c.org_id == viewer.org_id, D.c.id.in_(ids), visible_deals(conn, viewer))
    return [_summary(r) for r in conn.execute(query.order_by(D.c.id.desc()))]


def prefill(conn: Connection, viewer: Actor, *, message_id: str | None, emails: list[str], subject: str = "") -> dict:
    """What a new deal from the email being read starts with: the known contacts among its
    people, their company, the thread, a name from the subject, the deals already on it."""
    wanted = [e.strip().lower() for e in emails if e and "@" in e][:MAX_CONTACTS]
    contacts = []
    if wanted:
        found = conn.execute(
            select(C.c.id, C.c.name, C.c.primary_email, C.c.company_id, CA.c.address)
            .join(CA, CA.c.contact_id == C.c.id)
            .where(CA.c.org_id == viewer.org_id, CA.c.address.in_(wanted))
        ).all()
        by_address = {r.address: r for r in found}
        seen: set[int] = set()
        for address in wanted:
            r = by_address.get(address)
            if r is not None and r.id not in seen:
                seen.add(r.id)
                contacts.append({"id": r.id, "name": r.name, "email": r.primary_email, "company_id": r.company_id})
    company = None
    company_id = next((c["company_id"] for c in contacts if c["company_id"]), None)
    if company_id is not None:
        co = conn.execute(select(CO.c.id, CO.c.name, CO.c.domain).where(CO.c.id == company_id)).first()
        company = {"id": co.id, "name": co.name, "domain": co.domain} if co else None
    thread_key = _thread_keys(conn, viewer.org_id, (), [message_id])[0] if message_id else None
    subject = " ".join((subject or "").split())
    for prefix in ("re:", "fw:", "fwd:", "aw:", "sv:"):
        while subject.lower().startswith(prefix):
            subject = subject[len(prefix) :].strip()
    name = (f"{company['name']}: {subject}" if company and subject else subject or (company or {}).get("name", ""))[
        :MAX_NAME
    ]
    return {
        "name": name,
        "company": company,
        "contacts": [{k: v for k, v in c.items() if k != "company_id"} for c in contacts],
        "thread_key": thread_key,
        "deals": deals_for_thread(conn, viewer, message_id) if message_id else [],
        "pipelines": pipelines(conn, viewer.org_id),
    }
