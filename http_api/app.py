"""The HTTP API front (aiohttp.web): seed 004's REST service over the same engine and queue as Discord.

Every route but `/openapi.json` wants `Authorization: Bearer <token>` from HTTP_API_TOKENS; each token is a
member for the queue. Errors are `{"error": {"code", "message"}}` with the fitting status, in Japanese or
Chinese when Accept-Language asks for it.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from core.config import ApiToken
from core.errors import BotError, InvalidInput
from core.i18n import Text, localize
from core.jobs.engine import Engine
from core.jobs.limits import TOO_MANY_PENDING, Reservation
from core.jobs.store import JobRecord
from core.text import cap
from core.workflows import FILE_TYPES, Param, Workflow
from core.workflows.model import FILE_TOO_LARGE, MAX_TEXT_LENGTH, MAX_UPLOAD_BYTES, InputFile
from http_api.jobs import ApiJob, ApiJobs, api_user_id, safe_file
from http_api.openapi import document
from http_api.webhooks import NOT_HTTP

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY = "Idempotency-Key"
_KEY = re.compile(r"[\x21-\x7e]{1,200}", re.ASCII)
MAX_BODY = 1024 * 1024  # bytes of a JSON body or of a multipart body's job part; files have their own cap
API_TOO_MANY_PENDING = (
    "You already have {pending} job(s) waiting or running; the limit is {limit}. "
    "Please wait for one to finish, or cancel one with DELETE /jobs/{{id}}."
)
MB = 1024 * 1024
UPLOAD_CHUNK = 64 * 1024  # bytes of a file part read at a time
JOB_PART = "job"
NO_JOB_PART = (
    f"A multipart body must start with a part named {JOB_PART} holding the job's JSON "
    '({"workflow": NAME, "params": {...}}), then one part per file option.'
)
MAX_HISTORY_PAGE = 100
MAX_ERROR_TEXT = 1000
LANGUAGES = {"ja": "ja", "zh-cn": "zh-CN", "zh": "zh-CN", "zh-hans": "zh-CN"}  # Accept-Language tags we speak
# Output node classes and the kind of result they make, for GET /workflows
OUTPUT_KINDS = (
    ("video", ("SaveVideo", "SaveWEBM", "SaveAnimatedWEBP", "SaveAnimatedPNG", "VHS_VideoCombine")),
    ("audio", ("SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "PreviewAudio")),
    ("image", ("SaveImage", "PreviewImage")),
    ("text", ("PreviewAny", "ShowText|pysssss", "SaveText")),
)

OPENAPI_PATH = "/openapi.json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OwnedHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]  # with the token's name


@dataclass(frozen=True, slots=True)
class Api:
    """What the routes work with: the engine, the API's jobs, the commands in use now and the tokens."""

    engine: Engine
    jobs: ApiJobs
    workflows: Callable[[], Mapping[str, Workflow]]  # they change on /reload
    tokens: tuple[ApiToken, ...]


API = web.AppKey("api", Api)


class ApiError(Exception):
    """An answer other than success: the HTTP status, a stable code for programs and a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": cap(message, MAX_ERROR_TEXT)}}


def make_app(
    engine: Engine,
    jobs: ApiJobs,
    workflows: Callable[[], Mapping[str, Workflow]],
    tokens: Sequence[ApiToken],
) -> web.Application:
    """The API application; `workflows` gives the commands in use now (they change on /reload)."""
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    app[API] = Api(engine, jobs, workflows, tuple(tokens))
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, _authenticated(handler))
    app.router.add_get(OPENAPI_PATH, openapi)
    return app


def _language(request: web.Request) -> str | None:
    """The first language of Accept-Language that the bot speaks besides English, if any."""
    for part in request.headers.get("Accept-Language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("en"):
            return None
        if tag in LANGUAGES:
            return LANGUAGES[tag]
    return None


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as {"error": {"code", "message"}}, with aiohttp's own (404, 405, 413) too."""
    try:
        return await handler(request)
    except ApiError as exc:
        message = localize(exc.message, _language(request))
        return web.json_response(error_body(exc.code, message), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        code = codes.get(exc.status, "http_error")
        return web.json_response(error_body(code, exc.reason), status=exc.status)


def _authenticated(handler: OwnedHandler) -> Handler:
    """Let through only requests with a known bearer token, handing the handler the token's name."""

    async def checked(request: web.Request) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "unauthorized", "Send your API token as: Authorization: Bearer <token>.")
        name = _token_name(request.app[API].tokens, given.strip())
        if name is None:
            raise ApiError(401, "unauthorized", "This API token is not valid.")
        return await handler(request, name)

    return checked


def _token_name(tokens: Sequence[ApiToken], given: str) -> str | None:
    """The name of the token `given` is, comparing with every token in constant time."""
    found = None
    for token in tokens:  # no early exit: the time taken says nothing about which token is closest
        if hmac.compare_digest(token.token.encode(), given.encode()):
            found = token.name
    return found


# Routes


async def openapi(request: web.Request) -> web.Response:
    """GET /openapi.json: the OpenAPI document of these routes (no token needed)."""
    return web.json_response(document())


async def list_workflows(request: web.Request, owner: str) -> web.Response:
    """GET /workflows: every command with its options, their types and limits."""
    workflows = request.app[API].workflows()
    return web.json_response({"workflows": [describe_workflow(w) for w in workflows.values()]})


def describe_workflow(workflow: Workflow) -> dict[str, Any]:
    return {
        "name": workflow.name,
        "description": workflow.description,
        "kind": workflow_kind(workflow),
        "options": [describe_param(p) for p in workflow.params],
        "nodes": describe_nodes(workflow),
    }


def workflow_kind(workflow: Workflow) -> str:
    """What the workflow makes, read from its output nodes: video, audio, image or text (else "other")."""
    classes = {node.get("class_type") for node in workflow.graph.values() if isinstance(node, dict)}
    return next((kind for kind, names in OUTPUT_KINDS if classes.intersection(names)), "other")


def describe_param(param: Param) -> dict[str, Any]:
    described: dict[str, Any] = {"name": param.name, "type": param.type.value, "description": param.description}
    described["required"] = param.required
    for key, value in (
        ("default", param.default),
        ("min", param.min),
        ("max", param.max),
        ("step", param.step),
        ("max_length", param.max_length),
    ):
        if value is not None:
            described[key] = value
    if param.choices:
        described["choices"] = list(param.choices)
    if param.choices_from:
        described["choices_from"] = param.choices_from
    return described


def describe_nodes(workflow: Workflow) -> dict[str, Any]:
    """The node inputs a client may set in "nodes", with the workflow's own value of each."""
    return {str(t): workflow.graph[t.node_id]["inputs"][t.input] for t in workflow.raw_inputs}


async def submit_job(request: web.Request, owner: str) -> web.Response:
    """POST /jobs {"workflow": NAME, "params": {...}}: 202 with the job, which runs in the background.

    With files: multipart/form-data, a part `job` holding that JSON first, then one part per file option.
    """
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is not None and not _KEY.fullmatch(key):
        raise ApiError(400, "bad_request", f"{IDEMPOTENCY_KEY} must be 1 to 200 visible ASCII characters.")
    if request.content_type == "multipart/form-data":
        return await _submit_with_files(request, owner, key)
    body = await _json_object(request)
    return await _submit(request, owner, key, body, _workflow(request, body), files={}, reservation=None)


def limit_error(exc: InvalidInput) -> ApiError:
    """429 for a limit; a client of the API cancels with DELETE, not with the Discord command the bot names."""
    message = exc.user_message
    if isinstance(message, Text) and message.template == TOO_MANY_PENDING.template:
        message = API_TOO_MANY_PENDING.format(**message.values)
    return ApiError(429, "limit", message)


async def _submit_with_files(request: web.Request, owner: str, key: str | None) -> web.Response:
    """POST /jobs as multipart: the body read part by part, each file under its cap, in a place reserved first."""
    jobs = request.app[API].jobs
    reservation = None
    try:
        # Before the first await: concurrent uploads of one token count against its limits, and one over them
        # is refused before a byte of its files is read.
        reservation = jobs.reserve(owner)
    except InvalidInput as exc:
        if key is None:
            raise limit_error(exc) from None
        # With a key, the job this key submitted before is the answer, if there is one: submit_once looks.
    try:
        body, workflow, files = await _read_multipart(request)
        return await _submit(request, owner, key, body, workflow, files=files, reservation=reservation)
    finally:
        if reservation is not None and reservation.job_id not in jobs.live:  # no job took the place over
            reservation.release()


async def _read_multipart(request: web.Request) -> tuple[dict[str, Any], Workflow, dict[str, InputFile]]:
    """The job part's JSON, its workflow and its files; 400 for a body aiohttp cannot read (cut off, no boundary)."""
    try:
        reader = await request.multipart()
        part = await reader.next()
        if not isinstance(part, BodyPartReader) or part.name != JOB_PART:
            raise ApiError(400, "bad_request", NO_JOB_PART)
        job_part_too_large = f"The {JOB_PART} part must be at most {MAX_BODY // 1024} KB."
        body = _json_text(await _read_capped(part, MAX_BODY, job_part_too_large))
        workflow = _workflow(request, body)
        return body, workflow, await _file_parts(reader, workflow)
    except (ValueError, HttpProcessingError) as exc:  # a malformed part header, or a body cut short
        # aiohttp's words, e.g. "boundary missed for Content-Type: multipart/form-data" or "Reading after EOF"
        log.info("unreadable multipart body: %s", cap(str(exc), 200))
        raise ApiError(400, "bad_request", f"The multipart body cannot be read: {cap(str(exc), 200)}.") from None


async def _file_parts(reader: MultipartReader, workflow: Workflow) -> dict[str, InputFile]:
    """The file parts after `job`, each checked as a Discord attachment is and read up to its cap."""
    files: dict[str, InputFile] = {}
    while (part := await reader.next()) is not None:
        name = part.name if isinstance(part, BodyPartReader) else None
        param = workflow.param(name) if name else None
        if not isinstance(part, BodyPartReader) or name is None or param is None:
            options = ", ".join(p.name for p in workflow.params if p.type in FILE_TYPES) or "none"
            raise ApiError(
                400,
                "bad_request",
                f"Unknown part {cap(name or '', 60)!r}: after the job part, send one part per file option of "
                f"{workflow.name} ({options}).",
            )
        if param.type not in FILE_TYPES:
            raise ApiError(
                400, "bad_params", f"{name} is not a file option: give it in the job part's params, not as a part."
            )
        if name in files:
            raise ApiError(400, "bad_params", f"{name} is given twice.")
        if not part.filename:
            raise ApiError(400, "bad_params", f"{name} must be a file, e.g. curl -F {name}=@cat.png.")
        filename = safe_file(part.filename)  # a client's name goes no further: stored, logged, sent to ComfyUI
        try:
            param.coerce(InputFile(filename, b""))  # its type, from its name, before a byte is read
        except InvalidInput as exc:
            raise ApiError(400, "bad_params", exc.user_message) from None
        too_large = FILE_TOO_LARGE.format(option=name, megabytes=MAX_UPLOAD_BYTES // MB)
        files[name] = InputFile(filename, await _read_capped(part, MAX_UPLOAD_BYTES, too_large))
    return files


async def _read_capped(part: BodyPartReader, limit: int, too_large: str) -> bytes:
    """A part's bytes, read chunk by chunk; 413 with `too_large` as soon as they pass `limit`."""
    data = bytearray()
    while chunk := await part.read_chunk(UPLOAD_CHUNK):
        data += chunk
        if len(data) > limit:
            raise ApiError(413, "too_large", too_large)
    return bytes(data)


def _workflow(request: web.Request, body: dict[str, Any]) -> Workflow:
    """The workflow the body names; 400 without a name, 404 for one that is not in use."""
    name = body.get("workflow")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "bad_request", 'Name the workflow: {"workflow": NAME, "params": {...}}.')
    workflow = request.app[API].workflows().get(name)
    if workflow is None:
        known = ", ".join(sorted(request.app[API].workflows())) or "none"
        raise ApiError(404, "unknown_workflow", f"There is no workflow {cap(name, 100)!r}. Available: {known}.")
    return workflow


async def _submit(
    request: web.Request,
    owner: str,
    key: str | None,
    body: dict[str, Any],
    workflow: Workflow,
    *,
    files: dict[str, InputFile],
    reservation: Reservation | None,
) -> web.Response:
    """Check the job's options and start it (in `reservation`'s place if given): 202, or 200 for a known key."""
    jobs = request.app[API].jobs
    webhook = body.get("webhook")
    if webhook is not None:
        problem = await jobs.webhook_problem(webhook) if isinstance(webhook, str) else NOT_HTTP
        if problem is not None:
            raise ApiError(400, "bad_request", problem)
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise ApiError(400, "bad_params", '"params" must be an object of option names and values.')
    for option, value in params.items():
        param = workflow.param(option)
        if param is not None and param.type in FILE_TYPES:
            raise ApiError(
                400,
                "bad_params",
                f"{option} is a file: send the job as multipart/form-data with a part named {option} "
                f"(curl -F 'job=...' -F {option}=@file).",
            )
        if not isinstance(value, str | int | float | bool):
            raise ApiError(400, "bad_params", f"{cap(option, 100)} must be a string, a number or true/false.")
    try:
        values = workflow.resolve({**params, **files})
    except InvalidInput as exc:
        raise ApiError(400, "bad_params", exc.user_message) from None
    if "nodes" in body:
        workflow = with_nodes(workflow, body["nodes"])
    engine = request.app[API].engine
    if engine.servers and all(status.state == "down" for status in engine.server_status()):
        raise ApiError(503, "no_server", "No ComfyUI server is reachable right now; please try again later.")
    try:
        if key is None:
            job, new = jobs.submit(owner, workflow, values, webhook=webhook, reservation=reservation), True
        else:
            job, new = await jobs.submit_once(owner, key, workflow, values, webhook=webhook, reservation=reservation)
    except InvalidInput as exc:  # a limit: pending jobs, cooldown or a full queue
        raise limit_error(exc) from None
    if new:
        log.info("api job %s: /%s for %s", job.id, workflow.name, owner)
    return web.json_response(jobs.describe(job), status=202 if new else 200)


def with_nodes(workflow: Workflow, nodes: Any) -> Workflow:
    """The workflow with node inputs set as given, only those its binding lists in [api] raw_inputs."""
    allowed = {str(target): target for target in workflow.raw_inputs}
    if not isinstance(nodes, dict):
        raise ApiError(400, "bad_nodes", '"nodes" must be an object of "node id.input name" keys and values.')
    graph = dict(workflow.graph)
    for key, value in nodes.items():
        target = allowed.get(key)
        if target is None:
            listed = ", ".join(allowed) or "none"
            raise ApiError(
                400, "bad_nodes", f"nodes: {cap(key, 60)!r} cannot be set through the API. Allowed: {listed}."
            )
        current = workflow.graph[target.node_id]["inputs"][target.input]
        kind = _kind_problem(current, value)
        if kind is not None:
            raise ApiError(400, "bad_nodes", f"nodes: {key} must be {kind}.")
        node = graph[target.node_id] = dict(graph[target.node_id])  # copied: the loaded workflow stays as it is
        node["inputs"] = {**node["inputs"], target.input: value}
    return replace(workflow, graph=graph)


def _kind_problem(current: Any, value: Any) -> str | None:
    """What `value` must be to replace `current` in a node input, or None when it fits."""
    if isinstance(current, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(current, int | float):  # ComfyUI checks int inputs (a cfg of 8 in the file may be a float input)
        fits = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return None if fits else "a number"
    if not isinstance(value, str):
        return "text"
    return None if len(value) <= MAX_TEXT_LENGTH else f"text of at most {MAX_TEXT_LENGTH} characters"


async def _json_object(request: web.Request) -> dict[str, Any]:
    return _json_text(await request.read())


def _json_text(raw: bytes) -> dict[str, Any]:
    """A body (or the job part) as a JSON object; 400 when it is not one."""
    try:
        body = json.loads(raw)
    except ValueError:  # UnicodeDecodeError too
        raise ApiError(400, "bad_request", "The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "The body must be a JSON object.")
    return body


async def get_job(request: web.Request, owner: str) -> web.Response:
    """GET /jobs/{id}: the job's state, place in line, progress, server, timings and outputs."""
    found = await _find(request, owner)
    return web.json_response(request.app[API].jobs.describe(found))


async def list_jobs(request: web.Request, owner: str) -> web.Response:
    """GET /jobs?mine=1: the token's jobs, newest first (`limit` up to 100, `offset`)."""
    if request.query.get("mine") != "1":
        raise ApiError(400, "bad_request", "Only your own jobs can be listed: add ?mine=1.")
    limit = _whole(request, "limit", 20, 1, MAX_HISTORY_PAGE)
    offset = _whole(request, "offset", 0, 0, 10**9)
    jobs = request.app[API].jobs
    total, records = await jobs.store.jobs_of(api_user_id(owner), limit=limit, offset=offset)
    listed = [request.app[API].jobs.describe(jobs.live.get(r.id) or r) for r in records]
    return web.json_response({"total": total, "jobs": listed})


def _whole(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, "bad_request", f"{key} must be a whole number from {low} to {high}.")
    return int(raw)


async def get_output(request: web.Request, owner: str) -> web.StreamResponse:
    """GET /jobs/{id}/outputs/{n}: one output file, streamed from disk."""
    found = await _find(request, owner)
    outputs = request.app[API].jobs.outputs(found.id)
    raw = request.match_info["n"]
    index = int(raw) if raw.isascii() and raw.isdigit() else -1
    if not 0 <= index < len(outputs):
        raise ApiError(404, "not_found", f"This job has no output {cap(raw, 20)!r} (it has {len(outputs)}).")
    output = outputs[index]
    headers = {
        "Content-Type": output.content_type,
        "Content-Disposition": f'attachment; filename="{output.name}"',  # a safe name: see jobs.safe_file
    }
    return web.FileResponse(output.path, headers=headers)


async def cancel_job(request: web.Request, owner: str) -> web.Response:
    """DELETE /jobs/{id}: cancel one of the token's jobs; 202 with the job as it is now."""
    found = await _find(request, owner)
    try:
        await request.app[API].jobs.cancel(owner, found.id)
    except InvalidInput as exc:
        raise ApiError(409, "conflict", exc.user_message) from None
    except BotError as exc:  # the server did not take the cancel
        raise ApiError(503, "no_server", exc.user_message) from None
    return web.json_response(
        request.app[API].jobs.describe(request.app[API].jobs.live.get(found.id) or found), status=202
    )


async def _find(request: web.Request, owner: str) -> ApiJob | JobRecord:
    """The token's job named in the path, live or stored; 404 for unknown ids and other tokens' jobs alike."""
    job_id, jobs = request.match_info["id"], request.app[API].jobs
    live = jobs.live.get(job_id)
    if live is not None and live.owner == owner:
        return live
    record = await jobs.record(owner, job_id)
    if record is None:
        raise ApiError(404, "not_found", f"There is no job {cap(job_id, 40)!r} of yours.")
    return record


ROUTES: tuple[tuple[str, str, OwnedHandler], ...] = (
    ("GET", "/workflows", list_workflows),
    ("POST", "/jobs", submit_job),
    ("GET", "/jobs", list_jobs),
    ("GET", "/jobs/{id}", get_job),
    ("DELETE", "/jobs/{id}", cancel_job),
    ("GET", "/jobs/{id}/outputs/{n}", get_output),
)
