"""Webhook calls of the HTTP API: signed with HMAC-SHA256, and kept away from internal addresses (no SSRF).

A webhook URL comes from a client, so the bot must not become its way into the bot's own network: a host that
is or resolves to a loopback, private, link-local, multicast, reserved or unspecified address is refused when
the job is submitted, and again when the call is made, by the resolver the call's connection uses (so a name
that resolves elsewhere the second time, DNS rebinding, is caught on the very addresses connected to).
HTTP_API_WEBHOOK_ALLOW_PRIVATE=true (a LAN) lifts the check: no resolver of ours then.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from core.servers import url_problem
from core.text import cap

TIMESTAMP_HEADER = "X-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Webhook-Signature"
NOT_HTTP = '"webhook" must be an http:// or https:// address.'
INTERNAL = '"webhook" must be a public address: {host} is or resolves to {address}, which webhooks may not reach.'
UNKNOWN_HOST = '"webhook": the host {host} cannot be found.'

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def internal(address: Address) -> bool:
    """Whether a webhook may not reach `address`: loopback, private, link-local, multicast, reserved, unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
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
    try:
        return ipaddress.ip_address(host.partition("%")[0])  # an IPv6 zone (fe80::1%eth0) is no other address
    except ValueError:
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
            found = [_result(host, literal, port)]
        else:
            if self._inner is None:
                self._inner = ThreadedResolver()  # made here: it takes the running loop
            found = await self._inner.resolve(host, port, family)
        for result in found:
            address = _literal(result["host"])
            if address is None or internal(address):
                raise OSError(INTERNAL.format(host=cap(host, 100), address=result["host"]))
        return found

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def _result(host: str, address: Address, port: int) -> ResolveResult:
    family = socket.AF_INET6 if isinstance(address, ipaddress.IPv6Address) else socket.AF_INET
    return ResolveResult(hostname=host, host=str(address), port=port, family=family, proto=0, flags=0)


async def webhook_problem(url: str, resolver: WebhookResolver | None) -> str | None:
    """Why `url` cannot be a job's webhook (the client's message), or None; no resolver: any address goes."""
    if url_problem(url) is not None:
        return NOT_HTTP
    if resolver is None:
        return None
    host = urlsplit(url).hostname or ""
    try:
        await resolver.resolve(host, 0, socket.AF_UNSPEC)
    except socket.gaierror:
        return UNKNOWN_HOST.format(host=cap(host, 100))
    except OSError as exc:
        return str(exc)
    return None


def literal_problem(url: str) -> str | None:
    """Why a webhook may not reach `url` when its host is an IP literal (aiohttp connects to those unresolved)."""
    host = urlsplit(url).hostname or ""
    address = _literal(host)
    if address is not None and internal(address):
        return INTERNAL.format(host=host, address=address)
    return None


def webhook_session(resolver: WebhookResolver | None) -> aiohttp.ClientSession:
    """The session webhooks are called with: through `resolver`, so each connection's address is checked.

    aiohttp does not ask the resolver about IP literals: check the URL with webhook_problem before each call too.
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
