"""Video and animation outputs end to end: each saver's output parsed, fitted to the upload limit, posted."""

from __future__ import annotations

import builtins
import io
import pathlib
import random
from pathlib import Path
from typing import Any

import av
import pytest
from av.video import reformatter
from av.video.reformatter import VideoReformatter
from PIL import Image

from core.comfyui.types import parse_node_output
from core.i18n import localize
from core.media import content_type, fit_file, kind_of
from tests.conftest import VIDEO_MODELS
from tests.e2e_world import Start, finished

MB = 2**20

# What each saver puts in an `executed` message and in history (protocol doc §"history", current-ComfyUI
# notes: video comes under `images` with `animated`; VideoHelperSuite's Video Combine under `gifs`).
OUTPUTS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "SaveVideo",
        {"images": [{"filename": "ComfyUI_00001_.mp4", "subfolder": "video", "type": "output"}], "animated": [True]},
        "video",
        "video/mp4",
    ),
    (
        "SaveWEBM",
        {"images": [{"filename": "ComfyUI_00002_.webm", "subfolder": "", "type": "output"}], "animated": [True]},
        "video",
        "video/webm",
    ),
    (
        "SaveAnimatedWEBP",
        {"images": [{"filename": "ComfyUI_00003_.webp", "subfolder": "", "type": "output"}], "animated": [True]},
        "image",
        "image/webp",
    ),
    (
        "SaveAnimatedPNG",
        {"images": [{"filename": "ComfyUI_00004_.png", "subfolder": "", "type": "output"}], "animated": [True]},
        "image",
        "image/png",
    ),
    (
        "VHS_VideoCombine",
        {
            "gifs": [
                {
                    "filename": "AnimateDiff_00005.mp4",
                    "subfolder": "",
                    "type": "output",
                    "format": "video/h264-mp4",
                    "frame_rate": 16.0,
                    "workflow": "AnimateDiff_00005.png",
                    "fullpath": "/opt/ComfyUI/output/AnimateDiff_00005.mp4",
                }
            ]
        },
        "video",
        "video/mp4",
    ),
    (
        "VHS_VideoCombine (gif)",
        {"gifs": [{"filename": "AnimateDiff_00006.gif", "subfolder": "", "type": "output", "format": "image/gif"}]},
        "image",
        "image/gif",
    ),
]


@pytest.mark.parametrize(("saver", "output", "kind", "mime"), OUTPUTS, ids=[o[0] for o in OUTPUTS])
def test_every_video_saver_output_is_read_as_a_file_of_its_kind(
    saver: str, output: dict[str, Any], kind: str, mime: str
) -> None:
    parsed = parse_node_output(output, "9", "home")
    [(key, items)] = [(key, items) for key, items in output.items() if key in ("images", "gifs")]
    [ref] = parsed["files"][key]
    # Only the three keys the bot uses: the server's absolute `fullpath` goes no further
    assert ref == {"filename": items[0]["filename"], "subfolder": items[0]["subfolder"], "type": "output"}
    assert (kind_of(ref["filename"]), content_type(ref["filename"])) == (kind, mime)


def test_content_types_do_not_depend_on_the_machine() -> None:
    names = ["a.MKV", "b.m4v", "c.opus", "d.flac", "e.bin"]
    assert [content_type(n) for n in names] == [
        "video/x-matroska",
        "video/mp4",
        "audio/ogg",
        "audio/flac",
        "application/octet-stream",
    ]


# --- fitting ---------------------------------------------------------------------------------------------------


def clip(width: int, height: int, *, frames: int, fps: int, grain: float = 0.2, seed: int = 1) -> bytes:
    """Near-lossless H.264 in MP4 of a turning gradient under grain, without sound: large for its length."""
    rng = random.Random(seed)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {"crf": "0", "preset": "ultrafast"}
        base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        for index in range(frames):
            noise = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
            frame = av.VideoFrame.from_image(Image.blend(base.rotate(index * 3), noise, grain))
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return buffer.getvalue()


def decoded(path: Path) -> tuple[str, tuple[int, int], float, int, float]:
    """Codec, size, frame rate, frames and seconds of a video file, decoding every frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = float(stream.average_rate or 0)
        size = (stream.codec_context.width, stream.codec_context.height)
        return stream.codec_context.name, size, rate, frames, (container.duration or 0) / av.time_base


@pytest.fixture(scope="module")
def fast_clip() -> bytes:
    """Two seconds of 320×240 at 60 frames a second (~10 MB)."""
    return clip(320, 240, frames=120, fps=60)


def test_a_tight_limit_lowers_the_bitrate_then_the_size_then_the_frame_rate(fast_clip: bytes, tmp_path: Path) -> None:
    source = tmp_path / "000.out"
    source.write_bytes(fast_clip)
    roomy = fit_file("ComfyUI_00001_.mp4", source, 40 * 2**10)
    assert roomy is not None  # room for every frame at a smaller size
    assert roomy.note == "re-encoded as MP4 (141 kbit/s, 198×148) to fit the 40 KB upload limit"
    assert decoded(roomy.path)[1:4] == ((198, 148), 60.0, 120)
    # 11 KB for 2 s leaves ~31 kbit/s: 0.04 bit per pixel even at the smallest size (128×96), so every
    # second frame goes and each kept one lasts twice as long
    tight = fit_file("ComfyUI_00001_.mp4", source, 11 * 2**10)
    assert tight is not None
    assert tight.filename == "ComfyUI_00001_.mp4" and tight.size <= 11 * 2**10
    assert tight.note == ("re-encoded as MP4 (31 kbit/s, 128×96, 30 fps instead of 60) to fit the 11 KB upload limit")
    assert localize(tight.note, "ja") == (
        "アップロード上限 11 KB に収めるため、MP4（31 kbit/s、128×96、60 fps を 30 fps に）に再エンコードしました"
    )
    codec, size, rate, frames, seconds = decoded(tight.path)
    assert (codec, size, rate, frames) == ("h264", (128, 96), 30.0, 60)
    assert seconds == pytest.approx(2.0, abs=0.05)


def test_a_video_is_fitted_from_its_file_never_read_whole(fast_clip: bytes, tmp_path: Path, monkeypatch) -> None:
    # A 500 MB output is on disk (core.spool); FFmpeg reads it in small blocks itself. Reading it through
    # Python at all (read_bytes, open) would be the first step to holding it whole, so each one fails here.
    source = tmp_path / "000.out"
    source.write_bytes(fast_clip)

    def refused(*args: object, **kwargs: object) -> Any:
        raise AssertionError(f"the video was read through Python: {args[:1]}")

    monkeypatch.setattr(pathlib.Path, "read_bytes", refused)
    monkeypatch.setattr(pathlib.Path, "open", refused)
    monkeypatch.setattr(builtins, "open", refused)
    monkeypatch.setattr(io, "open", refused)
    fitted = fit_file("ComfyUI_00001_.mp4", source, 200 * 2**10)
    monkeypatch.undo()
    assert fitted is not None and fitted.size <= 200 * 2**10
    assert decoded(fitted.path)[0] == "h264"


def test_a_scaled_video_sets_up_one_scaler_for_all_its_frames(fast_clip: bytes, tmp_path: Path, monkeypatch) -> None:
    # `frame.reformat` would build a new scaler (and its threads) for each of the 120 frames
    source = tmp_path / "000.out"
    source.write_bytes(fast_clip)
    made: list[Counted] = []

    class Counted:
        def __init__(self) -> None:
            self.real, self.frames = VideoReformatter(), 0
            made.append(self)

        def reformat(self, frame: av.VideoFrame, **how: Any) -> av.VideoFrame:
            self.frames += 1
            return self.real.reformat(frame, **how)

    monkeypatch.setattr(reformatter, "VideoReformatter", Counted)
    fitted = fit_file("ComfyUI_00001_.mp4", source, 40 * 2**10)
    assert fitted is not None and decoded(fitted.path)[1:4] == ((198, 148), 60.0, 120)
    assert [scaler.frames for scaler in made] == [120]


def test_an_animated_png_over_the_limit_becomes_an_mp4(tmp_path: Path) -> None:
    rng = random.Random(7)
    frames = [Image.frombytes("RGB", (96, 96), rng.randbytes(96 * 96 * 3)) for _ in range(16)]
    source = tmp_path / "000.out"
    frames[0].save(source, "PNG", save_all=True, append_images=frames[1:], duration=125, loop=0)
    assert source.stat().st_size > 300 * 2**10
    fitted = fit_file("ComfyUI_00004_.png", source, 100 * 2**10)
    assert fitted is not None and fitted.size <= 100 * 2**10
    assert fitted.filename == "ComfyUI_00004_.mp4"
    assert fitted.note is not None and fitted.note.startswith("converted to MP4 (")
    codec, size, _, count, seconds = decoded(fitted.path)
    assert (codec, size, count) == ("h264", (96, 96), 16)
    assert seconds == pytest.approx(2.0, abs=0.05)


# --- end to end --------------------------------------------------------------------------------------------------


@pytest.mark.e2e
async def test_video_posts_an_mp4_fitted_under_10_mib(start: Start) -> None:
    world = await start()
    world.comfy.models.update(VIDEO_MODELS)  # a server with the Wan models: /video is registered on start
    await world.restart_bot()
    assert "video" in [c["name"] for c in world.discord.commands[world.discord.guild_id]]
    big = clip(640, 360, frames=60, fps=30, grain=0.3, seed=2)
    assert len(big) > 10 * MB
    world.comfy.media["mp4"] = big  # what SaveVideo writes

    it = await world.discord.invoke_slash("video", {"prompt": "a fox in the snow", "seed": 5, "frames": 49})
    message = await finished(world, it, timeout=60)

    [prompt] = [p["prompt"] for p in world.prompts()]
    assert (prompt["5"]["inputs"]["text"], prompt["8"]["inputs"]["seed"], prompt["7"]["inputs"]["length"]) == (
        "a fox in the snow",
        5,
        49,
    )
    [attachment] = message["attachments"]
    assert attachment["filename"] == "ComfyUI_00001_.mp4"
    assert attachment["content_type"] == "video/mp4"
    [posted] = it.requests[-1].files
    assert len(posted.data) <= 10 * MB
    # 10 MB over 2 s would allow 40 Mbit/s; 0.5 bit per pixel (3.5 Mbit/s here) already looks lossless
    assert message["content"].endswith(
        "\nComfyUI_00001_.mp4: re-encoded as MP4 (3.5 Mbit/s, 640×360) to fit the 10 MB upload limit."
    )
    with av.open(io.BytesIO(posted.data)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264"]
        assert sum(1 for _ in container.decode(video=0)) == 60
