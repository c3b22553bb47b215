"""Microsoft Graph notifications, once the webhook has answered Graph (app/api/graph_webhooks.py).

Only items whose clientState matches their subscription's count (sync/graph_push.py: verified).
A change makes the mailbox due; the delta sync does the work.
"""

from __future__ import annotations

import logging

from app.runtime import Runtime
from sync.engine import request_sync
from sync.graph_push import handle_lifecycle, verified

log = logging.getLogger("threadline.graph_webhooks")


def changes_notified(rt: Runtime, items) -> None:
    for mailbox_id in sorted({mid for _, mid in verified(rt, items)}):
        request_sync(rt.engine, mailbox_id)


def lifecycle_notified(rt: Runtime, items) -> None:
    for item, mailbox_id in verified(rt, items):
        try:
            handle_lifecycle(rt, item, mailbox_id)
        except Exception:  # noqa: BLE001 - one item never stops the others
            log.exception("Graph lifecycle notification for mailbox %s failed", mailbox_id)
