"""Logins: back-off per account and per address, no user enumeration, an admin lifts it, and
Argon2 runs off the event loop. (Reproduces: 30 wrong passwords for admin were all answered,
then the right one logged in.)"""

from __future__ import annotations

import threading

import httpx

from app.db import unit_of_work
from app.security import passwords
from app.services import throttle
from tests.conftest import PASSWORDS, csrf_from, login


async def attempt(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    page = await client.get("/login")
    return await client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(page.text), "next": "/"},
    )


async def test_thirty_wrong_passwords_earn_a_back_off_that_refuses_even_the_right_one(make_app) -> None:
    async with make_app() as (_app, client, clock):
        answers = [await attempt(client, "admin", f"wrong-{i}") for i in range(30)]
        codes = [r.status_code for r in answers]
        assert codes[: throttle.ACCOUNT_FREE] == [400] * throttle.ACCOUNT_FREE
        assert 429 in codes
        refused = await attempt(client, "admin", PASSWORDS["admin"])
        assert refused.status_code == 429
        wait = int(refused.headers["Retry-After"])
        assert 1 <= wait <= throttle.CAP.total_seconds()
        assert "Too many failed logins" in refused.text
        clock.advance(wait + 1)
        assert (await attempt(client, "admin", PASSWORDS["admin"])).status_code == 303


async def test_the_back_off_doubles_then_caps(make_app) -> None:
    async with make_app() as (_app, client, clock):
        waits = []
        for _ in range(throttle.ACCOUNT_FREE + 12):
            answer = await attempt(client, "editor", "not-the-password")
            if answer.status_code == 429:
                wait = int(answer.headers["Retry-After"])
                waits.append(wait)
                clock.advance(wait)
                await attempt(client, "editor", "not-the-password")  # counted after the wait
        assert waits[:3] == [1, 2, 4] or waits[:3] == [2, 4, 8]
        assert max(waits) == throttle.CAP.total_seconds()


async def test_unknown_names_get_the_same_answers(make_app) -> None:
    """No user enumeration: a name that does not exist earns the same back-off and messages."""
    async with make_app() as (_app, client, _clock):
        real = [await attempt(client, "viewer", "nope-nope-nope") for _ in range(8)]
        fake = [await attempt(client, "nobody-here", "nope-nope-nope") for _ in range(8)]
        assert [r.status_code for r in real] == [r.status_code for r in fake]
        assert [r.headers.get("Retry-After") for r in real] == [r.headers.get("Retry-After") for r in fake]


async def test_an_address_that_tries_many_names_is_slowed_down(make_app) -> None:
    async with make_app() as (_app, client, _clock):
        codes = [(await attempt(client, f"user{i}", "guess-guess-1")).status_code for i in range(25)]
        assert codes[: throttle.ADDRESS_FREE - 1] == [400] * (throttle.ADDRESS_FREE - 1)
        assert codes[-1] == 429


async def test_an_admin_lifts_the_back_off(make_app) -> None:
    async with make_app() as (app, client, _clock):
        for _ in range(12):
            await attempt(client, "editor", "wrong-wrong-wrong")
        assert (await attempt(client, "editor", PASSWORDS["editor"])).status_code == 429
        csrf = await login(client, "admin")
        page = await client.get("/settings/security")
        assert page.status_code == 200 and "account:editor" in page.text
        lifted = await client.post(
            "/settings/security/lockouts/lift", data={"key": "account:editor", "csrf_token": csrf}
        )
        assert lifted.status_code == 303
        # The address's own count (12 failures) is still under its limit.
        client.cookies.clear()
        assert (await attempt(client, "editor", PASSWORDS["editor"])).status_code == 303
        async with unit_of_work(app.state.sessionmaker) as session:
            assert await throttle.check(session, [throttle.account_key("editor")], app.state.clock()) is None


async def test_password_hashing_runs_in_worker_threads(make_app, monkeypatch) -> None:
    """Argon2 takes ~50 ms of CPU per check: never on the event loop's thread."""
    threads: list[str] = []
    real = passwords.verify_password

    def spy(password_hash: str | None, password: str) -> bool:
        threads.append(threading.current_thread().name)
        return real(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", spy)
    async with make_app() as (_app, client, _clock):
        await attempt(client, "viewer", "wrong-wrong-wrong")
        await attempt(client, "viewer", PASSWORDS["viewer"])
    assert len(threads) == 2
    assert threading.main_thread().name not in threads
