"""create_app(settings): the FastAPI application. Its lifespan owns every resource."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
import plotly
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.api import router as api_router
from app.bootstrap import runtime
from app.config import Settings
from app.deps import Clock, ReaderDep, SessionDep, system_clock
from app.errors import AppError, PasswordChangeRequired, TooSoon, Unauthorized
from app.middleware import Guard, SecurityHeaders
from app.paths import resource_dir
from app.schemas import Health
from app.security import keyring
from app.security.crypto import SecretBox
from app.services import comparisons, telemetry
from app.web import router as web_router
from app.web.templating import render_error

log = logging.getLogger("smartbench")


UPLOADS = re.compile(
    r"/api/v1/imports|/endpoints/\d+/import|/api/v1/datasets|/datasets|/api/v1/agent/runs/\d+/steps(/\d+/parts)?"
)  # paths that take files (an agent's step is one)


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, app.state.secret_box) as opened:
            comparisons.forget()  # cached by run id: another database's ids name other runs
            app.state.engine = opened.engine
            app.state.sessionmaker = opened.sessionmaker
            executor = opened.executor(clock)
            app.state.executor = executor
            if settings.runs.run_executor:
                executor.start()
            try:
                yield
            finally:
                await executor.stop()

    app = FastAPI(
        title="smartbench",
        version=__version__,
        description="Probes LLM inference endpoints and keeps their SMART scorecards and cost history.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.secret_box = SecretBox(keyring.encryption_keyring(settings))

    app.add_middleware(
        Guard,
        max_body_bytes=settings.limits.max_body_bytes,
        error_page=render_error,
        uploads=UPLOADS,
        max_upload_bytes=settings.limits.max_import_bytes,
    )
    app.add_middleware(SecurityHeaders, hsts=settings.access.https)  # outermost: every answer gets them
    app.mount(
        "/static/vendor/swagger", StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static")
    )
    # plotly.js from the installed plotly package: the charts never depend on a CDN.
    app.mount("/static/vendor/plotly", StaticFiles(directory=Path(plotly.__file__).parent / "package_data"))
    app.mount("/static", StaticFiles(directory=resource_dir("static")), name="static")
    app.include_router(api_router)
    app.include_router(web_router)
    _install_error_handlers(app)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics(request: Request, session: SessionDep, _: ReaderDep) -> PlainTextResponse:
        """Prometheus text: runs by status, endpoints, schedules, runs executing in this process."""
        text = await telemetry.prometheus_text(session, active_here=len(request.app.state.executor.active))
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get("/healthz", tags=["health"])
    async def healthz(request: Request) -> JSONResponse:
        try:
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            body = Health(status="error", database="error", version=__version__, detail=type(exc).__name__)
            return JSONResponse(body.model_dump(), status_code=503)
        return JSONResponse(Health(status="ok", database="ok", version=__version__).model_dump())

    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path in ("/healthz", "/metrics")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> Response:
        headers: dict[str, str] = {}
        if _wants_json(request):
            if isinstance(exc, Unauthorized):
                headers["WWW-Authenticate"] = "Bearer"
            if isinstance(exc, TooSoon):
                headers["Retry-After"] = str(exc.retry_after)
            return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)
        if isinstance(exc, PasswordChangeRequired):
            return RedirectResponse(request.url_for("password_page").path, status_code=303)
        return render_error(
            request, exc.status_code, exc.message, login_redirect=isinstance(exc, Unauthorized)
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        fields: dict[str, str] = {}
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            key = ".".join(loc) or "body"
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                msg = "unknown field"
            fields.setdefault(key, msg)
        body = {
            "error": {"code": "validation_failed", "message": "the request is not valid", "fields": fields}
        }
        if _wants_json(request):
            return JSONResponse(body, status_code=422)
        return render_error(
            request, 422, "The request is not valid: " + "; ".join(f"{k}: {v}" for k, v in fields.items())
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, f"http_{exc.status_code}"
        )
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = "nothing here"
        if _wants_json(request):
            return JSONResponse(
                {"error": {"code": code, "message": message}},
                status_code=exc.status_code,
                headers=exc.headers,
            )
        return render_error(request, exc.status_code, message)
