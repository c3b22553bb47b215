"""Microsoft Graph change notifications: keep subscriptions alive, act on notifications.

When THREADLINE_PUBLIC_URL is https, every Graph mailbox (not the IMAP ones)
gets two subscriptions, the Inbox's messages and the calendar's events, with
notifications to {public}/graph/notifications and lifecycle events to
{public}/graph/lifecycle. A notification only makes the mailbox due
(request_sync): the delta sync does the work, so a lost notification costs
nothing but latency and polling remains the safety net.

`ensure_subscriptions(rt)` creates missing subscriptions and renews those
that expire within RENEW_BEFORE; run it from the scheduler every ~30 minutes.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import datetime, timedelta, timezone
from typing import TypedDict

from sqlalchemy import delete, select, update

from app.db import read_only, write_transaction
from app.models import GraphSubscription, Mailbox, MailboxStatus
from app.models.base import utcnow
from connectors.base import ConnectorError, ConnectorSpec, close_quietly
from connectors.factory import build_connector
from sync.runtime import Runtime

log = logging.getLogger("threadline.graph_push")
SUB, MAILBOX = GraphSubscription.__table__, Mailbox.__table__
LIFETIME = timedelta(days=2)  # Graph allows up to 10,080 minutes for messages and events
RENEW_BEFORE = timedelta(hours=24)


def push_enabled(rt: Runtime) -> bool:
    return rt.settings.public_url.startswith("https://")


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _mailbox_values(conn, box, mailbox_id: int) -> tuple[dict, ConnectorSpec]:
    """The mailbox row and the same ConnectorSpec sync_mailbox builds its connector from."""
    from sync.engine import load_mailbox

    mailbox, spec, _, _ = load_mailbox(conn, box, mailbox_id)
    return mailbox, spec


def _graph_mailboxes(conn) -> list[dict]:
    rows = conn.execute(select(MAILBOX.c.id, MAILBOX.c.status, MAILBOX.c.config).where(MAILBOX.c.kind == "m365"))
    return [dict(r._mapping) for r in rows if (r.config or {}).get("protocol", "graph") == "graph"]


class Summary(TypedDict):
    created: int
    renewed: int
    deleted: int
    failed: dict[int, str]  # mailbox id -> why


def ensure_subscriptions(rt: Runtime, *, now: datetime | None = None, mailbox_ids=None) -> Summary:
    """Create missing and renew expiring subscriptions; drop those of paused mailboxes.
    mailbox_ids: only these (the ones this worker holds the watch lease of, so that
    workers never subscribe one mailbox twice); None: all."""
    summary: Summary = {"created": 0, "renewed": 0, "deleted": 0, "failed": {}}
    if not push_enabled(rt):
        return summary
    now = now or utcnow()
    with read_only(rt.engine) as conn:
        boxes = _graph_mailboxes(conn)
        subs = [dict(r._mapping) for r in conn.execute(select(SUB))]
    for box in boxes:
        mine = [s for s in subs if s["mailbox_id"] == box["id"]]
        if mailbox_ids is not None and box["id"] not in mailbox_ids and box["status"] != MailboxStatus.PAUSED:
            continue
        if box["status"] == MailboxStatus.PAUSED:
            if mine:
                summary["deleted"] += _drop_all(rt, box["id"], mine)
            continue
        due = [s for s in mine if _aware(s["expires_at"]) - now < RENEW_BEFORE]
        from connectors.graph import SUBSCRIBED

        if not due and len({s["resource"] for s in mine}) >= len(SUBSCRIBED):
            continue  # most runs: nothing to create or renew, so no connector is built
        try:
            with read_only(rt.engine) as conn:
                mailbox, spec = _mailbox_values(conn, rt.box, box["id"])
            connector = build_connector(spec)
        except ConnectorError as exc:
            summary["failed"][box["id"]] = str(exc)
            continue
        try:
            have = {s["resource"] for s in mine}
            for resource in connector.subscription_resources():
                if resource not in have:
                    _create(rt, connector, mailbox, resource, now)
                    summary["created"] += 1
            for sub in due:
                _renew_or_recreate(rt, connector, mailbox, sub, now)
                summary["renewed"] += 1
        except ConnectorError as exc:
            log.warning("Graph subscriptions of mailbox %s: %s", box["id"], exc)
            summary["failed"][box["id"]] = str(exc)
        finally:
            from sync.engine import _keep_rotated_secret

            _keep_rotated_secret(rt.engine, rt.box, mailbox, connector)
            close_quietly(connector)
    return summary


def _urls(rt: Runtime) -> tuple[str, str]:
    base = rt.settings.public_url.rstrip("/")
    return f"{base}/graph/notifications", f"{base}/graph/lifecycle"


def _create(rt: Runtime, connector, mailbox: dict, resource: str, now: datetime) -> str:
    state = secrets.token_urlsafe(32)
    notify, lifecycle = _urls(rt)
    expires = now + LIFETIME
    sub = connector.create_subscription(resource, notify, lifecycle, state, expires)
    with write_transaction(rt.engine) as conn:
        conn.execute(delete(SUB).where(SUB.c.mailbox_id == mailbox["id"], SUB.c.resource == resource))
        conn.execute(
            SUB.insert().values(
                org_id=mailbox["org_id"],
                mailbox_id=mailbox["id"],
                subscription_id=sub["id"],
                resource=resource,
                client_state_enc=rt.box.encrypt(state),
                expires_at=expires,
                created_at=utcnow(),
            )
        )
    return sub["id"]


def _renew_or_recreate(rt: Runtime, connector, mailbox: dict, sub: dict, now: datetime) -> None:
    from connectors.base import AuthError, BadDataError

    expires = now + LIFETIME
    try:
        connector.renew_subscription(sub["subscription_id"], expires)
    except (BadDataError, AuthError) as exc:  # 404: Graph removed it; make a new one
        log.info("subscription %s cannot be renewed (%s): recreating", sub["subscription_id"], exc)
        _create(rt, connector, mailbox, sub["resource"], now)
        return
    with write_transaction(rt.engine) as conn:
        conn.execute(update(SUB).where(SUB.c.id == sub["id"]).values(expires_at=expires))


def _drop_all(rt: Runtime, mailbox_id: int, subs: list[dict]) -> int:
    connector = None
    try:
        with read_only(rt.engine) as conn:
            mailbox, spec = _mailbox_values(conn, rt.box, mailbox_id)
        connector = build_connector(spec)
        for sub in subs:
            connector.delete_subscription(sub["subscription_id"])
    except ConnectorError as exc:
        log.info("could not delete Graph subscriptions of mailbox %s: %s", mailbox_id, exc)
    finally:
        close_quietly(connector)
    with write_transaction(rt.engine) as conn:
        conn.execute(delete(SUB).where(SUB.c.mailbox_id == mailbox_id))
    return len(subs)


# -- incoming notifications ------------------------------------------------------------


def verified(rt: Runtime, items) -> list[tuple[dict, int]]:
    """(item, mailbox id) for each notification whose clientState matches its subscription."""
    if not isinstance(items, list):
        return []
    wanted = {str(i.get("subscriptionId")) for i in items if isinstance(i, dict) and i.get("subscriptionId")}
    if not wanted:
        return []
    with read_only(rt.engine) as conn:
        rows = {r.subscription_id: r for r in conn.execute(select(SUB).where(SUB.c.subscription_id.in_(wanted)))}
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        row = rows.get(str(item.get("subscriptionId")))
        given = item.get("clientState")
        if row is None or not isinstance(given, str):
            continue
        try:
            expected = rt.box.decrypt(row.client_state_enc)
        except Exception:  # noqa: BLE001 - an unreadable secret never matches
            continue
        if hmac.compare_digest(expected.encode(), given.encode()):
            out.append((item, row.mailbox_id))
    return out


def handle_lifecycle(rt: Runtime, item: dict, mailbox_id: int) -> None:
    """reauthorizationRequired -> renew; subscriptionRemoved -> recreate; missed -> sync."""
    from sync.engine import request_sync

    event = item.get("lifecycleEvent")
    sid = str(item.get("subscriptionId"))
    if event == "missed":
        request_sync(rt.engine, mailbox_id)
        return
    if event not in ("reauthorizationRequired", "subscriptionRemoved"):
        return
    with read_only(rt.engine) as conn:
        row = conn.execute(select(SUB).where(SUB.c.subscription_id == sid)).mappings().first()
        if row is None:
            return
        mailbox, spec = _mailbox_values(conn, rt.box, mailbox_id)
    connector = None
    try:
        connector = build_connector(spec)
        if event == "reauthorizationRequired":
            _renew_or_recreate(rt, connector, mailbox, dict(row), utcnow())
        else:
            _create(rt, connector, mailbox, row["resource"], utcnow())
        # Anything may have changed while the subscription was not delivering.
        request_sync(rt.engine, mailbox_id)
    except ConnectorError as exc:
        log.warning("lifecycle %s for subscription %s failed: %s", event, sid, exc)
    finally:
        close_quietly(connector)
