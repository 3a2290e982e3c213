"""Engine detection: which engine serves an endpoint, from what it exposes (`/version`,
`/v1/version` and `/v1/metadata` (NIM), `/info` (TGI), `/props` (llama.cpp), `/api/version`
(Ollama), `/get_model_info` (SGLang), `/openapi.json` (FastAPI servers), the `/v1/models` card,
the health routes, the `Server` header and the metric names on its Prometheus endpoint). Each
rule that matches adds weight to one engine and is kept as evidence; the heaviest engine wins
when its weight reaches DETECTION_THRESHOLD, else "unknown". Sources for each rule are in
app/simulator/personas.py and the fixtures."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from app.probe.ask import Client, Evidence, Reply, root_of
from app.security.redact import excerpt

DETECTION_THRESHOLD = 5


async def detect(
    client: Client, metrics_url: str | None
) -> tuple[str, str | None, list[Evidence], bool, str | None]:
    root = root_of(client.target.base_url)
    base = client.target.base_url.rstrip("/")
    paths = {
        "version": root + "/version", "v1_version": base + "/version", "metadata": base + "/metadata",
        "ready": base + "/health/ready", "health": root + "/health", "info": root + "/info",
        "props": root + "/props", "ollama": root + "/api/version", "root": root + "/",
        "sglang": root + "/get_model_info", "sglang_server": root + "/get_server_info",
        "openapi": root + "/openapi.json", "models": base + "/models",
        "metrics": metrics_url or root + "/metrics", "trt_metrics": root + "/prometheus/metrics",
        "nim_metrics": base + "/metrics",
    }  # fmt: skip
    replies = dict(zip(paths, await asyncio.gather(*(client.get(u) for u in paths.values())), strict=True))
    ev: list[Evidence] = []
    versions: dict[str, str] = {}

    def ok(key: str) -> Reply | None:
        reply = replies.get(key)
        return reply if reply is not None and reply.status == 200 else None

    def add(engine: str, weight: int, source: str, saw: str) -> None:
        ev.append(Evidence(engine, weight, source, saw[:240]))

    def said(value: object) -> str:
        """What the target said, as an excerpt: shown to editors, masked for viewers."""
        return excerpt(str(value)[:100])

    if (r := ok("v1_version")) and isinstance(j := r.json(), dict) and "release" in j:
        add("nim", 10, "GET /v1/version", f"release {said(j['release'])}, api {said(j.get('api'))}")
        versions["nim"] = str(j["release"])
    if ok("ready"):
        add("nim", 3, "GET /v1/health/ready", "200 (NIM's readiness route)")
    if (r := ok("metadata")) and isinstance(j := r.json(), dict) and "modelInfo" in j:
        add("nim", 5, "GET /v1/metadata", "modelInfo present")
    if (r := ok("info")) and isinstance(j := r.json(), dict) and j.get("router") == "text-generation-router":
        add("tgi", 10, "GET /info", f"router text-generation-router, version {said(j.get('version'))}")
        versions["tgi"] = str(j.get("version"))
    if (r := ok("props")) and isinstance(j := r.json(), dict) and "build_info" in j:
        add("llama.cpp", 10, "GET /props", f"build_info {said(j['build_info'])}")
        versions["llama.cpp"] = str(j["build_info"])
    if (r := ok("ollama")) and isinstance(j := r.json(), dict) and "version" in j:
        add("ollama", 8, "GET /api/version", f"version {said(j['version'])}")
        versions["ollama"] = str(j["version"])
    if (r := ok("root")) and b"Ollama is running" in r.body:
        add("ollama", 4, "GET /", "Ollama is running")
    if (r := ok("sglang")) and isinstance(j := r.json(), dict) and "model_path" in j:
        add("sglang", 6, "GET /get_model_info", f"model_path {said(j['model_path'])}")
    if (r := ok("sglang_server")) and isinstance(j := r.json(), dict) and j.get("version"):
        versions["sglang"] = str(j["version"])
    if (r := ok("openapi")) and isinstance(j := r.json(), dict):
        routes = set((j.get("paths") or {}).keys())
        if {"/load_model", "/v1/responses"} <= routes:
            add(
                "transformers",
                10,
                "GET /openapi.json",
                "routes /load_model and /v1/responses (transformers serve)",
            )
        elif {"/tokenize", "/version"} <= routes:
            add("vllm", 4, "GET /openapi.json", "routes /tokenize and /version (vLLM's OpenAI server)")
    if (
        (r := ok("models"))
        and isinstance(j := r.json(), dict)
        and isinstance(j.get("data"), list)
        and j["data"]
    ):
        card = j["data"][0] if isinstance(j["data"][0], dict) else {}
        owner = str(card.get("owned_by"))
        owners = {"vllm": "vllm", "sglang": "sglang", "tensorrt_llm": "tensorrt-llm", "llamacpp": "llama.cpp",
                  "library": "ollama"}  # fmt: skip
        if owner in owners:
            add(owners[owner], 6 if owner != "library" else 3, "GET /v1/models", f"owned_by {owner}")
        if "max_model_len" in card:
            add(
                "vllm", 1, "GET /v1/models", f"max_model_len {said(card['max_model_len'])} (vLLM-family card)"
            )
    metrics_text = ""
    metrics_from = None
    for key in ("metrics", "nim_metrics", "trt_metrics"):
        if (r := ok(key)) and (b"# TYPE" in r.body or b"# HELP" in r.body):
            metrics_text = r.body.decode("utf-8", "replace")
            metrics_from = paths[key]
            break
    for prefix, engine, weight in (("dynamo_frontend_", "dynamo", 12), ("sglang:", "sglang", 8),
                                   ("trtllm_", "tensorrt-llm", 8), ("tgi_", "tgi", 6), ("llamacpp:", "llama.cpp", 6),
                                   ("vllm:", "vllm", 6)):  # fmt: skip
        if f"\n{prefix}" in "\n" + metrics_text or f"# TYPE {prefix}" in metrics_text:
            add(
                engine,
                weight,
                f"GET {urlsplit(metrics_from or '').path or '/metrics'}",
                f"metric names {prefix}*",
            )
    server = next(
        (r.headers.get("server") for r in replies.values() if r is not None and r.headers.get("server")), None
    )
    if server and server.startswith("smartbench-simulator"):
        add("smartbench-simulator", 10, "Server header", said(server))
        versions["smartbench-simulator"] = server.partition("/")[2] or ""
    if (r := ok("version")) and isinstance(j := r.json(), dict) and "version" in j:
        for engine in ("vllm", "tensorrt-llm", "smartbench-simulator"):
            versions.setdefault(engine, str(j["version"]))
    totals: dict[str, int] = {}
    for item in ev:
        totals[item.engine] = totals.get(item.engine, 0) + item.weight
    engine = max(totals, key=lambda e: totals[e]) if totals else "unknown"
    if totals.get(engine, 0) < DETECTION_THRESHOLD:
        engine = "unknown"
    return engine, versions.get(engine), ev, bool(metrics_text), metrics_from
