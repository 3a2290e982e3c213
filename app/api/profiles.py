"""/api/v1/profiles: workload profiles, addressed by name."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import EditorDep, ReaderDep, SessionDep, SettingsDep
from app.schemas import ErrorBody, Page, ProfileCreate, ProfileRead, ProfileUpdate
from app.services import profiles

router = APIRouter(
    prefix="/profiles", tags=["profiles"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
)


@router.get("")
async def list_profiles(session: SessionDep, _: ReaderDep) -> Page[ProfileRead]:
    """Every profile (built-in first; a site keeps a few dozen at most: one page)."""
    return Page[ProfileRead](items=[ProfileRead.model_validate(p) for p in await profiles.list_all(session)])


@router.post("", status_code=201, responses={422: {"model": ErrorBody}})
async def create_profile(
    body: ProfileCreate, session: SessionDep, settings: SettingsDep, _: EditorDep
) -> ProfileRead:
    return ProfileRead.model_validate(await profiles.create(session, data=body, settings=settings))


@router.get("/{name}", responses={404: {"model": ErrorBody}})
async def read_profile(name: str, session: SessionDep, _: ReaderDep) -> ProfileRead:
    return ProfileRead.model_validate(await profiles.get_by_name(session, name))


@router.patch("/{name}", responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def update_profile(
    name: str, body: ProfileUpdate, session: SessionDep, settings: SettingsDep, _: EditorDep
) -> ProfileRead:
    return ProfileRead.model_validate(await profiles.update(session, name=name, data=body, settings=settings))


@router.delete("/{name}", status_code=204, responses={404: {"model": ErrorBody}})
async def delete_profile(name: str, session: SessionDep, _: EditorDep) -> Response:
    await profiles.delete(session, name=name)
    return Response(status_code=204)
