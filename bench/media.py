"""Time `fit_file` on large generated outputs: `python -m bench.media [--big-video [MB]]`.

Each case builds a file like the ComfyUI outputs that overflow Discord's limit (a 4096² upscale, a noisy
4096² picture, an animated GIF, minutes of WAV, a near-lossless 720p clip with sound), then times one
`fit_file` call on it in this process (wall clock, so libx264's own threads count). The last line printed
is one JSON object with the seconds per case.

`--big-video` instead fits one ~500 MB video on disk under 10 MiB, each time in a fresh process
(bench.fit_memory), and reports the growth of its peak resident memory: warm (PyAV loaded and a small fit
done before, as in a bot that has fitted anything; goal < 64 MB) and cold (the first fit, loading PyAV),
and what the decoder, the scaler and the encoder hold of it. It takes minutes on two cores, so
`python -m bench` leaves it out.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
from PIL import Image, ImageFilter

from bench.fit_memory import STAGES
from core.media import fit_file, human_size
from tests.media_samples import noisy_clip

MB = 2**20
BIG_VIDEO_GOAL_MB = 64


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


def write_big_video(path: Path, megabytes: int) -> None:
    """Write a ~`megabytes` MB MP4: one second of lossless 720p noise with a tone, repeated by stream copy.

    Only that second is encoded (seconds of CPU); the copies are its packets again with later timestamps.
    """
    second = noisy_clip(1280, 720, frames=24, fps=24, crf=0, rate=48000, turn=3, grain=1.0, seed=6)
    repeats = max(1, round(megabytes * MB / len(second)))
    with av.open(io.BytesIO(second), "r") as source, av.open(str(path), "w", format="mp4") as out:
        copies = {s.index: out.add_stream_from_template(s) for s in (*source.streams.video, *source.streams.audio)}
        packets = [(p, p.pts, p.dts) for p in source.demux()]
        for repeat in range(repeats):
            for packet, pts, dts in packets:
                if pts is None or dts is None:
                    continue  # the demuxer's empty flush packets
                shift = round(repeat / packet.time_base)  # one second in this stream's units
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts = pts + shift, dts + shift
                copy.time_base, copy.is_keyframe = packet.time_base, packet.is_keyframe
                copy.stream = copies[packet.stream.index]
                out.mux(copy)


def big_video(megabytes: int = 500, limit: int = 10 * MB) -> dict[str, float | bool | None]:
    """Fit a ~`megabytes` MB video under `limit` cold and warm; the wall time and the peak RSS growth of each part."""
    with tempfile.TemporaryDirectory(prefix="bench-big-video-") as folder:
        source = Path(folder) / "source"  # the bot fits the temporary file an output was downloaded to
        try:
            # Made in a child process, so its buffers are not in the memory of the processes that measure
            maker = multiprocessing.get_context("spawn").Process(target=write_big_video, args=(source, megabytes))
            maker.start()
            maker.join()
            if maker.exitcode != 0:
                raise RuntimeError(f"making the {megabytes} MB source failed (exit code {maker.exitcode})")
            size = source.stat().st_size
            stages = {stage: _stage(source, limit, stage) for stage in STAGES}
        finally:
            source.unlink(missing_ok=True)
            source.with_name(source.name + ".fitted").unlink(missing_ok=True)
    cold, warm, decode, scale = (stages[stage] for stage in STAGES)
    fitted = warm["fitted_size"]
    print(f"big video {human_size(size)} -> {human_size(fitted) if fitted else None}: {warm['note']}")
    print(
        f"memory growth: {warm['growth_mb']} MB warm (goal < {BIG_VIDEO_GOAL_MB} MB), {cold['growth_mb']} MB cold; "
        f"loading PyAV and a first small fit {warm['loaded_mb']} MB, decoder {decode['growth_mb']} MB, "
        f"with the scaler {scale['growth_mb']} MB, so the encoder about {_less(warm, decode)} MB; "
        f"fit {warm['seconds']} s ({warm['cpu_seconds']} s of CPU)"
    )
    return {
        "big_video_mb": round(size / MB),
        "big_video_fit_s": warm["seconds"],
        "big_video_fit_cpu_s": warm["cpu_seconds"],
        "rss_growth_mb_500mb_video_fit": warm["growth_mb"],
        "rss_growth_mb_500mb_video_fit_cold": cold["growth_mb"],
        "rss_growth_goal_mb": BIG_VIDEO_GOAL_MB,
        "rss_mb_pyav_loaded": warm["loaded_mb"],
        "rss_growth_mb_video_decoder": decode["growth_mb"],
        "rss_growth_mb_video_decoder_scaler": scale["growth_mb"],
        "rss_growth_mb_video_encoder": _less(warm, decode),
        "big_video_fitted": isinstance(fitted, int) and fitted <= limit,
    }


def _stage(source: Path, limit: int, stage: str) -> dict[str, Any]:
    """Run one stage of bench.fit_memory in a fresh interpreter (which has not loaded PyAV) and return its figures."""
    command = [sys.executable, "-m", "bench.fit_memory", str(source), str(limit), stage]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def _less(total: dict[str, Any], part: dict[str, Any]) -> float:
    return round(total["growth_mb"] - part["growth_mb"], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--big-video", type=int, nargs="?", const=500, metavar="MB", help="fit one big video only")
    args = parser.parse_args()
    if args.big_video:
        print(json.dumps(big_video(args.big_video)))
        return
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
