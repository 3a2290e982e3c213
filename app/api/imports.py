"""/api/v1/imports: other tools' result files become runs of an endpoint (editors)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from app.deps import EditorDep, NowDep, RowId, SessionDep
from app.errors import ValidationFailed
from app.importers import FORMATS, MAX_FILES
from app.schemas import ErrorBody, ImportResult
from app.services import imports

router = APIRouter(tags=["imports"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})


@router.post(
    "/imports",
    status_code=201,
    responses={404: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def import_results(
    session: SessionDep,
    now: NowDep,
    user: EditorDep,
    files: Annotated[list[UploadFile], File(description="the tool's result files, all of one tool")],
    endpoint_id: Annotated[RowId, Form()],
    format: Annotated[str, Form(description=", ".join(FORMATS))] = "auto",
    profile: Annotated[str | None, Form(max_length=64, description="judge by this profile's SLO")] = None,
    tool_version: Annotated[
        str | None, Form(max_length=50, description="the tool's version, for files that do not say it")
    ] = None,
) -> ImportResult:
    """AIPerf's profile_export_aiperf.json (with profile_export.jsonl records), GenAI-Perf's
    profile_export_genai_perf.json, `vllm bench serve --save-result` JSON, GuideLLM's
    benchmarks.json, inference-perf's report files. A file that does not parse is refused with
    its line and field, and nothing is stored."""
    if len(files) > MAX_FILES:
        raise ValidationFailed(f"at most {MAX_FILES} files", fields={"files": f"at most {MAX_FILES}"})
    read = [(upload.filename or f"file{i}", await upload.read()) for i, upload in enumerate(files)]
    return await imports.import_run(
        session, endpoint_id=endpoint_id, files=read, fmt=format, profile_name=profile or None,
        tool_version=tool_version or None, by=user.user_id, now=now,
    )  # fmt: skip
