"""Dataset pages: the stored traces and conversation sets with their statistics, an upload
form (a refused file re-renders with its file, line and field), a page per dataset."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from app.datasets import FORMATS
from app.deps import EditorDep, PrincipalDep, ReaderDep, SessionDep
from app.errors import AppError
from app.schemas import DatasetRead
from app.services import datasets
from app.web import figures
from app.web.forms import form_str
from app.web.templating import render

router = APIRouter(prefix="/datasets")

FORMAT_CHOICES = [("auto", "recognise the file"), *((f, f) for f in FORMATS)]


async def _list(
    request: Request,
    session: SessionDep,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> HTMLResponse:
    items = [DatasetRead.model_validate(d) for d in await datasets.list_all(session)]
    return render(
        request,
        "datasets/list.html",
        {"datasets": items, "values": values, "errors": errors, "formats": FORMAT_CHOICES},
        status_code=status_code,
    )


@router.get("", name="datasets_list")
async def list_page(request: Request, session: SessionDep, _: ReaderDep) -> HTMLResponse:
    return await _list(request, session, {"format": "auto"}, {})


@router.post("")
async def upload(request: Request, session: SessionDep, user: EditorDep) -> Response:
    async with request.form(max_files=2, max_part_size=datasets.MAX_BYTES) as form:
        values = {key: form_str(form, key) for key in ("name", "format", "description")}
        upload = form.get("file")
        data = (
            await upload.read(datasets.MAX_BYTES + 1)
            if isinstance(upload, UploadFile) and upload.filename
            else None
        )
        filename = upload.filename if isinstance(upload, UploadFile) and upload.filename else "file"
    if data is None:
        return await _list(request, session, values, {"file": "choose a file"}, 400)
    try:
        stored = await datasets.add(
            session, name=values["name"].strip(), data=data, filename=filename,
            fmt=None if values["format"] in ("", "auto") else values["format"],
            description=values["description"].strip()[:2000] or None, by=user.username,
        )  # fmt: skip
    except AppError as exc:
        return await _list(request, session, values, exc.fields or {"file": exc.message}, 400)
    return RedirectResponse(request.url_for("dataset_page", name=stored.name).path, status_code=303)


@router.get("/{name}", name="dataset_page")
async def dataset_page(
    request: Request, name: str, session: SessionDep, principal: PrincipalDep, _: ReaderDep
) -> HTMLResponse:
    found = DatasetRead.model_validate(await datasets.get_by_name(session, name))
    users = await datasets.users_of(session, name)
    charts = await asyncio.to_thread(figures.dataset_lengths, found.stats)
    return render(request, "datasets/detail.html", {"dataset": found, "users": users, "charts": charts})


@router.post("/{name}/delete", name="dataset_delete")
async def delete(request: Request, name: str, session: SessionDep, _: EditorDep) -> Response:
    try:
        await datasets.delete(session, name=name)
    except AppError as exc:
        if exc.status_code == 404:
            raise
        found = DatasetRead.model_validate(await datasets.get_by_name(session, name))
        return render(
            request, "datasets/detail.html",
            {"dataset": found, "users": await datasets.users_of(session, name), "charts": {},
             "error": exc.fields.get("name") or exc.message},
            status_code=400,
        )  # fmt: skip
    return RedirectResponse(request.url_for("datasets_list").path, status_code=303)
