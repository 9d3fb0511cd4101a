"""Time `fit_file` on large generated outputs: `python -m bench.media`.

Each case builds a file like the ComfyUI outputs that overflow Discord's limit (a 4096² upscale, a noisy
4096² picture, an animated GIF, minutes of WAV, a near-lossless 720p clip with sound), then times one
`fit_file` call on it in this process (wall clock, so libx264's own threads count). The last line printed
is one JSON object with the seconds per case.
"""

from __future__ import annotations

import io
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
from PIL import Image, ImageFilter

from core.media import fit_file, human_size
from tests.media_samples import noisy_clip

MB = 2**20


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", compress_level=1)  # the size matters here, not how tightly it packs
    return buffer.getvalue()


def upscale_png() -> bytes:
    """A smooth 4096² picture with film grain, like an upscaled generation (~24 MB as PNG)."""
    rng = random.Random(1)
    smooth = Image.frombytes("RGB", (512, 512), rng.randbytes(512 * 512 * 3)).filter(ImageFilter.GaussianBlur(4))
    grain = Image.frombytes("L", (4096, 4096), rng.randbytes(4096 * 4096)).convert("RGB")
    return _png(Image.blend(smooth.resize((4096, 4096), Image.Resampling.BICUBIC), grain, 0.08))


def noise_png() -> bytes:
    """4096² of pure noise: the worst case for every image codec (~48 MB as PNG)."""
    return _png(Image.frombytes("RGB", (4096, 4096), random.Random(2).randbytes(4096 * 4096 * 3)))


def animated_gif() -> bytes:
    """48 frames of 512² with motion and grain, 8 fps."""
    rng = random.Random(3)
    base = Image.linear_gradient("L").resize((512, 512)).convert("RGB")
    frames = [
        Image.blend(base.rotate(i * 7.5), Image.frombytes("RGB", (512, 512), rng.randbytes(512 * 512 * 3)), 0.2)
        for i in range(48)
    ]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=125, loop=0)
    return buffer.getvalue()


def long_wav(seconds: int = 180) -> bytes:
    """Three minutes of 48 kHz stereo 16-bit noise (~33 MB)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=48000)
        stream.layout = "stereo"
        rng = random.Random(4)
        block = 48000
        for index in range(seconds):
            frame = av.AudioFrame(format="s16", layout="stereo", samples=block)
            frame.planes[0].update(rng.randbytes(block * 4))
            frame.sample_rate, frame.pts = 48000, index * block
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def clip_720p(seconds: int = 5, fps: int = 24) -> bytes:
    """A near-lossless 1280×720 H.264 clip with moving content, grain and an AAC tone."""
    return noisy_clip(1280, 720, frames=seconds * fps, fps=fps, crf=4, rate=48000, turn=3, grain=0.15, seed=5)


CASES: list[tuple[str, str, Callable[[], bytes], int]] = [
    ("upscale_4096_png", "ComfyUI_00001_.png", upscale_png, 10 * MB),
    ("noise_4096_png", "ComfyUI_00002_.png", noise_png, 10 * MB),
    ("noise_4096_png_8mb", "ComfyUI_00002_.png", noise_png, 8 * MB),
    ("gif_512_48f", "ComfyUI_00003_.gif", animated_gif, 2 * MB),
    ("wav_3min", "ComfyUI_00004_.wav", long_wav, 5 * MB),
    ("mp4_720p_5s", "ComfyUI_00005_.mp4", clip_720p, 2 * MB),
]


def main() -> None:
    figures: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="bench-media-") as folder:
        for key, filename, make, limit in CASES:
            source = Path(folder) / key  # the bot fits the temporary file an output was downloaded to
            source.write_bytes(make())
            start = time.perf_counter()
            fitted = fit_file(filename, source, limit)
            seconds = time.perf_counter() - start
            figures[key] = round(seconds, 2)
            outcome = "None" if fitted is None else f"{fitted.filename} {human_size(fitted.size)}: {fitted.note}"
            print(f"{key:20} {human_size(source.stat().st_size):>8} -> {outcome}  [{seconds:.2f} s]")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
