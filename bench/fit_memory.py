"""Memory of one part of fitting a video, in a fresh process: `python -m bench.fit_memory SOURCE LIMIT STAGE`.

`python -m bench.media --big-video` runs this once per stage, so each figure starts from a process that has
done nothing else. It does not import PyAV itself, so the `cold` stage sees what loading it costs:

- `cold`: `fit_file` in a process that has never loaded PyAV (a bot's first fit after its start);
- `warm`: the same after a small fit loaded PyAV and opened its codecs (every later fit);
- `decode`: warm, only the decoder `fit_file` uses, walking every frame of the source;
- `scale`: warm, the decoder and the scaler that shrinks each frame to three quarters of its size.

Resident memory is sampled every 5 ms (bench.big_output.RssSampler). Prints one JSON object: the stage's
growth over the memory before it, its seconds and CPU seconds (all threads: steadier than the wall clock on
a busy machine), and `loaded_mb`, what the warm-up itself added.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.big_output import RssSampler
from core.media import _decoded, fit_file

MB = 2**20
STAGES = ("cold", "warm", "decode", "scale")


def _warm_up() -> None:
    """Load PyAV and open the decoder, scaler and encoders of a fit on a small clip, as an earlier fit would."""
    from tests.media_samples import noisy_clip  # noqa: PLC0415 - it imports PyAV, which `cold` must not

    with tempfile.TemporaryDirectory(prefix="bench-fit-warm-") as folder:
        small = Path(folder) / "small"
        small.write_bytes(noisy_clip(320, 180, frames=24, fps=24, crf=4, rate=48000, turn=3, grain=0.15, seed=7))
        if fit_file("small.mp4", small, small.stat().st_size // 4) is None:
            raise RuntimeError("the warm-up fit did not fit")


def _walk(source: Path, *, scale: bool) -> None:
    """Decode every frame of `source` as a fit does, and shrink each video frame when `scale` is set."""
    import av  # noqa: PLC0415 - loaded by the warm-up already
    from av.video.reformatter import VideoReformatter  # noqa: PLC0415

    scaler = VideoReformatter()
    for frame in _decoded(source, with_audio=True):
        if scale and isinstance(frame, av.VideoFrame):
            size = (frame.width * 3 // 4 // 2 * 2, frame.height * 3 // 4 // 2 * 2)
            scaler.reformat(frame, width=size[0], height=size[1], format="yuv420p", interpolation="BICUBIC")


def measure(source: Path, limit: int, stage: str) -> dict[str, object]:
    """Run one stage on `source` in this process and return its figures."""
    start_rss = RssSampler().now()
    if stage != "cold":
        _warm_up()
    baseline = RssSampler().now()
    figures: dict[str, object] = {"stage": stage, "loaded_mb": round((baseline - start_rss) / MB, 1)}
    with RssSampler() as rss:
        started, cpu = time.perf_counter(), os.times()
        if stage in ("cold", "warm"):
            fitted = fit_file("ComfyUI_00001_.mp4", source, limit)
            figures["fitted_size"] = None if fitted is None else fitted.size
            figures["note"] = None if fitted is None else fitted.note
        else:
            _walk(source, scale=stage == "scale")
        figures["seconds"] = round(time.perf_counter() - started, 1)
        figures["cpu_seconds"] = round(sum(os.times()[:2]) - sum(cpu[:2]), 1)
    figures["growth_mb"] = round((rss.peak - baseline) / MB, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("limit", type=int, help="upload limit in bytes")
    parser.add_argument("stage", choices=STAGES)
    args = parser.parse_args()
    print(json.dumps(measure(args.source, args.limit, args.stage)))


if __name__ == "__main__":
    main()
