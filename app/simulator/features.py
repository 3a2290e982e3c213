"""The rest of the OpenAI surface, answered at once (no timing model): `n`, `logprobs`, `seed`,
tool calls, structured output, reasoning, and a simulator told to break chosen features
(`SimConfig.broken`) or to rate-limit (`SimConfig.limit_every`). Conformance checks use a few
small requests, so this path favours plainness over speed; load goes through the timed path.

Breakable features (the names of app.probe.checklist's checks): chat, completions, streaming,
usage_in_stream, per_chunk_usage, max_tokens, stop, n, logprobs, tool_calls, structured_output
(and structured_rambles: valid so far, but cut by max_tokens inside the JSON),
reasoning, seed, models, error_bad_model, error_bad_request, rate_limit."""

from __future__ import annotations

import random
from typing import Any, NamedTuple

import orjson

from app.vocab import WORDS

FEATURE_FIELDS = ("tools", "response_format", "logprobs", "n", "seed", "top_logprobs")


# Broken features that plain load requests also meet: those send every request down this path
# (a broken server is broken under load too). The others only change the requests that ask.
HOT_BREAKS = frozenset({"chat", "completions", "streaming", "usage_in_stream", "per_chunk_usage", "max_tokens",
                        "reasoning"})  # fmt: skip


def wants_feature_path(req: dict[str, object], broken: frozenset[str]) -> bool:
    if any(req.get(name) not in (None, False, 1) for name in FEATURE_FIELDS):
        return True
    return bool(broken & HOT_BREAKS) or ("stop" in broken and bool(req.get("stop")))


def sample_for(schema: Any, depth: int = 0) -> Any:
    """A value that validates against a (simple) JSON schema: the structured-output answer."""
    if not isinstance(schema, dict) or depth > 5:
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: sample_for(sub, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [sample_for(schema.get("items") or {}, depth + 1)]
    return {"string": "Paris", "integer": 3, "number": 21.5, "boolean": True, "null": None}.get(
        str(kind), "x"
    )


class _ToolCall(NamedTuple):
    id: str
    name: str
    arguments: str  # JSON text

    def json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


class _Choice(NamedTuple):
    position: int
    text: str
    reasoning: str
    tool_call: _ToolCall | None
    reason: str
    words: int


class Answer:
    """What one request gets: status, content type, extra header lines, body."""

    def __init__(
        self, status: int, body: bytes, content_type: bytes = b"application/json", extra: bytes = b""
    ) -> None:
        self.status, self.body, self.content_type, self.extra = status, body, content_type, extra


def answer(
    req: dict[str, object], *, chat: bool, model: str, broken: frozenset[str], reasoning: int, counter: int,
    prompt_tokens: int, max_tokens: int, stops: set[str], stream: bool, include_usage: bool, continuous: bool,
    created: int, request_id: str,
) -> Answer:  # fmt: skip
    if (chat and "chat" in broken) or (not chat and "completions" in broken):
        return Answer(200, orjson.dumps({"id": request_id, "object": "error?", "choices": []}))
    n = req.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= 16:
        return Answer(
            400,
            orjson.dumps(
                {"error": {"message": "'n' must be between 1 and 16", "type": "invalid_request_error"}}
            ),
        )
    if "n" in broken:
        n = 1
    # Which words: fixed at temperature 0, from the seed when one is given, else new each time.
    temperature = req.get("temperature", 1.0)
    seed = req.get("seed")
    if isinstance(seed, int) and "seed" not in broken:
        offset = random.Random(seed).randrange(len(WORDS))
    elif temperature == 0:
        offset = 0
    else:
        offset = (counter * 7919) % len(WORDS)
    produce = max_tokens + 3 if "max_tokens" in broken else max_tokens
    think = min(reasoning, produce - 1) if chat and reasoning else 0  # reasoning counts within max_tokens

    tools = req.get("tools") if chat else None
    tool_choice = req.get("tool_choice", "auto")
    call_tool = bool(tools) and tool_choice != "none" and "tool_calls" not in broken
    fmt = req.get("response_format") if chat else None
    structured = isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")

    choices: list[_Choice] = []
    for index in range(n):
        words = [WORDS[(offset + index * 13 + i) % len(WORDS)] for i in range(produce - think)]
        reason = "length"
        if stops and "stop" not in broken:
            for i, word in enumerate(words):
                if word in stops:
                    words, reason = words[:i], "stop"
                    break
        text = "".join(" " + w for w in words)
        reasoning_text = "".join(" " + WORDS[(offset + 500 + i) % len(WORDS)] for i in range(think))
        tool_call: _ToolCall | None = None
        if call_tool:
            assert isinstance(tools, list)
            chosen = tools[0]
            if isinstance(tool_choice, dict):
                wanted = (tool_choice.get("function") or {}).get("name")
                chosen = next((t for t in tools if (t.get("function") or {}).get("name") == wanted), chosen)
            function = chosen.get("function") or {}
            arguments = orjson.dumps(sample_for(function.get("parameters") or {"type": "object"})).decode()
            tool_call = _ToolCall(
                f"call_{request_id[-8:]}_{index}", str(function.get("name", "tool")), arguments
            )
            text, reason = "", "tool_calls"
        elif structured:
            assert isinstance(fmt, dict)
            schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else {}
            text = (
                "{not json"
                if "structured_output" in broken
                else orjson.dumps(sample_for(schema or {"type": "object"})).decode()
            )
            reason = "stop"
            if "structured_rambles" in broken:  # a small model inside its JSON until max_tokens cuts it
                text, reason = '{"city": "' + " ".join(words), "length"
        if think and "reasoning" in broken:
            text, reasoning_text = f"<think>{reasoning_text}</think>{text}", ""
        choices.append(_Choice(index, text, reasoning_text, tool_call, reason, len(words)))

    completion = sum(c.words for c in choices) + (think if "reasoning" not in broken else 0)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion,
             "completion_tokens_details": {"reasoning_tokens": think if "reasoning" not in broken else 0}}  # fmt: skip
    want_logprobs = bool(req.get("logprobs")) and "logprobs" not in broken
    obj_kind = "chat.completion" if chat else "text_completion"

    if not stream or "streaming" in broken:
        out_choices = []
        for index, text, reasoning_text, tool_call, reason, _ in choices:
            if chat:
                message: dict[str, object] = {
                    "role": "assistant",
                    "content": text if tool_call is None else None,
                }
                if reasoning_text:
                    message["reasoning_content"] = reasoning_text
                if tool_call is not None:
                    message["tool_calls"] = [tool_call.json()]
                choice: dict[str, object] = {"index": index, "message": message, "finish_reason": reason}
                if want_logprobs:
                    choice["logprobs"] = {"content": [_logprob(" " + w) for w in text.split()]}
            else:
                choice = {"index": index, "text": text, "finish_reason": reason}
                if want_logprobs:
                    tokens = [" " + w for w in text.split()]
                    choice["logprobs"] = {"tokens": tokens, "token_logprobs": [-0.25] * len(tokens)}
            out_choices.append(choice)
        body = {"id": request_id, "object": obj_kind, "created": created, "model": model,
                "choices": out_choices, "usage": usage}  # fmt: skip
        return Answer(200, orjson.dumps(body))

    events: list[bytes] = []
    chunk_kind = "chat.completion.chunk" if chat else "text_completion"
    produced = 0

    def event(choice: dict[str, object], with_usage: bool) -> None:
        obj: dict[str, object] = {"id": request_id, "object": chunk_kind, "created": created, "model": model,
                               "choices": [choice]}  # fmt: skip
        if with_usage:
            stuck = "per_chunk_usage" in broken
            obj["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": 0 if stuck else produced,
                            "total_tokens": prompt_tokens + (0 if stuck else produced)}  # fmt: skip
        events.append(b"data: " + orjson.dumps(obj) + b"\n\n")

    for index, text, reasoning_text, tool_call, reason, _count in choices:
        if chat:
            event(
                {"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}, False
            )
        for word in reasoning_text.split():
            produced += 1
            event(
                {"index": index, "delta": {"reasoning_content": " " + word}, "finish_reason": None},
                continuous,
            )
        if tool_call is not None:
            args = tool_call.arguments
            head = {
                "index": 0,
                "id": tool_call.id,
                "type": "function",
                "function": {"name": tool_call.name, "arguments": ""},
            }
            event({"index": index, "delta": {"tool_calls": [head]}, "finish_reason": None}, False)
            for i in range(0, len(args), 8):
                part = {"index": 0, "function": {"arguments": args[i : i + 8]}}
                event({"index": index, "delta": {"tool_calls": [part]}, "finish_reason": None}, False)
        else:
            pieces = [text] if text.startswith(("{", "<think>")) else [" " + w for w in text.split()]
            for piece in pieces:
                produced += 1
                if chat:
                    choice = {"index": index, "delta": {"content": piece}, "finish_reason": None}
                    if want_logprobs:
                        choice["logprobs"] = {"content": [_logprob(piece)]}
                else:
                    choice = {"index": index, "text": piece, "finish_reason": None}
                    if want_logprobs:
                        choice["logprobs"] = {"tokens": [piece], "token_logprobs": [-0.25]}
                event(choice, continuous)
        done = (
            {"index": index, "delta": {}, "finish_reason": reason}
            if chat
            else {"index": index, "text": "", "finish_reason": reason}
        )
        event(done, False)
    if include_usage and "usage_in_stream" not in broken:
        events.append(b"data: " + orjson.dumps({"id": request_id, "object": chunk_kind, "created": created,
                                                "model": model, "choices": [], "usage": usage}) + b"\n\n")  # fmt: skip
    events.append(b"data: [DONE]\n\n")
    return Answer(200, b"".join(events), b"text/event-stream")


def _logprob(token: str) -> dict[str, object]:
    return {"token": token, "logprob": -0.25, "bytes": list(token.encode()),
            "top_logprobs": [{"token": token, "logprob": -0.25, "bytes": list(token.encode())}]}  # fmt: skip
