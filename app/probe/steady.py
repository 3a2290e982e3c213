"""The steady-state window of a step: where the load was what the step asked for and latency
had settled, so the figures describe the endpoint under that load, not its start and drain.

The rule (DESIGN.md, "Steady-state window"):
- Ramp-up ends when the load is reached: a closed loop's in-flight requests first reach its
  concurrency (its clients start staggered); an open loop or a trace is at its rate from the
  first send.
- Latency has settled from the truncation point MSER-5 finds in the TTFT series of the requests
  sent after that (White, 1997, "An effective truncation heuristic for bias reduction in
  simulation output"; White, Cobb and Spratt, 2000: batch means of 5, the truncation d that
  minimises the marginal standard error of what is left, searched over the first half).
- Ramp-down starts at the last send: after it nobody replaces a finished request, and in-flight
  requests drain.
The window's figures use the requests sent inside it (latency) and the tokens that arrived
inside it (throughput). With too few requests in it the whole step is the window."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.probe.types import Sample
from app.summary import SteadyWindow

BATCH = 5  # MSER-5
MIN_REQUESTS = 40  # fewer in the window: the whole step is used
MIN_SHARE = 0.5  # ... or a window holding under half the step's requests


def mser_truncation(values: Sequence[float], batch: int = BATCH) -> int:
    """How many leading values to drop (a multiple of `batch`): MSER-`batch`."""
    n = len(values) // batch
    if n < 4:
        return 0
    means = np.asarray(values[: n * batch], dtype=float).reshape(n, batch).mean(axis=1)
    best, best_d = np.inf, 0
    # MSER(d) = sum of squared deviations of the batch means after d, over (n - d)^2.
    suffix_sum = np.cumsum(means[::-1])[::-1]
    suffix_sq = np.cumsum((means**2)[::-1])[::-1]
    for d in range(n // 2 + 1):
        k = n - d
        ss = suffix_sq[d] - suffix_sum[d] ** 2 / k
        score = ss / (k * k)
        if score < best - 1e-15:
            best, best_d = score, d
    return best_d * batch


def _reached(samples: Sequence[Sample], level: int) -> int | None:
    """When in-flight requests first reached `level` (ns), else None."""
    events: list[tuple[int, int]] = []
    for s in samples:
        events.append((s.sent_ns, 1))
        events.append((s.end_ns or s.sent_ns, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a send at the same instant
    running = 0
    for when, delta in events:
        running += delta
        if running >= level:
            return when
    return None


def steady_window(samples: Sequence[Sample], *, concurrency: int | None) -> SteadyWindow:
    """The window of `samples` (one step's measured requests); `concurrency` for a closed loop."""
    if not samples:
        return SteadyWindow()
    ordered = sorted(samples, key=lambda s: s.sent_ns)
    first = ordered[0].sent_ns
    last_send = ordered[-1].sent_ns
    step_end = max((s.end_ns or s.sent_ns) for s in ordered)
    whole = SteadyWindow(start_s=0.0, end_s=(step_end - first) / 1e9, requests=len(ordered), whole_step=True)
    start = first
    if concurrency is not None and concurrency > 1:
        reached = _reached(ordered, concurrency)
        if reached is None:
            whole.reason = f"in-flight requests never reached {concurrency}"
            return whole
        start = reached
    after = [s for s in ordered if s.sent_ns >= start]
    ttfts = [s.ttft_ms for s in after if s.ok and s.ttft_ms is not None]
    cut = mser_truncation(ttfts)
    if cut:
        settled = [s for s in after if s.ok and s.ttft_ms is not None][cut]
        start = max(start, settled.sent_ns)
    inside = [s for s in ordered if start <= s.sent_ns <= last_send]
    if len(inside) < MIN_REQUESTS or len(inside) < MIN_SHARE * len(ordered) or last_send <= start:
        whole.reason = (
            f"too few requests in the steady window ({len(inside)} of {len(ordered)}): the whole step is used"
        )
        return whole
    return SteadyWindow(
        start_s=(start - first) / 1e9,
        end_s=(last_send - first) / 1e9,
        requests=len(inside),
        excluded_ramp_up=sum(1 for s in ordered if s.sent_ns < start),
        settled_after=cut,
        whole_step=False,
    )


def tokens_between(samples: Sequence[Sample], start_ns: int, end_ns: int) -> float:
    """Output tokens that arrived in [start_ns, end_ns]: per chunk where its tokens are known,
    else the request's output spread evenly over its chunks."""
    total = 0.0
    for s in samples:
        if not s.ok or not s.chunk_ns:
            continue
        if s.chunk_tokens is not None and len(s.chunk_tokens) == len(s.chunk_ns):
            total += sum(
                n for t, n in zip(s.chunk_ns, s.chunk_tokens, strict=True) if start_ns <= t <= end_ns
            )
        elif s.osl is not None:
            per = s.osl / len(s.chunk_ns)
            total += per * sum(1 for t in s.chunk_ns if start_ns <= t <= end_ns)
    return total
