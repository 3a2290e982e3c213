"""/api/v1/endpoints: the endpoint registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.deps import (
    BoxDep,
    Cursor,
    EditorDep,
    Limit,
    NowDep,
    ReaderDep,
    RowId,
    SessionDep,
    SettingsDep,
    offset_of,
)
from app.schemas import (
    EndpointCreate,
    EndpointPage,
    EndpointRead,
    EndpointUpdate,
    ErrorBody,
    InspectionRead,
    Page,
    next_offset_cursor,
)
from app.services import endpoints, inspections, pages

router = APIRouter(
    prefix="/endpoints",
    tags=["endpoints"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)


@router.get("")
async def list_endpoints(
    session: SessionDep,
    _: ReaderDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    tag: Annotated[str | None, Query(max_length=40)] = None,
    q: Annotated[str | None, Query(max_length=100, description="Match name or model")] = None,
) -> Page[EndpointRead]:
    offset = offset_of(cursor)
    rows, total = await endpoints.list_page(session, limit=limit, offset=offset, tag=tag, q=q)
    return Page[EndpointRead](
        items=[endpoints.to_read(row) for row in rows],
        next=next_offset_cursor(offset, limit, total),
        limit=limit,
        total=total,
    )


@router.post("", status_code=201, responses={409: {"model": ErrorBody}})
async def create_endpoint(
    body: EndpointCreate, session: SessionDep, box: BoxDep, settings: SettingsDep, user: EditorDep
) -> EndpointRead:
    return endpoints.to_read(
        await endpoints.create(session, data=body, box=box, by=user.user_id, settings=settings)
    )


@router.get("/{endpoint_id}", responses={404: {"model": ErrorBody}})
async def read_endpoint(endpoint_id: RowId, session: SessionDep, _: ReaderDep) -> EndpointRead:
    return endpoints.to_read(await endpoints.get(session, endpoint_id))


@router.get("/{endpoint_id}/overview", name="api_endpoint_overview", responses={404: {"model": ErrorBody}})
async def endpoint_overview(
    endpoint_id: RowId, session: SessionDep, now: NowDep, _: ReaderDep
) -> EndpointPage:
    """The endpoint page as JSON: per profile its scorecard, 30-day cost trend and latency history
    (the same series, buckets and markers as the page draws), schedules and recent runs."""
    return await pages.endpoint_page(session, endpoint_id=endpoint_id, now=now)


@router.patch("/{endpoint_id}", responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
async def update_endpoint(
    endpoint_id: RowId,
    body: EndpointUpdate,
    session: SessionDep,
    box: BoxDep,
    settings: SettingsDep,
    _: EditorDep,
) -> EndpointRead:
    return endpoints.to_read(
        await endpoints.update(session, endpoint_id=endpoint_id, data=body, box=box, settings=settings)
    )


@router.get("/{endpoint_id}/inspections", responses={404: {"model": ErrorBody}})
async def list_inspections(endpoint_id: RowId, session: SessionDep, _: ReaderDep) -> Page[InspectionRead]:
    """The endpoint's inspections, newest first (the 20 it keeps: one page): detected engine,
    evidence, checklist."""
    await endpoints.get(session, endpoint_id)
    rows = await inspections.recent(session, endpoint_id=endpoint_id)
    return Page[InspectionRead](items=[inspections.to_read(row) for row in rows])


@router.post(
    "/{endpoint_id}/inspections", status_code=201,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 429: {"model": ErrorBody}},
)  # fmt: skip
async def inspect_endpoint(
    endpoint_id: RowId, session: SessionDep, box: BoxDep, settings: SettingsDep, now: NowDep, _: EditorDep
) -> InspectionRead:
    """Inspect now: engine detection and the conformance checklist, a few small requests (at most
    60 s). One at a time per endpoint and at most every 30 s (429 with Retry-After), never while a
    run measures it (409)."""
    row = await inspections.inspect_now(session, endpoint_id=endpoint_id, box=box, settings=settings, now=now)
    return inspections.to_read(row)


@router.delete("/{endpoint_id}", status_code=204, responses={404: {"model": ErrorBody}})
async def delete_endpoint(endpoint_id: RowId, session: SessionDep, _: EditorDep) -> Response:
    await endpoints.delete(session, endpoint_id=endpoint_id)
    return Response(status_code=204)
