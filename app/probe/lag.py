"""Whether the probe kept up: a 20 ms ticker in the probe's event loop measures how late the
loop wakes (the bound on every stamp's error), the stalls that touched what a step reports, and
the probe's CPU share. The runner marks a step client_bound from these (docs/DESIGN.md,
"client_bound")."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from app.probe.types import Sample

LOOP_LAG_LIMIT_MS = 5.0  # p99 of the ticker's lateness
LOOP_STALL_LIMIT_MS = 20.0  # one stall this long can delay a whole burst of first tokens
STALL_CHUNK_SHARE = 0.005  # chunks stamped in stalls beyond this share could move an ITL p99
STALL_SPILL_NS = 5_000_000  # reads that waited out a stall are stamped just after it ends
TICK_S = 0.02
TIMER_GRANULARITY_MS = 1.0  # epoll and libuv wake timers on whole milliseconds: not lag


class LagMonitor:
    """Measures how late the event loop wakes a 20 ms ticker, and the probe's CPU share.

    The lateness is read on the monotonic clock (uvloop's loop.time() ticks in whole
    milliseconds), less the 1 ms granularity with which event loops wake timers. A chunk that
    arrives while the loop is busy waits as long to be stamped, so this bounds the stamping
    error. The closed-loop ramp (clients starting, which delays sends, not stamps) is left out."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        # (start_ns, end_ns, ms the OS kept the probe off its core meanwhile, or None)
        self.stalls: list[tuple[int, int, float | None]] = []
        self._task: asyncio.Task[None] | None = None
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self._from = 0.0
        self.cpu_share = 0.0

    async def _run(self) -> None:
        clock = time.perf_counter
        expected = clock() + TICK_S
        waited = _run_delay_ns()
        while True:
            await asyncio.sleep(max(0.0, expected - clock()))
            now = clock()
            before, waited = waited, _run_delay_ns()
            if now >= self._from:
                lag = max(0.0, (now - expected) * 1000.0 - TIMER_GRANULARITY_MS)
                self.lags_ms.append(lag)
                if lag > LOOP_STALL_LIMIT_MS:
                    off_core = None if waited is None or before is None else (waited - before) / 1e6
                    self.stalls.append((int(expected * 1e9), int(now * 1e9) + STALL_SPILL_NS, off_core))
            expected = now + TICK_S

    def start(self, settle_s: float = 0.0) -> None:
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        self._from = self._wall0 + settle_s
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        wall = time.perf_counter() - self._wall0
        self.cpu_share = (time.process_time() - self._cpu0) / wall if wall > 0 else 0.0
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def p99(self) -> float:
        return float(np.percentile(self.lags_ms, 99)) if self.lags_ms else 0.0

    def worst(self) -> float:
        return max(self.lags_ms, default=0.0)

    def stall_note(self, samples: list[Sample]) -> tuple[bool, str | None]:
        """Whether the stalls touched a stamp a statistic reads, and a note that says so."""
        if not self.stalls:
            return False, None
        windows = self.stalls
        samples = [s for s in samples if not s.warmup]  # warm-up feeds no statistic

        def inside(ns: int | None) -> bool:
            return ns is not None and any(start <= ns <= end for start, end, _ in windows)

        ends = sum(inside(s.first_content_ns) or inside(s.last_content_ns) for s in samples)
        chunks = sum(len(s.chunk_ns) for s in samples)
        hit = sum(inside(ns) for s in samples for ns in s.chunk_ns)
        worst = self.worst()
        off = [o for _, _, o in windows if o is not None]
        cause = (
            f"; the OS ran something else on its core for {max(off):.0f} ms" if off and max(off) >= 1 else ""
        )
        many = "once" if len(windows) == 1 else f"{len(windows)} times"
        note = (
            f"event loop stalled {many}, at worst {worst:.1f} ms (limit {LOOP_STALL_LIMIT_MS:g} ms{cause}): "
            f"{ends} first/last tokens and {hit} of {chunks} chunks were stamped in a stall"
        )
        return ends > 0 or hit > STALL_CHUNK_SHARE * max(chunks, 1), note


def _run_delay_ns() -> int | None:
    """Nanoseconds this process has waited runnable for a core (Linux schedstat), or None."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
