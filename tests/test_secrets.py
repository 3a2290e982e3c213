"""Endpoint API keys: encrypted at rest, rotatable, and never leaving the server."""

from __future__ import annotations

import base64
import logging
import re

import httpx
import pytest
from sqlalchemy import select, text
from starlette.routing import Mount, Route

from app.db import unit_of_work
from app.models import Base, Endpoint, Webhook
from app.security.crypto import DecryptionError, SecretBox
from app.services import endpoints, keys
from tests.conftest import bearer, login

CANARY_FORM = "sk-canary-FORM-7f3a9c1e5b2d4860"
CANARY_API = "sk-canary-API-1b2c3d4e5f60718293"


def _box(*kids: str) -> SecretBox:
    return SecretBox([(kid, bytes([i + 1]) * 32) for i, kid in enumerate(kids)])


def test_seal_and_open() -> None:
    box = _box("k1")
    sealed = box.encrypt("secret-value")
    assert sealed.startswith("sb1:k1:") and "secret-value" not in sealed
    assert box.decrypt(sealed) == "secret-value"
    assert box.encrypt("secret-value") != sealed  # fresh nonce every time


def test_tampering_and_unknown_keys_fail_loudly() -> None:
    box = _box("k1")
    sealed = box.encrypt("secret-value")
    raw = bytearray(base64.urlsafe_b64decode(sealed.split(":", 2)[2]))
    raw[-1] ^= 1
    with pytest.raises(DecryptionError, match="authentication"):
        box.decrypt("sb1:k1:" + base64.urlsafe_b64encode(bytes(raw)).decode())
    with pytest.raises(DecryptionError, match="not configured"):
        _box("other").decrypt(sealed)


async def test_rotation_reencrypts_every_key(app, people) -> None:
    """Every sealed column: endpoint keys, and webhook URLs and secrets (issue #18: 48cab14 left
    the webhooks on the old key, and deliveries stopped once it was dropped)."""
    old = _box("old")
    async with unit_of_work(app.state.sessionmaker) as session:
        session.add(Webhook(name="hook", kind="json", url_encrypted=old.encrypt("https://hooks.example.com/x"),
                            url_hint="https://hooks.example.com/…om/x", secret_encrypted=old.encrypt("s3cret-hmac"),
                            events=["regression"], enabled=True, created_by="admin"))  # fmt: skip
        for i in range(3):
            session.add(
                Endpoint(
                    name=f"e{i}",
                    base_url="http://127.0.0.1:1/v1",
                    model="m",
                    tags=[],
                    api_key_encrypted=old.encrypt(f"key-{i}"),
                )
            )
    rotated = SecretBox([("new", b"\x09" * 32), ("old", b"\x01" * 32)])
    async with unit_of_work(app.state.sessionmaker) as session:
        assert await keys.reencrypt_keys(session, box=rotated) == {
            "endpoints.api_key_encrypted": 3, "webhooks.url_encrypted": 1, "webhooks.secret_encrypted": 1,
        }  # fmt: skip
    only_new = SecretBox([("new", b"\x09" * 32)])
    async with unit_of_work(app.state.sessionmaker) as session:
        rows = (await session.scalars(select(Endpoint).order_by(Endpoint.name))).all()
        assert [endpoints.decrypt_key(row, only_new) for row in rows] == ["key-0", "key-1", "key-2"]
        hook = (await session.scalars(select(Webhook))).one()
        assert only_new.decrypt(hook.url_encrypted) == "https://hooks.example.com/x"
        assert hook.secret_encrypted and only_new.decrypt(hook.secret_encrypted) == "s3cret-hmac"
        assert sum((await keys.reencrypt_keys(session, box=rotated)).values()) == 0


def _get_paths(app, ids: dict[str, int]) -> list[str]:  # type: ignore[no-untyped-def]
    paths = []
    for route in app.routes:
        if isinstance(route, Mount) or not isinstance(route, Route) or "GET" not in (route.methods or set()):
            continue
        path = route.path
        for name, value in ids.items():
            path = path.replace("{" + name + "}", str(value))
        if "{" in path:
            pytest.fail(f"route {route.path} has a parameter this test does not fill: extend it")
        paths.append(path)
    return paths


async def test_canary_key_never_leaves_the_server(app, client: httpx.AsyncClient, people, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    # Through the form...
    csrf = await login(client, "editor")
    created = await client.post(
        "/endpoints/new",
        data={
            "name": "canary-form",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "api_key": CANARY_FORM,
            "csrf_token": csrf,
        },
    )
    assert created.status_code == 303
    # ... a failed edit that carried the key ...
    form_id = int(created.headers["location"].rsplit("/", 1)[1])
    failed = await client.post(
        f"/endpoints/{form_id}/edit",
        data={
            "name": "canary-form",
            "base_url": "bad",
            "model": "m",
            "api_key": CANARY_FORM,
            "csrf_token": csrf,
        },
    )
    assert failed.status_code == 400
    client.cookies.clear()
    # ... and through the API.
    auth = await bearer(client, "admin")
    api = await client.post(
        "/api/v1/endpoints",
        json={"name": "canary-api", "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": CANARY_API},
        headers=auth,
    )
    assert api.status_code == 201
    bad = await client.post(
        "/api/v1/endpoints",
        json={"name": "canary-api", "base_url": "ftp://x", "model": "m", "api_key": CANARY_API},
        headers=auth,
    )
    assert bad.status_code == 422

    responses = [created, failed, api, bad]
    ids = {"endpoint_id": form_id, "token_id": 1, "run_id": 1, "name": "chat"}
    await login(client, "admin")
    for path in _get_paths(app, ids):
        responses.append(await client.get(path))
        responses.append(await client.get(path, headers=auth))
    responses.append(await client.get(f"/endpoints/{api.json()['id']}"))
    responses.append(await client.get(f"/endpoints/{api.json()['id']}/edit"))
    responses.append(await client.get(f"/api/v1/endpoints/{api.json()['id']}", headers=auth))

    for response in responses:
        blob = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
        for canary in (CANARY_FORM, CANARY_API):
            assert canary not in blob, f"{response.request.method} {response.request.url} leaked the key"
            assert canary[4:-4] not in blob

    for record in caplog.records:
        line = record.getMessage() + str(record.args)
        assert CANARY_FORM not in line and CANARY_API not in line, f"log line leaked the key: {record.name}"

    # At rest: no table holds the key in plain text, yet the server can still use it.
    async with unit_of_work(app.state.sessionmaker) as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(text(f'SELECT * FROM "{table.name}"'))).all():
                dump = repr(tuple(row))
                assert CANARY_FORM not in dump and CANARY_API not in dump, f"plain key in table {table.name}"
        by_name = {
            e.name: endpoints.decrypt_key(e, app.state.secret_box)
            for e in (await session.scalars(select(Endpoint))).all()
        }
    assert by_name == {"canary-form": CANARY_FORM, "canary-api": CANARY_API}
    assert re.search(r"…4860", (await client.get(f"/endpoints/{form_id}")).text)  # last four only
