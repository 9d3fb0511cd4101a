"""Output files: what kind each one is, from its name."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

MediaKind = Literal["image", "audio", "video", "text", "file"]

_KINDS: dict[str, MediaKind] = {
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tiff"), "image"),
    **dict.fromkeys((".mp3", ".flac", ".opus", ".ogg", ".wav", ".m4a", ".aac"), "audio"),
    **dict.fromkeys((".mp4", ".webm", ".mov", ".mkv", ".avi"), "video"),
    **dict.fromkeys((".txt", ".json", ".md"), "text"),
}


def kind_of(filename: str) -> MediaKind:
    """Classify a file by its extension (ComfyUI names outputs with the right one)."""
    return _KINDS.get(PurePosixPath(filename).suffix.lower(), "file")
