"""Shrinking outputs to Discord's upload limit: real images, animations, audio and video generated on the fly."""

from __future__ import annotations

import io
import math
import random
import struct
import tempfile
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image, PngImagePlugin

from core import media
from core.i18n import localize
from core.media import human_size, kind_of
from tests.media_samples import noisy_clip

KB = 2**10


@dataclass(frozen=True, slots=True)
class Shrunk:
    """What media.fit_file made, read back from its file."""

    filename: str
    data: bytes
    note: str | None


def fit_file(filename: str, data: bytes, limit: int, **options: Any) -> Shrunk | None:
    """Run media.fit_file on `data` put in a file; check that it leaves nothing but its result beside the source."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "000.out"
        source.write_bytes(data)
        fitted = media.fit_file(filename, source, limit, **options)
        left = sorted(p.name for p in Path(folder).iterdir())
        if fitted is None or fitted.note is None:
            assert left == ["000.out"]  # a failed attempt's partial file is gone too
            assert fitted is None or fitted.path == source
        else:
            assert left == ["000.out", "000.out.fitted"] and fitted.path == source.with_name("000.out.fitted")
            assert fitted.size == fitted.path.stat().st_size
        return None if fitted is None else Shrunk(fitted.filename, fitted.path.read_bytes(), fitted.note)


# --- generated media -------------------------------------------------------------------------------------------


def png_bytes(picture: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", compress_level=1, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 1) -> Image.Image:
    return Image.frombytes(mode, size, random.Random(seed).randbytes(size[0] * size[1] * len(mode)))


@pytest.fixture(scope="module")
def noisy_png() -> bytes:
    """1024² of RGB noise: a 3 MB PNG that every codec struggles with."""
    return png_bytes(noise((1024, 1024)))


@pytest.fixture(scope="module")
def alpha_png() -> bytes:
    """512² noise whose alpha runs from transparent (top row) to opaque (bottom row)."""
    picture = noise((512, 512), seed=2).convert("RGBA")
    picture.putalpha(Image.linear_gradient("L").resize((512, 512)))
    return png_bytes(picture)


def animation_frames() -> list[Image.Image]:
    """30 frames of 160×120: a turning gradient under light grain."""
    base = Image.linear_gradient("L").convert("RGB").resize((160, 120))
    return [Image.blend(base.rotate(i * 12), noise((160, 120), seed=10 + i), 0.25) for i in range(30)]


@pytest.fixture(scope="module")
def gif() -> bytes:
    """An animated GIF: 30 frames × 80 ms = 2.4 s."""
    frames = animation_frames()
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def pcm(seconds: float, rate: int = 44100) -> bytes:
    """Interleaved stereo 16-bit samples: a 440 Hz sine with some noise."""
    rng = random.Random(3)
    values = [
        int(32767 * (0.5 * math.sin(2 * math.pi * 440 * i / rate) + 0.1 * (rng.random() * 2 - 1)))
        for i in range(int(seconds * rate))
    ]
    return b"".join(struct.pack("<hh", v, v) for v in values)


@pytest.fixture(scope="module")
def wav() -> bytes:
    """Three seconds of 44.1 kHz stereo WAV (~517 KB)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        out.writeframes(pcm(3))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def flac(wav: bytes) -> bytes:
    """The same three seconds as FLAC, transcoded with PyAV."""
    buffer = io.BytesIO()
    with av.open(io.BytesIO(wav), "r") as source, av.open(buffer, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=44100)
        stream.layout = "stereo"
        for frame in source.decode(audio=0):
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mp4() -> bytes:
    """Two seconds of 320×240 at 24 fps, near-lossless H.264 of moving noise, with an AAC tone (~4.5 MB)."""
    return noisy_clip(320, 240, frames=48, fps=24, crf=0, rate=44100, turn=5, grain=0.3, seed=4)


# --- what a result must look like ------------------------------------------------------------------------------


def open_image(fitted: Shrunk, fmt: str) -> Image.Image:
    picture = Image.open(io.BytesIO(fitted.data))
    assert picture.format == fmt
    picture.load()
    return picture


@dataclass
class Probe:
    format: str
    duration: float
    streams: list[tuple[str, str]]  # (type, codec)
    size: tuple[int, int] | None
    audio: tuple[int, int] | None  # (sample rate, channels)


def probe(data: bytes) -> Probe:
    """Demux and fully decode `data` with PyAV, so a broken stream fails the test."""
    with av.open(io.BytesIO(data), "r") as container:
        streams = [(s.type, s.codec_context.name) for s in container.streams]
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = sum(1 for _ in container.decode(*container.streams))
        assert frames > 0
        return Probe(
            format=container.format.name,
            duration=(container.duration or 0) / av.time_base,
            streams=streams,
            size=None if video is None else (video.codec_context.width, video.codec_context.height),
            audio=None if audio is None else (audio.codec_context.sample_rate, audio.codec_context.channels),
        )


# --- images ----------------------------------------------------------------------------------------------------


def test_a_file_that_fits_is_returned_unchanged() -> None:
    data = png_bytes(noise((64, 64)))
    assert fit_file("ComfyUI_00001_.png", data, 10 * 2**20) == Shrunk("ComfyUI_00001_.png", data, None)


def test_a_large_png_becomes_the_best_webp_that_fits(noisy_png: bytes) -> None:
    # Noise at 1024²: WebP 90 ≈ 856 KB, WebP 80 ≈ 702 KB, so 780 KB takes quality 80.
    fitted = fit_file("ComfyUI_00001_.png", noisy_png, 780 * KB)
    assert fitted is not None
    assert fitted.filename == "ComfyUI_00001_.webp"
    assert fitted.note == "re-encoded as WebP (quality 80) to fit the 780 KB upload limit"
    assert len(fitted.data) <= 780 * KB
    assert open_image(fitted, "WEBP").size == (1024, 1024)


def test_a_large_private_chunk_is_left_out_before_the_png_is_decoded(noisy_png: bytes, tmp_path: Path) -> None:
    # Pillow would read a chunk after the image data whole into memory: 30 MB here, 500 MB from a bad node
    iend = noisy_png.rindex(b"IEND") - 4
    private = 30 * 2**20
    chunk = private.to_bytes(4, "big") + b"zzZz" + b"\0" * private
    padded = noisy_png[:iend] + chunk + zlib.crc32(chunk[4:]).to_bytes(4, "big") + noisy_png[iend:]
    source = tmp_path / "ComfyUI_00001_.png"
    source.write_bytes(padded)
    lean = media._png_without_large_extras(source, tmp_path / "lean.png")
    assert lean is not None and lean.read_bytes() == noisy_png  # every other chunk kept, byte for byte
    source.write_bytes(noisy_png)
    assert media._png_without_large_extras(source, tmp_path / "other.png") is None  # nothing to leave out
    fitted = fit_file("ComfyUI_00001_.png", padded, 780 * KB)
    assert fitted is not None and fitted.filename == "ComfyUI_00001_.webp"
    assert open_image(fitted, "WEBP").size == (1024, 1024)


def test_jpeg_takes_over_when_no_webp_quality_fits(noisy_png: bytes) -> None:
    # WebP 50 ≈ 541 KB is too big for 460 KB; JPEG 70 ≈ 538 KB too, JPEG 50 ≈ 392 KB fits.
    fitted = fit_file("ComfyUI_00001_.png", noisy_png, 460 * KB)
    assert fitted is not None
    assert fitted.filename == "ComfyUI_00001_.jpg"
    assert fitted.note == "re-encoded as JPEG (quality 50) to fit the 460 KB upload limit"
    assert len(fitted.data) <= 460 * KB
    assert open_image(fitted, "JPEG").size == (1024, 1024)


def test_a_picture_is_scaled_down_when_no_encoding_fits(noisy_png: bytes) -> None:
    # Nothing fits 360 KB at 1024² (JPEG 50 ≈ 392 KB); at 768², WebP 80 ≈ 335 KB does.
    fitted = fit_file("ComfyUI_00001_.png", noisy_png, 360 * KB)
    assert fitted is not None
    assert fitted.filename == "ComfyUI_00001_.webp"
    assert fitted.note == "re-encoded as WebP (quality 80) and scaled to 768×768 to fit the 360 KB upload limit"
    assert (
        localize(fitted.note, "ja")
        == "アップロード上限 360 KB に収めるため、WebP（品質 80）に再エンコードし、768×768 に縮小しました"
    )
    assert localize(fitted.note, "zh-CN") == "以符合 360 KB 的上传上限，已重新编码为 WebP（质量 80）并缩小到 768×768"
    assert len(fitted.data) <= 360 * KB
    assert open_image(fitted, "WEBP").size == (768, 768)


def test_webp_keeps_transparency(alpha_png: bytes) -> None:
    fitted = fit_file("mask.png", alpha_png, 300 * KB)
    assert fitted is not None
    assert fitted.note == "re-encoded as WebP (quality 90) to fit the 300 KB upload limit"
    assert len(fitted.data) <= 300 * KB
    picture = open_image(fitted, "WEBP")
    assert picture.mode == "RGBA"
    alpha = picture.getchannel("A")
    assert alpha.getpixel((100, 0)) == 0
    assert alpha.getpixel((100, 511)) == 255


def test_jpeg_flattens_transparency_on_white(alpha_png: bytes) -> None:
    # WebP 50 ≈ 135 KB does not fit 100 KB; JPEG 70 ≈ 81 KB does (JPEG 85 ≈ 123 KB does not).
    fitted = fit_file("mask.png", alpha_png, 100 * KB)
    assert fitted is not None
    assert fitted.filename == "mask.jpg"
    assert fitted.note == "re-encoded as JPEG (quality 70) to fit the 100 KB upload limit"
    assert len(fitted.data) <= 100 * KB
    picture = open_image(fitted, "JPEG")
    assert picture.mode == "RGB"
    top = picture.crop((0, 0, 512, 4)).convert("L").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(top, int)
    assert top > 235  # fully transparent pixels came out white


def test_the_comfyui_workflow_survives_in_webp_exif() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", '{"3": {"class_type": "KSampler"}}')
    info.add_text("workflow", '{"nodes": []}')
    data = png_bytes(noise((256, 256)), pnginfo=info)
    fitted = fit_file("ComfyUI_00002_.png", data, 150 * KB)
    assert fitted is not None
    assert fitted.filename == "ComfyUI_00002_.webp"
    exif = open_image(fitted, "WEBP").getexif()
    assert exif[0x0110] == 'prompt:{"3": {"class_type": "KSampler"}}'
    assert exif[0x010F] == 'workflow:{"nodes": []}'


def test_nothing_fits_a_limit_of_a_few_bytes(noisy_png: bytes) -> None:
    assert fit_file("ComfyUI_00001_.png", noisy_png, 100) is None


def test_a_16_bit_grey_png_is_scaled_not_clipped() -> None:
    grey = Image.linear_gradient("L").resize((512, 512)).convert("I").point(lambda v: v * 257)
    data = png_bytes(grey.convert("I;16"))
    fitted = fit_file("depth.png", data, len(data) // 4)
    assert fitted is not None
    picture = open_image(fitted, "WEBP").convert("L")
    middle = picture.getpixel((256, 256))
    assert isinstance(middle, int)
    assert 100 < middle < 160  # a clipping convert() would have made it 255


# --- animations ------------------------------------------------------------------------------------------------


def test_an_animated_gif_becomes_an_mp4(gif: bytes) -> None:
    # (20 KB − ~1.5 KB of MP4 tables) × 93 % over 2.4 s is 59 kbit/s, plenty for 160×120 at 12.5 fps: no scaling.
    assert len(gif) > 20 * KB
    fitted = fit_file("ComfyUI_00003_.gif", gif, 20 * KB)
    assert fitted is not None
    assert fitted.filename == "ComfyUI_00003_.mp4"
    assert fitted.note == "converted to MP4 (59 kbit/s, 160×120) to fit the 20 KB upload limit"
    assert len(fitted.data) <= 20 * KB
    result = probe(fitted.data)
    assert result.streams == [("video", "h264")]
    assert result.size == (160, 120)
    assert result.duration == pytest.approx(2.4, abs=0.05)


def test_a_roomy_limit_does_not_spend_more_than_the_picture_needs(gif: bytes) -> None:
    # 0.5 bit per pixel per frame is where H.264 stops improving: 160×120×12.5×0.5 = 120 kbit/s.
    fitted = fit_file("ComfyUI_00003_.gif", gif, 300 * KB)
    assert fitted is not None
    assert fitted.note == "converted to MP4 (120 kbit/s, 160×120) to fit the 300 KB upload limit"
    assert len(fitted.data) < 60 * KB


def test_an_animated_webp_keeps_its_timing() -> None:
    frames = animation_frames()
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=50, lossless=True)
    fitted = fit_file("ComfyUI_00004_.webp", buffer.getvalue(), 100 * KB)
    assert fitted is not None
    assert fitted.filename == "ComfyUI_00004_.mp4"
    assert len(fitted.data) <= 100 * KB
    assert probe(fitted.data).duration == pytest.approx(1.5, abs=0.05)


# --- audio -----------------------------------------------------------------------------------------------------


def test_wav_becomes_mp3_at_the_computed_bitrate(wav: bytes) -> None:
    # (100 KB × 98 % − 4 KB) × 8 / 3 s ≈ 257 kbit/s: the highest MP3 rate below is 256.
    fitted = fit_file("ComfyUI_00005_.wav", wav, 100 * KB)
    assert fitted is not None
    assert fitted.filename == "ComfyUI_00005_.mp3"
    assert fitted.note == "converted to MP3 at 256 kbps to fit the 100 KB upload limit"
    assert len(fitted.data) <= 100 * KB
    result = probe(fitted.data)
    assert result.format == "mp3"
    assert result.streams == [("audio", "mp3float")]
    assert result.audio == (44100, 2)
    assert result.duration == pytest.approx(3.0, abs=0.1)


def test_flac_becomes_mp3(flac: bytes) -> None:
    # (50 KB × 98 % − 4 KB) × 8 / 3 s ≈ 123 kbit/s: 112 kbps.
    assert len(flac) > 50 * KB
    fitted = fit_file("audio/ComfyUI_00006_.flac", flac, 50 * KB)
    assert fitted is not None
    assert fitted.filename == "audio/ComfyUI_00006_.mp3"
    assert fitted.note == "converted to MP3 at 112 kbps to fit the 50 KB upload limit"
    assert len(fitted.data) <= 50 * KB
    assert probe(fitted.data).duration == pytest.approx(3.0, abs=0.1)


def test_an_audio_only_webm_is_treated_as_audio(wav: bytes) -> None:
    # (48 KB × 98 % − 4 KB) × 8 / ~3 s ≈ 117 kbit/s: 112 kbps
    buffer = io.BytesIO()
    with av.open(io.BytesIO(wav), "r") as source, av.open(buffer, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "stereo"
        stream.bit_rate = 256_000
        for frame in source.decode(audio=0):
            frame.pts = None
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    fitted = fit_file("ComfyUI_00008_.webm", buffer.getvalue(), 48 * KB)
    assert fitted is not None
    assert fitted.filename == "ComfyUI_00008_.mp3"
    assert fitted.note == "converted to MP3 at 112 kbps to fit the 48 KB upload limit"
    assert len(fitted.data) <= 48 * KB
    result = probe(fitted.data)
    assert (result.streams, result.audio) == ([("audio", "mp3float")], (48000, 2))
    assert result.duration == pytest.approx(3.0, abs=0.1)


def test_audio_too_long_for_the_lowest_bitrate_does_not_fit(wav: bytes) -> None:
    assert fit_file("ComfyUI_00005_.wav", wav, 10 * KB) is None


# --- video -----------------------------------------------------------------------------------------------------


def test_a_video_is_reencoded_with_its_sound(mp4: bytes) -> None:
    fitted = fit_file("ComfyUI_00007_.mp4", mp4, 200 * KB)
    assert fitted is not None
    assert fitted.filename == "ComfyUI_00007_.mp4"
    # (200 KB − ~2.5 KB of MP4 tables) × 93 % over 2 s ≈ 753 kbit/s, of which 64 kbit/s go to AAC
    assert fitted.note == "re-encoded as MP4 (689 kbit/s, 320×240) to fit the 200 KB upload limit"
    assert len(fitted.data) <= 200 * KB
    result = probe(fitted.data)
    assert result.streams == [("video", "h264"), ("audio", "aac")]
    assert result.size == (320, 240)
    assert result.audio == (44100, 2)
    assert result.duration == pytest.approx(2.0, abs=0.1)


def test_a_tight_limit_scales_the_video_down(mp4: bytes) -> None:
    # 30 KB over 2 s leaves 73 kbit/s for video after 32 kbit/s of AAC: 0.04 bit per pixel at 320×240×24 fps,
    # so the picture shrinks by √(0.04 / 0.08) to keep 0.08.
    fitted = fit_file("ComfyUI_00007_.mp4", mp4, 30 * KB)
    assert fitted is not None
    assert fitted.note == "re-encoded as MP4 (73 kbit/s, 226×168) to fit the 30 KB upload limit"
    assert len(fitted.data) <= 30 * KB
    result = probe(fitted.data)
    assert result.size == (226, 168)
    assert [kind for kind, _ in result.streams] == ["video", "audio"]


def test_an_overshooting_encode_is_retried_at_a_lower_bitrate(mp4: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    encode = media._encode_mp4
    rates: list[int] = []

    def overshoot_once(clip: Any, dest: Path, picture: Any, video_bps: int, audio_bps: int, *, fps: Any) -> int:
        rates.append(video_bps)
        size = encode(clip, dest, picture, video_bps, audio_bps, fps=fps)
        return size + size // 10 if len(rates) == 1 else size  # as if x264 missed by 10 %

    monkeypatch.setattr(media, "_encode_mp4", overshoot_once)
    fitted = fit_file("ComfyUI_00007_.mp4", mp4, 200 * KB)
    assert fitted is not None
    assert len(fitted.data) <= 200 * KB
    assert len(rates) == 2
    assert rates[1] < rates[0]
    assert fitted.note == f"re-encoded as MP4 ({round(rates[1] / 1000)} kbit/s, 320×240) to fit the 200 KB upload limit"


def test_a_video_with_no_room_left_does_not_fit(mp4: bytes) -> None:
    assert fit_file("ComfyUI_00007_.mp4", mp4, 5 * KB) is None


# --- everything else -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["broken.png", "broken.gif", "broken.flac", "broken.mp3", "broken.mp4", "broken.webm"])
def test_a_corrupt_file_returns_none(name: str) -> None:
    data = b"\x89PNG\r\n\x1a\n" + random.Random(5).randbytes(50_000)
    assert fit_file(name, data, 10 * KB) is None


def test_a_truncated_png_returns_none(noisy_png: bytes) -> None:
    assert fit_file("cut.png", noisy_png[: len(noisy_png) // 2], 500 * KB) is None


def test_a_truncated_video_returns_none(mp4: bytes) -> None:
    assert fit_file("cut.mp4", mp4[: len(mp4) // 2], 100 * KB) is None


@pytest.mark.parametrize("name", ["notes.txt", "graph.json", "model.safetensors", "no_extension"])
def test_other_files_are_never_shrunk(name: str) -> None:
    data = b"x" * 5000
    assert fit_file(name, data, 1000) is None
    assert fit_file(name, data, 5000) == Shrunk(name, data, None)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (10 * 2**20, "10 MB"),
        (8 * 2**20, "8 MB"),
        (25 * 2**20, "25 MB"),
        (512 * KB, "512 KB"),
        (1536 * KB, "1.5 MB"),
        (100, "100 bytes"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_kinds_are_unchanged() -> None:
    assert [kind_of(n) for n in ("a.PNG", "b.flac", "c.webm", "d.json", "e.bin")] == [
        "image",
        "audio",
        "video",
        "text",
        "file",
    ]


# --- pixel cap (issue 11) ---------------------------------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width`×`height` RGB pixels but holds no image data: only a header to read."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.abuse
def test_a_144_megapixel_png_is_named_with_its_size_and_never_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_header(12000, 12000)

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("the picture was decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    with pytest.raises(media.TooManyPixels) as caught:
        fit_file("ComfyUI_00001_.png", data, 10)
    assert caught.value.user_message == (
        f"ComfyUI_00001_.png is 12000×12000 pixels (144 MP, {len(data)} bytes), more than the "
        "100 MP the bot decodes to shrink a file, so it was not attached."
    )


@pytest.mark.abuse
def test_the_pixel_cap_is_an_argument(noisy_png: bytes) -> None:
    with pytest.raises(media.TooManyPixels) as caught:
        fit_file("ComfyUI_00002_.png", noisy_png, 780 * KB, max_image_pixels=1_000_000)
    assert caught.value.user_message == (
        f"ComfyUI_00002_.png is 1024×1024 pixels (1 MP, {human_size(len(noisy_png))}), more than the "
        "1 MP the bot decodes to shrink a file, so it was not attached."
    )
    fitted = fit_file("ComfyUI_00002_.png", noisy_png, 780 * KB, max_image_pixels=1024 * 1024)
    assert fitted is not None and len(fitted.data) <= 780 * KB


@pytest.mark.abuse
def test_a_video_over_the_pixel_cap_is_named_too(mp4: bytes) -> None:
    with pytest.raises(media.TooManyPixels) as caught:
        fit_file("ComfyUI_00007_.mp4", mp4, 200 * KB, max_image_pixels=50_000)
    assert caught.value.user_message == (
        f"ComfyUI_00007_.mp4 is 320×240 pixels (0.1 MP, {human_size(len(mp4))}), more than the 0.1 MP the bot "
        "decodes to shrink a file, so it was not attached."
    )


@pytest.mark.abuse
def test_a_picture_too_large_to_decode_is_named_in_the_members_language(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: pytest.fail("the picture was decoded"))
    with pytest.raises(media.TooManyPixels) as caught:
        fit_file("ComfyUI_00001_.png", png_header(12000, 12000), 10)
    assert localize(caught.value.user_message, "zh-CN") == (
        "ComfyUI_00001_.png 为 12000×12000 像素（144 MP，65 字节），"
        "超过了机器人为缩小文件而解码的上限 100 MP，因此未附上。"
    )
    assert localize(caught.value.user_message, "ja") == (
        "ComfyUI_00001_.png は 12000×12000 ピクセル（144 MP、65 バイト）あり、"
        "ボットが縮小のために読み込める上限 100 MP を超えるため、添付していません。"
    )
