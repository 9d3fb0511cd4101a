"""HTTP calls to one ComfyUI server. The session is owned by the caller (one per process)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus, urlsplit

import aiohttp

from core.comfyui.node_errors import describe_rejection, missing_option_inputs
from core.comfyui.types import (
    FileRef,
    HistoryEntry,
    Prompt,
    QueueState,
    load_json,
    parse_history,
    parse_input_options,
    parse_job,
    parse_jobs_page,
    parse_object_info,
    parse_prompt_reply,
    parse_queue,
    parse_system_stats,
    parse_upload,
)
from core.errors import ComfyServerError, ComfyUnreachable, PromptRejected
from core.servers import ServerConfig
from core.spool import Sink

log = logging.getLogger(__name__)
T = TypeVar("T")

API_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5)
OBJECT_INFO_TIMEOUT = aiohttp.ClientTimeout(total=120, connect=5)
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5, sock_read=60)
DOWNLOAD_CHUNK = 1 << 18  # bytes read and written at a time while streaming an output to disk

CREDENTIALS_REFUSED = (
    "the server (or a proxy before it) wants credentials; set headers (e.g. Authorization) "
    "or query for this server in servers.toml"
)

__all__ = ["ComfyClient", "QueueState", "ServerInfo", "TooLarge"]


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What one server is: its ComfyUI version (None until read) and whether it has the /api/jobs routes."""

    version: str | None = None
    jobs_api: bool = False


class TooLarge(Exception):
    """An output file is over the caller's limit; `size` is its full size when the server announced it."""

    def __init__(self, size: int | None, limit: int) -> None:
        super().__init__(f"{size if size is not None else 'more than ' + str(limit)} bytes")
        self.size = size
        self.limit = limit


class ComfyClient:
    """One ComfyUI server's HTTP API. Every answer is checked for shape (core.comfyui.types) before use."""

    def __init__(self, session: aiohttp.ClientSession, server: ServerConfig | str) -> None:
        self.config = server if isinstance(server, ServerConfig) else ServerConfig.from_url(server.rstrip("/"))
        self.session = session
        self.base_url = self.config.url.rstrip("/")
        self.name = self.config.name  # never a secret: a servers.toml NAME or the URL without its password
        self.info = ServerInfo()  # refreshed by probe() on every websocket (re)connect
        # What every HTTP request and the websocket upgrade carry: the server's headers, query token and TLS.
        self.headers = dict(self.config.headers)
        self.query = dict(self.config.query)
        self.ssl = self.config.ssl_context()
        password = urlsplit(self.base_url).password
        secrets = [*self.config.headers.values(), *self.config.query.values(), *([password] if password else [])]
        # ...and as URLs carry them (aiohttp's query strings keep "/", form encoding turns " " into "+")
        secrets += [encoded for s in secrets for encoded in (quote(s, safe=""), quote(s, safe="/"), quote_plus(s))]
        # Longest first, so that "Bearer abc" is hidden whole before "abc" alone would be.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """Hide this server's header values, query token and URL password in text bound for a log or message."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
            if " " in secret:  # "Bearer abc": the token alone may show too
                token = secret.rsplit(" ", 1)[1]
                if len(token) >= 4:
                    text = text.replace(token, "***")
        return text

    def params(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The query string of one request: its own parameters plus the server's query token."""
        return {**(extra or {}), **self.query}

    def connection_problem(self, exc: BaseException) -> str:
        """Say why a connection failed, in words an admin can act on, with no secret in them."""
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            cause = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
            return (
                f"its TLS certificate is not trusted ({cause}); for a self-signed certificate set ca_file "
                "to its CA certificate for this server in servers.toml (or verify_tls = false)"
            )
        if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status in (401, 407):
            return f"{exc.status}: {CREDENTIALS_REFUSED}"
        if isinstance(exc, aiohttp.ClientResponseError):  # its text holds the request URL, query token included
            return self.scrub(f"{type(exc).__name__}: {exc.status}: {exc.message}")
        return self.scrub(f"{type(exc).__name__}: {exc}")

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/ws"

    async def _call(
        self,
        method: str,
        path: str,
        read: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        *,
        timeout: aiohttp.ClientTimeout = API_TIMEOUT,
        **kwargs: Any,
    ) -> T:
        """Send one request and hand the response to `read`.

        Network failures become ComfyUnreachable; anything else aiohttp refuses (an answer that is not HTTP,
        broken headers: another program on that port) becomes ComfyServerError.
        """
        params = self.params(kwargs.pop("params", None))
        try:
            async with self.session.request(
                method,
                self.base_url + path,
                timeout=timeout,
                headers=self.headers,
                params=params,
                ssl=self.ssl,
                **kwargs,
            ) as resp:
                if resp.status in (401, 407):  # before `read`, which would show only a status
                    raise ComfyServerError(self.name, f"{method} {path} -> {resp.status}: {CREDENTIALS_REFUSED}")
                return await read(resp)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError, OSError) as exc:
            raise ComfyUnreachable(self.name, f"{method} {path}: {self.connection_problem(exc)}") from exc
        except aiohttp.ClientError as exc:
            reason = " ".join(self.scrub(str(getattr(exc, "message", None) or exc)).split())  # aiohttp's spans lines
            raise ComfyServerError(self.name, f"{method} {path}: not an answer of ComfyUI: {reason}"[:300]) from exc

    async def _get_json(
        self, path: str, route: str, *, timeout: aiohttp.ClientTimeout = API_TIMEOUT, missing: Any = ..., **kw: Any
    ) -> Any:
        """GET a JSON answer; a 404 gives `missing` when one is given, any other error status ComfyServerError."""

        async def read(resp: aiohttp.ClientResponse) -> Any:
            if resp.status == 404 and missing is not ...:
                return missing
            if resp.status != 200:
                raise ComfyServerError(self.name, f"GET {path} -> {resp.status}: {(await resp.text())[:200]}")
            return load_json(await resp.read(), self.name, route)

        return await self._call("GET", path, read, timeout=timeout, **kw)

    async def _post(self, path: str, body: dict[str, Any] | None) -> None:
        async def read(resp: aiohttp.ClientResponse) -> None:
            if resp.status != 200:
                raise ComfyServerError(self.name, f"POST {path} -> {resp.status}: {(await resp.text())[:200]}")

        await self._call("POST", path, read, json=body)

    async def probe(self) -> ServerInfo:
        """Read the server's version and whether it has the /api/jobs routes; keep and return it.

        Only an unreachable server raises: a route that answers oddly (a proxy, an old or patched server)
        counts as unknown, since the server may still run jobs and its /object_info still be read.
        """
        version: str | None = None
        jobs_api = False
        try:
            version = parse_system_stats(await self._get_json("/system_stats", "GET /system_stats"), self.name)
        except ComfyUnreachable:
            raise
        except ComfyServerError as exc:
            log.warning("%s: version unknown: %s", self.name, exc.detail)
        try:
            page = await self._get_json("/api/jobs", "GET /api/jobs", missing=None, params={"limit": "1"})
            if page is not None:
                parse_jobs_page(page, self.name)
                jobs_api = True
        except ComfyUnreachable:
            raise
        except ComfyServerError as exc:
            log.warning("%s: jobs API not used: %s", self.name, exc.detail)
        self.info = ServerInfo(version, jobs_api)
        log.info("%s: ComfyUI %s, jobs API %s", self.name, version or "of unknown version", jobs_api)
        return self.info

    async def submit(self, prompt: Prompt, *, client_id: str, prompt_id: str) -> float:
        """Queue `prompt` under our client and prompt id; return its queue number.

        Raises PromptRejected when ComfyUI refuses it. A 200 that still carries node_errors means only
        some outputs were queued: that half-run is removed and reported as a rejection too.
        """
        body = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}

        async def read(resp: aiohttp.ClientResponse) -> tuple[int, Any]:
            if resp.status not in (200, 400):
                raise ComfyServerError(self.name, f"POST /prompt -> {resp.status}: {(await resp.text())[:200]}")
            return resp.status, load_json(await resp.read(), self.name, "POST /prompt")

        status, data = await self._call("POST", "/prompt", read, json=body)
        reply = parse_prompt_reply(data, self.name)
        if status == 200 and not reply.node_errors:
            return reply.number or 0.0
        if status == 200:
            log.warning("%s queued %s with node errors; removing the partial run", self.name, prompt_id)
            await self.cancel(prompt_id)
        log.warning("%s rejected prompt %s: %s", self.name, prompt_id, json.dumps(data)[:2000])
        options = await self._options_for(missing_option_inputs(reply.node_errors))
        message = describe_rejection(reply.error, reply.node_errors, prompt, options, version=self.info.version)
        raise PromptRejected(message, detail=json.dumps(data)[:2000])

    async def _options_for(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        """Fetch the allowed values ComfyUI left out of a long value_not_in_list error."""
        found: dict[tuple[str, str], list[str]] = {}
        for class_type, input_name in wanted:
            try:
                found[(class_type, input_name)] = await self.input_options(class_type, input_name)
            except (ComfyUnreachable, ComfyServerError):
                continue
        return found

    async def input_options(self, class_type: str, input_name: str) -> list[str]:
        """The values the server accepts for one combo input (e.g. its checkpoint files), [] if none."""
        # Class names may hold spaces, "+" or "/" (custom nodes), so the name is quoted whole into the path.
        data = await self._get_json(f"/object_info/{quote(class_type, safe='')}", "GET /object_info")
        return parse_input_options(data, class_type, input_name, self.name)

    async def upload(self, filename: str, data: bytes, *, subfolder: str) -> str:
        """Put an input file (image or audio) on the server; return the name a LoadImage/LoadAudio input takes."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type="application/octet-stream")
        form.add_field("subfolder", subfolder)
        form.add_field("type", "input")

        async def read(resp: aiohttp.ClientResponse) -> Any:
            if resp.status != 200:
                raise ComfyServerError(self.name, f"POST /upload/image {filename} -> {resp.status}")
            return load_json(await resp.read(), self.name, "POST /upload/image")

        stored = await self._call("POST", "/upload/image", read, data=form, timeout=DOWNLOAD_TIMEOUT)
        return parse_upload(stored, self.name)

    async def input_exists(self, filename: str, *, subfolder: str) -> bool:
        """Whether the server still has this file in its input folder (GET /view answers 200, or 404)."""
        params = {"filename": filename, "subfolder": subfolder, "type": "input"}

        async def read(resp: aiohttp.ClientResponse) -> bool:
            if resp.status not in (200, 404):
                raise ComfyServerError(self.name, f"GET /view {filename} (input) -> {resp.status}")
            return resp.status == 200  # the body is not read: the connection is dropped instead of drained

        return await self._call("GET", "/view", read, params=params)

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished prompt's history entry, or None while it is unknown, queued or running."""
        return parse_history(await self._get_json(f"/history/{prompt_id}", "GET /history"), prompt_id, self.name)

    async def job_status(self, prompt_id: str) -> str | None:
        """GET /api/jobs/{id}: pending, in_progress, completed, failed, cancelled (or newer); None if unknown."""
        data = await self._get_json(f"/api/jobs/{prompt_id}", "GET /api/jobs", missing=None)
        return None if data is None else parse_job(data, self.name)

    async def queue(self) -> QueueState:
        return parse_queue(await self._get_json("/queue", "GET /queue"), self.name)

    async def object_info(self) -> dict[str, Any]:
        data = await self._get_json("/object_info", "GET /object_info", timeout=OBJECT_INFO_TIMEOUT)
        return parse_object_info(data, self.name)

    async def cancel(self, prompt_id: str) -> None:
        """Remove the prompt if pending, and stop it if running (never anyone else's).

        Newer servers do both atomically in POST /api/jobs/{id}/cancel; older ones take a queue delete
        and an interrupt that names the prompt.
        """
        if self.info.jobs_api:
            await self._post(f"/api/jobs/{prompt_id}/cancel", None)
            return
        await self._post("/queue", {"delete": [prompt_id]})
        await self._post("/interrupt", {"prompt_id": prompt_id})

    async def download(self, ref: FileRef, sink: Sink, *, max_bytes: int) -> int:
        """Stream one output file from /view into `sink` (memory or a new file, see core.spool); return its size.

        Raises TooLarge, having read no more, past `max_bytes`. Memory stays one chunk whatever the size when
        the sink is a file, and the sink is aborted (a file removed) when the download fails in any way.
        """
        params = {"filename": ref["filename"], "subfolder": ref["subfolder"], "type": ref["type"]}

        async def read(resp: aiohttp.ClientResponse) -> int:
            if resp.status != 200:
                raise ComfyServerError(self.name, f"GET /view {ref['filename']} -> {resp.status}")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise TooLarge(resp.content_length, max_bytes)
            size = 0
            if sink.start(resp.content_length):
                # Into memory: read at once (aiohttp joins what came in one copy); the size was checked above.
                chunk = await resp.read()
                size = len(chunk)
                sink.write(chunk)
            else:
                async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(None, max_bytes)
                    sink.write(chunk)
            sink.close()
            return size

        try:
            return await self._call("GET", "/view", read, timeout=DOWNLOAD_TIMEOUT, params=params)
        except BaseException:
            sink.abort()
            raise
