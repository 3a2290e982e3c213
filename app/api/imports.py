"""/api/v1/imports: other tools' result files become runs of an endpoint (editors).

The multipart body is read only after the caller is known to be an editor: FastAPI reads a
route's declared File and Form parameters before any dependency runs, so this route declares
none and reads the form itself (its shape is in the OpenAPI document all the same). A stranger's
upload is answered 401 from the headers alone, and the connection closed (app/middleware.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from app.deps import EditorDep, NowDep, RowId, SessionDep, SettingsDep
from app.errors import ValidationFailed
from app.importers import FORMATS, MAX_FILES
from app.schemas import ErrorBody, ImportResult, field_errors
from app.services import imports

router = APIRouter(tags=["imports"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})


class ImportForm(BaseModel):
    """The form's fields besides the files."""

    endpoint_id: RowId
    format: str = Field(default="auto", description=", ".join(FORMATS))
    profile: str | None = Field(default=None, max_length=64, description="judge by this profile's SLO")
    tool_version: str | None = Field(
        default=None, max_length=50, description="the tool's version, for files that do not say it"
    )


def _openapi() -> dict[str, object]:
    schema = ImportForm.model_json_schema()
    schema["properties"]["files"] = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "the tool's result files, all of one tool",
    }
    schema["required"] = ["files", "endpoint_id"]
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


@router.post(
    "/imports",
    status_code=201,
    responses={404: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    openapi_extra=_openapi(),
)
async def import_results(
    request: Request, session: SessionDep, now: NowDep, user: EditorDep, settings: SettingsDep
) -> ImportResult:
    """AIPerf's profile_export_aiperf.json (with profile_export.jsonl records), GenAI-Perf's
    profile_export_genai_perf.json, `vllm bench serve --save-result` JSON, GuideLLM's
    benchmarks.json, inference-perf's report files. A file that does not parse is refused with
    its line and field, and nothing is stored."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ValidationFailed("send the files as multipart/form-data", fields={"files": "required"})
    async with request.form(max_files=MAX_FILES + 1, max_fields=16) as form:  # closes the spooled uploads
        uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        if not uploads:
            raise ValidationFailed("no file given", fields={"files": "at least one file"})
        if len(uploads) > MAX_FILES:
            raise ValidationFailed(f"at most {MAX_FILES} files", fields={"files": f"at most {MAX_FILES}"})
        try:
            fields = ImportForm.model_validate(
                {key: value for key, value in form.multi_items() if isinstance(value, str)}
            )
        except ValidationError as exc:
            raise ValidationFailed("the request is not valid", fields=field_errors(exc)) from exc
        read = [(upload.filename or f"file{i}", await upload.read()) for i, upload in enumerate(uploads)]
    return await imports.import_run(
        session, endpoint_id=fields.endpoint_id, files=read, fmt=fields.format, profile_name=fields.profile or None,
        tool_version=fields.tool_version or None, by=user.user_id, now=now,
        limits=imports.ImportLimits.from_settings(settings),
    )  # fmt: skip
