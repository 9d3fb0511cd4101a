"""Serve the fake ComfyUI on a port, to try the bot or the command line without a GPU.

    python -m tests.fakes --profile current --port 8188

It has the shipped workflows' checkpoints and answers like ComfyUI 0.3.64 or a current version; it
renders small generated pictures and sounds instead of running models.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tests.conftest import MODELS
from tests.fakes.comfyui import PROFILES, FakeComfyUI


async def serve(profile: str, port: int, delay: float) -> None:
    fake = FakeComfyUI(models=MODELS, profile=profile, node_delay=delay, port=port)
    await fake.start()
    print(f"fake ComfyUI ({fake.profile.version}) at {fake.url}; Ctrl-C stops it", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="current")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds each node takes (default 0.2)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.profile, args.port, args.delay))


if __name__ == "__main__":
    main()
