"""The console import page's one action, answered as JSON for app/admin/static/import.js: preview,
dry run or import of the chosen file. A module of its own because every JSON route is documented in
/docs, while the console's router (app/api/admin_contacts.py) hides its HTML pages."""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Optional

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api.admin_pages import Console, console
from app.api.deps import runtime_of
from app.api.segment_schemas import ImportPreview, ImportResult
from app.services import imports
from app.services.errors import Invalid, ServiceError, http_status

router = APIRouter(prefix="/admin", tags=["console"])


class ConsoleImport(BaseModel):
    """The console's import action: `preview` for action=preview, else `result`."""

    action: str
    preview: Optional[ImportPreview] = None
    result: Optional[ImportResult] = None


@router.post(
    "/import/run",
    response_model=ConsoleImport,
    response_class=JSONResponse,
    tags=["console"],
    summary="The console's import page: preview, dry run or import of the chosen file (session and CSRF)",
)
def import_run(
    request: Request,
    file: Annotated[UploadFile, File()],
    con: Console = Depends(console),
    action: Annotated[str, Form()] = "preview",
    entity: Annotated[str, Form()] = "contacts",
    format: Annotated[str, Form()] = "csv",
    encoding: Annotated[str, Form()] = "",
    map: Annotated[str, Form(description="JSON object: field -> column")] = "{}",
    csrf: Annotated[str, Form()] = "",
):
    """preview | dry_run | import, answered as JSON for the page's script."""
    expected = getattr(request.state, "csrf_expected", None)
    if expected is not None and not hmac.compare_digest(csrf.encode(), expected.encode()):
        raise HTTPException(403, "the form expired or came from elsewhere (CSRF check failed): reload the page")
    rt = runtime_of(request)
    try:
        try:
            mapping = {str(k): str(v) for k, v in json.loads(map or "{}").items() if v}
        except (ValueError, AttributeError):
            raise Invalid("map must be a JSON object", field="map") from None
        args = {"entity": entity, "fmt": format, "mapping": mapping, "encoding": encoding or None}
        if action == "preview":
            return {"action": action, "preview": imports.preview(rt, con.actor, file.file, **args), "result": None}
        if action in ("dry_run", "import"):
            result = imports.run_import(
                rt, con.actor, file.file, **args, dry_run=action == "dry_run", source_name=file.filename or ""
            )
            return {"action": action, "preview": None, "result": result}
        raise Invalid("action must be preview, dry_run or import", field="action")
    except ServiceError as exc:
        return JSONResponse(exc.as_dict(), status_code=http_status(exc))
