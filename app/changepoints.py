"""Change points in history: where a series of runs' figures stepped to another level.

The series (one figure of one endpoint on one profile, runs in time order) is divided by its
median, its noise estimated from the first differences (MAD / sqrt 2, robust to the steps
themselves), and segmented by PELT (Killick, Fearnhead and Eckley 2012, "Optimal detection of
changepoints with a linear computational cost"; ruptures' KernelCPD, whose linear kernel is the
L2 cost) with a
BIC-like penalty of 3 x sigma^2 x ln(n), each segment at least MIN_SIZE runs. PELT is exact for
its penalised cost, linear in the series' length, and its penalty scales with the measured
noise, so a quiet series shows small steps and a noisy one only large steps. Each boundary is
then kept only where the runs on its two sides differ by Welch's t-test at ALPHA and by at
least MIN_CHANGE_PCT: a change point carries its medians before and after, its size and its
p-value. Why PELT rather than E-Divisive means (Apache Otava's method): ruptures is a small,
well-kept library with PELT exact for its cost, while Otava's package brings its own database
clients and pins numpy; on generated series (1-3 steps of 5-30 %, 3 % noise) this rule finds the
steps with precision and recall near 0.99 (tests/test_changepoints.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import ruptures
from pydantic import BaseModel
from scipy import stats

MIN_SIZE = 4  # runs on each side of a change point, at least
ALPHA = 0.01
MIN_CHANGE_PCT = 1.0
PENALTY = 3.0  # x sigma^2 x ln(n)


class Shift(BaseModel):
    """A change point: the series moved from `before` to `after` at position `index` (the first
    value after the change)."""

    index: int
    before: float  # the median of the segment before
    after: float  # the median of the segment after
    change_pct: float
    p_value: float


FLAT = 1e-9  # relative spread below which a side is flat


def find(values: Sequence[float]) -> list[Shift]:
    """The change points of a series (None values must be left out by the caller)."""
    y = np.asarray(values, dtype=float)
    n = y.size
    if n < 2 * MIN_SIZE or not np.all(np.isfinite(y)):
        return []
    base = float(np.median(y))
    if base == 0:
        return []
    z = y / base
    d = np.diff(z)
    sigma = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2.0)
    if sigma <= 0:  # a flat series (or one step in a flat one): the smallest scale that still tells
        sigma = max(float(np.std(z)) * 1e-3, 1e-9)
    # PELT over the linear kernel is PELT over the L2 cost, in ruptures' C code (3 s -> 1 ms at
    # 1,000 runs against its Python `Pelt(model="l2")`, the same change points).
    cuts = ruptures.KernelCPD(kernel="linear", min_size=MIN_SIZE).fit(z.reshape(-1, 1))
    bounds = [int(b) for b in cuts.predict(pen=PENALTY * sigma * sigma * math.log(n))][:-1]
    edges = [0, *bounds, n]
    found = []
    for i, cut in enumerate(bounds):
        before, after = y[edges[i] : cut], y[cut : edges[i + 2]]
        m_before, m_after = float(np.median(before)), float(np.median(after))
        if m_before == 0:
            continue
        change = (m_after / m_before - 1.0) * 100.0
        # Flat to rounding on both sides (a TPOT of exactly 5 ms run after run): no variance to
        # test against, and the t-test would only lose its precision.
        if np.ptp(before) <= FLAT * abs(m_before) and np.ptp(after) <= FLAT * abs(m_after):
            p = 0.0 if abs(m_after - m_before) > FLAT * abs(m_before) else 1.0
        else:
            p = float(stats.ttest_ind(before, after, equal_var=False).pvalue)
        if p < ALPHA and abs(change) >= MIN_CHANGE_PCT:
            found.append(Shift(index=cut, before=m_before, after=m_after, change_pct=change, p_value=p))
    return found
