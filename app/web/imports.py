"""The import form on an endpoint: other tools' result files become a run."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from app.deps import EditorDep, NowDep, RowId, SessionDep, SettingsDep
from app.errors import AppError
from app.importers import FORMATS, MAX_FILES
from app.services import endpoints, imports, profiles
from app.web.forms import form_str
from app.web.templating import render

router = APIRouter(prefix="/endpoints")


async def _page(
    request: Request, session: SessionDep, endpoint_id: int, values: dict[str, str], errors: dict[str, str],
    status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    endpoint = endpoints.to_read(await endpoints.get(session, endpoint_id))
    names = [(p.name, p.name) for p in await profiles.list_all(session)]
    formats = [(f, "recognise the files" if f == "auto" else f) for f in FORMATS]
    return render(
        request,
        "endpoints/import.html",
        {"endpoint": endpoint, "values": values, "errors": errors, "formats": formats, "profiles": names},
        status_code=status_code,
    )


@router.get("/{endpoint_id}/import", name="endpoint_import")
async def import_page(
    request: Request, endpoint_id: RowId, session: SessionDep, _: EditorDep
) -> HTMLResponse:
    return await _page(request, session, endpoint_id, {"format": "auto"}, {})


@router.post("/{endpoint_id}/import")
async def import_files(
    request: Request,
    endpoint_id: RowId,
    session: SessionDep,
    now: NowDep,
    user: EditorDep,
    settings: SettingsDep,
) -> Response:
    async with request.form(max_files=MAX_FILES) as form:  # closes the spooled uploads
        values = {key: form_str(form, key) for key in ("format", "profile", "tool_version")}
        uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile) and item.filename]
        files = [(upload.filename or "file", await upload.read()) for upload in uploads]
    if not files:
        return await _page(request, session, endpoint_id, values, {"files": "choose at least one file"}, 400)
    try:
        result = await imports.import_run(
            session, endpoint_id=endpoint_id, files=files, fmt=values["format"] or "auto",
            profile_name=values["profile"] or None, tool_version=values["tool_version"].strip()[:50] or None,
            by=user.user_id, now=now, limits=imports.ImportLimits.from_settings(settings),
        )  # fmt: skip
    except AppError as exc:
        if exc.status_code == 404 and not exc.fields:
            raise
        return await _page(request, session, endpoint_id, values, exc.fields or {"file": exc.message}, 400)
    return RedirectResponse(request.url_for("run_page", run_id=result.run_id).path, status_code=303)
