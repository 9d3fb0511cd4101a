"""A small scripted ComfyUI on a real port: each test sets exactly the answers it is about."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web


class MiniComfy:
    """A scripted ComfyUI: records every request and answers what the test put in its fields."""

    def __init__(self, *, version: str | None = "0.38.1", jobs_api: bool = True) -> None:
        self.jobs_api = jobs_api
        self.stats: Any = {"system": {"comfyui_version": version, "os": "linux"}}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []  # method, path, headers, JSON body
        self.sockets: list[web.WebSocketResponse] = []
        self.client_ids: list[str] = []
        self.prompt_reply: tuple[int, Any] | None = None
        self.queue: Any = {"queue_running": [], "queue_pending": []}
        self.history: dict[str, Any] = {}
        self.jobs: dict[str, str] = {}
        self.files: dict[str, bytes] = {}
        self.object_info: Any = {}
        self.upload_reply: Any = {"name": "cat.png", "subfolder": "discord-bot", "type": "input"}
        self.prompted = asyncio.Event()
        self.ws_opened = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, credentials: str = "") -> None:
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_get("/system_stats", _json(lambda: self.stats))
        r.add_get("/api/jobs", self._jobs)
        r.add_get("/api/jobs/{id}", self._job)
        r.add_post("/api/jobs/{id}/cancel", _json(lambda: {"cancelled": True}))
        r.add_get("/ws", self._ws)
        r.add_post("/prompt", self._prompt)
        r.add_get("/queue", _json(lambda: self.queue))
        r.add_post("/queue", _json(lambda: None))
        r.add_post("/interrupt", _json(lambda: None))
        r.add_get("/history/{id}", self._history)
        r.add_get("/view", self._view)
        r.add_get("/object_info", _json(lambda: self.object_info))
        r.add_get("/object_info/{cls}", _json(lambda: self.object_info))
        r.add_post("/upload/image", _json(lambda: self.upload_reply))
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{credentials}127.0.0.1:{port}"

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        assert self.runner is not None
        await self.runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body and request.content_type == "application/json" else None
        self.requests.append((request.method, request.path, dict(request.headers), body))
        return await handler(request)

    def paths(self, method: str = "") -> list[str]:
        return [path for m, path, _, _ in self.requests if not method or m == method]

    async def _jobs(self, _: web.Request) -> web.Response:
        if not self.jobs_api:
            return web.Response(status=404, text="404: Not Found")
        return web.json_response({"jobs": [], "pagination": {"offset": 0, "limit": 1, "total": 0, "has_more": False}})

    async def _job(self, request: web.Request) -> web.Response:
        status = self.jobs.get(request.match_info["id"])
        if not self.jobs_api or status is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response({"id": request.match_info["id"], "status": status})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.client_ids.append(request.query.get("clientId", ""))
        self.sockets.append(ws)
        self.ws_opened.set()
        async for _ in ws:
            pass
        return ws

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.prompt_reply is not None:
            status, reply = self.prompt_reply
            return web.json_response(reply, status=status)
        prompt_id = body["prompt_id"]
        self.queue["queue_running"].append([1, prompt_id, {}, {}, []])
        self.jobs[prompt_id] = "in_progress"
        self.prompted.set()
        return web.json_response({"prompt_id": prompt_id, "number": 1, "node_errors": {}})

    async def _history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["id"]
        return web.json_response({prompt_id: self.history[prompt_id]} if prompt_id in self.history else {})

    async def _view(self, request: web.Request) -> web.Response:
        data = self.files.get(request.query["filename"])
        return web.Response(status=404) if data is None else web.Response(body=data)

    def finish(self, prompt_id: str, entry: Any, status: str = "completed") -> None:
        """End a prompt the way ComfyUI does: history written, then gone from the queue."""
        self.history[prompt_id] = entry
        self.jobs[prompt_id] = status
        self.queue = {"queue_running": [], "queue_pending": []}

    async def send(self, *frames: str | bytes | dict[str, Any]) -> None:
        for ws in [s for s in self.sockets if not s.closed]:
            for frame in frames:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def wait_connections(self, count: int) -> None:
        while len(self.client_ids) < count:
            self.ws_opened.clear()
            await self.ws_opened.wait()

    async def drop_sockets(self) -> None:
        for ws in self.sockets:
            await ws.close()


def _json(answer: Any) -> Any:
    """A handler that answers 200 with the JSON `answer()` gives (an empty body for None)."""

    async def handler(_: web.Request) -> web.Response:
        body = answer()
        return web.Response() if body is None else web.json_response(body)

    return handler


def ok_entry(outputs: dict[str, Any] | None = None, *messages: list[Any], status: str = "success") -> dict[str, Any]:
    return {
        "prompt": [1, "x", {}, {}, []],
        "outputs": outputs or {},
        "status": {"status_str": status, "completed": status == "success", "messages": list(messages)},
        "meta": {},
    }


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 2040  # 2 KB
