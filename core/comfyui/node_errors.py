"""Turn ComfyUI's validation errors into one short message a member can act on."""

from __future__ import annotations

import re

from core.comfyui import object_info
from core.comfyui.types import NodeErrorItem, NodeErrors, Prompt, PromptError
from core.text import cap

MAX_OPTIONS_SHOWN = 8
MAX_MESSAGE = 1500


def list_options(values: list[str]) -> str:
    """A server's allowed values, shortened for a message: "a, b, c and 12 more"."""
    shown = ", ".join(values[:MAX_OPTIONS_SHOWN])
    more = f" and {len(values) - MAX_OPTIONS_SHOWN} more" if len(values) > MAX_OPTIONS_SHOWN else ""
    return shown + more


def node_label(prompt: Prompt, node_id: str, class_type: str | None = None) -> str:
    """Name a node the way an admin finds it in the ComfyUI editor: title, class and id."""
    class_type = class_type or prompt.get(node_id, {}).get("class_type") or "unknown class"
    title = _title(prompt, node_id, class_type)
    return f"“{title}” ({class_type}, node {node_id})" if title else f"{class_type} (node {node_id})"


def running_label(prompt: Prompt, node_id: str) -> str:
    """Name a running node briefly, for progress: its title, else its class."""
    class_type = prompt.get(node_id, {}).get("class_type")
    return _title(prompt, node_id, class_type) or class_type or f"node {node_id}"


def missing_class(prompt: Prompt, node_id: str, class_type: str, version: str | None) -> str:
    """Say that the server lacks a node's class: a custom node, or a core node newer than the server."""
    title = _title(prompt, node_id, class_type)
    label = f"{node_id} “{title[:80]}”" if title else node_id
    server = f"this server's {version}" if version else "this server's version"
    return (
        f"Node {label} uses {class_type[:80]}, which this server does not have: a custom node, "
        f"or a core node of a newer ComfyUI than {server}."
    )


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
    lines: list[str] = []
    for node_id, entry in node_errors.items():
        label = node_label(prompt, node_id, entry.get("class_type"))
        for err in entry.get("errors", []):
            lines.append(f"• {label}: {_describe_item(err, entry.get('class_type', ''), options or {})}")
    if not lines and error is not None:
        lines.append(f"• {_missing_class(error, prompt, version) or _describe_error(error)}")
    return cap("ComfyUI refused the workflow:\n" + "\n".join(lines or ["• no reason given"]), MAX_MESSAGE)


def _describe_error(error: PromptError) -> str:
    text = error.get("message") or "validation failed"
    if error.get("details") and error["details"] != text:
        text = f"{text.rstrip('.')} ({error['details']})."
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
    name = extra.get("input_name") or err.get("details") or "?"
    kind = err.get("type")
    if kind == "value_not_in_list":
        allowed = object_info.combo_options(extra.get("input_config"))
        if allowed is None:
            allowed = options.get((class_type, str(name)))
        value = extra.get("received_value")
        if value is None or value == "":  # the same words as the workflow check's
            pick = f"pick one of: {list_options(allowed)}" if allowed else "the server has none to pick from"
            return f"no {name} chosen; {pick}."
        text = f"input {name}: {object_info.quoted(value)} is not available on the server."
        if allowed is None:
            return text
        if not allowed:
            return text + " The server has none installed."
        return text + f" It has: {list_options(allowed)}."
    if kind == "required_input_missing":
        return f"required input {name} is missing."
    if kind in ("value_smaller_than_min", "value_bigger_than_max"):
        return f"input {name}: {err.get('message', kind)}."
    if kind == "exception_during_validation" and extra.get("exception_type") == "KeyError":
        return f"it links to node {err.get('details')}, which is not in the workflow."
    detail = err.get("details")
    return f"{err.get('message', kind)}" + (f" ({detail})" if detail else "") + "."
