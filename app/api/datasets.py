"""/api/v1/datasets: traces and conversation sets a workload replays (editors add and delete).

As for imports, the multipart body is read only once the caller is known to be an editor (the
route declares no File or Form parameter; its shape is in the OpenAPI document)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from app.datasets import FORMATS
from app.deps import EditorDep, ReaderDep, SessionDep
from app.errors import ValidationFailed
from app.schemas import DatasetRead, ErrorBody, Page, field_errors
from app.services import datasets

router = APIRouter(
    prefix="/datasets", tags=["datasets"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
)


class DatasetForm(BaseModel):
    """The form's fields besides the file."""

    name: str = Field(max_length=64, description="how profiles name it")
    format: str = Field(default="auto", description="auto, " + ", ".join(FORMATS))
    description: str | None = Field(default=None, max_length=2000)


def _openapi() -> dict[str, object]:
    schema = DatasetForm.model_json_schema()
    schema["properties"]["file"] = {
        "type": "string",
        "format": "binary",
        "description": "the trace or dataset",
    }
    schema["required"] = ["file", "name"]
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


@router.get("")
async def list_datasets(session: SessionDep, _: ReaderDep) -> Page[DatasetRead]:
    """Every dataset with its statistics (a site keeps a few dozen: one page)."""
    return Page[DatasetRead](items=[DatasetRead.model_validate(d) for d in await datasets.list_all(session)])


@router.post(
    "",
    status_code=201,
    responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    openapi_extra=_openapi(),
)
async def add_dataset(request: Request, session: SessionDep, user: EditorDep) -> DatasetRead:
    """Mooncake JSONL, Azure-trace CSV, ShareGPT JSON or JSONL of OpenAI messages. Validated
    whole: a bad record refuses the file with its line and field, and nothing is stored."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ValidationFailed("send the file as multipart/form-data", fields={"file": "required"})
    async with request.form(max_files=2, max_fields=8, max_part_size=datasets.MAX_BYTES) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed("no file given", fields={"file": "required"})
        try:
            fields = DatasetForm.model_validate(
                {key: value for key, value in form.multi_items() if isinstance(value, str)}
            )
        except ValidationError as exc:
            raise ValidationFailed("the request is not valid", fields=field_errors(exc)) from exc
        data = await upload.read(datasets.MAX_BYTES + 1)
    dataset = await datasets.add(
        session, name=fields.name, data=data, filename=upload.filename or "file",
        fmt=None if fields.format == "auto" else fields.format, description=fields.description, by=user.username,
    )  # fmt: skip
    return DatasetRead.model_validate(dataset)


@router.get("/{name}", responses={404: {"model": ErrorBody}})
async def read_dataset(name: str, session: SessionDep, _: ReaderDep) -> DatasetRead:
    return DatasetRead.model_validate(await datasets.get_by_name(session, name))


@router.delete("/{name}", status_code=204, responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def delete_dataset(name: str, session: SessionDep, _: EditorDep) -> Response:
    """Refused while a profile names it."""
    await datasets.delete(session, name=name)
    return Response(status_code=204)
