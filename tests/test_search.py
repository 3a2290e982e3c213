"""The SLO search: bracketing then bisection, bounded in steps and time; on the simulator it
lands within one step of the batching model's analytic capacity, and the operating point is
the measured step."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.probe.search import Search, SearchSpec
from app.simulator.engine import expected_closed_loop
from app.simulator.presets import PRESETS
from tests.conftest import bearer, csrf_from, login
from tests.simproc import simulator


def drive(spec: SearchSpec, capacity: float) -> Search:
    """Run a search against an oracle that meets the SLO up to `capacity`."""
    search = Search(spec)
    load = search.first()
    while load is not None:
        load = search.next(load, load <= capacity, elapsed_s=0.0)
    return search


def test_bracketing_then_bisection_finds_the_capacity() -> None:
    found = drive(SearchSpec(start=1, ceiling=256, integer=True, max_steps=20), capacity=37)
    assert found.meets == 37 and found.breaks == 38
    loads = [load for load, _ in found.trail]
    assert loads[:7] == [1, 2, 4, 8, 16, 32, 64]  # doubling to bracket
    assert loads[7:] == [48, 40, 36, 38, 37]  # then halving the bracket
    assert found.stopped == "bracketed to one step"


def test_it_goes_down_from_a_start_that_breaks_and_stops_at_its_bounds() -> None:
    down = drive(SearchSpec(start=64, ceiling=256, integer=True, max_steps=20), capacity=5)
    assert down.meets == 5 and down.breaks == 6
    assert [load for load, _ in down.trail][:5] == [64, 32, 16, 8, 4]
    never = drive(SearchSpec(start=8, ceiling=64, integer=True), capacity=0)
    assert never.meets is None and never.stopped == "even the floor (1) breaks the SLO"
    always = drive(SearchSpec(start=8, ceiling=64, integer=True), capacity=1000)
    assert always.meets == 64 and always.stopped == "the ceiling (64) meets the SLO"
    short = drive(SearchSpec(start=1, ceiling=256, integer=True, max_steps=4), capacity=37)
    assert len(short.trail) == 4 and short.meets == 8 and short.stopped == "the step limit (4)"
    timed = Search(SearchSpec(start=1, ceiling=256, integer=True, budget_s=60))
    assert timed.next(1, True, elapsed_s=61) is None and timed.stopped == "the time budget (60 s)"


def test_a_rate_search_stops_within_five_percent() -> None:
    found = drive(SearchSpec(start=1.0, ceiling=100.0, integer=False, max_steps=30), capacity=13.3)
    assert found.meets is not None and found.breaks is not None
    assert found.meets <= 13.3 < found.breaks and found.breaks - found.meets <= 0.05 * found.meets


# The batching model with a steep per-sequence cost and prefill that costs nothing measurable:
# TPOT = 10 + 4 x c ms, so a TPOT limit of 52 ms holds up to c = 10 and breaks at 11.
SIM = ("--preset", "h100-fp8-70b", "--base-ms", "10", "--per-seq-ms", "4", "--prefill-rate", "1000000")
SEARCH = {"name": "search", "input_tokens_mean": 32, "output_tokens_mean": 10, "load_levels": [1, 64],
          "requests_per_step": 24, "warmup_requests": 1, "slo_tpot_ms": 52, "slo_percentile": 50,
          "search": True, "search_max_steps": 12}  # fmt: skip


def analytic_capacity() -> int:
    config = PRESETS["h100-fp8-70b"].with_overrides(base_ms=10.0, per_seq_ms=4.0, prefill_tokens_per_s=1e6)
    fits = [c for c in range(1, 65) if expected_closed_loop(config, c, 32, 10).tpot_ms <= 52]
    return max(fits)


async def test_a_search_on_the_simulator_lands_within_one_step_of_its_capacity(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    assert analytic_capacity() == 10
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        editor = await bearer(client, "editor")
        made = await client.post("/api/v1/profiles", json=SEARCH, headers=editor)
        assert made.status_code == 201 and made.json()["search"] is True
        with simulator(*SIM) as url:
            endpoint = await client.post(
                "/api/v1/endpoints",
                json={
                    "name": "sim",
                    "base_url": url,
                    "model": "sim",
                    "gpu_count": 1,
                    "price_per_gpu_hour": 2.0,
                },
                headers=editor,
            )
            accepted = await client.post(
                f"/api/v1/endpoints/{endpoint.json()['id']}/runs", json={"profile": "search"}, headers=editor
            )
            assert await app.state.executor.tick() is True
            await asyncio.wait_for(asyncio.gather(*app.state.executor.active), timeout=240)
        run = (await client.get(f"/api/v1/runs/{accepted.json()['run_id']}", headers=editor)).json()
        await login(client, "viewer")
        page = (await client.get(f"/runs/{run['run_id']}")).text
    assert (
        'id="slo-search"' in page
        and f'id="search-capacity">{run["environment"]["search"]["capacity"]:g}<' in page
    )
    assert run["status"] == "succeeded", run["error"]
    search = run["environment"]["search"]
    loads = [load for load, _ in search["trail"]]
    assert len(run["steps"]) == len(loads) <= 12  # every probe step stored as usual
    assert [step["concurrency"] for step in run["steps"]] == loads
    assert loads[:4] == [1, 2, 4, 8]
    degraded = [step for step in run["steps"] if step["degraded"]]
    if not degraded:  # a step measured with a busy client may land further off, and says so
        assert abs(search["capacity"] - analytic_capacity()) <= 1, search
    point = run["scorecard"]["operating_point"]
    assert point["interpolated"] is False and point["load"] == search["capacity"]  # measured
    measured = run["steps"][point["step_index"]]
    assert measured["concurrency"] == search["capacity"] and measured["slo"]["met"] is True


async def test_a_search_needs_two_levels_and_an_slo(app, client, people) -> None:  # type: ignore[no-untyped-def]
    editor = await bearer(client, "editor")
    one = await client.post("/api/v1/profiles", json={**SEARCH, "load_levels": [8]}, headers=editor)
    assert one.status_code == 422 and "load_levels" in one.json()["error"]["fields"]
    no_slo = {**SEARCH, "slo_tpot_ms": None}
    refused = await client.post("/api/v1/profiles", json=no_slo, headers=editor)
    assert refused.status_code == 422 and "search" in refused.json()["error"]["fields"]
    csrf = await login(client, "editor")
    form = {"csrf_token": csrf, "name": "searcher", "input_tokens_mean": "32", "output_tokens_mean": "10",
            "load_mode": "concurrency", "load_levels": "1, 64", "requests_per_step": "24", "slo_tpot_ms": "52",
            "slo_percentile": "50", "search": "on", "search_max_steps": "8"}  # fmt: skip
    saved = await client.post("/profiles/new", data=form)
    assert saved.status_code == 303, saved.text
    page = (await client.get("/profiles/searcher/edit")).text
    assert 'name="search" checked' in page and csrf_from(page)


@pytest.mark.parametrize("levels", [[1, 64]])
def test_the_search_spec_comes_from_the_profile(levels: list[int]) -> None:
    from app.snapshot import ProfileSnapshot

    profile = ProfileSnapshot.model_validate({**SEARCH, "load_levels": levels, "load_mode": "concurrency"})
    assert SearchSpec.from_profile(profile) == SearchSpec(
        start=1, ceiling=64, integer=True, max_steps=12, budget_s=900.0
    )
    assert SearchSpec.from_profile(profile.model_copy(update={"search": False})) is None
