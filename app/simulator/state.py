"""The simulated server's state: its engine and timeline, its persona, and its metrics sinks (the
counters, the server-side latency sums and the power model's energy integral) that the metrics
text (app/simulator/openai.render_metrics) reads and the HTTP protocol (server.py) feeds."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from app import __version__
from app.simulator.cache import PrefixCache
from app.simulator.engine import BatchEngine, FixedEngine, Timeline
from app.simulator.personas import persona
from app.simulator.presets import SimConfig

SERVER_HEADER = f"smartbench-simulator/{__version__}".encode()


class Connection(Protocol):
    transport: asyncio.Transport | None


@dataclass
class Metrics:
    requests_total: int = 0
    success_total: int = 0
    errors_total: int = 0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    started_ns: int = field(default_factory=time.perf_counter_ns)
    # The server's own latency, as engines export it: sums and counts of seconds.
    ttft_sum_s: float = 0.0
    ttft_count: int = 0
    itl_sum_s: float = 0.0
    itl_count: int = 0
    # Energy: the integral of the power model over time (what a DCGM energy counter reports).
    energy_j: float = 0.0
    power_at_ns: int = field(default_factory=time.perf_counter_ns)
    watts: float = 0.0


class SimulatorState:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.timeline = Timeline()
        self.engine: FixedEngine | BatchEngine | None
        if config.mode == "batching":
            self.engine = BatchEngine(config, self.timeline)
        elif config.mode == "fixed":
            self.engine = FixedEngine(config, self.timeline)
        else:
            self.engine = None
        self.metrics = Metrics()
        self.cache = PrefixCache(config.prefix_cache_tokens, config.prefix_block_tokens)
        self.requests: deque[list[dict[str, str]]] = deque(maxlen=max(1, config.keep_requests))
        self.persona = persona(config.persona)
        server = self.persona.server_header
        if server == "smartbench-simulator":
            server = SERVER_HEADER.decode()
        self.head = (f"Server: {server}\r\n" if server else "").encode() + b"".join(
            f"{k}: {v}\r\n".encode() for k, v in self.persona.extra_headers.items()
        )
        self.completions_seen = 0
        self.rng = random.Random(config.seed)
        self.created = int(time.time())
        self.connections: set[Connection] = set()  # open HTTP connections, closed on stop
        self._ids = 0
        self.power_tick()

    def remember(self, messages: list[dict[str, str]]) -> None:
        """Keep a request's messages when asked to (SimConfig.keep_requests)."""
        if self.config.keep_requests:
            self.requests.append(messages)

    def next_id(self) -> str:
        self._ids += 1
        return f"cmpl-sim{self._ids:08d}"

    def running_now(self) -> int:
        engine = self.engine
        if isinstance(engine, BatchEngine):
            return len(engine.running) + len(engine.waiting)
        return engine.running if engine is not None else 0

    def power_tick(self) -> None:
        """Account the energy used since the last change of load, then take the new power:
        idle when nothing runs, else 60 % of the way to full power plus 40 % x utilisation."""
        m, c = self.metrics, self.config
        now = time.perf_counter_ns()
        m.energy_j += m.watts * (now - m.power_at_ns) / 1e9
        m.power_at_ns = now
        running = self.running_now()
        util = min(1.0, running / max(1, c.max_batch))
        per_gpu = c.idle_watts_per_gpu + (c.watts_per_gpu - c.idle_watts_per_gpu) * (
            0.6 + 0.4 * util if running else 0.0
        )
        m.watts = per_gpu * c.gpu_count
