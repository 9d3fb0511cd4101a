"""Serving the HTTP API: inside the Discord bot's process (`start_api`), or alone with `python bot.py api` (`main`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Mapping

import aiohttp
from aiohttp import web

from core.config import Settings
from core.errors import BotError, ConfigError
from core.jobs.engine import Engine
from core.jobs.store import JobStore
from core.workflows import Workflow, load_catalog, runnable
from http_api.app import make_app
from http_api.jobs import ApiJobs

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080  # for `bot.py api` when HTTP_API_PORT is not set
NO_TOKENS = (
    "HTTP_API_TOKENS is empty, so nobody could use the API. Add name:token pairs to .env, e.g. "
    'HTTP_API_TOKENS=myapp:<a long random token> (python -c "import secrets; print(secrets.token_urlsafe(32))").'
)


class ApiServer:
    """A running API: its listening socket and its jobs; close() stops both."""

    def __init__(self, runner: web.AppRunner, jobs: ApiJobs, address: str) -> None:
        self.runner = runner
        self.jobs = jobs
        self.address = address

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.jobs.close()


async def start_api(
    settings: Settings,
    engine: Engine,
    store: JobStore,
    session: aiohttp.ClientSession,
    workflows: Callable[[], Mapping[str, Workflow]],
    *,
    port: int | None = None,
) -> ApiServer:
    """Serve the API on HTTP_API_HOST:port with this engine and store; ConfigError when the port cannot be had."""
    port = port if port is not None else settings.http_api_port or DEFAULT_PORT
    jobs = ApiJobs(
        engine,
        store,
        session,
        settings.http_api_output_dir,
        keep_hours=settings.http_api_keep_hours,
        webhook_secret=settings.http_api_webhook_secret,
        allow_private=settings.http_api_webhook_allow_private,
    )
    await jobs.start()
    runner = web.AppRunner(make_app(engine, jobs, workflows, settings.http_api_tokens), access_log=None)
    await runner.setup()
    host = settings.http_api_host
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        await jobs.close()
        raise ConfigError(
            [
                f"Cannot serve the HTTP API on {host}:{port}: {exc.strerror or exc}. "
                "Set HTTP_API_PORT (and HTTP_API_HOST) to a free address."
            ]
        ) from None
    address = f"http://{host}:{port}"
    log.info("HTTP API on %s (%d token(s))", address, len(settings.http_api_tokens))
    return ApiServer(runner, jobs, address)


def main(settings: Settings) -> int:
    """`python bot.py api`: serve the API without Discord until interrupted; 2 on a configuration problem."""
    if not settings.http_api_tokens:
        print(NO_TOKENS, file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    except BotError as exc:
        print(exc.user_message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the engine and the API until `stop` is set (by default: until SIGINT or SIGTERM)."""
    stop = stop or _stop_on_signals()
    store = await JobStore(settings.jobs_db).open()
    try:
        async with aiohttp.ClientSession() as session:
            engine = Engine.from_settings(session, settings, store)
            engine.start()
            try:
                catalog = load_catalog(settings.workflows_dir)
                infos, versions = await engine.object_infos()
                if infos:  # as the bot registers them: only what some server can run
                    catalog = runnable(catalog, infos, versions)
                engine.capabilities(catalog.workflows)
                for problem in catalog.problems:
                    log.warning("workflow skipped: %s", problem)
                server = await start_api(settings, engine, store, session, lambda: catalog.workflows)
                print(f"Serving the HTTP API on {server.address}; Ctrl+C stops it.", file=sys.stderr)
                try:
                    await stop.wait()
                finally:
                    await server.close()
            finally:
                await engine.close()
    finally:
        await store.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(sig, stop.set)
    return stop
