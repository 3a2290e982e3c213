"""/api/v1/tokens: the caller's own API tokens (admins see everyone's)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import LoggedInDep, NowDep, RowId, SessionDep, SessionWriterDep, ViewerWriteDep
from app.models import Role
from app.schemas import ErrorBody, Page, TokenCreate, TokenCreated, TokenRead
from app.services import auth

router = APIRouter(prefix="/tokens", tags=["tokens"], responses={401: {"model": ErrorBody}})


@router.get("")
async def list_tokens(session: SessionDep, user: LoggedInDep) -> Page[TokenRead]:
    """The caller's tokens (admins: everyone's), one page."""
    rows = await auth.list_tokens(session, user_id=None if user.role is Role.admin else user.user_id)
    return Page[TokenRead](items=[TokenRead.model_validate(row) for row in rows])


@router.post("", status_code=201, responses={403: {"model": ErrorBody}})
async def create_token(
    body: TokenCreate, session: SessionDep, now: NowDep, user: SessionWriterDep
) -> TokenCreated:
    # A token can never do more than its owner; a read-only token never writes; a token never
    # mints another.
    row, token = await auth.create_token(
        session,
        user_id=user.user_id,
        name=body.name,
        read_only=body.read_only,
        now=now,
        expires_in_days=body.expires_in_days,
    )
    return TokenCreated.model_validate({**TokenRead.model_validate(row).model_dump(), "token": token})


@router.delete("/{token_id}", responses={404: {"model": ErrorBody}})
async def revoke_token(token_id: RowId, session: SessionDep, now: NowDep, user: ViewerWriteDep) -> TokenRead:
    return TokenRead.model_validate(
        await auth.revoke_token(session, token_id=token_id, principal=user, now=now)
    )
