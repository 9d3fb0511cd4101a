"""Webhook calls of the HTTP API: signed with HMAC-SHA256, and kept away from internal addresses (no SSRF).

A webhook URL comes from a client, so the bot must not become its way into the bot's own network: a host that
is or resolves to a loopback, private, link-local, multicast, reserved or unspecified address (or a 6to4 or Teredo
one carrying such an IPv4 address) is refused when the job is submitted, again when the call is made, and by the
resolver the call's connection uses (so a name that resolves elsewhere the next time, DNS rebinding, is caught on
the very addresses connected to).
HTTP_API_WEBHOOK_ALLOW_PRIVATE=true (a LAN) lifts the check: no resolver of ours then.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from core.servers import url_problem as server_url_problem
from core.text import cap

TIMESTAMP_HEADER = "X-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Webhook-Signature"
LOOKUP_TIMEOUT = 5.0  # seconds the submit-time lookup of a webhook's host may take
NOT_HTTP = '"webhook" must be an http:// or https:// address.'
NOT_USABLE = '"webhook" is not a usable address: {reason}.'
WITH_PASSWORD = (
    '"webhook" must not hold a user name or password: put a token in its ?query, or check the signature '
    "(HTTP_API_WEBHOOK_SECRET)."
)
# An address is named only when the client gave it: for a name, which internal address it has stays ours
INTERNAL_ADDRESS = '"webhook" must be a public address: {address} is internal, and webhooks may not reach it.'
INTERNAL_NAME = (
    '"webhook" must be a public address: {host} resolves to an internal address, which webhooks may not reach.'
)
UNKNOWN_HOST = '"webhook": the host {host} cannot be found.'
SLOW_LOOKUP = '"webhook": looking up the host {host} took over {seconds:g} seconds; try again, or use another address.'

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def internal(address: Address) -> bool:
    """Whether a webhook may not reach `address`: loopback, private, link-local, multicast, reserved, unspecified."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return internal(address.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1
        # 6to4 (2002::/16) and Teredo (2001::/32) addresses carry an IPv4 address their relays forward to
        tunnelled = address.sixtofour or (address.teredo[1] if address.teredo else None)
        if tunnelled is not None and internal(tunnelled):
            return True
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global  # the rest of the special ranges (e.g. 100.64.0.0/10, shared by carriers)
    )


def _literal(host: str) -> Address | None:
    """The address `host` is when aiohttp takes it for an IP literal (and connects to it without resolving)."""
    try:
        return ipaddress.ip_address(host.partition("%")[0])  # an IPv6 zone (fe80::1%eth0) is no other address
    except ValueError:
        pass
    if host and host.replace(".", "").isascii() and host.replace(".", "").isdigit():  # aiohttp's is_ip_address
        try:  # the C library reads 2130706433, 127.1 and 0177.0.0.1 (octal) as 127.0.0.1, and 0 as 0.0.0.0
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class WebhookResolver(AbstractResolver):
    """Resolve like `inner`, refusing (OSError) a host with any internal address; IP literals are checked too."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = _literal(host)
        if literal is not None:
            if internal(literal):
                raise OSError(INTERNAL_ADDRESS.format(address=literal))
            return [_result(host, literal, port)]
        if self._inner is None:
            self._inner = ThreadedResolver()  # made here: it takes the running loop
        found = await self._inner.resolve(host, port, family)
        for result in found:
            address = _literal(result["host"])
            if address is None or internal(address):
                raise OSError(INTERNAL_NAME.format(host=cap(host, 100)))
        return found

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def _result(host: str, address: Address, port: int) -> ResolveResult:
    family = socket.AF_INET6 if isinstance(address, ipaddress.IPv6Address) else socket.AF_INET
    return ResolveResult(hostname=host, host=str(address), port=port, family=family, proto=0, flags=0)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook's address whatever it resolves to (the client's message), or None."""
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        return NOT_USABLE.format(reason="it contains spaces or characters that are not plain ASCII")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket
        return NOT_USABLE.format(reason="it cannot be read as a URL")
    if parts.scheme not in ("http", "https"):
        return NOT_HTTP
    if "@" in parts.netloc:
        return WITH_PASSWORD
    # A ComfyUI server's rules for the rest (scheme, host, port); a receiver often wants its token in the query
    reason = server_url_problem(urlunsplit(parts._replace(query="", fragment="")))
    return None if reason is None else NOT_USABLE.format(reason=reason)


async def webhook_problem(url: str, resolver: WebhookResolver | None) -> str | None:
    """Why `url` cannot be a job's webhook (the client's message), or None; no resolver: any address goes."""
    problem = url_problem(url)
    if problem is not None or resolver is None:
        return problem
    host = urlsplit(url).hostname or ""
    try:
        async with asyncio.timeout(LOOKUP_TIMEOUT):
            await resolver.resolve(host, 0, socket.AF_UNSPEC)
    except TimeoutError:
        return SLOW_LOOKUP.format(host=cap(host, 100), seconds=LOOKUP_TIMEOUT)
    except socket.gaierror:
        return UNKNOWN_HOST.format(host=cap(host, 100))
    except OSError as exc:
        return str(exc)
    return None


def webhook_session(resolver: WebhookResolver | None) -> aiohttp.ClientSession:
    """The session webhooks are called with: through `resolver`, so each connection's address is checked.

    aiohttp does not ask the resolver about what it takes for IP literals: check webhook_problem before each call.
    """
    if resolver is None:
        return aiohttp.ClientSession()
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Webhook-Signature value: sha256= and the hex HMAC-SHA256 of "<timestamp>." + body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str | None, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers of one webhook call: JSON, and with a secret its timestamp and signature."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        timestamp = str(int(time.time() if now is None else now))
        headers |= {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}
    return headers
