"""smartbench against a real OpenAI-compatible server it did not write: Hugging Face
`transformers serve` with a tiny random Llama on the CPU. It refuses vLLM's extensions with a
422 in FastAPI's shape; the probe falls back and measures every request, tokens from usage.

Skipped with the reason where the `real-server` extra is missing; CI installs it and sets
SMARTBENCH_REQUIRE_REAL_SERVER=1, so there it can never be skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import bearer
from tests.realserver import build_tiny_model, missing, transformers_serve

pytestmark = pytest.mark.slow

REASON = missing()
if REASON is not None and os.environ.get("SMARTBENCH_REQUIRE_REAL_SERVER") == "1":
    raise RuntimeError(REASON)
if REASON is not None:
    pytest.skip(REASON, allow_module_level=True)

MAX_TOKENS = 12


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    model = build_tiny_model(tmp_path_factory.mktemp("tiny-llama") / "model")
    with transformers_serve(model) as url:
        yield url, str(model)


def test_probe_measures_transformers_serve(served: tuple[str, str]) -> None:
    url, model = served
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "probe", "--base-url", url, "--model", model, "--concurrency", "1,4",
         "--requests", "8", "--input-tokens", "32", "--output-tokens", str(MAX_TOKENS), "--json", "-"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] == "succeeded"
    environment = summary["environment"]
    assert environment["server"] == "uvicorn"
    assert {"ignore_eos", "min_tokens"} <= set(environment["dropped_options"]), environment
    assert any("HTTP 422" in note for note in environment["notes"])
    assert [step["concurrency"] for step in summary["steps"]] == [1, 4]
    for step in summary["steps"]:
        assert step["requests"] == {"sent": 8, "completed": 8, "failed": 0, "errors": {}}
        assert step["token_count_source"] == "usage"
        assert step["output_tokens"]["min"] >= 1 and step["output_tokens"]["max"] <= MAX_TOKENS
        assert step["ttft_ms"]["p50"] > 0 and step["e2e_ms"]["p50"] >= step["ttft_ms"]["p50"]


async def test_dashboard_runs_a_profile_against_transformers_serve(
    served: tuple[str, str], idle_app, people
) -> None:  # type: ignore[no-untyped-def]
    url, model = served
    app = idle_app
    profile = {"name": "tiny", "input_tokens_mean": 32, "output_tokens_mean": MAX_TOKENS, "load_levels": [1, 2],
               "requests_per_step": 6, "slo_ttft_ms": 5000, "slo_tpot_ms": 1000, "target_price_per_million": 1.0}  # fmt: skip
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth = await bearer(client, "editor")
        assert (await client.post("/api/v1/profiles", json=profile, headers=auth)).status_code == 201
        # Endpoints name a tokenizer from the tokenizer directory: the model's own tokenizer.json.
        shelf = app.state.settings.tokenizers / "tiny-llama"
        shelf.mkdir(parents=True)
        shutil.copy(Path(model) / "tokenizer.json", shelf / "tokenizer.json")
        created = await client.post(
            "/api/v1/endpoints",
            json={"name": "tiny-llama", "base_url": url, "model": model, "gpu_count": 1, "price_per_gpu_hour": 1.0,
                  "tokenizer": "tiny-llama"},
            headers=auth,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        endpoint_id = created.json()["id"]
        accepted = await client.post(
            f"/api/v1/endpoints/{endpoint_id}/runs", json={"profile": "tiny"}, headers=auth
        )
        run_id = accepted.json()["run_id"]
        assert await app.state.executor.tick() is True
        for task in list(app.state.executor.active):
            await task
        summary = (await client.get(f"/api/v1/runs/{run_id}", headers=auth)).json()
        assert summary["status"] == "succeeded", summary["error"]
        assert all(step["requests"]["completed"] == 6 for step in summary["steps"])
        assert summary["environment"]["dropped_options"][:2] == ["ignore_eos", "min_tokens"]
        cards = (await client.get(f"/api/v1/endpoints/{endpoint_id}/scorecard", headers=auth)).json()["items"]
        assert len(cards) == 1 and cards[0]["run_id"] == run_id
        letters = {entry["letter"]: entry for entry in cards[0]["letters"]}
        assert letters["M"]["score"] is not None and cards[0]["cost_per_million_tokens_at_slo"] is not None
        page = await client.get(f"/runs/{run_id}", headers=auth)
        assert page.status_code == 200 and "tiny-llama" in page.text


def test_inspection_recognises_transformers_serve(served: tuple[str, str]) -> None:
    """Engine detection and the checklist against the real server, not a simulator playing it."""
    url, model = served
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "probe", "--base-url", url, "--model", model, "--inspect", "--json", "-"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["engine"] == "transformers", found["evidence"]
    statuses = {c["id"]: c["status"] for c in found["checks"]}
    assert (
        statuses["chat"] == "passed" and statuses["streaming"] == "passed" and statuses["models"] == "passed"
    )
    assert len(statuses) == 17 and set(statuses.values()) <= {
        "passed",
        "failed",
        "not_supported",
        "not_observed",
        "inconclusive",  # structured output cut by max_tokens inside its JSON (a random model rambles)
    }
    print("transformers serve checklist:", statuses)
