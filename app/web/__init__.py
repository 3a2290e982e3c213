"""HTML routers: parse forms, delegate to services, render templates."""

from fastapi import APIRouter

from app.web import (
    account,
    agents,
    alerts,
    dashboard,
    datasets,
    docs,
    endpoints,
    imports,
    plan,
    profiles,
    runs,
    schedules,
    site,
)

router = APIRouter(include_in_schema=False)
router.include_router(dashboard.router)
router.include_router(account.router)
router.include_router(endpoints.router)
router.include_router(docs.router)
router.include_router(profiles.router)
router.include_router(datasets.router)
router.include_router(runs.router)
router.include_router(schedules.router)
router.include_router(site.router)
router.include_router(plan.router)
router.include_router(agents.router)
router.include_router(alerts.router)
router.include_router(imports.router)
