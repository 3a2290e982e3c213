"""Running the probe and the simulator on the fastest event loop available."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """uvloop where installed: less overhead per socket event, so the simulator and the probe
    add less of their own time to what they measure (bench/loadgen.py has the figures)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
