"""/api/v1/alerts (regressions, recoveries, down and up) and /api/v1/webhooks (admins: where
alerts are delivered, and how each delivery went)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import (
    AdminDep,
    AdminReaderDep,
    BoxDep,
    Cursor,
    Limit,
    LocationFilter,
    NowDep,
    ReaderDep,
    RowId,
    SessionDep,
    SettingsDep,
    offset_of,
)
from app.schemas import (
    AlertPage,
    DeliveryRead,
    ErrorBody,
    Page,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)
from app.services import alerts, webhooks

router = APIRouter(tags=["alerts"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})


@router.get("/alerts", name="alerts_api")
async def list_alerts(
    session: SessionDep,
    _: ReaderDep,
    endpoint_id: RowId | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    location: LocationFilter = None,
) -> AlertPage:
    """The newest alerts (one endpoint's with `endpoint_id`, one location's with `location`),
    and those still open: regressions not recovered yet, endpoints still down, agents offline."""
    before = offset_of(cursor) or None  # keyset: the id of the last alert of the previous page
    recent, standing = await alerts.listing(
        session, endpoint_id=endpoint_id, limit=limit + 1, before=before, location=location
    )
    following = str(recent[limit - 1].id) if len(recent) > limit else None
    return AlertPage(items=recent[:limit], next=following, limit=limit, open=standing)


@router.get("/webhooks")
async def list_webhooks(session: SessionDep, _: AdminReaderDep) -> Page[WebhookRead]:
    """Every webhook (a site has a handful: one page)."""
    return Page[WebhookRead](items=[webhooks.to_read(hook) for hook in await webhooks.list_all(session)])


@router.post("/webhooks", status_code=201, responses={409: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def create_webhook(
    body: WebhookCreate, session: SessionDep, settings: SettingsDep, box: BoxDep, now: NowDep, user: AdminDep
) -> WebhookCreated:
    """A json webhook's signing secret is in this answer only (generated unless given)."""
    return await webhooks.create(session, settings, box, body, by=user.username, now=now)


@router.patch("/webhooks/{webhook_id}", responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def update_webhook(
    webhook_id: RowId,
    body: WebhookUpdate,
    session: SessionDep,
    settings: SettingsDep,
    box: BoxDep,
    _: AdminDep,
) -> WebhookRead:
    return webhooks.to_read(await webhooks.update_one(session, settings, box, webhook_id, body))


@router.delete("/webhooks/{webhook_id}", status_code=204, responses={404: {"model": ErrorBody}})
async def delete_webhook(webhook_id: RowId, session: SessionDep, _: AdminDep) -> Response:
    await webhooks.delete(session, webhook_id)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", responses={404: {"model": ErrorBody}})
async def list_deliveries(
    webhook_id: RowId,
    session: SessionDep,
    _: AdminReaderDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeliveryRead]:
    """The webhook's deliveries, newest first."""
    await webhooks.get(session, webhook_id)
    before = offset_of(cursor) or None  # keyset: the id of the last delivery of the previous page
    found = await webhooks.deliveries(session, webhook_id=webhook_id, limit=limit + 1, before=before)
    following = str(found[limit - 1].id) if len(found) > limit else None
    return Page[DeliveryRead](items=found[:limit], next=following, limit=limit)
