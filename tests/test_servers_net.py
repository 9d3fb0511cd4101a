"""Servers behind a proxy: headers and query token on HTTP and the websocket, TLS, and no secret in any log."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from core.comfyui.client import ComfyClient
from core.comfyui.listener import ComfyListener
from core.errors import BotError, ComfyServerError, ComfyUnreachable
from core.jobs.engine import Engine
from core.servers import ServerConfig
from core.workflows import load_catalog
from tests.conftest import MODELS, VIDEO_MODELS, WORKFLOWS
from tests.fakes.comfyui import FakeComfyUI

IMAGE = load_catalog(WORKFLOWS).workflows["image"]
TOKEN = "tok-9f8e7d6c5b4a"
QUERY_TOKEN = "q-1a2b3c4d5e6f"
PROXY_KEY = "pk-0011223344"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "X-Proxy-Key": PROXY_KEY}
SECRETS = (TOKEN, QUERY_TOKEN, PROXY_KEY)


@pytest.fixture
async def guarded() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(models=MODELS | VIDEO_MODELS, required_headers=HEADERS) as fake:  # every shipped model
        yield fake


def assert_no_secret(caplog: pytest.LogCaptureFixture, *errors: BaseException) -> None:
    texts = [r.getMessage() for r in caplog.records]
    texts += [str(e) for e in errors] + [str(getattr(e, "detail", "")) for e in errors]
    assert caplog.records  # the test did log something to look at
    for secret in SECRETS:
        assert not [t for t in texts if secret in t], secret


async def test_a_job_runs_with_the_headers_and_query_token_on_http_and_websocket(
    guarded: FakeComfyUI, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = ServerConfig("proxied", guarded.url, HEADERS, {"token": QUERY_TOKEN})
    engine = Engine(session, (config,), job_timeout=15, max_output_bytes=2**24, reconcile_interval=0.3)
    engine.start()
    try:
        result = await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat", "seed": 5}))
    finally:
        await engine.close()
    assert result.files and not guarded.refused
    paths = {r.path for r in guarded.requests}
    assert {"/ws", "/prompt", "/view"} <= paths
    assert all(r.query.get("token") == QUERY_TOKEN for r in guarded.requests)  # every request, ws included
    assert engine.servers[0].client.name == "proxied"
    assert_no_secret(caplog)


async def test_without_the_headers_http_and_websocket_get_401_and_say_so(
    guarded: FakeComfyUI, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = {"Authorization": "Bearer not-it", "X-Proxy-Key": PROXY_KEY}  # one of two right: still refused
    client = ComfyClient(session, ServerConfig("proxied", guarded.url, wrong, {"token": QUERY_TOKEN}))
    with pytest.raises(ComfyServerError) as caught:
        await client.queue()
    assert caught.value.detail == (
        "proxied: GET /queue -> 401: the server (or a proxy before it) wants credentials; "
        "set headers (e.g. Authorization) or query for this server in servers.toml"
    )
    listener = ComfyListener(client, reconcile_interval=60)
    listener.start()
    try:
        for _ in range(100):
            if any(r.path == "/ws" for r in guarded.refused):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
    finally:
        await listener.close()
    assert not listener.connected.is_set()
    assert not guarded.requests  # nothing got past the proxy
    assert "ComfyUI server proxied is down: 401: the server (or a proxy before it) wants credentials; " in caplog.text
    assert listener.state == "down"
    assert listener.last_error == (
        "401: the server (or a proxy before it) wants credentials; "
        "set headers (e.g. Authorization) or query for this server in servers.toml"
    )
    assert_no_secret(caplog, caught.value)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """Make a certificate for 127.0.0.1 that is its own CA, with the openssl command line."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed, so no certificate can be made")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    command += " -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_comfy(tmp_path: Path) -> AsyncIterator[tuple[FakeComfyUI, Path]]:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with FakeComfyUI(models=MODELS, ssl_context=context) as fake:
        yield fake, cert


async def test_self_signed_tls_works_with_ca_file(
    tls_comfy: tuple[FakeComfyUI, Path], session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, cert = tls_comfy
    assert fake.url.startswith("https://")
    config = ServerConfig("tls", fake.url, HEADERS, {"token": QUERY_TOKEN}, ca_file=cert)
    engine = Engine(session, (config,), job_timeout=15, max_output_bytes=2**24, reconcile_interval=0.3)
    engine.start()
    try:
        result = await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat", "seed": 5}))
    finally:
        await engine.close()
    assert result.files
    assert "/ws" in {r.path for r in fake.requests}  # over wss
    assert_no_secret(caplog)


async def test_self_signed_tls_is_refused_without_ca_file_with_a_clear_message(
    tls_comfy: tuple[FakeComfyUI, Path], session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, _ = tls_comfy
    client = ComfyClient(session, ServerConfig("tls", fake.url, HEADERS, {"token": QUERY_TOKEN}, verify_tls=True))
    errors: list[BotError] = []
    with pytest.raises(ComfyUnreachable) as caught:
        await client.probe()
    errors.append(caught.value)
    assert caught.value.detail is not None
    assert caught.value.detail.startswith("tls: GET /system_stats: its TLS certificate is not trusted (")
    assert caught.value.detail.endswith(
        "); for a self-signed certificate set ca_file to its CA certificate for this server in servers.toml "
        "(or verify_tls = false)"
    )
    assert "self-signed certificate" in caught.value.detail
    assert not fake.requests  # the handshake failed before any request was read
    listener = ComfyListener(client, reconcile_interval=60)
    listener.start()
    try:
        for _ in range(100):
            if "websocket to tls failed" in caplog.text:
                break
            await asyncio.sleep(0.02)
    finally:
        await listener.close()
    assert "ComfyUI server tls is down: its TLS certificate is not trusted (" in caplog.text
    assert_no_secret(caplog, *errors)


async def test_verify_tls_false_accepts_the_self_signed_server(
    tls_comfy: tuple[FakeComfyUI, Path], session: aiohttp.ClientSession
) -> None:
    fake, _ = tls_comfy
    client = ComfyClient(session, ServerConfig("tls", fake.url, verify_tls=False))
    info = await client.probe()
    assert info.version is not None


def test_scrub_hides_header_values_query_token_and_url_password() -> None:
    config = ServerConfig("x", "http://user:pw-777@h:1", HEADERS, {"token": QUERY_TOKEN})
    client = ComfyClient(aiohttp.ClientSession.__new__(aiohttp.ClientSession), config)
    text = f"url='http://user:pw-777@h:1/ws?token={QUERY_TOKEN}' Bearer {TOKEN} {TOKEN} key {PROXY_KEY}"
    assert client.scrub(text) == "url='http://user:***@h:1/ws?token=***' *** *** key ***"


async def test_check_reaches_a_server_behind_a_proxy_through_the_servers_file(
    guarded: FakeComfyUI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import bot
    import cli
    from core.config import load_settings

    servers = tmp_path / "servers.toml"
    servers.write_text(
        f'[servers.home]\nurl = "{guarded.url}"\n'
        '[servers.home.headers]\nAuthorization = "Bearer ${COMFY_TOKEN}"\nX-Proxy-Key = "${PROXY_KEY}"\n'
    )
    env = {"SERVERS_FILE": str(servers), "WORKFLOWS_DIR": str(WORKFLOWS), "COMFY_TOKEN": TOKEN, "PROXY_KEY": PROXY_KEY}
    code = await cli.execute(bot.parse_args(["check"]), load_settings(env, require_token=False))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Server home: reachable (ComfyUI 0.3.64," in out and out.rstrip().endswith("All good.")
    assert not guarded.refused
    assert not [s for s in SECRETS if s in out]


async def test_a_refused_upgrade_logs_no_url_encoded_token(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    from aiohttp import web

    token = "ab+cd/ef=="  # base64 tokens have characters a URL encodes: %2B, %3D

    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=403, text="forbidden")  # e.g. a proxy that does not like the token

    app = web.Application()
    app.router.add_get("/ws", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = ComfyClient(session, ServerConfig("proxied", f"http://127.0.0.1:{port}", {}, {"token": token}))
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(client.ws_url, params=client.params({"clientId": "c"}))
        problem = client.connection_problem(caught.value)
    finally:
        await runner.cleanup()
    assert problem == "WSServerHandshakeError: 403: Invalid response status"
    assert token not in problem and "ab%2Bcd" not in problem
    assert client.scrub("token=ab%2Bcd%2Fef%3D%3D or ab%2Bcd/ef%3D%3D") == "token=*** or ***"
