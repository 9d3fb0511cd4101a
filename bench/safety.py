"""Time the image check on result delivery: `python -m bench.safety [--images N]`.

It runs `result_messages` on one 1024² PNG output per job, without a check, with the check stubbed at its
interface (what the check itself costs the bot: reading the file, a thread hop, the bookkeeping) and, when
nudenet is installed, with the real model. The last line printed is one JSON object with milliseconds per
image for each.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import random
import time

from PIL import Image

from core.community.safety import ImageAction, ImageCheck, ImageScreen, load_image_screen, parse_safety
from core.jobs.engine import JobResult, OutputFile
from discord_ui.delivery import result_messages


class _Stub:
    async def score(self, data: bytes) -> float:
        return 0.0


def _picture() -> bytes:
    rng = random.Random(1)
    small = Image.frombytes("RGB", (256, 256), rng.randbytes(256 * 256 * 3))
    out = io.BytesIO()
    small.resize((1024, 1024)).save(out, "PNG", compress_level=1)
    return out.getvalue()


async def _per_image(data: bytes, images: int, check: ImageCheck | None) -> float:
    screen = ImageScreen(check, 0.6, ImageAction.SPOILER) if check is not None else None
    result = JobResult("bench", "image", {}, "fake", (OutputFile("a.png", None, len(data), "9", data),), (), 1.0)
    started = time.perf_counter()
    for _ in range(images):
        await result_messages(result, 1, 2**30, screen=screen)
    return (time.perf_counter() - started) / images * 1000


async def main(images: int) -> dict[str, float]:
    data = _picture()
    figures = {
        "no check, ms per image": await _per_image(data, images, None),
        "stubbed check, ms per image": await _per_image(data, images, _Stub()),
    }
    if importlib.util.find_spec("nudenet") is not None:
        screen = load_image_screen(parse_safety({"safety": {"image_check": "nudenet"}}))
        assert screen is not None
        figures["nudenet, ms per image"] = await _per_image(data, max(1, images // 50), screen.check)
    for name, value in figures.items():
        print(f"{name}: {value:.3f}")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.safety", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="images per case (nudenet: a fiftieth)")
    print(json.dumps(asyncio.run(main(parser.parse_args().images))))
