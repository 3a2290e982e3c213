"""HTML pages: login and logout, CSRF, the endpoint form and its validation, headers."""

from __future__ import annotations

import httpx

from tests.conftest import PASSWORDS, csrf_from, login

FORM = {
    "name": "b200-llama70b",
    "base_url": "http://10.1.0.7:8000/v1",
    "api_flavor": "chat",
    "model": "llama-3.3-70b",
    "gpu_model": "B200",
    "gpu_count": "8",
    "price_per_gpu_hour": "5.50",
    "watts_per_gpu": "1000",
    "engine": "tensorrt-llm",
    "quantization": "nvfp4",
    "tags": "prod, eu",
}


async def test_pages_redirect_to_login_when_private(client: httpx.AsyncClient) -> None:
    response = await client.get("/endpoints")
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")


async def test_login_logout_revokes_the_session(client: httpx.AsyncClient, people) -> None:
    page = await client.get("/login")
    wrong = await client.post(
        "/login", data={"username": "editor", "password": "nope", "csrf_token": csrf_from(page.text)}
    )
    assert wrong.status_code == 400 and "Wrong user name or password" in wrong.text
    assert 'value="editor"' in wrong.text  # what was typed is kept; the password is not

    csrf = await login(client, "editor")
    cookie = client.cookies.get("smartbench_session")
    assert cookie
    assert (await client.get("/endpoints")).status_code == 200

    out = await client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303
    # Replaying the old cookie after logout does not work: the session is revoked server-side.
    client.cookies.set("smartbench_session", cookie)
    assert (await client.get("/endpoints")).status_code == 303


async def test_form_post_without_csrf_is_refused(client: httpx.AsyncClient, people) -> None:
    await login(client, "editor")
    response = await client.post("/endpoints/new", data=FORM)
    assert response.status_code == 403
    wrong = await client.post("/endpoints/new", data={**FORM, "csrf_token": "0" * 64})
    assert wrong.status_code == 403
    listed = await client.get("/api/v1/endpoints")
    assert listed.json()["total"] == 0


async def test_login_form_needs_csrf_too(client: httpx.AsyncClient, people) -> None:
    await client.get("/login")
    response = await client.post("/login", data={"username": "admin", "password": PASSWORDS["admin"]})
    assert response.status_code == 403


async def test_cross_site_origin_is_refused(client: httpx.AsyncClient, people) -> None:
    csrf = await login(client, "editor")
    response = await client.post(
        "/endpoints/new", data={**FORM, "csrf_token": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    same = await client.post(
        "/endpoints/new", data={**FORM, "csrf_token": csrf}, headers={"Origin": "http://testserver"}
    )
    assert same.status_code == 303


async def test_cookie_api_write_needs_the_csrf_header(client: httpx.AsyncClient, people) -> None:
    csrf = await login(client, "editor")
    body = {"name": "x", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    assert (await client.post("/api/v1/endpoints", json=body)).status_code == 403
    ok = await client.post("/api/v1/endpoints", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201


async def test_register_edit_and_delete_through_the_form(client: httpx.AsyncClient, people) -> None:
    csrf = await login(client, "editor")
    created = await client.post("/endpoints/new", data={**FORM, "csrf_token": csrf})
    assert created.status_code == 303
    detail = await client.get(created.headers["location"])
    assert "b200-llama70b" in detail.text and "nvfp4" in detail.text
    listing = await client.get("/endpoints")
    assert "b200-llama70b" in listing.text and "$5.50/GPU-h" in listing.text

    endpoint_id = created.headers["location"].rsplit("/", 1)[1]
    edit = await client.get(f"/endpoints/{endpoint_id}/edit")
    assert 'value="prod, eu"' in edit.text
    saved = await client.post(
        f"/endpoints/{endpoint_id}/edit", data={**FORM, "price_per_gpu_hour": "4.25", "csrf_token": csrf}
    )
    assert saved.status_code == 303
    assert (await client.get(f"/api/v1/endpoints/{endpoint_id}")).json()["price_per_gpu_hour"] == 4.25

    gone = await client.post(f"/endpoints/{endpoint_id}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert (await client.get(f"/endpoints/{endpoint_id}")).status_code == 404


async def test_bad_input_rerenders_with_messages_and_keeps_values(client: httpx.AsyncClient, people) -> None:
    csrf = await login(client, "editor")
    response = await client.post(
        "/endpoints/new",
        data={
            **FORM,
            "base_url": "not a url",
            "gpu_count": "eight",
            "csrf_token": csrf,
            "api_key": "sk-typed-secret-123",
        },
    )
    assert response.status_code == 400
    assert 'data-error-for="base_url"' in response.text and "http:// or https://" in response.text
    assert 'data-error-for="gpu_count"' in response.text and "whole number" in response.text
    assert 'value="b200-llama70b"' in response.text and 'value="not a url"' in response.text
    assert "sk-typed-secret-123" not in response.text
    assert 'data-error-for="api_key"' in response.text  # tells the user to type the key again


async def test_viewer_cannot_use_the_forms(client: httpx.AsyncClient, people) -> None:
    csrf = await login(client, "viewer")
    assert (await client.get("/endpoints/new")).status_code == 403
    assert (await client.post("/endpoints/new", data={**FORM, "csrf_token": csrf})).status_code == 403


async def test_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in response.text  # no inline script anywhere


async def test_templates_autoescape(client: httpx.AsyncClient, people) -> None:
    csrf = await login(client, "editor")
    await client.post(
        "/endpoints/new", data={**FORM, "description": "<script>alert(1)</script>", "csrf_token": csrf}
    )
    endpoint = (await client.get("/api/v1/endpoints")).json()["items"][0]
    page = await client.get(f"/endpoints/{endpoint['id']}")
    assert (
        "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    )


async def test_login_next_is_never_an_open_redirect(client: httpx.AsyncClient, people) -> None:
    page = await client.get("/login")
    response = await client.post(
        "/login",
        data={
            "username": "viewer",
            "password": PASSWORDS["viewer"],
            "csrf_token": csrf_from(page.text),
            "next": "//evil.example/",
        },
    )
    assert response.headers["location"] == "/"


async def test_unknown_page_renders_the_error_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/page")
    assert response.status_code == 404 and "Not found" in response.text


async def test_password_change(client: httpx.AsyncClient, people) -> None:
    csrf = await login(client, "viewer")
    bad = await client.post(
        "/account/password", data={"current": "x", "new": "short", "again": "short", "csrf_token": csrf}
    )
    assert bad.status_code == 400 and 'data-error-for="current"' in bad.text
    ok = await client.post(
        "/account/password",
        data={
            "current": PASSWORDS["viewer"],
            "new": "a-new-password-9",
            "again": "a-new-password-9",
            "csrf_token": csrf,
        },
    )
    assert ok.status_code == 200 and "was changed" in ok.text
