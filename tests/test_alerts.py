"""Regressions and alerts: a simulated slowdown between two runs raises a regression, delivered
signed to a local receiver, and a recovery when the delays come back; failed runs in a row mean
down, the next success up; deliveries retry with back-off and never block a run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import select

from app.db import unit_of_work
from app.models import Alert, Delivery
from app.scoring import regression
from app.security import signing
from app.services import alerts, webhooks
from app.simulator.process import free_port
from tests.conftest import bearer, login
from tests.simproc import simulator

# Medians (slo_percentile 50): a p99 of a few requests is their slowest, and one request slowed
# by the busy machine would move it. The regression here is the simulator's, 8x.
QUICK = {"name": "quick", "input_tokens_mean": 32, "output_tokens_mean": 16, "load_levels": [1, 2],
         "requests_per_step": 6, "slo_ttft_ms": 1000, "slo_tpot_ms": 100, "slo_percentile": 50}  # fmt: skip


async def allow_loopback_webhooks(app) -> None:  # type: ignore[no-untyped-def]
    """Webhooks deliver to public addresses only by default; these receivers listen on loopback."""
    from app.schemas import SiteSettingsUpdate
    from app.services import site

    async with unit_of_work(app.state.sessionmaker) as session:
        update = SiteSettingsUpdate(webhook_outbound_allow=["127.0.0.0/8"])
        await site.save(session, app.state.settings, update, by="test")


# -- the judgement, by hand -------------------------------------------------------------------------


def test_a_change_counts_beyond_both_the_threshold_and_the_noise() -> None:
    ttft = regression.BY_KEY["ttft_ms"]
    # Baseline 100, 104, 96: median 100, MAD 4, sigma 5.93; 3 sigma 17.8 beats 10 % of 100.
    steady = regression.compare(ttft, 115.0, [100.0, 104.0, 96.0], threshold_pct=10, points=1)
    assert steady is not None and steady.verdict == "steady"
    assert steady.noise == pytest.approx(1.4826 * 4)
    assert steady.limit == pytest.approx(3 * 1.4826 * 4)
    worse = regression.compare(ttft, 118.0, [100.0, 104.0, 96.0], threshold_pct=10, points=1)
    assert worse is not None and worse.verdict == "regression" and worse.change_pct == pytest.approx(18.0)
    # A quiet baseline is held to the threshold: 100, 100.5, 99.5 (3 sigma 2.2) -> 10 % decides.
    quiet = [100.0, 100.5, 99.5]
    assert regression.compare(ttft, 109.0, quiet, threshold_pct=10, points=1).verdict == "steady"  # type: ignore[union-attr]
    assert regression.compare(ttft, 111.0, quiet, threshold_pct=10, points=1).verdict == "regression"  # type: ignore[union-attr]
    # Throughput: higher is better.
    tput = regression.BY_KEY["output_tokens_per_s_at_slo"]
    assert regression.compare(tput, 80.0, quiet, threshold_pct=10, points=1).verdict == "regression"  # type: ignore[union-attr]
    assert regression.compare(tput, 120.0, quiet, threshold_pct=10, points=1).verdict == "improvement"  # type: ignore[union-attr]
    # The error rate in points: 0 % -> 0.5 % is under 1 point; 0 % -> 2 % is a regression.
    errors = regression.BY_KEY["error_rate"]
    assert regression.compare(errors, 0.005, [0.0, 0.0], threshold_pct=10, points=1).verdict == "steady"  # type: ignore[union-attr]
    rise = regression.compare(errors, 0.02, [0.0, 0.0], threshold_pct=10, points=1)
    assert rise is not None and rise.verdict == "regression" and rise.change_points == pytest.approx(2.0)
    # One run is no baseline.
    assert regression.compare(ttft, 500.0, [100.0], threshold_pct=10, points=1) is None


def test_latency_is_compared_where_the_baseline_operates() -> None:
    assert regression.reference_load([8.0, 8.0, 16.0], lightest=1.0) == 8.0
    assert regression.reference_load([8.0, 16.0], lightest=1.0) == 8.0  # a tie: the lighter
    assert regression.reference_load([None, None], lightest=1.0) == 1.0  # none met the SLO


# -- a local receiver -------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    got: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    fail_first: int = 0


@asynccontextmanager
async def receiver(fail_first: int = 0) -> AsyncIterator[Receiver]:
    port = free_port()
    seen = Receiver(f"http://127.0.0.1:{port}", fail_first=fail_first)

    async def take(request: web.Request) -> web.Response:
        seen.got.append((request.path, dict(request.headers), await request.read()))
        if seen.fail_first > 0:
            seen.fail_first -= 1
            return web.Response(status=503, text="busy")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", take)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield seen
    finally:
        await runner.cleanup()


def verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    return signing.verify(
        secret, headers[signing.TIMESTAMP_HEADER], body, headers[signing.SIGNATURE_HEADER], now=time.time()
    )


# -- end to end over real runs ----------------------------------------------------------------------


async def _run(app: Any, client: httpx.AsyncClient, auth: dict[str, str], endpoint_id: int) -> dict[str, Any]:
    accepted = await client.post(
        f"/api/v1/endpoints/{endpoint_id}/runs", json={"profile": "quick"}, headers=auth
    )
    assert accepted.status_code == 202, accepted.text
    assert await app.state.executor.tick() is True
    await asyncio.wait_for(asyncio.gather(*app.state.executor.active), timeout=120)
    return (await client.get(f"/api/v1/runs/{accepted.json()['run_id']}", headers=auth)).json()


async def test_a_slowdown_regresses_is_delivered_signed_and_recovers(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    port = free_port()
    fast = ("--preset", "fixed", "--ttft-ms", "50", "--itl-ms", "10")
    slow = ("--preset", "fixed", "--ttft-ms", "400", "--itl-ms", "10")
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
        receiver() as hook,
    ):
        admin, editor = await bearer(client, "admin"), await bearer(client, "editor")
        viewer = await bearer(client, "viewer", read_only=True)
        await allow_loopback_webhooks(app)
        # Two baseline runs of 4 requests a step know little of their noise: hold them to 25 %.
        rules = await client.patch(
            "/api/v1/settings/site", json={"regression_threshold_pct": 25}, headers=admin
        )
        assert rules.status_code == 200
        assert (await client.post("/api/v1/profiles", json=QUICK, headers=editor)).status_code == 201
        signed = await client.post(
            "/api/v1/webhooks", json={"name": "ops", "url": f"{hook.url}/json"}, headers=admin
        )
        assert signed.status_code == 201, signed.text
        secret = signed.json()["secret"]
        assert secret and signed.json()["url_hint"].endswith("json") and "url" not in signed.json()
        slack = await client.post(
            "/api/v1/webhooks",
            json={
                "name": "chat",
                "url": f"{hook.url}/slack",
                "kind": "slack",
                "events": ["regression", "recovery"],
            },
            headers=admin,
        )
        assert slack.status_code == 201 and slack.json()["secret"] is None
        assert "secret" not in (await client.get("/api/v1/webhooks", headers=admin)).json()["items"][0]
        made = await client.post(
            "/api/v1/endpoints",
            json={
                "name": "canary",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "model": "sim",
                "gpu_count": 1,
                "price_per_gpu_hour": 2.0,
            },
            headers=editor,
        )
        endpoint_id = made.json()["id"]

        with simulator(*fast, port=port):
            first, second = [await _run(app, client, editor, endpoint_id) for _ in range(2)]
        assert first["status"] == second["status"] == "succeeded"
        assert (await client.get("/api/v1/alerts", headers=viewer)).json()["items"] == []

        with simulator(*slow, port=port):  # the same server, restarted with a slower prefill
            slowed = await _run(app, client, editor, endpoint_id)
        page = (await client.get(f"/api/v1/alerts?endpoint_id={endpoint_id}", headers=viewer)).json()
        regressed = {a["metric"]: a for a in page["items"] if a["kind"] == "regression"}
        assert "ttft_ms" in regressed, page
        ttft = regressed["ttft_ms"]
        assert ttft["run_id"] == slowed["run_id"] and ttft["open"] is True
        # Ground truth: the simulator's TTFT went from 50 ms to 400 ms.
        assert 50 <= ttft["baseline"] < 90 and 400 <= ttft["value"] < 470, ttft
        assert ttft["detail"]["baseline_run_ids"] == [second["run_id"], first["run_id"]]
        assert "output_tokens_per_s_at_slo" in regressed  # each request lives ~2x longer at c=2
        assert {a["id"] for a in page["open"]} == {a["id"] for a in regressed.values()}
        exposed = (await client.get("/metrics", headers=viewer)).text
        assert 'smartbench_regression_open{endpoint="canary",profile="quick",metric="ttft_ms"} 1' in exposed
        assert ttft["detail"]["percentile"] == "p50"

        assert await app.state.executor.deliver_tick() == 2 * len(regressed)
        json_posts = [(h, b) for path, h, b in hook.got if path == "/json"]
        assert len(json_posts) == len(regressed)
        for headers, body in json_posts:
            assert verified(secret, headers, body)
            assert not verified("whsec_not_the_secret_at_all", headers, body)
            assert headers["X-Smartbench-Event"] == "regression"
        ttft_body = next(json.loads(b) for _, b in json_posts if json.loads(b)["metric"] == "ttft_ms")
        assert ttft_body["endpoint"]["name"] == "canary" and ttft_body["value"] == pytest.approx(
            ttft["value"]
        )
        slack_texts = [json.loads(b)["text"] for path, _, b in hook.got if path == "/slack"]
        assert any("TTFT" in text and "canary" in text for text in slack_texts)

        with simulator(*fast, port=port):
            await _run(app, client, editor, endpoint_id)
        page = (await client.get(f"/api/v1/alerts?endpoint_id={endpoint_id}", headers=viewer)).json()
        recovered = {a["metric"] for a in page["items"] if a["kind"] == "recovery"}
        assert recovered == set(regressed), page
        assert page["open"] == [], [a["message"] for a in page["open"]]
        assert "smartbench_regression_open{" not in (await client.get("/metrics", headers=viewer)).text
        hook.got.clear()
        await app.state.executor.deliver_tick()
        assert {json.loads(b)["event"] for path, _, b in hook.got if path == "/json"} == {"recovery"}

        # The endpoint page and the overview list them.
        overview = (await client.get(f"/api/v1/endpoints/{endpoint_id}/overview", headers=viewer)).json()
        assert {a["kind"] for a in overview["alerts"]} >= {"regression", "recovery"}
        await login(client, "viewer")
        html = (await client.get(f"/endpoints/{endpoint_id}")).text
        assert 'id="endpoint-alerts"' in html and 'data-metric="ttft_ms"' in html
        assert 'id="recent-alerts"' in (await client.get("/")).text
        deliveries = (
            await client.get(f"/api/v1/webhooks/{signed.json()['id']}/deliveries", headers=admin)
        ).json()
        assert {d["status"] for d in deliveries["items"]} == {"delivered"}


async def test_failed_runs_in_a_row_mean_down_and_a_success_means_up(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    port = free_port()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        admin, editor = await bearer(client, "admin"), await bearer(client, "editor")
        changed = await client.patch("/api/v1/settings/site", json={"down_after_failures": 2}, headers=admin)
        assert changed.status_code == 200 and changed.json()["down_after_failures"] == 2
        assert (await client.post("/api/v1/profiles", json=QUICK, headers=editor)).status_code == 201
        made = await client.post(
            "/api/v1/endpoints",
            json={"name": "flaky", "base_url": f"http://127.0.0.1:{port}/v1", "model": "sim"},
            headers=editor,
        )
        endpoint_id = made.json()["id"]
        assert (await _run(app, client, editor, endpoint_id))["status"] == "failed"  # nothing listens
        kinds = [a["kind"] for a in (await client.get("/api/v1/alerts", headers=editor)).json()["items"]]
        assert kinds == []  # one failure is not down
        await _run(app, client, editor, endpoint_id)
        await _run(app, client, editor, endpoint_id)  # still down: said once
        page = (await client.get("/api/v1/alerts", headers=editor)).json()
        assert [a["kind"] for a in page["items"]] == ["down"]
        assert page["open"][0]["kind"] == "down" and "2 failed runs in a row" in page["open"][0]["message"]
        assert (
            'smartbench_endpoint_down{endpoint="flaky"} 1'
            in (await client.get("/metrics", headers=editor)).text
        )
        with simulator("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1", port=port):
            assert (await _run(app, client, editor, endpoint_id))["status"] == "succeeded"
        page = (await client.get("/api/v1/alerts", headers=editor)).json()
        assert [a["kind"] for a in page["items"]] == ["up", "down"] and page["open"] == []


async def test_deliveries_retry_with_back_off_and_are_recorded(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    now = [datetime(2026, 11, 28, 12, 0, tzinfo=UTC)]
    app.state.executor.clock = lambda: now[0]
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
        receiver(fail_first=2) as hook,
    ):
        admin, editor = await bearer(client, "admin"), await bearer(client, "editor")
        await allow_loopback_webhooks(app)
        made = await client.post(
            "/api/v1/webhooks", json={"name": "ops", "url": f"{hook.url}/x"}, headers=admin
        )
        dead = await client.post(  # nothing listens there: every attempt fails, never blocking
            "/api/v1/webhooks",
            json={"name": "dead", "url": f"http://127.0.0.1:{free_port()}/x"},
            headers=admin,
        )
        endpoint = await client.post(
            "/api/v1/endpoints",
            json={"name": "e", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
            headers=editor,
        )
        async with unit_of_work(app.state.sessionmaker) as session:
            alert = Alert(endpoint_id=endpoint.json()["id"], kind="down", detail={}, message="e is down",
                          created_at=now[0])  # fmt: skip
            session.add(alert)
            await session.flush()
            await alerts.queue(session, [alert], now[0])

        async def state() -> dict[int, Delivery]:
            async with unit_of_work(app.state.sessionmaker) as session:
                rows = await session.scalars(select(Delivery))
                return {d.webhook_id: d for d in rows.all()}

        assert await app.state.executor.deliver_tick() == 2
        first = await state()
        ops = first[made.json()["id"]]
        assert ops.status == "pending" and ops.attempts == 1 and ops.response_status == 503
        assert ops.next_attempt_at == now[0] + timedelta(seconds=30)
        assert first[dead.json()["id"]].error.startswith("ClientConnectorError")
        assert await app.state.executor.deliver_tick() == 0  # not due yet
        now[0] += timedelta(seconds=30)
        assert await app.state.executor.deliver_tick() == 2
        ops = (await state())[made.json()["id"]]
        assert ops.attempts == 2 and ops.next_attempt_at == now[0] + timedelta(seconds=60)
        now[0] += timedelta(seconds=60)
        await app.state.executor.deliver_tick()
        after = await state()
        assert after[made.json()["id"]].status == "delivered" and after[made.json()["id"]].attempts == 3
        assert len(hook.got) == 3
        for _ in range(10):  # the dead receiver: given up after 8 attempts, each recorded
            now[0] += timedelta(hours=1)
            await app.state.executor.deliver_tick()
        gone = (await state())[dead.json()["id"]]
        assert (
            gone.status == "failed"
            and gone.attempts == webhooks.MAX_ATTEMPTS
            and gone.next_attempt_at is None
        )


async def test_webhook_urls_are_checked_and_never_shown(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        admin, editor = await bearer(client, "admin"), await bearer(client, "editor")
        metadata = await client.post(
            "/api/v1/webhooks", json={"name": "x", "url": "http://169.254.169.254/latest"}, headers=admin
        )
        assert metadata.status_code == 422 and "url" in metadata.json()["error"]["fields"]
        assert (await client.post("/api/v1/webhooks", json={"name": "x", "url": "ftp://a.example/x"},
                                  headers=admin)).status_code == 422  # fmt: skip
        assert (await client.post("/api/v1/webhooks", json={"name": "x", "url": "http://127.0.0.1:1/x"},
                                  headers=editor)).status_code == 403  # fmt: skip
        loopback = await client.post("/api/v1/webhooks", json={"name": "x", "url": "http://127.0.0.1:1/x"},
                                     headers=admin)  # fmt: skip
        assert (
            loopback.status_code == 422
            and "public addresses only" in loopback.json()["error"]["fields"]["url"]
        )
        await allow_loopback_webhooks(app)
        secret_url = "http://127.0.0.1:1/services/T000/B000/XXXXsecretXXXXabcd"
        made = await client.post(
            "/api/v1/webhooks", json={"name": "slack", "url": secret_url, "kind": "slack"}, headers=admin
        )
        assert made.status_code == 201
        listing = (await client.get("/api/v1/webhooks", headers=admin)).text
        assert "XXXXsecret" not in listing and "abcd" in listing


async def test_the_alerts_page_adds_webhooks_and_saves_the_rules(app, client, people) -> None:  # type: ignore[no-untyped-def]
    await allow_loopback_webhooks(app)
    csrf = await login(client, "admin")
    bad = await client.post(
        "/settings/alerts/webhooks",
        data={
            "csrf_token": csrf,
            "name": "ops",
            "url": "http://169.254.169.254/x",
            "kind": "json",
            "events": "down",
        },
    )
    assert bad.status_code == 400 and 'data-error-for="url"' in bad.text and "ops" in bad.text  # kept
    made = await client.post(
        "/settings/alerts/webhooks",
        data={
            "csrf_token": csrf,
            "name": "ops",
            "url": "http://127.0.0.1:1/hook/secretpath",
            "kind": "json",
            "events": ["regression", "down"],
        },
    )
    assert made.status_code == 201 and 'id="new-secret">whsec_' in made.text
    page = (await client.get("/settings/alerts")).text
    assert "whsec_" not in page and "secretpath" not in page and "regression, down" in page
    assert 'name="csrf_token"' in page
    no_csrf = await client.post("/settings/alerts", data={"baseline_runs": "7"})
    assert no_csrf.status_code == 403
    wrong = await client.post("/settings/alerts", data={"csrf_token": csrf, "baseline_runs": "1"})
    assert wrong.status_code == 400 and 'data-error-for="baseline_runs"' in wrong.text
    saved = await client.post(
        "/settings/alerts", data={"csrf_token": csrf, "baseline_runs": "7", "regression_threshold_pct": "15"}
    )
    assert saved.status_code == 303
    rules = (await client.get("/api/v1/settings/site")).json()
    assert rules["baseline_runs"] == 7 and rules["regression_threshold_pct"] == 15.0
    assert rules["down_after_failures"] == 3  # untouched: the environment's default


async def test_a_second_webhook_of_the_same_name_is_a_conflict_on_the_form_too(app, client, people) -> None:  # type: ignore[no-untyped-def]
    await allow_loopback_webhooks(app)
    csrf = await login(client, "admin")
    form = {
        "csrf_token": csrf,
        "name": "ops",
        "url": "http://127.0.0.1:1/x",
        "kind": "json",
        "events": "down",
    }
    assert (await client.post("/settings/alerts/webhooks", data=form)).status_code == 201
    again = await client.post("/settings/alerts/webhooks", data=form)  # a browser's resubmission
    assert again.status_code == 400 and 'data-error-for="name"' in again.text


async def test_a_name_taken_in_a_race_answers_409_and_keeps_the_transaction(
    idle_app, people, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The name check and the write are two statements: a name taken between them is refused
    by the unique index inside a savepoint, so the caller's transaction goes on."""
    from app.errors import Conflict
    from app.schemas import WebhookCreate

    app = idle_app
    settings, box = app.state.settings, app.state.secret_box
    await allow_loopback_webhooks(app)
    async with unit_of_work(app.state.sessionmaker) as session:
        made = WebhookCreate(name="ops", url="http://127.0.0.1:1/a")
        await webhooks.create(session, settings, box, made, by="t", now=datetime.now(UTC))
    monkeypatch.setattr(webhooks, "_name_free", lambda *_: asyncio.sleep(0))  # as if the other won meanwhile
    async with unit_of_work(app.state.sessionmaker) as session:
        again = WebhookCreate(name="ops", url="http://127.0.0.1:1/b")
        with pytest.raises(Conflict):
            await webhooks.create(session, settings, box, again, by="t", now=datetime.now(UTC))
        assert [h.name for h in await webhooks.list_all(session)] == ["ops"]  # the session still works
