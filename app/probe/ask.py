"""Small bounded requests to an endpoint for its inspection: the client (the endpoint's key
sent, then removed from every excerpt it keeps), its replies, and what an inspection records
(evidence for an engine, a check's result). app/probe/detect.py and app/probe/checklist.py ask
through it; app/probe/inspect.py runs both."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from app.probe.client import headers_for, read_all
from app.probe.types import Target
from app.security.redact import Redactor, excerpt

REQUEST_TIMEOUT_S = 15.0
EXCERPT = 300


@dataclass
class Evidence:
    engine: str
    weight: int
    source: str
    saw: str


@dataclass
class CheckResult:
    id: str
    title: str
    status: str  # passed | failed | not_supported | not_observed | inconclusive
    request: str
    evidence: str


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def root_of(base_url: str) -> str:
    """The server's root: the base URL without its trailing /v1."""
    parts = urlsplit(base_url.rstrip("/"))
    path = parts.path[: -len("/v1")] if parts.path.endswith("/v1") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class Client:
    def __init__(self, session: aiohttp.ClientSession, target: Target) -> None:
        self.session = session
        self.target = target
        self.redactor = Redactor(target.api_key)
        self.headers = {**headers_for(target), "Accept": "*/*"}
        self.retry_after: list[str | None] = []  # the Retry-After of every 429 met

    def excerpt(self, reply: Reply | None) -> str:
        if reply is None:
            return "(no answer)"
        text = self.redactor.bytes(reply.body[:4096]).decode("utf-8", "replace")
        return f"HTTP {reply.status}: {excerpt(text[:EXCERPT])}"

    async def get(self, url: str) -> Reply | None:
        try:
            timeout = aiohttp.ClientTimeout(total=5.0)
            async with self.session.get(
                url, headers=self.headers, allow_redirects=False, timeout=timeout
            ) as r:
                return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, await read_all(r, 65536))
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def post(self, path: str, body: dict[str, object]) -> Reply | None:
        url = self.target.base_url.rstrip("/") + path
        for attempt in range(2):
            try:
                timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
                async with self.session.post(
                    url, data=orjson.dumps(body), headers=self.headers, allow_redirects=False, timeout=timeout
                ) as r:
                    reply = Reply(
                        r.status, {k.lower(): v for k, v in r.headers.items()}, await read_all(r, 1 << 20)
                    )
            except (aiohttp.ClientError, TimeoutError, OSError):
                return None
            if reply.status != 429 or attempt:
                return reply
            wait = reply.headers.get("retry-after")
            self.retry_after.append(wait)
            try:
                delay = min(2.0, max(0.1, float(wait))) if wait else 1.0
            except ValueError:
                delay = 1.0
            await asyncio.sleep(delay)
        return None
