"""Which network addresses `kaito fetch-data` may connect to, so a Workspace's data URL cannot reach cluster internals.

The policy is applied to every address a host name resolves to, and `PolicyResolver` hands aiohttp only the
addresses it checked, so the connection goes to exactly what was checked (no DNS rebinding in between).

- Always refused: cloud metadata endpoints (169.254.169.254, fd00:ec2::254, Azure's wireserver 168.63.129.16,
  which is a public address), unspecified (0.0.0.0, ::), multicast, and reserved or otherwise non-global ranges.
- Refused unless `allow_private` (`--allow-private-addresses`): private (RFC 1918, fc00::/7, fec0::/10),
  loopback, link-local (169.254/16, fe80::/10) and carrier-grade NAT (100.64/10) addresses.
- IPv6 addresses that embed an IPv4 address (IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16)
  are judged by the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = IPv4Address | IPv6Address

ALLOW_FLAG = "--allow-private-addresses"

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        IPv4Address("169.254.169.254"),  # AWS, Azure IMDS, GCP, and most other clouds
        IPv6Address("fd00:ec2::254"),  # AWS IMDS over IPv6
        IPv4Address("168.63.129.16"),  # Azure wireserver (a public address, reachable from every Azure VM)
    }
)

PRIVATE_NETWORKS: tuple[IPv4Network | IPv6Network, ...] = (
    IPv4Network("10.0.0.0/8"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
    IPv6Network("fc00::/7"),
    IPv6Network("fec0::/10"),  # deprecated site-local, still routed inside some networks
)
CARRIER_GRADE_NAT = IPv4Network("100.64.0.0/10")
NAT64 = IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class Refusal:
    """Why one address is refused, and whether `--allow-private-addresses` would let it through."""

    address: IPAddress
    kind: str
    allowable: bool
    embedded: IPv4Address | None = None  # the IPv4 address an IPv6 address carries, which was judged instead

    def describe(self) -> str:
        """E.g. `10.0.0.1 is a private address; pass --allow-private-addresses to allow it`."""
        return f"{self.shown()} is {self.reason()}"

    def shown(self) -> str:
        return f"{self.address} ({self.embedded})" if self.embedded is not None else str(self.address)

    def reason(self) -> str:
        article = "an" if self.kind[0] in "aeiou" else "a"
        remedy = f"pass {ALLOW_FLAG} to allow it" if self.allowable else "it is never allowed"
        return f"{article} {self.kind} address; {remedy}"


class AddressRefusedError(Exception):
    """A host is, or resolves to, an address the policy refuses; the message names the host and the address."""

    def __init__(self, host: str, refusal: Refusal) -> None:
        self.host = host
        self.refusal = refusal
        if host.strip("[]") == str(refusal.address):
            message = f"address {refusal.describe()}"
        else:
            message = f"host {host} resolves to {refusal.shown()}, {refusal.reason()}"
        super().__init__(message)


def parse_address(value: str | IPAddress) -> IPAddress:
    """An address from text: brackets and an IPv6 zone (`fe80::1%eth0`) are dropped."""
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    text = value.strip("[]").split("%", 1)[0]
    return ipaddress.ip_address(text)


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def classify(value: str | IPAddress) -> Refusal | None:
    """The refusal an address earns under the strict policy, or None for an ordinary public address."""
    original = parse_address(value)
    embedded = embedded_ipv4(original) if isinstance(original, IPv6Address) else None
    address: IPAddress = embedded or original

    def refuse(kind: str, allowable: bool) -> Refusal:
        return Refusal(original, kind, allowable, embedded)

    if original in METADATA_ADDRESSES or address in METADATA_ADDRESSES:
        return refuse("cloud metadata", False)
    if address.is_unspecified:
        return refuse("unspecified", False)
    if address.is_loopback:
        return refuse("loopback", True)
    if address.is_link_local:
        return refuse("link-local", True)
    if address.is_multicast:
        return refuse("multicast", False)
    if any(address in network for network in PRIVATE_NETWORKS):
        return refuse("private", True)
    if address in CARRIER_GRADE_NAT:
        return refuse("carrier-grade NAT", True)
    if address.is_reserved or not address.is_global:
        return refuse("reserved", False)
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Decides which addresses may be connected to; see the module docstring for the rules."""

    allow_private: bool = False

    def refusal(self, value: str | IPAddress) -> Refusal | None:
        found = classify(value)
        if found is None or (found.allowable and self.allow_private):
            return None
        return found

    def check(self, host: str, value: str | IPAddress) -> None:
        """Raise AddressRefusedError when `host`'s address `value` is refused."""
        found = self.refusal(value)
        if found is not None:
            raise AddressRefusedError(host, found)


_NUMERIC_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class PolicyResolver(AbstractResolver):
    """Resolves with an inner resolver and refuses the host if ANY of its addresses is refused by the policy.

    The results carry numeric addresses only, so aiohttp connects to the very addresses that were checked.
    The error raised is not an OSError, so aiohttp passes it through unwrapped and it is never retried.
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        checked: list[ResolveResult] = []
        for result in results:
            self.policy.check(host, result["host"])
            checked.append({**result, "flags": _NUMERIC_FLAGS})
        return checked

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
