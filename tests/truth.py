"""Timing assertions that hold on a busy machine: a figure is within tolerance of the simulator's
known delays, or the step is flagged client_bound with its reason. The simulator publishes how late
it emitted its own timed events (/metrics); that lateness widens the tolerance, since then the
server itself did not keep the delays."""

from __future__ import annotations

import re
from typing import Any

import httpx


def simulator_lateness_ms(base_url: str) -> float:
    """How late the simulator emitted its timed events (p99), from its /metrics."""
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=5).text
    match = re.search(r'smartbench_sim_timing_error_us\{quantile="0.99"\} ([0-9.]+)', text)
    return float(match.group(1)) / 1000.0 if match else 0.0


def flagged(step: dict[str, Any]) -> bool:
    """The step says its client was not up to it, and why."""
    quality = step["quality"]
    return bool(quality["client_bound"]) and any(
        not n.startswith("probe CPU") for n in quality["client_notes"]
    )


def truthful(
    step: dict[str, Any], metric: str, stat: str, truth: float, tolerance: float, server_late_ms: float = 0.0
) -> None:
    """`step[metric][stat]` is within tolerance of the truth, or the step is flagged."""
    value = step[metric][stat]
    if abs(value - truth) <= tolerance + server_late_ms:
        return
    assert flagged(step), (
        f"{metric} {stat} = {value:.2f} ms, truth {truth} ± {tolerance} ms (server late by up to "
        f"{server_late_ms:.2f} ms), and the step was not flagged client_bound: {step['quality']}"
    )
