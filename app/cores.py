"""How many probe processes a host runs at once, and on which cores: each probe process gets a
core of its own (Linux), and the process that executes runs keeps to the cores left over."""

from __future__ import annotations

import functools
import os

from app.config import Settings


def probe_slots(settings: Settings) -> int:
    """How many probe processes this host runs at once: SMARTBENCH_MAX_PARALLEL_RUNS, else the
    cores this process may use less one for the web server and the database, at least 1."""
    return settings.runs.max_parallel_runs or max(1, available_cores() - 1)


def core_plan(settings: Settings) -> tuple[list[int], list[int]]:
    """(cores for this process, cores for probe processes). Without pinning, or with no core
    to spare, both are empty: the kernel places everything."""
    cores = list(starting_cores())
    slots = probe_slots(settings)
    if not settings.runs.pin_probes or len(cores) <= slots:
        return [], []
    return cores[:-slots], cores[-slots:]


def available_cores() -> int:
    """How many cores this process could run on when it started."""
    return len(starting_cores()) or os.cpu_count() or 1


@functools.cache
def starting_cores() -> tuple[int, ...]:
    """The cores this process could run on the first time anyone asked (its CPU affinity, as
    `taskset` or a container set it), before it kept itself off the probes' cores."""
    if not hasattr(os, "sched_getaffinity"):  # not on Linux
        return ()
    return tuple(sorted(os.sched_getaffinity(0)))
