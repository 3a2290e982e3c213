"""Significance of differences (app/confidence.py, services/comparisons.py): the error rates the
design promises, on generated samples and on the simulator's known noise, and the comparison on
the compare page, the run page and their JSON twins."""

from __future__ import annotations

import random
from datetime import timedelta

import httpx
import numpy as np
import pytest
from sqlalchemy import insert

from app.confidence import Spread, difference, family_level, spread_of
from app.db import unit_of_work
from app.models import Endpoint, RequestSample, Run, RunStep
from app.probe.runner import Prober
from app.probe.types import Sample, Target, Workload
from app.services import records
from app.services.comparisons import StepValues, _differences
from app.snapshot import ProfileSnapshot
from tests.conftest import bearer
from tests.simproc import simulator
from tests.truth import simulator_lateness_ms, truthful

# Generated sides are one draw each from fixed distributions: no run-to-run spread beyond their requests.
KNOWN = Spread(value=0.0, source="known")
NO_SPREAD = {(metric, stat): KNOWN for metric in ("ttft_ms", "tpot_ms") for stat in ("p50", "p99")}


def _within(a, b):  # type: ignore[no-untyped-def]
    return _differences(a, b, "p99", NO_SPREAD, NO_SPREAD)


def _pair(rng: np.random.Generator, n: int, shift: float) -> tuple[tuple[list[float], list[float]], ...]:
    def side(scale: float) -> tuple[list[float], list[float]]:
        return (
            list(rng.lognormal(np.log(100 * scale), 0.25, n)),
            list(rng.lognormal(np.log(20 * scale), 0.15, n)),
        )

    return side(1.0), side(shift)


def test_identical_sides_compare_as_no_difference_at_least_95_times_in_100() -> None:
    """A comparison is a family (TTFT and TPOT, median and p99 where there are enough requests);
    its Bonferroni-adjusted intervals hold together at 95 %: identical sides are called
    different in at most 5 of 100 comparisons (any figure significant counts as a call)."""
    rng = np.random.default_rng(21)
    called = 0
    for _ in range(100):
        a, b = _pair(rng, 300, 1.0)
        found = _within(a, b)
        assert [d.significant for d in found if d.statistic == "p99"] == [None, None]  # 300 < 1,000
        called += any(d.significant for d in found)
    print(f"identical sides called different: {called} of 100")
    assert called <= 5


def test_sides_ten_percent_apart_are_told_apart() -> None:
    """At a step's worth of requests (1,000 a side, TTFT spread sigma 0.25), every one of 20."""
    rng = np.random.default_rng(22)
    for _ in range(20):
        a, b = _pair(rng, 1000, 1.10)
        found = {d.label: d for d in _within(a, b)}
        ttft = found["TTFT p50"]
        assert ttft.significant and ttft.verdict == "worse" and ttft.low_pct is not None
        assert ttft.low_pct < 10.0 < ttft.high_pct + 3.0  # the interval sits around the truth
        assert found["TPOT p50"].significant


def test_a_tail_needs_requests_beyond_it_and_the_sentences_say_so() -> None:
    rng = np.random.default_rng(23)
    a, b = rng.lognormal(4.6, 0.2, 1200), rng.lognormal(4.6, 0.2, 1200) * 0.77
    d = difference("ttft_ms", "p99", "TTFT p99", list(a), list(b), confidence=family_level(4))
    assert d.significant and d.verdict == "better"
    assert d.text.startswith("2") and "% lower TTFT p99 (95 % CI" in d.text
    few = difference("ttft_ms", "p99", "TTFT p99", list(a[:200]), list(b[:200]))
    assert few.significant is None and few.verdict == "unknown"
    assert "too few requests to tell (200; p99 needs 1000 a side)" in few.text
    same = difference("ttft_ms", "p50", "TTFT p50", list(a), list(a[::-1]))
    assert same.significant is False and same.text.startswith("no significant difference in TTFT p50 (+0.0 %")


async def _step_of(url: str, requests: int = 400) -> tuple[list[float], list[float]]:
    profile = ProfileSnapshot(
        load_levels=[32], requests_per_step=requests, input_tokens_mean=32, output_tokens_mean=8
    )
    prober = Prober(Target(url, "sim"), Workload.from_profile(profile))
    step = await prober.run_step(0, 32)
    from app.probe.stats import tpot_ms

    ok = [s for s in step.samples if s.ok]
    return [s.ttft_ms for s in ok if s.ttft_ms is not None], [v for s in ok if (v := tpot_ms(s)) is not None]


@pytest.mark.slow
async def test_simulators_with_known_noise_compare_as_they_are() -> None:
    """Identical noisy simulators (sigma 0.15 on every request's delays) compare as no
    significant difference; one 10 % slower is told apart, in the right direction."""
    noisy = ("--preset", "fixed", "--ttft-ms", "40", "--itl-ms", "4", "--noise", "0.15")
    with simulator(*noisy, "--seed", "1") as one, simulator(*noisy, "--seed", "2") as two:
        a = await _step_of(one, 1000)
        b = await _step_of(two, 1000)
    assert not any(d.significant for d in _differences(a, b, "p99"))
    slower = ("--preset", "fixed", "--ttft-ms", "44", "--itl-ms", "4.4", "--noise", "0.15", "--seed", "3")
    with simulator(*slower) as three:
        c = await _step_of(three, 1000)
    found = {d.label: d for d in _differences(a, c, "p99")}
    assert found["TTFT p50"].verdict == "worse" and found["TPOT p50"].verdict == "worse"


@pytest.mark.slow
async def test_identical_simulators_compare_as_no_difference_at_least_95_times_in_100() -> None:
    """100 pairs of steps (100 requests a side) on two simulators with the same delays and noise
    (sigma 0.15 on every request's delays, different seeds), one after the other as a user would
    run them: at most 5 pairs are called different in any headline figure. The comparison carries
    the assumed run-to-run spread (nothing measured it yet): from requests alone, 61 of 100 pairs
    of 10 ms simulators were called different on this machine, the runs' own drift."""
    noisy = ("--preset", "fixed", "--ttft-ms", "40", "--itl-ms", "4", "--noise", "0.15")
    called = 0
    with simulator(*noisy, "--seed", "11") as one, simulator(*noisy, "--seed", "12") as two:
        for i in range(100):
            first, second = (one, two) if i % 2 == 0 else (two, one)
            a = await _step_of(first, 100)
            b = await _step_of(second, 100)
            called += any(d.significant for d in _differences(a, b, "p99"))
    print(f"identical simulators called different: {called} of 100")
    assert called <= 5


def test_a_run_to_run_spread_is_read_from_history_or_trials_and_widens_the_interval() -> None:
    """History: the changes between consecutive runs, so a step in the series is not spread;
    trials: their SD; under the runs or trials needed, nothing (the comparison assumes)."""
    rng = np.random.default_rng(24)
    steady = list(100 * np.exp(rng.normal(0, 0.04, 40)))
    found = spread_of(steady, "history")
    assert found is not None and found.source == "history" and 0.025 < found.value < 0.06
    stepped = [v * (1.3 if i >= 20 else 1.0) for i, v in enumerate(steady)]
    moved = spread_of(stepped, "history")
    assert moved is not None and moved.value < 0.07  # the 30 % step is one change of 39
    assert spread_of(steady[:5], "history") is None and spread_of([100.0, 110.0], "trials") is None
    trials = spread_of([100.0, 110.0, 90.0], "trials")
    assert trials is not None and abs(trials.value - 0.1) < 0.01 and "from 3 trials" in trials.text
    a, b = rng.lognormal(4.6, 0.2, 1000), rng.lognormal(4.6, 0.2, 1000) * 1.06
    narrow = difference("ttft_ms", "p50", "TTFT p50", list(a), list(b))
    wide = difference("ttft_ms", "p50", "TTFT p50", list(a), list(b), spread_a=trials, spread_b=trials)
    assert narrow.significant and not wide.significant  # 6 % is within two runs' 10 % spread
    assert (
        wide.low_pct is not None and wide.low_pct < -15 and wide.high_pct is not None and wide.high_pct > 25
    )


def test_a_steps_trials_give_each_figure_its_spread() -> None:
    values = StepValues()
    rng = np.random.default_rng(25)
    for trial, scale in enumerate((100.0, 110.0, 90.0)):
        for v in rng.lognormal(np.log(scale), 0.05, 300):
            values.ttft.append(float(v))
            values.ttft_trial.append(trial)
            values.tpot.append(5.0)
            values.tpot_trial.append(trial)
    spreads = values.trial_spreads("p99")
    ttft = spreads[("ttft_ms", "p50")]
    assert ttft.source == "trials" and ttft.runs == 3 and 0.08 < ttft.value < 0.12
    assert spreads[("tpot_ms", "p50")].value == 0.0


async def _stored_run(session, endpoint_id: int, ttft_ms: float, at: int) -> int:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    created = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(hours=at)
    run = Run(
        endpoint_id=endpoint_id, profile_name="chat", profile_snapshot={"slo_ttft_ms": 500}, cost_snapshot={},
        status="succeeded", trigger="manual", created_at=created, finished_at=created,
        scorecard={"operating_point": {"step_index": 0, "load": 8.0, "load_kind": "concurrency",
                                       "output_tokens_per_s": 100.0}, "letters": []},
    )  # fmt: skip
    session.add(run)
    await session.flush()
    rng = random.Random(at)
    ttfts = [ttft_ms * rng.lognormvariate(0, 0.2) for _ in range(400)]
    summary = {"concurrency": 8, "requests": {"sent": 400, "completed": 400},
               "ttft_ms": {"p50": float(np.median(ttfts))}, "tpot_ms": {"p50": 5.0}}  # fmt: skip
    session.add(RunStep(run_id=run.id, step_index=0, summary=summary))
    rows = []
    for i, ttft in enumerate(ttfts):
        first = int(ttft * 1e6)
        sample = Sample(seq=i, sent_ns=0, first_content_ns=first, output_tokens=8, input_tokens=32,
                        chunk_ns=[first + k * 5_000_000 for k in range(8)], end_ns=first + 40_000_000)  # fmt: skip
        rows.append(records.sample_row(run.id, 0, sample, 0))
    await session.execute(insert(RequestSample), rows)
    return run.id


async def test_compare_page_run_page_and_api_say_whether_runs_differ(
    app, client: httpx.AsyncClient, people
) -> None:  # type: ignore[no-untyped-def]
    async with unit_of_work(app.state.sessionmaker) as session:
        ids = []
        for name in ("a-base", "b-faster"):
            endpoint = Endpoint(name=name, base_url="http://127.0.0.1:9/v1", model="m", tags=[])
            session.add(endpoint)
            await session.flush()
            ids.append(endpoint.id)
        first = await _stored_run(session, ids[0], 100.0, 1)
        second = await _stored_run(session, ids[0], 100.0, 2)  # the same endpoint again
        faster = await _stored_run(session, ids[1], 70.0, 3)
    auth = await bearer(client, "viewer")
    page = (
        await client.get(f"/api/v1/compare?profile=chat&endpoint={ids[0]}&endpoint={ids[1]}", headers=auth)
    ).json()
    [diff] = page["differences"]
    assert (diff["endpoint"], diff["against"]) == ("b-faster", "a-base")
    comparison = diff["comparison"]
    assert comparison["run_a"] == second and comparison["run_b"] == faster and comparison["load"] == 8.0
    ttft = {d["label"]: d for d in comparison["differences"]}["TTFT p50"]
    assert ttft["significant"] and ttft["verdict"] == "better" and -36 < ttft["change_pct"] < -24
    assert "% lower TTFT p50 (95 % CI" in comparison["headline"]
    html = (await client.get(f"/compare?profile=chat&endpoint={ids[0]}&endpoint={ids[1]}", headers=auth)).text
    assert 'data-figure="TTFT p50" data-verdict="better"' in html and "b-faster against a-base" in html
    # A run against the one before it on its endpoint: the same engine, no significant difference.
    again = (await client.get(f"/api/v1/runs/{second}/comparison", headers=auth)).json()
    assert again["run_a"] == first and again["headline"] == "no significant difference", again
    explicit = (await client.get(f"/api/v1/runs/{faster}/comparison?against={first}", headers=auth)).json()
    assert explicit["run_a"] == first and explicit["significant"]
    none_before = await client.get(f"/api/v1/runs/{first}/comparison", headers=auth)
    assert none_before.status_code == 404 and "no earlier run" in none_before.json()["error"]["message"]
    itself = await client.get(f"/api/v1/runs/{first}/comparison?against={first}", headers=auth)
    assert itself.status_code == 422
    run_page = (await client.get(f"/runs/{second}", headers=auth)).text
    assert 'id="against-previous"' in run_page and "no significant difference" in run_page


async def test_a_comparison_reads_each_sides_spread_from_its_history(
    app, client: httpx.AsyncClient, people
) -> None:  # type: ignore[no-untyped-def]
    """Seven runs of one endpoint whose TTFT moves run to run (100, 108, 95, 104, 97, 106, 99 ms):
    the last against the one before reads its spread from history and says so; an endpoint with
    two runs assumes it (the page test above)."""
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = Endpoint(name="moving", base_url="http://127.0.0.1:9/v1", model="m", tags=[])
        session.add(endpoint)
        await session.flush()
        ids = [
            await _stored_run(session, endpoint.id, ttft, at)
            for at, ttft in enumerate((100.0, 108.0, 95.0, 104.0, 97.0, 106.0, 99.0), start=10)
        ]
    auth = await bearer(client, "viewer")
    found = (await client.get(f"/api/v1/runs/{ids[-1]}/comparison", headers=auth)).json()
    ttft = {d["label"]: d for d in found["differences"]}["TTFT p50"]
    assert ttft["spread_b"]["source"] == "history" and ttft["spread_b"]["runs"] == 7
    assert ttft["spread_a"]["source"] == "history" and ttft["spread_a"]["runs"] == 6  # six up to A
    assert 0.03 < ttft["spread_b"]["value"] < 0.15, ttft["spread_b"]
    assert (
        "B from 7 runs: TTFT p50 " in found["spread_note"]
        and "assumed for TTFT p99" not in found["spread_note"]
    )
    assert found["headline"] == "no significant difference"  # -7 % within this endpoint's own movement
    page = (await client.get(f"/runs/{ids[-1]}", headers=auth)).text
    assert 'class="spread-note"' in page and "from 7 runs" in page


@pytest.mark.slow
async def test_a_warm_up_is_left_out_of_the_steady_window() -> None:
    """A simulator three times slower for its first 1.5 s: the step's window starts after it, its
    TTFT (median and mean) within 2 % of the steady truth (40 ms), while the whole step's mean
    carries the warm-up."""
    args = ("--preset", "fixed", "--ttft-ms", "40", "--itl-ms", "4")
    profile = ProfileSnapshot(
        load_levels=[8], duration_per_step_s=5, input_tokens_mean=32, output_tokens_mean=16
    )
    for attempt in range(2):  # a machine busy enough to make MSER-5 cut past half the step: once more
        with simulator(*args, "--warmup-s", "1.5", "--warmup-factor", "3") as url:
            step = await Prober(Target(url, "sim"), Workload.from_profile(profile)).run_step(0, 8)
            late = simulator_lateness_ms(url)
        window = step.summary.steady
        if window is not None and not window.whole_step:
            break
        assert (
            attempt == 0
            and window is not None
            and "too few requests in the steady window" in (window.reason or "")
        )
    summary = step.summary.model_dump(mode="json")
    # The window leaves the warm-up out; on a busy machine MSER-5 may cut a later transient too,
    # but never below the share of the step it must keep.
    assert window is not None and not window.whole_step and window.start_s >= 1.3, window
    assert window.requests >= 40, window
    assert window.excluded_ramp_up >= 20 and step.summary.whole_step is not None
    truthful(summary, "ttft_ms", "p50", 40.0, 0.8, late)
    truthful(summary, "ttft_ms", "mean", 40.0, 0.8, late)
    whole = step.summary.whole_step.ttft_ms
    assert whole.mean is not None and whole.mean > 45.0  # the warm-up's 120 ms requests
    # Without a warm-up the window's figures are the whole step's (MSER-5 may still cut a start
    # the machine made slow: a busy core is a transient too).
    with simulator(*args) as url:
        steady = await Prober(Target(url, "sim"), Workload.from_profile(profile)).run_step(0, 8)
        late = simulator_lateness_ms(url)
    truthful(steady.summary.model_dump(mode="json"), "ttft_ms", "p50", 40.0, 0.8, late)


@pytest.mark.slow
async def test_trial_intervals_cover_the_truth_at_least_90_times_in_100() -> None:
    """100 runs of one step in 3 trials against a simulator whose inter-token delay carries a
    known noise (each request's delays times a lognormal factor of median 1, sigma 0.3): the
    trials' 95 % interval of TPOT p50 holds the truth, 2 ms (the delay times the factor's
    median; TPOT is a difference of two client stamps, so the client's own overhead cancels, and
    spread over 15 gaps, so a timer the busy machine fired late moves it little), in at least 90."""
    profile = ProfileSnapshot(
        load_levels=[16], requests_per_step=48, input_tokens_mean=8, output_tokens_mean=16, trials=3
    )
    covered = runs = 0
    with simulator(
        "--preset", "fixed", "--ttft-ms", "1", "--itl-ms", "2", "--noise", "0.3", "--seed", "5"
    ) as url:
        prober = Prober(Target(url, "sim"), Workload.from_profile(profile))
        for i in range(100):
            step = await prober.run_step(i, 16)
            trials = step.summary.trials
            assert trials is not None and trials.count == 3 and len(step.samples) == 3 * 48
            figure = trials.figure("tpot_ms", "p50")
            assert figure is not None and figure.low is not None and figure.high is not None
            runs += 1
            covered += figure.low <= 2.0 <= figure.high
    print(f"trial intervals holding the truth: {covered} of {runs}")
    assert covered >= 90


async def test_a_profile_with_trials_runs_stores_recomputes_and_shows_them(
    app, client: httpx.AsyncClient, people
) -> None:  # type: ignore[no-untyped-def]
    from app.services import results
    from tests.api_helpers import wait_for_run

    auth = await bearer(client, "editor")
    profile = {"name": "tried", "input_tokens_mean": 16, "output_tokens_mean": 8, "load_levels": [1, 4],
               "requests_per_step": 8, "slo_ttft_ms": 500, "trials": 2, "trial_cooldown_s": 0.1}  # fmt: skip
    made = await client.post("/api/v1/profiles", json=profile, headers=auth)
    assert made.status_code == 201 and made.json()["trials"] == 2, made.text
    refused = await client.post(
        "/api/v1/profiles", json={**profile, "name": "many", "trials": 11}, headers=auth
    )
    assert refused.status_code == 422 and "trials" in refused.text
    with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "2", "--noise", "0.2") as url:
        endpoint = await client.post("/api/v1/endpoints", json={"name": "sim", "base_url": url, "model": "sim",
                                                                 "gpu_count": 1, "price_per_gpu_hour": 2.0}, headers=auth)  # fmt: skip
        accepted = await client.post(
            f"/api/v1/endpoints/{endpoint.json()['id']}/runs", json={"profile": "tried"}, headers=auth
        )
        run_id = accepted.json()["run_id"]
        summary = await wait_for_run(client, run_id, auth)
    assert summary["status"] == "succeeded", summary
    for step in summary["steps"]:
        assert step["trials"]["count"] == 2 and step["requests"]["sent"] == 16
    point = summary["scorecard"]["operating_point"]
    assert point["trials"] == 2  # the conservative bounds, and it says so
    last = summary["steps"][point["step_index"]]["trials"]
    tput = next(f for f in last["figures"] if f["metric"] == "output_tokens_per_s")
    assert point["output_tokens_per_s"] == pytest.approx(tput["low"]) and tput["low"] < tput["mean"]
    samples = (await client.get(f"/api/v1/runs/{run_id}/samples?limit=100", headers=auth)).json()["items"]
    assert {s["trial"] for s in samples} == {0, 1}
    async with unit_of_work(app.state.sessionmaker) as session:
        assert await results.recompute(session, run_id=run_id) == 2
    again = (await client.get(f"/api/v1/runs/{run_id}", headers=auth)).json()["steps"][1]
    assert again["trials"]["count"] == 2
    assert again["ttft_ms"]["p50"] == pytest.approx(summary["steps"][1]["ttft_ms"]["p50"], abs=0.01)
    page = (await client.get(f"/runs/{run_id}", headers=auth)).text
    assert 'id="trials-table"' in page and "conservative bound over 2 trials" in page


async def test_two_periods_are_compared_run_by_run(app, client: httpx.AsyncClient, people) -> None:  # type: ignore[no-untyped-def]
    """Six runs a week: an endpoint that stayed at 100 ms compares as no significant difference;
    one that went from 100 to 125 ms is 25 % higher in TTFT p50, its interval around it. The
    endpoint page shows the last week against the week before."""
    from datetime import UTC, datetime

    async with unit_of_work(app.state.sessionmaker) as session:
        ids = []
        for name, after in (("steady", 100.0), ("slower", 125.0)):
            endpoint = Endpoint(name=name, base_url="http://127.0.0.1:9/v1", model="m", tags=[])
            session.add(endpoint)
            await session.flush()
            ids.append(endpoint.id)
            for k in range(6):
                await _stored_run(session, endpoint.id, 100.0 * (1 + 0.02 * (k % 3 - 1)), -150 + 12 * k)
                await _stored_run(session, endpoint.id, after * (1 + 0.02 * (k % 3 - 1)), -60 + 12 * k)
    auth = await bearer(client, "viewer")
    base = datetime(2026, 12, 1, tzinfo=UTC)
    periods = {
        "a_since": (base - timedelta(days=7)).isoformat(), "a_until": (base - timedelta(days=3)).isoformat(),
        "b_since": (base - timedelta(days=3)).isoformat(), "b_until": (base + timedelta(days=1)).isoformat(),
    }  # fmt: skip
    found = {}
    for name, endpoint_id in zip(("steady", "slower"), ids, strict=True):
        response = await client.get(
            f"/api/v1/endpoints/{endpoint_id}/period-comparison",
            params={"profile": "chat", **periods},
            headers=auth,
        )
        found[name] = response.json()
        assert (found[name]["runs_a"], found[name]["runs_b"]) == (6, 6), found[name]
    assert found["steady"]["headline"] == "no significant difference"
    ttft = {d["label"]: d for d in found["slower"]["differences"]}["TTFT p50"]
    assert ttft["significant"] and ttft["verdict"] == "worse" and 20 < ttft["change_pct"] < 30
    assert ttft["low_pct"] < 25 < ttft["high_pct"]
    backwards = await client.get(
        f"/api/v1/endpoints/{ids[0]}/period-comparison",
        params={"profile": "chat", **periods, "a_until": periods["a_since"]}, headers=auth,
    )  # fmt: skip
    assert (
        backwards.status_code == 422
        and "period A ends before it starts" in backwards.json()["error"]["message"]
    )
    shorter = {**periods, "profile": "chat", "a_since": (base - timedelta(days=4)).isoformat()}
    url = f"/api/v1/endpoints/{ids[0]}/period-comparison"
    few = (await client.get(url, params=shorter, headers=auth)).json()
    assert few["headline"].startswith("too few runs to tell"), few


async def test_the_endpoint_page_compares_the_last_week_with_the_week_before(app, client, people) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = Endpoint(name="weekly", base_url="http://127.0.0.1:9/v1", model="m", tags=[])
        session.add(endpoint)
        await session.flush()
        for k in range(12):
            run_id = await _stored_run(session, endpoint.id, 100.0 if k < 6 else 130.0, k)
            run = await session.get(Run, run_id)
            run.created_at = run.finished_at = now - timedelta(days=13) + timedelta(days=k, hours=1)
        endpoint_id = endpoint.id
    auth = await bearer(client, "viewer")
    page = (await client.get(f"/endpoints/{endpoint_id}", headers=auth)).text
    assert 'class="headline period-headline" data-profile="chat"' in page
    assert "% higher TTFT p50" in page and "6 runs against 6" in page
