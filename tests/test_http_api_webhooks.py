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
        self.status = status
        self.headers = headers or {}
        self.app = web.Application()
        self.app.router.add_post("/hook", self.hook)
        self.app.router.add_route("*", "/elsewhere", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        self.calls.append((request.headers.copy(), await request.read()))
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


def refused(host: str, address: str) -> tuple[int, dict[str, Any]]:
    message = f'"webhook" must be a public address: {host} is or resolves to {address}, which webhooks may not reach.'
    return 400, {"error": {"code": "bad_request", "message": message}}


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://127.0.0.1:8188/hook", ("127.0.0.1", "127.0.0.1")),
        ("http://localhost/hook", ("localhost", "127.0.0.1")),
        ("http://2130706433/hook", ("2130706433", "127.0.0.1")),  # 127.0.0.1 spelt as one number
        ("http://10.1.2.3/hook", ("10.1.2.3", "10.1.2.3")),
        ("http://192.168.1.20/hook", ("192.168.1.20", "192.168.1.20")),
        ("http://169.254.169.254/latest/meta-data", ("169.254.169.254", "169.254.169.254")),  # cloud metadata
        ("http://0.0.0.0:8080/", ("0.0.0.0", "0.0.0.0")),
        ("http://224.0.0.1/", ("224.0.0.1", "224.0.0.1")),
        ("http://240.0.0.1/", ("240.0.0.1", "240.0.0.1")),
        ("http://100.64.0.1/", ("100.64.0.1", "100.64.0.1")),
        ("http://[::1]:8080/hook", ("::1", "::1")),
        ("http://[::]/", ("::", "::")),
        ("http://[fe80::1]/", ("fe80::1", "fe80::1")),
        ("http://[fd00::5]/", ("fd00::5", "fd00::5")),
        ("http://[ff02::1]/", ("ff02::1", "ff02::1")),
        ("http://[::ffff:127.0.0.1]/hook", ("::ffff:127.0.0.1", "::ffff:7f00:1")),
    ],
)
async def test_webhooks_to_internal_addresses_are_refused_at_submit(
    comfy: FakeComfyUI, tmp_path: Path, session: aiohttp.ClientSession, url: str, named: tuple[str, str]
) -> None:
    async with running_api(comfy, tmp_path, session) as api:
        assert await api.submit(workflow="image", params={"prompt": "a"}, webhook=url) == refused(*named)
        assert await api.submit(workflow="image", params={"prompt": "a"}, webhook="ftp://example.com/x") == (
            400,
            {"error": {"code": "bad_request", "message": '"webhook" must be an http:// or https:// address.'}},
        )
    assert not [r for r in comfy.requests if r.path == "/prompt"]


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
        dns = Rebinding({"hooks.example": ["93.184.215.14", "127.0.0.1"]})
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
        assert dns.asked.count("hooks.example") >= 2


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
        '"webhook" must be a public address: mixed.example is or resolves to 10.0.0.7, which webhooks may not reach.'
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
