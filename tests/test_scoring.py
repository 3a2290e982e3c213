"""Scoring by hand: every expected number below is worked out in the comment beside it."""

from __future__ import annotations

import pytest

from app.domain import SLO
from app.environment import RunEnvironment
from app.probe.stats import summarize_step
from app.probe.types import Sample
from app.scoring.cost import per_million, step_costs, tokens_per_joule
from app.scoring.smart import log_score, operating_point, smart_letters
from app.snapshot import CostInputs, EndpointSnapshot, ProfileSnapshot
from app.summary import Quality, StepSummary

H100 = CostInputs(gpu_count=8, price_per_gpu_hour=2.5, watts_per_gpu=700)  # $20/h, 5.6 kW
HOSTED = CostInputs(input_price_per_million=0.6, output_price_per_million=2.4)


def step(
    c: int, out_tps: float, ttft_p99: float, tpot_p99: float, *, in_tps: float | None = None, failed: int = 0
) -> StepSummary:
    in_tps = out_tps if in_tps is None else in_tps
    return StepSummary.model_validate(
        {
            "concurrency": c,
            "request_rate": None,
            "requests": {"sent": 100, "completed": 100 - failed, "failed": failed, "errors": {}},
            "ttft_ms": {"p99": ttft_p99, "p50": ttft_p99 / 2},
            "tpot_ms": {"p99": tpot_p99, "p50": tpot_p99 / 2},
            "e2e_ms": {"p99": None},
            "output_tokens_per_s": out_tps,
            "input_tokens_per_s": in_tps,
            "total_tokens_per_s": out_tps + in_tps,
            "good_tokens_per_s": out_tps + in_tps,
            "tokens_per_s_per_user": {"p50": 1000 / (tpot_p99 / 2)},
            "slo_attainment": 1.0 - failed / 100,
            "token_count_source": "usage",
            "quality": {"osl_mismatch_flag": False},
        }
    )


def test_self_hosted_costs() -> None:
    # $20/h at 1000 output tok/s = 3.6 M tokens/h -> $5.5556 per million output tokens;
    # total 2000 tok/s -> $2.7778 per million tokens.
    costs = step_costs(step(8, 1000, 100, 20), H100)
    assert costs.cost_per_million_output_tokens == pytest.approx(20 / 3.6)
    assert costs.cost_per_million_tokens == pytest.approx(20 / 7.2)
    assert costs.cost_per_million_tokens_blended == costs.cost_per_million_tokens
    # 1000 tok/s over 8 x 700 W = 0.17857 tokens per joule
    assert costs.tokens_per_joule == pytest.approx(1000 / 5600)


def test_overhead_is_added_to_the_hourly_cost() -> None:
    inputs = CostInputs(gpu_count=2, price_per_gpu_hour=1.0, overhead_per_hour=1.0)  # $3/h
    assert inputs.hourly_cost == 3.0
    assert per_million(3.0, 1000) == pytest.approx(3 / 3.6)


def test_per_token_costs_follow_the_token_mix() -> None:
    # 3000 input tok/s x $0.6/M + 1000 output tok/s x $2.4/M = $0.0042/s;
    # per million output tokens: 0.0042 / 1000 x 1e6 = $4.20; per million tokens: 0.0042/4000 x 1e6 = $1.05
    costs = step_costs(step(8, 1000, 100, 20, in_tps=3000), HOSTED)
    assert costs.cost_per_million_output_tokens == pytest.approx(4.2)
    assert costs.cost_per_million_tokens == pytest.approx(1.05)
    # blended 3:1 = (3 x 0.6 + 2.4) / 4 = 1.05
    assert costs.cost_per_million_tokens_blended == pytest.approx(1.05)
    assert costs.tokens_per_joule is None  # no power declared


def test_missing_price_is_null_never_zero() -> None:
    costs = step_costs(step(8, 1000, 100, 20), CostInputs())
    assert all(value is None for value in costs.model_dump().values())
    assert tokens_per_joule(None, H100) is None


def test_operating_point_interpolates_to_the_slo_crossing() -> None:
    slo = SLO(ttft_ms=500, tpot_ms=50)
    steps = [step(1, 100, 100, 20), step(8, 700, 300, 30), step(16, 1100, 700, 40)]
    point = operating_point(steps, slo, H100)
    # c=8 meets, c=16 breaks TTFT (700 > 500): crossing at (500 - 300) / (700 - 300) = 0.5
    # -> load 12, output 900 tok/s, total 1800 tok/s; cost $20 / (1800 x 3600) x 1e6 = $3.0864
    assert point is not None and point.interpolated
    assert point.load == pytest.approx(12)
    assert point.output_tokens_per_s == pytest.approx(900)
    assert point.cost_per_million_tokens == pytest.approx(20 / (1800 * 3600) * 1e6)


def test_failures_break_the_slo_without_extrapolation() -> None:
    slo = SLO(ttft_ms=500)
    steps = [step(1, 100, 100, 20), step(8, 700, 300, 30, failed=5)]
    point = operating_point(steps, slo, H100)
    assert point is not None and point.load == 1 and not point.interpolated


def test_capacity_where_the_slo_never_broke_is_a_lower_bound() -> None:
    slo = SLO(ttft_ms=500)
    profile = ProfileSnapshot.model_validate({"slo_ttft_ms": 500})
    endpoint = EndpointSnapshot(gpu_count=8)
    held = [step(1, 100, 100, 20), step(64, 5000, 300, 30)]  # the heaviest step meets the SLO
    point = operating_point(held, slo, H100)
    assert point is not None and point.load == 64 and point.at_least and point.basis == "at least"
    card = smart_letters(held, profile, H100, endpoint)
    assert card.capacity == 64 and card.capacity_at_least
    assert "at least" in card.letters[0].evidence[0].label
    # A heavier step broke it (interpolated), or failed outright (measured): no longer a bound.
    broke = [*held, step(128, 6000, 900, 40)]
    point = operating_point(broke, slo, H100)
    assert point is not None and point.interpolated and not point.at_least
    assert not smart_letters(broke, profile, H100, endpoint).capacity_at_least
    failed = [*held, step(128, 6000, 300, 30, failed=50)]
    point = operating_point(failed, slo, H100)
    assert point is not None and point.load == 64 and point.basis == "measured"
    # Without an SLO there is no capacity to bound.
    point = operating_point(held, SLO(), H100)
    assert point is not None and not point.at_least


def test_no_slo_means_throughput_first() -> None:
    point = operating_point([step(1, 100, 100, 20), step(64, 5000, 9000, 200)], SLO(), H100)
    assert point is not None and point.load == 64


def test_log_score_by_hand() -> None:
    assert log_score(500, 500) == 50
    assert log_score(500, 250) == 75
    assert log_score(500, 125) == 100
    assert log_score(500, 1000) == 25
    assert log_score(500, None) is None


def test_letters_by_hand() -> None:
    profile = {"slo_ttft_ms": 500, "slo_tpot_ms": 50, "slo_percentile": 99, "target_price_per_million": 2.0}
    steps = [step(1, 100, 100, 20), step(8, 700, 250, 25)]
    card = smart_letters(
        steps,
        ProfileSnapshot.model_validate(profile),
        H100,
        EndpointSnapshot(engine="vllm", gpu_count=8, gpu_model="H100"),
        RunEnvironment(continuous_usage=True),
    ).model_dump()
    letters = {entry["letter"]: entry for entry in card["letters"]}
    # Capacity 8 (no heavier step breaks the SLO): 100 x log2(9) / log2(257) = 39.6;
    # speed-up 700/100 = 7 over a load ratio of 8: 100 x log2(7) / log2(8) = 93.6; S = 66.6
    assert card["capacity"] == 8
    assert letters["S"]["score"] == pytest.approx(66.6, abs=0.1)
    # M: at the lightest load (c=1) TTFT 100 vs 500 -> 50 + 25 x log2(5) = 108 -> 100; TPOT 20 vs 50
    # -> 50 + 25 x log2(2.5) = 83.05; per GPU at the operating point 700 / 8 = 87.5 tok/s against the
    # 500 reference -> 50 + 25 x log2(0.175) < 0 -> 0; attainment 1.0 -> 100. Mean: 70.76
    assert letters["M"]["score"] == pytest.approx(70.8, abs=0.1)
    # A: 4 of 4 checks pass
    assert letters["A"]["score"] == 100
    # R: cost at c=8 = 20 / (1400 x 3600) x 1e6 = $3.968; 50 + 25 x log2(2 / 3.968) = 25.3
    assert letters["R"]["score"] == pytest.approx(25.3, abs=0.05)
    assert letters["T"]["score"] is None and letters["T"]["status"] == "not measured yet"
    assert all(entry["how"] for entry in card["letters"])


def test_unpriced_endpoint_has_no_r_letter() -> None:
    card = smart_letters(
        [step(1, 100, 100, 20)],
        ProfileSnapshot(slo_ttft_ms=500),
        CostInputs(),
        EndpointSnapshot(),
        RunEnvironment(),
    ).model_dump()
    assert {e["letter"]: e["score"] for e in card["letters"]}["R"] is None


def _requests(n: int, failed: int, ttft_ms: float = 100.0) -> list[Sample]:
    """n requests sent 10 ms apart, 8 tokens each at 10 ms per token; the last `failed` fail."""
    out = []
    for i in range(n):
        sent = i * 10_000_000
        first = sent + int(ttft_ms * 1e6)
        sample = Sample(seq=i, sent_ns=sent, requested_output_tokens=8, output_tokens=8, token_source="usage")
        if i >= n - failed:
            sample.error_kind, sample.end_ns = "http_500", sent + 1_000_000
        else:
            sample.first_content_ns = sample.first_answer_ns = first
            sample.chunk_ns = [first + k * 10_000_000 for k in range(8)]
            sample.chunk_tokens = [1] * 8
            sample.last_content_ns = sample.end_ns = sample.chunk_ns[-1]
        out.append(sample)
    return out


@pytest.mark.parametrize(("failed", "meets"), [(0, True), (1, True), (2, False)])
def test_one_percent_failures_is_the_boundary_for_probe_and_scoring_alike(failed: int, meets: bool) -> None:
    # 100 requests sent, TTFT 100 ms and TPOT 10 ms for every one that completed: the latency
    # limits hold, so only the failures decide. 1 of 100 (exactly 1 %) meets, 2 of 100 does not.
    slo = SLO(ttft_ms=500, tpot_ms=50)
    summary = summarize_step(_requests(100, failed), concurrency=4, slo=slo)
    assert summary.requests.sent == 100 and summary.requests.failed == failed
    assert summary.slo is not None and summary.slo.met is meets  # the probe's verdict
    assert summary.meets(slo) is meets  # the scoring's verdict, same definition
    point = operating_point([summary], slo, H100)
    assert (point is not None) is meets


def test_slo_percentiles_are_the_ones_a_summary_holds() -> None:
    assert SLO(ttft_ms=1, percentile=90).key == "p90"
    with pytest.raises(ValueError, match="50, 90, 95 or 99"):
        SLO(ttft_ms=1, percentile=97.5)


def test_letters_resting_on_a_client_bound_step_are_marked() -> None:
    profile = {"slo_ttft_ms": 500, "slo_tpot_ms": 50, "slo_percentile": 99, "target_price_per_million": 2.0}
    bound = step(8, 700, 250, 25)
    bound = bound.model_copy(update={"quality": Quality(client_bound=True,
                        client_notes=["event-loop lag p99 21.0 ms (limit 5 ms)", "probe CPU 40% of a core"])})  # fmt: skip
    snap, eight = ProfileSnapshot.model_validate(profile), EndpointSnapshot(gpu_count=8)
    card = smart_letters([step(1, 100, 100, 20), bound], snap, H100, eight, RunEnvironment()).model_dump()
    letters = {entry["letter"]: entry for entry in card["letters"]}
    reason = "c=8: client-bound (event-loop lag p99 21.0 ms (limit 5 ms))"
    assert card["quality"] == {"degraded": True, "reasons": [reason]}
    assert letters["R"]["degraded"] == [reason]  # the cost is quoted at c=8
    assert card["operating_point"]["degraded"] == [reason]
    assert letters["T"]["degraded"] == []
    clean = smart_letters(
        [step(1, 100, 100, 20), step(8, 700, 250, 25)], snap, H100, eight, RunEnvironment()
    ).model_dump()
    assert clean["quality"] == {"degraded": False, "reasons": []}
    assert all(entry["degraded"] == [] for entry in clean["letters"])
