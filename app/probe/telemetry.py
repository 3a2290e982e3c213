"""Server telemetry during a step: the endpoint's Prometheus metrics (and a DCGM exporter's
power and energy), scraped once a second from the probe's process while the step runs, bounded
in count, and reduced to per-step aggregates plus a compact time series.

Names differ per engine; each quantity is read from the first name the server exposes:
vLLM `vllm:*`, SGLang `sglang:*`, TensorRT-LLM `trtllm_*` (its latency histograms; it exports
no queue gauges), Dynamo `dynamo_frontend_*` and `dynamo_component_*`, TGI `tgi_*`, llama.cpp
`llamacpp:*`. Text is parsed with
prometheus_client's parser. Energy comes from `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` (mJ,
summed over GPUs) when exposed, else from the mean of `DCGM_FI_DEV_POWER_USAGE` (W) over the
step; either way it is labelled measured, and the cost model prefers it to declared watts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from app.probe.client import make_session, read_all
from app.probe.types import Limits, Timeouts
from app.summary import Telemetry

INTERVAL_S = 1.0
MAX_POINTS = 3600  # an hour of one-second scrapes; later scrapes keep only the aggregates' ends
SCRAPE_TIMEOUT_S = 2.0
MAX_BYTES = 4 * 1024 * 1024

RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs", "dynamo_frontend_inflight_requests",
           "tgi_batch_current_size", "llamacpp:requests_processing")  # fmt: skip
WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "dynamo_frontend_queued_requests",
           "tgi_queue_size", "llamacpp:requests_deferred")  # fmt: skip
KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage",
      "dynamo_component_kvstats_gpu_cache_usage_percent", "llamacpp:kv_cache_usage_ratio")  # fmt: skip
TTFT = ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds", "trtllm_time_to_first_token_seconds",
        "dynamo_frontend_time_to_first_token_seconds")  # fmt: skip
ITL = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds", "sglang:inter_token_latency_seconds",
       "trtllm_time_per_output_token_seconds", "dynamo_frontend_inter_token_latency_seconds")  # fmt: skip
PREEMPTIONS = ("vllm:num_preemptions_total",)
PREFIX_HITS, PREFIX_QUERIES = "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"
PREFIX_RATE = ("sglang:cache_hit_rate", "dynamo_component_kvstats_gpu_prefix_cache_hit_rate")
POWER = "DCGM_FI_DEV_POWER_USAGE"
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"


@dataclass
class Point:
    t: float  # perf_counter seconds, when the answer began to arrive
    values: dict[str, float]  # sample name -> sum over label sets
    counts: dict[str, int]  # sample name -> label sets seen

    def first(self, names: tuple[str, ...], *, mean: bool = False) -> float | None:
        for name in names:
            if name in self.values:
                return self.values[name] / self.counts[name] if mean else self.values[name]
        return None


def parse(text: str, t: float) -> Point:
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # The parser names every counter's samples <family>_total; a counter exported
            # without the suffix (DCGM's) is found under its family name too.
            names = {sample.name}
            if family.type == "counter" and sample.name == family.name + "_total":
                names.add(family.name)
            for name in names:
                values[name] = values.get(name, 0.0) + float(sample.value)
                counts[name] = counts.get(name, 0) + 1
    return Point(t, values, counts)


def _delta(first: Point, last: Point, name: str) -> float | None:
    if name in first.values and name in last.values:
        return last.values[name] - first.values[name]
    return None


def _hist_mean_ms(first: Point, last: Point, names: tuple[str, ...]) -> float | None:
    for name in names:
        total, count = _delta(first, last, name + "_sum"), _delta(first, last, name + "_count")
        if total is not None and count:
            return 1000.0 * total / count
    return None


def reduce(points: list[Point], source: str | None) -> Telemetry | None:
    """Per-step aggregates and the series from the scrapes of one step (its first and last are
    taken as the load starts and ends, so counters' deltas cover the step itself)."""
    if len(points) < 2:
        return None
    first, last = points[0], points[-1]
    span = last.t - first.t

    def gauge(names: tuple[str, ...], mean: bool = False) -> list[float]:
        return [v for p in points if (v := p.first(names, mean=mean)) is not None]

    running, waiting, kv = gauge(RUNNING), gauge(WAITING), gauge(KV, mean=True)
    power = [p.values[POWER] for p in points if POWER in p.values]
    energy_j = None
    energy_source = None
    if (mj := _delta(first, last, ENERGY)) is not None and span > 0:
        energy_j, energy_source = mj / 1000.0, "energy counter"
    elif power and span > 0:
        energy_j, energy_source = sum(power) / len(power) * span, "power gauge"
    hits, queries = _delta(first, last, PREFIX_HITS), _delta(first, last, PREFIX_QUERIES)
    rates = gauge(PREFIX_RATE)
    prefix = hits / queries if hits is not None and queries else (sum(rates) / len(rates) if rates else None)
    preempted = next((d for name in PREEMPTIONS if (d := _delta(first, last, name)) is not None), None)

    def stats(values: list[float]) -> tuple[float | None, float | None]:
        return (sum(values) / len(values), max(values)) if values else (None, None)

    series = [
        [
            round(p.t - first.t, 3),
            p.first(RUNNING),
            p.first(WAITING),
            p.first(KV, mean=True),
            p.values.get(POWER),
        ]
        for p in points
    ]
    return Telemetry(
        source=source,
        scrapes=len(points),
        window_s=round(span, 3),
        running_mean=stats(running)[0],
        running_max=stats(running)[1],
        waiting_mean=stats(waiting)[0],
        waiting_max=stats(waiting)[1],
        kv_usage_mean=stats(kv)[0],
        kv_usage_max=stats(kv)[1],
        prefix_hit_rate=prefix,
        preemptions=preempted,
        server_ttft_ms=_hist_mean_ms(first, last, TTFT),
        server_itl_ms=_hist_mean_ms(first, last, ITL),
        power_w=energy_j / span if energy_j is not None and span > 0 else None,
        energy_j=energy_j,
        energy_source=energy_source,
        series=series,
    )


@dataclass
class Scraper:
    """Scrapes `url` from start() to stop(): once at each end and every INTERVAL_S between."""

    url: str
    limits: Limits = field(default_factory=Limits)
    interval_s: float = INTERVAL_S
    points: list[Point] = field(default_factory=list)
    failures: int = 0
    marks: dict[str, int] = field(default_factory=dict)  # "start"/"end": index into points
    _task: asyncio.Task[None] | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = make_session(1, Timeouts(connect=SCRAPE_TIMEOUT_S), self.limits)
        await self._scrape()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="telemetry")

    async def stop(self) -> Telemetry | None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            if "end" not in self.marks:
                await self._scrape()
        finally:
            if self._session is not None:
                await self._session.close()
        start = self.marks.get("start", 0)
        end = self.marks.get("end", len(self.points) - 1)
        return reduce(self.points[start : end + 1], self.url)

    def waiting(self) -> float | None:
        """The server's waiting queue at the latest scrape (None where it does not say)."""
        return self.points[-1].first(WAITING) if self.points else None

    async def mark(self, label: str) -> None:
        """Scrape now, as the load starts or ends: the step's counters are taken between these."""
        if self._session is None or label in self.marks:
            return
        if label == "end" and self._task is not None:
            self._task.cancel()
        if await self._scrape():
            self.marks[label] = len(self.points) - 1

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._scrape()

    async def _scrape(self) -> bool:
        assert self._session is not None
        try:
            timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
            async with self._session.get(self.url, timeout=timeout, allow_redirects=False) as response:
                if response.status != 200:
                    self.failures += 1
                    return False
                at = time.perf_counter()
                raw = await read_all(response, MAX_BYTES)
            # Parsing is Python work: in a thread, the probe's loop keeps its ticks (the GIL is
            # handed over every few milliseconds, under the stall limit of LagMonitor).
            point = await asyncio.to_thread(parse, raw.decode("utf-8", "replace"), at)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            self.failures += 1
            return False
        if len(self.points) >= MAX_POINTS:
            self.points[-1] = point  # keep the first and the latest: the aggregates stay right
        else:
            self.points.append(point)
        return True
