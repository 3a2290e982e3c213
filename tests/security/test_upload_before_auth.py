"""Issue #18, finding 3: FastAPI read a multipart body before the dependencies that
authenticate ran, so anyone could make POST /api/v1/imports spool 64 MiB, and the form's CSRF
check read the whole form before the role check, so any viewer could too. Against a running
`smartbench serve`: a 64 MiB upload without credentials, and a viewer's, are answered from the
headers alone, the connection is closed, and the server's memory and temporary files do not
grow (48cab14: it answered only after the whole body had arrived, spooled to a temp file)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.browser import serve

UPLOAD = 64 * 1024 * 1024
BOUNDARY = "smartbenchboundary"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _upload(host: str, port: int, path: str, headers: dict[str, str]) -> tuple[str, int]:
    """Send the headers of a 64 MiB multipart upload, then its body a MiB at a time until the
    server answers or closes; returns the status line and how many body bytes it took."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {UPLOAD}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )
    part = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.json"\r\n'
            "Content-Type: application/json\r\n\r\n").encode()  # fmt: skip
    chunk = b"[" + b"0," * (512 * 1024)
    sent = 0
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode() + part)
        sock.setblocking(False)
        answer = b""
        while sent < UPLOAD:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                sent += sock.send(chunk[: min(len(chunk), UPLOAD - sent)])
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status = answer.split(b"\r\n", 1)[0].decode()
    return status, sent


def test_uploads_are_refused_from_their_headers(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    env = {"TMPDIR": str(spool), "SMARTBENCH_ENV": "development"}
    with serve(data, extra_env=env) as server:
        parts = urlsplit(server.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBENCH_")}
        cli_env["SMARTBENCH_DATA_DIR"] = str(data)
        exe = str(Path(sys.executable).parent / "smartbench")
        subprocess.run([exe, "user", "create", "watcher", "--role", "viewer", "--password", "watcher-passphrase-9"],
                       env=cli_env, check=True, capture_output=True, timeout=60)  # fmt: skip
        token = subprocess.run(
            [exe, "token", "create", "--name", "viewer", "--user", "watcher"],
            env=cli_env, check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        with httpx.Client(base_url=server.url) as client:  # a viewer's browser session
            page = client.get("/login")
            csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            done = client.post("/login", data={"username": "watcher", "password": "watcher-passphrase-9",
                                               "csrf_token": csrf}, headers={"Origin": server.url})  # fmt: skip
            assert done.status_code == 303, done.text
            cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        before = _rss_kib(server.pid)
        cases = {
            "anonymous API upload": ("/api/v1/imports", {}, "401"),
            "viewer's token": ("/api/v1/imports", {"Authorization": f"Bearer {token}"}, "403"),
            "viewer's form": ("/endpoints/1/import", {"Cookie": cookie, "Origin": server.url}, "403"),
        }
        for what, (path, headers, expected) in cases.items():
            status, sent = _upload(host, port, path, headers)
            assert expected in status, f"{what}: {status}"
            assert sent < 8 * 1024 * 1024, f"{what}: the server read {sent} bytes before it answered"
            assert list(spool.iterdir()) == [], f"{what}: the upload was spooled"
        grown = _rss_kib(server.pid) - before
        assert grown < 16 * 1024, f"the server grew by {grown} KiB"
        print(f"\nthree 64 MiB uploads refused; the server's RSS grew {grown} KiB, no temp file")
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/healthz").status_code == 200
