"""Microsoft Graph change and lifecycle notifications.

Graph first validates each URL by POSTing ?validationToken=...: the answer is
that token, text/plain, 200, within 10 seconds. Notifications are answered
202 at once; the work (making the mailbox due, renewing a subscription)
happens after the answer. Items whose clientState does not match the stored
(encrypted) one are ignored.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from app.services import graph_notifications

router = APIRouter(tags=["microsoft-graph"])
MAX_BODY = 1 << 20


def _validation(request: Request) -> Response | None:
    token = request.query_params.get("validationToken")
    if token is None:
        return None
    return PlainTextResponse(token[:1024], status_code=200, headers={"X-Content-Type-Options": "nosniff"})


async def _items(request: Request):
    # This endpoint is public: never hold more than MAX_BODY of a body in memory.
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get("value") if isinstance(data, dict) else None


def _wake(request: Request) -> None:
    service = getattr(request.app.state, "sync_service", None)
    if service is not None:
        service.wake()


async def _accept(request: Request, background: BackgroundTasks, handle) -> Response:
    """Graph's contract for both endpoints: echo a validationToken, else take the
    items and answer 202 at once; `handle(rt, items)` runs afterwards."""
    answer = _validation(request)
    if answer is not None:
        return answer
    items = await _items(request)
    if items is None:
        return Response(status_code=400)
    rt = request.app.state.runtime

    def act() -> None:
        handle(rt, items)
        _wake(request)

    background.add_task(run_in_threadpool, act)
    return Response(status_code=202)


# Text, not JSON: the validation token echoed, or an empty 202/400.
@router.post("/graph/notifications", response_class=PlainTextResponse, include_in_schema=False)
async def notifications(request: Request, background: BackgroundTasks) -> Response:
    return await _accept(request, background, graph_notifications.changes_notified)


@router.post("/graph/lifecycle", response_class=PlainTextResponse, include_in_schema=False)
async def lifecycle(request: Request, background: BackgroundTasks) -> Response:
    return await _accept(request, background, graph_notifications.lifecycle_notified)
