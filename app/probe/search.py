"""SLO search: the highest load (concurrency or request rate) at which a step meets the SLO.

Bracketing, then bisection. From the start load, double while steps meet the SLO (up to the
ceiling) or halve while they break it (down to the floor), until one load that meets and one
that breaks are known; then measure the middle of the two until they are one load apart (one
client for concurrency, 5 % for a rate). The steps, the time and the loads are bounded; every
step is an ordinary measured step, and the answer is the heaviest step that met the SLO, as
measured, never interpolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from app.environment import SearchReport
from app.snapshot import ProfileSnapshot

RATE_PRECISION = 0.05  # bisection on a rate stops when the bracket is within 5 %


@dataclass(frozen=True)
class SearchSpec:
    start: float
    ceiling: float
    integer: bool  # concurrency: whole clients
    max_steps: int = 10
    budget_s: float = 900.0

    @classmethod
    def from_profile(cls, profile: ProfileSnapshot) -> SearchSpec | None:
        """A searching profile's bounds: from its lowest level up to its highest (older
        snapshots have no search)."""
        if not profile.search or not profile.load_levels:
            return None
        levels = [float(v) for v in profile.load_levels]
        return cls(
            start=min(levels),
            ceiling=max(levels),
            integer=(profile.load_mode or "concurrency") == "concurrency",
            max_steps=int(profile.search_max_steps or 10),
            budget_s=float(profile.search_budget_s or 900.0),
        )

    @property
    def floor(self) -> float:
        return 1.0 if self.integer else self.start / 16

    def closed(self, lo: float, hi: float) -> bool:
        """The bracket is as narrow as a step can tell apart."""
        return hi - lo <= 1.0 if self.integer else hi - lo <= RATE_PRECISION * lo


@dataclass
class Search:
    """Feed it each step's verdict; it says which load to measure next (None: done) and why."""

    spec: SearchSpec
    meets: float | None = None  # the heaviest load that met the SLO
    breaks: float | None = None  # the lightest load that broke it
    trail: list[tuple[float, bool]] = field(default_factory=list)
    stopped: str | None = None

    def first(self) -> float:
        return self._round(min(max(self.spec.start, self.spec.floor), self.spec.ceiling))

    def _round(self, load: float) -> float:
        return float(max(1, math.floor(load))) if self.spec.integer else round(load, 6)

    def next(self, load: float, met: bool, *, elapsed_s: float) -> float | None:
        self.trail.append((load, met))
        if met:
            self.meets = load if self.meets is None else max(self.meets, load)
        else:
            self.breaks = load if self.breaks is None else min(self.breaks, load)
        following, self.stopped = self._decide(load, elapsed_s)
        return following

    def _decide(self, load: float, elapsed_s: float) -> tuple[float | None, str | None]:
        """The next load, or None and why the search ends."""
        if len(self.trail) >= self.spec.max_steps:
            return None, f"the step limit ({self.spec.max_steps})"
        if elapsed_s >= self.spec.budget_s:
            return None, f"the time budget ({self.spec.budget_s:g} s)"
        if self.breaks is None:  # everything so far met: go heavier
            if load >= self.spec.ceiling:
                return None, f"the ceiling ({self.spec.ceiling:g}) meets the SLO"
            return self._fresh(min(load * 2, self.spec.ceiling))
        if self.meets is None:  # everything so far broke: go lighter
            if load <= self.spec.floor:
                return None, f"even the floor ({self.spec.floor:g}) breaks the SLO"
            return self._fresh(max(load / 2, self.spec.floor))
        middle = self._round((self.meets + self.breaks) / 2)
        if self.spec.closed(self.meets, self.breaks) or not self.meets < middle < self.breaks:
            return None, "bracketed to one step"
        return middle, None

    def _fresh(self, load: float) -> tuple[float | None, str | None]:
        load = self._round(load)
        if any(tried == load for tried, _ in self.trail):
            return None, "no untried load left in the bracket"
        return load, None

    def report(self) -> SearchReport:
        return SearchReport(
            start=self.spec.start,
            ceiling=self.spec.ceiling,
            max_steps=self.spec.max_steps,
            budget_s=self.spec.budget_s,
            trail=list(self.trail),
            capacity=self.meets,
            breaks_at=self.breaks,
            stopped=self.stopped,
        )
