"""The engines the simulator can play: what each real server exposes besides the OpenAI routes,
so that engine detection is tested against a server that looks like the real one.

Sources (read, not copied): vLLM's OpenAI server (`GET /version`, `/v1/models` entries with
`root` and `max_model_len`, Prometheus names `vllm:*`); SGLang's HTTP server (`/get_model_info`,
`/get_server_info`, `sglang:*` metrics); TensorRT-LLM's `trtllm-serve` (`owned_by:
"tensorrt_llm"`, Prometheus text at `/prometheus/metrics` with `trtllm_*` names); NVIDIA NIM for
LLMs (docs.nvidia.com/nim/large-language-models, API reference: `/v1/health/ready`,
`/v1/health/live`, `/v1/metadata`, `/v1/version` with `release` and `api`); NVIDIA Dynamo's
frontend (`dynamo_frontend_*` metrics, e.g. `dynamo_frontend_inflight_requests`); Hugging Face
TGI (`GET /info` with `model_id`, `version`, `router: "text-generation-router"`; `tgi_*`
metrics; errors as `{"error", "error_type"}`); llama.cpp's server (`GET /props` with
`build_info`, `/health` `{"status": "ok"}`, `owned_by: "llamacpp"`, `llamacpp:*` metrics);
Ollama (`GET /api/version`, `GET /` "Ollama is running", `owned_by: "library"`); Hugging Face
`transformers serve` (FastAPI: `/health` `{"status": "ok"}`, `/load_model`, `/v1/responses`,
an `X-Request-ID` header, local models `owned_by: "local"`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Persona:
    name: str
    server_header: str | None = None
    owned_by: str = "smartbench"
    model_card_extra: dict[str, object] = field(default_factory=dict)
    # (method, path) -> (status, content type, body); "{version}" and "{model}" are filled in
    routes: dict[tuple[str, str], tuple[int, str, str]] = field(default_factory=dict)
    metrics_path: str | None = "/metrics"
    metric_prefix: str = "vllm:"  # the running/waiting/KV gauges' names follow the engine's
    metric_names: dict[str, str] = field(default_factory=dict)
    error_style: str = "openai"  # openai | tgi | fastapi
    extra_headers: dict[str, str] = field(default_factory=dict)
    # Usage on every chunk (vLLM's continuous_usage_stats): TensorRT-LLM, SGLang and Dynamo
    # accept the option and send none.
    chunk_usage: bool = True


JSON = "application/json"
TEXT = "text/plain"

VLLM_NAMES = {
    "running": "vllm:num_requests_running",
    "waiting": "vllm:num_requests_waiting",
    "kv": "vllm:gpu_cache_usage_perc",
    "prompt": "vllm:prompt_tokens_total",
    "generation": "vllm:generation_tokens_total",
    "success": "vllm:request_success_total",
    "ttft": "vllm:time_to_first_token_seconds",
    "itl": "vllm:time_per_output_token_seconds",
    "preemptions": "vllm:num_preemptions_total",
    "prefix_hits": "vllm:prefix_cache_hits_total",
    "prefix_queries": "vllm:prefix_cache_queries_total",
}

PERSONAS: dict[str, Persona] = {
    "smartbench": Persona(
        "smartbench",
        server_header="smartbench-simulator",
        routes={
            ("GET", "/version"): (200, JSON, '{"version": "{version}", "engine": "smartbench-simulator"}'),
            ("GET", "/health"): (200, TEXT, ""),
        },
        metric_names=VLLM_NAMES,
    ),
    "vllm": Persona(
        "vllm",
        server_header="uvicorn",
        owned_by="vllm",
        model_card_extra={"root": "{model}", "parent": None, "max_model_len": 131072},
        routes={
            ("GET", "/version"): (200, JSON, '{"version": "{version}"}'),
            ("GET", "/health"): (200, TEXT, ""),
        },
        metric_names=VLLM_NAMES,
    ),
    "sglang": Persona(
        "sglang",
        chunk_usage=False,
        server_header="uvicorn",
        owned_by="sglang",
        model_card_extra={"root": "{model}", "max_model_len": 131072},
        routes={
            ("GET", "/get_model_info"): (200, JSON, '{"model_path": "{model}", "is_generation": true}'),
            ("GET", "/get_server_info"): (200, JSON, '{"version": "{version}", "model_path": "{model}"}'),
            ("GET", "/health"): (200, TEXT, ""),
        },
        metric_names={
            "running": "sglang:num_running_reqs",
            "waiting": "sglang:num_queue_reqs",
            "kv": "sglang:token_usage",
            "prompt": "sglang:prompt_tokens_total",
            "generation": "sglang:generation_tokens_total",
            "ttft": "sglang:time_to_first_token_seconds",
            "itl": "sglang:inter_token_latency_seconds",
            "prefix_rate": "sglang:cache_hit_rate",
        },
    ),
    "tensorrt-llm": Persona(
        "tensorrt-llm",
        chunk_usage=False,
        server_header="uvicorn",
        owned_by="tensorrt_llm",
        routes={
            ("GET", "/version"): (200, JSON, '{"version": "{version}"}'),
            ("GET", "/health"): (200, TEXT, ""),
        },
        metrics_path="/prometheus/metrics",
        metric_names={
            "success": "trtllm_request_success_total",
            "ttft": "trtllm_time_to_first_token_seconds",
            "itl": "trtllm_time_per_output_token_seconds",
        },
    ),
    "nim": Persona(
        "nim",
        server_header="nginx",
        owned_by="system",
        model_card_extra={"root": "{model}", "max_model_len": 131072},
        routes={
            ("GET", "/v1/health/ready"): (
                200,
                JSON,
                '{"object": "health.response", "message": "Service is ready."}',
            ),
            ("GET", "/v1/health/live"): (
                200,
                JSON,
                '{"object": "health.response", "message": "Service is live."}',
            ),
            ("GET", "/v1/version"): (200, JSON, '{"release": "{version}", "api": "1.0.0"}'),
            ("GET", "/v1/metadata"): (
                200,
                JSON,
                '{"modelInfo": [{"modelUrl": "{model}", "shortName": "{model}"}]}',
            ),
            ("GET", "/version"): (200, JSON, '{"version": "0.10.2"}'),
        },
        metrics_path="/v1/metrics",
        metric_names=VLLM_NAMES,
    ),
    "dynamo": Persona(
        "dynamo",
        chunk_usage=False,
        owned_by="nvidia",
        routes={
            ("GET", "/health"): (
                200,
                JSON,
                '{"status": "healthy", "endpoints": ["dyn://dynamo.backend.generate"]}',
            ),
            ("GET", "/live"): (200, JSON, '{"status": "live"}'),
        },
        metric_names={
            "running": "dynamo_frontend_inflight_requests",
            "waiting": "dynamo_frontend_queued_requests",
            "prompt": "dynamo_frontend_input_sequence_tokens",
            "success": "dynamo_frontend_requests_total",
            "ttft": "dynamo_frontend_time_to_first_token_seconds",
            "itl": "dynamo_frontend_inter_token_latency_seconds",
            "kv": "dynamo_component_kvstats_gpu_cache_usage_percent",
            "prefix_rate": "dynamo_component_kvstats_gpu_prefix_cache_hit_rate",
        },
    ),
    "tgi": Persona(
        "tgi",
        owned_by="{model}",
        routes={
            ("GET", "/info"): (
                200,
                JSON,
                '{"model_id": "{model}", "version": "{version}", '
                '"router": "text-generation-router", "max_input_tokens": 8191}',
            ),
            ("GET", "/health"): (200, TEXT, ""),
        },
        metric_names={
            "running": "tgi_batch_current_size",
            "waiting": "tgi_queue_size",
            "success": "tgi_request_success",
            "generation": "tgi_request_generated_tokens_sum",
            "ttft": "tgi_request_queue_duration",
            "itl": "tgi_request_mean_time_per_token_duration",
        },
        error_style="tgi",
    ),
    "llama.cpp": Persona(
        "llama.cpp",
        owned_by="llamacpp",
        model_card_extra={"meta": {"n_ctx_train": 131072, "n_vocab": 128256}},
        routes={
            ("GET", "/props"): (
                200,
                JSON,
                '{"build_info": "b{version}", "model_path": "{model}.gguf", "total_slots": 4}',
            ),
            ("GET", "/health"): (200, JSON, '{"status": "ok"}'),
        },
        metric_names={
            "running": "llamacpp:requests_processing",
            "waiting": "llamacpp:requests_deferred",
            "prompt": "llamacpp:prompt_tokens_total",
            "generation": "llamacpp:tokens_predicted_total",
            "kv": "llamacpp:kv_cache_usage_ratio",
        },
    ),
    "ollama": Persona(
        "ollama",
        owned_by="library",
        routes={
            ("GET", "/api/version"): (200, JSON, '{"version": "{version}"}'),
            ("GET", "/"): (200, TEXT, "Ollama is running"),
        },
        metrics_path=None,
    ),
    "transformers": Persona(
        "transformers",
        server_header="uvicorn",
        owned_by="local",
        routes={
            ("GET", "/health"): (200, JSON, '{"status": "ok"}'),
            ("GET", "/openapi.json"): (
                200,
                JSON,
                '{"openapi": "3.1.0", "info": {"title": "FastAPI"}, "paths": '
                '{"/v1/chat/completions": {}, "/v1/responses": {}, '
                '"/load_model": {}, "/reset": {}, "/v1/models": {}, "/health": {}}}',
            ),
        },
        metrics_path=None,
        error_style="fastapi",
        extra_headers={"x-request-id": "sim"},
    ),
}


# A hosted API: OpenAI's routes only, nothing about the engine behind it, no metrics.
PERSONAS["hosted"] = Persona("hosted", owned_by="organization", metrics_path=None)


def persona(name: str) -> Persona:
    try:
        return PERSONAS[name]
    except KeyError:
        raise ValueError(f"unknown engine to play {name!r}; choose one of: {', '.join(PERSONAS)}") from None
