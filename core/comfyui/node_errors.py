"""Turn ComfyUI's validation errors into one short message a member can act on."""

from __future__ import annotations

import re

from core.comfyui import object_info
from core.comfyui.types import NodeErrorItem, NodeErrors, Prompt, PromptError
from core.i18n import Lines, Text
from core.text import cap

MAX_OPTIONS_SHOWN = 8
MAX_MESSAGE = 1500
MAX_SERVER_TEXT = 300  # one message or detail of the server's, in one line of the refusal
MAX_NAME_SHOWN = 80  # a node title, class or input name in a message

REFUSED = Text("ComfyUI refused the workflow:\n• {reasons}")
REASON = Text("{label}: {reason}")
NO_REASON = Text("no reason given")
MORE_REASONS = Text("…and {count} more problem(s).")
VALIDATION_FAILED = Text("validation failed")
MORE_OPTIONS = Text("{shown} and {count} more")
TITLED_NODE = Text("“{title}” ({class_type}, node {node_id})")
NODE = Text("{class_type} (node {node_id})")
UNKNOWN_CLASS = Text("unknown class")
NODE_ID = Text("node {node_id}")
MISSING_CLASS = Text(
    "Node {node} uses {class_type}, which this server does not have: a custom node, "
    "or a core node of a newer ComfyUI than {server}."
)
SERVER_VERSION = Text("this server's {version}")
UNKNOWN_VERSION = Text("this server's version")
NONE_CHOSEN = Text("no {input} chosen; pick one of: {options}.")
NONE_CHOSEN_NONE_OFFERED = Text("no {input} chosen; the server has none to pick from.")
NOT_AVAILABLE = Text("input {input}: {value} is not available on the server.")
NOT_AVAILABLE_NONE_INSTALLED = Text(
    "input {input}: {value} is not available on the server. The server has none installed."
)
NOT_AVAILABLE_HAS = Text("input {input}: {value} is not available on the server. It has: {options}.")
REQUIRED_MISSING = Text("required input {input} is missing.")
OUT_OF_RANGE = Text("input {input}: {message}.")
LINKS_TO_MISSING = Text("it links to node {node_id}, which is not in the workflow.")


def list_options(values: list[str]) -> str:
    """A server's allowed values, shortened for a message: "a, b, c and 12 more"."""
    shown = ", ".join(values[:MAX_OPTIONS_SHOWN])
    if len(values) > MAX_OPTIONS_SHOWN:
        return MORE_OPTIONS.format(shown=shown, count=len(values) - MAX_OPTIONS_SHOWN)
    return shown


def node_label(prompt: Prompt, node_id: str, class_type: str | None = None) -> str:
    """Name a node the way an admin finds it in the ComfyUI editor: title, class and id."""
    class_type = class_type or prompt.get(node_id, {}).get("class_type") or UNKNOWN_CLASS
    title = _title(prompt, node_id, class_type)
    if title:
        return TITLED_NODE.format(title=cap(title, MAX_NAME_SHOWN), class_type=class_type, node_id=node_id)
    return NODE.format(class_type=class_type, node_id=node_id)


def running_label(prompt: Prompt, node_id: str) -> str:
    """Name a running node briefly, for progress: its title, else its class."""
    class_type = prompt.get(node_id, {}).get("class_type")
    return _title(prompt, node_id, class_type) or class_type or NODE_ID.format(node_id=node_id)


def missing_class(prompt: Prompt, node_id: str, class_type: str, version: str | None) -> str:
    """Say that the server lacks a node's class: a custom node, or a core node newer than the server."""
    title = _title(prompt, node_id, class_type)
    label = f"{node_id} “{title[:MAX_NAME_SHOWN]}”" if title else node_id
    server = SERVER_VERSION.format(version=version) if version else UNKNOWN_VERSION
    return MISSING_CLASS.format(node=label, class_type=class_type[:MAX_NAME_SHOWN], server=server)


def _title(prompt: Prompt, node_id: str, class_type: str | None) -> str | None:
    """The title an admin gave the node in the editor, or None when it only repeats the class."""
    title = (prompt.get(node_id, {}).get("_meta") or {}).get("title")
    return str(title) if title and title != class_type else None


def describe_rejection(
    error: PromptError | None,
    node_errors: dict[str, NodeErrors],
    prompt: Prompt,
    options: dict[tuple[str, str], list[str]] | None = None,
    *,
    version: str | None = None,
) -> str:
    """Build the member-facing text for a 400 (or a 200 with node_errors) from POST /prompt.

    `options` maps (class_type, input_name) to the server's allowed values, for lists that ComfyUI
    elides from the error when they are long; `version` is the server's, for a class it lacks.
    """
    reasons: list[str] = []
    for node_id, entry in node_errors.items():
        label = node_label(prompt, node_id, entry.get("class_type"))
        for err in entry.get("errors", []):
            reasons.append(
                REASON.format(label=label, reason=_describe_item(err, entry.get("class_type", ""), options or {}))
            )
    if not reasons and error is not None:
        reasons.append(_missing_class(error, prompt, version) or _describe_error(error))
    return REFUSED.format(reasons=Lines(_within(reasons or [NO_REASON], MAX_MESSAGE), "\n• "))


def _within(reasons: list[str], limit: int) -> list[str]:
    """As many reasons as fit in about `limit` characters, then how many more there are."""
    kept: list[str] = []
    length = 0
    for i, reason in enumerate(reasons):
        length += len(reason) + 3
        if kept and length > limit:
            return [*kept, MORE_REASONS.format(count=len(reasons) - i)]
        kept.append(reason)
    return kept


def _describe_error(error: PromptError) -> str:
    """The server's own words for a refusal without node errors (not translated: they are the server's)."""
    text = cap(error.get("message") or "", MAX_SERVER_TEXT) or VALIDATION_FAILED
    if error.get("details") and error["details"] != text:
        return f"{text.rstrip('.')} ({cap(error['details'], MAX_SERVER_TEXT)})."
    return text


def _missing_class(error: PromptError, prompt: Prompt, version: str | None) -> str | None:
    """The sentence for a class the server lacks: `missing_node_type` (newer) or 0.3.64's invalid_prompt."""
    extra = error.get("extra_info") or {}
    found = re.search(r"#([^']+)'", error.get("details") or "")
    node_id = str(extra.get("node_id") or (found.group(1) if found else ""))
    if error.get("type") == "missing_node_type":
        class_type = extra.get("class_type") or prompt.get(node_id, {}).get("class_type")
    elif error.get("type") == "invalid_prompt" and (
        named := re.search(r"node (.+) does not exist", error.get("message") or "")
    ):
        class_type = named.group(1)
    else:
        return None
    return missing_class(prompt, node_id, str(class_type), version) if node_id and class_type else None


def missing_option_inputs(node_errors: dict[str, NodeErrors]) -> set[tuple[str, str]]:
    """(class_type, input) pairs whose allowed values ComfyUI did not include in the error."""
    wanted: set[tuple[str, str]] = set()
    for entry in node_errors.values():
        for err in entry.get("errors", []):
            extra = err.get("extra_info") or {}
            if err.get("type") == "value_not_in_list" and not object_info.combo_options(extra.get("input_config")):
                wanted.add((entry.get("class_type", ""), str(extra.get("input_name", ""))))
    return wanted


def _describe_item(err: NodeErrorItem, class_type: str, options: dict[tuple[str, str], list[str]]) -> str:
    extra = err.get("extra_info") or {}
    input_name = str(extra.get("input_name") or err.get("details") or "?")
    name = cap(input_name, MAX_NAME_SHOWN)
    kind = err.get("type")
    if kind == "value_not_in_list":
        allowed = object_info.combo_options(extra.get("input_config"))
        if allowed is None:
            allowed = options.get((class_type, input_name))
        value = extra.get("received_value")
        if value is None or value == "":  # the same words as the workflow check's
            if allowed:
                return NONE_CHOSEN.format(input=name, options=list_options(allowed))
            return NONE_CHOSEN_NONE_OFFERED.format(input=name)
        shown = object_info.quoted(value)
        if allowed is None:
            return NOT_AVAILABLE.format(input=name, value=shown)
        if not allowed:
            return NOT_AVAILABLE_NONE_INSTALLED.format(input=name, value=shown)
        return NOT_AVAILABLE_HAS.format(input=name, value=shown, options=list_options(allowed))
    if kind == "required_input_missing":
        return REQUIRED_MISSING.format(input=name)
    message = cap(err.get("message", kind or ""), MAX_SERVER_TEXT)
    if kind in ("value_smaller_than_min", "value_bigger_than_max"):
        return OUT_OF_RANGE.format(input=name, message=message)
    detail = cap(err.get("details") or "", MAX_SERVER_TEXT)
    if kind == "exception_during_validation" and extra.get("exception_type") == "KeyError":
        return LINKS_TO_MISSING.format(node_id=detail)
    return message + (f" ({detail})" if detail else "") + "."  # the server's own words, as it wrote them
