"""Stops that protect a measurement (app/probe/guard.py) against simulators whose breakdown is
known: one offered four times what it can serve, one that fails half its requests, and a
long-prompt workload that is slow but steady (never stopped)."""

from __future__ import annotations

import pytest

from app.probe.runner import Prober
from app.probe.types import Target, Workload
from app.snapshot import ProfileSnapshot
from tests.simproc import simulator


@pytest.mark.slow
async def test_an_overloaded_server_stops_the_step_and_the_sweep_skips_heavier_levels() -> None:
    """At most 8 sequences of 64 tokens at ~11 ms a decode step: about 11 requests a second. At
    40 a second the requests in flight pile up; the step stops within 15 s, saying so, and the
    80/s level is skipped. The stopped step never meets the SLO."""
    profile = ProfileSnapshot(
        load_mode="rate", load_levels=[40, 80], arrival="constant", duration_per_step_s=30,
        requests_per_step=None, input_tokens_mean=32, output_tokens_mean=64, slo_ttft_ms=60_000,
    )  # fmt: skip
    with simulator("--preset", "h100-fp8-70b", "--max-batch", "8") as url:
        result = await Prober(Target(url, "sim"), Workload.from_profile(profile)).run()
    [step] = result.steps  # the second level never ran
    stop = step.summary.stopped
    assert stop is not None and stop.reason == "saturated", step.summary.quality.client_notes
    assert stop.at_s <= 15.0 and "in flight grew from" in stop.evidence and stop.skipped_levels == [80.0]
    assert not step.summary.meets(profile.slo)


async def test_a_failing_server_stops_on_errors() -> None:
    profile = ProfileSnapshot(load_levels=[4], duration_per_step_s=20, requests_per_step=None,
                              input_tokens_mean=16, output_tokens_mean=4)  # fmt: skip
    with simulator("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--error-rate", "0.6") as url:
        step = await Prober(Target(url, "sim"), Workload.from_profile(profile)).run_step(0, 4)
    stop = step.summary.stopped
    assert stop is not None and stop.reason == "errors" and stop.at_s < 5, stop
    assert "requests failed (limit 20%)" in stop.evidence


@pytest.mark.slow
async def test_long_prompts_that_are_slow_but_steady_are_not_stopped() -> None:
    """2,000-token prompts at 0.5 ms a token: TTFT about 1 s, at 4 requests a second (about 4
    in flight, steady): nothing grows, nothing stops."""
    profile = ProfileSnapshot(
        load_mode="rate", load_levels=[4], arrival="constant", duration_per_step_s=8, requests_per_step=None,
        input_tokens_mean=2000, output_tokens_mean=4, slo_ttft_ms=500,
    )  # fmt: skip
    args = ("--preset", "fixed", "--ttft-ms", "1", "--itl-ms", "1", "--prefill-ms-per-token", "0.5",
            "--prefix-cache-tokens", "0")  # fmt: skip
    with simulator(*args) as url:
        step = await Prober(Target(url, "sim"), Workload.from_profile(profile)).run_step(0, 4)
    assert step.summary.stopped is None, step.summary.stopped
    assert step.summary.ttft_ms.p50 is not None and step.summary.ttft_ms.p50 > 900
