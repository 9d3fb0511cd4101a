"""Property test: generated ComfyUI answers never crash the parsing at the edge (issue 11, item 3).

Each answer is either parsed into a well-typed value, which the bot's consumers (rejection texts,
failure texts) then use without error, or refused with ComfyServerError. The answers are mostly
near-valid, with junk swapped in at any depth, so that the checks are reached at every level.
GENERATED counts the cases per kind; the suite's summary can print it.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.comfyui import types
from core.comfyui.node_errors import describe_rejection, missing_option_inputs
from core.errors import BotError, ComfyServerError
from core.jobs.engine import _raise_if_failed

pytestmark = pytest.mark.abuse

GENERATED: Counter[str] = Counter()  # generated answers fed to the parsers, by kind
SERVER = "http://127.0.0.1:8188"
PID = "0b5c1f56-1f1e-4c55-9a5e-3c1f0c8f6a01"
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {}, "_meta": {"title": "Canvas"}}}
FAST = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

scalar = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
junk = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nine times in ten the valid shape, else anything at all (so that deep levels are reached too)."""
    return st.sampled_from(range(10)).flatmap(lambda i: valid if i else junk)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object whose keys may each be missing; the value of each is mostly of its valid shape."""
    return st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in fields.items()})


def req(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with all of these keys, plus a junk key now and then."""
    return st.fixed_dictionaries({k: maybe(v) for k, v in fields.items()}, optional={"extra": junk})


names = st.text(max_size=12) | st.sampled_from(["ComfyUI_00001_.png", "clip_00001.mp4", "../x.png", "", "a/b.png"])
file_ref = req(filename=names, subfolder=st.text(max_size=6), type=st.sampled_from(["output", "temp"]), metadata=junk)
node_output = obj(
    images=st.lists(maybe(file_ref), min_size=1, max_size=3),
    audio=st.lists(maybe(file_ref), max_size=2),
    text=st.lists(maybe(st.text(max_size=8)), max_size=2) | st.text(max_size=8),
    animated=junk,
)
status_kinds = st.sampled_from(["execution_start", "execution_error", "execution_interrupted", "execution_success"])
message = st.tuples(
    maybe(status_kinds),
    obj(
        node_id=st.text(max_size=3) | st.integers(0, 99),
        node_type=st.text(max_size=8),
        exception_message=st.text(max_size=20),
        exception_type=st.text(max_size=8),
        traceback=st.lists(maybe(st.text(max_size=8)), max_size=2),
    ),
).map(list)
status = req(
    status_str=st.sampled_from(["success", "error"]),
    completed=st.booleans(),
    messages=st.lists(maybe(message), max_size=3),
)
entry = req(outputs=st.dictionaries(st.text(max_size=3), maybe(node_output), min_size=1, max_size=3), status=status)
history_body = maybe(st.fixed_dictionaries({PID: maybe(entry)}))

ws_kinds = st.sampled_from(["executing", "progress", "execution_error", "status", "executed", "feature_flags"])
ws_frame = obj(
    type=ws_kinds,
    data=obj(
        prompt_id=st.just(PID),
        node=st.text(max_size=3) | st.integers() | st.none(),
        value=st.integers(),
        max=st.integers(),
    ),
)
binary_frame = st.binary(max_size=24) | st.builds(
    lambda kind, length, meta, tail: struct.pack(">II", kind, length) + meta + tail,
    st.sampled_from([1, 2, 3, 4, 99]),
    st.integers(0, 2**32 - 1) | st.integers(0, 40),
    maybe(obj(prompt_id=st.just(PID), node_id=st.text(max_size=3))).map(lambda m: json.dumps(m).encode()),
    st.binary(max_size=8),
)

spec = st.tuples(st.lists(maybe(st.text(max_size=6)), max_size=3), junk).map(list) | st.tuples(
    st.just("COMBO"), obj(options=st.lists(maybe(st.text(max_size=6)), max_size=3))
).map(list)
object_info = (
    st.fixed_dictionaries({"Loader": maybe(obj(input=obj(required=obj(name=spec), optional=obj(name=spec))))}) | junk
)

error_item = obj(type=st.sampled_from(["value_not_in_list", "missing_node_type", "x"]), message=st.text(max_size=10),
                 details=st.text(max_size=10), extra_info=obj(input_name=st.text(max_size=4), input_config=spec,
                 node_id=st.just("1"), class_type=st.text(max_size=8)))  # fmt: skip
prompt_body = obj(
    prompt_id=st.just(PID),
    number=st.integers() | st.floats(),
    error=st.text(max_size=10) | error_item,
    node_errors=st.dictionaries(
        st.text(max_size=2), maybe(obj(errors=st.lists(maybe(error_item), max_size=2), class_type=st.text(max_size=6)))
    ),
)

job = obj(id=st.just(PID), status=st.sampled_from(["pending", "in_progress", "completed", "failed", "cancelled"]))
other_answer = st.tuples(
    st.sampled_from(["job", "jobs", "queue", "stats", "upload"]),
    job
    | obj(jobs=st.lists(maybe(job), max_size=2), pagination=junk)
    | obj(queue_running=st.lists(maybe(st.tuples(scalar, st.just(PID)).map(list)), max_size=2), queue_pending=junk)
    | obj(system=obj(comfyui_version=st.text(max_size=8)))
    | obj(name=names, subfolder=st.text(max_size=4)),
)


def refused_or(parse: Any, *args: Any) -> Any:
    """Run one parse: a value, or None when it was refused the expected way."""
    try:
        return parse(*args)
    except ComfyServerError as exc:
        assert exc.user_message.startswith(f"The ComfyUI server {SERVER} sent an answer the bot cannot read (")
        return None


@FAST
@given(history_body)
def test_history_entries(body: Any) -> None:
    GENERATED["history entries"] += 1
    parsed = refused_or(types.parse_history, body, PID, SERVER)
    if parsed is not None:
        try:
            _raise_if_failed(parsed, PROMPT)
        except BotError as exc:
            assert exc.user_message
        for output in parsed["outputs"].values():
            assert all(isinstance(t, str) for t in output["text"])
            assert all("/" not in ref["filename"] for refs in output["files"].values() for ref in refs)


@FAST
@given(ws_frame.map(json.dumps) | st.text(max_size=20), binary_frame)
def test_websocket_frames(text: str, frame: bytes) -> None:
    GENERATED["websocket frames"] += 2
    parsed = refused_or(types.parse_ws_message, text, SERVER)
    if parsed is not None and parsed["type"] in types.PROMPT_EVENTS:
        assert parsed["data"]["node"] is None or isinstance(parsed["data"]["node"], str)
    preview = refused_or(types.parse_binary_frame, frame, SERVER)
    assert preview is None or isinstance(preview.image, bytes)


@FAST
@given(object_info)
def test_object_info_fragments(body: Any) -> None:
    GENERATED["object_info fragments"] += 1
    options = refused_or(types.parse_input_options, body, "Loader", "name", SERVER)
    assert options is None or all(isinstance(v, str) for v in options)
    refused_or(types.parse_object_info, body, SERVER)


@FAST
@given(maybe(prompt_body))
def test_prompt_replies(body: Any) -> None:
    GENERATED["/prompt bodies"] += 1
    reply = refused_or(types.parse_prompt_reply, body, SERVER)
    if reply is not None:
        missing_option_inputs(reply.node_errors)
        text = describe_rejection(reply.error, reply.node_errors, PROMPT, version="0.38.1")
        assert text.startswith("ComfyUI refused the workflow:\n")


@FAST
@given(other_answer | st.tuples(st.sampled_from(["job", "jobs", "queue", "stats", "upload"]), junk))
def test_jobs_queue_stats_and_upload_answers(answer: tuple[str, Any]) -> None:
    GENERATED["/api/jobs, /queue, /system_stats, /upload bodies"] += 1
    route, body = answer
    parse = {
        "job": types.parse_job,
        "jobs": types.parse_jobs_page,
        "queue": types.parse_queue,
        "stats": types.parse_system_stats,
        "upload": types.parse_upload,
    }[route]
    refused_or(parse, body, SERVER)
