"""HTML routers: parse forms, delegate to services, render templates."""

from fastapi import APIRouter

from app.web import account, docs, endpoints, pages

router = APIRouter(include_in_schema=False)
router.include_router(pages.router)
router.include_router(account.router)
router.include_router(endpoints.router)
router.include_router(docs.router)
