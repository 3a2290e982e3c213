"""`smartbench probe` and `smartbench simulate` as a user runs them, and the probe's options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.probe.prompts import PromptFactory, load_tokenizer
from app.probe.runner import Prober
from app.probe.types import Target, Workload
from tests.browser import free_port
from tests.simproc import simulator
from tests.truth import flagged, simulator_lateness_ms, truthful

DESIGN_STEP_KEYS = {
    "concurrency", "request_rate", "duration_s", "requests", "ttft_ms", "ttfat_ms", "itl_ms", "tpot_ms", "e2e_ms",
    "input_tokens", "output_tokens", "input_tokens_per_s", "output_tokens_per_s", "total_tokens_per_s",
    "requests_per_s", "tokens_per_s_per_user", "goodput_requests_per_s", "slo_attainment", "token_count_source",
    "itl_basis", "quality", "cost_per_million_output_tokens", "cost_per_million_tokens",
    "cost_per_million_good_tokens", "cost_per_million_tokens_blended", "tokens_per_joule",
}  # fmt: skip


def smartbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_probe_prints_the_design_summary() -> None:
    with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "2") as url:
        out = smartbench(
            "probe", "--base-url", url, "--model", "sim", "--concurrency", "1,4", "--requests", "8",
            "--output-tokens", "16", "--slo-ttft-ms", "500", "--json", "-",
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert {"run_id", "endpoint", "profile", "started_at", "finished_at", "status", "steps"} <= set(summary)
    assert summary["status"] == "succeeded" and len(summary["steps"]) == 2
    for step in summary["steps"]:
        assert set(step) >= DESIGN_STEP_KEYS
        assert step["requests"]["completed"] == 8
        assert step["slo_attainment"] == 1.0 and step["goodput_requests_per_s"] > 0
        assert step["cost_per_million_tokens"] is None  # no price known: null, never 0
    assert [s["concurrency"] for s in summary["steps"]] == [1, 4]
    assert "TTFT" in out.stderr  # the table goes to stderr when JSON goes to stdout


def test_probe_measures_each_step_in_trials() -> None:
    with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "2", "--noise", "0.2") as url:
        out = smartbench(
            "probe", "--base-url", url, "--model", "sim", "--concurrency", "4", "--requests", "12",
            "--output-tokens", "8", "--trials", "3", "--json", "-",
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    [step] = json.loads(out.stdout)["steps"]
    trials = step["trials"]
    assert trials["count"] == 3 and step["requests"]["sent"] == 36
    ttft = next(f for f in trials["figures"] if f["metric"] == "ttft_ms" and f["stat"] == "p50")
    assert len(ttft["values"]) == 3 and ttft["low"] < ttft["mean"] < ttft["high"] and ttft["cv"] > 0
    assert step["ttft_ms"]["p50"] == pytest.approx(ttft["mean"])  # the step's figure is the trials' mean
    assert "mean of 3 trials" in out.stderr and "±" in out.stderr


def test_probe_exits_nonzero_with_a_reason() -> None:
    out = smartbench("probe", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--model", "sim")
    assert out.returncode != 0 and "cannot connect" in out.stdout + out.stderr
    with simulator("--preset", "zero", "--api-key", "sk-right") as url:
        out = smartbench(
            "probe", "--base-url", url, "--model", "sim", "--api-key", "sk-wrong", "--requests", "2"
        )
        assert out.returncode != 0 and "rejected the API key" in out.stdout + out.stderr
        ok = smartbench(
            "probe", "--base-url", url, "--model", "sim", "--api-key", "sk-right", "--requests", "2"
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr


async def test_rate_steps_and_processes() -> None:
    with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "2") as url:
        rate = Prober(
            Target(url, "sim"),
            Workload(mode="rate", levels=(50.0,), arrival="constant", requests_per_step=25, output_tokens=16),
        )
        result = await rate.run()
        step = result.steps[0].summary.model_dump(mode="json")
        assert step["request_rate"] == 50.0 and step["requests"]["completed"] == 25
        if not flagged(step):  # a client that falls behind the offered rate must say so
            assert step["requests_per_s"] == pytest.approx(50.0, rel=0.25)

        sharded = Prober(
            Target(url, "sim"), Workload(levels=(8,), requests_per_step=32, output_tokens=16), processes=2
        )
        result = await sharded.run()
        step = result.steps[0].summary.model_dump(mode="json")
        late = simulator_lateness_ms(url)
    assert step["requests"]["completed"] == 32 and "2 processes" in step["quality"]["client_notes"]
    assert len({s.seq for s in result.steps[0].samples}) == 32
    truthful(step, "ttft_ms", "p50", 20.0, 2.0, late)


async def test_warmup_counts_per_client_in_a_closed_loop() -> None:
    with simulator("--preset", "fixed", "--ttft-ms", "10", "--itl-ms", "1") as url:
        prober = Prober(
            Target(url, "sim"), Workload(levels=(2,), requests_per_step=6, warmup_requests=2, output_tokens=8)
        )
        result = await prober.run()
    samples = result.steps[0].samples
    assert sum(s.warmup for s in samples) == 4  # two clients, two warm-up requests each
    assert result.steps[0].summary.model_dump(mode="json")["requests"]["sent"] == 6


async def test_429_backs_off_as_the_server_asks() -> None:
    import time

    with simulator("--preset", "h100-fp8-70b", "--queue-limit", "0") as url:
        prober = Prober(Target(url, "sim"), Workload(levels=(1,), requests_per_step=3, output_tokens=8))
        prober.options = __import__("app.probe.prompts", fromlist=["BodyOptions"]).BodyOptions()
        started = time.monotonic()
        step = await prober.run_step(0, 1)
        took = time.monotonic() - started
    assert step.summary.model_dump(mode="json")["requests"]["errors"] == {"http_429": 3}
    assert all(s.retry_after_s == 1.0 for s in step.samples)
    assert took >= 2.0  # Retry-After: 1 honoured before each of the two later requests


async def test_output_length_is_pinned_and_a_short_output_is_flagged() -> None:
    from app.probe.prompts import BodyOptions

    # The simulated model would stop after 20 tokens; ignore_eos + min_tokens pin it to 64.
    with simulator(
        "--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--natural-output-tokens", "20"
    ) as url:
        prober = Prober(Target(url, "sim"), Workload(levels=(2,), requests_per_step=4, output_tokens=64))
        pinned = await prober.run()
        # Without them (as against a server that refuses those options) the model stops early.
        prober.options = BodyOptions(pin_output=False)
        loose = await prober.run_step(0, 2)
    step = pinned.steps[0].summary.model_dump(mode="json")
    assert step["output_tokens"]["mean"] == 64 and not step["quality"]["osl_mismatch_flag"]
    assert loose.summary.model_dump(mode="json")["output_tokens"]["mean"] == 20
    assert loose.summary.model_dump(mode="json")["quality"]["osl_mismatch_flag"]
    assert loose.summary.model_dump(mode="json")["quality"]["osl_mismatch_pct"] == pytest.approx(
        (20 - 64) / 64 * 100
    )


def test_tokenizer_makes_prompts_exact(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    loaded = load_tokenizer(str(tmp_path))
    factory = PromptFactory(seed=1, tokenizer=loaded)
    for n in (5, 50, 500):
        assert loaded.count(factory.prompt(n, seq=7)) == n
    with pytest.raises(ValueError, match="no tokenizer"):
        load_tokenizer(str(tmp_path / "missing"))


@pytest.mark.parametrize("style", ["fastapi", "tgi", "openai"])
async def test_preflight_falls_back_when_a_server_refuses_extensions(style: str) -> None:
    from app.probe.process import ProbeProcess, ProbeSpec

    args = ("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--strict", style)
    with simulator(*args) as url:
        spec = ProbeSpec(Target(url, "sim"), Workload(levels=(2,), requests_per_step=4, output_tokens=16))
        outcome = await ProbeProcess(spec).run()
    assert outcome.status == "succeeded", outcome.error
    assert outcome.environment is not None
    assert outcome.environment.dropped_options == [
        "ignore_eos",
        "min_tokens",
        "stream_options.continuous_usage_stats",
    ]
    step = outcome.steps[0].summary
    assert step.requests.completed == 4 and step.token_count_source == "usage"
    assert step.output_tokens.max == 16  # max_tokens alone still bounds the output


@pytest.mark.parametrize(
    ("status", "body", "falls_back"),
    [
        (422, b'{"detail":[{"type":"extra_forbidden","loc":["body","ignore_eos"],"msg":"Extra inputs are not permitted"}]}', True),
        (422, b"{\"detail\":\"Unexpected fields in the request: {'min_tokens', 'ignore_eos'}\"}", True),
        (422, b'{"error":"Failed to deserialize the JSON body into the target type: unknown field `min_tokens`","error_type":"validation"}', True),
        (400, b'{"error":{"message":"Unrecognized request argument supplied: ignore_eos"}}', True),
        (400, b'{"error":{"message":"stream_options is not permitted here"}}', True),
        (400, b'{"error":{"message":"messages must not be empty"}}', False),
        (401, b'{"error":{"message":"unknown API key"}}', False),
        (404, b'{"error":{"message":"The model `x` does not exist (unknown model)"}}', False),
        (429, b'{"error":{"message":"unexpected load, slow down"}}', False),
        (500, b'{"error":{"message":"unexpected error"}}', False),
    ],
)  # fmt: skip
def test_which_refusals_fall_back(status: int, body: bytes, falls_back: bool) -> None:
    from app.probe.preflight import refuses_an_option

    assert refuses_an_option(status, body) is falls_back


def test_probe_inspect_prints_the_engine_and_the_checklist() -> None:
    with simulator("--preset", "zero", "--engine", "llama.cpp", "--engine-version", "4120",
                   "--break", "logprobs") as url:  # fmt: skip
        out = smartbench("probe", "--base-url", url, "--model", "sim", "--inspect", "--json", "-")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert (found["engine"], found["engine_version"]) == ("llama.cpp", "b4120")
    assert {c["id"]: c["status"] for c in found["checks"]}["logprobs"] == "failed"
    assert "engine: llama.cpp b4120" in out.stderr and "get_weather" in out.stderr


def test_probe_search_measures_up_to_the_ceiling_and_says_where_it_stopped() -> None:
    # Fixed delays do not grow with load: every load meets the SLO, so the search doubles to the
    # ceiling and stops there; an E2E of 20 + 7 x 2 ms is far inside a 500 ms TTFT limit.
    with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "2") as url:
        out = smartbench(
            "probe", "--base-url", url, "--model", "sim", "--concurrency", "1,4", "--requests", "8",
            "--output-tokens", "8", "--slo-ttft-ms", "500", "--search", "--json", "-",
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert [s["concurrency"] for s in summary["steps"]] == [1, 2, 4]
    assert summary["environment"]["search"]["capacity"] == 4
    assert (
        "SLO search: heaviest load meeting the SLO 4 (measured); stopped: the ceiling (4) meets the SLO"
        in out.stderr
    )
    refused = smartbench("probe", "--base-url", url, "--model", "sim", "--concurrency", "4", "--search")
    assert refused.returncode == 2 and "--search needs two levels" in refused.stderr
