"""A run end to end against the simulator, stored and read back, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import func, insert, select

from app.db import unit_of_work
from app.models import RequestSample, Run
from app.probe.types import Sample
from app.services import records, results
from tests.api_helpers import wait_for_run
from tests.conftest import bearer
from tests.simproc import simulator
from tests.truth import simulator_lateness_ms, truthful

QUICK = {
    "name": "quick",
    "input_tokens_mean": 64,
    "output_tokens_mean": 16,
    "load_levels": [1, 4],
    "requests_per_step": 8,
    "slo_ttft_ms": 500,
    "slo_tpot_ms": 50,
    "target_price_per_million": 1.0,
}


async def test_run_end_to_end(app, client: httpx.AsyncClient, people) -> None:
    auth = await bearer(client, "editor")
    assert (await client.post("/api/v1/profiles", json=QUICK, headers=auth)).status_code == 201
    with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "2") as url:
        endpoint = await client.post(
            "/api/v1/endpoints",
            json={
                "name": "sim",
                "base_url": url,
                "model": "sim",
                "gpu_count": 1,
                "price_per_gpu_hour": 3.6,
                "watts_per_gpu": 500,
            },
            headers=auth,
        )
        endpoint_id = endpoint.json()["id"]
        accepted = await client.post(
            f"/api/v1/endpoints/{endpoint_id}/runs", json={"profile": "quick"}, headers=auth
        )
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["run_id"]
        summary = await wait_for_run(client, run_id, auth)
        late = simulator_lateness_ms(url)
    assert summary["status"] == "succeeded", summary
    assert [s["concurrency"] for s in summary["steps"]] == [1, 4]
    step = summary["steps"][1]
    assert step["requests"]["completed"] == 8
    truthful(step, "ttft_ms", "p50", 20.0, 5.0, late)
    # $3.6/h at X output tok/s: cost per million output tokens = 3.6 / (X x 3600) x 1e6
    assert step["cost_per_million_output_tokens"] == pytest.approx(1e6 / step["output_tokens_per_s"] / 1000)
    card = summary["scorecard"]
    assert {letter["letter"] for letter in card["letters"]} == set("SMART")
    assert card["operating_point"]["load"] >= 1

    # Samples: JSON page and CSV.
    samples = (await client.get(f"/api/v1/runs/{run_id}/samples?limit=5", headers=auth)).json()
    assert samples["total"] == 16 and len(samples["items"]) == 5 and samples["next"]
    seen = [s["seq"] for s in samples["items"]]
    while samples["next"]:
        samples = (
            await client.get(f"/api/v1/runs/{run_id}/samples?limit=5&cursor={samples['next']}", headers=auth)
        ).json()
        seen += [s["seq"] for s in samples["items"]]
    assert sorted(seen) == seen and len(set(seen)) == 16
    csv_text = (await client.get(f"/api/v1/runs/{run_id}/samples?format=csv", headers=auth)).text
    assert csv_text.splitlines()[0].startswith("seq,step_index") and len(csv_text.splitlines()) == 17

    # The price changes later: the run keeps the cost it was measured at.
    await client.patch(f"/api/v1/endpoints/{endpoint_id}", json={"price_per_gpu_hour": 100.0}, headers=auth)
    again = (await client.get(f"/api/v1/runs/{run_id}", headers=auth)).json()
    assert again["steps"][1]["cost_per_million_output_tokens"] == step["cost_per_million_output_tokens"]

    # Recomputing from the samples gives the same numbers.
    async with unit_of_work(app.state.sessionmaker) as session:
        assert await results.recompute(session, run_id=run_id) == 2
    recomputed = (await client.get(f"/api/v1/runs/{run_id}", headers=auth)).json()["steps"][1]
    for key in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
        assert recomputed[key]["p50"] == pytest.approx(step[key]["p50"], abs=0.01), key
    assert recomputed["output_tokens_per_s"] == pytest.approx(step["output_tokens_per_s"], rel=1e-3)

    # Scorecard, overview and trend twins.
    cards = (await client.get(f"/api/v1/endpoints/{endpoint_id}/scorecard", headers=auth)).json()["items"]
    assert cards[0]["profile"] == "quick" and cards[0]["run_id"] == run_id and len(cards[0]["trend"]) == 1
    overview = (await client.get("/api/v1/scorecards?profile=quick", headers=auth)).json()
    assert overview["items"][0]["letters"][1]["letter"] == "M"
    trends = (await client.get("/api/v1/trends/cost?days=1", headers=auth)).json()
    assert trends["series"][0]["points"][0]["run_id"] == run_id
    listed = (await client.get(f"/api/v1/runs?endpoint_id={endpoint_id}", headers=auth)).json()
    assert listed["total"] == 1 and listed["items"][0]["status"] == "succeeded" and listed["next"] is None


async def test_unreachable_endpoint_fails_with_a_reason(app, client: httpx.AsyncClient, people) -> None:
    from tests.browser import free_port

    auth = await bearer(client, "editor")
    endpoint = await client.post(
        "/api/v1/endpoints",
        json={"name": "gone", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "m"},
        headers=auth,
    )
    run_id = (
        await client.post(
            f"/api/v1/endpoints/{endpoint.json()['id']}/runs", json={"profile": "smoke"}, headers=auth
        )
    ).json()["run_id"]
    summary = await wait_for_run(client, run_id, auth)
    assert summary["status"] == "failed" and "cannot connect" in summary["error"]


async def test_runs_need_an_editor_and_a_known_profile(client: httpx.AsyncClient, people) -> None:
    viewer = await bearer(client, "viewer")
    editor = await bearer(client, "editor")
    endpoint = await client.post(
        "/api/v1/endpoints",
        json={"name": "e", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        headers=editor,
    )
    url = f"/api/v1/endpoints/{endpoint.json()['id']}/runs"
    assert (await client.post(url, json={"profile": "chat"}, headers=viewer)).status_code == 403
    assert (await client.post(url, json={"profile": "nope"}, headers=editor)).status_code == 404
    assert (
        await client.post("/api/v1/endpoints/999/runs", json={"profile": "chat"}, headers=editor)
    ).status_code == 404


async def test_builtin_profiles_and_profile_validation(client: httpx.AsyncClient, people) -> None:
    auth = await bearer(client, "editor")
    names = {p["name"] for p in (await client.get("/api/v1/profiles", headers=auth)).json()["items"]}
    assert {"smoke", "realtime", "chat", "rag", "reasoning", "batch"} <= names
    unbounded = await client.post("/api/v1/profiles", json={**QUICK, "requests_per_step": None}, headers=auth)
    assert unbounded.status_code == 422 and "requests_per_step" in unbounded.json()["error"]["fields"]
    bad = await client.post("/api/v1/profiles", json={**QUICK, "name": "Bad Name"}, headers=auth)
    assert bad.status_code == 422 and "name" in bad.json()["error"]["fields"]
    edited = await client.patch("/api/v1/profiles/chat", json={"target_price_per_million": 0.8}, headers=auth)
    assert edited.status_code == 200 and edited.json()["target_price_per_million"] == 0.8


async def test_ten_thousand_samples_store_quickly(app, people) -> None:
    """Bulk insert: 10,000 samples in well under two seconds (measured, printed)."""
    async with unit_of_work(app.state.sessionmaker) as session:
        from app.models import Endpoint

        endpoint = Endpoint(name="bulk", base_url="http://127.0.0.1:9/v1", model="m", tags=[])
        session.add(endpoint)
        await session.flush()
        run = Run(
            endpoint_id=endpoint.id,
            profile_name="chat",
            profile_snapshot={},
            cost_snapshot={},
            progress={},
            scorecard={},
        )
        session.add(run)
        await session.flush()
        run_id = run.id
    base = time.perf_counter_ns()
    samples = [
        Sample(seq=i, sent_ns=base + i * 1000, first_content_ns=base + i * 1000 + 5_000_000,
               chunk_ns=[base + i * 1000 + 5_000_000 + k * 1_000_000 for k in range(64)], chunk_tokens=[1] * 64,
               end_ns=base + i * 1000 + 70_000_000, output_tokens=64, input_tokens=128)
        for i in range(10_000)
    ]  # fmt: skip
    rows = [records.sample_row(run_id, 0, s, base) for s in samples]
    started = time.perf_counter()
    async with unit_of_work(app.state.sessionmaker) as session:
        await session.execute(insert(RequestSample), rows)
    took = time.perf_counter() - started
    print(f"10,000 samples stored in {took:.2f} s")
    async with unit_of_work(app.state.sessionmaker) as session:
        assert (
            await session.scalar(select(func.count(RequestSample.id)).where(RequestSample.run_id == run_id))
            == 10_000
        )
    assert took < 2.0
    await asyncio.sleep(0)


async def test_run_now_form_and_live_partial(app, client: httpx.AsyncClient, people) -> None:
    from tests.conftest import login

    csrf = await login(client, "editor")
    created = await client.post(
        "/endpoints/new",
        data={"name": "p", "base_url": "http://127.0.0.1:9/v1", "model": "m", "csrf_token": csrf},
    )
    endpoint_path = created.headers["location"]
    page = await client.get(endpoint_path)
    assert "Run now" in page.text
    started = await client.post(endpoint_path + "/runs", data={"profile": "smoke", "csrf_token": csrf})
    assert started.status_code == 303 and started.headers["location"].startswith("/runs/")
    run_page = await client.get(started.headers["location"])
    assert 'id="run-progress"' in run_page.text
    partial = await client.get(started.headers["location"] + "/progress")
    assert partial.text.lstrip().startswith("{#") is False and 'id="run-progress"' in partial.text
    assert "<html" not in partial.text  # a partial, not a page
    no_csrf = await client.post(endpoint_path + "/runs", data={"profile": "smoke"})
    assert no_csrf.status_code == 403


async def test_profile_form_rerenders_with_messages(client: httpx.AsyncClient, people) -> None:
    from tests.conftest import login

    csrf = await login(client, "editor")
    bad = await client.post(
        "/profiles/new",
        data={"name": "mine", "input_tokens_mean": "many", "output_tokens_mean": "64", "load_levels": "1, 8",
              "requests_per_step": "10", "csrf_token": csrf},
    )  # fmt: skip
    assert (
        bad.status_code == 400
        and 'data-error-for="input_tokens_mean"' in bad.text
        and 'value="mine"' in bad.text
    )
    ok = await client.post(
        "/profiles/new",
        data={"name": "mine", "input_tokens_mean": "128", "output_tokens_mean": "64", "load_levels": "1, 8",
              "requests_per_step": "10", "load_mode": "concurrency", "arrival": "poisson", "slo_percentile": "99",
              "csrf_token": csrf},
    )  # fmt: skip
    assert ok.status_code == 303
    listing = await client.get("/profiles")
    assert "mine" in listing.text and "chat" in listing.text


async def test_run_list_keyset_pages_hold_still_while_runs_are_inserted(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from app.models import Endpoint

    app = idle_app
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = Endpoint(name="e", base_url="http://127.0.0.1:9/v1", model="m", tags=[])
        session.add(endpoint)
        await session.flush()
        # 25 runs, three of them created in the same microsecond: the id breaks the tie.
        for i in range(25):
            at = t0 + timedelta(minutes=i if i < 20 else 20)
            session.add(Run(endpoint_id=endpoint.id, profile_name="smoke", profile_snapshot={}, cost_snapshot={},
                            endpoint_snapshot={}, status="succeeded", trigger="api", created_at=at))  # fmt: skip
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth = await bearer(client, "viewer")
        first = (await client.get("/api/v1/runs?limit=10", headers=auth)).json()
        assert [r["id"] for r in first["items"]] == list(range(25, 15, -1)) and first["total"] is None
        # New runs arrive (newer than anything listed): the next pages neither repeat nor skip.
        async with unit_of_work(app.state.sessionmaker) as session:
            for i in range(5):
                session.add(Run(endpoint_id=endpoint.id, profile_name="smoke", profile_snapshot={}, cost_snapshot={},
                                endpoint_snapshot={}, status="queued", trigger="api",
                                created_at=t0 + timedelta(days=1, minutes=i)))  # fmt: skip
        seen = [r["id"] for r in first["items"]]
        cursor = first["next"]
        while cursor:
            page = (await client.get(f"/api/v1/runs?limit=10&cursor={cursor}", headers=auth)).json()
            seen += [r["id"] for r in page["items"]]
            cursor = page["next"]
        assert seen == list(range(25, 0, -1))
        fresh = (await client.get(f"/api/v1/runs?limit=5&endpoint_id={endpoint.id}", headers=auth)).json()
        assert [r["id"] for r in fresh["items"]] == [30, 29, 28, 27, 26] and fresh["total"] == 30
        bad = await client.get("/api/v1/runs?cursor=not-a-cursor", headers=auth)
        assert bad.status_code == 422 and bad.json()["error"]["fields"] == {
            "cursor": "not a cursor from this API"
        }
