"""The JSON ComfyUI sends and receives, and the checks every answer passes before the bot uses it.

A custom node, a proxy or a ComfyUI version the bot has not seen can answer anything, so each parse_*
function below either returns a complete, well-typed value or raises UnreadableAnswer naming the
server and the route. Unknown extra keys are ignored (newer versions add `metadata`, `id`, ...).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, NoReturn, NotRequired, TypedDict

from core.comfyui.object_info import combo_options, input_spec, listed_options
from core.errors import UnreadableAnswer

# An API-format workflow: {node_id: {"class_type", "inputs", "_meta"?}}
Prompt = dict[str, dict[str, Any]]

# Output keys whose items are files on the server (video comes as `images` with `animated` on newer versions).
FILE_KEYS = ("images", "gifs", "videos", "audio")
MAX_FILENAME = 255
MAX_VERSION = 40

# Binary websocket frame types (protocol doc §4.3).
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4


class FileRef(TypedDict):
    filename: str
    subfolder: str
    type: str  # "output" is downloaded; "temp" (previews), "input" and anything else are not


class NodeErrorItem(TypedDict):
    type: str
    message: str
    details: str
    extra_info: dict[str, Any]


class NodeErrors(TypedDict):
    errors: list[NodeErrorItem]
    dependent_outputs: list[str]
    class_type: str


class PromptError(TypedDict):
    type: str
    message: str
    details: str
    extra_info: dict[str, Any]


class HistoryStatus(TypedDict):
    status_str: str | None
    completed: bool
    messages: list[tuple[str, dict[str, Any]]]


class NodeOutput(TypedDict):
    files: dict[str, list[FileRef]]  # by output key (images, gifs, videos, audio)
    text: list[str]


class HistoryEntry(TypedDict):
    outputs: dict[str, NodeOutput]
    status: HistoryStatus
    meta: NotRequired[dict[str, Any]]


class WsMessage(TypedDict):
    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PromptReply:
    """POST /prompt's answer: the queue number when accepted, the reasons when (partly) refused."""

    number: float | None
    error: PromptError | None
    node_errors: dict[str, NodeErrors]


@dataclass(frozen=True, slots=True)
class QueueState:
    """Prompt ids on the server: the running ones and the pending ones in execution order."""

    running: tuple[str, ...]
    pending: tuple[str, ...]

    def position(self, prompt_id: str) -> int | None:
        """0 when running, 1.. for the place in line, None when not queued at all."""
        if prompt_id in self.running:
            return 0
        if prompt_id in self.pending:
            return self.pending.index(prompt_id) + 1
        return None


@dataclass(frozen=True, slots=True)
class PreviewFrame:
    """A binary websocket frame carrying an image: its prompt and node when the server says so."""

    prompt_id: str | None
    node_id: str | None
    image: bytes
    with_metadata: bool


class _Check:
    """Checks one answer from one route; every failure names the server, the route and the place."""

    def __init__(self, server: str, route: str) -> None:
        self.server = server
        self.route = route

    def fail(self, where: str, problem: str) -> NoReturn:
        raise UnreadableAnswer(self.server, self.route, f"{where}: {problem}"[:300])

    def obj(self, value: Any, where: str, *, missing_ok: bool = False) -> dict[str, Any]:
        if value is None and missing_ok:
            return {}
        if not isinstance(value, dict):
            self.fail(where, f"expected an object, got {_kind(value)}")
        return value

    def arr(self, value: Any, where: str, *, missing_ok: bool = False) -> list[Any]:
        if value is None and missing_ok:
            return []
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {_kind(value)}")
        return value

    def text(self, value: Any, where: str, *, default: str | None = None) -> str:
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            self.fail(where, f"expected a string, got {_kind(value)}")
        return value

    def node_id(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value)
        self.fail(where, f"expected a node id, got {_kind(value)}")

    def number(self, value: Any, where: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"expected a number, got {_kind(value)}")
        return float(value)

    def count(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"expected an integer, got {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _json(text: str | bytes, check: _Check) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        check.fail("body", f"not JSON: {text[:100]!r}")


def load_json(body: str | bytes, server: str, route: str) -> Any:
    """Decode a body that must be JSON."""
    return _json(body, _Check(server, route))


# -- POST /prompt ----------------------------------------------------------------------------------


def parse_prompt_reply(data: Any, server: str) -> PromptReply:
    """Check POST /prompt's body (200 or 400)."""
    check = _Check(server, "POST /prompt")
    body = check.obj(data, "body")
    raw_errors = body.get("node_errors")
    node_errors: dict[str, NodeErrors] = {}
    if raw_errors not in (None, []):  # some versions send [] for "none"
        for node_id, raw in check.obj(raw_errors, "node_errors").items():
            where = f"node_errors.{node_id}"
            entry = check.obj(raw, where)
            node_errors[node_id] = {
                "errors": [
                    _error_item(item, f"{where}.errors[{i}]", check)
                    for i, item in enumerate(check.arr(entry.get("errors"), f"{where}.errors", missing_ok=True))
                ],
                "dependent_outputs": [
                    str(check.node_id(o, f"{where}.dependent_outputs"))
                    for o in check.arr(entry.get("dependent_outputs"), f"{where}.dependent_outputs", missing_ok=True)
                ],
                "class_type": check.text(entry.get("class_type"), f"{where}.class_type", default=""),
            }
    error = body.get("error")
    if error is None:
        parsed_error = None
    elif isinstance(error, str):
        parsed_error = PromptError(type="", message=error, details="", extra_info={})
    else:
        parsed_error = _error_item(error, "error", check)
    return PromptReply(check.number(body.get("number"), "number"), parsed_error, node_errors)


def _error_item(value: Any, where: str, check: _Check) -> NodeErrorItem:
    item = check.obj(value, where)
    return {
        "type": check.text(item.get("type"), f"{where}.type", default=""),  # any value: newer versions add types
        "message": check.text(item.get("message"), f"{where}.message", default=""),
        "details": check.text(item.get("details"), f"{where}.details", default=""),
        "extra_info": check.obj(item.get("extra_info"), f"{where}.extra_info", missing_ok=True),
    }


# -- GET /history/{id} -----------------------------------------------------------------------------


def parse_history(data: Any, prompt_id: str, server: str) -> HistoryEntry | None:
    """Check GET /history/{id}: the entry of `prompt_id`, or None while the server has none."""
    check = _Check(server, "GET /history")
    entry = check.obj(data, "body").get(prompt_id)
    if entry is None or entry == {}:
        return None
    entry = check.obj(entry, prompt_id)
    outputs: dict[str, NodeOutput] = {}
    for node_id, output in check.obj(entry.get("outputs"), "outputs", missing_ok=True).items():
        outputs[node_id] = _node_output(output, f"outputs.{node_id}", check)
    status = check.obj(entry.get("status"), "status", missing_ok=True)
    status_str = status.get("status_str")
    parsed: HistoryEntry = {
        "outputs": outputs,
        "status": {
            "status_str": None if status_str is None else check.text(status_str, "status.status_str"),
            "completed": status.get("completed") is True,
            "messages": [
                _status_message(m, f"status.messages[{i}]", check)
                for i, m in enumerate(check.arr(status.get("messages"), "status.messages", missing_ok=True))
            ],
        },
    }
    return parsed


def parse_node_output(value: Any, node_id: str, server: str) -> NodeOutput:
    """Check the `output` of an `executed` websocket message: the shape of that node's entry in history."""
    return _node_output(value, f"executed.{node_id}.output", _Check(server, "websocket message"))


def succeeded(outputs: dict[str, NodeOutput]) -> HistoryEntry:
    """The history entry of a prompt that succeeded with `outputs`, as the websocket told them."""
    return {"outputs": outputs, "status": {"status_str": "success", "completed": True, "messages": []}}


def _node_output(value: Any, where: str, check: _Check) -> NodeOutput:
    output = check.obj(value, where)
    files: dict[str, list[FileRef]] = {}
    for key in FILE_KEYS:
        items = check.arr(output.get(key), f"{where}.{key}", missing_ok=True)
        files[key] = [_file_ref(item, f"{where}.{key}[{i}]", check) for i, item in enumerate(items)]
    text = output.get("text")
    if isinstance(text, str):
        text = [text]
    lines = []
    for i, line in enumerate(check.arr(text, f"{where}.text", missing_ok=True)):
        if isinstance(line, bool) or not isinstance(line, str | int | float):
            check.fail(f"{where}.text[{i}]", f"expected text, got {_kind(line)}")
        lines.append(str(line))
    return {"files": files, "text": lines}


def _file_ref(value: Any, where: str, check: _Check) -> FileRef:
    item = check.obj(value, where)
    name = check.text(item.get("filename"), f"{where}.filename")
    # The name becomes a local file name (bot.py run --out): no paths, nothing hidden in it.
    if not _plain_name(name):
        check.fail(f"{where}.filename", f"not a plain file name: {name[:80]!r}")
    return {
        "filename": name,
        "subfolder": check.text(item.get("subfolder"), f"{where}.subfolder", default=""),
        "type": check.text(item.get("type"), f"{where}.type", default=""),
    }


def _plain_name(name: str) -> bool:
    """Whether a server's file name is safe as a local one: no path, not empty, `.` or `..`, not overlong."""
    return bool(name) and name not in (".", "..") and len(name) <= MAX_FILENAME and not any(c in name for c in "/\\\0")


def _status_message(value: Any, where: str, check: _Check) -> tuple[str, dict[str, Any]]:
    pair = check.arr(value, where)
    if len(pair) != 2:
        check.fail(where, f"expected [type, data], got {len(pair)} item(s)")
    kind = check.text(pair[0], f"{where}[0]")
    data = dict(check.obj(pair[1], f"{where}[1]"))
    if kind == "execution_error":
        data["node_id"] = check.node_id(data.get("node_id"), f"{where}.node_id")
        data["node_type"] = check.text(data.get("node_type"), f"{where}.node_type", default="") or None
        data["exception_message"] = check.text(data.get("exception_message"), f"{where}.exception_message", default="")
        data["exception_type"] = check.text(data.get("exception_type"), f"{where}.exception_type", default="")
        trace = check.arr(data.get("traceback"), f"{where}.traceback", missing_ok=True)
        data["traceback"] = [check.text(t, f"{where}.traceback") for t in trace]
    elif kind == "execution_interrupted":
        data["node_id"] = check.node_id(data.get("node_id"), f"{where}.node_id")
    return kind, data


# -- GET /queue, /api/jobs -------------------------------------------------------------------------


def parse_queue(data: Any, server: str) -> QueueState:
    """Check GET /queue: running ids, and pending ids in execution order (the list is a raw heap)."""
    check = _Check(server, "GET /queue")
    body = check.obj(data, "body")

    def items(key: str) -> list[tuple[float, str]]:
        found = []
        for i, raw in enumerate(check.arr(body.get(key), key, missing_ok=True)):
            item = check.arr(raw, f"{key}[{i}]")
            if len(item) < 2:
                check.fail(f"{key}[{i}]", "expected [number, prompt_id, ...]")
            found.append((check.number(item[0], f"{key}[{i}][0]") or 0.0, check.text(item[1], f"{key}[{i}][1]")))
        return found

    running = tuple(prompt_id for _, prompt_id in items("queue_running"))
    return QueueState(running, tuple(prompt_id for _, prompt_id in sorted(items("queue_pending"))))


def parse_job(data: Any, server: str) -> str:
    """Check GET /api/jobs/{id}: the job's status (pending, in_progress, completed, failed, cancelled or newer)."""
    check = _Check(server, "GET /api/jobs")
    return check.text(check.obj(data, "body").get("status"), "status")


def parse_jobs_page(data: Any, server: str) -> None:
    """Check GET /api/jobs: a list of jobs, each with a status."""
    check = _Check(server, "GET /api/jobs")
    jobs = check.arr(check.obj(data, "body").get("jobs"), "jobs")
    for i, job in enumerate(jobs):
        check.text(check.obj(job, f"jobs[{i}]").get("status"), f"jobs[{i}].status")


# -- other routes ----------------------------------------------------------------------------------


def parse_system_stats(data: Any, server: str) -> str | None:
    """Check GET /system_stats: the ComfyUI version, None when the server does not say."""
    check = _Check(server, "GET /system_stats")
    system = check.obj(check.obj(data, "body").get("system"), "system", missing_ok=True)
    version = system.get("comfyui_version")
    return None if version is None else check.text(version, "system.comfyui_version")[:MAX_VERSION]


def parse_input_options(data: Any, class_type: str, input_name: str, server: str) -> list[str]:
    """Check GET /object_info/{class}: the values one combo input accepts, [] when it has none."""
    check = _Check(server, "GET /object_info")
    node = check.obj(check.obj(data, "body").get(class_type), class_type, missing_ok=True)
    inputs = check.obj(node.get("input"), f"{class_type}.input", missing_ok=True)
    for section in ("required", "optional"):
        check.obj(inputs.get(section), f"{class_type}.input.{section}", missing_ok=True)
    spec = input_spec(data, class_type, input_name)
    if spec is None:
        return []
    for value in listed_options(check.arr(spec, f"{class_type}.input.{input_name}")) or []:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            check.fail(f"{class_type}.{input_name}", f"option {_kind(value)}")
    return combo_options(spec) or []


def parse_object_info(data: Any, server: str) -> dict[str, Any]:
    """Check GET /object_info: an object of node classes, each an object."""
    check = _Check(server, "GET /object_info")
    for name, info in check.obj(data, "body").items():
        check.obj(info, name)
    return data


def parse_upload(data: Any, server: str) -> str:
    """Check POST /upload/image: the value a LoadImage/LoadAudio input takes ("subfolder/name")."""
    check = _Check(server, "POST /upload/image")
    body = check.obj(data, "body")
    name = check.text(body.get("name"), "name")
    if not _plain_name(name):
        check.fail("name", f"not a plain file name: {name[:80]!r}")
    subfolder = check.text(body.get("subfolder"), "subfolder", default="")
    return f"{subfolder}/{name}" if subfolder else name


# -- websocket ---------------------------------------------------------------------------------------

PROMPT_EVENTS = frozenset(
    {
        "execution_start",
        "execution_cached",
        "executing",
        "executed",
        "progress",
        "execution_success",
        "execution_error",
        "execution_interrupted",
    }
)


def parse_ws_message(text: str, server: str) -> WsMessage:
    """Check one JSON websocket frame; the fields the bot reads of prompt events are typed and node ids strings."""
    check = _Check(server, "websocket message")
    body = check.obj(_json(text, check), "frame")
    kind = check.text(body.get("type"), "type")
    data = dict(check.obj(body.get("data"), "data", missing_ok=True))
    if kind in PROMPT_EVENTS:
        if data.get("prompt_id") is not None:
            data["prompt_id"] = check.text(data["prompt_id"], f"{kind}.prompt_id")
        data["node"] = check.node_id(data.get("node"), f"{kind}.node")
        data["value"] = check.count(data.get("value"), f"{kind}.value")
        data["max"] = check.count(data.get("max"), f"{kind}.max")
    return {"type": kind, "data": data}


def parse_binary_frame(frame: bytes, server: str) -> PreviewFrame | None:
    """Check one binary websocket frame: an image preview, or None for the kinds the bot does not use."""
    check = _Check(server, "websocket binary frame")
    if len(frame) < 8:
        check.fail("header", f"{len(frame)} byte(s)")
    event_type, second = struct.unpack(">II", frame[:8])
    if event_type == PREVIEW_IMAGE:
        return PreviewFrame(None, None, bytes(frame[8:]), with_metadata=False)
    if event_type != PREVIEW_IMAGE_WITH_METADATA:
        return None
    if 8 + second > len(frame):
        check.fail("metadata", f"length {second} past the end of a {len(frame)}-byte frame")
    meta = check.obj(_json(frame[8 : 8 + second], check), "metadata")
    prompt_id = meta.get("prompt_id")
    return PreviewFrame(
        None if prompt_id is None else check.text(prompt_id, "metadata.prompt_id"),
        check.node_id(meta.get("node_id"), "metadata.node_id"),
        bytes(frame[8 + second :]),
        with_metadata=True,
    )
