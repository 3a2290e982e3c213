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
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import aiohttp
import numpy as np

from app.environment import RunEnvironment, SearchReport
from app.probe.client import headers_for, make_session, outbound_problem, stream_request, until, warm
from app.probe.guard import Guard
from app.probe.lag import LOOP_LAG_LIMIT_MS, TICK_S, LagMonitor
from app.probe.plans import Planned, Session, Traffic
from app.probe.preflight import Preflight, ProbeError, preflight
from app.probe.prompts import (
    BodyOptions,
    Calibration,
    PromptFactory,
    load_tokenizer,
    request_body,
    tokens_per_chunk,
)
from app.probe.search import Search
from app.probe.stats import summarize_step
from app.probe.telemetry import Scraper
from app.probe.trials import combine
from app.probe.types import ErrorKind, Limits, Sample, StepResult, Target, Timeouts, Workload
from app.summary import Stop
from app.workloads import context_steps, lengths

DISPATCH_LAG_LIMIT_MS = 5.0
LEAD_S = 0.003  # a scheduled request starts this early; the client holds its bytes until it is due
LOOKAHEAD = 256  # trace replay: request bodies made ahead of their send time, at most
PREPARE_SLACK_S = 0.005  # ... while the next start is at least this far off
WARM_CONNECTIONS = 8  # a schedule's connections opened before its clock starts
GUARD_EVERY_S = 1.0  # how often the guard looks (probe/guard.py)
STOP_GRACE_S = 2.0  # after a stop, the requests in flight get this long to end
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
        self.traffic = Traffic(
            workload.spec,
            input=lengths(workload.input_tokens, workload.input_spread),
            output=lengths(workload.output_tokens, workload.output_spread),
            prompts=self.prompts,
            seed=workload.seed,
            content=workload.content,
        )
        self.options = BodyOptions()
        self.headers = headers_for(target)
        self._seq = itertools.count()
        self._sessions = itertools.count(1)
        self._backoff_until = 0.0
        self.context_length: int | None = None  # the model card's, for long_context
        self._in_flight = 0  # requests sent and not yet ended (the guard's saturation signal)
        self._stop: Stop | None = None  # the running step's guard stopped it (probe/guard.py)

    # -- preflight --------------------------------------------------------------------------------

    async def preflight(self) -> Preflight:
        """Reach the server and learn what it takes (app/probe/preflight.py); the steps then send
        the options it took, with prompts calibrated to its token counts."""
        found = await preflight(
            self.target, timeouts=self.timeouts, limits=self.limits, headers=self.headers, prompts=self.prompts,
            tokenizer=self.tokenizer is not None, context=self.workload.spec.kind == "long_context",
        )  # fmt: skip
        self.options = found.options
        self.prompts.calibration = found.calibration
        self.context_length = found.context_length
        return found

    # -- steps ------------------------------------------------------------------------------------

    def _next_request(self, step: int, warmup: bool, context: int | None = None) -> tuple[Sample, bytes]:
        seq = next(self._seq)
        return self._request(step, warmup, seq, self.traffic.request(seq, context))

    def _request(self, step: int, warmup: bool, seq: int, planned: Planned) -> tuple[Sample, bytes]:
        body = request_body(
            self.target.api, self.target.model, planned.messages, planned.output_tokens, self.options
        )
        sample = Sample(
            seq=seq, step_index=step, warmup=warmup, requested_output_tokens=planned.output_tokens,
            requested_input_tokens=planned.input_tokens, expected_cached_tokens=planned.expected_cached,
            session=planned.session, turn=planned.turn,
        )  # fmt: skip
        return sample, body

    async def _one(
        self, session: aiohttp.ClientSession, sample: Sample, body: bytes, *, keep_answer: bool = False
    ) -> Sample:
        loop = asyncio.get_running_loop()
        wait = self._backoff_until - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._in_flight += 1
        try:
            await stream_request(
                session,
                self.target,
                body,
                sample,
                timeouts=self.timeouts,
                limits=self.limits,
                headers=self.headers,
                keep_text=self.tokenizer is not None,
                keep_answer=keep_answer,
            )
        finally:
            self._in_flight -= 1
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

    async def run_step(
        self, index: int, level: float, progress: Progress | None = None, *, context: int | None = None
    ) -> StepResult:
        """One step at `level` (concurrency, requests or sessions per second, or a trace's time
        scale); `context`: a long_context step's prompt length."""
        scraper = None
        if self.metrics_url and outbound_problem(self.metrics_url, self.limits) is None:
            scraper = Scraper(self.metrics_url, self.limits)
            await scraper.start()
        self._scraper = scraper
        w = self.workload
        try:
            trials: list[StepResult] = []
            for trial in range(w.trials):
                if trial and w.trial_cooldown_s > 0:
                    await asyncio.sleep(w.trial_cooldown_s)
                try:
                    if self.processes > 1 and w.spec.kind != "trace":
                        one = await self._sharded_step(index, level, progress, context)
                    else:
                        one = await self._local_step(index, level, progress, context)
                except StepCancelled as stopped:  # keep the trials measured before
                    raise StepCancelled(self._trials([*trials, stopped.result], trial)) from None
                trials.append(self._trials([one], trial))
                if one.summary.stopped is not None:
                    break  # a trial the guard stopped: the next would measure the same breakdown
            result = self._trials(trials, None)
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

    def _trials(self, results: list[StepResult], trial: int | None) -> StepResult:
        """`trial`: mark one trial's samples with its number (with trials at all); else combine
        the trials measured so far into one step (probe/trials.py)."""
        w = self.workload
        if trial is not None:
            if w.trials > 1:
                for sample in results[-1].samples:
                    sample.trial = trial
            if len(results) == 1:
                return results[0]
        if len(results) == 1:
            return results[0]
        return replace(
            results[0],
            samples=[sample for one in results for sample in one.samples],
            summary=combine([one.summary for one in results], cooldown_s=w.trial_cooldown_s, slo=w.slo),
        )

    async def _sharded_step(
        self, index: int, level: float, progress: Progress | None, context: int | None
    ) -> StepResult:
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
                       self.prompts.calibration, index, 1_000_000 * (i + 1) + next(self._seq), context)
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
        return self._result(index, level, samples, bound, notes, cpu, context)

    def _result(
        self, index: int, level: float, samples: list[Sample], bound: bool, notes: list[str], cpu: float,
        context: int | None = None,
    ) -> StepResult:  # fmt: skip
        w = self.workload
        closed = w.mode == "concurrency"
        rate = None if closed else float(level)
        if w.spec.kind == "trace":  # the level is a time scale: the load is the rate it made
            rate = _arrival_rate(samples)
            notes = [f"trace replayed at {level:g}x its recorded speed", *notes]
        summary = summarize_step(
            samples,
            concurrency=int(level) if closed else w.max_concurrency,
            request_rate=rate,
            slo=w.slo,
            client_bound=bound,
            client_notes=notes,
            client_cpu_pct=cpu,
            spec=w.spec,
            context_tokens=context,
        )
        return StepResult(
            index, int(level) if closed else None, rate, samples, summary, context_tokens=context
        )

    async def _local_step(
        self, index: int, level: float, progress: Progress | None = None, context: int | None = None
    ) -> StepResult:
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
        # a large heap would otherwise stall the loop for milliseconds mid-measurement. No
        # collection first (86 ms over a large heap, each step): garbage frozen with the rest is
        # collected after the step, once unfrozen.
        gc.freeze()
        # Nor a full collection during the step: after the freeze every gen-1 overflow would run
        # one over all the step's samples so far (55 ms at 650 requests/s, seen in the trace
        # benchmark). Young cycles are still collected; the old ones wait for the step's end.
        thresholds = gc.get_threshold()
        gc.set_threshold(thresholds[0], thresholds[1], 1_000_000)
        cancelled = False
        dispatch_lag = 0.0
        try:
            async with make_session(pool, self.timeouts, self.limits) as session:
                ramp = min(RAMP_SPACING_S * concurrency, RAMP_MAX_S) if closed else 0.0
                if self._scraper is not None:
                    await self._scraper.mark("start")
                monitor.start(settle_s=ramp + TICK_S if closed else 0.0)
                self._stop, self._in_flight = None, 0
                scraper = self._scraper
                guard = Guard(
                    slo=w.slo, open_loop=not closed or w.spec.kind == "trace", in_flight=lambda: self._in_flight,
                    queue=scraper.waiting if scraper is not None else lambda: None,
                )  # fmt: skip
                watch = asyncio.get_running_loop().create_task(self._watch(guard, samples), name="guard")
                try:
                    if w.spec.kind == "trace":
                        dispatch_lag = await self._trace_loop(
                            index, session, float(level), total, samples, progress
                        )
                    elif closed:
                        await self._closed_loop(index, session, int(level), total, samples, progress, context)
                    else:
                        dispatch_lag = await self._open_loop(
                            index, session, float(level), total, samples, progress, notes, context
                        )
                except asyncio.CancelledError:
                    cancelled = True  # keep what completed; the run ends after this step
                finally:
                    watch.cancel()
                    await monitor.stop()
                    if self._scraper is not None and not cancelled:
                        await self._scraper.mark("end")
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
        self._count_tokens(samples)
        if cancelled:
            notes.append(f"cancelled during the step: {len(samples)} requests had completed")
        stop = self._stop
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
        if w.spec.kind == "trace":
            if dispatch_lag > DISPATCH_LAG_LIMIT_MS:
                bound = True
                notes.append(f"requests left {dispatch_lag:.1f} ms behind the trace (p99)")
        elif not closed and dispatch_lag > max(DISPATCH_LAG_LIMIT_MS, 100.0 / level):
            bound = True
            notes.append(f"requests left {dispatch_lag:.1f} ms behind schedule (p99)")
        notes.append(f"probe CPU {monitor.cpu_share * 100:.0f}% of a core")
        result = self._result(index, level, samples, bound, notes, monitor.cpu_share * 100.0, context)
        if stop is not None:
            result.summary.stopped = stop
        if cancelled:
            raise StepCancelled(result)
        return result

    async def _watch(self, guard: Guard, samples: list[Sample]) -> None:
        """Once a second: should the step stop (probe/guard.py)? Then no request is sent any
        more, and those in flight get STOP_GRACE_S to end."""
        while True:
            await asyncio.sleep(GUARD_EVERY_S)
            if (stop := guard.check(samples)) is not None:
                self._stop = stop
                return

    async def _drain(self, tasks: set[asyncio.Task[None]]) -> None:
        """Wait for the requests in flight; after a stop, STOP_GRACE_S at most (the rest are cut)."""
        if not tasks:
            return
        if self._stop is None:
            await asyncio.gather(*tasks)
            if self._stop is None:
                return
        pending = {t for t in tasks if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._stop is not None and pending:
            self._stop = self._stop.model_copy(
                update={"evidence": f"{self._stop.evidence}; {len(pending)} requests in flight cut"}
            )

    async def _closed_loop(
        self,
        index: int,
        session: aiohttp.ClientSession,
        concurrency: int,
        total: int | None,
        samples: list[Sample],
        progress: Progress | None,
        context: int | None = None,
    ) -> None:
        budget = _Budget(self, time.perf_counter(), total)
        warm = self.workload.warmup_requests
        sessions = self.workload.spec.is_sessions

        async def worker(i: int) -> None:
            mine = [0]  # closed loop: warm-up counts per client, so the cold-start wave is excluded
            if i:
                # Stagger the clients' first sends (a ramp of at most RAMP_MAX_S): real clients
                # never arrive in the same microsecond, and a synchronized burst would measure
                # the client's and server's burst handling rather than the server's latency.
                await asyncio.sleep(i * min(RAMP_SPACING_S, RAMP_MAX_S / concurrency))
            while budget.more():
                if sessions:  # each client holds one conversation at a time
                    convo = self.traffic.session(next(self._sessions))
                    await self._converse(index, session, convo, budget, samples, progress, mine, warm)
                    continue
                sample, body = self._next_request(index, mine[0] < warm, context)
                mine[0] += 1
                budget.issued += 1
                samples.append(await self._one(session, sample, body))
                if progress is not None:
                    progress(index, len(samples), total)

        loop = asyncio.get_running_loop()
        await self._drain({loop.create_task(worker(i)) for i in range(max(1, concurrency))})

    async def _converse(
        self,
        index: int,
        session: aiohttp.ClientSession,
        convo: Session,
        budget: _Budget,
        samples: list[Sample],
        progress: Progress | None,
        mine: list[int],
        warm: int,
    ) -> None:
        """One session, turn after turn: each turn sends the conversation so far with the
        answers the server gave, after the think time. A failed turn ends the session (the
        next turn would carry a conversation that never happened)."""
        while budget.more():
            planned = convo.next()
            if planned is None:
                return
            sample, body = self._request(index, mine[0] < warm, next(self._seq), planned)
            mine[0] += 1
            budget.issued += 1
            await self._one(session, sample, body, keep_answer=True)
            samples.append(sample)
            convo.answered(planned, sample.answer_text, sample.input_tokens)
            sample.answer_text = None
            if progress is not None:
                progress(index, len(samples), budget.total)
            if not sample.ok:
                return
            think = convo.think()
            if think > 0 and budget.more():
                await asyncio.sleep(min(think, budget.left_s()))

    async def _open_loop(
        self,
        index: int,
        session: aiohttp.ClientSession,
        rate: float,
        total: int | None,
        samples: list[Sample],
        progress: Progress | None,
        notes: list[str],
        context: int | None = None,
    ) -> float:
        """Requests (or, for sessions, whole conversations) arrive at `rate` per second:
        Poisson, constant, or gamma with the workload's burstiness."""
        w = self.workload
        loop = asyncio.get_running_loop()
        cap = asyncio.Semaphore(w.max_concurrency) if w.max_concurrency else None
        lags: list[float] = []
        tasks: set[asyncio.Task[None]] = set()
        capped = 0
        sessions = w.spec.is_sessions
        burstiness = w.spec.burstiness

        async def fire(sample: Sample, body: bytes) -> None:
            try:
                samples.append(await self._one(session, sample, body))
                if progress is not None:
                    progress(index, len(samples), total)
            finally:
                if cap is not None:
                    cap.release()

        async def converse(convo: Session, warmup: bool) -> None:
            try:
                await self._converse(
                    index, session, convo, budget, samples, progress, [0], (1 << 30) if warmup else 0
                )
            finally:
                if cap is not None:
                    cap.release()

        await warm(
            session, self.target, self.headers, min(WARM_CONNECTIONS, w.max_concurrency or WARM_CONNECTIONS)
        )
        budget = _Budget(self, time.perf_counter(), total)
        next_at = time.perf_counter()
        arrivals = 0
        while budget.more():
            await until(next_at - (0.0 if sessions else LEAD_S), exact=sessions)
            if cap is not None:
                if cap.locked():
                    capped += 1
                await cap.acquire()
            lags.append(max(0.0, (time.perf_counter() - next_at) * 1000.0))
            warmup = arrivals < w.warmup_requests
            arrivals += 1
            task: asyncio.Task[None]
            if sessions:
                task = loop.create_task(converse(self.traffic.session(next(self._sessions)), warmup))
            else:
                sample, body = self._next_request(index, warmup, context)
                sample.scheduled_ns = sample.hold_until_ns = int(next_at * 1e9)
                budget.issued += 1
                task = loop.create_task(fire(sample, body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if burstiness is not None:  # gamma: shape k, mean 1 / rate
                gap = self.rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
            elif w.arrival == "poisson":
                gap = self.rng.expovariate(rate)
            else:
                gap = 1.0 / rate
            next_at += gap
            if sessions and budget.total is not None and arrivals >= budget.total:
                break
        await self._drain(tasks)
        if capped:
            notes.append(f"{capped} arrivals waited for the concurrency cap ({w.max_concurrency})")
        late = [lag for s in samples if (lag := s.dispatch_lag_ms) is not None]
        return float(np.percentile(late, 99)) if late else (float(np.percentile(lags, 99)) if lags else 0.0)

    async def _trace_loop(
        self,
        index: int,
        session: aiohttp.ClientSession,
        scale: float,
        total: int | None,
        samples: list[Sample],
        progress: Progress | None,
    ) -> float:
        """Replay the trace at `scale` times its speed: each request leaves at its own time
        (its body made before it is due), bounded by the step's count and duration."""
        w = self.workload
        loop = asyncio.get_running_loop()
        plan = self.traffic.trace(total, w.duration_per_step_s, scale)
        tasks: set[asyncio.Task[None]] = set()
        lags: list[float] = []

        cap = asyncio.Semaphore(w.max_concurrency) if w.max_concurrency else None

        async def fire(sample: Sample, body: bytes) -> None:
            try:
                samples.append(await self._one(session, sample, body))
                if progress is not None:
                    progress(index, len(samples), len(plan))
            finally:
                if cap is not None:
                    cap.release()

        horizon = w.duration_per_step_s
        upcoming = iter(enumerate(plan))
        ready: deque[tuple[float, Sample, bytes]] = deque()  # bodies made ahead of their time

        def prepare() -> bool:
            found = next(upcoming, None)
            if found is None:
                return False
            n, (at, request) = found
            seq = next(self._seq)
            sample, body = self._request(index, n < w.warmup_requests, seq, self.traffic.traced(request, seq))
            ready.append((at, sample, body))
            return True

        # Before the clock starts: the first bodies made, connections open.
        while len(ready) < LOOKAHEAD and prepare():
            pass
        await warm(
            session, self.target, self.headers, min(WARM_CONNECTIONS, w.max_concurrency or WARM_CONNECTIONS)
        )
        t0 = time.perf_counter() + 0.01

        while ready or prepare():
            at = ready[0][0]
            # Make the next bodies while there is time before this one is due, one at a time
            # with the loop's I/O served between them: a burst of arrivals then leaves without
            # waiting for its prompts to be built.
            for _ in range(LOOKAHEAD - len(ready)):
                if t0 + at - time.perf_counter() <= PREPARE_SLACK_S or not prepare():
                    break
                await asyncio.sleep(0)  # a yield between two bodies: the loop's I/O goes on
            await until(t0 + at - LEAD_S, exact=False)  # the client holds it until it is due
            if horizon is not None and time.perf_counter() - t0 > horizon:
                break  # the step's time is up: a probe that fell behind sends no more
            if self._stop is not None:
                break  # the guard stopped the step
            _, sample, body = ready.popleft()
            if cap is not None:  # a request that waits for the cap leaves late: its lag says so
                await cap.acquire()
            sample.scheduled_ns = sample.hold_until_ns = int((t0 + at) * 1e9)
            lags.append(max(0.0, (time.perf_counter() - t0 - at) * 1000.0))
            task = loop.create_task(fire(sample, body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await self._drain(tasks)
        late = [lag for s in samples if (lag := s.dispatch_lag_ms) is not None]
        return float(np.percentile(late, 99)) if late else (float(np.percentile(lags, 99)) if lags else 0.0)

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
        contexts: list[int | None] = [None] * len(self.workload.levels)
        levels = list(self.workload.levels)
        if self.workload.spec.kind == "long_context":
            try:
                steps_of = self.context_plan()
            except ProbeError as exc:
                return RunResult(started, datetime.now(UTC), "failed", [], pre, str(exc))
            contexts, levels = list(steps_of), [self.workload.levels[0]] * len(steps_of)
        try:
            index = 0
            level: float | None = search.first() if search is not None else levels[0]
            while level is not None:
                context = None if search is not None else contexts[index]
                step = await self.run_step(index, level, progress, context=context)
                stop = step.summary.stopped
                if stop is not None and search is None and index + 1 < len(levels):
                    # A stopped step: the heavier levels would only measure the same breakdown.
                    step.summary.stopped = stop.model_copy(update={"skipped_levels": levels[index + 1 :]})
                    levels = levels[: index + 1]
                steps.append(step)
                if on_step is not None:
                    await on_step(step)
                index += 1
                if search is not None:  # the next load follows from this step's verdict
                    met = step.summary.meets(self.workload.slo)
                    elapsed = (datetime.now(UTC) - started).total_seconds()
                    level = search.next(level, met, elapsed_s=elapsed)
                else:
                    level = levels[index] if index < len(levels) else None
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

    def context_plan(self) -> list[int]:
        """long_context: the steps' prompt lengths, up to the model's context length (its card's,
        else the one the workload declares)."""
        spec = self.workload.spec
        if spec.context_tokens:
            return list(spec.context_tokens)
        context = self.context_length or spec.context_max
        if context is None:
            raise ProbeError(
                "long_context needs the model's context length: its /v1/models card does not say; "
                "declare context_max in the workload"
            )
        out = self.traffic.output.expected
        found = context_steps(spec.start_tokens or 1024, context, int(out))
        if not found:
            raise ProbeError(f"a context of {context} tokens leaves no room for {out:g} output tokens")
        return found


@dataclass
class _Budget:
    """A step's bound: requests issued against its count, time against its duration."""

    prober: Prober
    started: float
    total: int | None
    issued: int = 0

    def more(self) -> bool:
        if self.prober._stop is not None:  # the guard stopped the step
            return False
        if self.total is not None and self.issued >= self.total:
            return False
        d = self.prober.workload.duration_per_step_s
        return not (d is not None and time.perf_counter() - self.started >= d)

    def left_s(self) -> float:
        """Seconds until the step's duration is up (a think time never outlasts the step)."""
        d = self.prober.workload.duration_per_step_s
        return float("inf") if d is None else max(0.0, d - (time.perf_counter() - self.started))


def _arrival_rate(samples: list[Sample]) -> float | None:
    """Requests per second from the first send to the last (a trace step's achieved load)."""
    sent = sorted(s.sent_ns for s in samples if not s.warmup)
    if len(sent) < 2 or sent[-1] <= sent[0]:
        return None
    return (len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9)


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
    context: int | None = None


def _run_shard(job: _Shard) -> tuple[list[Sample], bool, list[str], float]:
    """One worker process's share of a step (runs in a spawned process)."""
    from app.aio import run_fast

    prober = Prober(
        job.target, job.workload, timeouts=job.timeouts, limits=job.limits, tokenizer=job.tokenizer
    )
    prober.options = job.options
    prober.prompts.calibration = job.calibration
    prober._seq = itertools.count(job.first_seq)
    prober._sessions = itertools.count(job.first_seq)
    result = run_fast(prober._local_step(job.step_index, job.workload.levels[0], None, job.context))
    quality = result.summary.quality
    notes = [note for note in quality.client_notes if not note.startswith("probe CPU")]
    return result.samples, quality.client_bound, notes, float(quality.client_cpu_pct or 0.0)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


__all__ = ["ErrorKind", "ProbeError", "Prober", "RunResult", "StepResult", "Workload"]
