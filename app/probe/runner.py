"""Load patterns and whole runs (after the preflight, app/probe/preflight.py): closed-loop concurrency and open-loop request-rate
steps, sweeps, warm-up, 429 back-off, and the client_bound check.

client_bound: a load generator that falls behind reports its own limits as the server's. Every
step runs a small lag monitor (a 20 ms ticker; when the event loop is saturated its wake-ups come
late) and, in open loop, measures how late each request left against its scheduled arrival. Lag
beyond the thresholds below raises the flag, with the figures, on the step: a p99 over 5 ms, or a
stall over 20 ms that touched what the step reports (rare stalls escape a p99, yet one during a
burst of first tokens delays every request in the burst). A stall is judged by its effect: the
flag rises when a first or last token, or more than 0.5 % of all chunks, were stamped in it; a
stall while every stream sat between tokens delayed no stamp that a statistic reads."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import multiprocessing
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import aiohttp
import numpy as np

from app.environment import RunEnvironment, SearchReport
from app.probe.client import headers_for, make_session, outbound_problem, stream_request
from app.probe.lag import LOOP_LAG_LIMIT_MS, TICK_S, LagMonitor
from app.probe.preflight import Preflight, ProbeError, preflight
from app.probe.prompts import (
    BodyOptions,
    Calibration,
    PromptFactory,
    load_tokenizer,
    request_body,
    sample_length,
    tokens_per_chunk,
)
from app.probe.search import Search
from app.probe.stats import summarize_step
from app.probe.telemetry import Scraper
from app.probe.types import ErrorKind, Limits, Sample, StepResult, Target, Timeouts, Workload

DISPATCH_LAG_LIMIT_MS = 5.0
RAMP_SPACING_S = 0.0005  # closed loop: client i starts i x 0.5 ms after the first ...
RAMP_MAX_S = 0.25  # ... within at most 250 ms

Progress = Callable[[int, int, int | None], None]  # step index, requests done, requests planned


class StepCancelled(asyncio.CancelledError):
    """A step cut short by cancellation, carrying what it measured until then."""

    def __init__(self, result: StepResult) -> None:
        super().__init__("cancelled")
        self.result = result


@dataclass
class RunResult:
    started_at: datetime
    finished_at: datetime
    status: str
    steps: list[StepResult]
    preflight: Preflight | None
    error: str | None = None
    search: SearchReport | None = None  # the SLO search's trail and answer

    def environment(self) -> RunEnvironment | None:
        if self.preflight is None:
            return None
        found = self.preflight.environment()
        return found.model_copy(update={"search": self.search}) if self.search is not None else found


class Prober:
    def __init__(
        self,
        target: Target,
        workload: Workload,
        *,
        timeouts: Timeouts = Timeouts(),
        limits: Limits = Limits(),
        tokenizer: str | None = None,
        processes: int = 1,
        metrics_url: str | None = None,
    ) -> None:
        self.metrics_url = metrics_url  # scraped once a second during each step (telemetry.py)
        self._scraper: Scraper | None = None
        self.processes = max(1, processes)
        self.tokenizer_spec = tokenizer
        self.target = target
        self.workload = workload
        self.timeouts = timeouts
        self.limits = limits
        self.tokenizer = load_tokenizer(tokenizer) if tokenizer else None
        self.rng = random.Random(workload.seed)
        self.prompts = PromptFactory(workload.seed, self.tokenizer)
        self.options = BodyOptions()
        self.headers = headers_for(target)
        self._seq = itertools.count()
        self._backoff_until = 0.0

    # -- preflight --------------------------------------------------------------------------------

    async def preflight(self) -> Preflight:
        """Reach the server and learn what it takes (app/probe/preflight.py); the steps then send
        the options it took, with prompts calibrated to its token counts."""
        found = await preflight(
            self.target, timeouts=self.timeouts, limits=self.limits, headers=self.headers, prompts=self.prompts,
            tokenizer=self.tokenizer is not None,
        )  # fmt: skip
        self.options = found.options
        self.prompts.calibration = found.calibration
        return found

    # -- steps ------------------------------------------------------------------------------------

    def _next_request(self, step: int, warmup: bool) -> tuple[Sample, bytes]:
        w = self.workload
        seq = next(self._seq)
        isl = sample_length(self.rng, w.input_tokens, w.input_spread)
        osl = sample_length(self.rng, w.output_tokens, w.output_spread)
        body = request_body(
            self.target.api, self.target.model, self.prompts.prompt(isl, seq), osl, self.options
        )
        return Sample(seq=seq, step_index=step, warmup=warmup, requested_output_tokens=osl), body

    async def _one(self, session: aiohttp.ClientSession, sample: Sample, body: bytes) -> Sample:
        loop = asyncio.get_running_loop()
        wait = self._backoff_until - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        await stream_request(
            session,
            self.target,
            body,
            sample,
            timeouts=self.timeouts,
            limits=self.limits,
            headers=self.headers,
            keep_text=self.tokenizer is not None,
        )
        if sample.error_kind == "http_429":
            # Back off as the server asks (or 1 s) instead of hammering it.
            self._backoff_until = max(self._backoff_until, loop.time() + (sample.retry_after_s or 1.0))
        return sample

    def _count_tokens(self, samples: list[Sample]) -> None:
        """After the step (off the measurement): the tokenizer counts each chunk's tokens. Without
        exact per-chunk usage from the server these give ITL a per-token basis; without usage
        at all they are the output length."""
        tokenizer = self.tokenizer
        if tokenizer is None:
            return
        for sample in samples:
            texts, sample.chunk_texts = sample.chunk_texts, None
            if not texts or not sample.ok:
                continue
            counts = tokens_per_chunk(tokenizer, texts)
            sample.tokenizer_output_tokens = sum(counts)
            if sample.token_source != "usage":
                sample.output_tokens = sample.tokenizer_output_tokens
                sample.token_source = "tokenizer"
            if sample.chunk_tokens is None:  # the server's usage did not give the split
                sample.chunk_tokens = counts

    async def run_step(self, index: int, level: float, progress: Progress | None = None) -> StepResult:
        scraper = None
        if self.metrics_url and outbound_problem(self.metrics_url, self.limits) is None:
            scraper = Scraper(self.metrics_url, self.limits)
            await scraper.start()
        self._scraper = scraper
        try:
            if self.processes > 1:
                result = await self._sharded_step(index, level, progress)
            else:
                result = await self._local_step(index, level, progress)
        except BaseException:
            if scraper is not None:
                with contextlib.suppress(Exception):
                    await scraper.stop()
            raise
        if scraper is not None:
            telemetry = await scraper.stop()
            if telemetry is not None:
                summary = result.summary.model_copy(update={"telemetry": telemetry})
                tps = summary.output_tokens_per_s
                if telemetry.power_w and tps:  # measured energy needs no price: tokens per joule now
                    summary = summary.model_copy(
                        update={"tokens_per_joule": tps / telemetry.power_w, "energy_source": "measured"}
                    )
                result.summary = summary
        return result

    async def _sharded_step(self, index: int, level: float, progress: Progress | None) -> StepResult:
        """Beyond one core: the step's clients are split across worker processes (each its own
        event loop and connection pool); their samples are merged and summarized here."""
        w = self.workload
        closed = w.mode == "concurrency"
        n = self.processes if not closed else max(1, min(self.processes, int(level)))
        shares = _split(int(level), n) if closed else [level / n] * n
        requests = _split(w.requests_per_step, n) if w.requests_per_step is not None else [None] * n
        warmups = _split(w.warmup_requests, n)
        jobs = []
        for i in range(n):
            sub = replace(
                w,
                levels=(shares[i],),
                requests_per_step=requests[i],
                warmup_requests=warmups[i],
                max_concurrency=None if w.max_concurrency is None else max(1, w.max_concurrency // n),
                seed=w.seed * 1000 + i,
            )
            jobs.append(
                _Shard(self.target, sub, self.timeouts, self.limits, self.tokenizer_spec, self.options,
                       self.prompts.calibration, index, 1_000_000 * (i + 1) + next(self._seq))
            )  # fmt: skip
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            if self._scraper is not None:
                await self._scraper.mark("start")
            results = await asyncio.gather(*(loop.run_in_executor(pool, _run_shard, job) for job in jobs))
            if self._scraper is not None:
                await self._scraper.mark("end")
        samples = [sample for result in results for sample in result[0]]
        bound = any(result[1] for result in results)
        notes = [f"{n} processes", *sorted({note for result in results for note in result[2]})]
        cpu = sum(result[3] for result in results)
        if progress is not None:
            progress(index, len(samples), len(samples))
        return self._result(index, level, samples, bound, notes, cpu)

    def _result(
        self, index: int, level: float, samples: list[Sample], bound: bool, notes: list[str], cpu: float
    ) -> StepResult:
        w = self.workload
        closed = w.mode == "concurrency"
        summary = summarize_step(
            samples,
            concurrency=int(level) if closed else w.max_concurrency,
            request_rate=None if closed else float(level),
            slo=w.slo,
            client_bound=bound,
            client_notes=notes,
            client_cpu_pct=cpu,
        )
        return StepResult(
            index, int(level) if closed else None, None if closed else float(level), samples, summary
        )

    async def _local_step(self, index: int, level: float, progress: Progress | None = None) -> StepResult:
        w = self.workload
        closed = w.mode == "concurrency"
        concurrency = int(level) if closed else (w.max_concurrency or 0)
        pool = concurrency if closed else (w.max_concurrency or 1024)
        warm_total = w.warmup_requests * (int(level) if closed else 1)
        total = None if w.requests_per_step is None else w.requests_per_step + warm_total
        samples: list[Sample] = []
        notes: list[str] = []
        monitor = LagMonitor()
        # Objects that exist before the step never need scanning again: a full collection over
        # a large heap would otherwise stall the loop for milliseconds mid-measurement.
        gc.collect()
        gc.freeze()
        cancelled = False
        dispatch_lag = 0.0
        try:
            async with make_session(pool, self.timeouts, self.limits) as session:
                ramp = min(RAMP_SPACING_S * concurrency, RAMP_MAX_S) if closed else 0.0
                if self._scraper is not None:
                    await self._scraper.mark("start")
                monitor.start(settle_s=ramp + TICK_S if closed else 0.0)
                try:
                    if closed:
                        await self._closed_loop(index, session, int(level), total, samples, progress)
                    else:
                        dispatch_lag = await self._open_loop(
                            index, session, float(level), total, samples, progress, notes
                        )
                except asyncio.CancelledError:
                    cancelled = True  # keep what completed; the run ends after this step
                finally:
                    await monitor.stop()
                    if self._scraper is not None and not cancelled:
                        await self._scraper.mark("end")
        finally:
            gc.unfreeze()
        self._count_tokens(samples)
        if cancelled:
            notes.append(f"cancelled during the step: {len(samples)} requests had completed")
        lag = monitor.p99()
        bound = False
        if lag > LOOP_LAG_LIMIT_MS:
            bound = True
            notes.append(f"event-loop lag p99 {lag:.1f} ms (limit {LOOP_LAG_LIMIT_MS:g} ms)")
        else:
            touched, note = monitor.stall_note(samples)
            bound = touched
            if note is not None:
                notes.append(note)
        if not closed and dispatch_lag > max(DISPATCH_LAG_LIMIT_MS, 100.0 / level):
            bound = True
            notes.append(f"requests left {dispatch_lag:.1f} ms behind schedule (p99)")
        notes.append(f"probe CPU {monitor.cpu_share * 100:.0f}% of a core")
        result = self._result(index, level, samples, bound, notes, monitor.cpu_share * 100.0)
        if cancelled:
            raise StepCancelled(result)
        return result

    def _within(self, started: float, issued: int, total: int | None) -> bool:
        if total is not None and issued >= total:
            return False
        d = self.workload.duration_per_step_s
        return not (d is not None and time.perf_counter() - started >= d)

    async def _closed_loop(
        self,
        index: int,
        session: aiohttp.ClientSession,
        concurrency: int,
        total: int | None,
        samples: list[Sample],
        progress: Progress | None,
    ) -> None:
        started = time.perf_counter()
        issued = 0
        warm = self.workload.warmup_requests

        async def worker(i: int) -> None:
            nonlocal issued
            mine = 0  # closed loop: warm-up counts per client, so the cold-start wave is excluded
            if i:
                # Stagger the clients' first sends (a ramp of at most RAMP_MAX_S): real clients
                # never arrive in the same microsecond, and a synchronized burst would measure
                # the client's and server's burst handling rather than the server's latency.
                await asyncio.sleep(i * min(RAMP_SPACING_S, RAMP_MAX_S / concurrency))
            while self._within(started, issued, total):
                sample, body = self._next_request(index, mine < warm)
                mine += 1
                issued += 1
                samples.append(await self._one(session, sample, body))
                if progress is not None:
                    progress(index, len(samples), total)

        await asyncio.gather(*(worker(i) for i in range(max(1, concurrency))))

    async def _open_loop(
        self,
        index: int,
        session: aiohttp.ClientSession,
        rate: float,
        total: int | None,
        samples: list[Sample],
        progress: Progress | None,
        notes: list[str],
    ) -> float:
        w = self.workload
        loop = asyncio.get_running_loop()
        cap = asyncio.Semaphore(w.max_concurrency) if w.max_concurrency else None
        started = time.perf_counter()
        t0 = loop.time()
        next_at = t0
        lags: list[float] = []
        tasks: set[asyncio.Task[None]] = set()
        issued = 0
        capped = 0

        async def fire(sample: Sample, body: bytes) -> None:
            try:
                samples.append(await self._one(session, sample, body))
                if progress is not None:
                    progress(index, len(samples), total)
            finally:
                if cap is not None:
                    cap.release()

        while self._within(started, issued, total):
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if cap is not None:
                if cap.locked():
                    capped += 1
                await cap.acquire()
            lags.append(max(0.0, (loop.time() - next_at) * 1000.0))
            sample, body = self._next_request(index, issued < w.warmup_requests)
            issued += 1
            task = loop.create_task(fire(sample, body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            gap = self.rng.expovariate(rate) if w.arrival == "poisson" else 1.0 / rate
            next_at += gap
        if tasks:
            await asyncio.gather(*tasks)
        if capped:
            notes.append(f"{capped} arrivals waited for the concurrency cap ({w.max_concurrency})")
        return float(np.percentile(lags, 99)) if lags else 0.0

    # -- a whole run --------------------------------------------------------------------------------

    async def run(
        self,
        progress: Progress | None = None,
        *,
        on_step: Callable[[StepResult], Awaitable[None]] | None = None,
        on_preflight: Callable[[RunEnvironment], None] | None = None,
    ) -> RunResult:
        """Preflight, then every step in order. `on_step` gets each step as it completes
        (a step cut short by cancellation included), `on_preflight` the server's environment."""
        started = datetime.now(UTC)
        try:
            pre = await self.preflight()
        except ProbeError as exc:
            return RunResult(started, datetime.now(UTC), "failed", [], None, str(exc))
        if on_preflight is not None:
            on_preflight(pre.environment())
        steps: list[StepResult] = []
        search = Search(self.workload.search) if self.workload.search is not None else None
        try:
            index = 0
            level: float | None = search.first() if search is not None else self.workload.levels[0]
            while level is not None:
                step = await self.run_step(index, level, progress)
                steps.append(step)
                if on_step is not None:
                    await on_step(step)
                index += 1
                if search is not None:  # the next load follows from this step's verdict
                    met = step.summary.meets(self.workload.slo)
                    elapsed = (datetime.now(UTC) - started).total_seconds()
                    level = search.next(level, met, elapsed_s=elapsed)
                else:
                    level = self.workload.levels[index] if index < len(self.workload.levels) else None
        except asyncio.CancelledError as exc:
            if isinstance(exc, StepCancelled) and exc.result.samples:
                steps.append(exc.result)
                if on_step is not None:
                    await on_step(exc.result)
            return RunResult(started, datetime.now(UTC), "cancelled", steps, pre, "cancelled",
                             search.report() if search else None)  # fmt: skip
        status = "succeeded" if any(s.summary.requests.completed for s in steps) else "failed"
        error = None if status == "succeeded" else "no request completed"
        return RunResult(
            started, datetime.now(UTC), status, steps, pre, error, search.report() if search else None
        )


@dataclass(frozen=True)
class _Shard:
    target: Target
    workload: Workload
    timeouts: Timeouts
    limits: Limits
    tokenizer: str | None
    options: BodyOptions
    calibration: Calibration
    step_index: int
    first_seq: int


def _run_shard(job: _Shard) -> tuple[list[Sample], bool, list[str], float]:
    """One worker process's share of a step (runs in a spawned process)."""
    from app.aio import run_fast

    prober = Prober(
        job.target, job.workload, timeouts=job.timeouts, limits=job.limits, tokenizer=job.tokenizer
    )
    prober.options = job.options
    prober.prompts.calibration = job.calibration
    prober._seq = itertools.count(job.first_seq)
    result = run_fast(prober._local_step(job.step_index, job.workload.levels[0]))
    quality = result.summary.quality
    notes = [note for note in quality.client_notes if not note.startswith("probe CPU")]
    return result.samples, quality.client_bound, notes, float(quality.client_cpu_pct or 0.0)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


__all__ = ["ErrorKind", "ProbeError", "Prober", "RunResult", "StepResult", "Workload"]
