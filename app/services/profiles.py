"""Workload profiles: the built-ins and user-defined ones, addressed by a unique name.

Built-ins follow the spectrum of NVIDIA's "Think SMART" article and public references:
- realtime: MLPerf Inference's interactive scenario for Llama-2-70B (TTFT <= 450 ms, TPOT <= 40 ms
  at p99) tightened to DESIGN's real-time limits (TTFT <= 500 ms, TPOT <= 30 ms at p99);
- chat: interactive chat (TTFT <= 1 s, TPOT <= 50 ms at p99; MLPerf's server scenario is
  TTFT <= 2 s, TPOT <= 200 ms, chat products aim tighter);
- rag: long-context / retrieval-augmented prompts (8k in, 256 out), judged at p90 TTFT <= 3 s;
- reasoning: long outputs (TTFT <= 2 s, TPOT <= 100 ms at p99), as for reasoning models;
- batch: throughput first, no latency SLO (InferenceX-style 1k in / 1k out);
- smoke: a handful of short requests at concurrency 1, seconds long, for frequent schedules
  (as Artificial Analysis probes hosted APIs several times a day);
- chat-multiturn: sessions whose turns follow LMSYS-Chat-1M's lengths (69.5-token prompts,
  214.5-token answers), each turn resending the conversation;
- agentic: an agent's loop: a 4,000-token system prompt with its tools shared by every session,
  tool results as user turns, a short pause for the tool between turns;
- rag-shared-prefix: 16 document sets of 4,096 tokens each shared by the questions about them;
- long-context: prompt lengths doubling from 1k up to the model's context length;
- trace-replay: the generated Mooncake-format trace at its recorded times (built-in dataset).
Target prices are defaults to judge R against; edit them to your budget."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.datasets import TRACE_FORMATS
from app.errors import NotFound, ValidationFailed
from app.models import Dataset, Profile
from app.schemas import ProfileCreate, ProfileUpdate
from app.services import site
from app.snapshot import ProfileSnapshot

BUILTINS: tuple[ProfileCreate, ...] = tuple(
    ProfileCreate.model_validate(spec)
    for spec in (
        {
            "name": "smoke",
            "title": "Smoke canary",
            "description": "Five short requests at concurrency 1: is it up, and how fast, right now.",
            "input_tokens_mean": 128, "output_tokens_mean": 32, "load_levels": [1], "requests_per_step": 5,
            "slo_ttft_ms": 1000.0, "slo_tpot_ms": 50.0, "slo_percentile": 99.0, "target_price_per_million": 1.0,
        },
        {
            "name": "realtime",
            "title": "Real-time (ultra-low latency)",
            "description": "Voice agents and copilots: MLPerf interactive-style limits.",
            "input_tokens_mean": 512, "input_tokens_spread": 0.1, "output_tokens_mean": 128, "output_tokens_spread": 0.1,
            "load_levels": [1, 4, 16, 32], "duration_per_step_s": 8.0, "warmup_requests": 1,
            "slo_ttft_ms": 500.0, "slo_tpot_ms": 30.0, "slo_percentile": 99.0, "target_price_per_million": 2.0,
        },
        {
            "name": "chat",
            "title": "Interactive chat",
            "description": "A chat product: 1k-token prompts, 256-token answers, a concurrency sweep.",
            "input_tokens_mean": 1024, "input_tokens_spread": 0.1, "output_tokens_mean": 256, "output_tokens_spread": 0.1,
            "load_levels": [1, 8, 32, 64], "duration_per_step_s": 10.0, "warmup_requests": 1,
            "slo_ttft_ms": 1000.0, "slo_tpot_ms": 50.0, "slo_percentile": 99.0, "target_price_per_million": 1.0,
        },
        {
            "name": "rag",
            "title": "Long context / RAG",
            "description": "Retrieval-augmented prompts: 8k tokens in, 256 out; prefill dominates.",
            "input_tokens_mean": 8192, "input_tokens_spread": 0.1, "output_tokens_mean": 256,
            "load_levels": [1, 4, 16, 32], "duration_per_step_s": 10.0, "warmup_requests": 1,
            "slo_ttft_ms": 3000.0, "slo_tpot_ms": 50.0, "slo_percentile": 90.0, "target_price_per_million": 0.5,
        },
        {
            "name": "reasoning",
            "title": "Reasoning (long outputs)",
            "description": "Reasoning models think before they answer: 1k in, 4k out.",
            "input_tokens_mean": 1024, "output_tokens_mean": 4096, "output_tokens_spread": 0.2,
            "load_levels": [1, 8, 32], "duration_per_step_s": 20.0,
            "slo_ttft_ms": 2000.0, "slo_tpot_ms": 100.0, "slo_percentile": 99.0, "target_price_per_million": 1.0,
        },
        {
            "name": "chat-multiturn",
            "title": "Multi-turn chat",
            "description": "Chat sessions of 2-8 turns, each resending the conversation with the answers the server gave.",
            "input_tokens_mean": 70, "output_tokens_mean": 215, "load_levels": [1, 8, 32], "duration_per_step_s": 20.0,
            "workload": {"kind": "multi_turn", "turns": {"dist": "uniform", "low": 2, "high": 8},
                         "think_s": {"dist": "exponential", "mean": 1.0},
                         "input": {"dist": "lognormal", "mean": 70, "spread": 1.0, "high": 2000},
                         "output": {"dist": "lognormal", "mean": 215, "spread": 0.8, "high": 2000}},
            "slo_ttft_ms": 1000.0, "slo_tpot_ms": 50.0, "slo_percentile": 99.0, "target_price_per_million": 1.0,
        },
        {
            "name": "agentic",
            "title": "Agentic (long shared system prompt and tools)",
            "description": "Agent loops: a 4k-token system prompt with tools shared by all sessions, tool results as turns.",
            "input_tokens_mean": 300, "output_tokens_mean": 150, "load_levels": [1, 8, 32], "duration_per_step_s": 20.0,
            "workload": {"kind": "multi_turn", "system_tokens": 4000, "turns": {"dist": "uniform", "low": 3, "high": 10},
                         "think_s": {"dist": "fixed", "mean": 0.5},
                         "input": {"dist": "lognormal", "mean": 300, "spread": 1.0, "high": 4000},
                         "output": {"dist": "lognormal", "mean": 150, "spread": 0.8, "high": 1000}},
            "slo_ttft_ms": 2000.0, "slo_tpot_ms": 50.0, "slo_percentile": 90.0, "target_price_per_million": 1.0,
        },
        {
            "name": "rag-shared-prefix",
            "title": "RAG over shared documents",
            "description": "16 document sets of 4k tokens, each shared by the questions asked of it: prefix caching pays.",
            "input_tokens_mean": 64, "output_tokens_mean": 256, "load_levels": [1, 8, 32], "duration_per_step_s": 15.0,
            "warmup_requests": 1,
            "workload": {"kind": "shared_prefix", "groups": 16, "prefix_tokens": 4096,
                         "input": {"dist": "lognormal", "mean": 64, "spread": 0.5}},
            "slo_ttft_ms": 2000.0, "slo_tpot_ms": 50.0, "slo_percentile": 90.0, "target_price_per_million": 0.5,
        },
        {
            "name": "long-context",
            "title": "Long context (how far TTFT and cost grow)",
            "description": "Prompt lengths doubling from 1k up to the model's context length, at concurrency 1.",
            "input_tokens_mean": 1024, "output_tokens_mean": 128, "load_levels": [1], "requests_per_step": 4,
            "workload": {"kind": "long_context", "start_tokens": 1024, "context_max": 32768},
            "slo_ttft_ms": 10000.0, "slo_tpot_ms": 100.0, "slo_percentile": 90.0, "target_price_per_million": 1.0,
        },
        {
            "name": "trace-replay",
            "title": "Trace replay (Mooncake format)",
            "description": "The built-in generated trace at its recorded times: a minute of real-shaped arrivals.",
            "input_tokens_mean": 7590, "output_tokens_mean": 182, "load_mode": "rate", "load_levels": [1],
            "duration_per_step_s": 60.0,
            "workload": {"kind": "trace", "dataset": "mooncake-sample"},
            "slo_ttft_ms": 2000.0, "slo_tpot_ms": 50.0, "slo_percentile": 90.0, "target_price_per_million": 0.5,
        },
        {
            "name": "batch",
            "title": "Batch (throughput first)",
            "description": "Offline jobs: 1k in, 1k out, as much throughput as the endpoint gives; no latency SLO.",
            "input_tokens_mean": 1024, "output_tokens_mean": 1024, "load_levels": [64, 256],
            "duration_per_step_s": 20.0, "target_price_per_million": 0.2,
        },
    )
)  # fmt: skip


def snapshot(profile: Profile) -> ProfileSnapshot:
    """The profile as the run that uses it must remember it."""
    return ProfileSnapshot.of(profile)


async def ensure_builtins(session: AsyncSession) -> int:
    """Insert the built-in profiles that are missing (existing ones, maybe edited, are kept)."""
    existing = set((await session.scalars(select(Profile.name))).all())
    added = 0
    for spec in BUILTINS:
        if spec.name in existing:
            continue
        try:
            async with session.begin_nested():  # processes starting together: the first one adds it
                session.add(Profile(**spec.model_dump(exclude_unset=True), builtin=True))
                await session.flush()
        except IntegrityError:
            continue
        added += 1
    return added


async def list_all(session: AsyncSession) -> list[Profile]:
    return list((await session.scalars(select(Profile).order_by(Profile.builtin.desc(), Profile.name))).all())


async def get_by_name(session: AsyncSession, name: str) -> Profile:
    profile = await session.scalar(select(Profile).where(Profile.name == name))
    if profile is None:
        raise NotFound(f"no profile is named {name!r}")
    return profile


async def _within_limits(session: AsyncSession, settings: Settings, profile: ProfileSnapshot) -> None:
    """What a profile asks of the probe stays within the site's limits (an admin raises them):
    otherwise any editor could turn the probe into a load cannon."""
    limits = await site.load(session, settings)
    problems: dict[str, str] = {}
    top = limits.max_profile_concurrency
    levels = profile.load_levels or []
    if levels and max(levels) > top:
        problems["load_levels"] = f"at most {top} (the site's limit; an admin can raise it)"
    if (profile.max_concurrency or 0) > top:
        problems["max_concurrency"] = f"at most {top} (the site's limit; an admin can raise it)"
    most = limits.max_requests_per_step
    warm = (profile.warmup_requests or 0) * (
        max(levels) if profile.load_mode == "concurrency" and levels else 1
    )
    if (profile.requests_per_step or 0) + warm > most:
        problems["requests_per_step"] = (
            f"a step may send at most {most} requests, warm-up included (the site's limit; an admin can raise it)"
        )
    if problems:
        raise ValidationFailed("the profile asks more than this site allows", fields=problems)


async def _check_workload(session: AsyncSession, profile: ProfileSnapshot) -> None:
    """What each workload kind asks of the rest of the profile, and that its dataset exists
    and is of the right kind."""
    spec = profile.workload
    if spec is None:
        return
    problems: dict[str, str] = {}
    levels = profile.load_levels or []
    if spec.kind == "trace":
        if profile.load_mode != "rate":
            problems["load_mode"] = (
                "a trace replays at rates: choose rate (the levels are speed-ups, 1 = as recorded)"
            )
        if profile.search:
            problems["search"] = "a trace replay has no SLO search: its levels are speed-ups"
    if spec.kind == "long_context":
        if profile.load_mode != "concurrency" or len(levels) != 1:
            problems["load_levels"] = (
                "long context steps through prompt lengths at one concurrency: give one level"
            )
        if profile.search:
            problems["search"] = "long context steps through prompt lengths, not loads: no SLO search"
    if spec.kind == "shared_prefix" and (spec.groups or 0) * (spec.prefix_tokens or 0) > 50_000_000:
        problems["workload"] = "groups x prefix tokens is over 50 million tokens"
    if spec.uses_dataset and spec.dataset is not None:
        dataset = await session.scalar(select(Dataset).where(Dataset.name == spec.dataset))
        if dataset is None:
            problems["workload"] = (
                f"no dataset is named {spec.dataset!r} (add it first: smartbench dataset add)"
            )
        elif spec.kind == "trace" and dataset.format not in TRACE_FORMATS:
            problems["workload"] = f"{spec.dataset!r} holds conversations, not a trace: use the dataset kind"
        elif spec.kind == "dataset" and dataset.format in TRACE_FORMATS:
            problems["workload"] = (
                f"{spec.dataset!r} is a trace (lengths and times, no text): use the trace kind"
            )
    if problems:
        raise ValidationFailed("the workload does not fit the profile", fields=problems)


def _check(profile: ProfileSnapshot) -> None:
    if not profile.requests_per_step and not profile.duration_per_step_s:
        raise ValidationFailed(
            "a step needs a bound",
            fields={"requests_per_step": "give requests per step, a duration per step, or both"},
        )
    if profile.load_mode == "concurrency" and any(float(v) != int(v) for v in profile.load_levels or []):
        raise ValidationFailed(
            "bad load levels", fields={"load_levels": "concurrency levels are whole numbers"}
        )
    if profile.search:
        if len(profile.load_levels or []) < 2:
            raise ValidationFailed(
                "an SLO search needs where to start and a ceiling",
                fields={
                    "load_levels": "give at least two levels: the lowest starts the search, the highest caps it"
                },
            )
        if not profile.slo.defined:
            raise ValidationFailed(
                "an SLO search needs an SLO",
                fields={"search": "give a TTFT, TPOT or E2E limit to search against"},
            )


async def create(session: AsyncSession, *, data: ProfileCreate, settings: Settings) -> Profile:
    values = data.model_dump()
    wanted = ProfileSnapshot.model_validate(values)
    _check(wanted)
    await _check_workload(session, wanted)
    await _within_limits(session, settings, wanted)
    if await session.scalar(select(Profile.id).where(func.lower(Profile.name) == data.name.lower())):
        raise ValidationFailed("that profile exists", fields={"name": f"{data.name!r} already exists"})
    profile = Profile(**values, builtin=False)
    session.add(profile)
    await session.flush()
    return profile


async def update(session: AsyncSession, *, name: str, data: ProfileUpdate, settings: Settings) -> Profile:
    profile = await get_by_name(session, name)
    changes = data.model_dump(exclude_unset=True)
    merged = ProfileSnapshot.model_validate({**snapshot(profile).model_dump(), **changes})
    _check(merged)
    await _check_workload(session, merged)
    await _within_limits(session, settings, merged)
    renamed = "name" in changes and changes["name"] != profile.name
    if renamed and await session.scalar(
        select(Profile.id).where(func.lower(Profile.name) == changes["name"].lower())
    ):
        raise ValidationFailed("that profile exists", fields={"name": f"{changes['name']!r} already exists"})
    for key, value in changes.items():
        setattr(profile, key, value)
    await session.flush()
    return profile


async def delete(session: AsyncSession, *, name: str) -> None:
    profile = await get_by_name(session, name)
    await session.delete(profile)
    await session.flush()
