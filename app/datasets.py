"""Datasets and traces: files of real traffic a workload replays (DESIGN.md, "Workloads").

Four formats, recognised from the content:
- `mooncake`: JSON lines `{"timestamp": ms, "input_length", "output_length", "hash_ids": [...]}`
  (Mooncake's released traces): equal hash ids are equal 512-token blocks, so the replayed
  prompts share prefixes exactly as the trace says;
- `azure`: CSV with `TIMESTAMP`, `ContextTokens`, `GeneratedTokens` (the Azure LLM inference
  trace's layout; timestamps as dates or seconds);
- `sharegpt`: a JSON list of `{"id", "conversations": [{"from": "human"|"gpt"|"system", "value"}]}`;
- `messages`: JSON lines of `{"messages": [{"role", "content"}]}` (OpenAI's chat format).
Traces give arrival times and lengths; conversations give the text of each turn. A bad record
is refused with the file, line and field, and nothing of the file is kept. Pure: no I/O beyond
the bytes given, no database."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import zlib
from datetime import datetime
from typing import Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from app.summary import Histogram
from app.vocab import WORDS
from app.workloads import TRACE_BLOCK_TOKENS

Format = Literal["mooncake", "azure", "sharegpt", "messages"]
FORMATS: tuple[str, ...] = Format.__args__  # type: ignore[attr-defined]
TRACE_FORMATS = ("mooncake", "azure")
MAX_RECORDS = 1_000_000
MAX_TURNS = 1_000
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
         "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system"}  # fmt: skip


class DatasetError(ValueError):
    """A record that cannot be used: where it is and what is wrong."""

    def __init__(self, file: str, line: int | None, field: str | None, message: str) -> None:
        self.file, self.line, self.field, self.message = file, line, field, message
        where = file + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class TraceRequest(_Record):
    at_ms: float  # arrival, from the trace's first request
    input_tokens: int
    output_tokens: int
    hash_ids: list[int] | None = None  # Mooncake: the prompt's 512-token blocks


class Turn(_Record):
    role: Literal["system", "user", "assistant"]
    text: str


class Conversation(_Record):
    id: str | None = None
    turns: list[Turn]

    @property
    def user_turns(self) -> int:
        return sum(1 for t in self.turns if t.role == "user")


class DatasetContent(_Record):
    """A dataset as smartbench keeps it: one of the two lists, normalised."""

    format: Format
    requests: list[TraceRequest] = Field(default_factory=list)
    conversations: list[Conversation] = Field(default_factory=list)

    @property
    def is_trace(self) -> bool:
        return self.format in TRACE_FORMATS

    @property
    def count(self) -> int:
        return len(self.requests) if self.is_trace else len(self.conversations)

    def pack(self) -> bytes:
        return zlib.compress(orjson.dumps(self.model_dump(mode="json", exclude_defaults=True)), 6)

    @classmethod
    def unpack(cls, blob: bytes) -> DatasetContent:
        return cls.model_validate(orjson.loads(zlib.decompress(blob)))


class LengthStats(_Record):
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    max: float | None = None
    histogram: Histogram = Field(default_factory=Histogram)

    @classmethod
    def of(cls, values: list[float]) -> LengthStats:
        if not values:
            return cls()
        arr = np.asarray(values, dtype=float)
        p50, p90 = np.percentile(arr, [50, 90])
        return cls(
            mean=float(arr.mean()),
            p50=float(p50),
            p90=float(p90),
            max=float(arr.max()),
            histogram=Histogram.of(values),
        )


class DatasetStats(_Record):
    """What a dataset holds, shown where it is listed and on the profiles that use it.
    Traces count tokens; conversations count words (about a token each; the probe sizes
    answers in the endpoint's own tokens)."""

    format: Format
    records: int
    unit: Literal["tokens", "words"]
    input: LengthStats
    output: LengthStats
    prefix_share: float | None = None  # share of prompt tokens a prefix cache could serve
    turns_mean: float | None = None  # conversations: user turns per conversation
    turns_max: int | None = None
    duration_s: float | None = None  # traces: first to last arrival
    rate_per_s: float | None = None


# -- parsing ---------------------------------------------------------------------------------------


def detect_format(data: bytes) -> Format | None:
    head = data.lstrip()[:4096]
    if head.startswith(b"["):
        return "sharegpt"
    if head.startswith(b"{"):
        first = head.split(b"\n", 1)[0]
        if b'"messages"' in first:
            return "messages"
        if b'"timestamp"' in first or b'"input_length"' in first:
            return "mooncake"
        return None
    if b"," in head.split(b"\n", 1)[0] and b"timestamp" in head.split(b"\n", 1)[0].lower():
        return "azure"
    return None


def parse(data: bytes, file: str, fmt: str | None = None) -> DatasetContent:
    """The file's records, normalised; DatasetError at the first bad one."""
    if fmt is None or fmt == "auto":
        fmt = detect_format(data)
        if fmt is None:
            raise DatasetError(file, 1, None, f"not a dataset smartbench reads ({', '.join(FORMATS)})")
    if fmt not in FORMATS:
        raise DatasetError(file, None, "format", f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(file, line, None, "not UTF-8 text") from None
    if fmt == "mooncake":
        content = DatasetContent(format="mooncake", requests=_mooncake(text, file))
    elif fmt == "azure":
        content = DatasetContent(format="azure", requests=_azure(text, file))
    elif fmt == "sharegpt":
        content = DatasetContent(format="sharegpt", conversations=_sharegpt(text, file))
    else:
        content = DatasetContent(format="messages", conversations=_messages(text, file))
    if not content.count:
        raise DatasetError(file, None, None, "no records")
    return content


def _json_lines(text: str, file: str) -> list[tuple[int, dict[str, object]]]:
    out: list[tuple[int, dict[str, object]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DatasetError(file, number, None, f"not JSON ({exc.args[0].split(':')[0]})") from None
        if not isinstance(obj, dict):
            raise DatasetError(file, number, None, "each line must be a JSON object")
        out.append((number, obj))
        if len(out) > MAX_RECORDS:
            raise DatasetError(file, number, None, f"more than {MAX_RECORDS} records")
    return out


def _whole(obj: dict[str, object], key: str, file: str, line: int, *, low: int = 1) -> int:
    value = obj.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DatasetError(file, line, key, "missing" if value is None else "must be a whole number")
    if value < low:
        raise DatasetError(file, line, key, f"must be at least {low}")
    return value


def _mooncake(text: str, file: str) -> list[TraceRequest]:
    requests: list[TraceRequest] = []
    last = -math.inf
    for line, obj in _json_lines(text, file):
        at = obj.get("timestamp")
        if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at) or at < 0:
            raise DatasetError(file, line, "timestamp", "must be milliseconds (a number >= 0)")
        if at < last:
            raise DatasetError(
                file, line, "timestamp", "earlier than the line before (a trace is in time order)"
            )
        last = at
        isl = _whole(obj, "input_length", file, line)
        osl = _whole(obj, "output_length", file, line)
        ids = obj.get("hash_ids")
        if ids is not None:
            if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids
            ):
                raise DatasetError(file, line, "hash_ids", "must be a list of whole numbers")
            if len(ids) * TRACE_BLOCK_TOKENS < isl:
                raise DatasetError(
                    file, line, "hash_ids",
                    f"{len(ids)} blocks of {TRACE_BLOCK_TOKENS} tokens cannot hold input_length {isl}",
                )  # fmt: skip
        requests.append(TraceRequest(at_ms=float(at), input_tokens=isl, output_tokens=osl, hash_ids=ids))
    first = requests[0].at_ms if requests else 0.0
    return [r.model_copy(update={"at_ms": r.at_ms - first}) for r in requests]


def _azure_time(raw: str) -> float:
    """Seconds: a number, or a date and time (fractions beyond microseconds dropped)."""
    raw = raw.strip()
    try:
        return float(raw)
    except ValueError:
        pass
    head, dot, frac = raw.partition(".")
    fixed = head + (dot + frac[:6] if dot else "")
    return datetime.fromisoformat(fixed).timestamp()


def _azure(text: str, file: str) -> list[TraceRequest]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return []
    columns = {
        "timestamp": "TIMESTAMP",
        "contexttokens": "ContextTokens",
        "generatedtokens": "GeneratedTokens",
    }
    for key, name in columns.items():
        if key not in header:
            raise DatasetError(file, 1, name, "missing column (TIMESTAMP, ContextTokens, GeneratedTokens)")
    at_i, in_i, out_i = (header.index(k) for k in columns)
    requests: list[TraceRequest] = []
    first: float | None = None
    last = -math.inf
    for line, row in enumerate(reader, 2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise DatasetError(file, line, None, f"{len(row)} columns, the header has {len(header)}")
        try:
            at = _azure_time(row[at_i])
        except ValueError:
            raise DatasetError(file, line, "TIMESTAMP", f"{row[at_i]!r} is not a time") from None
        if at < last:
            raise DatasetError(
                file, line, "TIMESTAMP", "earlier than the line before (a trace is in time order)"
            )
        last = at
        values = []
        for index, name in ((in_i, "ContextTokens"), (out_i, "GeneratedTokens")):
            try:
                value = int(float(row[index]))
            except ValueError:
                raise DatasetError(file, line, name, f"{row[index]!r} is not a whole number") from None
            if value < 1:
                raise DatasetError(file, line, name, "must be at least 1")
            values.append(value)
        first = at if first is None else first
        requests.append(
            TraceRequest(at_ms=(at - first) * 1000.0, input_tokens=values[0], output_tokens=values[1])
        )
        if len(requests) > MAX_RECORDS:
            raise DatasetError(file, line, None, f"more than {MAX_RECORDS} records")
    return requests


def _array_items(text: str, file: str) -> list[tuple[int, object]]:
    """A top-level JSON list's items with the line each starts on."""
    decoder = json.JSONDecoder()
    items: list[tuple[int, object]] = []
    i = len(text) - len(text.lstrip())
    if not text.startswith("[", i):
        raise DatasetError(file, 1, None, "a ShareGPT file is a JSON list")
    i += 1
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i < len(text) and text[i] == "]":
            return items
        line = text.count("\n", 0, i) + 1
        try:
            item, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise DatasetError(file, exc.lineno, None, f"not JSON ({exc.msg})") from None
        items.append((line, item))
        if len(items) > MAX_RECORDS:
            raise DatasetError(file, line, None, f"more than {MAX_RECORDS} records")
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i < len(text) and text[i] == ",":
            i += 1
        elif not (i < len(text) and text[i] == "]"):
            raise DatasetError(file, text.count("\n", 0, i) + 1, None, "not JSON (expected ',' or ']')")


def _turns(raw: object, file: str, line: int, key: str, role_key: str, text_key: str) -> list[Turn]:
    if not isinstance(raw, list) or not raw:
        raise DatasetError(file, line, key, "must be a non-empty list")
    if len(raw) > MAX_TURNS:
        raise DatasetError(file, line, key, f"more than {MAX_TURNS} turns")
    turns: list[Turn] = []
    for n, item in enumerate(raw):
        where = f"{key}[{n}]"
        if not isinstance(item, dict):
            raise DatasetError(file, line, where, "must be an object")
        role = ROLES.get(str(item.get(role_key, "")).lower())
        if role is None:
            raise DatasetError(
                file, line, f"{where}.{role_key}", f"{item.get(role_key)!r} is not a known speaker"
            )
        value = item.get(text_key)
        if isinstance(value, list):  # OpenAI content parts
            value = " ".join(str(p.get("text", "")) for p in value if isinstance(p, dict))
        if not isinstance(value, str):
            raise DatasetError(file, line, f"{where}.{text_key}", "must be text")
        turns.append(Turn(role=role, text=value))
    if not any(t.role == "user" for t in turns):
        raise DatasetError(file, line, key, "holds no user turn")
    return turns


def _sharegpt(text: str, file: str) -> list[Conversation]:
    out: list[Conversation] = []
    for line, item in _array_items(text, file):
        if not isinstance(item, dict):
            raise DatasetError(file, line, None, "each item must be an object")
        turns = _turns(item.get("conversations"), file, line, "conversations", "from", "value")
        ident = item.get("id")
        out.append(Conversation(id=None if ident is None else str(ident), turns=turns))
    return out


def _messages(text: str, file: str) -> list[Conversation]:
    out: list[Conversation] = []
    for line, obj in _json_lines(text, file):
        turns = _turns(obj.get("messages"), file, line, "messages", "role", "content")
        ident = obj.get("id")
        out.append(Conversation(id=None if ident is None else str(ident), turns=turns))
    return out


# -- statistics ------------------------------------------------------------------------------------


def stats(content: DatasetContent) -> DatasetStats:
    if content.is_trace:
        requests = content.requests
        seen: set[int] = set()
        shared = total = 0
        for r in requests:
            total += r.input_tokens
            for n, block in enumerate(r.hash_ids or []):
                size = min(TRACE_BLOCK_TOKENS, r.input_tokens - n * TRACE_BLOCK_TOKENS)
                if size <= 0:
                    break
                if block in seen:
                    shared += size
                else:
                    seen.add(block)
        span = (requests[-1].at_ms - requests[0].at_ms) / 1000.0 if len(requests) > 1 else 0.0
        return DatasetStats(
            format=content.format,
            records=len(requests),
            unit="tokens",
            input=LengthStats.of([r.input_tokens for r in requests]),
            output=LengthStats.of([r.output_tokens for r in requests]),
            prefix_share=shared / total if total and any(r.hash_ids for r in requests) else None,
            duration_s=span,
            rate_per_s=(len(requests) - 1) / span if span > 0 else None,
        )
    prompts: list[float] = []
    answers: list[float] = []
    history = total = 0
    for conv in content.conversations:
        context = 0
        for turn in conv.turns:
            words = len(turn.text.split())
            if turn.role == "user":
                prompts.append(words)
                history += context
                total += context + words
            elif turn.role == "assistant":
                answers.append(words)
            context += words
    turns = [c.user_turns for c in content.conversations]
    return DatasetStats(
        format=content.format,
        records=len(content.conversations),
        unit="words",
        input=LengthStats.of(prompts),
        output=LengthStats.of(answers),
        prefix_share=history / total if total else None,
        turns_mean=float(np.mean(turns)) if turns else None,
        turns_max=max(turns) if turns else None,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- built-in sets, generated ----------------------------------------------------------------------

# Published statistics the generated sets follow (the sets are labelled generated wherever shown).
MOONCAKE_SOURCE = (
    "generated by smartbench to follow the published statistics of Mooncake's conversation trace "
    "(Qin et al., FAST 2025; kvcache-ai/Mooncake): 23,608 requests in an hour (6.6 per second, "
    "Poisson here), mean input 7,590 tokens, mean output 182 tokens, prompts in 512-token blocks "
    "whose shared ids are shared prefixes; the sharing here (a few common first blocks, follow-up "
    "requests that extend an earlier prompt) is modelled, its share shown in the statistics"
)
LMSYS_SOURCE = (
    "generated by smartbench to follow the published statistics of LMSYS-Chat-1M (Zheng et al., "
    "2023, table 1): 2.0 user turns per conversation on average, 69.5 tokens per prompt, 214.5 per "
    "response; the text is random words (lengths in words)"
)


def generated_trace(count: int = 2_000, seed: int = 1) -> DatasetContent:
    rng = random.Random(seed)  # noqa: S311 - generated traffic, not a secret
    requests: list[TraceRequest] = []
    at = 0.0
    next_id = 8  # ids 0-7: the shared first blocks (system prompts)
    earlier: list[list[int]] = []
    for _ in range(count):
        at += rng.expovariate(23_608 / 3_600_000)  # per millisecond
        isl = int(min(131_072, max(64, rng.lognormvariate(math.log(7_590) - 0.32, 0.8))))
        osl = int(min(4_096, max(1, rng.lognormvariate(math.log(182) - 0.5, 1.0))))
        blocks = -(-isl // TRACE_BLOCK_TOKENS)
        if earlier and rng.random() < 0.35:  # a follow-up: an earlier prompt, extended
            base = rng.choice(earlier[-200:])
            ids = base[:blocks]
        else:
            ids = [min(7, int(rng.paretovariate(1.5)) - 1)]
        while len(ids) < blocks:
            ids.append(next_id)
            next_id += 1
        isl = min(isl, len(ids) * TRACE_BLOCK_TOKENS)
        earlier.append(ids)
        requests.append(TraceRequest(at_ms=round(at), input_tokens=isl, output_tokens=osl, hash_ids=ids))
    first = requests[0].at_ms
    return DatasetContent(
        format="mooncake", requests=[r.model_copy(update={"at_ms": r.at_ms - first}) for r in requests]
    )


def generated_conversations(count: int = 500, seed: int = 1) -> DatasetContent:
    rng = random.Random(seed)  # noqa: S311 - generated traffic, not a secret

    def text(mean: float) -> str:
        n = int(min(4_000, max(1, rng.lognormvariate(math.log(mean) - 0.5, 1.0))))
        return " ".join(rng.choices(WORDS, k=n))

    conversations = []
    for n in range(count):
        turns_n = 1
        while rng.random() < 0.5 and turns_n < 20:  # geometric: mean 2.0 turns
            turns_n += 1
        turns: list[Turn] = []
        for _ in range(turns_n):
            turns += [Turn(role="user", text=text(69.5)), Turn(role="assistant", text=text(214.5))]
        conversations.append(Conversation(id=f"gen-{n}", turns=turns))
    return DatasetContent(format="sharegpt", conversations=conversations)


def to_file(content: DatasetContent) -> bytes:
    """The dataset in its own file format (what `smartbench dataset export` writes)."""
    if content.format == "mooncake":
        return b"".join(
            orjson.dumps({"timestamp": int(r.at_ms), "input_length": r.input_tokens, "output_length": r.output_tokens,
                          "hash_ids": r.hash_ids or []}) + b"\n"
            for r in content.requests
        )  # fmt: skip
    if content.format == "azure":
        rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
        rows += [f"{r.at_ms / 1000.0:.6f},{r.input_tokens},{r.output_tokens}" for r in content.requests]
        return ("\n".join(rows) + "\n").encode()
    speaker = {"user": "human", "assistant": "gpt", "system": "system"}
    if content.format == "sharegpt":
        return orjson.dumps(
            [{"id": c.id, "conversations": [{"from": speaker[t.role], "value": t.text} for t in c.turns]}
             for c in content.conversations]
        )  # fmt: skip
    return b"".join(
        orjson.dumps({"messages": [{"role": t.role, "content": t.text} for t in c.turns]}) + b"\n"
        for c in content.conversations
    )
