"""The outbound policy at connect time: an aiohttp resolver that connects a name only to
addresses the policy allows (the probe's client and webhook deliveries both use it)."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from app.security.outbound import OutboundPolicy, OutboundRefused


class PolicyResolver(AbstractResolver):
    """DNS through the outbound policy: a name is connected to only at addresses the policy
    allows, judged on what the resolver returned this time (so rebinding cannot pass)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self.inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if (problem := self.policy.host_problem(host)) is not None:
            raise OutboundRefused(f"outbound policy: {problem}")
        found = await self.inner.resolve(host, port, family)
        problem = self.policy.resolved_problem(host, [r["host"] for r in found])
        if problem is not None:
            raise OutboundRefused(f"outbound policy: {problem}")
        return found

    async def close(self) -> None:
        await self.inner.close()
