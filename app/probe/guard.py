"""Stops that protect a measurement: a step ends early, with its reason and evidence, when going
on would only measure a broken state.

- Over-saturated (open loop and trace replay, where arrivals do not wait for answers): the
  requests in flight (client side; the server's waiting queue where its telemetry says) grow
  with time, judged by a least-squares line over the last WINDOW_S seconds of once-a-second
  counts: its slope's 95 % interval above zero, and the count up by at least half and by at
  least MIN_GROWTH requests over the window. A closed loop cannot pile up (each client waits
  for its answer), and a long prompt's TTFT, however long, is no growth: neither stops.
- Errors: at least MIN_REQUESTS ended and more than ERROR_LIMIT of them failed.
- TTFT far beyond the SLO: the median TTFT of the last MIN_REQUESTS completions over
  TTFT_MULTIPLE times the SLO's TTFT limit.

A stopped step is kept (its figures, flagged `stopped`), never meets the SLO, and a sweep skips
its heavier levels."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from app.domain import SLO
from app.probe.types import Sample
from app.summary import Stop

WINDOW_S = 10.0
MIN_SPAN_S = 5.0  # seconds of counts before saturation is judged
MIN_GROWTH = 10
ERROR_LIMIT = 0.2
MIN_REQUESTS = 20
TTFT_MULTIPLE = 10.0


class Guard:
    """Watches one step; `check()` once a second says whether to stop it."""

    def __init__(
        self,
        *,
        slo: SLO,
        open_loop: bool,
        in_flight: Callable[[], int],
        queue: Callable[[], float | None] = lambda: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.slo = slo
        self.open_loop = open_loop
        self.in_flight = in_flight
        self.queue = queue
        self.clock = clock
        self.started = clock()
        self.counts: deque[tuple[float, float]] = deque()
        self.stop: Stop | None = None

    def check(self, samples: Sequence[Sample]) -> Stop | None:
        if self.stop is not None:
            return self.stop
        now = self.clock()
        self.stop = self._errors(samples, now) or self._ttft(samples, now) or self._saturation(now)
        return self.stop

    def _at(self, now: float) -> float:
        return round(now - self.started, 1)

    def _errors(self, samples: Sequence[Sample], now: float) -> Stop | None:
        ended = [s for s in samples if not s.warmup]
        if len(ended) < MIN_REQUESTS:
            return None
        failed = sum(1 for s in ended if not s.ok)
        if failed / len(ended) <= ERROR_LIMIT:
            return None
        return Stop(
            reason="errors",
            at_s=self._at(now),
            evidence=f"{failed} of {len(ended)} requests failed (limit {ERROR_LIMIT:.0%})",
        )

    def _ttft(self, samples: Sequence[Sample], now: float) -> Stop | None:
        limit = self.slo.ttft_ms
        if limit is None:
            return None
        recent = [t for s in samples[-MIN_REQUESTS:] if s.ok and (t := s.ttft_ms) is not None]
        if len(recent) < MIN_REQUESTS:
            return None
        median = float(np.median(recent))
        if median <= TTFT_MULTIPLE * limit:
            return None
        return Stop(
            reason="ttft",
            at_s=self._at(now),
            evidence=f"median TTFT of the last {len(recent)} requests {median:,.0f} ms, over "
            f"{TTFT_MULTIPLE:g} x the SLO's {limit:g} ms",
        )

    def _saturation(self, now: float) -> Stop | None:
        if not self.open_loop:
            return None
        waiting = self.queue()
        count = float(waiting) if waiting is not None else float(self.in_flight())
        self.counts.append((now, count))
        while self.counts and self.counts[0][0] < now - WINDOW_S:
            self.counts.popleft()
        if len(self.counts) < 4 or self.counts[-1][0] - self.counts[0][0] < MIN_SPAN_S:
            return None
        t = np.asarray([c[0] for c in self.counts])
        y = np.asarray([c[1] for c in self.counts])
        if np.ptp(y) == 0:
            return None
        fit = stats.linregress(t, y)
        half = float(stats.t.ppf(0.975, len(t) - 2)) * float(fit.stderr)
        low = float(fit.slope) - half
        first, last = float(y[0]), float(y[-1])
        span = float(t[-1] - t[0])
        grew = last - first
        if not (low > 0 and grew >= MIN_GROWTH and last >= 1.5 * max(first, 1.0)) or not math.isfinite(low):
            return None
        what = "waiting in the server's queue" if waiting is not None else "in flight"
        return Stop(
            reason="saturated",
            at_s=self._at(now),
            evidence=f"requests {what} grew from {first:.0f} to {last:.0f} over {span:.0f} s "
            f"({fit.slope:.1f}/s, 95 % CI {low:.1f}-{float(fit.slope) + half:.1f}/s)",
        )
