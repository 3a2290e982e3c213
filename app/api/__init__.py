"""REST routers under /api/v1: parse, authorize, delegate to services, serialize."""

from fastapi import APIRouter

from app.api import (
    agents,
    alerts,
    datasets,
    endpoints,
    imports,
    plan,
    profiles,
    runs,
    schedules,
    site,
    tokens,
)

router = APIRouter(prefix="/api/v1")
router.include_router(endpoints.router)
router.include_router(tokens.router)
router.include_router(profiles.router)
router.include_router(datasets.router)
router.include_router(runs.router)
router.include_router(schedules.router)
router.include_router(site.router)
router.include_router(plan.router)
router.include_router(alerts.router)
router.include_router(imports.router)
router.include_router(agents.router)
