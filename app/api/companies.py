"""Companies and their shared timeline."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from app.api.deps import CallerDep, RuntimeDep, read_conn
from app.api.schemas import CompanyDetail, TimelinePage
from app.services import timeline

router = APIRouter(tags=["companies"])


@router.get("/api/companies/{company_id}", response_model=CompanyDetail)
def company(caller: CallerDep, rt: RuntimeDep, company_id: int):
    with read_conn(rt) as conn:
        data = timeline.company(conn, caller.org_id, company_id)
        if data is None:
            raise HTTPException(404, "no such company")
        return data


@router.get("/api/companies/{company_id}/timeline", response_model=TimelinePage)
def company_timeline(
    caller: CallerDep,
    rt: RuntimeDep,
    company_id: int,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
):
    with read_conn(rt) as conn:
        if timeline.company(conn, caller.org_id, company_id) is None:
            raise HTTPException(404, "no such company")
        try:
            return timeline.company_timeline(conn, caller.org_id, company_id, cursor, limit)
        except timeline.BadCursor as exc:
            raise HTTPException(400, str(exc)) from exc
