"""The OpenAI request surface the simulator understands, and its Prometheus metrics text
(vLLM's metric names plus a DCGM-style power gauge)."""

from __future__ import annotations

from dataclasses import dataclass

from app.simulator.engine import BatchEngine
from app.simulator.state import SimulatorState


def words_to_tokens(text: str) -> int:
    """The simulator's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


@dataclass(frozen=True, slots=True)
class Parsed:
    """A completion request as the simulator understood it."""

    tokens: list[str]  # the prompt's tokens: per chat message four template tokens, then its words
    max_tokens: int
    min_tokens: int
    ignore_eos: bool
    stops: set[str]
    stream: bool
    include_usage: bool
    continuous: bool
    messages: list[dict[str, str]]  # chat: role and text of each message; completions: the prompt

    @property
    def prompt_tokens(self) -> int:
        return len(self.tokens)


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def parse_request(req: dict[str, object], *, chat: bool) -> Parsed | str:
    tokens: list[str] = []
    said: list[dict[str, str]] = []
    if chat:
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty list"
        for message in messages:
            if not isinstance(message, dict) or "role" not in message:
                return "each message needs a 'role'"
            role = str(message["role"])
            text = _text(message.get("content"))
            tokens += (
                "<|start|>",
                role,
                "<|message|>",
                "<|end|>",
            )  # role and separators, as chat templates add
            tokens += text.split()
            said.append({"role": role, "content": text})
    else:
        prompt = req.get("prompt")
        if isinstance(prompt, list):
            prompt = " ".join(str(p) for p in prompt)
        if not isinstance(prompt, str):
            return "'prompt' must be a string"
        tokens = prompt.split()
        said.append({"role": "prompt", "content": prompt})
    max_tokens = req.get("max_completion_tokens", req.get("max_tokens", 16))
    if max_tokens is None:
        max_tokens = 16
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 1_000_000:
        return "'max_tokens' must be an integer between 1 and 1000000"
    min_tokens = req.get("min_tokens", 0) or 0
    if not isinstance(min_tokens, int) or min_tokens < 0 or min_tokens > max_tokens:
        return "'min_tokens' must be an integer between 0 and max_tokens"
    stop = req.get("stop")
    stops: set[str] = set()
    if isinstance(stop, str):
        stops = {stop.strip()}
    elif isinstance(stop, list):
        stops = {str(s).strip() for s in stop}
    elif stop is not None:
        return "'stop' must be a string or a list of strings"
    stream = bool(req.get("stream", False))
    options = req.get("stream_options") or {}
    if not isinstance(options, dict):
        return "'stream_options' must be an object"
    if options and not stream:
        return "'stream_options' needs 'stream': true"
    return Parsed(
        tokens=tokens,
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        ignore_eos=bool(req.get("ignore_eos", False)),
        stops=stops,
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        continuous=bool(options.get("continuous_usage_stats", False)),
        messages=said,
    )


EXTENSIONS = ("ignore_eos", "min_tokens")


def refusal(req: dict[str, object], style: str) -> tuple[int, dict[str, object]] | None:
    """The error a strict server answers to OpenAI-API extensions in `req`, in its own shape."""
    extra = sorted(name for name in EXTENSIONS if name in req)
    options = req.get("stream_options")
    if isinstance(options, dict) and "continuous_usage_stats" in options:
        extra.append("stream_options.continuous_usage_stats")
    if not extra:
        return None
    if style == "fastapi":  # pydantic's extra="forbid", as FastAPI renders it
        detail = [
            {"type": "extra_forbidden", "loc": ["body", *name.split(".")], "msg": "Extra inputs are not permitted",
             "input": True}
            for name in extra
        ]  # fmt: skip
        return 422, {"detail": detail}
    if style == "tgi":  # axum's JSON rejection, as text-generation-inference answers it
        message = f"Failed to deserialize the JSON body into the target type: unknown field `{extra[0].split('.')[-1]}`"
        return 422, {"error": message, "error_type": "validation"}
    message = f"Unrecognized request argument supplied: {extra[0]}"
    return 400, {
        "error": {"message": message, "type": "invalid_request_error", "param": extra[0], "code": None}
    }


def render_metrics(state: SimulatorState) -> str:
    """The engine's gauges and counters in its own names (personas.py), the server's TTFT and
    time-per-token histograms (sum and count), and a DCGM exporter's power gauge and energy
    counter per GPU (the energy is the simulator's integral of its power model)."""
    state.power_tick()
    m = state.metrics
    c = state.config
    engine = state.engine
    running = len(engine.running) if isinstance(engine, BatchEngine) else (engine.running if engine else 0)
    waiting = len(engine.waiting) if isinstance(engine, BatchEngine) else 0
    kv = engine.kv_used / c.kv_budget_tokens if isinstance(engine, BatchEngine) else 0.0
    label = f'model_name="{c.model}"'
    names = state.persona.metric_names  # the engine's own names for the same gauges and counters
    lines: list[str] = []
    for key, kind, value, help_text in (
        ("running", "gauge", running, "Number of requests in model execution batches."),
        ("waiting", "gauge", waiting, "Number of requests waiting to be processed."),
        ("kv", "gauge", f"{kv:.6f}", "KV-cache usage. 1 means 100 percent usage."),
        ("prompt", "counter", m.prompt_tokens_total, "Number of prefill tokens processed."),
        ("generation", "counter", m.generation_tokens_total, "Number of generation tokens processed."),
        ("success", "counter", m.success_total, "Count of successfully processed requests."),
        ("prefix_queries", "counter", state.cache.queries_tokens, "Prefix cache queries, in tokens."),
        ("prefix_hits", "counter", state.cache.hits_tokens, "Prefix cache hits, in tokens."),
        ("prefix_rate", "gauge", f"{state.cache.hit_rate:.6f}", "The prefix cache hit rate."),
    ):
        if key in names:
            lines += [
                f"# HELP {names[key]} {help_text}",
                f"# TYPE {names[key]} {kind}",
                f"{names[key]}{{{label}}} {value}",
            ]
    for key, total, count, help_text in (
        ("ttft", m.ttft_sum_s, m.ttft_count, "Histogram of time to first token in seconds."),
        ("itl", m.itl_sum_s, m.itl_count, "Histogram of time per output token in seconds."),
    ):
        if key in names:
            name = names[key]
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram",
                      f'{name}_bucket{{{label},le="+Inf"}} {count}', f"{name}_sum{{{label}}} {total:.6f}",
                      f"{name}_count{{{label}}} {count}"]  # fmt: skip
    per_gpu_w = m.watts / max(1, c.gpu_count)
    per_gpu_mj = m.energy_j * 1000.0 / max(1, c.gpu_count)
    lines += ["# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).", "# TYPE DCGM_FI_DEV_POWER_USAGE gauge"]
    lines += [f'DCGM_FI_DEV_POWER_USAGE{{gpu="{i}"}} {per_gpu_w:.3f}' for i in range(c.gpu_count)]
    lines += ["# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).",
              "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter"]  # fmt: skip
    lines += [
        f'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="{i}"}} {per_gpu_mj:.3f}' for i in range(c.gpu_count)
    ]
    lag = sorted(state.timeline.lateness_us)
    if lag:
        lines += [
            "# HELP smartbench_sim_timing_error_us How late the simulator emitted timed events (microseconds).",
            "# TYPE smartbench_sim_timing_error_us summary",
            f'smartbench_sim_timing_error_us{{quantile="0.5"}} {lag[len(lag) // 2]:.1f}',
            f'smartbench_sim_timing_error_us{{quantile="0.99"}} {lag[min(len(lag) - 1, int(len(lag) * 0.99))]:.1f}',
            f"smartbench_sim_timing_error_us_count {len(lag)}",
        ]
    return "\n".join(lines) + "\n"
