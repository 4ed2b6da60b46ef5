"""Which model and token URLs a client may make the server talk to: the one check for both.

A URL a browser sends (the model endpoint of "Send to LLM" or of a chat, the
token URL of an OAuth block) is checked before any request leaves the
server, and again for every request the model client makes, redirects
included (`UrlPolicy.guard`, installed through `flamesight.llm`'s
``url_check``):

- http and https only, with a host, without user name or password;
- never link-local or cloud metadata addresses (169.254.0.0/16, fe80::/10,
  fd00:ec2::254), nor unspecified, multicast or reserved ones;
- loopback addresses only when `allow_loopback` (single-user loopback mode
  allows them, for a local Ollama or vLLM), private ranges (10/8,
  172.16/12, 192.168/16, fc00::/7, 100.64/10) only when `allow_private`.

A host name is resolved and every address it resolves to must pass, so a
name pointing at a metadata address is refused like the address itself.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)
"""Link-local and cloud metadata addresses: never reachable through a client's URL."""
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")


class RefusedUrl(ValueError):
    """A URL the server will not send a request to; the message says why."""


@dataclass(frozen=True)
class UrlPolicy:
    """What a client-supplied URL may point at."""

    allow_loopback: bool = True
    allow_private: bool = False

    def check(self, url: str, what: str = "the URL") -> None:
        """Raise `RefusedUrl` unless `url` may be requested (resolves the host: blocking)."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https"):
            shown = parts.scheme or "none"
            raise RefusedUrl(f"{what} must start with http:// or https:// (scheme: {shown})")
        if not parts.hostname:
            raise RefusedUrl(f"{what} names no host")
        if parts.username or parts.password:
            raise RefusedUrl(f"{what} holds a user name or password; credentials go elsewhere")
        try:
            port = parts.port
        except ValueError:
            raise RefusedUrl(f"{what} has an invalid port") from None
        for address in resolve(parts.hostname, port):
            reason = self.refusal(address)
            if reason:
                raise RefusedUrl(f"{what} points at {address}, {reason}; it is refused")

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` is refused, or None when it is allowed."""
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        if any(address in network for network in METADATA_NETWORKS):
            return "a link-local or cloud metadata address"
        if address.is_unspecified or address.is_multicast:
            return "not an address a server can be reached at"
        if address.is_loopback:
            if self.allow_loopback:
                return None
            return "a loopback address, which this server's settings do not allow"
        private = address.is_private or address in SHARED_ADDRESS_SPACE
        if private:
            if self.allow_private:
                return None
            return "a private network address, which this server's settings do not allow"
        if address.is_reserved:
            return "a reserved address"
        return None

    def guard(self, what: str) -> UrlGuard:
        """A check for every request a model client sends, redirects included."""
        return UrlGuard(self, what)


class UrlGuard:
    """Checks each outgoing request's URL; remembers the first refusal for the answer."""

    def __init__(self, policy: UrlPolicy, what: str) -> None:
        self.policy = policy
        self.what = what
        self.refused: str | None = None

    def __call__(self, url: str) -> None:
        """Raise `RefusedUrl` (and remember why) for a URL the policy refuses."""
        try:
            self.policy.check(url, f"{self.what} (a request to {url_host(url)})")
        except RefusedUrl as refused:
            self.refused = self.refused or str(refused)
            raise


def url_host(url: str) -> str:
    """scheme://host[:port] of `url`, for messages (no path, no query, no user info)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def resolve(host: str, port: int | None) -> list[IPAddress]:
    """The addresses `host` stands for: itself when it is one, else what DNS says."""
    try:
        return [ipaddress.ip_address(host.strip("[]").split("%")[0])]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise RefusedUrl(f"the host {host!r} could not be resolved ({error})") from None
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    if not addresses:
        raise RefusedUrl(f"the host {host!r} resolves to no address")
    return sorted(addresses, key=str)
