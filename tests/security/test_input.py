"""Strict input: nulls and missing fields answer 422 naming the field, ids past the columns'
range answer 422, bodies over the limit 413 before parsing, a server error is one log line
without SQL parameters."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from app.deps import SessionDep
from tests.conftest import bearer, login


@pytest.mark.parametrize(
    "field", ["name", "load_levels", "load_mode", "title", "input_tokens_mean", "warmup_requests"]
)
async def test_null_in_a_profile_patch_names_the_field(make_app, field: str) -> None:
    async with make_app() as (_app, client, _clock):
        auth = await bearer(client, "editor")
        answer = await client.patch("/api/v1/profiles/chat", json={field: None}, headers=auth)
        assert answer.status_code == 422
        assert field in answer.json()["error"]["fields"]


async def test_enabled_null_is_a_validation_error_not_a_conflict(make_app) -> None:
    async with make_app() as (_app, client, _clock):
        auth = await bearer(client, "editor")
        created = await client.post(
            "/api/v1/endpoints",
            json={"name": "e1", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
            headers=auth,
        )
        answer = await client.patch(
            f"/api/v1/endpoints/{created.json()['id']}", json={"enabled": None}, headers=auth
        )
        assert answer.status_code == 422 and "enabled" in answer.json()["error"]["fields"]


async def test_profile_form_without_a_name_rerenders_with_the_message(make_app) -> None:
    async with make_app() as (_app, client, _clock):
        csrf = await login(client, "editor")
        answer = await client.post("/profiles/chat/edit", data={"csrf_token": csrf, "title": "x"})
        assert answer.status_code == 400
        assert 'data-error-for="name"' in answer.text


@pytest.mark.parametrize("path", ["/api/v1/endpoints/18446744073709551616", "/api/v1/runs/9223372036854775808",
                                  "/api/v1/runs?endpoint_id=99999999999999999999"])  # fmt: skip
async def test_ids_past_64_bits_answer_422(make_app, path: str) -> None:
    async with make_app() as (_app, client, _clock):
        answer = await client.get(path, headers=await bearer(client, "viewer"))
        assert answer.status_code == 422


async def test_a_large_body_is_refused_before_it_is_read(make_app) -> None:
    """Anonymous and 30 MB: 413 by Content-Length, before authentication or parsing."""
    async with make_app() as (app, client, _clock):
        limit = app.state.settings.limits.max_body_bytes
        big = b'{"name": "' + b"x" * (limit + 10) + b'"}'
        answer = await client.post(
            "/api/v1/endpoints", content=big, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"

        async def chunks():  # no Content-Length: counted as it arrives
            for _ in range(limit // 65536 + 2):
                yield b"x" * 65536

        streamed = await client.post(
            "/api/v1/endpoints", content=chunks(), headers=await bearer(client, "editor")
        )
        assert streamed.status_code == 413


async def test_a_server_error_is_one_log_line_without_parameters(make_app, caplog) -> None:
    async with make_app() as (app, client, _clock):

        async def broken(session: SessionDep) -> dict[str, str]:
            await session.execute(
                text("SELECT * FROM no_such_table WHERE x = :p"), {"p": "canary-param-4711"}
            )
            return {}

        app.add_api_route("/api/v1/broken", broken)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            answer = await client.get("/api/v1/broken")
        assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal"
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        line = errors[0].getMessage()
        assert "\n" not in line
        assert any(kind in line for kind in ("OperationalError", "ProgrammingError", "UndefinedTable")), line
        assert "canary-param-4711" not in caplog.text
        assert "canary-param-4711" not in answer.text
