"""Tokens never mint tokens and may expire; the password policy; tokenizer files only from their
directory; profile limits an admin raises; the SQLite file readable by its owner only."""

from __future__ import annotations

import os
import re
import stat

import pytest
from sqlalchemy import text

from app.config import Settings
from app.db import create_engine
from app.security.passwords import password_problem
from tests.conftest import bearer, login


async def test_a_token_never_mints_tokens(make_app) -> None:
    """A leaked token must not survive its own revocation through tokens it made."""
    async with make_app() as (_app, client, _clock):
        token = await bearer(client, "admin")
        api = await client.post("/api/v1/tokens", json={"name": "child"}, headers=token)
        assert api.status_code == 403 and "never with another token" in api.json()["error"]["message"]
        form = await client.post("/settings/tokens", data={"name": "child"}, headers=token)
        assert form.status_code == 403


async def test_a_token_expires(make_app) -> None:
    async with make_app() as (_app, client, clock):
        csrf = await login(client, "editor")
        made = await client.post(
            "/settings/tokens", data={"name": "ci", "expires_in_days": "2", "csrf_token": csrf}
        )
        assert made.status_code == 201
        token = re.search(r'id="new-token">(sbt_[A-Za-z0-9_\-]+)<', made.text)
        assert token is not None
        client.cookies.clear()
        auth = {"Authorization": f"Bearer {token.group(1)}"}
        assert (await client.get("/api/v1/endpoints", headers=auth)).status_code == 200
        clock.advance(2 * 86400 + 1)
        expired = await client.get("/api/v1/endpoints", headers=auth)
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


@pytest.mark.parametrize(
    ("password", "ok"),
    [("password123", False), ("Password2024!", False), ("qwertyuiop", False), ("1234567890", False),
     ("aaaaaaaaaaaa", False), ("editor-editor", True), ("smartbench1", False), ("short", False),
     ("correct horse battery staple", True), ("Tr0ub4dor&3xyz", True)],
)  # fmt: skip
def test_the_password_policy(password: str, ok: bool) -> None:
    assert (password_problem(password, username="dana") is None) is ok, password_problem(password)
    assert password_problem("dana-dana", username="dana-dana") is not None


async def test_the_password_form_refuses_a_common_password(make_app) -> None:
    async with make_app() as (_app, client, _clock):
        csrf = await login(client, "viewer")
        answer = await client.post(
            "/account/password",
            data={
                "current": "viewer-password-1",
                "new": "password123",
                "again": "password123",
                "csrf_token": csrf,
            },
        )
        assert answer.status_code == 400 and "most common" in answer.text


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "/root/.ssh", "../secrets.json", "..", "a/b", "~/.ssh/id_rsa"]
)
async def test_tokenizers_are_names_never_paths(make_app, name: str) -> None:
    async with make_app() as (_app, client, _clock):
        answer = await client.post(
            "/api/v1/endpoints",
            json={"name": "t", "base_url": "http://127.0.0.1:9/v1", "model": "m", "tokenizer": name},
            headers=await bearer(client, "editor"),
        )
        assert answer.status_code == 422
        message = answer.json()["error"]["fields"]["tokenizer"]
        assert "never a path" in message or "no tokenizer named" in message


async def test_a_tokenizer_from_its_directory_and_no_symlink_out(make_app, tmp_path) -> None:
    folder = tmp_path / "tokenizers"
    (folder / "llama3").mkdir(parents=True)
    (folder / "llama3" / "tokenizer.json").write_text("{}")
    (folder / "gpt.json").write_text("{}")
    (folder / "escape.json").symlink_to("/etc/hostname")
    async with make_app(tokenizer_dir=folder) as (_app, client, _clock):
        editor = await bearer(client, "editor")
        for i, name in enumerate(["llama3", "gpt.json", "tiktoken:cl100k_base"]):
            made = await client.post(
                "/api/v1/endpoints",
                json={"name": f"t{i}", "base_url": "http://127.0.0.1:9/v1", "model": "m", "tokenizer": name},
                headers=editor,
            )
            assert made.status_code == 201, made.text
        for name in ("escape.json", "missing"):
            refused = await client.post(
                "/api/v1/endpoints",
                json={"name": "t9", "base_url": "http://127.0.0.1:9/v1", "model": "m", "tokenizer": name},
                headers=editor,
            )
            assert (
                refused.json()["error"]["fields"]["tokenizer"]
                == f"no tokenizer named {name!r} in the tokenizer directory"
            )


async def test_profile_limits_hold_until_an_admin_raises_them(make_app) -> None:
    async with make_app() as (_app, client, _clock):
        editor, admin = await bearer(client, "editor"), await bearer(client, "admin")
        cannon = {"name": "cannon", "input_tokens_mean": 8, "output_tokens_mean": 8, "load_levels": [100000],
                  "requests_per_step": 1000000}  # fmt: skip
        refused = await client.post("/api/v1/profiles", json=cannon, headers=editor)
        assert refused.status_code == 422
        assert {"load_levels", "requests_per_step"} <= set(refused.json()["error"]["fields"])
        raised = await client.patch(
            "/api/v1/settings/site",
            json={"max_profile_concurrency": 100000, "max_requests_per_step": 2000000},
            headers=admin,
        )
        assert raised.status_code == 200
        assert (await client.post("/api/v1/profiles", json=cannon, headers=editor)).status_code == 201
        over = await client.patch("/api/v1/profiles/chat", json={"max_concurrency": 200000}, headers=editor)
        assert over.status_code == 422


async def test_the_sqlite_file_is_private(tmp_path) -> None:
    settings = Settings(env="test", data_dir=tmp_path / "data")
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    finally:
        await engine.dispose()
    assert stat.S_IMODE(os.stat(settings.data_dir / "smartbench.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(settings.data_dir).st_mode) == 0o700
    os.chmod(settings.data_dir, 0o755)  # an older install: tightened at the next start
    create_engine(settings)
    assert stat.S_IMODE(os.stat(settings.data_dir).st_mode) == 0o700
