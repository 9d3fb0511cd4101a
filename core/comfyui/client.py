"""HTTP calls to one ComfyUI server. The session is owned by the caller (one per process)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp

from core.comfyui.node_errors import describe_rejection, missing_option_inputs
from core.comfyui.object_info import combo_options, input_spec
from core.comfyui.types import FileRef, HistoryEntry, NodeErrors, Prompt, PromptError
from core.config import redact_url
from core.errors import ComfyServerError, ComfyUnreachable, OutputTooLarge, PromptRejected

log = logging.getLogger(__name__)
T = TypeVar("T")

API_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5)
OBJECT_INFO_TIMEOUT = aiohttp.ClientTimeout(total=120, connect=5)
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5, sock_read=60)


@dataclass(frozen=True, slots=True)
class QueueState:
    """Prompt ids on the server: the running ones and the pending ones in execution order."""

    running: tuple[str, ...]
    pending: tuple[str, ...]

    def position(self, prompt_id: str) -> int | None:
        """0 when running, 1.. for the place in line, None when not queued at all."""
        if prompt_id in self.running:
            return 0
        if prompt_id in self.pending:
            return self.pending.index(prompt_id) + 1
        return None


class ComfyClient:
    """One ComfyUI server's HTTP API."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.name = redact_url(self.base_url)

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
        """Send one request and hand the response to `read`; network failures become ComfyUnreachable."""
        try:
            async with self.session.request(method, self.base_url + path, timeout=timeout, **kwargs) as resp:
                return await read(resp)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError, OSError) as exc:
            raise ComfyUnreachable(self.name, f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def _get_json(self, path: str, *, timeout: aiohttp.ClientTimeout = API_TIMEOUT, **kw: Any) -> Any:
        async def read(resp: aiohttp.ClientResponse) -> Any:
            if resp.status != 200:
                raise ComfyServerError(self.name, f"GET {path} -> {resp.status}: {(await resp.text())[:200]}")
            return await self._json(resp, f"GET {path}")

        return await self._call("GET", path, read, timeout=timeout, **kw)

    async def _post(self, path: str, body: dict[str, Any] | None) -> None:
        async def read(resp: aiohttp.ClientResponse) -> None:
            if resp.status != 200:
                raise ComfyServerError(self.name, f"POST {path} -> {resp.status}: {(await resp.text())[:200]}")

        await self._call("POST", path, read, json=body)

    async def _json(self, resp: aiohttp.ClientResponse, what: str) -> Any:
        text = await resp.text()
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ComfyServerError(self.name, f"{what}: not JSON: {text[:200]!r}") from exc

    async def submit(self, prompt: Prompt, *, client_id: str, prompt_id: str) -> float:
        """Queue `prompt` under our client and prompt id; return its queue number.

        Raises PromptRejected when ComfyUI refuses it. A 200 that still carries node_errors means only
        some outputs were queued: that half-run is removed and reported as a rejection too.
        """
        body = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}

        async def read(resp: aiohttp.ClientResponse) -> tuple[int, Any]:
            if resp.status not in (200, 400):
                raise ComfyServerError(self.name, f"POST /prompt -> {resp.status}: {(await resp.text())[:200]}")
            return resp.status, await self._json(resp, "POST /prompt")

        status, data = await self._call("POST", "/prompt", read, json=body)
        if not isinstance(data, dict):
            raise ComfyServerError(self.name, f"POST /prompt -> {status}: unexpected body {str(data)[:200]}")
        node_errors: dict[str, NodeErrors] = data.get("node_errors") or {}
        if status == 200 and not node_errors:
            return float(data.get("number", 0))
        if status == 200:
            log.warning("%s queued %s with node errors; removing the partial run", self.name, prompt_id)
            await self.cancel(prompt_id)
        error: PromptError | None = data.get("error")
        log.warning("%s rejected prompt %s: %s %s", self.name, prompt_id, json.dumps(error), json.dumps(node_errors))
        options = await self._options_for(missing_option_inputs(node_errors))
        raise PromptRejected(describe_rejection(error, node_errors, prompt, options), detail=json.dumps(data)[:2000])

    async def _options_for(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        """Fetch the allowed values ComfyUI left out of a long value_not_in_list error."""
        found: dict[tuple[str, str], list[str]] = {}
        for class_type, input_name in wanted:
            try:
                found[(class_type, input_name)] = await self.input_options(class_type, input_name)
            except (ComfyUnreachable, ComfyServerError, AttributeError):
                continue
        return found

    async def input_options(self, class_type: str, input_name: str) -> list[str]:
        """The values the server accepts for one combo input (e.g. its checkpoint files), [] if none."""
        # Class names may hold spaces, "+" or "/" (custom nodes), so the name is quoted whole into the path.
        data = await self._get_json(f"/object_info/{quote(class_type, safe='')}")
        return combo_options(input_spec(data if isinstance(data, dict) else {}, class_type, input_name)) or []

    async def upload(self, filename: str, data: bytes, *, subfolder: str) -> str:
        """Put an input file (image or audio) on the server; return the name a LoadImage/LoadAudio input takes."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type="application/octet-stream")
        form.add_field("subfolder", subfolder)
        form.add_field("type", "input")

        async def read(resp: aiohttp.ClientResponse) -> Any:
            if resp.status != 200:
                raise ComfyServerError(self.name, f"POST /upload/image {filename} -> {resp.status}")
            return await self._json(resp, "POST /upload/image")

        stored = await self._call("POST", "/upload/image", read, data=form, timeout=DOWNLOAD_TIMEOUT)
        return f"{stored['subfolder']}/{stored['name']}" if stored.get("subfolder") else str(stored["name"])

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished prompt's history entry, or None while it is unknown, queued or running."""
        data = await self._get_json(f"/history/{prompt_id}")
        return data.get(prompt_id) if isinstance(data, dict) else None

    async def queue(self) -> QueueState:
        data = await self._get_json("/queue")
        running = tuple(str(item[1]) for item in data.get("queue_running", []))
        # queue_pending is a raw heap: sort by the priority number to get execution order.
        pending = sorted(data.get("queue_pending", []), key=lambda item: (item[0], str(item[1])))
        return QueueState(running, tuple(str(item[1]) for item in pending))

    async def object_info(self) -> dict[str, Any]:
        return await self._get_json("/object_info", timeout=OBJECT_INFO_TIMEOUT)

    async def system_stats(self) -> dict[str, Any]:
        return await self._get_json("/system_stats")

    async def cancel(self, prompt_id: str) -> None:
        """Remove the prompt if pending, and stop it if it is the one running (never anyone else's)."""
        await self._post("/queue", {"delete": [prompt_id]})
        await self._post("/interrupt", {"prompt_id": prompt_id})

    async def download(self, ref: FileRef, *, max_bytes: int) -> bytes:
        """Stream one output file from /view, refusing files larger than `max_bytes`."""
        params = {"filename": ref["filename"], "subfolder": ref.get("subfolder", ""), "type": ref.get("type", "output")}

        async def read(resp: aiohttp.ClientResponse) -> bytes:
            if resp.status != 200:
                raise ComfyServerError(self.name, f"GET /view {ref['filename']} -> {resp.status}")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise _too_large(ref, resp.content_length, max_bytes)
            data = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                data += chunk
                if len(data) > max_bytes:
                    raise _too_large(ref, len(data), max_bytes)
            return bytes(data)

        return await self._call("GET", "/view", read, timeout=DOWNLOAD_TIMEOUT, params=params)


def _too_large(ref: FileRef, size: int, limit: int) -> OutputTooLarge:
    return OutputTooLarge(
        f"The output {ref['filename']} is larger than {limit / 1048576:.0f} MB, the most this bot downloads "
        "(MAX_OUTPUT_MB). It is still on the ComfyUI server.",
        detail=f"{ref} >= {size} bytes",
    )
