"""The simulator's timing: a precise event timeline, the fixed-delay engine and the
continuous-batching engine, plus the batching model's analytic expectations.

Timing: asyncio timers fire up to ~1 ms late (epoll rounds its timeout up to whole ms), so one
emitter task owns every timed event. It sleeps until ~1 ms before the earliest event, then yields
to the event loop (I/O keeps flowing) until the event is due and emits every due event in one go.
Only that one task ever waits closely, so 256 streams cost no more than one. Events are scheduled
at absolute times, so lateness never accumulates along a stream.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from app.simulator.presets import SimConfig

NS_PER_MS = 1_000_000
SPIN_NS = 1_200_000  # wake this long before an event, then yield until it is due


class Sink(Protocol):
    """Where generated tokens go (the HTTP response)."""

    closed: bool

    def on_tokens(self, start: int, count: int) -> None: ...

    def on_finish(self, reason: str) -> None: ...


class Timeline:
    """Runs callbacks at absolute perf_counter_ns times with sub-millisecond error."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.lateness_us: deque[float] = deque(maxlen=200_000)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="simulator-timeline")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def at(self, when_ns: int, callback: Callable[[], None]) -> None:
        head = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (when_ns, next(self._counter), callback))
        if (head is None or when_ns < head) and self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        heap = self._heap
        while True:
            if not heap:
                self._wakeup = loop.create_future()
                await self._wakeup
                continue
            now = time.perf_counter_ns()
            due = heap[0][0]
            if due - now > SPIN_NS:
                self._wakeup = loop.create_future()
                handle = loop.call_later((due - now - SPIN_NS + 200_000) / 1e9, _resolve, self._wakeup)
                await self._wakeup
                handle.cancel()
                continue
            if due > now:
                await asyncio.sleep(0)  # let I/O run while the event comes due
                continue
            while heap and heap[0][0] <= now:
                when, _, callback = heapq.heappop(heap)
                self.lateness_us.append((now - when) / 1000)
                callback()
                now = time.perf_counter_ns()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class Generation:
    """One request's generation plan."""

    input_tokens: int
    output_tokens: int  # how many tokens will be produced
    finish_reason: str  # "length" or "stop"
    sink: Sink
    arrived_ns: int = field(default_factory=time.perf_counter_ns)
    produced: int = 0
    pending: int = 0  # produced but not yet sent (chunking)
    admitted: bool = False
    cached_tokens: int = 0  # prompt tokens found in the prefix cache: not prefilled again
    slowdown: float = 1.0  # fixed mode: this request's delays are multiplied by it (noise, warm-up)

    @property
    def prefill_tokens(self) -> int:
        return self.input_tokens - self.cached_tokens

    @property
    def kv_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class FixedEngine:
    """Exact TTFT and inter-token delay per request; no batching, no interference. TTFT grows
    with the uncached part of the prompt when `prefill_ms_per_token` is set.

    Each stream has one pending event at a time (the next chunk), so a burst of arrivals costs
    one heap push each, not one per token.

    Two departures from exactness, each a known truth for the statistics built on them:
    `noise`, each request's delays multiplied by a lognormal factor of median 1 (sigma = noise,
    seeded), and a warm-up, requests arriving in the first `warmup_s` seconds after the first
    one slower by `warmup_factor` (a cold engine: compilation, cache fills)."""

    def __init__(self, config: SimConfig, timeline: Timeline) -> None:
        self.config = config
        self.timeline = timeline
        self.running = 0
        self.ttft_ns = int(config.ttft_ms * NS_PER_MS)
        self.prefill_ns_per_token = config.prefill_ms_per_token * NS_PER_MS
        self.itl_ns = int(config.itl_ms * NS_PER_MS)
        self.k = max(1, config.tokens_per_chunk)
        self.rng = random.Random(config.seed)
        self.first_ns: int | None = None

    def submit(self, gen: Generation) -> None:
        c = self.config
        if self.first_ns is None:
            self.first_ns = gen.arrived_ns
        if c.noise > 0:
            gen.slowdown = self.rng.lognormvariate(0.0, c.noise)
        if c.warmup_s > 0 and gen.arrived_ns - self.first_ns < c.warmup_s * 1e9:
            gen.slowdown *= c.warmup_factor
        self.running += 1
        # The first chunk carries the first token (prefill yields one); later chunks carry k.
        self._schedule(gen, 0, min(1, gen.output_tokens))

    def ttft_ns_of(self, gen: Generation) -> int:
        """TTFT = ttft_ms + prefill_ms_per_token x the prompt tokens not found in the cache."""
        return int((self.ttft_ns + gen.prefill_tokens * self.prefill_ns_per_token) * gen.slowdown)

    def _schedule(self, gen: Generation, start: int, end: int) -> None:
        when = gen.arrived_ns + self.ttft_ns_of(gen) + int(max(0, end - 1) * self.itl_ns * gen.slowdown)
        self.timeline.at(when, lambda: self._fire(gen, start, end))

    def _fire(self, gen: Generation, start: int, end: int) -> None:
        last = end >= gen.output_tokens
        if gen.sink.closed:
            self.running -= 1
            return
        if end > start:
            gen.sink.on_tokens(start, end - start)
        if last:
            self.running -= 1
            gen.sink.on_finish(gen.finish_reason)
        else:
            self._schedule(gen, end, min(end + self.k, gen.output_tokens))


class BatchEngine:
    """Continuous batching: admit waiting requests while the batch and the KV budget allow,
    prefill them inside the next step, and give every running sequence one token per step."""

    def __init__(self, config: SimConfig, timeline: Timeline) -> None:
        self.config = config
        self.timeline = timeline
        self.waiting: deque[Generation] = deque()
        self.running: list[Generation] = []
        self.kv_used = 0
        self.stepping = False
        self.last_step_end = 0
        self.busy_ns = 0

    @property
    def queue_full(self) -> bool:
        return len(self.waiting) >= self.config.queue_limit

    def submit(self, gen: Generation) -> None:
        self.waiting.append(gen)
        if not self.stepping:
            self.stepping = True
            self._schedule_step(max(time.perf_counter_ns(), gen.arrived_ns))

    def step_ms(self, batch: int, prefill_tokens: int) -> float:
        c = self.config
        return c.base_ms + c.per_seq_ms * batch + prefill_tokens / c.prefill_tokens_per_s * 1000.0

    def _schedule_step(self, start_ns: int) -> None:
        c = self.config
        prefill = 0
        while self.waiting and len(self.running) < c.max_batch:
            head = self.waiting[0]
            if head.sink.closed:
                self.waiting.popleft()
                continue
            if self.kv_used + head.kv_tokens > c.kv_budget_tokens and self.running:
                break
            self.waiting.popleft()
            head.admitted = True
            self.kv_used += head.kv_tokens
            self.running.append(head)
            prefill += head.prefill_tokens
        if not self.running:
            self.stepping = False
            return
        duration = int(self.step_ms(len(self.running), prefill) * NS_PER_MS)
        self.busy_ns += duration
        end = start_ns + duration
        self.timeline.at(end, lambda: self._finish_step(end))

    def _finish_step(self, end_ns: int) -> None:
        k = max(1, self.config.tokens_per_chunk)
        still: list[Generation] = []
        for gen in self.running:
            if gen.sink.closed:
                self.kv_used -= gen.kv_tokens
                continue
            gen.produced += 1
            gen.pending += 1
            done = gen.produced >= gen.output_tokens
            if gen.pending and (gen.produced == 1 or gen.pending >= k or done):
                gen.sink.on_tokens(gen.produced - gen.pending, gen.pending)
                gen.pending = 0
            if done:
                gen.sink.on_finish(gen.finish_reason)
                self.kv_used -= gen.kv_tokens
            else:
                still.append(gen)
        self.running = still
        self._schedule_step(end_ns)


# -- the batching model's own analytic expectations ---------------------------------------------


@dataclass(frozen=True)
class Expectation:
    concurrency: int
    batch: int
    step_ms: float
    tpot_ms: float
    ttft_ms: float
    output_tokens_per_s: float


def expected_closed_loop(
    config: SimConfig, concurrency: int, input_tokens: int, output_tokens: int
) -> Expectation:
    """Steady state of a closed loop of `concurrency` clients against the batching model.

    With b = min(c, max_batch) sequences running, each step also prefills the requests that
    replaced finished ones: b / OSL requests per step on average, each of ISL tokens. So
        step = base + per_seq * b + (b / OSL) * ISL / prefill_rate,
    every running sequence gets one token per step (TPOT = step), throughput = b / step.
    Requests beyond the batch wait: a closed loop keeps c - b of them queued, each waiting for
    (c - b) / b request lifetimes on average (Little's law)."""
    b = max(1, min(concurrency, config.max_batch))
    kv_cap = max(1, config.kv_budget_tokens // max(1, input_tokens + output_tokens))
    b = min(b, kv_cap)
    prefill_per_step = b / max(1, output_tokens) * input_tokens
    step = config.base_ms + config.per_seq_ms * b + prefill_per_step / config.prefill_tokens_per_s * 1000.0
    lifetime_ms = step * output_tokens
    queue_ms = max(0, concurrency - b) / b * lifetime_ms
    first_step = step + input_tokens / config.prefill_tokens_per_s * 1000.0 * 0.5  # own prefill, on average
    return Expectation(
        concurrency=concurrency,
        batch=b,
        step_ms=step,
        tpot_ms=step,
        ttft_ms=queue_ms + first_step,
        output_tokens_per_s=b / step * 1000.0,
    )
