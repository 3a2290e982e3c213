"""Operating point, capacity and the five SMART letters, from a run's step summaries.

Every letter is 0-100 (or None: "not measured yet") with the evidence it used and a plain
"how this is scored" that a reader can redo by hand. The scales are logarithmic around the
profile's own limits: meeting a limit exactly scores 50, each halving of the value scores 25
more (a quarter of the limit or better: 100), each doubling 25 less."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.domain import SLO, TITLES, UNJUDGED, conformance, engines_comparable
from app.environment import InspectionRecord, RunEnvironment
from app.scoring.cost import costs_at
from app.snapshot import CostInputs, EndpointSnapshot, ProfileSnapshot
from app.summary import CardQuality, Evidence, Judgement, OperatingPoint, Scorecard, StepSummary

CAPACITY_REFERENCE = 256  # concurrent users at SLO that earn a full capacity score
REFERENCE_SLO = SLO(ttft_ms=1000.0, tpot_ms=50.0, percentile=99.0)  # interactive chat
REFERENCE_PRICE = 1.0  # $ per million tokens, when a profile names no target price
THROUGHPUT_REFERENCE = 500.0  # output tokens/s per GPU at the SLO that scores 50


def _lerp(a: float | None, b: float | None, f: float) -> float | None:
    if a is None or b is None:
        return a if f < 0.5 else b
    return a + (b - a) * f


def operating_point(
    steps: Sequence[StepSummary], slo: SLO, inputs: CostInputs, *, searched: bool = False
) -> OperatingPoint | None:
    """The SLO-meeting point with the most output throughput, interpolated between a step that
    meets the SLO and the next heavier one that breaks it (where the binding metric crosses its
    limit). Without an SLO (throughput first) it is the step with the most throughput. After an
    SLO search (`searched`) it is the search's answer, the heaviest step that met the SLO, as
    measured. Step indices are positions in `steps`. A step measured in repeat trials counts at
    the conservative end of its intervals (StepSummary.conservative)."""
    steps = [s.conservative() for s in steps]
    ordered = sorted(
        ((i, s) for i, s in enumerate(steps) if s.output_tokens_per_s is not None),
        key=lambda pair: pair[1].load,
    )
    if not ordered:
        return None
    kind = ordered[0][1].load_kind
    best: OperatingPoint | None = None
    for k, (index, step) in enumerate(ordered):
        if slo.defined and not step.meets(slo):
            continue
        point = OperatingPoint(
            load=step.load,
            load_kind=kind,
            output_tokens_per_s=float(step.output_tokens_per_s or 0.0),
            total_tokens_per_s=step.total_tokens_per_s,
            input_tokens_per_s=step.input_tokens_per_s,
            good_tokens_per_s=step.good_tokens_per_s,
            tokens_per_s_per_user=step.tokens_per_s_per_user.p50,
            step_index=index,
            interpolated=False,
        )
        following = ordered[k + 1] if k + 1 < len(ordered) else None
        if not searched and slo.defined and following is not None and not following[1].meets(slo):
            next_index, nxt = following
            f = _crossing(step, nxt, slo)
            if f is not None and f > 0:
                point = OperatingPoint(
                    load=step.load + (nxt.load - step.load) * f,
                    load_kind=kind,
                    output_tokens_per_s=float(
                        _lerp(step.output_tokens_per_s, nxt.output_tokens_per_s, f) or 0.0
                    ),
                    total_tokens_per_s=_lerp(step.total_tokens_per_s, nxt.total_tokens_per_s, f),
                    input_tokens_per_s=_lerp(step.input_tokens_per_s, nxt.input_tokens_per_s, f),
                    good_tokens_per_s=_lerp(step.good_tokens_per_s, nxt.good_tokens_per_s, f),
                    tokens_per_s_per_user=_lerp(
                        step.tokens_per_s_per_user.p50, nxt.tokens_per_s_per_user.p50, f
                    ),
                    step_index=index,
                    interpolated=True,
                    next_step_index=next_index,
                )
        if best is None or (
            point.load > best.load if searched else point.output_tokens_per_s > best.output_tokens_per_s
        ):
            best = point
    if best is not None and (trials := steps[best.step_index].trials) is not None and trials.count > 1:
        best.trials = trials.count  # its figures are the conservative bounds over the trials
    if best is not None and slo.defined and not best.interpolated and best.load >= max(s.load for s in steps):
        best.at_least = True  # nothing heavier was measured (a failed step counts): the SLO never broke
    if best is not None:
        # Power as measured in the step the point rests on (its telemetry), else declared.
        telemetry = steps[best.step_index].telemetry
        costs = costs_at(
            inputs,
            output_tokens_per_s=best.output_tokens_per_s,
            input_tokens_per_s=best.input_tokens_per_s,
            total_tokens_per_s=best.total_tokens_per_s,
            good_tokens_per_s=best.good_tokens_per_s,
            power_w=telemetry.power_w if telemetry is not None else None,
        )
        best = best.model_copy(update=costs.model_dump())
    return best


def _crossing(meeting: StepSummary, breaking: StepSummary, slo: SLO) -> float | None:
    """Fraction of the way from `meeting` to `breaking` where the first limit is reached."""
    fractions: list[float] = []
    for metric, limit in slo.limits():
        a, b = meeting.at(metric, slo.key), breaking.at(metric, slo.key)
        if a is None or b is None or b <= limit:
            continue
        fractions.append(max(0.0, min(1.0, (limit - a) / (b - a))) if b != a else 0.0)
    if not fractions:
        return None  # it broke for failures, not for latency: do not extrapolate
    return min(fractions)


# -- letters ---------------------------------------------------------------------------------------


def log_score(limit: float, value: float | None) -> float | None:
    """50 at the limit, +25 per halving of the value, -25 per doubling, clipped to 0..100."""
    if value is None or not math.isfinite(value) or value <= 0 or limit <= 0:
        return None  # an impossible figure scores nothing, never 100
    return max(0.0, min(100.0, 50.0 + 25.0 * math.log2(limit / value)))


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _degraded(steps: Sequence[StepSummary | None]) -> list[str]:
    """The reasons, step by step, that the given steps are degraded measurements."""
    seen: list[str] = []
    for step in steps:
        if step is None:
            continue
        for reason in step.degraded:
            line = f"{step.load_label}: {reason}"
            if line not in seen:
                seen.append(line)
    return seen


CONTEXT_REFERENCE = 131_072  # a 128k context meeting the SLO scores 100


@dataclass
class Complexity:
    """What the workload measured of S's complexity: context reached, cache, turns."""

    scores: list[float | None] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)


def _complexity(steps: Sequence[StepSummary], point: OperatingPoint | None, slo: SLO) -> Complexity:
    found = Complexity()
    contexts = [
        (s, s.workload.context_tokens) for s in steps if s.workload is not None and s.workload.context_tokens
    ]
    if contexts:
        meeting = [(s, c) for s, c in contexts if s.meets(slo)]
        reached = max((c for _, c in meeting), default=None)
        found.scores.append(
            0.0 if reached is None
            else 100.0 * max(0.0, min(1.0, math.log2(max(reached, 1024) / 1024) / math.log2(CONTEXT_REFERENCE / 1024)))
        )  # fmt: skip
        found.evidence.append(Evidence(label="longest prompt meeting the SLO", value=reached, unit="tokens"))
        longest, tokens = max(contexts, key=lambda pair: pair[1])
        ttft = longest.ttft_ms.p50
        speed = tokens / ttft * 1000.0 if ttft else None
        found.evidence.append(
            Evidence(
                label=f"long-context prefill speed (TTFT p50 at {tokens} tokens)",
                value=speed,
                unit="tokens/s",
            )
        )
    else:
        found.evidence.append(
            Evidence(
                label="long-context prefill speed", value=None, unit="not measured (no long_context workload)"
            )
        )
    at = steps[point.step_index] if point is not None and point.step_index < len(steps) else None
    work = at.workload if at is not None else None
    if work is not None and work.expected_hit_rate:
        measured = (
            work.cache_hit_rate if work.cache_hit_rate is not None else at.server_hit_rate if at else None
        )
        found.scores.append(None if measured is None else 100.0 * min(1.0, measured / work.expected_hit_rate))
        found.evidence.append(
            Evidence(
                label=f"prefix-cache hit rate at the operating point (the workload allows {work.expected_hit_rate * 100:.0f} %)",
                value=None if measured is None else round(100.0 * measured, 1),
                unit="%",
            )
        )
    if work is not None and work.by_turn:
        limit = slo.ttft_ms
        if limit is not None:
            met = [t for t in work.by_turn if (v := getattr(t.ttft_ms, slo.key)) is not None and v <= limit]
            found.scores.append(100.0 * len(met) / len(work.by_turn))
        first, last = work.by_turn[0], work.by_turn[-1]
        growth = (last.ttft_ms.p50 / first.ttft_ms.p50) if first.ttft_ms.p50 and last.ttft_ms.p50 else None
        found.evidence.append(
            Evidence(label=f"TTFT p50 growth from turn 1 to turn {last.turn}", value=growth, unit="x")
        )
    return found


def smart_letters(
    steps: Sequence[StepSummary],
    profile: ProfileSnapshot,
    inputs: CostInputs,
    endpoint: EndpointSnapshot,
    environment: RunEnvironment | None = None,
) -> Scorecard:
    """The scorecard of one run: operating point, capacity and the five letters."""
    environment = environment or RunEnvironment()
    steps = [s.conservative() for s in steps]  # repeat trials: each interval's unflattering end
    slo = profile.slo
    judged = slo if slo.defined else REFERENCE_SLO
    # An SLO search measured its answer: its operating point is that step, never interpolated.
    point = operating_point(steps, slo, inputs, searched=bool(profile.search))
    ordered = sorted(steps, key=lambda s: s.load)
    meeting = [s for s in ordered if s.meets(judged)]
    at = (
        max(meeting, key=lambda s: s.output_tokens_per_s or 0)
        if meeting
        else (ordered[0] if ordered else None)
    )
    lightest = ordered[0] if ordered else None
    point_steps = [steps[i] for i in point.step_indices] if point is not None else []

    # S: capacity at the SLO and how throughput scales across the sweep.
    capacity = point.load if point is not None and point.load_kind == "concurrency" and slo.defined else None
    at_least = capacity is not None and point is not None and point.at_least
    cap_score = None
    if capacity is not None:
        cap_score = 100.0 * min(1.0, math.log2(1 + capacity) / math.log2(1 + CAPACITY_REFERENCE))
    scaling_score = speedup = None
    if (
        lightest is not None
        and point is not None
        and lightest.load < point.load
        and lightest.output_tokens_per_s
    ):
        speedup = point.output_tokens_per_s / lightest.output_tokens_per_s
        ideal = point.load / lightest.load
        scaling_score = 100.0 * max(0.0, min(1.0, math.log2(max(speedup, 1e-9)) / math.log2(ideal)))
    complexity = _complexity(steps, point, judged)
    s_letter = Judgement.of(
        "S",
        "Scale and complexity",
        _mean([cap_score, scaling_score, *complexity.scores]),
        [
            Evidence(
                label="capacity (highest concurrency meeting the SLO)"
                + (", at least: the SLO held at the heaviest load measured" if at_least else ""),
                value=capacity,
                unit="users",
            ),
            Evidence(
                label="throughput speed-up from the lightest step to the operating point",
                value=speedup,
                unit="x",
            ),
            *complexity.evidence,
        ],
        f"Mean of: capacity score = 100 x log2(1 + capacity) / log2(1 + {CAPACITY_REFERENCE}) (capped at 100); "
        "scaling score = 100 x log2(speed-up) / log2(load ratio) (perfect linear scaling = 100); "
        "where the workload measured them: context score = 100 x log2(longest prompt meeting the SLO / 1k) / "
        f"log2({CONTEXT_REFERENCE // 1024}k / 1k); cache score = 100 x measured hit rate / expected hit rate "
        "(capped at 100); turn score = 100 x the share of turns whose TTFT meets the SLO.",
        _degraded([lightest, *point_steps]),
    )

    # M: latency for one user, throughput per GPU at the SLO, and goodput.
    m_parts: list[float | None] = []
    m_evidence: list[Evidence] = []
    if lightest is not None:
        for metric, limit in judged.limits():
            value = lightest.at(metric, judged.key)
            m_parts.append(log_score(limit, value))
            label = f"{metric[:-3].upper()} {judged.key} at the lightest load (limit {limit:g} ms)"
            m_evidence.append(Evidence(label=label, value=value, unit="ms"))
    gpus = endpoint.gpu_count
    per_gpu = point.output_tokens_per_s / gpus if point is not None and gpus else None
    if per_gpu is not None and per_gpu > 0:
        m_parts.append(max(0.0, min(100.0, 50.0 + 25.0 * math.log2(per_gpu / THROUGHPUT_REFERENCE))))
    m_evidence.append(
        Evidence(
            label="output tokens/s per GPU at the SLO operating point", value=per_gpu, unit="tokens/s/GPU"
        )
    )
    if at is not None:
        attainment = at.slo_attainment
        if attainment is not None:
            m_parts.append(100.0 * float(attainment))
        m_evidence.append(
            Evidence(label="SLO attainment at the heaviest SLO-meeting step", value=attainment, unit="share")
        )
    m_letter = Judgement.of(
        "M",
        "Multidimensional performance",
        _mean(m_parts),
        m_evidence,
        "Mean of: for each SLO limit, 50 + 25 x log2(limit / value) at the lightest load (one user's latency); "
        f"throughput per GPU at the SLO operating point, 50 + 25 x log2(tokens/s/GPU / {THROUGHPUT_REFERENCE:g}) "
        "(not scored without a declared GPU count); 100 x SLO attainment at the heaviest SLO-meeting step. "
        "Each part clipped to 0..100."
        + (
            ""
            if slo.defined
            else " This profile has no SLO: judged against interactive chat (TTFT 1 s, TPOT 50 ms, p99)."
        ),
        _degraded([lightest, *point_steps, at]),
    )

    # A: the serving stack and the API behaviour observed in this run.
    inspection = environment.inspection or InspectionRecord()
    seen = inspection.passed(UNJUDGED)
    checks: list[tuple[str, bool | None]] = []
    if at is not None:
        checks.append(("streaming (SSE) works", bool(at.requests.completed)))
        checks.append(("token usage reported in the stream", at.token_count_source == "usage"))
        # The preflight sees whether the option was accepted; the inspection whether usage came.
        said = seen.get("per_chunk_usage")
        checks.append(("per-chunk usage (continuous_usage_stats)",
                       said == "passed" if said is not None else environment.continuous_usage))  # fmt: skip
        checks.append(
            (
                "output length honoured (max_tokens, ignore_eos)",
                not at.quality.osl_mismatch_flag,
            )
        )
    detected = inspection.engine
    declared = endpoint.engine
    if detected and engines_comparable(declared, detected):
        checks.append(
            (f"detected engine ({detected}) is the declared one ({declared})", detected == declared)
        )
    for cid in serving_checks(profile):
        if cid in seen:
            checks.append((f"{TITLES.get(cid, cid)} ({seen[cid].replace('_', ' ')})", seen[cid] == "passed"))
    done = [ok for _, ok in checks if ok is not None]
    a_score = 100.0 * sum(done) / len(done) if done else None
    engine_seen = f"{detected} {inspection.engine_version or ''}".strip() if detected else environment.server
    a_letter = Judgement.of(
        "A",
        "Architecture and software",
        a_score,
        [
            Evidence(label="engine (declared)", value=declared, unit=""),
            Evidence(label="engine (detected)", value=engine_seen, unit=""),
            Evidence(label="quantization (declared)", value=endpoint.quantization, unit=""),
            *server_evidence(ordered, judged),
            Evidence(label="hardware (declared)", value=endpoint.hardware, unit=""),
            *(Evidence(label=label, value=ok, unit="check") for label, ok in checks),
            Evidence(
                label="stop sequences, error codes, prefix-cache speed-up",
                value=None,
                unit="not measured yet",
            ),
        ],
        "100 x (checks passed / checks judged): the API behaviour seen under load in this run, the detected "
        "engine against the declared one, and the serving features this profile needs from the conformance "
        "checklist (a feature refused counts as not passed); the declared stack is evidence, not scored.",
        _degraded([at]),
    )

    # R: cost per million tokens at the operating point against the profile's target price.
    cost = point.cost_per_million_tokens if point is not None else None
    target = profile.target_price_per_million or REFERENCE_PRICE
    r_letter = Judgement.of(
        "R",
        "Return on investment",
        log_score(float(target), cost) if cost is not None else None,
        [
            Evidence(label="cost per million tokens at the operating point", value=cost, unit="$"),
            Evidence(
                label="cost per million output tokens there",
                value=point.cost_per_million_output_tokens if point else None,
                unit="$",
            ),
            Evidence(label="target price", value=float(target), unit="$ per million tokens"),
            Evidence(
                label=f"tokens per joule ({(point.energy_source if point else None) or 'no power known'})",
                value=point.tokens_per_joule if point else None,
                unit="tokens/J",
            ),
        ],
        f"50 + 25 x log2(target / cost) (clipped 0..100): at the target price 50, at half of it 75. Target: the profile's "
        f"target price, else ${REFERENCE_PRICE:g} per million tokens. No price declared: not measured.",
        _degraded(point_steps),
    )

    t_letter = technology_letter(inspection)
    reasons = _degraded([lightest, *point_steps, at])
    return Scorecard(
        operating_point=(
            point.model_copy(update={"degraded": _degraded(point_steps)}) if point is not None else None
        ),
        # Scores and cost are computed from every step as measured; when a step they rest on was
        # measured with a degraded client, they are marked (here, per letter, on every page).
        quality=CardQuality(degraded=bool(reasons), reasons=reasons),
        capacity=capacity,
        capacity_at_least=at_least,
        slo=slo,
        letters=[s_letter, m_letter, a_letter, r_letter, t_letter],
    )


# Engines whose source is open (the simulator is smartbench's own, Apache-2.0). NIM is a
# licensed container; an unknown engine cannot be credited.
OPEN_SOURCE = frozenset({"vllm", "sglang", "tensorrt-llm", "dynamo", "tgi", "llama.cpp", "ollama", "transformers",
                         "smartbench-simulator"})  # fmt: skip


def server_evidence(ordered: Sequence[StepSummary], slo: SLO) -> list[Evidence]:
    """What the server's own metrics showed across the sweep (A's evidence, not scored): where
    its queue starts to grow, against where the SLO breaks, and its KV-cache at the top."""
    measured = [(s, s.telemetry) for s in ordered if s.telemetry is not None]
    if not measured:
        return [Evidence(label="server telemetry (metrics URL)", value=None, unit="not measured")]
    queued = next((s for s, t in measured if (t.waiting_mean or 0) >= 0.5), None)
    breaks = next((s for s in ordered if not s.meets(slo)), None)
    if queued is None:
        queue = "none at any load"
    else:
        where = "before the SLO breaks" if queued is not breaks and queued.meets(slo) else "as the SLO breaks"
        queue = f"from {queued.load_label} ({where})"
    top = measured[-1][1]
    kv = top.kv_usage_max
    return [
        Evidence(label="server queue (its own gauge)", value=queue, unit=""),
        Evidence(label="KV-cache at the heaviest step (max)", value=None if kv is None else round(100 * kv, 1), unit="%"),
        Evidence(label="server TTFT at the heaviest step (its histogram)", value=top.server_ttft_ms, unit="ms"),
    ]  # fmt: skip


def serving_checks(profile: ProfileSnapshot) -> tuple[str, ...]:
    """The conformance checks that a profile's serving depends on (A letter)."""
    ids: tuple[str, ...] = ("streaming", "usage_in_stream", "max_tokens", "stop", "error_bad_model",
                            "error_bad_request")  # fmt: skip
    if profile.name == "reasoning" or (profile.output_tokens_mean or 0) >= 2048:
        ids += ("reasoning",)
    return ids


def technology_letter(inspection: InspectionRecord) -> Judgement:
    """T: how well the endpoint fits the tools people use, from its latest inspection."""
    checks = inspection.checks
    by_id = {c.id: c.status for c in checks}
    share = conformance(by_id)
    engine = inspection.engine
    ecosystem = {
        "open-source engine": engine in OPEN_SOURCE if engine else None,
        "OpenAI-compatible (chat and /v1/models)": (by_id.get("chat") == "passed" and by_id.get("models") == "passed")
        if checks else None,
        "metrics exposed (Prometheus)": inspection.metrics_exposed if engine else None,
    }  # fmt: skip
    known = [bool(v) for v in ecosystem.values() if v is not None]
    score = None
    if share is not None and known:
        score = 100.0 * (0.7 * share + 0.3 * sum(known) / len(known))
    passed = sum(1 for c in checks if c.status == "passed")
    judged = sum(1 for c in checks if c.status not in UNJUDGED)
    return Judgement.of(
        "T",
        "Technology ecosystem",
        score,
        [
            Evidence(label="conformance (weighted by how widely each feature is used)", value=None if share is None else round(100 * share, 1), unit="%"),
            Evidence(label="checks passed", value=f"{passed} of {judged}" if checks else None, unit=""),
            *(Evidence(label=label, value=value, unit="check") for label, value in ecosystem.items()),
            *(Evidence(label=TITLES.get(c.id, c.id), value=c.status.replace("_", " "), unit="check")
              for c in checks),
        ],
        "100 x (0.7 x weighted share of conformance checks passed + 0.3 x share of ecosystem checks met: open-"
        "source engine, OpenAI-compatible, metrics exposed). Weights: chat, streaming, tool calls 3; usage, "
        "max_tokens, stop, structured output, /v1/models 2; the rest 1 or 0.5. Not observed: left out. No "
        "inspection yet: not measured.",
    )  # fmt: skip
