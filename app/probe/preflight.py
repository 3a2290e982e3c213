"""The preflight: before any step, reach the server, check the key and the model, learn which
optional request fields it takes (falling back step by step when it refuses one), and calibrate
prompt lengths against its own token counts. What it learns is stored with the run."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import orjson

from app.environment import RunEnvironment
from app.probe.client import error_message, make_session, outbound_problem, said
from app.probe.prompts import BodyOptions, Calibration, PromptFactory, request_body
from app.probe.types import Limits, Target, Timeouts

# What a refusal of an optional request field looks like: vLLM and OpenAI answer 400,
# FastAPI/pydantic servers (transformers serve, TGI, many proxies) 422 with their own shapes.
_OPTION_NAMES = ("ignore_eos", "min_tokens", "stream_options", "continuous_usage_stats", "include_usage")
_REFUSAL_WORDS = ("extra", "unexpected", "unrecognised", "unrecognized", "not permitted", "unknown",
                  "unsupported", "not supported", "not allowed")  # fmt: skip


def refuses_an_option(status: int, body: bytes) -> bool:
    """A 4xx (other than auth, not-found and rate limits) whose body names one of the optional
    fields the probe sends, or says the request had extra/unexpected/unrecognised fields."""
    if not 400 <= status < 500 or status in (401, 403, 404, 429):
        return False
    text = body.decode("utf-8", "replace").lower()
    return any(word in text for word in _OPTION_NAMES + _REFUSAL_WORDS)


CONNECTS = 5  # TCP connects timed by the preflight


async def connect_ms(url: str, timeout_s: float) -> float | None:
    """The median time of CONNECTS TCP connects to the URL's host and port (the URL passed the
    outbound policy just before): the network's share of TTFT from where the probe runs. None
    where no connect succeeded."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        return None
    times = []
    for _ in range(CONNECTS):
        started = time.perf_counter()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except (OSError, TimeoutError):
            continue
        times.append((time.perf_counter() - started) * 1000.0)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return statistics.median(times) if times else None


class ProbeError(Exception):
    """The target cannot be measured at all (unreachable, rejects the key, unknown model)."""


@dataclass
class Preflight:
    options: BodyOptions
    calibration: Calibration
    server: str | None
    notes: list[str]
    context_length: int | None = None  # the model card's max_model_len, where it says (and was asked)
    connect_ms: float | None = None  # the median TCP connect time to the server (CONNECTS tries)

    def dropped_options(self) -> list[str]:
        """The request options the server refused, which the probe stopped sending."""
        dropped = [] if self.options.pin_output else ["ignore_eos", "min_tokens"]
        if not self.options.include_usage:
            dropped += ["stream_options.continuous_usage_stats", "stream_options.include_usage"]
        elif not self.options.continuous_usage:
            dropped.append("stream_options.continuous_usage_stats")
        return dropped

    def environment(self) -> RunEnvironment:
        """What the preflight learned about the server, as stored with a run."""
        return RunEnvironment(
            connect_ms=self.connect_ms,
            server=self.server,
            pinned_output=self.options.pin_output,
            dropped_options=self.dropped_options(),
            continuous_usage=self.options.continuous_usage,
            input_calibration=self.calibration.source,
            notes=self.notes,
        )


async def preflight(
    target: Target, *, timeouts: Timeouts, limits: Limits, headers: dict[str, str], prompts: PromptFactory,
    tokenizer: bool, context: bool = False,
) -> Preflight:  # fmt: skip
    """Raises ProbeError with a one-line reason when the target cannot be measured.
    `tokenizer`: prompt lengths are counted by a tokenizer (no calibration needed); `context`:
    read the model's context length from its card in `/v1/models`."""
    found = await _Preflight(target, timeouts, limits, headers, prompts, tokenizer).run()
    if context:
        found.context_length = await model_context(target, timeouts=timeouts, limits=limits, headers=headers)
    return found


CONTEXT_KEYS = ("max_model_len", "context_length", "max_context_length", "context_window")


async def model_context(
    target: Target, *, timeouts: Timeouts, limits: Limits, headers: dict[str, str]
) -> int | None:
    """The model's context length as its `/v1/models` card says (vLLM and SGLang: max_model_len;
    others: context_length), or None where the card does not say or cannot be read."""
    url = target.base_url.rstrip("/") + "/models"
    try:
        async with (
            make_session(1, timeouts, limits) as session,
            session.get(
                url,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeouts.connect + 10),
            ) as resp,
        ):
            if resp.status != 200:
                return None
            raw = await resp.content.read(limits.max_error_body_bytes * 16)
        cards = orjson.loads(raw).get("data") or []
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, AttributeError):
        return None
    for card in cards:
        if isinstance(card, dict) and card.get("id") == target.model:
            for key in CONTEXT_KEYS:
                value = card.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
    return None


class _Preflight:
    def __init__(
        self, target: Target, timeouts: Timeouts, limits: Limits, headers: dict[str, str], prompts: PromptFactory,
        tokenizer: bool,
    ) -> None:  # fmt: skip
        self.target, self.timeouts, self.limits, self.headers = target, timeouts, limits, headers
        self.prompts, self.tokenizer = prompts, tokenizer
        self.options = BodyOptions()

    async def run(self) -> Preflight:
        """Reach the server, check the key and model, learn which options it takes, calibrate
        prompt lengths. Raises ProbeError with a one-line reason when it cannot be measured."""
        notes: list[str] = []
        if (refused := outbound_problem(self.target.url, self.limits)) is not None:
            raise ProbeError(f"cannot connect to {self.target.base_url}: {refused}")
        async with make_session(2, self.timeouts, self.limits) as session:
            status, body, server = await self._post(session, self._body(16, 0, BodyOptions(), stream=False))
            if refuses_an_option(status, body):
                self.options = BodyOptions(pin_output=False)
                notes.append(
                    f"the server refused ignore_eos/min_tokens (HTTP {status}): output length pinned by max_tokens only"
                )
                status, body, server = await self._post(
                    session, self._body(16, 0, self.options, stream=False)
                )
            self._raise_for(status, body)
            w1, t1 = 16, self._prompt_tokens(body)
            status, body, _ = await self._post(session, self._body(64, 1, self.options, stream=False))
            self._raise_for(status, body)
            w2, t2 = 64, self._prompt_tokens(body)
            if self.tokenizer:
                calibration = Calibration(source="tokenizer")
            elif t1 is not None and t2 is not None:
                calibration = Calibration.from_points(w1, t1, w2, t2)
            else:
                calibration = Calibration()
                notes.append("the server reports no prompt usage: input lengths are estimated")
            # Streaming with usage: fall back step by step if the server refuses the options.
            dropped: list[str] = []
            for opts, drops in (
                (self.options, None),
                (BodyOptions(self.options.pin_output, continuous_usage=False), "continuous_usage_stats"),
                (
                    BodyOptions(self.options.pin_output, continuous_usage=False, include_usage=False),
                    "include_usage",
                ),
            ):
                if drops is not None:
                    dropped.append(drops)
                status, body, _ = await self._post(session, self._body(16, 2, opts, stream=True))
                if status == 200:
                    self.options = opts
                    break
                if not refuses_an_option(status, body):
                    self._raise_for(status, body)
            else:
                self._raise_for(status, body)
            if dropped:
                notes.append("the server refused stream_options." + ", stream_options.".join(dropped))
            if not self.options.continuous_usage:
                notes.append("no per-chunk usage: tokens per chunk inferred or ITL on a chunk basis")
            if not self.options.include_usage:
                notes.append("no usage in streams: output tokens counted by tokenizer or estimated")
        found = Preflight(self.options, calibration, server, notes)
        found.connect_ms = await connect_ms(self.target.url, self.timeouts.connect)
        return found

    def _body(self, words: int, seq: int, options: BodyOptions, *, stream: bool) -> bytes:
        prompt = self.prompts.words(words, -1 - seq)
        return request_body(
            self.target.api, self.target.model, prompt, 4 if stream else 1, options, stream=stream
        )

    async def _post(self, session: aiohttp.ClientSession, body: bytes) -> tuple[int, bytes, str | None]:
        timeout = aiohttp.ClientTimeout(
            total=self.timeouts.ttft + self.timeouts.connect, sock_connect=self.timeouts.connect
        )
        try:
            async with session.post(
                self.target.url, data=body, headers=self.headers, allow_redirects=False, timeout=timeout
            ) as resp:
                raw = await resp.content.read(self.limits.max_error_body_bytes)
                return resp.status, raw, resp.headers.get("Server")
        except aiohttp.ClientConnectorError as exc:
            raise ProbeError(
                f"cannot connect to {self.target.base_url}: {exc.os_error.strerror or exc.os_error}"
            ) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ProbeError(f"{self.target.base_url} did not answer within {timeout.total:g} s") from None
        except aiohttp.ClientError as exc:
            raise ProbeError(
                f"{self.target.base_url}: {type(exc).__name__}: {said(str(exc), self.target.api_key)}"
            ) from None

    def _raise_for(self, status: int, body: bytes) -> None:
        if status == 200:
            return
        message = error_message(body, self.target.api_key)
        if status in (401, 403):
            raise ProbeError(f"the server rejected the API key (HTTP {status}: {message})")
        if status == 404:
            raise ProbeError(f"HTTP 404 from {self.target.url}: {message} (check --model and the base URL)")
        raise ProbeError(f"HTTP {status} from {self.target.url}: {message}")

    @staticmethod
    def _prompt_tokens(body: bytes) -> int | None:
        try:
            obj = orjson.loads(body)
            value = obj["usage"]["prompt_tokens"]
            return int(value) if value is not None else None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
