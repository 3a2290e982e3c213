"""/api/v1/settings: site settings and login back-offs (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.deps import AdminDep, AdminReaderDep, NowDep, SessionDep, SettingsDep
from app.errors import NotFound
from app.schemas import ErrorBody, Lockout, Page, SiteSettingsRead, SiteSettingsUpdate
from app.services import site, throttle

router = APIRouter(
    prefix="/settings", tags=["settings"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
)


@router.get("/site")
async def read_site(session: SessionDep, settings: SettingsDep, _: AdminReaderDep) -> SiteSettingsRead:
    """The outbound policy and the profile limits in force (saved values over the environment's)."""
    return (await site.load(session, settings)).read()


@router.patch("/site", responses={422: {"model": ErrorBody}})
async def update_site(
    body: SiteSettingsUpdate, session: SessionDep, settings: SettingsDep, user: AdminDep
) -> SiteSettingsRead:
    return (await site.save(session, settings, body, by=user.username)).read()


@router.get("/lockouts")
async def list_lockouts(session: SessionDep, now: NowDep, _: AdminReaderDep) -> Page[Lockout]:
    """Accounts and client addresses that failed logins have slowed down (one page)."""
    rows = await throttle.blocked(session, now)
    return Page[Lockout](items=[Lockout.model_validate(row, from_attributes=True) for row in rows])


@router.delete("/lockouts", status_code=204, responses={404: {"model": ErrorBody}})
async def lift_lockout(
    key: Annotated[str, Query(max_length=200, description="account:<name> or address:<ip>")],
    session: SessionDep,
    _: AdminDep,
) -> Response:
    if not await throttle.lift(session, key):
        raise NotFound(f"no back-off on {key!r}")
    return Response(status_code=204)
