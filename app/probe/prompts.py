"""Synthetic prompts of a target input length, and request bodies.

Exact with a configured tokenizer (HF `tokenizers` from a local tokenizer.json, or a tiktoken
encoding); otherwise calibrated against the server: two tiny requests of known word counts give
tokens = a x words + b (b is the chat template's overhead), and prompts are sized from that line.
Every prompt starts with a unique prefix so prefix caching cannot flatter the numbers."""

from __future__ import annotations

import bisect
import functools
import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from app.vocab import WORDS


class Tokenizer(Protocol):
    name: str

    def count(self, text: str) -> int: ...

    def token_ends(self, text: str) -> list[int]:
        """Where each token of `text` ends (character offsets), in order."""
        ...


@dataclass
class HFTokenizer:
    name: str
    _tok: Any

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def token_ends(self, text: str) -> list[int]:
        return [end for _, end in self._tok.encode(text, add_special_tokens=False).offsets]


@dataclass
class TiktokenTokenizer:
    name: str
    _enc: Any

    def count(self, text: str) -> int:
        return len(self._enc.encode(text, disallowed_special=()))

    def token_ends(self, text: str) -> list[int]:
        tokens = self._enc.encode(text, disallowed_special=())
        _, starts = self._enc.decode_with_offsets(tokens)
        return [*starts[1:], len(text)] if starts else []


@functools.cache
def _ring() -> list[str]:
    """A fixed sequence of random words that shared texts are cut from."""
    return random.Random(20261203).choices(WORDS, k=RING_WORDS)


RING_WORDS = 1 << 18


def tokens_per_chunk(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    """How many tokens each streamed chunk completed: the whole text is tokenized once (so
    merges across chunk boundaries count as the model made them), and each token belongs to
    the chunk that delivered its last character."""
    bounds: list[int] = []
    end = 0
    for text in texts:
        end += len(text)
        bounds.append(end)
    counts = [0] * len(texts)
    for token_end in tokenizer.token_ends("".join(texts)):
        i = bisect.bisect_left(bounds, token_end)
        counts[min(i, len(counts) - 1)] += 1
    return counts


def load_tokenizer(spec: str) -> Tokenizer:
    """`spec` is a local tokenizer.json (or a directory holding one), or `tiktoken:<encoding>`."""
    if spec.startswith("tiktoken:"):
        try:
            import tiktoken
        except ImportError as exc:
            raise ValueError("tiktoken is not installed: pip install tiktoken") from exc
        name = spec.split(":", 1)[1]
        return TiktokenTokenizer(spec, tiktoken.get_encoding(name))
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ValueError(
            f"no tokenizer at {spec} (give a tokenizer.json, its directory, or tiktoken:<encoding>)"
        )
    try:
        from tokenizers import Tokenizer as HFTok
    except ImportError as exc:
        raise ValueError("HF tokenizers is not installed: pip install tokenizers") from exc
    return HFTokenizer(str(path), HFTok.from_file(str(path)))


@dataclass
class Calibration:
    """Prompt tokens as the server counts them: tokens = slope x words + intercept."""

    slope: float = 1.0
    intercept: float = 0.0
    source: str = "assumed"  # assumed | server | tokenizer

    def words_for(self, tokens: int) -> int:
        return max(1, round((tokens - self.intercept) / max(self.slope, 1e-6)))

    @classmethod
    def from_points(cls, w1: int, t1: int, w2: int, t2: int) -> Calibration:
        if w2 == w1 or t2 <= t1:
            return cls(1.0, float(t1 - w1), "server")
        slope = (t2 - t1) / (w2 - w1)
        return cls(slope, t1 - slope * w1, "server")


class PromptFactory:
    def __init__(
        self, seed: int = 0, tokenizer: Tokenizer | None = None, calibration: Calibration | None = None
    ):
        self.rng = random.Random(seed)
        self.tokenizer = tokenizer
        self.calibration = calibration or Calibration()

    def words(self, n: int, seq: int) -> str:
        head = [f"r{seq}", *self.rng.choices(WORDS, k=3)]  # unique prefix: no prefix-cache hits
        body = self.rng.choices(WORDS, k=max(0, n - len(head)))
        return " ".join((head + body)[: max(1, n)])

    def prompt(self, tokens: int, seq: int) -> str:
        if self.tokenizer is not None:
            return self._exact(tokens, seq)
        return self.words(self.calibration.words_for(tokens), seq)

    def part(self, tokens: int, seq: int) -> str:
        """Unique text of about `tokens` tokens inside a longer prompt (no template overhead)."""
        head = [f"r{seq}", *self.rng.choices(WORDS, k=2)]
        n = self.words_in(tokens)
        return " ".join((head + self.rng.choices(WORDS, k=max(0, n - len(head))))[: max(1, n)])

    def words_in(self, tokens: int) -> int:
        """Words that make about `tokens` tokens in the middle of a prompt."""
        return max(1, round(tokens / max(self.calibration.slope, 1e-6)))

    def shared(self, tokens: int, key: str) -> str:
        """The same text for the same key and length, whoever asks (a shared prefix or block):
        a function of the key alone, so every process and every run with the seed sends it
        alike. Its first word names the key, so texts of two keys differ from their first token;
        the rest is a stretch of a fixed random word ring that the key picks (cheap: a trace
        replay makes thousands of blocks a second)."""
        n = self.words_in(tokens)
        ring = _ring()
        start = zlib.crc32(key.encode()) % len(ring)
        body: list[str] = []
        while len(body) < n - 1:
            body += ring[start : start + (n - 1 - len(body))]
            start = 0
        return " ".join([f"k{zlib.crc32(key.encode()):x}", *body])

    def count(self, text: str) -> int:
        """Tokens of some text, by the tokenizer where there is one, else by the calibration."""
        if self.tokenizer is not None:
            return self.tokenizer.count(text)
        return max(1, round(len(text.split()) * self.calibration.slope))

    def _exact(self, tokens: int, seq: int) -> str:
        assert self.tokenizer is not None
        text = self.words(tokens, seq)
        # Words are mostly one token each; trim or pad until the tokenizer agrees.
        for _ in range(8):
            count = self.tokenizer.count(text)
            if count == tokens:
                break
            parts = text.split(" ")
            if count > tokens:
                parts = parts[: max(1, len(parts) - (count - tokens))]
            else:
                parts += self.rng.choices(WORDS, k=tokens - count)
            text = " ".join(parts)
        return text


@dataclass(frozen=True)
class BodyOptions:
    pin_output: bool = True  # ignore_eos + min_tokens where the server accepts them
    continuous_usage: bool = True
    include_usage: bool = True


Messages = list[tuple[str, str]]  # (role, text) in order


def request_body(
    api: str,
    model: str,
    prompt: str | Messages,
    max_tokens: int,
    options: BodyOptions,
    *,
    stream: bool = True,
) -> bytes:
    """`prompt`: one user message's text, or the messages of a conversation (the completions
    API gets their texts joined by new lines)."""
    body: dict[str, object] = {"model": model, "max_tokens": max_tokens, "stream": stream, "temperature": 0.0}
    messages = [("user", prompt)] if isinstance(prompt, str) else prompt
    if api == "chat":
        body["messages"] = [{"role": role, "content": text} for role, text in messages]
    else:
        body["prompt"] = "\n".join(text for _, text in messages)
    if stream and options.include_usage:
        stream_options: dict[str, bool] = {"include_usage": True}
        if options.continuous_usage:
            stream_options["continuous_usage_stats"] = True
        body["stream_options"] = stream_options
    if options.pin_output:
        body["ignore_eos"] = True
        body["min_tokens"] = max_tokens
    return orjson.dumps(body)
