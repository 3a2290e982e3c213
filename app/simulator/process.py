"""A simulator in its own process, as a real endpoint would be: used by `smartbench demo`, the
tests and the benchmarks, so that the simulator never competes with the probe for one core."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec (Linux): the kernel sends SIGTERM when the parent dies, so a
    simulator never outlives the demo or test that started it, even one killed with SIGKILL."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(frozen=True)
class SimulatorProcess:
    port: int
    pid: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@contextmanager
def simulator_process(
    *args: str, prefix: Sequence[str] = (), timeout: float = 20.0, port: int | None = None
) -> Iterator[SimulatorProcess]:
    """`smartbench simulate ARGS` on a free port, or on `port` (a restart with other delays, as
    a server upgraded in place), optionally behind a command prefix such as `taskset -c 1`;
    yields once it answers HTTP, stops the process on exit."""
    port = port or free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own simulator
        [*prefix, sys.executable, "-m", "app.cli", "simulate", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the simulator exited with {proc.returncode} (arguments: {' '.join(args)})"
                )
            try:  # any answer will do: every engine it plays has /v1/models (401 with a key)
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not answer within {timeout:g} s")
            time.sleep(0.05)
        yield SimulatorProcess(port, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
