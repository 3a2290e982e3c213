"""schemathesis against the OpenAPI spec of a running `smartbench serve` (SQLite, executor off),
with an admin's read-write token: bounded examples per operation, and no answer may be a
server error."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent
EXAMPLES = 20  # per operation and phase; about 2,300 requests, 30 s on 2 cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    if shutil.which("st", path=str(BIN)) is None:
        pytest.fail("schemathesis is part of the test extras: pip install -e '.[test]'")
    port = free_port()
    env = {**os.environ, "SMARTBENCH_DATA_DIR": str(tmp_path), "SMARTBENCH_ADMIN_PASSWORD": "fuzz-admin-passphrase-1",
           "SMARTBENCH_ENV": "development"}  # fmt: skip
    env.pop("SMARTBENCH_DATABASE_URL", None)
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [str(BIN / "smartbench"), "serve", "--port", str(port), "--no-executor"],
            env=env, stdout=subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "smartbench serve did not start"
            time.sleep(0.3)
        token = subprocess.run(
            [str(BIN / "smartbench"), "token", "create", "--name", "fuzz"],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        fuzz = subprocess.run(
            [str(BIN / "st"), "run", f"http://127.0.0.1:{port}/api/v1/openapi.json",
             "-H", f"Authorization: Bearer {token}", "-n", str(EXAMPLES), "--seed", "1", "--workers", "2",
             "--checks", "not_a_server_error",
             "--exclude-path", "/api/v1/tokens/{token_id}"],  # it would revoke the fuzzer's own token
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        server_log = log.read_text()[-3000:]
        assert fuzz.returncode == 0, (
            fuzz.stdout[-6000:] + fuzz.stderr[-2000:] + "\nserver log:\n" + server_log
        )
        assert " passed" in fuzz.stdout
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
