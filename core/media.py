"""Output files: what kind each one is, from its name, and how to shrink one to fit Discord's upload limit."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from core.config import DEFAULT_MAX_IMAGE_PIXELS
from core.errors import OutputTooLarge
from core.i18n import Text

if TYPE_CHECKING:  # imported by `_load_codecs` on the first fit: they are a tenth of a second of the bot's start
    import av
    from av.container import InputContainer
    from av.video.reformatter import VideoReformatter
    from PIL import Image

log = logging.getLogger(__name__)


MediaKind = Literal["image", "audio", "video", "text", "file"]

# What was done to a file to fit the limit, shown beside its name with the result; {fit} is FIT.
FIT = Text("to fit the {limit} upload limit")
IMAGE_REENCODED = Text("re-encoded as {format} (quality {quality}) {fit}")
IMAGE_SCALED = Text("re-encoded as {format} (quality {quality}) and scaled to {width}×{height} {fit}")
VIDEO_REENCODED = Text("re-encoded as MP4 ({rate}, {width}×{height}) {fit}")
ANIMATION_CONVERTED = Text("converted to MP4 ({rate}, {width}×{height}) {fit}")
# The same when frames had to go too: {fps} is the new frame rate, {source_fps} the old one
VIDEO_FEWER_FRAMES = Text("re-encoded as MP4 ({rate}, {width}×{height}, {fps} fps instead of {source_fps}) {fit}")
ANIMATION_FEWER_FRAMES = Text("converted to MP4 ({rate}, {width}×{height}, {fps} fps instead of {source_fps}) {fit}")
AUDIO_CONVERTED = Text("converted to MP3 at {kbps} kbps {fit}")
TOO_MANY_PIXELS = Text(
    "{file} is {width}×{height} pixels ({megapixels}, {size}), "
    "more than the {max_megapixels} the bot decodes to shrink a file, so it was not attached."
)
BYTES = Text("{count} bytes")

_KINDS: dict[str, MediaKind] = {
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tiff"), "image"),
    **dict.fromkeys((".mp3", ".flac", ".opus", ".ogg", ".wav", ".m4a", ".aac"), "audio"),
    **dict.fromkeys((".mp4", ".m4v", ".webm", ".mov", ".mkv", ".avi"), "video"),
    **dict.fromkeys((".txt", ".json", ".md"), "text"),
}


def kind_of(filename: str) -> MediaKind:
    """Classify a file by its extension (ComfyUI names outputs with the right one)."""
    return _KINDS.get(PurePosixPath(filename).suffix.lower(), "file")


# Written out rather than asked of `mimetypes`, whose answer depends on the machine's /etc/mime.types
# (a slim Docker image knows neither .webp nor .mkv).
_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tiff": "image/tiff",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".opus": "audio/ogg",
    ".ogg": "audio/ogg",
    ".wav": "audio/wav",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".json": "application/json",
}


def content_type(filename: str) -> str:
    """The MIME type of an output from its extension; application/octet-stream for anything else."""
    return _CONTENT_TYPES.get(PurePosixPath(filename).suffix.lower(), "application/octet-stream")


@dataclass(frozen=True, slots=True)
class Fitted:
    """A file made to fit the upload limit, and what was done to it (None when it was already small enough)."""

    filename: str
    path: Path  # the source itself when it already fit, else a new file beside it
    size: int
    note: str | None


class TooManyPixels(OutputTooLarge):
    """A picture too large to decode safely; its message names it with its size in pixels and bytes."""

    def __init__(self, filename: str, width: int, height: int, size: int, max_pixels: int) -> None:
        shown = {"megapixels": _megapixels(width * height), "max_megapixels": _megapixels(max_pixels)}
        super().__init__(
            TOO_MANY_PIXELS.format(file=filename, width=width, height=height, size=human_size(size), **shown)
        )


def fit_file(
    filename: str, source: Path, limit: int, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> Fitted | None:
    """Make the file at `source` at most `limit` bytes, re-encoding or scaling it down; None when nothing fits.

    `filename` is the output's own name (its extension says what it is). The source is read from disk, never
    whole into memory, and a smaller version is written beside it as `<source>.fitted`, which goes with the
    source's folder. Raises TooManyPixels for a picture over `max_image_pixels`, found from its header.
    """
    # None is the caller's cue to tell the member the file was too big; it also covers undecodable files.
    size = source.stat().st_size
    if size <= limit:
        return Fitted(filename, source, size, None)
    kind = kind_of(filename)
    if limit <= 0 or kind not in ("image", "video", "audio"):
        return None
    _load_codecs()
    dest = source.with_name(source.name + ".fitted")
    fitted: Fitted | None = None
    try:
        if kind == "image":
            fitted = _fit_image(filename, source, dest, limit, max_image_pixels)
        elif kind == "video":
            fitted = _fit_video(filename, source, dest, limit, max_image_pixels)
        else:
            fitted = _fit_audio(filename, source, dest, limit)
    except TooManyPixels:
        raise
    except Exception as exc:  # a corrupt or undecodable output is "cannot fit", never a crash of the job
        log.info("could not shrink %s (%d bytes) below %d bytes: %r", filename, size, limit, exc)
    finally:
        if fitted is None:
            dest.unlink(missing_ok=True)  # an attempt that did not fit, or broke off midway
    return fitted


def _load_codecs() -> None:
    """Import PyAV and Pillow, which only fitting a file needs, the first time one is fitted."""
    global av, Image, VideoReformatter  # noqa: PLW0603
    import av  # noqa: PLC0415
    from av.video.reformatter import VideoReformatter  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    # Pillow's own guard warns above ~89 MP and refuses above ~179 MP without saying the size; `fit_file` checks
    # every picture's header against its own `max_image_pixels` before decoding, and reports the size by name.
    Image.MAX_IMAGE_PIXELS = None


def human_size(size: int) -> str:
    """Write a byte count the way Discord states its limits: 10 MB, 512 KB (binary units)."""
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return BYTES.format(count=size)


def _renamed(filename: str, suffix: str) -> str:
    """Keep the stem (and any folder) of `filename`, with a new extension."""
    old = PurePosixPath(filename).suffix
    return (filename[: -len(old)] if old else filename) + suffix


def _to_fit(limit: int) -> Text:
    return FIT.format(limit=human_size(limit))


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.1f}".removesuffix(".0") + " MP"


# --- still images -----------------------------------------------------------------------------------------------

_WEBP_QUALITIES = (90, 80, 65, 50)
_JPEG_QUALITIES = (85, 70, 50)
_SCALE_STEP = 0.75
_MIN_LONG_SIDE = 64  # below this a picture is no longer worth posting
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_EXTRA_LIMIT = 1 << 20  # an ancillary PNG chunk larger than this is left out before decoding
_WEBP_MAX_SIDE = 16383  # libwebp's hard limit
_JPEG_MAX_SIDE = 65500
# libwebp's method 4 costs ~2.5 s on 16 MP, method 2 ~1 s for files a few % larger: keep big pictures fast.
_WEBP_SLOW_METHOD_MAX_PIXELS = 2048 * 2048
# Above this many pixels, sizes are predicted from a mosaic of tiles instead of trying every quality in full.
_SAMPLE_TILE, _SAMPLE_GRID = 256, 4
_ESTIMATE_SLACK = 1.03  # a mosaic predicts the full encode within ~1 %; leave a little more


@dataclass(frozen=True, slots=True)
class _Encoded:
    data: bytes
    format: str
    quality: int


def _fit_image(filename: str, source: Path, dest: Path, limit: int, max_pixels: int) -> Fitted | None:
    lean = _png_without_large_extras(source, dest.with_name(dest.name + ".png"))
    try:
        return _fit_picture(filename, lean or source, dest, limit, max_pixels)
    finally:
        if lean is not None:
            lean.unlink(missing_ok=True)


def _fit_picture(filename: str, source: Path, dest: Path, limit: int, max_pixels: int) -> Fitted | None:
    with Image.open(source) as img:  # reads the header only: nothing is decoded before load()
        width, height = img.size
        if width * height > max_pixels:
            raise TooManyPixels(filename, width, height, source.stat().st_size, max_pixels)
        # Multi-page TIFFs are pages, not animations: their first page is the picture
        if img.format in ("GIF", "PNG", "WEBP") and getattr(img, "n_frames", 1) > 1:
            return _fit_animation(filename, img, dest, limit)
        img.load()
        return _fit_still(filename, img, dest, limit)


def _png_without_large_extras(source: Path, copy: Path) -> Path | None:
    """A copy of a PNG without its large ancillary chunks, or None when it has none (or is no PNG).

    Pillow reads each chunk after the image data whole into memory, so a PNG with a 500 MB private chunk
    would cost 500 MB (twice, as it joins the pieces) to re-encode. The pixels are all in the critical chunks;
    small ancillary ones (ComfyUI's workflow text, gamma, transparency) are kept.
    """
    with source.open("rb") as file:
        if file.read(8) != _PNG_SIGNATURE:
            return None
        chunks: list[tuple[int, int, bytes]] = []  # (offset, length, type)
        large = False
        while header := file.read(8):
            if len(header) < 8:
                return None  # truncated: let Pillow say what is wrong
            length, kind = int.from_bytes(header[:4], "big"), header[4:]
            chunks.append((file.tell() - 8, length, kind))
            large = large or (kind[:1].islower() and length > _PNG_EXTRA_LIMIT)
            if kind == b"IEND":
                break
            file.seek(length + 4, 1)  # its data and CRC
        if not large:
            return None
        with copy.open("wb") as out:
            out.write(_PNG_SIGNATURE)
            for offset, length, kind in chunks:
                if kind[:1].islower() and length > _PNG_EXTRA_LIMIT:
                    continue
                file.seek(offset)
                left = length + 12  # length, type, data and CRC
                while left > 0:
                    block = file.read(min(left, 1 << 20))
                    if not block:
                        break
                    out.write(block)
                    left -= len(block)
    return copy


def _fit_still(filename: str, img: Image.Image, dest: Path, limit: int) -> Fitted | None:
    exif = _comfy_exif(img.info)
    still = _normalized(img)
    width, height = still.size
    # Bytes per pixel of the smallest encoding seen so far: downscaling adds detail per pixel, so a smaller
    # scale never does better, and scales that cannot fit even at this rate are skipped without encoding.
    floor_bpp = 0.0
    scale = 1.0
    while True:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if max(size) < _MIN_LONG_SIDE:
            return None
        pixels = size[0] * size[1]
        if floor_bpp * pixels * 0.9 <= limit:
            picture = still if scale == 1.0 else still.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
            encoded, smallest = _encode_to_fit(picture, limit, exif)
            if encoded is not None:
                fmt = "WebP" if encoded.format == "WEBP" else encoded.format
                done = {"format": fmt, "quality": encoded.quality, "fit": _to_fit(limit)}
                if scale == 1.0:
                    note = IMAGE_REENCODED.format(**done)
                else:
                    note = IMAGE_SCALED.format(**done, width=size[0], height=size[1])
                suffix = ".webp" if encoded.format == "WEBP" else ".jpg"
                dest.write_bytes(encoded.data)
                return Fitted(_renamed(filename, suffix), dest, len(encoded.data), note)
            if math.isfinite(smallest):
                floor_bpp = smallest / pixels
        scale *= _SCALE_STEP


def _encode_to_fit(picture: Image.Image, limit: int, exif: bytes) -> tuple[_Encoded | None, float]:
    """Find the best WebP, else JPEG, quality that fits; also return the smallest size seen (or predicted)."""
    smallest = math.inf
    if max(picture.size) <= _WEBP_MAX_SIDE:
        method = 4 if picture.width * picture.height <= _WEBP_SLOW_METHOD_MAX_PIXELS else 2

        def webp(quality: int) -> bytes | None:
            return _save(picture, "WEBP", quality=quality, method=method, exif=exif)

        estimates = _estimated_webp_sizes(picture, method, len(exif))
        if estimates is None:
            found, smallest = _highest_fitting(_WEBP_QUALITIES, webp, limit)
        else:
            # Only full-size encodes of the qualities predicted to fit, best first (usually just one).
            likely = [q for q in _WEBP_QUALITIES if estimates[q] <= limit * _ESTIMATE_SLACK]
            found = None
            smallest = min(estimates.values()) / _ESTIMATE_SLACK
            for quality in likely:
                encoded = webp(quality)
                if encoded is not None:
                    smallest = min(smallest, len(encoded))
                    if len(encoded) <= limit:
                        found = (quality, encoded)
                        break
        if found is not None:
            return _Encoded(found[1], "WEBP", found[0]), smallest
    if max(picture.size) <= _JPEG_MAX_SIDE:
        flat = _on_white(picture)

        def jpeg(quality: int) -> bytes | None:
            return _save(flat, "JPEG", quality=quality, optimize=True)

        found, smallest_jpeg = _highest_fitting(_JPEG_QUALITIES, jpeg, limit)
        smallest = min(smallest, smallest_jpeg)
        if found is not None:
            return _Encoded(found[1], "JPEG", found[0]), smallest
    return None, smallest


def _highest_fitting(
    qualities: tuple[int, ...], encode: Callable[[int], bytes | None], limit: int
) -> tuple[tuple[int, bytes] | None, float]:
    """Binary-search a falling quality ladder for its first rung that fits; also return the smallest size seen."""
    low, high = 0, len(qualities)  # the answer is in [low, high]; len(qualities) means none fits
    best: tuple[int, bytes] | None = None
    smallest = math.inf
    while low < high:
        middle = (low + high) // 2
        encoded = encode(qualities[middle])
        if encoded is not None:
            smallest = min(smallest, len(encoded))
        if encoded is not None and len(encoded) <= limit:
            best, high = (qualities[middle], encoded), middle
        else:
            low = middle + 1
    return best, smallest


def _estimated_webp_sizes(picture: Image.Image, method: int, extra: int) -> dict[int, float] | None:
    """Predict full-size WebP sizes from a mosaic of tiles spread over the picture; None if it is small."""
    side = _SAMPLE_TILE * _SAMPLE_GRID
    width, height = picture.size
    if width * height < 4 * side * side or min(width, height) < side:
        return None  # trying the real thing costs about as much as sampling
    mosaic = Image.new(picture.mode, (side, side))
    for i in range(_SAMPLE_GRID):
        for j in range(_SAMPLE_GRID):
            x = (width - _SAMPLE_TILE) * i // (_SAMPLE_GRID - 1)
            y = (height - _SAMPLE_TILE) * j // (_SAMPLE_GRID - 1)
            tile = picture.crop((x, y, x + _SAMPLE_TILE, y + _SAMPLE_TILE))
            mosaic.paste(tile, (i * _SAMPLE_TILE, j * _SAMPLE_TILE))
    factor = width * height / (side * side)
    estimates: dict[int, float] = {}
    for quality in _WEBP_QUALITIES:
        encoded = _save(mosaic, "WEBP", quality=quality, method=method)
        estimates[quality] = math.inf if encoded is None else len(encoded) * factor + extra
    return estimates


def _save(picture: Image.Image, fmt: str, **options: object) -> bytes | None:
    """Encode to bytes; None when the encoder refuses (libwebp overflows a partition on huge noisy pictures)."""
    buffer = io.BytesIO()
    try:
        picture.save(buffer, fmt, **options)
    except (ValueError, OSError):
        return None
    return buffer.getvalue()


def _normalized(img: Image.Image) -> Image.Image:
    """Bring any decoded mode to L, RGB or RGBA, dropping an alpha channel that is fully opaque."""
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grey: scale down, since a plain convert() clips everything above 255 to white
        return img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if img.mode in ("1", "L", "F"):
        return img.convert("L")
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        lowest_alpha = rgba.getchannel("A").getextrema()[0]
        if isinstance(lowest_alpha, int | float) and lowest_alpha < 255:
            return rgba
        return rgba.convert("RGB")
    return img.convert("RGB")


def _on_white(picture: Image.Image) -> Image.Image:
    """Flatten transparency onto white (JPEG and H.264 have no alpha)."""
    if picture.mode != "RGBA":
        return picture
    flat = Image.new("RGB", picture.size, (255, 255, 255))
    flat.paste(picture, mask=picture.getchannel("A"))
    return flat


def _comfy_exif(info: dict[str | tuple[int, int], object]) -> bytes:
    """Carry ComfyUI's PNG workflow text into WebP EXIF, where ComfyUI's loader looks for it."""
    prompt, workflow = info.get("prompt"), info.get("workflow")
    if not isinstance(prompt, str) and not isinstance(workflow, str):
        return b""
    exif = Image.Exif()
    # Same tags and "key:json" layout as ComfyUI's own WebP saver, so dragging the file back in loads the graph.
    if isinstance(prompt, str):
        exif[0x0110] = f"prompt:{prompt}"
    if isinstance(workflow, str):
        exif[0x010F] = f"workflow:{workflow}"
    return exif.tobytes()


# --- video (and animated images, encoded as video) -------------------------------------------------------------

_VIDEO_HEADROOM = 0.93  # x264 ABR overshoots its target by up to ~6 % on short, grainy clips
_MIN_BPP = 0.08  # bits per pixel per frame below which H.264 smears: scale down instead
_MAX_BPP = 0.5  # above this H.264 is visually lossless: spending more only makes the upload slower
_MIN_VIDEO_BPS = 20_000
_MIN_VIDEO_LONG_SIDE = 128
_MIN_FPS = 8  # fewer frames a second than this is a slide show: past it, bits per pixel give way instead
_VIDEO_ATTEMPTS = 3
_X264_PRESET = "fast"
# x264 holds every frame it looks ahead at, ~3 MB each at 720p: the preset's 30 cost 58 MB more than 10 do.
# 10 keep macroblock-tree's gain (PSNR within 0.1 dB on a clip with a still background); 5 save ~14 MB more
# for 0.6 dB less, none (so no macroblock tree either) ~22 MB for 3 dB less.
_X264_LOOKAHEAD = 10


@dataclass(frozen=True, slots=True)
class _Clip:
    """A decodable video: its picture size, timing, and a way to walk its frames (again) from the start."""

    width: int
    height: int
    duration: float
    fps: Fraction
    time_base: Fraction
    audio: tuple[int, int] | None  # (sample rate, channels) of the first audio stream
    frames: Callable[[], Iterator[av.VideoFrame | av.AudioFrame]]


def _fit_video(filename: str, source: Path, dest: Path, limit: int, max_pixels: int) -> Fitted | None:
    with av.open(str(source), "r") as container:
        if not container.streams.video:
            # An audio-only WebM/MP4/MKV: treat it as the audio it is
            return _fit_audio(filename, source, dest, limit) if container.streams.audio else None
        video = container.streams.video[0]
        width, height = video.codec_context.width, video.codec_context.height  # from the stream header
        if width * height > max_pixels:
            raise TooManyPixels(filename, width, height, source.stat().st_size, max_pixels)
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = _duration_of(container, video)
        fps = video.average_rate or video.guessed_rate or Fraction(25)
        clip = _Clip(
            width=width,
            height=height,
            duration=duration,
            fps=Fraction(fps),
            time_base=video.time_base or Fraction(1, 90000),
            audio=None if audio is None else (audio.codec_context.sample_rate, audio.codec_context.channels),
            frames=lambda: _decoded(source, with_audio=audio is not None),
        )
    return _fit_clip(filename, clip, dest, limit, (VIDEO_REENCODED, VIDEO_FEWER_FRAMES))


def _decoded(source: Path, *, with_audio: bool) -> Iterator[av.VideoFrame | av.AudioFrame]:
    """Decode the first video stream (and the first audio stream) in file order."""
    with av.open(str(source), "r") as container:
        streams: list[av.VideoStream | av.AudioStream] = [container.streams.video[0]]
        # Slice threads, not frame threads (AUTO): those hold one more decoded frame per thread, 12 MB more at
        # 720p, and gain nothing in a fit, where the encoder is the slow half
        container.streams.video[0].thread_type = "SLICE"
        if with_audio:
            streams.append(container.streams.audio[0])
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame | av.AudioFrame):
                    yield frame


def _fit_animation(filename: str, img: Image.Image, dest: Path, limit: int) -> Fitted | None:
    # H.264 needs a fraction of the bytes of GIF or animated WebP for the same frames, Discord plays MP4 inline,
    # and its bitrate can be computed from the duration: one encode instead of a ladder of slow WebP trials.
    durations: list[int] = []
    for index in range(getattr(img, "n_frames", 1)):
        img.seek(index)
        img.load()  # WebP sets a frame's duration only once the frame is loaded
        duration = img.info.get("duration")
        # Browsers show GIF delays of 0-10 ms as 100 ms; do the same so the clip lasts as long as it plays
        durations.append(round(duration) if isinstance(duration, int | float) and duration > 10 else 100)
    total_ms = sum(durations)

    def frames() -> Iterator[av.VideoFrame]:
        start = 0
        for index, duration in enumerate(durations):
            img.seek(index)
            frame = av.VideoFrame.from_image(_on_white(img.convert("RGBA")))
            frame.pts, frame.time_base, frame.duration = start, Fraction(1, 1000), duration
            start += duration
            yield frame

    clip = _Clip(
        width=img.width,
        height=img.height,
        duration=total_ms / 1000,
        fps=Fraction(len(durations) * 1000, total_ms).limit_denominator(1001),
        time_base=Fraction(1, 1000),
        audio=None,
        frames=frames,
    )
    return _fit_clip(filename, clip, dest, limit, (ANIMATION_CONVERTED, ANIMATION_FEWER_FRAMES))


def _fit_clip(filename: str, clip: _Clip, dest: Path, limit: int, done: tuple[Text, Text]) -> Fitted | None:
    """Encode `clip` as H.264/AAC MP4 to fill the limit: a lower bitrate, then a smaller picture, then fewer frames.

    `done` is the note for the same frame rate and the one for fewer frames. The encode is retried at a lower
    bitrate when the encoder overshoots.
    """
    if clip.duration <= 0 or clip.width <= 0 or clip.height <= 0:
        return None
    total_bps = (limit - _mp4_overhead(clip)) * 8 * _VIDEO_HEADROOM / clip.duration
    audio_bps = _aac_bps(total_bps) if clip.audio else 0
    video_bps = min(total_bps - audio_bps, _MAX_BPP * clip.width * clip.height * float(clip.fps))
    for _ in range(_VIDEO_ATTEMPTS):
        if video_bps < _MIN_VIDEO_BPS:
            return None
        width, height = _video_size(clip, video_bps)
        fps = _frame_rate(clip, width * height, video_bps)
        size = _encode_mp4(clip, dest, (width, height), round(video_bps), audio_bps, fps=fps)
        if size <= limit:
            shown = {"rate": _rate(video_bps), "width": width, "height": height, "fit": _to_fit(limit)}
            if fps == clip.fps:
                note = done[0].format(**shown)
            else:
                note = done[1].format(**shown, fps=_fps(fps), source_fps=_fps(clip.fps))
            return Fitted(_renamed(filename, ".mp4"), dest, size, note)
        # Take the overshoot out of the video budget, with a margin since ABR misses by a similar ratio again
        video_bps = (video_bps - (size - limit) * 8 / clip.duration) * 0.9
    return None


def _mp4_overhead(clip: _Clip) -> int:
    """Estimate the MP4 boxes around the streams: headers, plus index entries per video frame and AAC packet."""
    video_frames = clip.duration * float(clip.fps)
    audio_packets = 0.0 if clip.audio is None else clip.duration * min(clip.audio[0], 48000) / 1024
    # Only matters for small limits, where a 1-2 KB moov is several percent of the file
    return round(1024 + 16 * video_frames + 8 * audio_packets)


def _aac_bps(total_bps: float) -> int:
    """Pick an AAC bitrate that stays a small share of the budget."""
    for threshold, bps in ((2_000_000, 128_000), (1_000_000, 96_000), (400_000, 64_000)):
        if total_bps >= threshold:
            return bps
    return 32_000


def _video_size(clip: _Clip, video_bps: float) -> tuple[int, int]:
    """Shrink the picture until each pixel gets enough bits; even sides, as yuv420p requires."""
    scale = min(1.0, math.sqrt(video_bps / (_MIN_BPP * clip.width * clip.height * float(clip.fps))))
    scale = max(scale, min(1.0, _MIN_VIDEO_LONG_SIDE / max(clip.width, clip.height)))
    return max(2, round(clip.width * scale / 2) * 2), max(2, round(clip.height * scale / 2) * 2)


def _frame_rate(clip: _Clip, pixels: int, video_bps: float) -> Fraction:
    """Keep the clip's frame rate unless even the smallest picture gets too few bits: then drop frames, to _MIN_FPS.

    Only every 2nd, 3rd... frame is kept, never an uneven pattern, which would make motion judder.
    """
    affordable = video_bps / (_MIN_BPP * pixels)
    if affordable >= clip.fps:
        return clip.fps
    stride = min(math.ceil(clip.fps / affordable), math.floor(clip.fps / _MIN_FPS))
    return clip.fps / stride if stride > 1 else clip.fps


def _fps(fps: Fraction) -> str:
    return f"{float(fps):.2f}".rstrip("0").rstrip(".")


def _encode_mp4(
    clip: _Clip, dest: Path, picture: tuple[int, int], video_bps: int, audio_bps: int, *, fps: Fraction
) -> int:
    """Encode `clip` at `picture` (width, height) and `fps` into the file `dest` (replacing it); return its size.

    At a lower frame rate than the clip's, evenly spaced frames are kept and each lasts as long as the ones
    it stands for, so the clip keeps its length and stays in step with its sound.
    """
    width, height = picture
    stride = clip.fps / fps  # source frames per kept frame (1 when none is dropped)
    with av.open(str(dest), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = video_bps
        video.codec_context.time_base = clip.time_base
        # VBV caps the peaks, so one hard stretch cannot push the whole file over its budget
        video.codec_context.options = {
            "preset": _X264_PRESET,
            "maxrate": str(video_bps * 3 // 2),
            "bufsize": str(video_bps * 2),
            "rc-lookahead": str(_X264_LOOKAHEAD),
        }
        audio = None
        if clip.audio is not None:
            rate, channels = clip.audio
            # AAC-LC in MP4 plays everywhere at these rates; the encoder resamples and mixes down itself
            audio = out.add_stream("aac", rate=rate if rate <= 48000 else 48000)
            audio.layout = "stereo" if channels >= 2 else "mono"
            audio.bit_rate = audio_bps
        last_pts = -1
        index, next_kept = 0, Fraction(0)
        # One scaler for the whole clip: `frame.reformat` would set up a new one (and its threads) for every frame
        scaler = VideoReformatter()
        for frame in clip.frames():
            if isinstance(frame, av.VideoFrame):
                index += 1
                if index - 1 < next_kept:
                    continue  # a dropped frame: the kept one before it lasts through it
                next_kept += stride
                scaled = scaler.reformat(frame, width=width, height=height, format="yuv420p", interpolation="BICUBIC")
                # Decoders may leave pts unset or repeat it; the muxer wants it strictly increasing
                pts = frame.pts if frame.pts is not None and frame.pts > last_pts else last_pts + 1
                scaled.pts, scaled.time_base, last_pts = pts, clip.time_base, pts
                scaled.duration = frame.duration if frame.duration is None else round(frame.duration * stride)
                out.mux(video.encode(scaled))
            elif audio is not None:
                frame.pts = None  # the encoder's resampler keeps its own sample clock
                out.mux(audio.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            out.mux(audio.encode(None))
    return dest.stat().st_size


def _duration_of(container: InputContainer, stream: av.VideoStream | av.AudioStream) -> float:
    """Seconds of media, from the headers, else from the last packet's end time."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    end = 0.0
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return end


def _rate(bps: float) -> str:
    if bps >= 1_000_000:
        return f"{bps / 1_000_000:.1f}".removesuffix(".0") + " Mbit/s"
    return f"{round(bps / 1000)} kbit/s"


# --- audio -------------------------------------------------------------------------------------------------------

# Constant-bitrate MP3: the size is bitrate × duration, so the rate that fits is computed, not searched for.
_MP3_KBPS = (320, 256, 224, 192, 160, 128, 112, 96, 80, 64, 56, 48, 40, 32)
_MP3_OVERHEAD = 4096  # ID3v2 header and Xing frame
_AUDIO_HEADROOM = 0.98
_AUDIO_ATTEMPTS = 2


def _fit_audio(filename: str, source: Path, dest: Path, limit: int) -> Fitted | None:
    # MP3 rather than Opus: every Discord client (iOS included) plays it inline, and at typical ComfyUI lengths
    # (seconds to minutes) the limit allows 128 kbps or more, where MP3 sounds fine.
    with av.open(str(source), "r") as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        duration = _duration_of(container, stream)
    if duration <= 0 or rate <= 0:
        return None
    budget_kbps = (limit * _AUDIO_HEADROOM - _MP3_OVERHEAD) * 8 / duration / 1000
    # CBR lands within a frame or two of the computed size: if the first rate misses, the next lower ones will not
    for kbps in [kbps for kbps in _MP3_KBPS if kbps <= budget_kbps][:_AUDIO_ATTEMPTS]:
        size = _encode_mp3(source, dest, kbps, rate, channels)
        if size <= limit:
            note = AUDIO_CONVERTED.format(kbps=kbps, fit=_to_fit(limit))
            return Fitted(_renamed(filename, ".mp3"), dest, size, note)
    return None


def _encode_mp3(source: Path, dest: Path, kbps: int, rate: int, channels: int) -> int:
    """Encode the first audio stream of `source` as constant-bitrate MP3 into `dest` (replacing it); return its size."""
    # MPEG-1 layer III only has these rates; the nearest family keeps resampling gentle
    if rate not in (32000, 44100, 48000):
        rate = 44100 if rate % 11025 == 0 else 48000
    with av.open(str(source), "r") as reader, av.open(str(dest), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate)
        stream.layout = "stereo" if channels >= 2 else "mono"
        stream.bit_rate = kbps * 1000
        # LAME's -q 5: a quarter faster than its default -q 3, with no audible loss at the rates used here
        stream.codec_context.options = {"compression_level": "5"}
        for frame in reader.decode(reader.streams.audio[0]):
            frame.pts = None  # the encoder's resampler keeps its own sample clock
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return dest.stat().st_size
