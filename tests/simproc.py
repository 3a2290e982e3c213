"""A simulator in its own process (its own core), as a real endpoint would be."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.simulator.process import simulator_process


@contextmanager
def simulator(*args: str, port: int | None = None) -> Iterator[str]:
    """Start `smartbench simulate ARGS` on a free port (or `port`); yields its base URL (…/v1)."""
    with simulator_process(*args, port=port) as sim:
        yield sim.base_url
