"""Checks of user-supplied URLs and image references, so a Workspace cannot point pods at internal hosts.

Checks are purely syntactic: admission must not depend on DNS, so a public name that resolves to a
private address is not caught here (the pod's network policy is the second line of defence).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_URL_ALLOWED = "only http(s) URLs of public hosts are accepted"
_IMAGE_FORM = (
    "expected [registry[:port]/]repository[:tag][@sha256:<64 hex digits>], e.g. myregistry.azurecr.io/adapter:0.0.1"
)

# Names that always reach the local host or a cloud metadata service, whatever the resolver says.
_REFUSED_NAMES = {
    "localhost": "a loopback host name",
    "localhost.localdomain": "a loopback host name",
    "ip6-localhost": "a loopback host name",
    "ip6-loopback": "a loopback host name",
    "metadata": "the cloud metadata service",
    "metadata.google.internal": "the cloud metadata service",
    "instance-data": "the cloud metadata service",
    "instance-data.ec2.internal": "the cloud metadata service",
}

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# Checked in order; the first match names the reason. Anything else not globally routable is "reserved".
_CLASSES: tuple[tuple[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]], ...] = (
    ("an unspecified ('this host') address", (_V4("0.0.0.0/8"), _V6("::/128"))),
    ("a loopback address", (_V4("127.0.0.0/8"), _V6("::1/128"))),
    (
        "a link-local address (where cloud metadata endpoints such as 169.254.169.254 live)",
        (_V4("169.254.0.0/16"), _V6("fe80::/10")),
    ),
    ("a private address", (_V4("10.0.0.0/8"), _V4("172.16.0.0/12"), _V4("192.168.0.0/16"), _V6("fc00::/7"))),
    ("a shared (carrier-grade NAT) address", (_V4("100.64.0.0/10"),)),
    ("a multicast address", (_V4("224.0.0.0/4"), _V6("ff00::/8"))),
)

_NAT64 = _V6("64:ff9b::/96")
_V4_COMPATIBLE = _V6("::/96")
_NUMERIC_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


def check_data_url(url: str) -> str | None:
    """None when `url` is an http(s) URL of a public host; else why it is refused and what is accepted."""
    problem = _url_problem(url)
    return None if problem is None else f"{problem}; {_URL_ALLOWED}"


def _url_problem(url: str) -> str | None:
    if not url:
        return "the URL is empty"
    # urlsplit silently drops tabs and newlines, and backslashes mean "/" to browsers: refuse them outright.
    if _FORBIDDEN_CHARS.search(url):
        return "the URL contains spaces, control characters or backslashes"
    try:
        parts = urlsplit(url)
        _ = parts.port  # parsing the port is what raises for a bad one
    except ValueError as err:
        return f"the URL cannot be parsed ({err})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not allowed" if parts.scheme else "the URL has no scheme"
    if "@" in parts.netloc:
        return "the URL carries credentials (user:password@host)"
    return _host_problem(parts)


def _host_problem(parts: SplitResult) -> str | None:
    host = parts.hostname or ""
    if not host:
        return "the URL has no host"
    if "%" in host:
        return f"host {host!r} is percent-encoded or carries an IPv6 zone"
    if parts.netloc.startswith("["):
        try:
            return _address_problem(ipaddress.IPv6Address(host))
        except ValueError:
            return f"host [{host}] is not a valid IPv6 address"
    try:
        name = host.encode("idna").decode("ascii").lower() if not host.isascii() else host
    except UnicodeError:
        return f"host {host!r} is not a valid internationalized domain name"
    return _name_problem(name.removesuffix("."))


def _name_problem(name: str) -> str | None:
    labels = name.split(".")
    # Like the WHATWG URL parser, a host whose last label is numeric is an IPv4 address in one of its legacy forms.
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        address = parse_legacy_ipv4(name)
        if address is None:
            return f"host {name!r} looks like a numeric IPv4 address but is not a valid one"
        return _address_problem(address)
    if name in _REFUSED_NAMES or name.endswith(".localhost"):
        return f"host {name!r} is {_REFUSED_NAMES.get(name, 'a loopback host name')}"
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return f"host {name!r} is not a valid DNS name"
    return None


def parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any form inet_aton accepts (`127.1`, `0x7f.1`, `0177.0.0.1`, `2130706433`), else None."""
    labels = host.split(".")
    if not 1 <= len(labels) <= 4:
        return None
    values = [_legacy_number(label) for label in labels]
    if any(value is None for value in values):
        return None
    numbers = [value for value in values if value is not None]
    *leading, last = numbers
    # With fewer than four parts the last one fills all the remaining bytes (`127.1` is 127.0.0.1).
    if any(part > 0xFF for part in leading) or last >= 1 << (8 * (5 - len(numbers))):
        return None
    packed = 0
    for part in leading:
        packed = packed << 8 | part
    return ipaddress.IPv4Address(packed << (8 * (5 - len(numbers))) | last)


def _legacy_number(label: str) -> int | None:
    if len(label) > 64 or not _NUMERIC_LABEL.fullmatch(label):
        return None
    if label[:2].lower() == "0x":
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8) if set(label) <= set("01234567") else None
    return int(label)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: mapped, compatible, NAT64 or 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _address_problem(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)) is not None:
        problem = _address_problem(embedded)
        return None if problem is None else f"{problem} (as IPv6 {address})"
    for reason, networks in _CLASSES:
        if any(address.version == network.version and address in network for network in networks):
            return f"{address} is {reason}"
    if address.is_reserved or not address.is_global:
        return f"{address} is a reserved or special-purpose address"
    return None


# ----------------------------------------------------------------------------------------------- images
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Docker refuses '_' in registry names and upper case in repository paths, but KAITO's documented placeholder
# (`ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1`) uses both, so both are accepted here; a registry that refuses
# such a name says so at push or pull time.
_REGISTRY_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
_REGISTRY = re.compile(rf"(?:{_REGISTRY_LABEL}(?:\.{_REGISTRY_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_PATH_COMPONENT = re.compile(r"[A-Za-z0-9]+(?:(?:[._]|__|-+)[A-Za-z0-9]+)*")
_MAX_NAME = 255
_MAX_TAG = 128


def check_image_reference(ref: str) -> str | None:
    """None when `ref` is an OCI image reference; else why not and the accepted form."""
    problem = _image_problem(ref)
    return None if problem is None else f"{problem}; {_IMAGE_FORM}"


def _image_problem(ref: str) -> str | None:
    if not ref:
        return "the image reference is empty"
    if "://" in ref:
        return "an image reference has no URL scheme (drop the 'https://')"
    if _FORBIDDEN_CHARS.search(ref):
        return "the image reference contains spaces or control characters"
    name, at, digest = ref.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        return f"digest {digest!r} is not sha256: followed by 64 lowercase hex digits"
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if len(tag) > _MAX_TAG:
            return f"the tag is longer than {_MAX_TAG} characters"
        if not _TAG.fullmatch(tag):
            return f"tag {tag!r} must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    return _name_problem_of_image(name)


def _name_problem_of_image(name: str) -> str | None:
    if not name:
        return "the repository name is empty"
    if len(name) > _MAX_NAME:
        return f"the repository name is longer than {_MAX_NAME} characters"
    first, slash, rest = name.partition("/")
    # As in Docker, the first component names a registry only when it has a '.', a ':' or is localhost.
    if slash and ("." in first or ":" in first or first == "localhost"):
        if not _REGISTRY.fullmatch(first):
            return f"registry {first!r} is not a valid host[:port]"
        path = rest
    else:
        path = name
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            return f"repository path component {component!r} must be letters and digits joined by '.', '_' or '-'"
    return None
