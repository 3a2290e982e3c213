"""Imports of other tools' results. The fixtures are those tools' own output files, made by
running each (the version in the folder's name) against smartbench's simulator with exact
delays: TTFT 40 ms, 8 ms between tokens, 64 input and 32 output tokens (record.sh). Each import
must land on that ground truth through smartbench's definitions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app import importers
from app.domain import SLO
from app.importers import check
from app.importers.base import ImportProblem
from tests.conftest import bearer, csrf_from, login

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
AIPERF = FIXTURES / "aiperf-0.13.0"
SETS: dict[str, tuple[list[Path], str | None, list[str], bool]] = {
    # tool: (files, version in the file, step loads, per-request samples)
    "aiperf": ([AIPERF / "c2" / "profile_export_aiperf.json", AIPERF / "c2" / "profile_export.jsonl",
                AIPERF / "c4" / "profile_export_aiperf.json", AIPERF / "c4" / "profile_export.jsonl"],
               "0.13.0", ["c=2", "c=4"], True),
    "genai-perf": (sorted((FIXTURES / "genai-perf-0.0.16").rglob("*.json")), None, ["c=2", "c=4"], False),
    "vllm": (sorted((FIXTURES / "vllm-0.33.0").glob("*.json")), None, ["c=2", "c=4"], True),
    "guidellm": ([FIXTURES / "guidellm-0.8.1" / "benchmarks.json"], "0.8.1", ["c=2", "c=4"], True),
    "inference-perf": (sorted((FIXTURES / "inference-perf-0.7.0").iterdir()), None, ["2/s", "4/s"], True),
}  # fmt: skip
SLO_CHAT = SLO(ttft_ms=1000, tpot_ms=50)


def read(paths: list[Path]) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in paths]


@pytest.mark.parametrize("tool", list(SETS))
def test_each_tool_lands_on_the_simulators_delays(tool: str) -> None:
    paths, version, loads, per_request = SETS[tool]
    run = importers.parse(read(paths))
    assert run.tool == tool and run.tool_version == version
    steps = importers.step_results(run, SLO_CHAT)
    assert [s.summary.load_label for s in steps] == loads
    for step in steps:
        summary = step.summary
        assert summary.requests.completed >= 8 and summary.requests.failed == 0
        # TTFT: 40 ms at the server, plus the loopback and, where a tool counts it, a connect.
        assert 39.5 <= summary.ttft_ms.p50 <= 46, summary.ttft_ms  # type: ignore[operator]
        assert summary.tpot_ms.p50 == pytest.approx(8.0, abs=0.15)  # (E2E - TTFT) / (OSL - 1)
        assert summary.output_tokens.mean == pytest.approx(32)
        assert summary.e2e_ms.p50 == pytest.approx(40 + 31 * 8, abs=8)  # type: ignore[arg-type]
        assert summary.slo is not None and summary.slo.met is True
        assert bool(step.samples) is per_request
        if per_request and tool != "guidellm":  # GuideLLM keeps no chunk times
            assert summary.itl_ms.p50 == pytest.approx(8.0, abs=0.3) and summary.itl_basis == "chunk"
    # Closed loops: output tokens/s grows with the concurrency (each client ~ 32 / 0.29 s).
    if loads[0].startswith("c="):
        assert steps[1].summary.output_tokens_per_s > 1.6 * steps[0].summary.output_tokens_per_s  # type: ignore[operator]
    assert run.notes  # every import says what it converted


def test_aiperf_ttft_is_counted_from_the_request_sent() -> None:
    """AIPerf counts connection set-up into TTFT; the records let smartbench remove it: the
    mean moves by exactly the set-up time over the requests."""
    import json

    records = [json.loads(line) for line in (AIPERF / "c2" / "profile_export.jsonl").read_text().splitlines()]
    overhead = sum(r["metrics"]["http_req_connection_overhead"]["value"] for r in records) / len(records)
    assert overhead > 0.5  # the fixture's first requests opened their connections
    raw = importers.parse(read([AIPERF / "c2" / "profile_export_aiperf.json"]))
    converted = importers.parse(read(SETS["aiperf"][0][:2]))
    aggregate = importers.step_results(raw, SLO_CHAT)[0].summary.ttft_ms.mean
    from_records = importers.step_results(converted, SLO_CHAT)[0].summary.ttft_ms.mean
    assert from_records == pytest.approx(aggregate - overhead, abs=0.01)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("name", "mangle", "line", "field"),
    [
        ("profile_export_aiperf.json", lambda t: t[: len(t) // 2], True, None),  # truncated
        ("profile_export_aiperf.json", lambda t: t.replace('"avg": 12.0', '"avg": "twelve"', 1), True, "request_count.avg"),
        ("c2.json", lambda t: re.sub(r'"ttfts": \[[0-9.e-]+', '"ttfts": ["x"', t, count=1), True, "ttfts[0]"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_with_its_line_and_field(
    name: str, mangle, line: bool, field: str | None
) -> None:  # type: ignore[no-untyped-def]
    source = AIPERF / "c2" / name if name.startswith("profile") else FIXTURES / "vllm-0.33.0" / name
    text = mangle(source.read_text())
    with pytest.raises(ImportProblem) as caught:
        importers.parse([(name, text.encode())])
    problem = caught.value
    assert problem.file == name and (problem.line is not None) is line
    if field:
        assert problem.field == field, str(problem)
    assert f"line {problem.line}" in str(problem)


def test_files_of_two_tools_or_unknown_files_are_refused() -> None:
    with pytest.raises(ImportProblem, match="different tools"):
        importers.parse(read([SETS["vllm"][0][0], SETS["guidellm"][0][0]]))
    with pytest.raises(ImportProblem, match="not a file smartbench can import"):
        importers.parse([("x.json", b'{"hello": 1}')])
    with pytest.raises(ImportProblem, match="asked to import guidellm"):
        importers.parse(read(SETS["vllm"][0]), "guidellm")


async def _endpoint(client: httpx.AsyncClient, auth: dict[str, str]) -> int:
    made = await client.post(
        "/api/v1/endpoints",
        json={
            "name": "h100",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "sim",
            "gpu_count": 1,
            "price_per_gpu_hour": 2.0,
        },
        headers=auth,
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


@pytest.mark.parametrize("tool", list(SETS))
async def test_an_import_becomes_a_scored_run_marked_imported(app, client, people, tool: str) -> None:  # type: ignore[no-untyped-def]
    auth = await bearer(client, "editor")
    endpoint_id = await _endpoint(client, auth)
    paths = SETS[tool][0]
    answer = await client.post(
        "/api/v1/imports",
        data={"endpoint_id": str(endpoint_id), "profile": "chat", "tool_version": "9.9.9"},
        files=[("files", (p.name, p.read_bytes())) for p in paths],
        headers=auth,
    )
    assert answer.status_code == 201, answer.text
    result = answer.json()
    assert result["tool"] == tool and result["steps"] == 2 and result["profile"] == "chat"
    assert result["tool_version"] == (SETS[tool][1] or "9.9.9")  # the file's own, else as given
    run = (await client.get(f"/api/v1/runs/{result['run_id']}", headers=auth)).json()
    assert run["source"] == tool and run["trigger"] == "import" and run["status"] == "succeeded"
    assert run["environment"]["import"]["notes"] and run["scorecard"]["letters"]
    point = run["scorecard"]["operating_point"]
    assert point is not None and point["cost_per_million_tokens"] > 0  # scored by smartbench's code
    cards = (await client.get(f"/api/v1/endpoints/{endpoint_id}/scorecard?profile=chat", headers=auth)).json()
    card = cards["items"][0]
    assert card["run_id"] == result["run_id"] and card["source"] == tool
    listed = (await client.get(f"/api/v1/runs?endpoint_id={endpoint_id}", headers=auth)).json()
    assert [item["source"] for item in listed["items"]] == [tool]
    if SETS[tool][3]:
        samples = (await client.get(f"/api/v1/runs/{result['run_id']}/samples", headers=auth)).json()
        assert samples["total"] == result["samples"] > 0
    await login(client, "viewer")
    for page in (f"/runs/{result['run_id']}", f"/endpoints/{endpoint_id}", "/?profile=chat"):
        html = (await client.get(page)).text
        assert f"imported · {tool}" in html, page
    trends = (await client.get("/trends?profile=chat&days=3650")).text
    assert "1 imported" in trends
    series = (await client.get("/api/v1/trends/cost?profile=chat&days=3650", headers=auth)).json()
    assert [p["imported"] for s in series["series"] for p in s["points"]] == [1]


async def test_a_bad_file_stores_nothing_and_the_form_says_where(app, client, people) -> None:  # type: ignore[no-untyped-def]
    auth = await bearer(client, "editor")
    endpoint_id = await _endpoint(client, auth)
    good = SETS["vllm"][0][0]
    broken = good.read_bytes()[:-200]
    answer = await client.post(
        "/api/v1/imports",
        data={"endpoint_id": str(endpoint_id)},
        files=[("files", ("c2.json", good.read_bytes())), ("files", ("c4.json", broken))],
        headers=auth,
    )
    assert answer.status_code == 422 and "c4.json, line" in answer.json()["error"]["fields"]["file"]
    assert (await client.get(f"/api/v1/runs?endpoint_id={endpoint_id}", headers=auth)).json()["items"] == []
    unknown = await client.post(
        "/api/v1/imports", data={"endpoint_id": str(endpoint_id), "profile": "nope"},
        files=[("files", ("c2.json", good.read_bytes()))], headers=auth,
    )  # fmt: skip
    assert unknown.status_code == 422 and "profile" in unknown.json()["error"]["fields"]
    csrf = await login(client, "editor")
    page = await client.get(f"/endpoints/{endpoint_id}/import")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    refused = await client.post(
        f"/endpoints/{endpoint_id}/import",
        data={"csrf_token": csrf, "format": "auto", "profile": "chat"},
        files=[("files", ("c4.json", broken))],
    )
    assert (
        refused.status_code == 400 and 'id="import-error"' in refused.text and "c4.json, line" in refused.text
    )
    assert 'value="chat" selected' in refused.text  # what was chosen is kept
    done = await client.post(
        f"/endpoints/{endpoint_id}/import",
        data={"csrf_token": csrf_from(refused.text), "format": "auto", "profile": "chat"},
        files=[("files", (p.name, p.read_bytes())) for p in SETS["vllm"][0]],
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/runs/")
    html = (await client.get(done.headers["location"])).text
    assert 'id="import-note"' in html and "vLLM&#39;s TPOT is smartbench&#39;s TPOT" in html


def test_the_cli_imports_a_folder(tmp_path: Path) -> None:
    env = {**os.environ, "SMARTBENCH_DATA_DIR": str(tmp_path), "SMARTBENCH_DATABASE_URL": ""}
    env.pop("SMARTBENCH_DATABASE_URL")
    register = (
        "import asyncio\n"
        "from app.config import Settings\n"
        "from app.db import create_engine, create_sessionmaker, unit_of_work, upgrade\n"
        "from app.models import Endpoint\n"
        "async def main():\n"
        "    s = Settings()\n"
        "    e = create_engine(s)\n"
        "    async with unit_of_work(create_sessionmaker(e)) as session:\n"
        "        session.add(Endpoint(name='local', base_url='http://127.0.0.1:9/v1', model='sim'))\n"
        "    await e.dispose()\n"
        "upgrade(Settings())\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", register], env=env, check=True, timeout=120)
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "import", str(FIXTURES / "inference-perf-0.7.0"), "--endpoint", "local"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        "imported run 1: inference-perf, 2 step(s), 20 request(s), judged by profile imported" in done.stdout
    )
    bad = tmp_path / "c2.json"
    bad.write_text('{"backend": "openai-chat",\n "mean_tpot_ms": 8.0,\n "max_concurrency": "two"\n}')
    refused = subprocess.run(
        [sys.executable, "-m", "app.cli", "import", str(bad), "--endpoint", "local"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1 and "line 3, field max_concurrency" in refused.stderr


def test_garbage_is_refused_never_a_crash() -> None:
    for name, raw in [("x.json", b"[" * 100_000), ("x.json", b"\xff\xfe"), ("r.jsonl", b'{"metadata": 1, "metrics": 2}\n'),
                      ("stage_0_lifecycle_metrics.json", b"{}"), ("benchmarks.json", b'{"benchmarks": [], "metadata": {"guidellm_version": "1"}}')]:  # fmt: skip
        with pytest.raises(ImportProblem):
            importers.parse([(name, raw)])


def test_impossible_times_are_refused() -> None:
    raw = (FIXTURES / "vllm-0.33.0" / "c2.json").read_text()
    absurd = re.sub(r'"latencies": \[[0-9.e-]+', '"latencies": [1e6', raw, count=1)  # 11.6 days
    with pytest.raises(ImportProblem, match="more than a week"):
        check.check(importers.parse([("c2.json", absurd.encode())]), now=datetime.now(UTC), max_samples=10**6)


def test_a_whole_artifact_folder_imports_its_companions_skipped() -> None:
    """What AIPerf and GenAI-Perf write beside their results (inputs, perf_analyzer's raw
    export, a readiness marker) is skipped, so their artifact folders can be given whole."""
    companions = [("c2/inputs.json", b'{"data": []}'), ("c2/.aiperf_results_ready.json", b"{}"),
                  ("c4/profile_export.json", b'{"experiments": []}')]  # fmt: skip
    run = importers.parse(read(SETS["aiperf"][0]) + companions)
    assert run.tool == "aiperf" and len(run.steps) == 2
    with pytest.raises(ImportProblem, match="no result file"):
        importers.parse(companions)
