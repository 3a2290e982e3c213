"""The simulator as an OpenAI-compatible server: shapes, options, errors, metrics."""

from __future__ import annotations

import httpx
import orjson

from app.simulator import Simulator, preset
from app.simulator.server import VOCAB

CHAT = {"model": "sim", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 6}


async def events(client: httpx.AsyncClient, url: str, body: dict) -> list[dict]:
    out = []
    async with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(orjson.loads(line[6:]))
            elif line == "data: [DONE]":
                out.append({"done": True})
    return out


async def test_chat_stream_with_usage_and_continuous_usage() -> None:
    async with Simulator(preset("zero")) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        body = {
            **CHAT,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        got = await events(client, "/chat/completions", body)
    assert got[-1] == {"done": True}
    content = [e for e in got if e.get("choices") and e["choices"][0]["delta"].get("content")]
    assert len(content) == 6
    assert [e["usage"]["completion_tokens"] for e in content] == [1, 2, 3, 4, 5, 6]
    final = got[-2]
    assert final["choices"] == [] and final["usage"]["completion_tokens"] == 6
    assert final["usage"]["prompt_tokens"] == 3 + 4  # words + chat template overhead
    assert got[-3]["choices"][0]["finish_reason"] == "length"


async def test_completions_non_stream_stop_and_min_tokens() -> None:
    async with Simulator(preset("zero")) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        response = await client.post("/completions", json={"model": "sim", "prompt": "hi", "max_tokens": 10})
        assert response.json()["usage"]["completion_tokens"] == 10
        assert response.json()["choices"][0]["text"].split() == list(VOCAB[:10])
        stop = await client.post(
            "/completions", json={"model": "sim", "prompt": "hi", "max_tokens": 10, "stop": [VOCAB[3]]}
        )
        assert (
            stop.json()["usage"]["completion_tokens"] == 3
            and stop.json()["choices"][0]["finish_reason"] == "stop"
        )


async def test_natural_eos_ignore_eos_and_min_tokens() -> None:
    config = preset("zero").with_overrides(natural_output_tokens=4)
    async with Simulator(config) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        base = {"model": "sim", "prompt": "hi", "max_tokens": 12}
        assert (await client.post("/completions", json=base)).json()["usage"]["completion_tokens"] == 4
        ignore = await client.post("/completions", json={**base, "ignore_eos": True})
        assert ignore.json()["usage"]["completion_tokens"] == 12
        at_least = await client.post("/completions", json={**base, "min_tokens": 8})
        assert at_least.json()["usage"]["completion_tokens"] == 8


async def test_openai_shaped_errors() -> None:
    config = preset("zero").with_overrides(api_key="sk-sim")
    async with Simulator(config) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        auth = {"Authorization": "Bearer sk-sim"}
        wrong = await client.post("/chat/completions", json=CHAT, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        unknown = await client.post("/chat/completions", json={**CHAT, "model": "gpt-x"}, headers=auth)
        assert unknown.status_code == 404 and "does not exist" in unknown.json()["error"]["message"]
        bad = await client.post("/chat/completions", json={**CHAT, "max_tokens": -1}, headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        garbage = await client.post("/chat/completions", content=b"{nope", headers=auth)
        assert garbage.status_code == 400


async def test_queue_limit_answers_429_with_retry_after() -> None:
    config = preset("h100-fp8-70b").with_overrides(queue_limit=0)
    async with Simulator(config) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        response = await client.post("/chat/completions", json=CHAT)
    assert response.status_code == 429 and response.headers["retry-after"] == "1"


async def test_identifies_itself_and_serves_vllm_metrics() -> None:
    async with Simulator(preset("h100-fp8-70b")) as sim, httpx.AsyncClient() as client:
        root = sim.base_url.removesuffix("/v1")
        version = (await client.get(root + "/version")).json()
        assert version["engine"] == "smartbench-simulator"
        models = (await client.get(sim.base_url + "/models")).json()
        assert models["data"][0]["id"] == "sim"
        await client.post(
            sim.base_url + "/completions", json={"model": "sim", "prompt": "a b", "max_tokens": 3}
        )
        text = (await client.get(root + "/metrics")).text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
                 "vllm:generation_tokens_total", "DCGM_FI_DEV_POWER_USAGE"):  # fmt: skip
        assert name in text
    assert 'vllm:generation_tokens_total{model_name="sim"} 3' in text
