"""Where smartbench may send requests: endpoint and metrics URLs, checked when they are saved
and again at connect time, after DNS resolution, so a name that re-resolves elsewhere (DNS
rebinding) is still refused.

Three modes, chosen by an admin (one policy for endpoints, one for webhooks):

- ``default``: everything but link-local addresses (169.254.0.0/16, fe80::/10, where cloud
  metadata services live), the other metadata addresses (fd00:ec2::254, 100.100.100.200) and
  names (metadata.google.internal), and addresses no server has (0.0.0.0/8, multicast,
  reserved, broadcast). Loopback and private ranges stay allowed: self-hosted endpoints live
  there.
- ``public``: the default for webhooks. Public addresses only: loopback, private, shared
  (100.64.0.0/10), unique-local and every other non-global range refused as well, so that
  an admin's webhook cannot probe the dashboard's own network. Listed networks and host
  names are allowed besides.
- ``allowlist``: only the listed networks ("10.0.0.0/8", "127.0.0.1") and host names
  ("vllm.internal", "*.example.com"); a listed name still never reaches a blocked address
  unless a listed network covers that address.

An address is judged in every spelling: integer and hex or octal forms ("2130706433",
"0x7f.0.0.1", which the resolver turns into dotted quads) and IPv4 inside IPv6 (mapped
"::ffff:169.254.169.254", compatible, 6to4, NAT64 and Teredo) are unwrapped first."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

BLOCKED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("169.254.0.0/16", "a link-local address (cloud metadata lives there)"),
        ("fe80::/10", "a link-local address"),
        ("fd00:ec2::254/128", "a cloud metadata address"),
        ("100.100.100.200/32", "a cloud metadata address"),
        ("0.0.0.0/8", "not a server's address"),
        ("::/128", "not a server's address"),
        ("224.0.0.0/4", "a multicast address"),
        ("ff00::/8", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)
BLOCKED_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundRefused(OSError):
    """The policy refuses this destination (an OSError, so HTTP clients report it as a
    connection that could not be made)."""


def unwrap(address: IPAddress) -> list[IPAddress]:
    """The address and every IPv4 address it carries inside it."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        packed = int(address)
        inner: list[ipaddress.IPv4Address | None] = [
            address.ipv4_mapped,
            address.sixtofour,
            address.teredo[1] if address.teredo else None,
            ipaddress.IPv4Address(packed & 0xFFFFFFFF) if address in NAT64 else None,
            # IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks)
            ipaddress.IPv4Address(packed) if 1 < packed < 2**32 else None,
        ]
        found += [a for a in inner if a is not None]
    return found


def parse_literal(host: str) -> IPAddress | None:
    """An IP address however it is spelled, or None for a name."""
    host = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # the forms inet_aton (and so getaddrinfo) accepts: 2130706433, 0x7f.1, 0177.0.0.1
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


Mode = Literal["default", "public", "allowlist"]
MODES: tuple[str, ...] = ("default", "public", "allowlist")


@dataclass(frozen=True)
class OutboundPolicy:
    mode: Mode = "default"
    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[str, ...] = ()  # lower case; "*.example.com" matches below example.com

    @classmethod
    def parse(cls, mode: str, entries: Iterable[str]) -> OutboundPolicy:
        """From the admin's list; raises ValueError naming the entry that is neither a network,
        an address nor a host name."""
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry.removeprefix("*.")
            labels = name.split(".")
            if not all(label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels):
                raise ValueError(f"{raw.strip()!r} is not a network, an address or a host name")
            hosts.append(entry)
        if mode not in MODES:
            raise ValueError("the mode is 'default', 'public' or 'allowlist'")
        return cls(mode, tuple(networks), tuple(hosts))  # type: ignore[arg-type]

    @property
    def entries(self) -> list[str]:
        """The list as the admin writes it (what `parse` reads back)."""
        return [str(n) for n in self.networks] + list(self.hosts)

    # -- judgements: each returns None when allowed, else the reason -------------------------------

    def _listed_network(self, address: IPAddress) -> bool:
        return any(
            address in net for a in unwrap(address) for net in self.networks if a.version == net.version
        )

    def _listed_host(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        for entry in self.hosts:
            if entry.startswith("*."):
                if name.endswith(entry[1:]):
                    return True
            elif name == entry:
                return True
        return False

    def address_problem(self, address: IPAddress | str, *, name: str | None = None) -> str | None:
        if isinstance(address, str):
            parsed = parse_literal(address)
            if parsed is None:
                return f"{address} is not an address"
            address = parsed
        if self._listed_network(address):
            return None
        for inner in unwrap(address):
            for net, why in BLOCKED_NETWORKS:
                if inner.version == net.version and inner in net:
                    return f"{address} is {why}"
        listed_name = name is not None and self._listed_host(name)
        if self.mode == "allowlist" and not listed_name:
            return f"{name or address} is not on the outbound allowlist"
        if self.mode == "public" and not listed_name:
            for inner in unwrap(address):
                if not inner.is_global:
                    kind = "a loopback" if inner.is_loopback else "a private or non-public"
                    return f"{address} is {kind} address (public addresses only, unless an admin allows it)"
        return None

    def host_problem(self, host: str) -> str | None:
        """What can be said from the host alone (before resolution)."""
        literal = parse_literal(host)
        if literal is not None:
            return self.address_problem(literal)
        name = host.lower().rstrip(".")
        metadata = name in BLOCKED_NAMES or any(name.endswith("." + b) for b in BLOCKED_NAMES if "." in b)
        if metadata and not self._listed_host(name):
            return f"{host} is a cloud metadata service"
        if self.mode == "allowlist" and not self._listed_host(name) and not self.networks:
            return f"{host} is not on the outbound allowlist"
        return None

    def resolved_problem(self, host: str, addresses: Iterable[str]) -> str | None:
        """After DNS: refused when any address the name has is refused."""
        for address in addresses:
            if (problem := self.address_problem(address, name=host)) is not None:
                return f"{host} resolves to {problem}" if parse_literal(host) is None else problem
        return None

    def url_problem(self, url: str, *, resolve: bool = True) -> str | None:
        """For a URL being saved: the host as written, then (when it resolves here) every
        address it resolves to. A name that does not resolve here is judged at connect time."""
        host = urlsplit(url).hostname or ""
        if not host:
            return "the URL has no host"
        if (problem := self.host_problem(host)) is not None or not resolve or parse_literal(host):
            return problem
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return None
        return self.resolved_problem(host, [str(info[4][0]) for info in infos])
