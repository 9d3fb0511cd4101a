"""An in-process fake of the ComfyUI HTTP + websocket API, for tests, in two version profiles.

Profile ``"0.3.64"`` follows the project's protocol notes for ComfyUI 0.3.64 and the transcripts
recorded from it: the same routes (plain and under ``/api``), the same
JSON bodies and key order, the same websocket message sequences (``status`` pairs,
``execution_start``, ``execution_cached``, ``progress_state``, ``executing``,
``progress``, ``executed``, ``execution_success`` / ``execution_error`` /
``execution_interrupted``, ``status``, ``executing {node: null}``), binary preview
frames (types 1, 3 and 4), prompt validation with ComfyUI's error shapes, a heap
queue with one worker, the classic output cache, and a ``restart()`` that behaves
like a killed process.

Profile ``"current"`` (ComfyUI 0.38.1) adds what changed since, per the notes on current ComfyUI:
canonical-UUID prompt ids, ``missing_node_type`` rejections, the ``/api/jobs`` routes (list, one
job, atomic cancel), ``create_time`` in ``extra_data``, API keys kept out of ``/queue``, ``metadata``
on image outputs, audio names without the trailing ``_``, newer ``/system_stats`` and ``/features``
keys, and a 403 for ``Sec-Fetch-Site: cross-site``. Both keep the same-clientId reconnect bug.

No model runs: nodes produce placeholder values, and output nodes write small but
valid files (PNG written by hand with zlib + struct) into an in-memory file store
that ``/view`` serves.

Two knobs stand for a server behind a reverse proxy: ``required_headers`` answers 401 to any request
(websocket upgrade included) that lacks them, and ``ssl_context`` serves https and wss with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gzip
import heapq
import io
import ipaddress
import json
import logging
import mimetypes
import posixpath
import random
import re
import socket
import ssl
import struct
import time
import urllib.parse
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["PROFILES", "FakeComfyUI", "Profile", "RecordedRequest", "make_png"]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- constants

MAX_UPLOAD_SIZE = 104_857_600
MAXIMUM_HISTORY_SIZE = 10_000
SERVER_FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE}
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
TEXT_500 = "500 Internal Server Error\n\nServer got itself in trouble"

MODEL_FOLDERS = [
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
]

# (class_type, input name) -> models folder whose listing fills the combo.
FILE_COMBOS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("VAELoader", "vae_name"): "vae",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name1"): "text_encoders",
    ("TripleCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name1"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name2"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name4"): "text_encoders",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
}
INPUT_IMAGE_COMBOS = {("LoadImage", "image"), ("LoadImageMask", "image")}
INPUT_AUDIO_COMBOS = {("LoadAudio", "audio"), ("LoadVideo", "file")}
# Nodes with a VALIDATE_INPUTS hook that checks that the input file exists.
FILE_VALIDATED: dict[str, tuple[str, str]] = {
    "LoadImage": ("image", "Invalid image file: {}"),
    "LoadImageMask": ("image", "Invalid image file: {}"),
    "LoadAudio": ("audio", "Invalid audio file: {}"),
    "LoadVideo": ("file", "Invalid video file: {}"),
}

SAMPLER_CLASSES = {"KSampler", "KSamplerAdvanced", "SamplerCustomAdvanced", "SamplerCustom"}
IMAGE_TYPES = {"IMAGE", "LATENT", "MASK"}
PRIMITIVES = {"PrimitiveString", "PrimitiveStringMultiline", "PrimitiveInt", "PrimitiveFloat", "PrimitiveBoolean"}

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
AUDIO_VIDEO_EXTS = {
    ".wav",
    ".mp3",
    ".ogg",
    ".flac",
    ".opus",
    ".m4a",
    ".aac",
    ".aif",
    ".aiff",
    ".wma",
    ".mp4",
    ".webm",
    ".mov",
    ".mkv",
    ".avi",
}
CONTENT_TYPES = {
    ".png": "image/png",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".opus": "audio/ogg",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".txt": "text/plain",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".wav": "audio/x-wav",
    ".ogg": "audio/ogg",
    ".html": "application/octet-stream",
    ".js": "application/octet-stream",
    ".css": "application/octet-stream",
}
TEMP_ALPHABET = "abcdefghijklmnopqrstupvxyz"  # sic: ComfyUI's own alphabet for temp names

SYSTEM_STATS: dict[str, Any] = {
    "system": {
        "os": "posix",
        "ram_total": 25276502016,
        "ram_free": 24265392128,
        "comfyui_version": "0.3.64",
        "required_frontend_version": "1.27.10",
        "installed_templates_version": None,
        "required_templates_version": "0.1.95",
        "python_version": "3.11.7 (main) [GCC 12.2.0]",
        "pytorch_version": "2.9.1+cu128",
        "embedded_python": False,
        "argv": ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", "8188"],
    },
    "devices": [
        {
            "name": "cpu",
            "type": "cpu",
            "index": None,
            "vram_total": 25276502016,
            "vram_free": 24265392128,
            "torch_vram_total": 25276502016,
            "torch_vram_free": 24265392128,
        }
    ],
}


@dataclass(frozen=True, slots=True)
class Profile:
    """What differs between the ComfyUI versions the fake imitates (one knob per behaviour)."""

    name: str
    version: str  # /system_stats system.comfyui_version
    system_os: str  # os.name up to 0.3.64, sys.platform since
    newer_server_info: bool  # /system_stats package versions and deploy environment; newer /features keys
    uuid_prompt_ids: bool  # a given prompt_id must be a canonical lowercase hyphenated UUID string
    missing_node_type: bool  # an unknown class is rejected as missing_node_type, not invalid_prompt
    jobs_api: bool  # GET /api/jobs, GET /api/jobs/{id}, POST /api/jobs/{id}/cancel, POST /api/jobs/cancel
    create_time: bool  # the server stamps extra_data.create_time (ms)
    queue_hides_secrets: bool  # API keys in extra_data are left out of /queue
    output_metadata: bool  # image output items carry metadata {kind, width, height}
    plain_audio_names: bool  # audio savers write prefix_00001.ext (no trailing _)
    cross_site_guard: bool  # Sec-Fetch-Site: cross-site gets 403 on every path


PROFILES: dict[str, Profile] = {
    "0.3.64": Profile(
        name="0.3.64", version="0.3.64", system_os="posix", newer_server_info=False, uuid_prompt_ids=False,
        missing_node_type=False, jobs_api=False, create_time=False, queue_hides_secrets=False,
        output_metadata=False, plain_audio_names=False, cross_site_guard=False,
    ),
    "current": Profile(
        name="current", version="0.38.1", system_os="linux", newer_server_info=True, uuid_prompt_ids=True,
        missing_node_type=True, jobs_api=True, create_time=True, queue_hides_secrets=True,
        output_metadata=True, plain_audio_names=True, cross_site_guard=True,
    ),
}  # fmt: skip

NEWER_FEATURES: dict[str, Any] = {
    "supports_model_type_tags": True,
    "extension": {"manager": {"supports_v4": True}},
    "node_replacements": True,
    "assets": True,
}
PACKAGE_VERSIONS = [
    {"name": "comfyui-frontend-package", "installed": "1.30.2", "required": "1.30.2"},
    {"name": "comfyui-workflow-templates", "installed": "0.3.10", "required": "0.3.10"},
]
JOB_STATUSES = ["pending", "in_progress", "completed", "failed", "cancelled"]
PREVIEWABLE_MEDIA = {"images", "video", "audio", "3d", "text"}
INVALID_PROMPT_ID: dict[str, Any] = {
    "error": {
        "type": "invalid_prompt_id",
        "message": "prompt_id must be a valid UUID",
        "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
        "omit it to let the server generate one",
        "extra_info": {},
    },
    "node_errors": {},
}


def _system_stats(profile: Profile) -> dict[str, Any]:
    system = dict(SYSTEM_STATS["system"])
    system.update(os=profile.system_os, comfyui_version=profile.version)
    if profile.newer_server_info:  # the newer keys, in the server's order
        order = ["os", "ram_total", "ram_free", "comfyui_version", "required_frontend_version",
                 "installed_templates_version", "required_templates_version", "comfy_package_versions",
                 "python_version", "pytorch_version", "embedded_python", "deploy_environment", "argv"]  # fmt: skip
        system.update(comfy_package_versions=copy.deepcopy(PACKAGE_VERSIONS), deploy_environment="local")
        system = {key: system[key] for key in order}
    return {"system": system, "devices": copy.deepcopy(SYSTEM_STATS["devices"])}


def _features(profile: Profile) -> dict[str, Any]:
    return {**SERVER_FEATURES, **(copy.deepcopy(NEWER_FEATURES) if profile.newer_server_info else {})}


def _is_canonical_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


# Traceback frames ComfyUI reports for a KeyError during validation (12_bad_prompts.json).
VALIDATION_TRACEBACK = [
    '  File "<COMFYUI_ROOT>/execution.py", line 1010, in validate_prompt\n'
    "    m = await validate_inputs(prompt_id, prompt, o, validated)\n"
    "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
    '  File "<COMFYUI_ROOT>/execution.py", line 788, in validate_inputs\n'
    "    o_class_type = prompt[o_id]['class_type']\n"
    "                   ~~~~~~^^^^^^\n",
]
EXECUTION_TRACEBACK = [
    '  File "<COMFYUI_ROOT>/execution.py", line 496, in execute\n'
    "    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, "
    "obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, "
    "hidden_inputs=hidden_inputs)\n",
    '  File "<COMFYUI_ROOT>/execution.py", line 277, in process_inputs\n    result = f(**inputs)\n',
]


# Loaded once; every instance parses its own copy (a deep copy, cheaper than copy.deepcopy).
_OBJECT_INFO_TEXT = gzip.decompress(Path(__file__).with_name("object_info.json.gz").read_bytes()).decode("utf-8")


# --------------------------------------------------------------------------- small helpers


@dataclass
class RecordedRequest:
    """One HTTP request the fake received (websocket upgrades included)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any | None


@dataclass
class _Img:
    """Placeholder for an IMAGE / LATENT / MASK value: just its geometry and a colour."""

    width: int
    height: int
    batch: int
    color: tuple[int, int, int]


@dataclass
class _Opaque:
    """Placeholder for any other node output (MODEL, CLIP, AUDIO, ...)."""

    type_name: str
    node_id: str

    def __str__(self) -> str:
        return f"<{self.type_name} from node {self.node_id}>"


@dataclass(eq=False)
class _QueueItem:
    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    seq: int = 0

    def __lt__(self, other: _QueueItem) -> bool:
        return (self.number, self.prompt_id, self.seq) < (other.number, other.prompt_id, other.seq)

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


@dataclass
class _CacheEntry:
    outputs: list[Any]
    ui: dict[str, Any] | None


@dataclass
class _Generation:
    """State that dies with the (fake) server process: sockets and their metadata."""

    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    transports: dict[web.WebSocketResponse, Any] = field(default_factory=dict)


class _Interrupted(Exception):
    pass


class _NodeFailure(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _text_chunk(key: str, value: str) -> bytes:
    try:
        return _png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _png_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def _preview_jpeg(number: int) -> bytes:
    """The server's `number`th sampler preview: a small JPEG whose comment numbers it, so no two frames are alike."""
    from PIL import Image  # only for previews: the fake writes its PNG outputs by hand

    buffer = io.BytesIO()
    colour = (number * 37 % 256, number * 11 % 256, 200)
    Image.new("RGB", (64, 64), colour).save(buffer, "JPEG", quality=95, comment=f"preview {number}")
    return buffer.getvalue()


def make_png(
    width: int,
    height: int,
    color: tuple[int, int, int] = (128, 128, 128),
    *,
    text: dict[str, str] | None = None,
    padding: int = 0,
) -> bytes:
    """A valid 8-bit RGB PNG of one colour. ``padding`` bytes go into a private ancillary chunk."""
    width, height = max(1, int(width)), max(1, int(height))
    row = b"\x00" + bytes(color) * width
    compressor = zlib.compressobj(6)
    parts: list[bytes] = []
    rows_per_block = max(1, (1 << 20) // len(row))
    done = 0
    while done < height:
        n = min(rows_per_block, height - done)
        parts.append(compressor.compress(row * n))
        done += n
    parts.append(compressor.flush())
    chunks = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    for key, value in (text or {}).items():
        chunks.append(_text_chunk(key, value))
    chunks.append(_png_chunk(b"IDAT", b"".join(parts)))
    if padding > 0:
        chunks.append(_png_chunk(b"zzZz", b"\0" * padding))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    return None


def _fake_media(ext: str, padding: int) -> bytes:
    """Plausible leading bytes for non-PNG outputs; ``padding`` zero bytes appended."""
    body = {
        "flac": b"fLaC\x00\x00\x00\x22\x10\x00\x10\x00" + b"\x00" * 30,
        "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + b"\x00" * 412,
        "opus": b"OggS\x00\x02" + b"\x00" * 20 + b"\x13OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00",
        "webp": b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00",
        "mp4": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41\x00\x00\x00\x08free",
        "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
        b"\x42\x82\x84webm\x42\x87\x81\x04\x42\x85\x81\x02",
    }.get(ext, b"")
    return body + b"\0" * max(0, padding)


# VideoHelperSuite's Video Combine as its INPUT_TYPES declare it (format-specific widgets such as crf and pix_fmt
# are added by its web extension and arrive as extra inputs, which ComfyUI does not validate).
VHS_VIDEO_COMBINE: dict[str, Any] = {
    "input": {
        "required": {
            "images": ["IMAGE"],
            "frame_rate": ["FLOAT", {"default": 8, "min": 1, "step": 1}],
            "loop_count": ["INT", {"default": 0, "min": 0, "max": 100, "step": 1}],
            "filename_prefix": ["STRING", {"default": "AnimateDiff"}],
            "format": [["image/gif", "image/webp", "video/h264-mp4", "video/h265-mp4", "video/vp9-webm"]],
            "pingpong": ["BOOLEAN", {"default": False}],
            "save_output": ["BOOLEAN", {"default": True}],
        },
        "optional": {"audio": ["AUDIO"], "vae": ["VAE"]},
        "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"},
    },
    "input_order": {
        "required": ["images", "frame_rate", "loop_count", "filename_prefix", "format", "pingpong", "save_output"],
        "optional": ["audio", "vae"],
    },
    "output": ["VHS_FILENAMES"],
    "output_is_list": [False],
    "output_name": ["Filenames"],
    "name": "VHS_VideoCombine",
    "display_name": "Video Combine 🎥🅥🅗🅢",
    "description": "",
    "python_module": "custom_nodes.ComfyUI-VideoHelperSuite",
    "category": "Video Helper Suite 🎥🅥🅗🅢",
    "output_node": True,
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json", charset="utf-8")


def _error_500() -> web.Response:
    resp = web.Response(status=500, text=TEXT_500, content_type="text/plain", charset="utf-8")
    resp.force_close()
    return resp


COERCE: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def _err(kind: str, message: str, details: str, **extra_info: Any) -> dict[str, Any]:
    """One ComfyUI validation error: {type, message, details, extra_info}."""
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2


def _full_type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    name = type(exc).__qualname__
    return name if module in (None, "builtins") else f"{module}.{name}"


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


def _preview_any_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool, list, dict)) or value is None:
        try:
            return json.dumps(value, indent=4)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _split_annotation(name: str) -> tuple[str, str | None]:
    for kind in ("output", "input", "temp"):
        suffix = f" [{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, None


def _norm_subfolder(subfolder: str) -> str | None:
    """Normalise a subfolder; None if it escapes the base directory."""
    if not subfolder:
        return ""
    if subfolder.startswith("/"):
        return None
    norm = posixpath.normpath(subfolder)
    if norm == ".":
        return ""
    if norm == ".." or norm.startswith("../"):
        return None
    return norm


def _types_compatible(received: Any, expected: Any) -> bool:
    if received == expected:
        return True
    if received == "*" or expected == "*":
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return bool(got & want)


# --------------------------------------------------------------------------- jobs API shapes


def _prune(job: dict[str, Any]) -> dict[str, Any]:
    """Jobs leave out keys whose value is None."""
    return {key: value for key, value in job.items() if value is not None}


def _workflow_id(extra_data: dict[str, Any]) -> Any:
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow") or {}
    return workflow.get("id") if isinstance(workflow, dict) else None


def _queue_job(item: list[Any], status: str, *, detail: bool = False) -> dict[str, Any]:
    number, prompt_id, prompt, extra_data, _ = item
    job = _prune({"id": prompt_id, "status": status, "priority": number, "create_time": extra_data.get("create_time"),
                  "outputs_count": 0, "previewable_outputs_count": 0,
                  "workflow_id": _workflow_id(extra_data)})  # fmt: skip
    if detail:
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def _history_job(prompt_id: str, entry: dict[str, Any], *, detail: bool = False) -> dict[str, Any]:
    number, _, prompt, extra_data, _ = entry["prompt"]
    status_info = entry.get("status") or {}
    start = end = error = None
    interrupted = False
    for event, data in status_info.get("messages", []):
        if event == "execution_start":
            start = data.get("timestamp")
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            error = data if event == "execution_error" else error
            interrupted = interrupted or event == "execution_interrupted"
    failed = status_info.get("status_str") == "error"
    status = ("cancelled" if interrupted else "failed") if failed else "completed"
    outputs = entry.get("outputs", {})
    count, preview, previewable = _outputs_summary(outputs)
    job = _prune({"id": prompt_id, "status": status, "priority": number, "create_time": extra_data.get("create_time"),
                  "execution_start_time": start, "execution_end_time": end, "execution_error": error,
                  "outputs_count": count, "previewable_outputs_count": previewable, "preview_output": preview,
                  "workflow_id": _workflow_id(extra_data)})  # fmt: skip
    if detail:
        job.update(outputs=outputs, execution_status=status_info, workflow={"prompt": prompt, "extra_data": extra_data})
    return job


def _outputs_summary(outputs: dict[str, Any]) -> tuple[int, dict[str, Any] | None, int]:
    """(outputs_count, preview_output, previewable_outputs_count): saved media first, then temp, then text."""
    count = previewable = 0
    saved = other = text = None
    for node_id, node_outputs in outputs.items():
        for media_type, items in node_outputs.items():
            if media_type == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict):  # text output strings are previews, not outputs
                    if media_type == "text" and text is None:
                        text = {"content": str(item)[:1024], "nodeId": node_id, "mediaType": media_type}
                    continue
                count += 1
                if media_type not in PREVIEWABLE_MEDIA:
                    continue
                previewable += 1
                enriched = {**item, "nodeId": node_id, "mediaType": item.get("mediaType", media_type)}
                if item.get("type") == "output":
                    saved = saved or enriched
                else:
                    other = other or enriched
    return count, saved or other or text, previewable


def _job_sort_key(job: dict[str, Any], sort_by: str) -> int:
    if sort_by == "execution_duration":
        start, end = job.get("execution_start_time", 0), job.get("execution_end_time", 0)
        return end - start if start and end else 0
    return job.get("create_time", 0)


# --------------------------------------------------------------------------- the fake


class FakeComfyUI:
    """A fake ComfyUI server on 127.0.0.1 (see module docstring)."""

    def __init__(
        self,
        *,
        models: dict[str, list[str]] | None = None,
        node_delay: float = 0.0,
        sampler_steps: int = 3,
        image_size: tuple[int, int] = (64, 64),
        output_padding: int = 0,
        profile: str | Profile = "0.3.64",
        port: int = 0,  # 0: any free port
        required_headers: dict[str, str] | None = None,  # e.g. a proxy's Authorization: others get 401
        ssl_context: ssl.SSLContext | None = None,  # serve https/wss with it
    ) -> None:
        # knobs
        self.profile = profile if isinstance(profile, Profile) else PROFILES[profile]
        self.models: dict[str, list[str]] = models if models is not None else {}
        self.node_delay = node_delay
        self.sampler_steps = sampler_steps
        self.image_size = image_size
        self.output_padding = output_padding
        self.fail_nodes: dict[str, tuple[str, str]] = {}
        # What media savers write, by extension (e.g. a real clip for tests that decode the result); an
        # extension not here gets a few plausible leading bytes
        self.media: dict[str, bytes] = {}
        self.http_failures: list[tuple[str, str, int]] = []
        self.required_headers: dict[str, str] = dict(required_headers or {})
        self.ssl_context = ssl_context
        # ComfyUI's --preview-method: "none" (its default) sends no sampler previews; any other value sends one
        # JPEG per sampler step (protocol notes §4.3: `("JPEG", img, --preview-size)`).
        self.preview_method = "none"
        self.sampler_delay: float | None = None  # seconds one sampler node takes; None: node_delay
        self.refused: list[RecordedRequest] = []  # requests answered 401 for want of required_headers
        # observation
        self.requests: list[RecordedRequest] = []
        self.previews_sent: list[tuple[str, bytes]] = []  # (prompt id, image) of every sampler preview, in order
        self.history: dict[str, dict[str, Any]] = {}
        self.finished_at: dict[str, float] = {}  # prompt id -> time.monotonic() when its history was written
        self.files: dict[tuple[str, str, str], bytes] = {
            ("input", "", "example.png"): make_png(*image_size, (90, 120, 200)),
        }
        # server state
        self.url = ""
        self._port = port
        self._object_info: dict[str, Any] = json.loads(_OBJECT_INFO_TEXT)
        self._original_combos = self._snapshot_file_combos()
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._worker: asyncio.Task[None] | None = None
        self._gen = _Generation()
        self._queue: list[_QueueItem] = []
        self._queue_seq = 0
        self._running: _QueueItem | None = None
        self._number = 0
        self._cache: dict[Any, _CacheEntry] = {}
        self._client_id: str | None = None
        self._last_node_id: str | None = None
        self._interrupt = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    def install_video_helper_suite(self) -> None:
        """Add VideoHelperSuite's VHS_VideoCombine, as a server with that custom node installed declares it."""
        self._object_info["VHS_VideoCombine"] = copy.deepcopy(VHS_VIDEO_COMBINE)

    async def __aenter__(self) -> FakeComfyUI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=MAX_UPLOAD_SIZE, middlewares=[self._middleware])
        self._add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self._port))
        except OSError:
            sock.close()
            await runner.cleanup()
            raise
        self._port = sock.getsockname()[1]
        site = web.SockSite(runner, sock, ssl_context=self.ssl_context)
        await site.start()
        self._runner, self._site = runner, site
        self.url = f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self._port}"
        self._worker = asyncio.create_task(self._worker_loop(), name="fake-comfyui-worker")

    async def stop(self) -> None:
        """Stop like a killed process: no close frames, queue and running prompt are lost."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None
        runner, site = self._runner, self._site
        self._runner = self._site = None
        if site is not None:
            with contextlib.suppress(Exception):
                await site.stop()
        self._abort_all(runner)
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._gen = _Generation()
        self._queue.clear()
        self._running = None
        self._client_id = None
        self._last_node_id = None

    async def restart(self, downtime: float = 0.0) -> None:
        """Kill and start again on the same port; in-memory state is lost, files stay."""
        await self.stop()
        self.history.clear()
        self._cache.clear()
        self._number = 0
        self._interrupt = False
        if downtime > 0:
            await asyncio.sleep(downtime)
        await self.start()

    async def drop_websockets(self) -> None:
        """Abort every websocket transport (client sees 1006); the server keeps running."""
        for transport in list(self._gen.transports.values()):
            with contextlib.suppress(Exception):
                transport.abort()
        await asyncio.sleep(0)

    def _abort_all(self, runner: web.AppRunner | None) -> None:
        for transport in list(self._gen.transports.values()):
            with contextlib.suppress(Exception):
                transport.abort()
        server = runner.server if runner is not None else None
        if server is not None:
            for handler in server.connections:
                transport = handler.transport
                if transport is not None:
                    with contextlib.suppress(Exception):
                        transport.abort()

    # ------------------------------------------------------------------ test controls

    def forget_outputs(self) -> None:
        """Drop every output file already written (as an admin clearing output/); keeps benchmarks small."""
        for key in [k for k in self.files if k[0] != "input"]:
            del self.files[key]

    def pause(self) -> None:
        """Hold the worker before the next node (and before the next prompt)."""
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()
        self._wake.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.005)

    def ws_client_ids(self) -> list[str]:
        return list(self._gen.sockets)

    @property
    def holds_jobs(self) -> bool:
        """True while a prompt runs or waits here: a stop or restart now loses it."""
        return self._running is not None or bool(self._queue)

    def queue_snapshot(self) -> tuple[list[Any], list[Any]]:
        """What GET /queue shows: (running, pending) 5-item lists; the current profile leaves API keys out."""
        items = ([self._running] if self._running is not None else []), self._queue
        running, pending = ([copy.deepcopy(item.as_list()) for item in group] for group in items)
        if self.profile.queue_hides_secrets:
            for item in running + pending:
                for key in SENSITIVE_EXTRA_DATA_KEYS:
                    item[3].pop(key, None)
        return running, pending

    # ------------------------------------------------------------------ routing

    def _add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
            ("GET", "/ws", self._ws_handler),
            ("GET", "/system_stats", self._get_system_stats),
            ("GET", "/features", self._get_features),
            ("GET", "/prompt", self._get_prompt),
            ("POST", "/prompt", self._post_prompt),
            ("GET", "/object_info", self._get_object_info),
            ("GET", "/object_info/{node_class}", self._get_object_info_one),
            ("GET", "/history", self._get_history),
            ("GET", "/history/{prompt_id}", self._get_history_one),
            ("POST", "/history", self._post_history),
            ("GET", "/queue", self._get_queue),
            ("POST", "/queue", self._post_queue),
            ("POST", "/interrupt", self._post_interrupt),
            ("POST", "/free", self._post_free),
            ("GET", "/view", self._get_view),
            ("POST", "/upload/image", self._post_upload_image),
            ("GET", "/models", self._get_models),
            ("GET", "/models/{folder}", self._get_models_folder),
            ("GET", "/embeddings", self._get_embeddings),
        ]
        if self.profile.jobs_api:  # registered with their /api prefix, so they also exist under /api/api
            routes += [
                ("GET", "/api/jobs", self._get_jobs),
                ("POST", "/api/jobs/cancel", self._post_jobs_cancel),
                ("GET", "/api/jobs/{job_id}", self._get_job),
                ("POST", "/api/jobs/{job_id}/cancel", self._post_job_cancel),
            ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body_json: Any | None = None
        too_large = False
        if request.can_read_body and not request.content_type.startswith("multipart/"):
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                too_large = True
            else:
                if raw:
                    with contextlib.suppress(ValueError):
                        body_json = json.loads(raw)
        recorded = RecordedRequest(request.method, request.path, dict(request.query), body_json)
        if any(request.headers.get(name) != value for name, value in self.required_headers.items()):
            self.refused.append(recorded)  # as a proxy would: before ComfyUI sees it, websocket upgrade included
            return web.Response(status=401, text="401: Unauthorized", headers={"WWW-Authenticate": "Bearer"})
        self.requests.append(recorded)
        if self.profile.cross_site_guard and request.headers.get("Sec-Fetch-Site") == "cross-site":
            return web.Response(status=403)
        if too_large:
            return web.Response(status=413, text=f"Maximum request body size {MAX_UPLOAD_SIZE} exceeded.")
        if self._origin_rejected(request):
            return web.Response(status=403)
        if request.method == "OPTIONS":
            return web.Response(status=200)
        for index, (method, path, status) in enumerate(self.http_failures):
            if method.upper() == request.method and request.path in (path, "/api" + path):
                del self.http_failures[index]
                reason = ""
                with contextlib.suppress(ValueError):
                    reason = HTTPStatus(status).phrase
                return web.Response(status=status, text=f"{status}: {reason}")
        return await handler(request)

    @staticmethod
    def _origin_rejected(request: web.Request) -> bool:
        host = request.headers.get("Host")
        origin = request.headers.get("Origin")
        if not host or not origin:
            return False
        host_l = host.lower()
        origin_netloc = urllib.parse.urlparse(origin).netloc.lower()
        parsed = urllib.parse.urlsplit("//" + host_l)
        hostname = parsed.hostname or ""
        loopback = hostname == "localhost"
        with contextlib.suppress(ValueError):
            loopback = loopback or ipaddress.ip_address(hostname).is_loopback
        if not loopback:
            return False
        origin_parsed = urllib.parse.urlsplit("//" + origin_netloc)
        if origin_parsed.port is None:
            host_l = hostname
            origin_netloc = origin_parsed.hostname or ""
        return host_l != origin_netloc

    # ------------------------------------------------------------------ websocket

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        transport = request.transport
        await ws.prepare(request)
        gen = self._gen
        sid = request.query.get("clientId", "")
        if sid:
            gen.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        gen.sockets[sid] = ws
        gen.metadata[sid] = {"feature_flags": {}}
        gen.transports[ws] = transport
        try:
            await self._send_json("status", {"status": self._queue_info(), "sid": sid}, sid)
            if self._client_id == sid and self._last_node_id is not None:
                await self._send_json("executing", {"node": self._last_node_id}, sid)
            first_message = True
            async for msg in ws:
                if msg.type != web.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                    if first_message and data.get("type") == "feature_flags":
                        gen.metadata[sid]["feature_flags"] = data.get("data", {})
                        await self._send_json("feature_flags", _features(self.profile), sid)
                    first_message = False
                except Exception:  # invalid JSON or not an object: ignored, like ComfyUI
                    log.debug("ignoring ws message from %s: %r", sid, msg.data)
        finally:
            gen.sockets.pop(sid, None)
            gen.metadata.pop(sid, None)
            gen.transports.pop(ws, None)
        return ws

    def _supports_metadata(self, sid: str | None) -> bool:
        if sid is None:
            return False
        meta = self._gen.metadata.get(sid)
        return bool(meta and meta.get("feature_flags", {}).get("supports_preview_metadata", False))

    async def _send_raw(self, payload: str | bytes, sid: str | None) -> None:
        gen = self._gen
        if sid is None:
            targets = list(gen.sockets.values())
        else:
            ws = gen.sockets.get(sid)
            targets = [ws] if ws is not None else []
        for ws in targets:
            if ws.closed:
                continue
            try:
                if isinstance(payload, bytes):
                    await ws.send_bytes(payload)
                else:
                    await ws.send_str(payload)
            except Exception:  # a dying socket: ComfyUI logs and carries on
                log.debug("send to a closing websocket failed", exc_info=True)

    async def _send_json(self, event: str, data: Any, sid: str | None) -> None:
        await self._send_raw(json.dumps({"type": event, "data": data}), sid)

    def _queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self._queue) + (1 if self._running is not None else 0)}}

    async def _queue_updated(self) -> None:
        await self._send_json("status", {"status": self._queue_info()}, None)

    # ------------------------------------------------------------------ simple GET routes

    async def _get_system_stats(self, request: web.Request) -> web.Response:
        return _json_response(_system_stats(self.profile))

    async def _get_features(self, request: web.Request) -> web.Response:
        return _json_response(_features(self.profile))

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return _json_response(self._queue_info())

    async def _get_object_info(self, request: web.Request) -> web.Response:
        return _json_response(self.object_info())

    async def _get_object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        info = self.object_info()
        return _json_response({name: info[name]} if name in info else {})

    async def _get_models(self, request: web.Request) -> web.Response:
        return _json_response(MODEL_FOLDERS)

    async def _get_models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS and folder not in self.models:
            return web.Response(status=404)
        return _json_response(list(self.models.get(folder, [])))

    async def _get_embeddings(self, request: web.Request) -> web.Response:
        return _json_response([posixpath.splitext(name)[0] for name in self.models.get("embeddings", [])])

    async def _get_queue(self, request: web.Request) -> web.Response:
        running, pending = self.queue_snapshot()
        return _json_response({"queue_running": running, "queue_pending": pending})

    async def _get_history(self, request: web.Request) -> web.Response:
        try:
            max_raw = request.query.get("max_items")
            max_items = int(max_raw) if max_raw is not None else None
            offset_raw = request.query.get("offset")
            offset = int(offset_raw) if offset_raw is not None else -1
        except ValueError:
            return _error_500()
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict[str, Any] = {}
        for i, key in enumerate(self.history):
            if i >= offset:
                out[key] = self.history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return _json_response(out)

    async def _get_history_one(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        if prompt_id in self.history:
            return _json_response({prompt_id: self.history[prompt_id]})
        return _json_response({})

    async def _post_history(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if body.get("clear"):
                self.history.clear()
            if "delete" in body:
                for prompt_id in body["delete"]:
                    self.history.pop(prompt_id, None)
        except Exception:
            return _error_500()
        return web.Response(status=200)

    async def _post_queue(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if body.get("clear"):
                self._queue.clear()
                await self._queue_updated()
            if "delete" in body:
                for prompt_id in body["delete"]:
                    await self._dequeue(prompt_id)
        except Exception:
            return _error_500()
        return web.Response(status=200)

    async def _dequeue(self, prompt_id: Any) -> bool:
        """Remove a pending prompt (a `status` broadcast follows); False if it is not pending."""
        for index, item in enumerate(self._queue):
            if item.prompt_id == prompt_id:
                self._queue.pop(index)
                heapq.heapify(self._queue)
                await self._queue_updated()
                return True
        return False

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        if prompt_id:
            if self._running is not None and self._running.prompt_id == prompt_id:
                self._interrupt = True
        else:
            self._interrupt = True
        return web.Response(status=200)

    async def _post_free(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    # ------------------------------------------------------------------ jobs API (current profile)

    async def _get_jobs(self, request: web.Request) -> web.Response:
        query = request.query
        statuses = JOB_STATUSES
        if query.get("status"):
            statuses = [value.strip().lower() for value in query["status"].split(",") if value.strip()]
            invalid = [value for value in statuses if value not in JOB_STATUSES]
            if invalid:
                message = f"Invalid status value(s): {', '.join(invalid)}. Valid values: {', '.join(JOB_STATUSES)}"
                return _json_response({"error": message}, status=400)
        sort_by = query.get("sort_by", "created_at").lower()
        sort_order = query.get("sort_order", "desc").lower()
        if sort_by not in ("created_at", "execution_duration"):
            return _json_response({"error": "sort_by must be 'created_at' or 'execution_duration'"}, status=400)
        if sort_order not in ("asc", "desc"):
            return _json_response({"error": "sort_order must be 'asc' or 'desc'"}, status=400)
        limit: int | None = None
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                return _json_response({"error": "limit must be an integer"}, status=400)
            if limit <= 0:
                return _json_response({"error": "limit must be a positive integer"}, status=400)
        try:
            offset = max(0, int(query.get("offset", 0)))
        except ValueError:
            return _json_response({"error": "offset must be an integer"}, status=400)

        running, pending = self.queue_snapshot()
        jobs = [_queue_job(item, "in_progress") for item in running] if "in_progress" in statuses else []
        jobs += [_queue_job(item, "pending") for item in pending] if "pending" in statuses else []
        finished = (_history_job(prompt_id, entry) for prompt_id, entry in self.history.items())
        jobs += [job for job in finished if job["status"] in statuses]
        if query.get("workflow_id"):
            jobs = [job for job in jobs if job.get("workflow_id") == query["workflow_id"]]
        jobs.sort(key=lambda job: _job_sort_key(job, sort_by), reverse=sort_order == "desc")
        page = jobs[offset:][:limit]
        pagination = {"offset": offset, "limit": limit, "total": len(jobs), "has_more": offset + len(page) < len(jobs)}
        return _json_response({"jobs": page, "pagination": pagination})

    async def _get_job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        if job_id in self.history:
            return _json_response(_history_job(job_id, self.history[job_id], detail=True))
        running, pending = self.queue_snapshot()
        for items, status in ((running, "in_progress"), (pending, "pending")):
            for item in items:
                if item[1] == job_id:
                    return _json_response(_queue_job(item, status, detail=True))
        return _json_response({"error": "Job not found"}, status=404)

    async def _post_job_cancel(self, request: web.Request) -> web.Response:
        return _json_response({"cancelled": await self._cancel_job(request.match_info["job_id"])})

    async def _post_jobs_cancel(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json_response({"error": "Request body must be valid JSON"}, status=400)
        job_ids = body.get("job_ids") if isinstance(body, dict) else None
        if not isinstance(job_ids, list):
            return _json_response({"error": "job_ids must be a list"}, status=400)
        invalid = [repr(job_id) for job_id in job_ids if not isinstance(job_id, str)]
        if invalid:
            return _json_response({"error": "job_ids contains invalid id(s)", "invalid_ids": invalid}, status=400)
        results = [await self._cancel_job(job_id) for job_id in job_ids]
        return _json_response({"cancelled": any(results)})

    async def _cancel_job(self, job_id: str) -> bool:
        """Interrupt the job if it runs, dequeue it if it waits; unknown and finished jobs are no-ops."""
        if self._running is not None and self._running.prompt_id == job_id:
            self._interrupt = True
            return True
        return await self._dequeue(job_id)

    # ------------------------------------------------------------------ files

    async def _get_view(self, request: web.Request) -> web.Response:
        query = request.query
        if "filename" not in query:
            return web.Response(status=404)
        filename, annotated_type = _split_annotation(query["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        file_type = annotated_type or query.get("type", "output")
        if file_type not in ("output", "input", "temp"):
            return web.Response(status=400)
        subfolder = ""
        if "subfolder" in query:
            norm = _norm_subfolder(query["subfolder"])
            if norm is None:
                return web.Response(status=403)
            subfolder = norm
        name = posixpath.basename(filename)
        data = self.files.get((file_type, subfolder, name))
        if data is None:
            return web.Response(status=404)
        ext = posixpath.splitext(name)[1].lower()
        content_type = CONTENT_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return web.Response(body=data, content_type=content_type, headers={"Content-Disposition": f'filename="{name}"'})

    async def _post_upload_image(self, request: web.Request) -> web.Response:
        try:
            post = await request.post()
        except web.HTTPException:
            raise
        except Exception:
            return web.Response(status=400)
        image = post.get("image")
        upload_type = post.get("type")
        if upload_type is None:
            upload_type = "input"
        if upload_type not in ("input", "temp", "output"):
            return _error_500()
        if not isinstance(image, web.FileField):
            return web.Response(status=400)
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = post.get("subfolder", "")
        subfolder = subfolder if isinstance(subfolder, str) else ""
        full = posixpath.normpath(posixpath.join(posixpath.normpath(subfolder) if subfolder else "", filename))
        if full.startswith("/") or full == ".." or full.startswith("../"):
            return web.Response(status=400)
        directory, name = posixpath.split(full)
        data = image.file.read()
        overwrite = post.get("overwrite")
        if overwrite not in ("true", "1"):
            stem, ext = posixpath.splitext(name)
            i = 1
            while (str(upload_type), directory, name) in self.files:
                if self.files[(str(upload_type), directory, name)] == data:
                    break
                name = f"{stem} ({i}){ext}"
                i += 1
        self.files[(str(upload_type), directory, name)] = data
        return _json_response({"name": name, "subfolder": subfolder, "type": upload_type})

    def _input_files(self, exts: set[str]) -> list[str]:
        names = [
            name
            for (kind, sub, name) in self.files
            if kind == "input" and sub == "" and posixpath.splitext(name)[1].lower() in exts
        ]
        return sorted(set(names))

    def _file_exists(self, annotated: str) -> bool:
        name, kind = _split_annotation(annotated)
        directory, base = posixpath.split(posixpath.normpath(name)) if name else ("", "")
        return (kind or "input", directory, base) in self.files

    # ------------------------------------------------------------------ object_info

    def _snapshot_file_combos(self) -> dict[tuple[str, str], list[Any]]:
        snap: dict[tuple[str, str], list[Any]] = {}
        for key in list(FILE_COMBOS) + list(INPUT_IMAGE_COMBOS) + list(INPUT_AUDIO_COMBOS):
            spec = self._input_spec(key[0], key[1])
            if spec is not None:
                snap[key] = list(self._combo_options(spec) or [])
        return snap

    def _input_spec(self, class_type: str, name: str) -> list[Any] | None:
        info = self._object_info.get(class_type)
        if info is None:
            return None
        for category in ("required", "optional"):
            spec = info.get("input", {}).get(category, {}).get(name)
            if spec is not None:
                return spec
        return None

    @staticmethod
    def _combo_options(spec: list[Any]) -> list[Any] | None:
        if isinstance(spec[0], list):
            return spec[0]
        if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
            return spec[1].setdefault("options", [])
        return None

    @staticmethod
    def _set_combo(spec: list[Any], options: list[Any]) -> None:
        if isinstance(spec[0], list):
            spec[0] = options
        elif len(spec) > 1 and isinstance(spec[1], dict):
            spec[1]["options"] = options

    def object_info(self) -> dict[str, Any]:
        """This instance's /object_info, with file-list combos refreshed from the knobs."""
        for key, original in self._original_combos.items():
            spec = self._input_spec(*key)
            if spec is None:
                continue
            if key in INPUT_IMAGE_COMBOS:
                options = self._input_files(IMAGE_EXTS)
            elif key in INPUT_AUDIO_COMBOS:
                options = self._input_files(AUDIO_VIDEO_EXTS)
            else:
                files = list(self.models.get(FILE_COMBOS[key], []))
                options = files + [extra for extra in original if extra not in files]
            self._set_combo(spec, options)
        return self._object_info

    # ------------------------------------------------------------------ POST /prompt + validation

    async def _post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error_500()
        if not isinstance(body, dict):
            return _error_500()
        try:
            if "number" in body:
                number: int | float = float(body["number"])
            else:
                number = self._number
                if body.get("front"):
                    number = -number
                self._number += 1
        except (TypeError, ValueError):
            return _error_500()
        if "prompt" not in body:
            error = _err("no_prompt", "No prompt provided", "No prompt provided")
            return _json_response({"error": error, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        if self.profile.uuid_prompt_ids:  # checked before the graph, after the counter moved on
            given = body.get("prompt_id")
            if given is not None and not _is_canonical_uuid(given):
                return _json_response(INVALID_PROMPT_ID, status=400)
            prompt_id = str(uuid.uuid4()) if given is None else given
        else:
            prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        if not isinstance(prompt, dict):
            return _error_500()
        partial = body.get("partial_execution_targets") if "partial_execution_targets" in body else None
        self.object_info()  # make sure validation sees the current model lists
        try:
            ok, error, outputs, node_errors = self._validate_prompt(prompt, partial)
        except Exception:
            log.exception("validation crashed")
            return _error_500()
        extra_data = body.get("extra_data", {})
        if not isinstance(extra_data, dict):
            return _error_500()
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if self.profile.create_time:
            extra_data["create_time"] = _now_ms()
        if not ok:
            return _json_response({"error": error, "node_errors": node_errors}, status=400)
        self._queue_seq += 1
        item = _QueueItem(number, prompt_id, copy.deepcopy(prompt), copy.deepcopy(extra_data), outputs, self._queue_seq)
        heapq.heappush(self._queue, item)
        await self._queue_updated()
        self._wake.set()
        return _json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    def _validate_prompt(
        self, prompt: dict[str, Any], partial: list[str] | None
    ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
        outputs: list[str] = []
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return False, self._missing_class_error(node_id, node), [], {}
            class_type = node["class_type"]
            info = self._object_info.get(class_type) if isinstance(class_type, str) else None
            if info is None:
                return False, self._unknown_class_error(node_id, node), [], {}
            if info.get("output_node") is True and (partial is None or node_id in partial):
                outputs.append(node_id)
        if not outputs:
            error = _err("prompt_no_outputs", "Prompt has no outputs", "")
            return False, error, [], {}

        good: list[str] = []
        failures: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, Any] = {}
        validated: dict[str, tuple[bool, list[dict[str, Any]], str]] = {}
        for out in outputs:
            try:
                valid, reasons, _ = self._validate_inputs(prompt, out, validated)
            except Exception as ex:
                valid = False
                reasons = [
                    _err("exception_during_validation", "Exception when validating node", str(ex),
                         exception_type=_full_type_name(ex), traceback=list(VALIDATION_TRACEBACK))
                ]  # fmt: skip
                validated[out] = (False, reasons, out)
            if valid:
                good.append(out)
                continue
            failures.append((out, reasons))
            for node_id, (node_valid, node_reasons, _) in validated.items():
                if node_valid is not True and node_reasons:
                    if node_id not in node_errors:
                        node_errors[node_id] = {
                            "errors": node_reasons,
                            "dependent_outputs": [],
                            "class_type": prompt[node_id]["class_type"],
                        }
                    node_errors[node_id]["dependent_outputs"].append(out)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failures for e in errs)
            error = _err("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
            return False, error, [], node_errors
        return True, None, good, node_errors

    def _missing_class_error(self, node_id: str, node: Any) -> dict[str, Any]:
        details = f"Node ID '#{node_id}'"
        if not self.profile.missing_node_type:
            return _err("invalid_prompt", "Cannot execute because a node is missing the class_type property.", details)
        meta = node.get("_meta", {}) if isinstance(node, dict) else {}
        title = meta.get("title") if isinstance(meta, dict) else None
        message = (
            f"Node '{title or f'ID #{node_id}'}' has no class_type. "
            "The workflow may be corrupted or a custom node is missing."
        )
        return _err("missing_node_type", message, details, node_id=node_id, class_type=None, node_title=title)

    def _unknown_class_error(self, node_id: str, node: dict[str, Any]) -> dict[str, Any]:
        class_type = node["class_type"]
        details = f"Node ID '#{node_id}'"
        if not self.profile.missing_node_type:
            return _err("invalid_prompt", f"Cannot execute because node {class_type} does not exist.", details)
        meta = node.get("_meta", {})
        title = meta.get("title", class_type) if isinstance(meta, dict) else class_type
        message = f"Node '{title}' not found. The custom node may not be installed."
        return _err("missing_node_type", message, details, node_id=node_id, class_type=class_type, node_title=title)

    def _validate_inputs(
        self, prompt: dict[str, Any], unique_id: str, validated: dict[str, tuple[bool, list[dict[str, Any]], str]]
    ) -> tuple[bool, list[dict[str, Any]], str]:
        """execution.validate_inputs: errors for this node, recursing into linked nodes first."""
        if unique_id in validated:
            return validated[unique_id]
        node = prompt[unique_id]
        inputs = node.setdefault("inputs", {})
        class_type = node["class_type"]
        declared = self._object_info[class_type].get("input", {})
        custom = FILE_VALIDATED.get(class_type)
        errors: list[dict[str, Any]] = []
        valid = True
        for category in ("required", "optional"):
            for name, spec in declared.get(category, {}).items():
                input_type = spec[0]
                extra_info = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                config = [input_type, extra_info]
                if name not in inputs:
                    if category == "required":
                        errors.append(
                            _err("required_input_missing", "Required input is missing", name, input_name=name)
                        )
                    continue
                val = inputs[name]
                if isinstance(val, list):
                    if len(val) != 2:
                        message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
                        errors.append(
                            _err("bad_linked_input", message, name, input_name=name, input_config=config,
                                 received_value=val)
                        )  # fmt: skip
                        continue
                    o_id = val[0]
                    o_class = prompt[o_id]["class_type"]  # KeyError for a missing node, as in ComfyUI
                    received_type = tuple(self._object_info[o_class].get("output", []))[val[1]]
                    if not _types_compatible(received_type, input_type):
                        details = f"{name}, received_type({received_type}) mismatch input_type({input_type})"
                        errors.append(
                            _err("return_type_mismatch", "Return type mismatch between linked nodes", details,
                                 input_name=name, input_config=config, received_type=received_type, linked_node=val)
                        )  # fmt: skip
                        continue
                    try:
                        if self._validate_inputs(prompt, o_id, validated)[0] is False:
                            valid = False
                    except Exception as ex:
                        valid = False
                        inner = _err("exception_during_inner_validation", "Exception when validating inner node",
                                     str(ex), input_name=name, input_config=config, exception_message=str(ex),
                                     exception_type=_full_type_name(ex), traceback=list(VALIDATION_TRACEBACK),
                                     linked_node=val)  # fmt: skip
                        validated[o_id] = (False, [inner], o_id)
                    continue
                try:
                    if isinstance(val, dict) and "__value__" in val:
                        val = val["__value__"]
                        inputs[name] = val
                    if isinstance(input_type, str) and input_type in COERCE:
                        val = COERCE[input_type](val)
                        inputs[name] = val
                except Exception as ex:
                    errors.append(
                        _err("invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                             f"{name}, {val}, {ex}", input_name=name, input_config=config, received_value=val,
                             exception_message=str(ex))
                    )  # fmt: skip
                    continue
                if custom is not None and name == custom[0]:
                    continue  # VALIDATE_INPUTS takes over this input
                if "min" in extra_info and val < extra_info["min"]:
                    message = "Value {} smaller than min of {}".format(val, extra_info["min"])
                    errors.append(
                        _err("value_smaller_than_min", message, name, input_name=name, input_config=config,
                             received_value=val)
                    )  # fmt: skip
                    continue
                if "max" in extra_info and val > extra_info["max"]:
                    message = "Value {} bigger than max of {}".format(val, extra_info["max"])
                    errors.append(
                        _err("value_bigger_than_max", message, name, input_name=name, input_config=config,
                             received_value=val)
                    )  # fmt: skip
                    continue
                if isinstance(input_type, list) or input_type == "COMBO":
                    options = input_type if isinstance(input_type, list) else extra_info.get("options", [])
                    if val not in options:
                        large = len(options) > 20
                        list_info = f"(list of length {len(options)})" if large else str(options)
                        errors.append(
                            _err("value_not_in_list", "Value not in list", f"{name}: '{val}' not in {list_info}",
                                 input_name=name, input_config=None if large else config, received_value=val)
                        )  # fmt: skip
        if custom is not None:
            name, template = custom
            val = inputs.get(name)
            if isinstance(val, str) and not self._file_exists(val):
                details = f"{name} - {template.format(val)}"
                errors.append(_err("custom_validation_failed", "Custom validation failed for node", details,
                                   input_name=name))  # fmt: skip
        ret = (False, errors, unique_id) if errors or valid is not True else (True, [], unique_id)
        validated[unique_id] = ret
        return ret

    # ------------------------------------------------------------------ worker

    async def _worker_loop(self) -> None:
        while True:
            while not (self._queue and self._resumed.is_set()):
                self._wake.clear()
                await self._wake.wait()
            item = heapq.heappop(self._queue)
            self._running = item
            await self._queue_updated()
            try:
                await self._execute(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fake ComfyUI worker crashed on prompt %s", item.prompt_id)
                self._running = None
                await self._queue_updated()

    def _signatures(self, prompt: dict[str, Any]) -> dict[str, Any]:
        sigs: dict[str, Any] = {}
        visiting: set[str] = set()

        def sig(node_id: Any) -> Any:
            if not isinstance(node_id, str) or node_id not in prompt:
                return ("missing", repr(node_id))
            if node_id in sigs:
                return sigs[node_id]
            if node_id in visiting:
                return ("cycle", node_id)
            visiting.add(node_id)
            node = prompt[node_id]
            class_type = node.get("class_type")
            parts: list[Any] = [class_type, self._is_changed(class_type, node.get("inputs", {}))]
            inputs = node.get("inputs", {})
            for name in sorted(inputs):
                value = inputs[name]
                if _is_link(value):
                    parts.append((name, ("link", sig(value[0]), repr(value[1]))))
                else:
                    parts.append((name, json.dumps(value, sort_keys=True, default=str)))
            visiting.discard(node_id)
            sigs[node_id] = tuple(parts)
            return sigs[node_id]

        for node_id in prompt:
            sig(node_id)
        return sigs

    def _is_changed(self, class_type: Any, inputs: dict[str, Any]) -> Any:
        if class_type == "SaveImageWebsocket":
            return uuid.uuid4().hex  # IS_CHANGED returns time.time(): never cached
        if class_type in FILE_VALIDATED:
            name = inputs.get(FILE_VALIDATED[class_type][0])
            if isinstance(name, str):
                data = self._lookup_input(name)
                return zlib.crc32(data) if data is not None else None
        return None

    def _lookup_input(self, annotated: str) -> bytes | None:
        name, kind = _split_annotation(annotated)
        directory, base = posixpath.split(posixpath.normpath(name)) if name else ("", "")
        return self.files.get((kind or "input", directory, base))

    def _is_output(self, prompt: dict[str, Any], node_id: str) -> bool:
        info = self._object_info.get(prompt[node_id].get("class_type"), {})
        return info.get("output_node") is True

    async def _execute(self, item: _QueueItem) -> None:
        """PromptExecutor.execute_async + PromptQueue.task_done for one queue item."""
        run = _PromptRun(self, item)
        self._client_id = run.client_id
        self._interrupt = False
        await run.add_message("execution_start", {"prompt_id": run.prompt_id})
        prompt = run.prompt
        sigs = self._signatures(prompt)
        wanted = set(sigs.values())
        self._cache = {key: entry for key, entry in self._cache.items() if key in wanted}
        cached_nodes = [node_id for node_id in prompt if sigs[node_id] in self._cache]
        await run.add_message("execution_cached", {"nodes": cached_nodes, "prompt_id": run.prompt_id})
        for node_id in cached_nodes:
            run.values[node_id] = self._cache[sigs[node_id]].outputs

        plan = _ExecutionPlan(
            prompt, item.outputs, lambda nid: sigs[nid] in self._cache, lambda nid: self._is_output(prompt, nid)
        )
        success = True
        while not plan.empty():
            node_id = plan.next_node()
            if node_id is None:
                message = "Dependency cycle detected"
                await run.report_error(plan.first_pending(), "comfy_execution.graph.DependencyCycleError", message, {})
                success = False
                break
            cached = self._cache.get(sigs[node_id])
            if cached is not None:
                run.values[node_id] = cached.outputs
                await run.node_executed(node_id, cached.ui, always_send=True)
                await run.finish_progress(node_id)
                plan.complete(node_id)
                continue
            await self._resumed.wait()
            await run.start_node(node_id)
            class_type = prompt[node_id]["class_type"]
            inputs = run.resolve_inputs(node_id)
            try:
                if self._interrupt:
                    raise _Interrupted
                outputs, ui = await self._run_node(run, node_id, inputs, sigs[node_id])
            except _Interrupted:
                data = {"prompt_id": run.prompt_id, "node_id": node_id, "node_type": class_type,
                        "executed": list(run.executed)}  # fmt: skip
                await run.add_message("execution_interrupted", data, broadcast=True)
                success = False
                break
            except _NodeFailure as failure:
                await run.report_error(node_id, failure.exception_type, failure.message, inputs)
                success = False
                break
            run.values[node_id] = outputs
            await run.node_executed(node_id, ui)
            await run.finish_progress(node_id)
            run.executed.append(node_id)
            self._cache[sigs[node_id]] = _CacheEntry(outputs, copy.deepcopy(ui))
            plan.complete(node_id)
        if success:
            await run.add_message("execution_success", {"prompt_id": run.prompt_id})
        self._last_node_id = None

        # PromptQueue.task_done: history first, then the status broadcast, then `executing null`.
        if run.prompt_id not in self.history and len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        self.history[run.prompt_id] = run.history_entry(success)
        self.finished_at[run.prompt_id] = time.monotonic()
        self._running = None
        await self._queue_updated()
        if run.client_id is not None:
            await self._send_json("executing", {"node": None, "prompt_id": run.prompt_id}, run.client_id)

    # ------------------------------------------------------------------ node behaviour

    async def _run_node(
        self, run: _PromptRun, node_id: str, inputs: dict[str, Any], signature: Any
    ) -> tuple[list[Any], dict[str, Any] | None]:
        """Run one node: wait, report progress, maybe fail, write files; returns (outputs, ui)."""
        class_type = run.prompt[node_id]["class_type"]
        if class_type in SAMPLER_CLASSES:
            steps = max(1, int(self.sampler_steps))
            delay = self.node_delay if self.sampler_delay is None else self.sampler_delay
            for step in range(1, steps + 1):
                await asyncio.sleep(delay / steps)
                preview = None
                if self.preview_method != "none":
                    preview = _preview_jpeg(len(self.previews_sent))
                    self.previews_sent.append((run.prompt_id, preview))
                await run.progress(node_id, step, steps, preview=preview)
        else:
            await asyncio.sleep(self.node_delay)
        if class_type in self.fail_nodes:
            exception_type, message = self.fail_nodes[class_type]
            raise _NodeFailure(exception_type, message)

        outputs = self._compute_outputs(node_id, class_type, inputs, signature)
        image = next((v for v in inputs.values() if isinstance(v, _Img)), None)
        pnginfo = {"prompt": json.dumps(run.prompt)}
        for key, value in (run.extra_data.get("extra_pnginfo") or {}).items():
            pnginfo[str(key)] = json.dumps(value)

        if class_type == "SaveImage":
            return outputs, {
                "images": self._save_images(image, inputs.get("filename_prefix", "ComfyUI"), "output", pnginfo)
            }
        if class_type in ("PreviewImage", "MaskPreview"):
            return outputs, {"images": self._save_images(image, self._temp_prefix(), "temp", pnginfo)}
        if class_type == "SaveAnimatedPNG":
            saved = self._save_images(image, inputs.get("filename_prefix", "ComfyUI"), "output", pnginfo, single=True)
            return outputs, {"images": saved, "animated": [True]}
        if class_type in ("SaveAnimatedWEBP", "SaveWEBM", "SaveVideo"):
            ext = {"SaveAnimatedWEBP": "webp", "SaveWEBM": "webm"}.get(class_type, "mp4")
            if class_type == "SaveVideo" and inputs.get("format") not in (None, "auto", "mp4"):
                ext = str(inputs["format"])
            default = "video/ComfyUI" if class_type == "SaveVideo" else "ComfyUI"
            saved = self._save_media(inputs.get("filename_prefix", default), "output", ext, image)
            return outputs, {"images": saved, "animated": [True]}
        if class_type == "VHS_VideoCombine":
            # VideoHelperSuite's VideoCombine.combine_video: ui {"gifs": [...]}, one item for the file it wrote
            # (its name has no trailing _), with the format, rate and the server's absolute path beside it
            fmt = str(inputs.get("format", "image/gif"))
            ext = (
                fmt.rsplit("/", maxsplit=1)[-1].rsplit("-", maxsplit=1)[-1]
                if fmt.startswith("video/")
                else fmt.removeprefix("image/")
            )
            kind = "output" if inputs.get("save_output", True) else "temp"
            [saved] = self._save_media(inputs.get("filename_prefix", "AnimateDiff"), kind, ext, image, plain=True)
            place = posixpath.join(f"/opt/ComfyUI/{kind}", saved["subfolder"], saved["filename"])
            saved |= {"format": fmt, "frame_rate": inputs.get("frame_rate", 8.0), "workflow": "", "fullpath": place}
            return outputs, {"gifs": [saved]}
        if class_type in ("SaveAudio", "SaveAudioMP3", "SaveAudioOpus"):
            ext = {"SaveAudio": "flac", "SaveAudioMP3": "mp3", "SaveAudioOpus": "opus"}[class_type]
            return outputs, {
                "audio": self._save_media(inputs.get("filename_prefix", "audio/ComfyUI"), "output", ext, audio=True)
            }
        if class_type == "PreviewAudio":
            return outputs, {"audio": self._save_media(self._temp_prefix(), "temp", "flac", audio=True)}
        if class_type == "PreviewAny":
            return outputs, {"text": [_preview_any_text(inputs.get("source"))]}
        if class_type == "SaveImageWebsocket":
            img = image or _Img(*self.image_size, 1, (128, 128, 128))
            png = make_png(img.width, img.height, img.color)
            for index in range(img.batch):
                await run.progress(node_id, index, img.batch, preview=png)
            return outputs, None
        if class_type == "GetImageSize":
            img = image or _Img(*self.image_size, 1, (128, 128, 128))
            text = f"width: {img.width}, height: {img.height}\n batch size: {img.batch}"
            node_bytes = node_id.encode("utf-8")
            await self._send_raw(struct.pack(">II", 3, len(node_bytes)) + node_bytes + text.encode("utf-8"), None)
            return outputs, None
        return outputs, None

    def _compute_outputs(self, node_id: str, class_type: str, inputs: dict[str, Any], signature: Any) -> list[Any]:
        out_types = self._object_info.get(class_type, {}).get("output", [])
        upstream = next((v for v in inputs.values() if isinstance(v, _Img)), None)
        if class_type == "GetImageSize":
            img = upstream or _Img(*self.image_size, 1, (0, 0, 0))
            return [img.width, img.height, img.batch]
        if class_type in PRIMITIVES:
            return [inputs.get("value")]
        image = self._image_geometry(class_type, inputs, upstream, signature)
        return [image if t in IMAGE_TYPES else _Opaque(str(t), node_id) for t in out_types]

    def _image_geometry(self, class_type: str, inputs: dict[str, Any], upstream: _Img | None, signature: Any) -> _Img:
        seed = zlib.crc32(repr(signature).encode("utf-8"))
        color = upstream.color if upstream else ((seed >> 16) & 255, (seed >> 8) & 255, seed & 255)
        if class_type == "EmptyImage" and isinstance(inputs.get("color"), int):
            c = inputs["color"]
            color = ((c >> 16) & 255, (c >> 8) & 255, c & 255)
        width, height = upstream and upstream.width, upstream and upstream.height
        batch = upstream.batch if upstream else 1
        if class_type in FILE_VALIDATED and isinstance(inputs.get(FILE_VALIDATED[class_type][0]), str):
            size = _png_size(self._lookup_input(inputs[FILE_VALIDATED[class_type][0]]) or b"")
            if size:
                width, height = size
        w_in, h_in = inputs.get("width"), inputs.get("height")
        if isinstance(w_in, int) and isinstance(h_in, int) and not isinstance(w_in, bool):
            if w_in > 0:
                width = w_in
            if h_in > 0:
                height = h_in
        if class_type == "ImageScaleBy" and upstream and isinstance(inputs.get("scale_by"), (int, float)):
            width = round(upstream.width * inputs["scale_by"])
            height = round(upstream.height * inputs["scale_by"])
        if isinstance(inputs.get("batch_size"), int) and inputs["batch_size"] > 0:
            batch = inputs["batch_size"]
        default_w, default_h = self.image_size
        return _Img(int(width or default_w), int(height or default_h), int(batch), color)

    @staticmethod
    def _temp_prefix() -> str:
        return "ComfyUI_temp_" + "".join(random.choice(TEMP_ALPHABET) for _ in range(5))

    def _save_path(self, prefix: str, kind: str, width: int, height: int) -> tuple[str, str, int]:
        """folder_paths.get_save_image_path: (subfolder, filename, first free counter)."""
        if "%" in prefix:
            now = time.localtime()
            for token, value in (
                ("%width%", str(width)),
                ("%height%", str(height)),
                ("%year%", str(now.tm_year)),
                ("%month%", f"{now.tm_mon:02}"),
                ("%day%", f"{now.tm_mday:02}"),
                ("%hour%", f"{now.tm_hour:02}"),
                ("%minute%", f"{now.tm_min:02}"),
                ("%second%", f"{now.tm_sec:02}"),
            ):
                prefix = prefix.replace(token, value)
        norm = posixpath.normpath(prefix) if prefix else "."
        subfolder, filename = posixpath.split(norm)
        if subfolder in (".", ""):
            subfolder = ""
        if filename == ".":
            filename = ""
        prefix_len = len(filename)
        best = 0
        for kind_, sub, name in self.files:
            if kind_ != kind or sub != subfolder:
                continue
            if name[:prefix_len].lower() != filename.lower() or name[prefix_len : prefix_len + 1] != "_":
                continue
            digits = re.match(r"\d+", name[prefix_len + 1 :])  # both <prefix>_00001_.png and <prefix>_00001.flac
            best = max(best, int(digits.group()) if digits else 0)
        return subfolder, filename, best + 1

    def _save_images(
        self, image: _Img | None, prefix: Any, kind: str, pnginfo: dict[str, str], *, single: bool = False
    ) -> list[dict[str, Any]]:
        img = image or _Img(*self.image_size, 1, (128, 128, 128))
        subfolder, filename, counter = self._save_path(str(prefix), kind, img.width, img.height)
        results = []
        for batch_number in range(1 if single else img.batch):
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            self.files[(kind, subfolder, name)] = make_png(
                img.width, img.height, img.color, text=pnginfo, padding=self.output_padding
            )
            item: dict[str, Any] = {"filename": name, "subfolder": subfolder, "type": kind}
            if self.profile.output_metadata:
                item["metadata"] = {"kind": "image", "width": img.width, "height": img.height}
            results.append(item)
            counter += 1
        return results

    def _save_media(
        self, prefix: Any, kind: str, ext: str, image: _Img | None = None, *, audio: bool = False, plain: bool = False
    ) -> list[dict[str, Any]]:
        width, height = (image.width, image.height) if image else self.image_size
        subfolder, filename, counter = self._save_path(str(prefix), kind, width, height)
        plain = plain or (audio and self.profile.plain_audio_names)  # newer audio savers drop the trailing _
        name = f"{filename.replace('%batch_num%', '0')}_{counter:05}{'' if plain else '_'}.{ext}"
        self.files[(kind, subfolder, name)] = self.media.get(ext) or _fake_media(ext, self.output_padding)
        return [{"filename": name, "subfolder": subfolder, "type": kind}]


# --------------------------------------------------------------------------- execution helpers


class _PromptRun:
    """Per-prompt execution state: messages for history, progress_state, outputs and ui results."""

    def __init__(self, server: FakeComfyUI, item: _QueueItem) -> None:
        self.server = server
        self.item = item
        self.prompt = item.prompt
        self.prompt_id = item.prompt_id
        self.extra_data = item.extra_data
        self.client_id: str | None = item.extra_data.get("client_id")
        self.messages: list[list[Any]] = []
        self.progress_nodes: dict[str, dict[str, Any]] = {}
        self.values: dict[str, list[Any]] = {}
        self.ui_outputs: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self.executed: list[str] = []

    async def send(self, event: str, data: Any) -> None:
        await self.server._send_json(event, data, self.client_id)

    async def add_message(self, event: str, data: dict[str, Any], *, broadcast: bool = False) -> None:
        """PromptExecutor.add_message: kept for history; sent to the submitter (or to all if broadcast)."""
        data = {**data, "timestamp": _now_ms()}
        self.messages.append([event, data])
        if self.client_id is not None or broadcast:
            await self.send(event, data)

    async def send_progress_state(self) -> None:
        nodes = {
            node_id: {"value": p["value"], "max": p["max"], "state": p["state"], "node_id": node_id,
                      "prompt_id": self.prompt_id, "display_node_id": node_id, "parent_node_id": None,
                      "real_node_id": node_id}
            for node_id, p in self.progress_nodes.items()
        }  # fmt: skip
        await self.send("progress_state", {"prompt_id": self.prompt_id, "nodes": nodes})

    async def start_node(self, node_id: str) -> None:
        self.progress_nodes[node_id] = {"value": 0.0, "max": 1.0, "state": "running"}
        await self.send_progress_state()
        if self.client_id is not None:
            self.server._last_node_id = node_id
            await self.send("executing", {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id})

    async def finish_progress(self, node_id: str) -> None:
        entry = self.progress_nodes.setdefault(node_id, {"value": 0, "max": 1, "state": "pending"})
        entry["state"] = "finished"
        entry["value"] = entry["max"]
        await self.send_progress_state()

    async def progress(self, node_id: str, value: int, total: int, preview: bytes | None = None) -> None:
        """The ProgressBar hook: interrupt check, progress_state, previews and `progress`."""
        server = self.server
        if server._interrupt:
            raise _Interrupted
        entry = self.progress_nodes.setdefault(node_id, {"value": 0, "max": 1, "state": "running"})
        entry.update({"value": value, "max": total, "state": "running"})
        await self.send_progress_state()
        modern = server._supports_metadata(self.client_id)
        jpeg = preview is not None and preview.startswith(b"\xff\xd8")  # sampler previews; else PNG
        if preview is not None and modern:
            image_type = "image/jpeg" if jpeg else "image/png"
            metadata = {"node_id": node_id, "prompt_id": self.prompt_id, "display_node_id": node_id,
                        "parent_node_id": None, "real_node_id": node_id, "image_type": image_type}  # fmt: skip
            meta_bytes = json.dumps(metadata).encode("utf-8")
            await server._send_raw(struct.pack(">II", 4, len(meta_bytes)) + meta_bytes + preview, self.client_id)
        await self.send("progress", {"value": value, "max": total, "prompt_id": self.prompt_id, "node": node_id})
        if preview is not None and not modern:  # image format 1 = JPEG, 2 = PNG (protocol notes §4.3)
            await server._send_raw(struct.pack(">II", 1, 1 if jpeg else 2) + preview, self.client_id)

    async def node_executed(self, node_id: str, ui: dict[str, Any] | None, *, always_send: bool = False) -> None:
        """`executed` for a node with a ui result (cached output nodes always get one) + history outputs."""
        if (ui is not None or always_send) and self.client_id is not None:
            data = {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": self.prompt_id}
            await self.send("executed", data)
        if ui is not None:
            self.ui_outputs[node_id] = copy.deepcopy(ui)
            self.meta[node_id] = {"node_id": node_id, "display_node": node_id, "parent_node": None,
                                  "real_node_id": node_id}  # fmt: skip

    def resolve_inputs(self, node_id: str) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        for name, value in self.prompt[node_id].get("inputs", {}).items():
            if _is_link(value):
                upstream = self.values.get(value[0], [])
                index = value[1]
                resolved[name] = upstream[index] if isinstance(index, int) and 0 <= index < len(upstream) else None
            else:
                resolved[name] = value
        return resolved

    async def report_error(self, node_id: str, exception_type: str, message: str, inputs: dict[str, Any]) -> None:
        data = {
            "prompt_id": self.prompt_id, "node_id": node_id, "node_type": self.prompt[node_id]["class_type"],
            "executed": list(self.executed), "exception_message": message, "exception_type": exception_type,
            "traceback": list(EXECUTION_TRACEBACK),
            "current_inputs": {name: [_format_value(value)] for name, value in inputs.items()},
            "current_outputs": list(self.prompt),
        }  # fmt: skip
        await self.add_message("execution_error", data)

    def history_entry(self, success: bool) -> dict[str, Any]:
        extra = copy.deepcopy(self.extra_data)
        for key in SENSITIVE_EXTRA_DATA_KEYS:
            extra.pop(key, None)
        entry: dict[str, Any] = {
            "prompt": [self.item.number, self.prompt_id, copy.deepcopy(self.prompt), extra, list(self.item.outputs)],
            "outputs": {},
            "status": {"status_str": "success" if success else "error", "completed": success,
                       "messages": self.messages},
        }  # fmt: skip
        entry.update({"outputs": self.ui_outputs, "meta": self.meta})
        return entry


class _ExecutionPlan:
    """comfy_execution.graph.ExecutionList, reduced to what the fake needs."""

    def __init__(
        self,
        prompt: dict[str, Any],
        outputs: list[str],
        is_cached: Callable[[str], bool],
        is_output: Callable[[str], bool],
    ) -> None:
        self.prompt = prompt
        self.is_cached = is_cached
        self.is_output = is_output
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, bool]] = {}
        for output in outputs:
            self._add(output)

    def _add(self, start: str) -> None:
        stack = [start]
        links: list[tuple[str, str]] = []
        while stack:
            node_id = stack.pop()
            if node_id in self.pending:
                continue
            self.pending[node_id] = True
            self.block_count.setdefault(node_id, 0)
            self.blocking.setdefault(node_id, {})
            for value in self.prompt[node_id].get("inputs", {}).values():
                if _is_link(value) and value[0] in self.prompt:
                    source = value[0]
                    if not self.is_cached(source):
                        stack.append(source)
                        links.append((source, node_id))
        for source, target in links:
            self.blocking.setdefault(source, {})
            if target not in self.blocking[source]:
                self.blocking[source][target] = True
                self.block_count[target] = self.block_count.get(target, 0) + 1

    def empty(self) -> bool:
        return not self.pending

    def first_pending(self) -> str:
        return next(iter(self.pending))

    def next_node(self) -> str | None:
        available = [node_id for node_id in self.pending if self.block_count.get(node_id, 0) == 0]
        if not available:
            return None
        for node_id in available:
            if self.is_output(node_id):
                return node_id
        for node_id in available:
            if any(self.is_output(b) for b in self.blocking.get(node_id, {})):
                return node_id
        for node_id in available:
            for b in self.blocking.get(node_id, {}):
                if any(self.is_output(b2) for b2 in self.blocking.get(b, {})):
                    return node_id
        return available[0]

    def complete(self, node_id: str) -> None:
        self.pending.pop(node_id, None)
        for target in self.blocking.pop(node_id, {}):
            self.block_count[target] -= 1
