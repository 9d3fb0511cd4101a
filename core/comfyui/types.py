"""TypedDicts for the JSON ComfyUI sends and receives (see shared docs/comfyui-protocol.md)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# An API-format workflow: {node_id: {"class_type", "inputs", "_meta"?}}
Prompt = dict[str, dict[str, Any]]


class FileRef(TypedDict):
    filename: str
    subfolder: str
    type: Literal["output", "temp", "input"]


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


class PromptResponse(TypedDict):
    prompt_id: str
    number: float
    node_errors: dict[str, NodeErrors]


class HistoryStatus(TypedDict):
    status_str: Literal["success", "error"]
    completed: bool
    messages: list[tuple[str, dict[str, Any]]]


class HistoryEntry(TypedDict):
    prompt: list[Any]
    outputs: dict[str, dict[str, Any]]
    status: HistoryStatus
    meta: NotRequired[dict[str, Any]]


class WsMessage(TypedDict):
    type: str
    data: dict[str, Any]
