"""Check a workflow graph against a server's /object_info: classes, inputs, links, ranges, files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.comfyui.node_errors import list_options, node_label
from core.comfyui.types import Prompt
from core.workflows.loader import Catalog

# Inputs the editor writes into API exports that no node declares (e.g. LoadImage's upload button).
EDITOR_ONLY_INPUTS = frozenset({"upload", "audioUI", "control_after_generate"})


def validate_graph(graph: Prompt, object_info: dict[str, Any]) -> list[str]:
    """Everything in `graph` this server would refuse, one readable line each (empty when all is well)."""
    problems: list[str] = []
    for node_id, node in graph.items():
        label = node_label(graph, node_id)
        info = object_info.get(node["class_type"])
        if info is None:
            problems.append(
                f"{label}: class {node['class_type']} is not installed on the server (a missing custom node?)."
            )
            continue
        spec = info.get("input", {})
        declared = {**spec.get("optional", {}), **spec.get("hidden", {}), **spec.get("required", {})}
        for name in spec.get("required", {}):
            if name not in node["inputs"]:
                problems.append(f"{label}: required input {name} is missing.")
        for name, value in node["inputs"].items():
            if name not in declared:
                if name not in EDITOR_ONLY_INPUTS:
                    problems.append(f"{label}: the server's {node['class_type']} has no input {name}.")
                continue
            problem = _check_value(graph, name, value, declared[name])
            if problem:
                problems.append(f"{label}: input {name}: {problem}")
    return problems


def _check_value(graph: Prompt, name: str, value: Any, config: Any) -> str | None:
    if isinstance(value, list):
        if len(value) != 2:
            return "a link must be [node id, output index]."
        if str(value[0]) not in graph:
            return f"links to node {value[0]}, which is not in the workflow."
        return None
    if not isinstance(config, list) or not config or not isinstance(config[0], (str, list)):
        return None
    kind, options = config[0], (config[1] if len(config) > 1 and isinstance(config[1], dict) else {})
    if isinstance(kind, list):
        allowed = [str(v) for v in kind]
        if str(value) in allowed:
            return None
        if not allowed:
            return f"{value!r} is not available on the server (it has none)."
        return f"{value!r} is not available on the server (it has: {list_options(allowed)})."
    if kind in ("INT", "FLOAT") and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = options.get("min"), options.get("max")
        if low is not None and value < low:
            return f"{value} is below the minimum {low}."
        if high is not None and value > high:
            return f"{value} is above the maximum {high}."
    return None


def runnable(catalog: Catalog, object_infos: Sequence[dict[str, Any]]) -> Catalog:
    """Keep the workflows at least one server can run; the others become problems naming why."""
    kept = Catalog(problems=list(catalog.problems))
    for name, workflow in catalog.workflows.items():
        findings = [validate_graph(workflow.graph, info) for info in object_infos]
        if not findings or any(not found for found in findings):
            kept.workflows[name] = workflow
            continue
        first, *rest = min(findings, key=len)
        more = f" (and {len(rest)} more problem(s); run `python bot.py check`)" if rest else ""
        kept.problems.append(f"{workflow.source.name}: /{name} skipped: {first}{more}")
    return kept
