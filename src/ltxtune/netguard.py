"""The one guard for outbound requests (dataset fetches, webhooks, callbacks).

A URL is checked in three steps, each refusing with a `RefusedUrl` whose message says why:

1. Syntax (`parse_target`): http(s) only, a host, a port in 1..65535, balanced IPv6 brackets, no
   NUL, control or whitespace characters anywhere.
2. The host is resolved once (`resolve_host`). IPv4 literals in any spelling libc accepts
   (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) are read as the address they mean, so they
   cannot slip past as "names".
3. Every address must be public (`is_public_address`): no loopback, private, shared (CGNAT),
   link-local, multicast, unspecified, documentation, benchmarking or other reserved ranges, also
   when wrapped in IPv6 (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, 6to4
   `2002::/16`, NAT64 `64:ff9b::/96`); Teredo `2001::/32` is refused outright.

`GuardedTransport` (an httpx transport) runs steps 2-3 for every TCP connection it opens,
redirects included, and dials exactly the address it checked: there is no second lookup, so a
name that answers public first and private next (DNS rebinding) never reaches the private one.
The URL's host name still goes into the Host header and the TLS SNI / certificate check.
`allow_private=True` (the operator's `allow_private_urls`) skips step 3 only.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import time
import urllib.parse
from dataclasses import dataclass

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REFUSAL = "only public addresses are fetched from or posted to (an operator can allow private URLs)"

# Ranges `ipaddress` does not already mark as non-global, refused all the same.
_ALSO_REFUSED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "192.0.0.0/24",  # IETF protocol assignments (only parts are marked in older Pythons)
        "192.88.99.0/24",  # 6to4 relay anycast
        "64:ff9b:1::/48",  # local-use NAT64
        "fec0::/10",  # deprecated site-local
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RefusedUrl(ValueError):
    """An outbound URL was refused; the message is the reason shown to the user."""


@dataclass(frozen=True)
class Target:
    scheme: str  # "http" | "https"
    host: str  # without brackets
    port: int


def parse_target(url: str) -> Target:
    """The scheme, host and port of an http(s) URL, or RefusedUrl naming what is wrong with it."""
    if not isinstance(url, str) or not url:
        raise RefusedUrl("the URL is empty")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise RefusedUrl("the URL contains spaces, NUL or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise RefusedUrl(f"must be an http(s) URL; got {url!r}")
        netloc = parts.netloc.rpartition("@")[2]
        if netloc.count("[") != netloc.count("]") or (netloc.startswith("[") and "]" not in netloc):
            raise RefusedUrl(f"the URL's host has unbalanced brackets: {netloc!r}")
        host = parts.hostname
        port = parts.port  # ValueError for a port outside 0..65535 or not a number
    except ValueError as error:
        if isinstance(error, RefusedUrl):
            raise
        raise RefusedUrl(f"the URL is malformed ({error})") from None
    if not host:
        raise RefusedUrl(f"the URL has no host: {url!r}")
    if port == 0:
        raise RefusedUrl("the URL's port must be between 1 and 65535")
    return Target(scheme, host, port or (443 if scheme == "https" else 80))


def ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The address an IPv4 literal means in any spelling inet_aton accepts (1 to 4 parts, each
    decimal, 0-prefixed octal or 0x-prefixed hex; the last part fills the remaining bytes), else None."""
    parts = host.split(".")
    if host.endswith("."):
        parts = parts[:-1]
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                value = int(part[2:], 16)
            elif len(part) > 1 and part.startswith("0"):
                value = int(part, 8)
            else:
                value = int(part, 10)
        except ValueError:
            return None
        if value < 0 or not part.isalnum():
            return None
        values.append(value)
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells (IPv6 with or without brackets/zone, or any IPv4 spelling), else None."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return ipv4_literal(bare)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _plainly_public(ip: IPAddress) -> bool:
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_reserved:
        return False
    if ip.is_private or not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return False
    return not any(ip in net for net in _ALSO_REFUSED if net.version == ip.version)


def is_public_address(address: str | IPAddress) -> bool:
    """True for a globally routable unicast address, judging wrapped IPv4 by the IPv4 inside."""
    ip = address if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else ip_literal(str(address))
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return _plainly_public(inner)
    return _plainly_public(ip)


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to for TCP (tests replace this to play a DNS server)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses to dial for host:port, resolved once; RefusedUrl if none may be reached."""
    host = host.strip("[]")
    literal = ip_literal(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolve_host(host, port)
        except (socket.gaierror, UnicodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise RefusedUrl(f"cannot resolve host {host!r} ({reason})") from None
        if not addresses:
            raise RefusedUrl(f"cannot resolve host {host!r}")
    if allow_private:
        return addresses
    allowed = [address for address in addresses if is_public_address(address)]
    if not allowed:
        raise RefusedUrl(f"{host} resolves to {', '.join(addresses)}, a loopback, private or link-local address; {REFUSAL}")
    return allowed


def precheck(url: str, *, allow_private: bool) -> Target:
    """The checks that need no lookup: syntax, and the address when the host is an unusual IP
    spelling (`0177.0.0.1`; HTTP clients reject or rewrite some, so they are judged here first)."""
    target = parse_target(url)
    literal = ip_literal(target.host)
    if not allow_private and literal is not None and str(literal) != target.host:
        checked_addresses(target.host, target.port, allow_private=False)
    return target


def check_url(url: str, *, allow_private: bool) -> Target:
    """Refuse `url` unless it is a well-formed http(s) URL whose host resolves to a reachable address."""
    target = parse_target(url)
    if not allow_private:
        checked_addresses(target.host, target.port, allow_private=False)
    return target


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves and checks once per connection, then dials that very address."""

    def __init__(self, allow_private: bool):
        self.allow_private = allow_private

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = checked_addresses(host, port, allow_private=self.allow_private)
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as failure:
                error = failure
        raise error  # type: ignore[misc]


@functools.lru_cache(maxsize=1)
def _ssl_context():
    return httpx.create_ssl_context()  # loading the CA bundle takes ~0.1 s; the context is shareable


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads and writes all end by one deadline (a receiver that trickles one
    byte at a time cannot hold it longer than that)."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float):
        self.inner = inner
        self.deadline = deadline

    def _left(self, timeout: float | None) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the request took longer than its total time limit")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self._left(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):  # type: ignore[no-untyped-def]
        return _DeadlineStream(self.inner.start_tls(ssl_context, server_hostname, self._left(timeout)), self.deadline)

    def get_extra_info(self, info: str):  # type: ignore[no-untyped-def]
        return self.inner.get_extra_info(info)


class _DeadlineBackend(_GuardedBackend):
    def __init__(self, allow_private: bool, total_timeout_s: float):
        super().__init__(allow_private)
        self.total_timeout_s = total_timeout_s

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        deadline = time.monotonic() + self.total_timeout_s
        timeout = self.total_timeout_s if timeout is None else min(timeout, self.total_timeout_s)
        return _DeadlineStream(super().connect_tcp(host, port, timeout, local_address, socket_options), deadline)


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport whose every connection goes through the guard; environment proxies are
    ignored (a proxy would do the resolving). A refused connection raises RefusedUrl.

    With `total_timeout_s`, each request gets a fresh connection (no keep-alive) whose whole
    exchange must end within that many seconds; httpx's own timeouts bound each read only."""

    def __init__(self, allow_private: bool = False, *, total_timeout_s: float | None = None):
        super().__init__(trust_env=False)
        if total_timeout_s is None:
            self._pool = httpcore.ConnectionPool(ssl_context=_ssl_context(), network_backend=_GuardedBackend(allow_private))
        else:
            self._pool = httpcore.ConnectionPool(
                ssl_context=_ssl_context(),
                network_backend=_DeadlineBackend(allow_private, total_timeout_s),
                max_keepalive_connections=0,
            )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        parse_target(str(request.url))  # a redirect's target passes the same syntax rules as the first URL
        return super().handle_request(request)
