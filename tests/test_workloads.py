"""Workloads against the simulator's ground truth: shared prefixes hit the prefix cache as the
workload expects (from usage and from /metrics), cached requests' TTFT follows the prefill
model, multi-turn sessions send the answers back and their TTFT rises by turn, traces replay
their lengths, times and shared blocks; datasets are refused with file, line and field."""

from __future__ import annotations

import random
import statistics

import httpx
import pytest

from app.datasets import DatasetError, generated_conversations, generated_trace, parse, stats, to_file
from app.probe.runner import Prober
from app.probe.types import Target, Workload
from app.simulator import SimConfig, Simulator
from app.simulator.cache import PrefixCache
from app.workloads import Dist, WorkloadSpec
from tests.api_helpers import wait_for_run
from tests.conftest import bearer
from tests.simproc import simulator
from tests.truth import flagged

TTFT, PER_TOKEN = 20.0, 0.05  # the simulator's fixed TTFT and prefill per uncached prompt token


def test_distributions_parse_sample_and_refuse() -> None:
    assert Dist.parse("128") == Dist.fixed(128)
    assert str(Dist.parse("lognormal:512,0.6")) == "lognormal:512,0.6"
    assert Dist.parse("uniform:64-256").expected == 160
    hist = Dist.parse("histogram:100=1,300=1")
    assert hist.expected == 200
    rng = random.Random(3)
    values = [Dist.parse("lognormal:500,0.5").tokens(rng) for _ in range(20_000)]
    assert sum(values) / len(values) == pytest.approx(500, rel=0.03)  # the mean of the lengths themselves
    assert {hist.tokens(rng) for _ in range(100)} == {100, 300}
    for bad in ("uniform:9-3", "normal:x", "zipf:3", "histogram:"):
        with pytest.raises(ValueError):
            Dist.parse(bad)
    with pytest.raises(ValueError, match="does not take turns"):
        WorkloadSpec(kind="synthetic", turns=Dist.fixed(3))
    with pytest.raises(ValueError, match="needs groups, prefix_tokens"):
        WorkloadSpec(kind="shared_prefix")


def test_prefix_cache_blocks_and_lru() -> None:
    cache = PrefixCache(capacity_tokens=64, block_tokens=4)
    a = [f"a{i}" for i in range(10)]
    assert cache.admit(a) == 0
    assert cache.admit(a) == 8  # two whole blocks; the last token is always computed
    assert cache.admit([*a[:8], "x", "y", "z"]) == 8
    assert cache.admit(["b", *a]) == 0  # a different first token: nothing matches after it
    for n in range(20):  # 16 blocks fit: the old ones go
        cache.admit([f"c{n}-{i}" for i in range(4)] + ["end"])
    assert cache.admit(a) == 0
    assert cache.hits_tokens == 16 and cache.queries_tokens > 0


async def _run(sim: Simulator, workload: Workload, metrics: bool = True) -> Prober:
    prober = Prober(
        Target(sim.base_url, "sim"),
        workload,
        metrics_url=sim.base_url.replace("/v1", "/metrics") if metrics else None,
    )
    prober.result = await prober.run()  # type: ignore[attr-defined]
    return prober


async def test_shared_prefix_hit_rate_and_ttft_follow_the_simulator() -> None:
    config = SimConfig(mode="fixed", ttft_ms=TTFT, itl_ms=1.0, prefill_ms_per_token=PER_TOKEN)
    spec = WorkloadSpec(
        kind="shared_prefix", groups=5, prefix_tokens=1024, input=Dist.fixed(96), output=Dist.fixed(8)
    )
    async with Simulator(config) as sim:
        prober = await _run(sim, Workload(levels=(4,), requests_per_step=120, spec=spec))
        result = prober.result  # type: ignore[attr-defined]
    assert result.status == "succeeded", result.error
    step = result.steps[0].summary
    stats_ = step.workload
    assert stats_ is not None and stats_.cache_reported == 120
    # The expectation: each group's first request misses, every later one hits its prefix.
    assert stats_.expected_hit_rate == pytest.approx(
        1024 * 115 / sum(s.input_tokens for s in result.steps[0].samples), abs=0.01
    )
    assert abs(stats_.cache_hit_rate - stats_.expected_hit_rate) < 0.02
    assert step.server_hit_rate is not None and abs(step.server_hit_rate - stats_.expected_hit_rate) < 0.02
    # TTFT = 20 ms + 0.05 ms per prompt token not cached: misses carry the whole prompt.
    # The simulator shares this test's event loop, so a stall of the machine delays a sample on
    # both sides: the typical sample is exact, and nearly all are within 5 ms plus how late the
    # simulator itself ran, or the step says its client was not up to it.
    samples = [s for s in result.steps[0].samples if s.ok]
    late_ms = sorted(sim.state.timeline.lateness_us)[-1] / 1000 if sim.state.timeline.lateness_us else 0.0
    errors = []
    for sample in samples:
        assert sample.ttft_ms is not None
        errors.append(abs(sample.ttft_ms - (TTFT + PER_TOKEN * (sample.input_tokens - sample.cached_tokens))))
    off = [e for e in errors if e > 5.0 + late_ms]
    assert statistics.median(errors) < 2.0 or flagged(step.model_dump(mode="json")), errors
    assert len(off) <= len(errors) // 20 or flagged(step.model_dump(mode="json")), (off, late_ms)
    assert stats_.ttft_miss_ms.mean is not None and stats_.ttft_hit_ms.mean is not None
    assert stats_.ttft_miss_ms.mean - stats_.ttft_hit_ms.mean == pytest.approx(PER_TOKEN * 1024, abs=8.0)


async def test_multi_turn_sends_the_answers_back_and_ttft_rises_by_turn() -> None:
    # No cache: each turn prefills the whole conversation, so TTFT rises with the turn.
    config = SimConfig(mode="fixed", ttft_ms=TTFT, itl_ms=0.5, prefill_ms_per_token=PER_TOKEN,
                       prefix_cache_tokens=0, keep_requests=64)  # fmt: skip
    spec = WorkloadSpec(kind="multi_turn", turns=Dist.fixed(4), think_s=Dist.fixed(0.005),
                        input=Dist.fixed(60), output=Dist.fixed(30))  # fmt: skip
    async with Simulator(config) as sim:
        prober = await _run(sim, Workload(levels=(3,), requests_per_step=24, spec=spec), metrics=False)
        result = prober.result  # type: ignore[attr-defined]
        sent = list(sim.state.requests)
    assert result.status == "succeeded", result.error
    step = result.steps[0].summary
    assert step.workload is not None and step.workload.sessions == 6
    by_turn = {t.turn: t for t in step.workload.by_turn}
    assert sorted(by_turn) == [1, 2, 3, 4] and all(t.requests == 6 for t in by_turn.values())
    for turn in by_turn.values():
        assert turn.input_tokens_mean is not None and turn.ttft_ms.mean is not None
        truth = TTFT + PER_TOKEN * turn.input_tokens_mean
        assert abs(turn.ttft_ms.mean - truth) < 5.0 or flagged(step.model_dump(mode="json"))
    assert by_turn[4].input_tokens_mean > by_turn[1].input_tokens_mean + 3 * (60 + 30)
    # On the server's side: every later turn carries the earlier turns and the answers it gave.
    answer = " ".join(f"{w}" for w in __import__("app.simulator.server", fromlist=["VOCAB"]).VOCAB[:30])
    fourth = [messages for messages in sent if len(messages) == 7]
    assert fourth, "no fourth turn reached the server"
    for messages in fourth:
        assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
        assert all(m["content"].strip() == answer for m in messages if m["role"] == "assistant")


async def test_trace_replay_sends_lengths_times_and_shared_blocks(tmp_path) -> None:
    trace = generated_trace(120, seed=5)
    small = trace.model_copy(
        update={"requests": [r.model_copy(update={"input_tokens": min(r.input_tokens, 2048),
                                                  "hash_ids": (r.hash_ids or [])[:4], "output_tokens": 4})
                             for r in trace.requests]}
    )  # fmt: skip
    data = to_file(small)
    content = parse(data, "trace.jsonl")
    spec = WorkloadSpec(kind="trace", dataset="trace.jsonl")
    config = SimConfig(mode="fixed", ttft_ms=2.0, itl_ms=0.5, keep_requests=200)
    async with Simulator(config) as sim:
        workload = Workload(
            mode="rate",
            levels=(40.0,),
            requests_per_step=None,
            duration_per_step_s=None,
            spec=spec,
            content=content,
        )
        prober = await _run(sim, workload, metrics=False)
        result = prober.result  # type: ignore[attr-defined]
        sent = list(sim.state.requests)
    assert result.status == "succeeded", result.error
    samples = sorted(result.steps[0].samples, key=lambda s: s.seq)
    assert len(samples) == len(content.requests) and all(s.ok for s in samples)
    overhead = 4  # the simulator's chat template: a message's four tokens
    for sample, request in zip(samples, content.requests, strict=True):
        assert sample.input_tokens == request.input_tokens + overhead
        assert sample.osl == request.output_tokens
    # Sent at the trace's times (40x faster): the dispatch lag is small or the step says why.
    step = result.steps[0].summary
    assert step.workload is not None and step.workload.dispatch_lag_ms.p99 is not None
    assert step.workload.dispatch_lag_ms.p99 < 5.0 or flagged(step.model_dump(mode="json"))
    # Equal hash ids arrived as equal prefixes, different ones did not.
    starts = {" ".join(m[-1]["content"].split()[:512]) for m in sent if len(m[-1]["content"].split()) >= 512}
    firsts = {r.hash_ids[0] for r in content.requests if r.hash_ids and r.input_tokens >= 512}
    assert len(starts) == len(firsts)
    assert step.workload.expected_hit_rate is not None and step.workload.expected_hit_rate > 0


def test_datasets_refused_with_file_line_and_field() -> None:
    cases = [
        (b'{"timestamp": 0, "input_length": 5, "output_length": 2}\n{"timestamp": 1, "input_length": 0, "output_length": 2}\n',
         "t.jsonl:2: input_length: must be at least 1"),
        (b'{"timestamp": 5, "input_length": 5, "output_length": 2}\n{"timestamp": 1, "input_length": 5, "output_length": 2}\n',
         "t.jsonl:2: timestamp: earlier than the line before"),
        (b'[\n {"id": 1, "conversations": [{"from": "human", "value": "hi"}]},\n {"id": 2, "conversations": [{"from": "robot", "value": "x"}]}\n]',
         "t.jsonl:3: conversations[0].from: 'robot' is not a known speaker"),
        (b'{"messages": [{"role": "assistant", "content": "only me"}]}\n', "t.jsonl:1: messages: holds no user turn"),
        (b"TIMESTAMP,ContextTokens,GeneratedTokens\n1.0,10,5\n2.0,ten,5\n", "t.jsonl:3: ContextTokens: 'ten' is not a whole number"),
        (b"hello\n", "t.jsonl:1: not a dataset smartbench reads"),
    ]  # fmt: skip
    for data, message in cases:
        with pytest.raises(DatasetError) as caught:
            parse(data, "t.jsonl")
        assert str(caught.value).startswith(message), str(caught.value)
    found = stats(parse(to_file(generated_trace(500)), "g.jsonl"))
    assert found.records == 500 and found.prefix_share is not None and 0 < found.prefix_share < 1


async def test_datasets_api_and_a_shared_prefix_profile_end_to_end(
    app, client: httpx.AsyncClient, people
) -> None:
    auth = await bearer(client, "editor")
    listed = (await client.get("/api/v1/datasets", headers=auth)).json()["items"]
    assert {"mooncake-sample", "chat-conversations"} <= {d["name"] for d in listed}
    assert all(d["generated"] for d in listed if d["builtin"])
    bad = b'{"timestamp": 0, "input_length": 5, "output_length": "many"}\n'
    refused = await client.post(
        "/api/v1/datasets", files={"file": ("bad.jsonl", bad)}, data={"name": "bad"}, headers=auth
    )
    assert refused.status_code == 422 and "bad.jsonl:1: output_length" in refused.text
    assert (await client.get("/api/v1/datasets/bad", headers=auth)).status_code == 404
    big = to_file(generated_conversations(400, seed=3))  # over a megabyte: an upload, not a form body
    assert len(big) > 1024 * 1024
    stored = await client.post(
        "/api/v1/datasets", files={"file": ("c.json", big)}, data={"name": "convs"}, headers=auth
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["stats"]["turns_mean"] > 1 and stored.json()["format"] == "sharegpt"
    good = to_file(generated_trace(50, seed=2))
    added = await client.post(
        "/api/v1/datasets", files={"file": ("t.jsonl", good)}, data={"name": "mine"}, headers=auth
    )
    assert added.status_code == 201, added.text
    assert added.json()["records"] == 50 and added.json()["format"] == "mooncake"
    profile = {
        "name": "replay", "input_tokens_mean": 64, "output_tokens_mean": 8, "load_mode": "rate", "load_levels": [50],
        "requests_per_step": 20, "workload": {"kind": "trace", "dataset": "mine"},
    }  # fmt: skip
    assert (await client.post("/api/v1/profiles", json=profile, headers=auth)).status_code == 201
    in_use = await client.delete("/api/v1/datasets/mine", headers=auth)
    assert in_use.status_code == 422 and "replay" in in_use.text
    wrong = {**profile, "name": "wrong", "load_mode": "concurrency"}
    answer = await client.post("/api/v1/profiles", json=wrong, headers=auth)
    assert answer.status_code == 422 and "load_mode" in answer.text

    shared = {
        "name": "shared", "input_tokens_mean": 64, "output_tokens_mean": 8, "load_levels": [4], "requests_per_step": 40,
        "workload": {"kind": "shared_prefix", "groups": 4, "prefix_tokens": 512, "seed": 7},
    }  # fmt: skip
    created = await client.post("/api/v1/profiles", json=shared, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["workload"]["groups"] == 4
    with simulator("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1") as url:
        endpoint = await client.post("/api/v1/endpoints", json={"name": "sim", "base_url": url, "model": "sim",
                                     "metrics_url": url.replace("/v1", "/metrics")}, headers=auth)  # fmt: skip
        endpoint_id = endpoint.json()["id"]
        run_ids = []
        for name in ("shared", "replay"):
            accepted = await client.post(
                f"/api/v1/endpoints/{endpoint_id}/runs", json={"profile": name}, headers=auth
            )
            assert accepted.status_code == 202, accepted.text
            run_ids.append(accepted.json()["run_id"])
        summaries = [await wait_for_run(client, run_id, auth) for run_id in run_ids]
    shared_run, replay_run = summaries
    assert shared_run["status"] == "succeeded", shared_run
    work = shared_run["steps"][0]["workload"]
    assert abs(work["cache_hit_rate"] - work["expected_hit_rate"]) < 0.02
    assert shared_run["profile"]["workload"]["seed"] == 7
    assert replay_run["status"] == "succeeded", replay_run
    assert replay_run["profile"]["workload"]["dataset_sha256"] == added.json()["sha256"]
    assert replay_run["steps"][0]["workload"]["kind"] == "trace"
    assert replay_run["steps"][0]["requests"]["sent"] == 20
    samples = (await client.get(f"/api/v1/runs/{run_ids[0]}/samples?limit=50", headers=auth)).json()["items"]
    assert all("cached_tokens" in s for s in samples) and any(s["cached_tokens"] for s in samples)


async def test_workload_forms_and_pages(client: httpx.AsyncClient, people) -> None:
    from tests.conftest import login

    csrf = await login(client, "editor")
    form = {
        "name": "sessions", "input_tokens_mean": "64", "output_tokens_mean": "16", "load_mode": "concurrency",
        "load_levels": "1, 4", "requests_per_step": "12", "arrival": "poisson", "slo_percentile": "99",
        "workload_kind": "multi_turn", "workload_turns": "uniform:2-5", "workload_think_s": "exponential:0.1",
        "workload_input": "lognormal:60,0.5", "workload_seed": "11", "csrf_token": csrf,
    }  # fmt: skip
    bad = await client.post("/profiles/new", data={**form, "workload_turns": "uniform:5-2"})
    assert bad.status_code == 400
    assert 'data-error-for="workload_turns"' in bad.text and "low &lt;= high" in bad.text
    assert 'value="lognormal:60,0.5"' in bad.text  # what was typed stays
    mixed = await client.post("/profiles/new", data={**form, "workload_groups": "4"})
    assert mixed.status_code == 400 and "does not take groups" in mixed.text
    created = await client.post("/profiles/new", data=form)
    assert created.status_code == 303, created.text
    read = (await client.get("/api/v1/profiles/sessions")).json()
    turns = read["workload"]["turns"]
    assert read["workload"]["kind"] == "multi_turn" and (turns["dist"], turns["low"], turns["high"]) == (
        "uniform",
        2,
        5,
    )
    edit = await client.get("/profiles/sessions/edit")
    assert 'value="uniform:2-5"' in edit.text and 'value="11"' in edit.text
    page = await client.get("/profiles/sessions")
    assert page.status_code == 200 and "multi turn; turns uniform:2-5" in page.text

    listing = await client.get("/datasets")
    assert "mooncake-sample" in listing.text and "generated" in listing.text
    bad_file = b'{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [{"role": "user"}]}\n'
    refused = await client.post("/datasets", data={"name": "chats", "format": "auto", "csrf_token": csrf},
                                files={"file": ("chats.jsonl", bad_file)})  # fmt: skip
    assert refused.status_code == 400 and "chats.jsonl:2: messages[0].content: must be text" in refused.text
    assert 'value="chats"' in refused.text
    good = b'{"messages": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello you"}]}\n'
    stored = await client.post("/datasets", data={"name": "chats", "format": "auto", "csrf_token": csrf},
                               files={"file": ("chats.jsonl", good)})  # fmt: skip
    assert stored.status_code == 303
    detail = await client.get(stored.headers["location"])
    assert detail.status_code == 200 and "messages" in detail.text and "Profiles that use it" in detail.text
    trace_page = await client.get("/datasets/mooncake-sample")
    assert "Generated, not recorded" in trace_page.text and "Mooncake" in trace_page.text
    replay = await client.get("/profiles/trace-replay")
    assert (
        replay.status_code == 200
        and "mooncake-sample" in replay.text
        and "requests/s as recorded" in replay.text
    )


def test_s_letter_rests_on_the_complexity_measured() -> None:
    import math

    from app.scoring.smart import CAPACITY_REFERENCE, smart_letters
    from app.snapshot import CostInputs, EndpointSnapshot, ProfileSnapshot
    from app.summary import StepSummary

    def step(
        context: int, ttft_p99: float, hit: float | None = None, turns: list[float] | None = None
    ) -> StepSummary:
        return StepSummary.model_validate({
            "concurrency": 1, "requests": {"sent": 4, "completed": 4, "failed": 0, "errors": {}},
            "ttft_ms": {"p99": ttft_p99, "p50": ttft_p99 * 0.9}, "tpot_ms": {"p99": 20.0, "p50": 18.0},
            "output_tokens_per_s": 100.0, "input_tokens_per_s": 100.0, "total_tokens_per_s": 200.0,
            "token_count_source": "usage",
            "workload": {"kind": "long_context", "context_tokens": context, "cache_hit_rate": hit,
                         "expected_hit_rate": 0.8 if hit is not None else None,
                         "by_turn": [{"turn": i + 1, "requests": 4, "ttft_ms": {"p50": t, "p99": t}}
                                     for i, t in enumerate(turns or [])]},
        })  # fmt: skip

    profile = ProfileSnapshot(name="long", slo_ttft_ms=2000.0, slo_tpot_ms=50.0, slo_percentile=99.0)
    steps = [step(1024, 200.0), step(8192, 900.0), step(32768, 1900.0), step(131072, 9000.0)]
    card = smart_letters(steps, profile, CostInputs(), EndpointSnapshot(gpu_count=1))
    s_letter = next(letter for letter in card.letters if letter.letter == "S")
    evidence = {e.label: e.value for e in s_letter.evidence}
    assert evidence["longest prompt meeting the SLO"] == 32768
    assert evidence["long-context prefill speed (TTFT p50 at 131072 tokens)"] == pytest.approx(131072 / 8.1)
    assert s_letter.score is not None and "context score" in s_letter.how
    # Capacity 1 (one user) and the context: 32k of 128k on a log scale from 1k, 5 / 7 of the way.
    capacity = 100 * math.log2(2) / math.log2(1 + CAPACITY_REFERENCE)
    assert s_letter.score == pytest.approx((capacity + 100 * 5 / 7) / 2, abs=0.1)

    # A multi-turn, shared-prefix step: cache hits against the expectation, turns within the SLO.
    turned = [step(1024, 300.0, hit=0.6, turns=[200.0, 400.0, 2500.0])]
    card = smart_letters(turned, profile, CostInputs(), EndpointSnapshot(gpu_count=1))
    s_letter = next(letter for letter in card.letters if letter.letter == "S")
    labels = " | ".join(e.label for e in s_letter.evidence)
    assert "prefix-cache hit rate at the operating point (the workload allows 80 %)" in labels
    assert "TTFT p50 growth from turn 1 to turn 3" in labels
    # context 1k scores 0, cache 0.6 / 0.8 = 75, turns 2 of 3 = 66.7: the mean of what was measured.
    assert s_letter.score == pytest.approx((capacity + 0 + 75 + 200 / 3) / 4, abs=0.1)


async def test_every_builtin_workload_runs_and_is_scored(app, client: httpx.AsyncClient, people) -> None:
    """Each built-in workload profile, with its bounds cut to seconds, runs through the executor
    against the simulator (playing vLLM, so the long-context steps come from its model card) and
    gets a scorecard."""
    auth = await bearer(client, "editor")
    kinds = {"chat-multiturn": "multi_turn", "agentic": "multi_turn", "rag-shared-prefix": "shared_prefix",
             "long-context": "long_context", "trace-replay": "trace"}  # fmt: skip
    with simulator("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "0.2", "--engine", "vllm") as url:
        endpoint = await client.post("/api/v1/endpoints", json={"name": "sim", "base_url": url, "model": "sim",
                                     "gpu_count": 1, "price_per_gpu_hour": 2.0}, headers=auth)  # fmt: skip
        endpoint_id = endpoint.json()["id"]
        runs = {}
        for name in kinds:
            builtin = (await client.get(f"/api/v1/profiles/{name}", headers=auth)).json()
            quick = {"name": f"quick-{name}", "input_tokens_mean": builtin["input_tokens_mean"],
                     "output_tokens_mean": 16, "load_mode": builtin["load_mode"], "load_levels": builtin["load_levels"][:1],
                     "requests_per_step": 6, "slo_ttft_ms": 5000, "workload": builtin["workload"]}  # fmt: skip
            if builtin["workload"]["kind"] == "long_context":
                quick["workload"] = {**builtin["workload"], "context_tokens": [1024, 4096]}
            if builtin["workload"].get("output"):
                quick["workload"] = {**quick["workload"], "output": {"dist": "fixed", "mean": 16}}
            if builtin["workload"].get("think_s"):
                quick["workload"] = {**quick["workload"], "think_s": {"dist": "fixed", "mean": 0.01}}
            created = await client.post("/api/v1/profiles", json=quick, headers=auth)
            assert created.status_code == 201, created.text
            accepted = await client.post(f"/api/v1/endpoints/{endpoint_id}/runs", json={"profile": f"quick-{name}"},
                                         headers=auth)  # fmt: skip
            runs[name] = accepted.json()["run_id"]
        summaries = {
            name: await wait_for_run(client, run_id, auth, timeout=180) for name, run_id in runs.items()
        }
        page = await client.get(f"/runs/{runs['long-context']}", headers=auth)
    for name, summary in summaries.items():
        assert summary["status"] == "succeeded", (name, summary.get("error"))
        assert {step["workload"]["kind"] for step in summary["steps"]} == {kinds[name]}
        assert {letter["letter"] for letter in summary["scorecard"]["letters"]} == set("SMART"), name
    contexts = [step["workload"]["context_tokens"] for step in summaries["long-context"]["steps"]]
    assert contexts == [1024, 4096]
    s_letter = next(x for x in summaries["long-context"]["scorecard"]["letters"] if x["letter"] == "S")
    assert any(
        e["label"] == "longest prompt meeting the SLO" and e["value"] == 4096 for e in s_letter["evidence"]
    )
    agentic = summaries["agentic"]["steps"][0]["workload"]
    assert agentic["cache_hit_rate"] > 0.5  # the shared system prompt and the earlier turns hit
    assert page.status_code == 200
