"""Simulator configurations and the hardware/model presets.

Batching presets follow a continuous-batching latency model (see engine.py):
    decode step (ms) = base_ms + per_seq_ms x batch + prefill tokens in the step / prefill rate.
Their figures are first-order estimates, not measurements, chosen to land in the range that public
results report for such deployments:
- decode base: the memory-bandwidth roofline (weights read once per step: bytes of weights divided
  by the GPUs' aggregate HBM bandwidth at ~60-70 % efficiency, plus a few ms of scheduling and
  communication overhead);
- per-sequence cost: KV-cache reads and attention per extra sequence;
- prefill rate: dense FLOPs (2 x parameters per token) at ~35-45 % of the GPUs' FP8/FP4 peak;
- max batch and KV budget: HBM left after the weights, divided by the KV bytes per token.
The resulting single-user speeds (~80-140 tokens/s for 70B on 8 GPUs, ~35 tokens/s for 8B on an
L4) and saturated throughputs (~10k and ~30k output tokens/s) are in line with vendor and MLPerf
Inference figures for these classes of hardware; they are for exercising smartbench, not for
buying hardware.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class SimConfig:
    name: str = "fixed"
    model: str = "sim"
    mode: str = "fixed"  # fixed | batching | zero
    # fixed mode: exact delays, no batching
    ttft_ms: float = 100.0
    itl_ms: float = 10.0
    prefill_ms_per_token: float = 0.0  # fixed mode: TTFT adds this per prompt token not cached
    noise: float = 0.0  # fixed mode: sigma of each request's lognormal delay factor (median 1)
    warmup_s: float = 0.0  # fixed mode: requests in the first seconds after the first one are slower
    warmup_factor: float = 3.0  # ... by this factor
    # batching mode
    base_ms: float = 10.0
    per_seq_ms: float = 0.05
    prefill_tokens_per_s: float = 20_000.0
    max_batch: int = 256
    kv_budget_tokens: int = 1_000_000
    queue_limit: int = 4096  # waiting requests beyond this get 429
    # behaviour
    tokens_per_chunk: int = 1
    chunk_usage: bool = True  # honour continuous_usage_stats (TensorRT-LLM, SGLang, Dynamo do not)
    # Refuse fields outside OpenAI's API (ignore_eos, min_tokens, continuous_usage_stats) the way
    # a given server does: "openai" (400), "fastapi" (422, pydantic's detail list), "tgi" (422).
    strict: str | None = None
    reasoning_tokens: int = 0  # sent as reasoning_content before the answer
    error_rate: float = 0.0  # fraction of requests answered 500
    natural_output_tokens: int | None = None  # stop (EOS) after this many unless ignore_eos
    api_key: str | None = None
    seed: int = 0
    # declared hardware, for /metrics power and for the demo's registration
    gpu_model: str | None = None
    gpu_count: int = 1
    watts_per_gpu: float = 700.0
    idle_watts_per_gpu: float = 100.0
    engine_version: str = "0.1.0"
    extra: dict[str, str] = field(default_factory=dict)
    # Which engine to look like (routes, model card, metric names, error shape): personas.py.
    persona: str = "smartbench"
    # Features to get wrong, by the names of the conformance checks (features.py).
    broken: frozenset[str] = frozenset()
    limit_every: int = 0  # answer every n-th completion 429 (a server that rate-limits)
    # Prefix cache (cache.py): capacity in tokens (0: none) and block size; usage then carries
    # prompt_tokens_details.cached_tokens and /metrics the hit and query counters.
    prefix_cache_tokens: int = 1_000_000
    prefix_block_tokens: int = 16
    keep_requests: int = 0  # remember the last n requests' messages (tests check what was sent)

    def with_overrides(self, **changes: object) -> SimConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


PRESETS: dict[str, SimConfig] = {
    # Exact TTFT and inter-token delay, no batching: the ground truth for accuracy tests.
    "fixed": SimConfig(name="fixed", mode="fixed", ttft_ms=100.0, itl_ms=10.0),
    # No delay at all: the simulator streams as fast as it can (load-generator benchmarks).
    "zero": SimConfig(name="zero", mode="zero", ttft_ms=0.0, itl_ms=0.0),
    # 8x H100 SXM, Llama-3.3-70B FP8, tensor parallel 8: ~70 GB weights / (8 x 3.35 TB/s x 0.65)
    # ≈ 4 ms + ~6 ms overhead; 990 TFLOPS FP8 per GPU at 40 % → ~22k prefill tokens/s.
    "h100-fp8-70b": SimConfig(
        name="h100-fp8-70b",
        mode="batching",
        base_ms=10.0,
        per_seq_ms=0.06,
        prefill_tokens_per_s=22_000.0,
        max_batch=256,
        kv_budget_tokens=2_000_000,
        gpu_model="H100 SXM",
        gpu_count=8,
        watts_per_gpu=700.0,
        idle_watts_per_gpu=120.0,
    ),
    # 8x B200, Llama-3.3-70B NVFP4: half the weight bytes, 8 TB/s HBM, ~4.5 PFLOPS dense FP4.
    "b200-nvfp4-70b": SimConfig(
        name="b200-nvfp4-70b",
        mode="batching",
        base_ms=6.0,
        per_seq_ms=0.02,
        prefill_tokens_per_s=70_000.0,
        max_batch=512,
        kv_budget_tokens=6_000_000,
        gpu_model="B200",
        gpu_count=8,
        watts_per_gpu=1000.0,
        idle_watts_per_gpu=150.0,
    ),
    # 1x L4 24 GB, Llama-3.1-8B FP8: 8 GB / 300 GB/s ≈ 27 ms per step; ~120k KV tokens left.
    "l4-8b": SimConfig(
        name="l4-8b",
        mode="batching",
        base_ms=28.0,
        per_seq_ms=0.35,
        prefill_tokens_per_s=4_000.0,
        max_batch=64,
        kv_budget_tokens=120_000,
        gpu_model="L4",
        gpu_count=1,
        watts_per_gpu=72.0,
        idle_watts_per_gpu=16.0,
    ),
}


def preset(name: str) -> SimConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
