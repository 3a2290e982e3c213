"""Issue #18, findings 1, 3 and 4: what a result file can do. A file cannot date itself into
the future and own the scorecard, carry figures no measurement has (NaN, Infinity, negative,
1e300, a 5,000-digit integer, a time past year 9999, counts past the integer columns, text past
its column) or expand past the memory an import may use; every refusal is a 422 naming the file
and the field, parsing runs once and off the event loop. Each failed on 48cab14's code."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import importers
from app.importers import check
from app.importers.base import Doc, ImportProblem
from tests.conftest import bearer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports"
AIPERF = FIXTURES / "aiperf-0.13.0" / "c2" / "profile_export_aiperf.json"
AIPERF_RECORDS = FIXTURES / "aiperf-0.13.0" / "c2" / "profile_export.jsonl"
GENAI = FIXTURES / "genai-perf-0.0.16" / "c2" / "profile_export_genai_perf.json"
VLLM = FIXTURES / "vllm-0.33.0" / "c2.json"
GUIDELLM = FIXTURES / "guidellm-0.8.1" / "benchmarks.json"
STAGE = FIXTURES / "inference-perf-0.7.0" / "stage_0_lifecycle_metrics.json"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _edited(path: Path, pattern: str, replacement: str, count: int = 1) -> bytes:
    text = path.read_text()
    changed = re.sub(pattern, replacement, text, count=count)
    assert changed != text, pattern
    return changed.encode()


def _parsed(name: str, raw: bytes, *extra: tuple[str, bytes]) -> None:
    """Parse and check as an import does (app/services/imports.py), summaries included."""
    from app.domain import SLO

    run = importers.parse([(name, raw), *extra])
    check.check(run, now=NOW, max_samples=200_000)
    importers.step_results(run, SLO(ttft_ms=1000, tpot_ms=50))


IMPOSSIBLE = [
    # aggregate-only files: a NaN or an Infinity in a percentile used to score 100 (not JSON: refused with its line)
    ("nan p99", GENAI.name, GENAI, r'("time_to_first_token": \{[^}]*?"p99": )[0-9.e+-]+', r"\1NaN", "not valid JSON"),
    ("infinite ttft", AIPERF.name, AIPERF, r'("time_to_first_token": \{[^}]*?"p99": )[0-9.e+-]+', r"\1Infinity", "not valid JSON"),
    ("1e400 p99", GENAI.name, GENAI, r'("time_to_first_token": \{[^}]*?"p99": )[0-9.e+-]+', r"\g<1>1e400", "not valid JSON"),
    ("negative mean", GENAI.name, GENAI, r'("request_latency": \{[^}]*?"avg": )[0-9.e+-]+', r"\1-5", "request_latency.avg"),
    ("1e300 in ttfts", VLLM.name, VLLM, r'("ttfts": \[)[0-9.e+-]+', r"\g<1>1e300", "ttfts[0]"),
    ("1e300 in itls", VLLM.name, VLLM, r'("itls": \[\[)[0-9.e+-]+', r"\g<1>1e300", "itls[0][0]"),
    ("5000 digits", VLLM.name, VLLM, r'("completed": )[0-9]+', r"\g<1>" + "9" * 5000, "c2.json"),
    ("tokens past int32", VLLM.name, VLLM, r'("output_lens": \[)[0-9]+', r"\g<1>99999999999", "output_tokens"),
    ("guidellm year 30000", GUIDELLM.name, GUIDELLM, r'("start_time": )[0-9.e+]+(, "end_time": [0-9.e+]+, "duration")', r"\g<1>900000000000\2", "start_time"),
    ("guidellm untyped concurrency", GUIDELLM.name, GUIDELLM, r'"type_": "concurrent", "worker_count": 2, "max_concurrency": 2', r'"type_": "constant", "rate": 2, "worker_count": 2, "max_concurrency": "many"', "max_concurrency"),
    ("negative time", VLLM.name, VLLM, r'("ttfts": \[)[0-9.e+-]+', r"\g<1>-0.5", "ttfts[0]"),
    ("long model name", AIPERF.name, AIPERF, r'"aiperf_version": "0.13.0"', '"aiperf_version": "' + "9" * 60 + '"', "tool_version"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "name", "path", "pattern", "replacement", "field"), IMPOSSIBLE, ids=[i[0] for i in IMPOSSIBLE]
)
def test_impossible_figures_are_refused_naming_the_field(
    what: str, name: str, path: Path, pattern: str, replacement: str, field: str
) -> None:
    raw = _edited(path, pattern, replacement)
    with pytest.raises(ImportProblem) as caught:
        _parsed(name, raw)
    assert field in str(caught.value) or field in (caught.value.field or ""), str(caught.value)


def test_the_gate_refuses_a_nan_however_it_got_in() -> None:
    """A parser mapping a tool's aggregates could hand on a NaN (an old json module, a division);
    the gate refuses it naming the figure."""
    from app.importers.base import ImportedRun, ImportedStep
    from app.summary import Distribution

    step = ImportedStep(
        2, None, None, aggregates={"ttft_ms": Distribution(p99=float("nan")), "duration_s": 3.0}
    )
    run = ImportedRun(tool="genai-perf", tool_version=None, files=["x.json"], steps=[step])
    with pytest.raises(ImportProblem) as caught:
        check.check(run, now=NOW, max_samples=10)
    assert caught.value.field == "ttft_ms.p99"
    step.aggregates = {"output_tokens_per_s": -4.0}
    with pytest.raises(ImportProblem, match="not a figure"):
        check.check(run, now=NOW, max_samples=10)


def test_records_with_times_before_their_send_are_refused() -> None:
    raw = _edited(AIPERF_RECORDS, r'("time_to_first_token":\s*\{"value":\s*)[0-9.e+-]+', r"\g<1>-40")
    with pytest.raises(ImportProblem, match="negative"):
        _parsed(AIPERF.name, AIPERF.read_bytes(), (AIPERF_RECORDS.name, raw))
    raw = _edited(AIPERF_RECORDS, r'("request_end_ns":\s*)([0-9]+)', r"\g<1>1000")
    with pytest.raises(ImportProblem, match="before it was sent"):
        _parsed(AIPERF.name, AIPERF.read_bytes(), (AIPERF_RECORDS.name, raw))


def test_a_run_dated_in_the_future_is_refused() -> None:
    raw = _edited(
        AIPERF,
        r'"start_time": "2026-11-28T17:49:36.674559",\n  "end_time"',
        '"start_time": "2099-01-01T00:00:00",\n  "end_time"',
    )
    with pytest.raises(ImportProblem, match="in the future") as caught:
        _parsed(AIPERF.name, raw)
    assert caught.value.field == "started_at"


def test_samples_are_capped() -> None:
    run = importers.parse([(VLLM.name, VLLM.read_bytes())])
    with pytest.raises(ImportProblem, match="at most 5 "):
        check.check(run, now=NOW, max_samples=5)


def test_a_file_that_would_expand_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`[[],[],...]`: 3 bytes become about 64 in memory; judged from the bytes, never parsed."""
    bomb = b"[" + b"[]," * 2_000_000 + b"[]]"
    monkeypatch.setattr(Doc, "parse", lambda *a: pytest.fail("parsed before its size was judged"))
    with pytest.raises(ImportProblem, match="too many values"):
        check.bound([("x.json", bomb)], max_memory=64 * 2**20)
    check.bound([(VLLM.name, VLLM.read_bytes())], max_memory=64 * 2**20)  # a real file passes


def test_each_json_file_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = Doc.parse.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Doc], file: str, raw: bytes) -> Doc:
        calls.append(file)
        return real(cls, file, raw)

    monkeypatch.setattr(Doc, "parse", classmethod(counting))
    files = sorted((FIXTURES / "vllm-0.33.0").glob("*.json"))
    importers.parse([(p.name, p.read_bytes()) for p in files])
    assert sorted(calls) == sorted(p.name for p in files)
    calls.clear()
    importers.parse([(GUIDELLM.name, GUIDELLM.read_bytes())])
    assert calls == [GUIDELLM.name]


def test_an_unforeseen_parser_error_is_a_problem_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.importers import vllm_bench

    def broken(*_: Any) -> Any:
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(vllm_bench, "parse", broken)
    with pytest.raises(ImportProblem, match=r"c2\.json"):
        importers.parse([(VLLM.name, VLLM.read_bytes())])


async def _endpoint(client: httpx.AsyncClient, auth: dict[str, str]) -> int:
    made = await client.post(
        "/api/v1/endpoints",
        json={"name": "h100", "base_url": "http://127.0.0.1:9/v1", "model": "sim", "gpu_count": 1,
              "price_per_gpu_hour": 2.0},
        headers=auth,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def _import(
    client: httpx.AsyncClient, auth: dict[str, str], endpoint_id: int, files: list[tuple[str, bytes]]
) -> httpx.Response:
    return await client.post(
        "/api/v1/imports", data={"endpoint_id": str(endpoint_id), "profile": "chat"},
        files=[("files", f) for f in files], headers=auth,
    )  # fmt: skip


async def test_through_the_api_the_run_is_dated_by_the_import_and_future_files_are_refused(
    app, client, people, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """An AIPerf file dated 2099 became the endpoint's scorecard until 2099 (created_at from the
    file); now it is a 422, and an old file's run is dated when it was imported."""
    auth = await bearer(client, "editor")
    endpoint_id = await _endpoint(client, auth)
    future = _edited(
        AIPERF,
        r'"start_time": "2026-11-28T17:49:36.674559",\n  "end_time"',
        '"start_time": "2099-01-01T00:00:00",\n  "end_time"',
    )
    refused = await _import(client, auth, endpoint_id, [(AIPERF.name, future)])
    assert refused.status_code == 422, refused.text
    assert "started_at" in refused.json()["error"]["fields"]["file"]
    threads: list[str] = []
    real = importers.parse

    def watched(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(importers, "parse", watched)
    done = await _import(client, auth, endpoint_id, [(AIPERF.name, AIPERF.read_bytes())])
    assert done.status_code == 201, done.text
    assert threads and threads[0] != threading.main_thread().name  # parsed in a worker thread
    run = (await client.get(f"/api/v1/runs/{done.json()['run_id']}", headers=auth)).json()
    note = run["environment"]["import"]
    assert note["measured_from"].startswith("2026-11-28T17:49:36")  # the tool's own time, kept
    created = datetime.fromisoformat(run["created_at"])
    assert abs((created - datetime.now(UTC)).total_seconds()) < 120  # the import's time orders it
    page = (await client.get(f"/runs/{done.json()['run_id']}", headers=auth)).text
    assert "the tool measured from 2026-11-28T17:49:36" in page  # and the tool's own time is shown
    nan = _edited(GENAI, r'("time_to_first_token": \{[^}]*?"p99": )[0-9.e+-]+', r"\1NaN")
    answer = await _import(client, auth, endpoint_id, [(GENAI.name, nan)])
    assert answer.status_code == 422 and "line 37" in answer.json()["error"]["fields"]["file"]
    digits = _edited(VLLM, r'("completed": )[0-9]+', r"\g<1>" + "9" * 5000)
    answer = await _import(client, auth, endpoint_id, [(VLLM.name, digits)])
    assert answer.status_code == 422 and "c2.json" in answer.json()["error"]["fields"]["file"]


def test_a_nan_percentile_never_meets_an_slo_nor_scores() -> None:
    """Defence behind the gate: a NaN p99 passed `value > limit` and scored 100."""
    from app.domain import SLO
    from app.scoring.smart import log_score
    from app.summary import StepSummary

    slo = SLO(ttft_ms=1000, tpot_ms=50)
    step = StepSummary.model_validate({"requests": {"sent": 10, "completed": 10, "failed": 0},
                                       "ttft_ms": {"p99": float("nan")}, "tpot_ms": {"p99": 10.0}})  # fmt: skip
    assert step.meets(slo) is False
    assert not slo.request_meets(float("nan"), 10.0, None)
    assert log_score(1000, float("nan")) is None and log_score(1000, float("inf")) is None


async def test_a_large_import_parses_in_a_worker_process() -> None:
    """Past `in_process_bytes` the parse runs in a worker process, so its GIL is not this
    process's: the rows come back pickled in batches, a refusal keeps its file and field."""
    from app.domain import SLO
    from app.errors import ValidationFailed
    from app.services import imports

    limits = imports.ImportLimits(in_process_bytes=1)
    files = [(p.name, p.read_bytes()) for p in sorted((FIXTURES / "vllm-0.33.0").glob("*.json"))]
    prepared = await imports.parse(files, "auto", SLO(ttft_ms=1000, tpot_ms=50), now=NOW, limits=limits)
    rows = [list(step) for step in prepared.rows()]
    assert prepared.samples == sum(len(batch) for step in rows for batch in step) > 0
    assert [s.summary.requests.completed for s in prepared.steps] == [
        s.summary.requests.sent for s in prepared.steps
    ]
    bad = _edited(VLLM, r'("ttfts": \[)[0-9.e+-]+', r"\g<1>-0.5")
    with pytest.raises(ValidationFailed) as caught:
        await imports.parse([(VLLM.name, bad)], "auto", SLO(), now=NOW, limits=limits)
    assert "ttfts[0]" in caught.value.fields["file"] and "negative" in caught.value.fields["file"]
