"""A simulator in its own process (its own core), as a real endpoint would be."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.simulator.process import simulator_process


@contextmanager
def simulator(*args: str) -> Iterator[str]:
    """Start `smartbench simulate ARGS` on a free port; yields its base URL (…/v1)."""
    with simulator_process(*args) as sim:
        yield sim.base_url
