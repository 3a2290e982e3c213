"""Helpers for browser tests: a real `smartbench serve` process and Debian's chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.simulator.process import free_port

CHROMIUM = os.environ.get("SMARTBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} not installed (apt-get install chromium)"
        if os.environ.get("SMARTBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Server:
    url: str
    admin_user: str
    admin_password: str
    output: Path
    pid: int = 0


@contextmanager
def serve(
    data_dir: Path, database_url: str | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """`smartbench serve` as a user runs it, on a free port; yields once /healthz answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBENCH_")}
    env.update({"SMARTBENCH_DATA_DIR": str(data_dir), **(extra_env or {})})
    if database_url:
        env["SMARTBENCH_DATABASE_URL"] = database_url
    exe = shutil.which("smartbench", path=str(Path(sys.executable).parent)) or "smartbench"
    log = data_dir / "serve.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [exe, "serve", "--port", str(port)], stdout=handle, stderr=subprocess.STDOUT, env=env
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"smartbench serve exited: {log.read_text()}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"smartbench serve did not answer within 60 s: {log.read_text()}")
                time.sleep(0.1)
            text = log.read_text()
            match = re.search(r"log in as (\S+) with the one-time password (\S+)", text)
            url = re.search(r"Dashboard: (http://\S+)", text)
            assert match and url, text
            yield Server(url.group(1), match.group(1), match.group(2), log, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
