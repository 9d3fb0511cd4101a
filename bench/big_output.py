"""Memory while one large output goes from ComfyUI to Discord: `python -m bench.big_output [--mb 300]`.

A stand-in ComfyUI `/view` and a Discord upload route run in another process, so their memory is not
counted. This process does what the bot does with a result: `ComfyClient.download` into the spool, then
`discord_ui.delivery.as_files` and the multipart body discord.py builds from a `discord.File`
(`aiohttp.FormData` with the file object). Its resident memory is sampled every 5 ms from /proc/self/statm
(Linux). The last line printed is one JSON object: the growth over the resident memory before the
download, the goal next to it, and whether Discord got the file byte for byte.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from core.comfyui.client import ComfyClient
from core.jobs.engine import OutputFile
from core.spool import Spool
from discord_ui.delivery import as_files

MB = 2**20
GOAL_MB = 64
BLOCK = random.Random(13).randbytes(MB)  # the output repeats this block: random, so nothing compresses it


def _serve(size: int, conn: Connection) -> None:
    """Run the stand-in ComfyUI and Discord until the parent closes the pipe."""

    async def view(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        for start in range(0, size, MB):
            await response.write(BLOCK[: min(MB, size - start)])
        await response.write_eof()
        return response

    async def upload(request: web.Request) -> web.Response:
        digest, received = hashlib.sha256(), 0
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, aiohttp.BodyPartReader) and (part.name or "").startswith("files["):
                while chunk := await part.read_chunk(MB):
                    digest.update(chunk)
                    received += len(chunk)
        return web.json_response({"bytes": received, "sha256": digest.hexdigest()})

    async def main() -> None:
        app = web.Application(client_max_size=size + MB)
        app.router.add_get("/view", view)
        app.router.add_post("/upload", upload)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.get_running_loop().run_in_executor(None, conn.recv_bytes)  # until the parent is done
        await runner.cleanup()

    with contextlib.suppress(EOFError):  # the parent went away first
        asyncio.run(main())


class RssSampler:
    """The highest resident memory of this process seen every 5 ms, from /proc/self/statm."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def now(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def _expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for start in range(0, size, MB):
        digest.update(BLOCK[: min(MB, size - start)])
    return digest.hexdigest()


async def measure(size: int, url: str, folder: Path) -> dict[str, Any]:
    """Download one `size`-byte output and upload it as the bot does; return the figures."""
    spool = Spool(folder).open()
    try:
        async with aiohttp.ClientSession() as session:
            client = ComfyClient(session, url)
            baseline = RssSampler().now()
            with RssSampler() as rss:
                started = time.monotonic()
                sink = spool.scratch("bench").sink("000.mp4")  # over IN_MEMORY_MAX: a file
                got = await client.download(
                    {"filename": "big.mp4", "subfolder": "", "type": "output"}, sink, max_bytes=size
                )
                downloaded = time.monotonic()
                [attachment] = as_files([OutputFile("big.mp4", sink.path, got, "9", sink.data)])
                form = aiohttp.FormData(quote_fields=False)  # as discord.py's HTTPClient.request builds it
                form.add_field("payload_json", "{}", content_type="application/json")
                form.add_field(
                    "files[0]", attachment.fp, filename=attachment.filename, content_type="application/octet-stream"
                )
                async with session.post(f"{url}/upload", data=form) as response:
                    answer = await response.json()
                attachment.close()
                uploaded = time.monotonic()
    finally:
        spool.close()
    return {
        "big_output_mb": round(size / MB),
        "rss_growth_mb_big_output": round((rss.peak - baseline) / MB, 1),
        "rss_growth_goal_mb": GOAL_MB,
        "rss_baseline_mb": round(baseline / MB, 1),
        "delivered_intact": answer == {"bytes": size, "sha256": _expected_sha256(size)},
        "download_s": round(downloaded - started, 2),
        "upload_s": round(uploaded - downloaded, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mb", type=int, default=300, help="size of the output in MB (default 300)")
    args = parser.parse_args()
    size = args.mb * MB
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=_serve, args=(size, theirs), daemon=True)
    server.start()
    try:
        port = ours.recv()
        with tempfile.TemporaryDirectory(prefix="bench-big-output-") as folder:
            figures = asyncio.run(measure(size, f"http://127.0.0.1:{port}", Path(folder)))
    finally:
        ours.close()
        server.join(10)
        if server.is_alive():
            server.kill()
    print(
        f"{figures['big_output_mb']} MB output: RSS grew {figures['rss_growth_mb_big_output']} MB "
        f"(goal < {GOAL_MB} MB), download {figures['download_s']} s, upload {figures['upload_s']} s, "
        f"intact: {figures['delivered_intact']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
