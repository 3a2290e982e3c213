"""The probe against the simulator's known delays, over real sockets (simulator in its own
process). Ground truth: fixed mode, TTFT 100 ms, inter-token 10 ms, 128 output tokens."""

from __future__ import annotations

import pytest

from app.probe.runner import Prober, Workload
from app.probe.types import Target
from app.simulator import preset
from app.simulator.engine import expected_closed_loop
from tests.simproc import simulator

pytestmark = pytest.mark.slow

TTFT, ITL, OSL = 100.0, 10.0, 128


async def probe(base_url: str, levels: tuple[int, ...], requests: int, **workload: object):
    prober = Prober(
        Target(base_url, "sim"),
        Workload(levels=levels, requests_per_step=requests, output_tokens=OSL, **workload),
    )  # type: ignore[arg-type]
    result = await prober.run()
    assert result.status == "succeeded", result.error
    return result


@pytest.mark.parametrize(
    ("concurrency", "requests", "tolerance"), [(1, 6, 2.0), (64, 128, 2.0), (256, 256, 10.0)]
)
async def test_fixed_delays_are_measured_truthfully(
    concurrency: int, requests: int, tolerance: float
) -> None:
    with simulator("--preset", "fixed") as url:
        result = await probe(url, (concurrency,), requests)
    step = result.steps[0].summary
    assert step["requests"]["completed"] == requests
    assert abs(step["ttft_ms"]["p50"] - TTFT) <= tolerance, step["ttft_ms"]
    assert abs(step["itl_ms"]["p50"] - ITL) <= tolerance, step["itl_ms"]
    if concurrency == 64:
        assert abs(step["tpot_ms"]["p50"] - ITL) <= 0.5, step["tpot_ms"]
    assert all(s.osl == OSL for s in result.steps[0].samples), "output token counts must be exact"
    assert step["token_count_source"] == "usage" and step["itl_basis"] == "token"
    assert step["output_tokens"]["min"] == step["output_tokens"]["max"] == OSL


async def test_several_tokens_per_chunk_do_not_distort_itl() -> None:
    with simulator("--preset", "fixed", "--tokens-per-chunk", "4") as url:
        result = await probe(url, (16,), 32)
    step = result.steps[0].summary
    assert step["itl_basis"] == "token"
    assert abs(step["itl_ms"]["p50"] - ITL) <= 2.0, step["itl_ms"]
    assert abs(step["tpot_ms"]["p50"] - ITL) <= 0.5, step["tpot_ms"]
    chunks = result.steps[0].samples[0].chunk_tokens
    assert chunks is not None and chunks[0] == 1 and set(chunks[1:-1]) == {4}


async def test_reasoning_phase_ttft_and_ttfat() -> None:
    with simulator("--preset", "fixed", "--reasoning-tokens", "32") as url:
        result = await probe(url, (8,), 16)
    step = result.steps[0].summary
    assert abs(step["ttft_ms"]["p50"] - TTFT) <= 2.0, step["ttft_ms"]
    assert abs(step["ttfat_ms"]["p50"] - (TTFT + 32 * ITL)) <= 2.0, step["ttfat_ms"]
    assert all(s.reasoning_tokens == 32 and s.osl == OSL for s in result.steps[0].samples)


async def test_batching_throughput_rises_saturates_and_matches_the_model() -> None:
    args = ("--preset", "h100-fp8-70b", "--max-batch", "32")
    config = preset("h100-fp8-70b").with_overrides(max_batch=32)
    levels = (1, 8, 32, 64)
    with simulator(*args) as url:
        prober = Prober(
            Target(url, "sim"),
            Workload(
                levels=levels,
                requests_per_step=None,
                input_tokens=128,
                output_tokens=32,
                duration_per_step_s=2.5,
            ),
        )
        result = await prober.run()
    assert result.status == "succeeded", result.error
    tput = {s.concurrency: s.summary["output_tokens_per_s"] for s in result.steps}
    ttft = {s.concurrency: s.summary["ttft_ms"]["p50"] for s in result.steps}
    for c in (1, 8, 32):
        expected = expected_closed_loop(config, c, 128, 32).output_tokens_per_s
        assert tput[c] == pytest.approx(expected, rel=0.10), (c, tput[c], expected)
    assert tput[1] < tput[8] < tput[32]
    assert tput[64] == pytest.approx(tput[32], rel=0.10)  # saturated: max batch reached
    assert ttft[64] > 2 * ttft[32]  # overload queues requests: TTFT climbs


async def test_probe_leaves_the_machine_idle_at_concurrency_one() -> None:
    """Between tokens the probe sleeps in the event loop: under 5 % of a core at c=1."""
    with simulator("--preset", "fixed") as url:
        result = await probe(url, (1,), 4)
    cpu = result.steps[0].summary["quality"]["client_cpu_pct"]
    print(f"probe CPU at c=1: {cpu:.2f}% of a core")
    assert cpu < 5.0
