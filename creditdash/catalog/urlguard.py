"""Which upstream base URLs the gateway may call (server-side request forgery guard).

Checked when a provider is saved and again before requests (with a short cache). The host is
resolved and every address it resolves to is checked, so any spelling of an address
(decimal, hex, octal, IPv4-mapped IPv6) is judged by the address itself.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from creditdash.catalog.models import SANDBOX_BASE_URL, SANDBOX_KINDS
from creditdash.core.errors import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints that are not link-local.
_METADATA = {
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, but still routed inside sites
_RESOLVE_TTL_S = 30.0
_resolved: dict[str, tuple[float, list[IPAddress]]] = {}


def _always_refused(ip: IPAddress) -> str | None:
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "not a routable address"
    return None


def _private(ip: IPAddress) -> bool:
    if ip.version == 4:
        return ip.is_loopback or ip.is_private or ip in _CGNAT
    return ip.is_loopback or ip.is_private or ip in _SITE_LOCAL


def check_address(ip: IPAddress, *, allow_private: bool) -> None:
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address are judged by that address.
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    reason = _always_refused(ip)
    if reason:
        raise ValidationFailed(f"upstream address {ip} is refused: {reason}")
    if _private(ip) and not allow_private:
        raise ValidationFailed(
            f"upstream address {ip} is loopback or private; "
            "set CREDITDASH_ALLOW_PRIVATE_UPSTREAMS=1 to allow local model servers"
        )


def _resolve(host: str) -> list[IPAddress]:
    now = time.monotonic()
    cached = _resolved.get(host)
    if cached and cached[0] > now:
        return cached[1]
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ValidationFailed(f"upstream host {host!r} does not resolve: {exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    _resolved[host] = (now + _RESOLVE_TTL_S, addresses)
    return addresses


@dataclass(frozen=True)
class PinnedURL:
    """A checked base URL rewritten to the address that was checked, so the connection goes
    exactly there (no second DNS answer can redirect it), with the name kept for Host and TLS."""

    base_url: str
    host_header: str | None = None
    tls_server_name: str | None = None


def pin_base_url(base_url: str, *, kind: str, allow_private: bool) -> PinnedURL:
    """Check a base URL and pin it to one of the addresses its host resolved to."""
    checked = check_base_url(base_url, kind=kind, allow_private=allow_private)
    if kind in SANDBOX_KINDS:
        return PinnedURL(checked)
    parts = urlsplit(checked)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        return PinnedURL(checked)  # already an address
    except ValueError:
        pass
    address = _resolve(host)[0]
    # Checked again: the resolver's cache may have renewed its answer since check_base_url.
    check_address(address, allow_private=allow_private)
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    pinned = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return PinnedURL(
        pinned,
        host_header=parts.netloc,
        tls_server_name=host if parts.scheme == "https" else None,
    )


def check_base_url(base_url: str, *, kind: str, allow_private: bool) -> str:
    """The normalized base URL, or ValidationFailed saying why it may not be called."""
    if kind in SANDBOX_KINDS:
        if base_url.rstrip("/") != SANDBOX_BASE_URL:
            raise ValidationFailed(f"the sandbox provider's base URL is {SANDBOX_BASE_URL}")
        return SANDBOX_BASE_URL
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValidationFailed("upstream base URL must use http or https")
    if parts.username or parts.password:
        raise ValidationFailed("upstream base URL must not contain credentials")
    if not parts.hostname:
        raise ValidationFailed("upstream base URL has no host")
    if parts.query or parts.fragment:
        raise ValidationFailed("upstream base URL must not have a query or fragment")
    for ip in _resolve(parts.hostname):
        check_address(ip, allow_private=allow_private)
    return base_url.strip().rstrip("/")
