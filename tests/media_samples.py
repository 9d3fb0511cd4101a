"""Media made on the spot for the media tests and `python -m bench.media` (nothing binary in the repo)."""

from __future__ import annotations

import io
import math
import random
from array import array

import av
from PIL import Image


def noisy_clip(
    width: int, height: int, *, frames: int, fps: int, crf: int, rate: int, turn: int, grain: float, seed: int
) -> bytes:
    """Near-lossless H.264 of a turning gradient under grain, with a 440 Hz AAC tone, in MP4."""
    rng = random.Random(seed)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {"crf": str(crf), "preset": "ultrafast"}
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "stereo"
        base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        for index in range(frames):
            noise = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
            frame = av.VideoFrame.from_image(Image.blend(base.rotate(index * turn), noise, grain))
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        tone = array("f", [0.3 * math.sin(2 * math.pi * 440 * i / rate) for i in range(1024) for _ in (0, 1)])
        for block in range(frames // fps * rate // 1024):
            samples = av.AudioFrame(format="flt", layout="stereo", samples=1024)
            samples.planes[0].update(bytes(tone))
            samples.sample_rate, samples.pts = rate, block * 1024
            out.mux(audio.encode(samples))
        out.mux(audio.encode(None))
    return buffer.getvalue()
