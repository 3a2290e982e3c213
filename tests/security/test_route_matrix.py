"""Every route of the application, for every kind of caller. A route that is not in MATRIX fails
the test: whoever adds a route decides here who may call it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import bearer

# public       anyone                           reader   logged in (or SMARTBENCH_PUBLIC_READ)
# form         anyone, with the form's CSRF     write    any role, never a read-only token
# editor       editor or admin                  admin    admin only
# admin_read   admin (read-only token too)      session  a browser session, never a token
# agent        an agent token only (tests/test_agents.py), no user's token or session
MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/openapi.json"): "public",
    ("GET", "/api/v1/endpoints"): "reader",
    ("POST", "/api/v1/endpoints"): "editor",
    ("GET", "/api/v1/endpoints/{endpoint_id}"): "reader",
    ("GET", "/api/v1/endpoints/{endpoint_id}/overview"): "reader",
    ("PATCH", "/api/v1/endpoints/{endpoint_id}"): "editor",
    ("DELETE", "/api/v1/endpoints/{endpoint_id}"): "editor",
    ("GET", "/api/v1/tokens"): "reader",
    ("POST", "/api/v1/tokens"): "session",
    ("DELETE", "/api/v1/tokens/{token_id}"): "write",
    ("GET", "/api/v1/profiles"): "reader",
    ("POST", "/api/v1/profiles"): "editor",
    ("GET", "/api/v1/profiles/{name}"): "reader",
    ("PATCH", "/api/v1/profiles/{name}"): "editor",
    ("DELETE", "/api/v1/profiles/{name}"): "editor",
    ("GET", "/api/v1/datasets"): "reader",
    ("POST", "/api/v1/datasets"): "editor",
    ("GET", "/api/v1/datasets/{name}"): "reader",
    ("DELETE", "/api/v1/datasets/{name}"): "editor",
    ("POST", "/api/v1/endpoints/{endpoint_id}/runs"): "editor",
    ("GET", "/api/v1/runs"): "reader",
    ("GET", "/api/v1/runs/{run_id}"): "reader",
    ("POST", "/api/v1/runs/{run_id}/cancel"): "editor",
    ("DELETE", "/api/v1/runs/{run_id}"): "admin",
    ("GET", "/api/v1/runs/{run_id}/samples"): "reader",
    ("GET", "/api/v1/runs/{run_id}/comparison"): "reader",
    ("GET", "/api/v1/endpoints/{endpoint_id}/change-points"): "reader",
    ("GET", "/api/v1/endpoints/{endpoint_id}/period-comparison"): "reader",
    ("GET", "/api/v1/agent-tokens"): "admin",
    ("POST", "/api/v1/agent-tokens"): "admin",
    ("DELETE", "/api/v1/agent-tokens/{token_id}"): "admin",
    ("GET", "/api/v1/agents"): "reader",
    ("POST", "/api/v1/agent/register"): "agent",
    ("POST", "/api/v1/agent/heartbeat"): "agent",
    ("POST", "/api/v1/agent/claim"): "agent",
    ("POST", "/api/v1/agent/runs/{run_id}/steps"): "agent",
    ("POST", "/api/v1/agent/runs/{run_id}/steps/{step_index}/parts"): "agent",
    ("POST", "/api/v1/agent/runs/{run_id}/end"): "agent",
    ("POST", "/api/v1/agent/leave"): "agent",
    ("GET", "/api/v1/endpoints/{endpoint_id}/scorecard"): "reader",
    ("GET", "/api/v1/scorecards"): "reader",
    ("GET", "/api/v1/compare"): "reader",
    ("GET", "/api/v1/trends/cost"): "reader",
    ("GET", "/api/v1/schedules"): "reader",
    ("POST", "/api/v1/schedules"): "editor",
    ("PATCH", "/api/v1/schedules/{schedule_id}"): "editor",
    ("DELETE", "/api/v1/schedules/{schedule_id}"): "editor",
    ("GET", "/api/v1/settings/site"): "admin_read",
    ("PATCH", "/api/v1/settings/site"): "admin",
    ("GET", "/api/v1/settings/lockouts"): "admin_read",
    ("DELETE", "/api/v1/settings/lockouts"): "admin",
    ("GET", "/"): "reader",
    ("GET", "/agents"): "reader",
    ("POST", "/agents/tokens"): "admin",
    ("POST", "/agents/tokens/{token_id}/revoke"): "admin",
    ("GET", "/trends"): "reader",
    ("GET", "/compare"): "reader",
    ("GET", "/login"): "public",
    ("POST", "/login"): "form",
    ("POST", "/logout"): "form",
    ("GET", "/account/password"): "reader",
    ("POST", "/account/password"): "write",
    ("GET", "/settings/tokens"): "reader",
    ("POST", "/settings/tokens"): "session",
    ("POST", "/settings/tokens/{token_id}/revoke"): "write",
    ("GET", "/endpoints"): "reader",
    ("GET", "/endpoints/new"): "editor",
    ("POST", "/endpoints/new"): "editor",
    ("GET", "/endpoints/{endpoint_id}"): "reader",
    ("GET", "/endpoints/{endpoint_id}/edit"): "editor",
    ("POST", "/endpoints/{endpoint_id}/edit"): "editor",
    ("POST", "/endpoints/{endpoint_id}/delete"): "editor",
    ("POST", "/endpoints/{endpoint_id}/inspect"): "editor",
    ("GET", "/api/v1/endpoints/{endpoint_id}/inspections"): "reader",
    ("POST", "/api/v1/endpoints/{endpoint_id}/inspections"): "editor",
    ("GET", "/docs"): "public",
    ("GET", "/profiles"): "reader",
    ("GET", "/profiles/new"): "editor",
    ("POST", "/profiles/new"): "editor",
    ("GET", "/profiles/{name}/edit"): "editor",
    ("POST", "/profiles/{name}/edit"): "editor",
    ("GET", "/profiles/{name}"): "reader",
    ("GET", "/datasets"): "reader",
    ("POST", "/datasets"): "editor",
    ("GET", "/datasets/{name}"): "reader",
    ("POST", "/datasets/{name}/delete"): "editor",
    ("POST", "/endpoints/{endpoint_id}/runs"): "editor",
    ("POST", "/runs/{run_id}/cancel"): "editor",
    ("POST", "/runs/{run_id}/delete"): "admin",
    ("GET", "/runs/{run_id}"): "reader",
    ("GET", "/runs/{run_id}/progress"): "reader",
    ("POST", "/endpoints/{endpoint_id}/schedules"): "editor",
    ("POST", "/schedules/{schedule_id}/toggle"): "editor",
    ("POST", "/schedules/{schedule_id}/delete"): "editor",
    ("GET", "/settings/security"): "admin",
    ("POST", "/settings/security"): "admin",
    ("POST", "/settings/security/lockouts/lift"): "admin",
    ("GET", "/metrics"): "reader",
    ("GET", "/plan"): "reader",
    ("GET", "/api/v1/plan"): "reader",
    ("GET", "/healthz"): "public",
    ("GET", "/api/v1/alerts"): "reader",
    ("GET", "/api/v1/webhooks"): "admin_read",
    ("POST", "/api/v1/webhooks"): "admin",
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): "admin",
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): "admin",
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): "admin_read",
    ("POST", "/api/v1/imports"): "editor",
    ("GET", "/endpoints/{endpoint_id}/import"): "editor",
    ("POST", "/endpoints/{endpoint_id}/import"): "editor",
    ("GET", "/settings/alerts"): "admin",
    ("POST", "/settings/alerts"): "admin",
    ("POST", "/settings/alerts/webhooks"): "admin",
    ("POST", "/settings/alerts/webhooks/{webhook_id}/toggle"): "admin",
    ("POST", "/settings/alerts/webhooks/{webhook_id}/delete"): "admin",
}

CALLERS = ("anonymous", "viewer", "editor", "admin", "editor-read-only")
ALLOWED: dict[str, set[str]] = {
    "public": set(CALLERS),
    "form": set(CALLERS),
    "reader": {"viewer", "editor", "admin", "editor-read-only"},
    "write": {"viewer", "editor", "admin"},
    "editor": {"editor", "admin"},
    "admin": {"admin"},
    "admin_read": {"admin"},
    "session": set(),
    "agent": set(),
}
PARAMS = {"endpoint_id": "999999", "token_id": "999999", "run_id": "999999", "schedule_id": "999999",
          "webhook_id": "999999", "name": "no-such-profile", "step_index": "0"}  # fmt: skip


def app_routes(app: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if type(route).__name__ == "_IncludedRouter":  # FastAPI's included routers, flattened
            pairs = [(c.path, c.methods) for c in route.effective_route_contexts()]
        elif getattr(route, "methods", None):
            pairs = [(route.path, route.methods)]
        else:
            continue  # mounts: static files
        for path, methods in pairs:
            found |= {(method, path) for method in methods if method != "HEAD"}
    return found


def refused(response: httpx.Response) -> bool:
    if response.status_code in (401, 403):
        return True
    return response.status_code == 303 and response.headers["location"].startswith("/login")


async def test_every_route_is_in_the_matrix(app) -> None:
    routes = app_routes(app)
    assert routes - set(MATRIX) == set(), "new routes: add them to MATRIX with who may call them"
    assert set(MATRIX) - routes == set(), "MATRIX names routes that no longer exist"


@pytest.mark.slow
async def test_each_caller_reaches_exactly_what_its_role_allows(
    app, client: httpx.AsyncClient, people
) -> None:
    headers = {
        "anonymous": {},
        "viewer": await bearer(client, "viewer"),
        "editor": await bearer(client, "editor"),
        "admin": await bearer(client, "admin"),
        "editor-read-only": await bearer(client, "editor", read_only=True),
    }
    wrong: list[str] = []
    for (method, path), level in sorted(MATRIX.items()):
        url = path.format(**PARAMS)
        for caller in CALLERS:
            kwargs: dict[str, Any] = {"headers": headers[caller]}
            if method != "GET":
                kwargs["json" if path.startswith("/api/") else "data"] = {}
            response = await client.request(method, url, **kwargs)
            if response.status_code >= 500:
                wrong.append(f"{caller} {method} {path}: {response.status_code}")
            elif level != "form" and refused(response) == (caller in ALLOWED[level]):
                wrong.append(f"{caller} {method} {path} ({level}): {response.status_code}")
    assert wrong == []
