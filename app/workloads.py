"""Workloads: the traffic a profile sends (DESIGN.md, "Workloads").

A profile's `workload` is one `WorkloadSpec`: its `kind` says how requests are made, the fields
that kind takes say the rest, and its `seed` makes the prompts, lengths and arrivals
reproducible (the same seed sends the same traffic). No workload (an older profile) is the
synthetic kind with the profile's own input and output lengths. Lengths and think times are
`Dist`s, written compactly as `fixed:128`, `uniform:64-256`, `normal:512,0.1` (mean, relative
standard deviation), `lognormal:512,0.6`, `exponential:2` or `histogram:128=5,512=3,2048=1`
(value=weight). Pure: no I/O, no database, no web."""

from __future__ import annotations

import math
import random
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DistKind = Literal["fixed", "uniform", "normal", "lognormal", "exponential", "histogram"]
WorkloadKind = Literal["synthetic", "shared_prefix", "multi_turn", "trace", "dataset", "long_context"]
WORKLOAD_KINDS: tuple[str, ...] = WorkloadKind.__args__  # type: ignore[attr-defined]

# Mooncake's traces key prompts in blocks of 512 tokens: equal hash ids are equal blocks.
TRACE_BLOCK_TOKENS = 512


MAX_VALUE = 1_000_000.0  # the most tokens (or seconds) a distribution gives: as a profile's lengths
MAX_THINK_S = 600.0  # a think time longer than this is cut to it


class Dist(BaseModel):
    """A distribution of lengths (tokens) or times (seconds), sampled with the workload's seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dist: DistKind = "fixed"
    mean: float | None = Field(default=None, ge=0, le=MAX_VALUE)  # fixed, normal, lognormal, exponential
    spread: float = Field(default=0.0, ge=0, le=5)  # normal, lognormal: std-dev / mean
    low: float | None = Field(default=None, ge=0, le=MAX_VALUE)  # uniform: bounds; any other: a floor
    high: float | None = Field(default=None, ge=0, le=MAX_VALUE)  # uniform: bounds; any other: a ceiling
    histogram: list[tuple[float, float]] | None = Field(default=None, max_length=1000)  # (value, weight)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.dist == "uniform":
            if self.low is None or self.high is None or self.low > self.high:
                raise ValueError("a uniform distribution needs low <= high")
        elif self.dist == "histogram":
            if not self.histogram or any(
                not (0 <= w <= MAX_VALUE and 0 <= v <= MAX_VALUE) for v, w in self.histogram
            ):
                raise ValueError(f"a histogram needs value=weight pairs between 0 and {MAX_VALUE:g}")
            if sum(w for _, w in self.histogram) <= 0:
                raise ValueError("a histogram needs a positive weight")
        elif self.mean is None:
            raise ValueError(f"a {self.dist} distribution needs a mean")
        return self

    @classmethod
    def fixed(cls, value: float) -> Dist:
        return cls(dist="fixed", mean=value)

    @classmethod
    def parse(cls, text: str) -> Dist:
        """`fixed:128`, `128`, `uniform:64-256`, `normal:512,0.1`, `lognormal:512,0.6`,
        `exponential:2`, `histogram:128=5,512=3`; ValueError with what is wrong."""
        text = text.strip()
        kind, sep, rest = text.partition(":")
        if not sep:
            kind, rest = "fixed", text
        kind = kind.strip().lower()
        try:
            if kind == "fixed":
                return cls(dist="fixed", mean=float(rest))
            if kind == "uniform":
                low, high = rest.split("-")
                return cls(dist="uniform", low=float(low), high=float(high))
            if kind in ("normal", "lognormal"):
                mean, _, spread = rest.partition(",")
                return cls(dist=kind, mean=float(mean), spread=float(spread or 0))
            if kind == "exponential":
                return cls(dist="exponential", mean=float(rest))
            if kind == "histogram":
                pairs = [part.split("=") for part in rest.split(",") if part.strip()]
                return cls(dist="histogram", histogram=[(float(v), float(w)) for v, w in pairs])
        except ValidationError as exc:
            raise ValueError(
                "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            ) from None
        except (ValueError, TypeError):
            raise ValueError(f"{text!r} is not a distribution ({SYNTAX})") from None
        raise ValueError(f"unknown distribution {kind!r} ({SYNTAX})")

    def __str__(self) -> str:
        if self.dist == "fixed":
            return f"fixed:{self.mean:g}"
        if self.dist == "uniform":
            return f"uniform:{self.low:g}-{self.high:g}"
        if self.dist in ("normal", "lognormal"):
            return f"{self.dist}:{self.mean:g},{self.spread:g}"
        if self.dist == "exponential":
            return f"exponential:{self.mean:g}"
        return "histogram:" + ",".join(f"{v:g}={w:g}" for v, w in self.histogram or [])

    @property
    def expected(self) -> float:
        """The mean of the distribution (before any floor or ceiling)."""
        if self.dist == "uniform":
            return ((self.low or 0.0) + (self.high or 0.0)) / 2
        if self.dist == "histogram":
            pairs = self.histogram or []
            total = sum(w for _, w in pairs)
            return sum(v * w for v, w in pairs) / total if total else 0.0
        return float(self.mean or 0.0)

    def sample(self, rng: random.Random) -> float:
        mean = float(self.mean or 0.0)
        if self.dist == "fixed":
            value = mean
        elif self.dist == "uniform":
            value = rng.uniform(self.low or 0.0, self.high or 0.0)
        elif self.dist == "normal":
            value = rng.gauss(mean, mean * self.spread) if self.spread else mean
        elif self.dist == "lognormal":
            # The mean and relative spread of the lengths themselves, not of their logarithm.
            sigma2 = math.log1p(self.spread**2)
            value = rng.lognormvariate(math.log(max(mean, 1e-9)) - sigma2 / 2, math.sqrt(sigma2))
        elif self.dist == "exponential":
            value = rng.expovariate(1.0 / mean) if mean > 0 else 0.0
        else:
            pairs = self.histogram or []
            value = rng.choices([v for v, _ in pairs], weights=[w for _, w in pairs])[0]
        if self.low is not None and self.dist != "uniform":
            value = max(value, self.low)
        if self.high is not None and self.dist != "uniform":
            value = min(value, self.high)
        return max(0.0, min(value, MAX_VALUE))

    def tokens(self, rng: random.Random) -> int:
        """A length in tokens: at least one."""
        return max(1, round(self.sample(rng)))


SYNTAX = "fixed:N, uniform:LOW-HIGH, normal:MEAN,SPREAD, lognormal:MEAN,SPREAD, exponential:MEAN or histogram:V=W,..."

# Which fields each kind takes (besides kind and seed); any other set field is refused.
KIND_FIELDS: dict[str, frozenset[str]] = {
    "synthetic": frozenset({"input", "output", "burstiness"}),
    "shared_prefix": frozenset({"input", "output", "burstiness", "groups", "prefix_tokens", "order"}),
    "multi_turn": frozenset({"input", "output", "turns", "think_s", "system_tokens"}),
    "trace": frozenset({"dataset", "dataset_sha256"}),
    "dataset": frozenset({"dataset", "dataset_sha256", "output", "sessions", "think_s"}),
    "long_context": frozenset({"output", "context_tokens", "start_tokens", "context_max"}),
}
NEEDS: dict[str, tuple[str, ...]] = {
    "shared_prefix": ("groups", "prefix_tokens"),
    "trace": ("dataset",),
    "dataset": ("dataset",),
}


class WorkloadSpec(BaseModel):
    """What traffic a profile sends. Lengths left unset come from the profile's input and output
    lengths (`input_tokens_mean` with its relative spread, as a normal distribution)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: WorkloadKind = "synthetic"
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="the same seed sends the same traffic")
    input: Dist | None = Field(
        default=None,
        description="prompt tokens (shared_prefix: the suffix after the prefix; multi_turn: each user turn)",
    )
    output: Dist | None = Field(
        default=None,
        description="output tokens asked for (ignore_eos and min_tokens pin them where the server takes them)",
    )
    burstiness: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="open loop: gamma arrivals of this shape (1 = Poisson, below 1 burstier)",
    )
    # shared_prefix
    groups: int | None = Field(default=None, ge=1, le=100_000, description="prefix groups")
    prefix_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000, description="tokens each group's prefix holds"
    )
    order: Literal["random", "round_robin"] | None = Field(
        default=None, description="which group each request belongs to: drawn at random, or in turn"
    )
    # multi_turn (and dataset sessions)
    turns: Dist | None = Field(default=None, description="turns per session")
    think_s: Dist | None = Field(default=None, description="seconds between an answer and the next turn")
    system_tokens: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="a system prompt every session shares (an agent's instructions and tools)",
    )
    # trace and dataset
    dataset: str | None = Field(default=None, max_length=64, description="a stored dataset's name")
    dataset_sha256: str | None = Field(
        default=None, max_length=64, description="the content hash the run used (set when a run is queued)"
    )
    sessions: bool | None = Field(
        default=None, description="dataset: replay whole conversations as multi-turn sessions"
    )
    # long_context
    context_tokens: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="the steps' prompt lengths; unset: doubling from start_tokens up to the context length",
    )
    start_tokens: int | None = Field(default=None, ge=16, le=10_000_000)
    context_max: int | None = Field(default=None, ge=16, le=10_000_000, description="the declared context length, used where the model card does not say")  # fmt: skip

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Self:
        allowed = KIND_FIELDS[self.kind]
        extra = sorted(
            name
            for name in KIND_FIELDS["synthetic"].union(*KIND_FIELDS.values())
            if getattr(self, name) is not None and name not in allowed
        )
        if extra:
            raise ValueError(f"a {self.kind} workload does not take {', '.join(extra)}")
        missing = [name for name in NEEDS.get(self.kind, ()) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} workload needs {', '.join(missing)}")
        if self.think_s is not None and self.think_s.expected > MAX_THINK_S:
            raise ValueError(f"think times average at most {MAX_THINK_S:g} s")
        return self

    # -- what the probe and the pages read ------------------------------------------------------

    @property
    def is_sessions(self) -> bool:
        """Requests come in sessions whose turns wait for the previous answer."""
        return self.kind == "multi_turn" or (self.kind == "dataset" and bool(self.sessions))

    @property
    def uses_dataset(self) -> bool:
        return self.kind in ("trace", "dataset")

    @property
    def group_order(self) -> str:
        return self.order or "random"

    @property
    def turn_dist(self) -> Dist:
        return self.turns or Dist.fixed(4)

    @property
    def think_dist(self) -> Dist:
        return self.think_s or Dist.fixed(0)

    def describe(self) -> str:
        """One line for tables and pages."""
        parts: list[str] = [self.kind.replace("_", " ")]
        if self.kind == "shared_prefix":
            parts.append(
                f"{self.groups} groups x {self.prefix_tokens}-token prefix, {self.group_order} order"
            )
        if self.kind == "multi_turn":
            parts.append(f"turns {self.turn_dist}, think {self.think_dist} s")
            if self.system_tokens:
                parts.append(f"{self.system_tokens}-token shared system prompt")
        if self.uses_dataset:
            parts.append(f"dataset {self.dataset}" + (" as sessions" if self.sessions else ""))
        if self.kind == "long_context" and self.context_tokens:
            parts.append("context " + ", ".join(str(n) for n in self.context_tokens))
        for name in ("input", "output"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name} {value}")
        if self.burstiness is not None:
            parts.append(f"burstiness {self.burstiness:g}")
        parts.append(f"seed {self.seed}")
        return "; ".join(parts)


def lengths(mean: int | float | None, spread: float | None) -> Dist:
    """A profile's own length columns as a distribution: normal with a relative spread."""
    value = float(mean or 1)
    return Dist(dist="normal", mean=value, spread=float(spread or 0.0)) if spread else Dist.fixed(value)


def context_steps(start: int, context: int, output: int) -> list[int]:
    """Prompt lengths doubling from `start` while prompt + output fit the context, then the
    longest that fits (the S in SMART: how far TTFT and cost grow with context)."""
    top = context - output - 16  # the chat template's own tokens
    steps: list[int] = []
    n = start
    while n <= top:
        steps.append(n)
        n *= 2
    if top > 0 and (not steps or steps[-1] < top * 0.9):
        steps.append(top)
    return steps


def expected_shared_hits(groups_in_order: list[int], prefix_tokens: int, seen: set[int]) -> list[int]:
    """Per request, the prompt tokens its group's prefix can serve from a cache that already
    holds every prefix sent before it (`seen` carries the groups sent earlier in the run)."""
    out: list[int] = []
    for group in groups_in_order:
        out.append(prefix_tokens if group in seen else 0)
        seen.add(group)
    return out
