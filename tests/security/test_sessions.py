"""Sessions: a password change ends the user's other sessions; must_change_password holds on
every request; Secure __Host- cookies and HSTS behind https; proxy headers only from trusted
proxies."""

from __future__ import annotations

import httpx
from sqlalchemy import update

from app.cli import proxy_options
from app.db import unit_of_work
from app.models import User
from tests.conftest import PASSWORDS, bearer, csrf_from, login


async def test_a_password_change_ends_the_other_sessions(make_app) -> None:
    async with make_app() as (app, laptop, _clock):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as phone:
            csrf = await login(laptop, "editor")
            await login(phone, "editor")
            assert (await phone.get("/endpoints")).status_code == 200
            changed = await laptop.post(
                "/account/password",
                data={"current": PASSWORDS["editor"], "new": "a-new-long-passphrase-7", "again": "a-new-long-passphrase-7",
                      "csrf_token": csrf},
            )  # fmt: skip
            assert changed.status_code == 200 and "was changed" in changed.text
            assert (await laptop.get("/endpoints")).status_code == 200  # the session that changed it
            gone = await phone.get("/endpoints")
            assert gone.status_code == 303 and gone.headers["location"].startswith("/login")


async def test_must_change_password_holds_on_every_request(make_app) -> None:
    async with make_app() as (app, client, _clock):
        token = await bearer(client, "viewer")
        csrf = await login(client, "viewer")
        async with unit_of_work(app.state.sessionmaker) as session:
            await session.execute(
                update(User).where(User.username == "viewer").values(must_change_password=True)
            )
        for path in ("/", "/endpoints", "/settings/tokens", "/runs/1"):
            page = await client.get(path)
            assert page.status_code == 303 and page.headers["location"] == "/account/password", path
        api = await client.get("/api/v1/endpoints", headers=token)
        assert api.status_code == 403 and api.json()["error"]["code"] == "password_change_required"
        form = await client.get("/account/password")
        assert form.status_code == 200
        await client.post(
            "/account/password",
            data={"current": PASSWORDS["viewer"], "new": "viewer-chose-this-9", "again": "viewer-chose-this-9",
                  "csrf_token": csrf},
        )  # fmt: skip
        assert (await client.get("/endpoints")).status_code == 200
        assert (await client.get("/api/v1/endpoints", headers=token)).status_code == 200


async def test_https_public_url_makes_host_prefixed_secure_cookies_and_hsts(make_app) -> None:
    async with make_app(public_url="https://bench.example.com", base_url="https://testserver") as (
        _a,
        client,
        _c,
    ):
        page = await client.get("/login")
        assert page.headers["strict-transport-security"].startswith("max-age=")
        anon = page.headers["set-cookie"]
        assert anon.startswith("__Host-smartbench_anon=") and "Secure" in anon and "Path=/" in anon
        assert "Domain" not in anon
        response = await client.post(
            "/login",
            data={"username": "admin", "password": PASSWORDS["admin"], "csrf_token": csrf_from(page.text), "next": "/"},
        )  # fmt: skip
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-smartbench_session=") and "Secure" in cookie and "HttpOnly" in cookie
        assert (await client.get("/endpoints")).status_code == 200


async def test_plain_http_has_no_hsts_and_plain_cookies(make_app) -> None:
    async with make_app() as (_app, client, _clock):
        page = await client.get("/login")
        assert "strict-transport-security" not in page.headers
        assert page.headers["set-cookie"].startswith("smartbench_anon=")
        assert "Secure" not in page.headers["set-cookie"]


async def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(make_app, settings) -> None:
    """A client cannot dodge the address back-off by sending X-Forwarded-For."""
    assert proxy_options(settings) == {"proxy_headers": False}
    trusted = settings.but(trusted_proxies="10.0.0.2, 172.16.0.0/12")
    assert proxy_options(trusted) == {"proxy_headers": True, "forwarded_allow_ips": "10.0.0.2,172.16.0.0/12"}
    async with make_app() as (_app, client, _clock):
        codes = []
        for i in range(22):
            page = await client.get("/login")
            answer = await client.post(
                "/login",
                data={
                    "username": f"someone{i}",
                    "password": "guess-guess-1",
                    "csrf_token": csrf_from(page.text),
                },
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
            codes.append(answer.status_code)
        assert codes[-1] == 429
