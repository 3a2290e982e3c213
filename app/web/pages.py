"""The home page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from app.deps import ReaderDep

router = APIRouter()


@router.get("/")
async def home(request: Request, _: ReaderDep) -> RedirectResponse:
    return RedirectResponse(request.url_for("endpoints_list").path, status_code=303)
