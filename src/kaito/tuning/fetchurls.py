"""The URLs `kaito fetch-data` accepts, how its logs and errors show them, and the error a bad one raises."""

from __future__ import annotations

from yarl import URL

from kaito.tuning.addresses import AddressPolicy, parse_address

SCHEMES = ("http", "https")


class FetchError(Exception):
    """A URL could not be fetched; the message names the URL and what was wrong."""


def display_url(url: str | URL) -> str:
    """A URL as logs show it: without a password, and with query values hidden (they often carry signatures)."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except ValueError:
        return str(url)
    if parsed.password is not None:
        parsed = parsed.with_password(None)
    parsed = parsed.with_fragment(None)
    if not parsed.raw_query_string:
        return str(parsed)
    keys = [part.split("=", 1)[0] for part in parsed.raw_query_string.split("&") if part]
    return f"{parsed.with_query(None)}?" + "&".join(f"{key}=..." for key in keys)


def parse_url(raw: str) -> URL:
    """An absolute http(s) URL with a host; FetchError names the URL and, for other schemes, the scheme."""
    try:
        url = URL(raw.strip())
    except ValueError as exc:
        raise FetchError(f"{raw!r} is not a valid URL: {exc}") from None
    scheme = url.scheme.lower()
    if not scheme:
        raise FetchError(f"{display_url(url)}: not an absolute URL; expected http:// or https://")
    if scheme not in SCHEMES:
        raise FetchError(f"{display_url(url)}: scheme {scheme!r} is not supported; only http and https are fetched")
    if not url.raw_host:
        raise FetchError(f"{display_url(url)}: the URL has no host")
    return url


def check_literal_address(url: URL, policy: AddressPolicy) -> None:
    """Apply the policy to a URL whose host is an IP address (aiohttp connects to those without resolving)."""
    host = url.raw_host or ""
    try:
        address = parse_address(host)
    except ValueError:
        return  # a name: PolicyResolver checks what it resolves to
    policy.check(host, address)
