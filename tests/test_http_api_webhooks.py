"""The HTTP API's webhooks: HMAC signatures a receiver can verify, and no calls into the bot's own network."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

import http_api.webhooks
from core.config import load_settings
from core.errors import ConfigError
from http_api.webhooks import WebhookResolver, internal
from tests.conftest import WORKFLOWS
from tests.fakes.comfyui import FakeComfyUI
from tests.test_http_api import running_api

SECRET = "whsec-0123456789abcdef"


def readme_snippet() -> str:
    """The verification code the README gives webhook receivers."""
    readme = (WORKFLOWS.parent / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    [snippet] = [block for block in blocks if "X-Webhook-Signature" in block]
    return textwrap.dedent(snippet)


def verify(secret: str, headers: Any, body: bytes) -> bool:
    """What a receiver does: run the README's snippet on the call as received."""
    scope: dict[str, Any] = {"secret": secret, "headers": headers, "body": body}
    exec(readme_snippet(), scope)  # our own README, not outside input
    return scope["ok"]


class Receiver:
    """A webhook receiver on this machine that records each call's headers and body."""

    def __init__(self, status: int = 204, headers: dict[str, str] | None = None) -> None:
        self.calls: list[tuple[Any, bytes]] = []
        self.queries: list[str] = []
        self.status = status
        self.headers = headers or {}
        self.app = web.Application()
        self.app.router.add_post("/hook", self.hook)
        self.app.router.add_route("*", "/elsewhere", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        self.calls.append((request.headers.copy(), await request.read()))
        self.queries.append(request.query_string)
        return web.Response(status=self.status, headers=self.headers)


async def until(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_signed_webhook_verifies_and_a_tampered_body_does_not(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    receiver = Receiver()
    async with (
        running_api(comfy, tmp_path, session, allow_private=True, webhook_secret=SECRET) as api,
        TestServer(receiver.app) as server,
    ):
        status, job = await api.submit(workflow="image", params={"prompt": "a"}, webhook=str(server.make_url("/hook")))
        assert status == 202
        await until(lambda: len(receiver.calls) == 1)
    [(headers, body)] = receiver.calls
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Webhook-Signature"].startswith("sha256=")
    assert verify(SECRET, headers, body)
    assert b'"state": "done"' in body and job["id"].encode() in body
    assert not verify(SECRET, headers, body.replace(b'"done"', b'"fail"'))  # a tampered body
    assert not verify("another-secret-0123456", headers, body)
    assert not verify(SECRET, {**headers, "X-Webhook-Timestamp": str(int(headers["X-Webhook-Timestamp"]) + 1)}, body)


async def test_without_a_secret_webhooks_are_not_signed(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    receiver = Receiver()
    async with running_api(comfy, tmp_path, session, allow_private=True) as api, TestServer(receiver.app) as server:
        status, _ = await api.submit(workflow="image", params={"prompt": "a"}, webhook=str(server.make_url("/hook")))
        assert status == 202
        await until(lambda: len(receiver.calls) == 1)
    [(headers, _)] = receiver.calls
    assert "X-Webhook-Signature" not in headers and "X-Webhook-Timestamp" not in headers


def bad_request(message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": {"code": "bad_request", "message": message}}


def refused(address: str) -> tuple[int, dict[str, Any]]:
    return bad_request(f'"webhook" must be a public address: {address} is internal, and webhooks may not reach it.')


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:8188/hook", "127.0.0.1"),
        ("http://2130706433/hook", "127.0.0.1"),  # 127.0.0.1 spelt as one number: aiohttp takes it for a literal
        ("http://0177.0.0.1/hook", "127.0.0.1"),  # octal
        ("http://127.1/hook", "127.0.0.1"),
        ("http://0/hook", "0.0.0.0"),
        ("http://10.1.2.3/hook", "10.1.2.3"),
        ("http://192.168.1.20/hook", "192.168.1.20"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),  # cloud metadata
        ("http://0.0.0.0:8080/", "0.0.0.0"),
        ("http://224.0.0.1/", "224.0.0.1"),
        ("http://240.0.0.1/", "240.0.0.1"),
        ("http://100.64.0.1/", "100.64.0.1"),
        ("http://[::1]:8080/hook", "::1"),
        ("http://[::]/", "::"),
        ("http://[fe80::1]/", "fe80::1"),
        ("http://[fd00::5]/", "fd00::5"),
        ("http://[ff02::1]/", "ff02::1"),
        ("http://[::ffff:127.0.0.1]/hook", "::ffff:7f00:1"),
        ("http://[2002:a00:1::1]/hook", "2002:a00:1::1"),  # 6to4 carrying 10.0.0.1
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "2001:0:4136:e378:8000:63bf:80ff:fffe"),  # Teredo, 127.0.0.1
    ],
)
async def test_webhooks_to_internal_addresses_are_refused_at_submit(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession, url: str, address: str
) -> None:
    async with running_api(comfy, tmp_path, session) as api:
        assert await api.submit(workflow="image", params={"prompt": "a"}, webhook=url) == refused(address)
    assert not [r for r in comfy.requests if r.path == "/prompt"]


@pytest.mark.abuse
async def test_a_name_of_an_internal_address_is_refused_without_naming_the_address(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    dns = Rebinding({"intranet.example": ["10.0.0.7"]})
    async with running_api(comfy, tmp_path, session, resolver=dns) as api:
        assert await api.submit(workflow="image", params={"prompt": "a"}, webhook="http://intranet.example/") == (
            bad_request(
                '"webhook" must be a public address: intranet.example resolves to an internal address, '
                "which webhooks may not reach."
            )
        )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", '"webhook" must be an http:// or https:// address.'),
        (
            "https:///hook",
            '"webhook" is not a usable address: it must start with http:// or https:// followed by a host name.',
        ),
        (
            "https://example.com:99999/x",
            '"webhook" is not a usable address: the port must be a number from 1 to 65535.',
        ),
        (
            "https://me:secret@example.com/hook",
            '"webhook" must not hold a user name or password: put a token in its ?query, or check the signature '
            "(HTTP_API_WEBHOOK_SECRET).",
        ),
        (
            "https://example.com/a hook",
            '"webhook" is not a usable address: it contains spaces or characters that are not plain ASCII.',
        ),
    ],
)
async def test_a_webhook_that_is_not_a_usable_address_gets_its_reason(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession, url: str, message: str
) -> None:
    async with running_api(comfy, tmp_path, session, allow_private=True) as api:
        assert await api.submit(workflow="image", params={"prompt": "a"}, webhook=url) == bad_request(message)


async def test_a_webhook_with_a_query_string_is_called_with_it(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    receiver = Receiver()
    async with running_api(comfy, tmp_path, session, allow_private=True) as api, TestServer(receiver.app) as server:
        url = str(server.make_url("/hook")) + "?token=abc123&kind=done"
        status, _ = await api.submit(workflow="image", params={"prompt": "a"}, webhook=url)
        assert status == 202
        await until(lambda: len(receiver.calls) == 1)
    assert receiver.queries == ["token=abc123&kind=done"]


@pytest.mark.abuse
async def test_a_slow_lookup_of_the_webhook_host_is_refused(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Slow(Rebinding):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            await asyncio.sleep(10)
            return await super().resolve(host, port, family)

    monkeypatch.setattr(http_api.webhooks, "LOOKUP_TIMEOUT", 0.05)  # 5 s in production
    async with running_api(comfy, tmp_path, session, resolver=Slow({"slow.example": ["93.184.215.14"]})) as api:
        assert await api.submit(workflow="image", params={"prompt": "a"}, webhook="https://slow.example/") == (
            bad_request(
                '"webhook": looking up the host slow.example took over 0.05 seconds; try again, or use another address.'
            )
        )


@pytest.mark.abuse
async def test_the_call_itself_refuses_a_numeric_host_aiohttp_does_not_resolve(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver()
    async with running_api(comfy, tmp_path, session) as api, TestServer(receiver.app, host="127.0.0.1") as server:
        url = f"http://2130706433:{server.port}/hook"  # 127.0.0.1, where the receiver listens
        await api.jobs._call_webhook(url, {"id": "job-1"})
    assert receiver.calls == []
    not_called = (
        f"webhook of api job job-1 to {url} not called: "
        '"webhook" must be a public address: 127.0.0.1 is internal, and webhooks may not reach it.'
    )
    assert [r.getMessage() for r in caplog.records if r.name == "http_api.jobs"] == [not_called]


class Rebinding(AbstractResolver):
    """A DNS server that answers each name with the next of its addresses: public first, then internal."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = self.answers[host].pop(0) if len(self.answers[host]) > 1 else self.answers[host][0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)]

    async def close(self) -> None:
        pass


@pytest.mark.abuse
async def test_a_name_that_rebinds_to_an_internal_address_is_not_called(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver()
    async with TestServer(receiver.app) as server:
        # Public when submitted and when checked before the call, internal when the connection resolves it
        dns = Rebinding({"hooks.example": ["93.184.215.14", "93.184.215.14", "127.0.0.1"]})
        async with running_api(comfy, tmp_path, session, resolver=dns) as api:
            url = f"http://hooks.example:{server.port}/hook"
            status, job = await api.submit(workflow="image", params={"prompt": "a"}, webhook=url)
            assert status == 202  # public when submitted
            assert await api.submit(workflow="image", params={"prompt": "a"}, webhook="http://nowhere.example/") == (
                400,
                {"error": {"code": "bad_request", "message": '"webhook": the host nowhere.example cannot be found.'}},
            )
            await api.until_ended(job["id"])
            given_up = f"webhook of api job {job['id']} to {url} failed 4 times (last: ClientConnectorDNSError)"
            await until(lambda: any(r.getMessage() == given_up for r in caplog.records))
        assert receiver.calls == []  # the connection checked the address it was given, and never opened
        assert dns.asked.count("hooks.example") >= 3


async def test_a_webhook_redirect_is_not_followed(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver(status=307, headers={"Location": "/elsewhere"})
    async with running_api(comfy, tmp_path, session, allow_private=True) as api, TestServer(receiver.app) as server:
        status, job = await api.submit(workflow="image", params={"prompt": "a"}, webhook=str(server.make_url("/hook")))
        assert status == 202
        url = str(server.make_url("/hook"))
        given_up = f"webhook of api job {job['id']} to {url} failed 4 times (last: HTTP 307)"
        await until(lambda: any(r.getMessage() == given_up for r in caplog.records))
    assert len(receiver.calls) == 4  # each to /hook, never to /elsewhere


@pytest.mark.parametrize(
    ("address", "is_internal"),
    [
        ("8.8.8.8", False),
        ("93.184.215.14", False),
        ("2606:4700:4700::1111", False),
        ("::ffff:8.8.8.8", False),
        ("2002:808:808::1", False),  # 6to4 carrying 8.8.8.8
        ("2002:7f00:1::1", True),  # 6to4 carrying 127.0.0.1
        ("172.16.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("198.18.0.1", True),  # benchmarking range: reserved
        ("255.255.255.255", True),
    ],
)
def test_internal_addresses(address: str, is_internal: bool) -> None:
    assert internal(ipaddress.ip_address(address)) is is_internal


async def test_the_resolver_refuses_a_name_with_any_internal_address() -> None:
    class Both(Rebinding):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            return [
                ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
                for a in ("93.184.215.14", "10.0.0.7")
            ]

    resolver = WebhookResolver(Both({}))
    with pytest.raises(OSError) as caught:
        await resolver.resolve("mixed.example", 443)
    assert str(caught.value) == (
        '"webhook" must be a public address: mixed.example resolves to an internal address, '
        "which webhooks may not reach."
    )
    [public] = await WebhookResolver(Rebinding({"ok.example": ["93.184.215.14"]})).resolve("ok.example", 443)
    assert (public["host"], public["port"]) == ("93.184.215.14", 443)


def test_webhook_settings() -> None:
    env = {"WORKFLOWS_DIR": str(WORKFLOWS)}
    settings = load_settings(
        {**env, "HTTP_API_WEBHOOK_SECRET": SECRET, "HTTP_API_WEBHOOK_ALLOW_PRIVATE": "true"}, require_token=False
    )
    assert settings.http_api_webhook_secret == SECRET and settings.http_api_webhook_allow_private
    assert SECRET not in repr(settings)
    default = load_settings(env, require_token=False)
    assert default.http_api_webhook_secret is None and not default.http_api_webhook_allow_private
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {**env, "HTTP_API_WEBHOOK_SECRET": "short-secret", "HTTP_API_WEBHOOK_ALLOW_PRIVATE": "maybe"},
            require_token=False,
        )
    assert caught.value.problems == [
        "HTTP_API_WEBHOOK_SECRET is shorter than 16 characters; make a long random one, "
        'e.g. with: python -c "import secrets; print(secrets.token_urlsafe(32))"',
        "HTTP_API_WEBHOOK_ALLOW_PRIVATE must be true or false (default false); got 'maybe'.",
    ]
    assert "short-secret" not in caught.value.user_message
