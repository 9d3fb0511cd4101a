"""Check a workflow against a server's /object_info: classes, inputs, links, types, ranges, files, bindings."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from core.comfyui.node_errors import list_options, missing_class, node_label
from core.comfyui.object_info import (
    combo_options,
    declared_inputs,
    input_config,
    input_kind,
    input_spec,
    match_option,
    quoted,
)
from core.comfyui.types import Prompt
from core.i18n import Text
from core.workflows.loader import Catalog
from core.workflows.model import FILE_TYPES, MAX_SEED, NONE, Param, ParamType, Target, Workflow

# Inputs the editor writes into API exports that no node declares (e.g. LoadImage's upload button).
EDITOR_ONLY_INPUTS = frozenset({"upload", "audioUI", "control_after_generate"})
# Which parameter types may fill an input of each declared type.
FITTING_TYPES: dict[str, frozenset[ParamType]] = {
    "COMBO": frozenset({ParamType.CHOICE, *FILE_TYPES}),
    "INT": frozenset({ParamType.INT, ParamType.SEED}),
    "FLOAT": frozenset({ParamType.INT, ParamType.FLOAT, ParamType.SEED}),
    "STRING": frozenset({ParamType.TEXT, ParamType.MULTILINE, ParamType.CHOICE}),
    "BOOLEAN": frozenset({ParamType.BOOL}),
}
SUGGESTED_TYPE = {"COMBO": "choice", "INT": "int", "FLOAT": "float", "STRING": "text", "BOOLEAN": "bool"}

# Why a workflow cannot run on a server; {node} names a node as node_errors.node_label does.
REQUIRED_MISSING = Text("{node}: required input {input} is missing.")
NO_SUCH_INPUT = Text("{node}: the server's {class_type} has no input {input}.")
BAD_LINK = Text("{node}: input {input}: a link must be [node id, output index].")
LINK_TO_MISSING = Text("{node}: input {input}: links to node {node_id}, which is not in the workflow.")
NOT_WHOLE = Text("{node}: input {input}: {value} is not a whole number.")
NOT_NUMBER = Text("{node}: input {input}: {value} is not a number.")
NOT_FINITE = Text("{node}: input {input}: {value} is not a finite number.")
BELOW_MIN = Text("{node}: input {input}: {value} is below the minimum {low}.")
ABOVE_MAX = Text("{node}: input {input}: {value} is above the maximum {high}.")
NONE_CHOSEN = Text("{node} has no {input} chosen; pick one of: {options}.")
NONE_CHOSEN_NONE_OFFERED = Text("{node} has no {input} chosen; the server has none to pick from.")
NOT_AVAILABLE = Text("{node}: input {input}: {value} is not available on the server (it has: {options}).")
NOT_AVAILABLE_NONE = Text("{node}: input {input}: {value} is not available on the server (it has none).")
SKIPPED = Text("{file}: /{command} skipped: {problem}")
SKIPPED_MORE = Text("{file}: /{command} skipped: {problem} (and {count} more problem(s); run `python bot.py check`)")
# An option that cannot fill its inputs; {where} is Class.input (node id).
WHERE = Text("{input} (node {node_id})")
NOT_A_LIST = Text("option {option}: choices_from {choices_from} is not a list of values on this server.")
WRONG_TYPE = Text('option {option} is of type {type}, but {where} takes {kind}; use type = "{fix}".')
CHOICE_MISSING = Text("option {option}: {value} is not available for {where}; the server has: {options}.")
CHOICE_SPELLED = Text(
    "option {option}: {value} (the server writes it {spelled}) is not available for {where}; the server has: {options}."
)
BELOW_SERVER_MIN = Text("option {option} allows values below {where}'s minimum {low}; set min = {low}.")
ABOVE_SERVER_MAX = Text("option {option} allows values above {where}'s maximum {high}; set max = {high}.")


def validate_graph(
    graph: Prompt, object_info: dict[str, Any], version: str | None = None, *, replaced: frozenset[Target] = frozenset()
) -> list[str]:
    """Everything in `graph` this server would refuse, one readable line each (empty when all is well).

    `version` is the server's ComfyUI version (from /system_stats), named when a class is missing; inputs in
    `replaced` are always set by a required option, so the exported value there is not checked.
    """
    problems: list[str] = []
    for node_id, node in graph.items():
        label = node_label(graph, node_id)
        info = object_info.get(node["class_type"])
        if not isinstance(info, dict):
            problems.append(missing_class(graph, node_id, node["class_type"], version))
            continue
        declared, required = declared_inputs(info)
        for name in required:
            if name not in node["inputs"]:
                problems.append(REQUIRED_MISSING.format(node=label, input=name))
        for name, value in node["inputs"].items():
            if name not in declared:
                if name not in EDITOR_ONLY_INPUTS:
                    problems.append(NO_SUCH_INPUT.format(node=label, class_type=node["class_type"], input=name))
                continue
            if Target(node_id, name) in replaced and not _is_link(value):
                continue
            problem = _check_value(graph, label, name, value, declared[name])
            if problem:
                problems.append(problem)
    return problems


def validate_workflow(workflow: Workflow, object_info: dict[str, Any], version: str | None = None) -> list[str]:
    """The graph's problems on this server, then those of the command's options against the inputs they set."""
    replaced = frozenset(t for p in workflow.params if p.required for t in p.targets)
    problems = validate_graph(workflow.graph, object_info, version, replaced=replaced)
    for param in workflow.params:
        problems += _param_problems(workflow, param, object_info)
    return problems


def adapt_graph(graph: Prompt, object_info: dict[str, Any]) -> Prompt:
    """The graph with each listed value spelled as the server lists it (`sdxl\\a.safetensors` -> `sdxl/a...`)."""
    adapted = graph
    for node_id, node in graph.items():
        for name, value in node["inputs"].items():
            options = combo_options(input_spec(object_info, node["class_type"], name))
            if not isinstance(value, str) or options is None or value in options:
                continue
            spelled = match_option(value, options)
            if spelled is not None:
                if adapted is graph:
                    adapted = copy.deepcopy(graph)
                adapted[node_id]["inputs"][name] = spelled
    return adapted


def runnable(
    catalog: Catalog, object_infos: Sequence[dict[str, Any]], versions: Sequence[str | None] | None = None
) -> Catalog:
    """Keep the workflows at least one server can run; the others become problems naming why.

    A kept workflow's model names are spelled as the first server that can run it lists them, so an export
    made on Windows (`sdxl\\model.safetensors`) runs on a Linux server (`sdxl/model.safetensors`) and back.
    """
    named = list(versions or [])
    named += [None] * (len(object_infos) - len(named))
    kept = Catalog(problems=list(catalog.problems), notes=list(catalog.notes))
    for name, workflow in catalog.workflows.items():
        findings = [validate_workflow(workflow, info, named[i]) for i, info in enumerate(object_infos)]
        usable = next((object_infos[i] for i, found in enumerate(findings) if not found), None)
        if not findings or usable is not None:
            graph = workflow.graph if usable is None else adapt_graph(workflow.graph, usable)
            kept.workflows[name] = workflow if graph is workflow.graph else dataclasses.replace(workflow, graph=graph)
            continue
        first, *rest = min(findings, key=len)
        skipped = {"file": workflow.source.name, "command": name, "problem": first}
        kept.problems.append(SKIPPED_MORE.format(**skipped, count=len(rest)) if rest else SKIPPED.format(**skipped))
    return kept


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and not isinstance(value[1], bool)


def _check_value(graph: Prompt, label: str, name: str, value: Any, spec: Any) -> str | None:
    if isinstance(value, list) and not (input_config(spec).get("multiselect") and not _is_link(value)):
        if not _is_link(value):
            return BAD_LINK.format(node=label, input=name)
        if str(value[0]) not in graph:
            return LINK_TO_MISSING.format(node=label, input=name, node_id=value[0])
        return None
    kind = input_kind(spec)
    if kind == "COMBO":
        return _check_choice(label, name, value, combo_options(spec))
    if kind in ("INT", "FLOAT"):
        return _check_number(label, name, kind, value, input_config(spec))
    return None


def _check_choice(label: str, name: str, value: Any, options: list[str] | None) -> str | None:
    if options is None:  # filled by the editor from another route: nothing to compare with
        return None
    values = value if isinstance(value, list) else [value]
    if not values or any(v is None or v == "" for v in values):
        if options:
            return NONE_CHOSEN.format(node=label, input=name, options=list_options(options))
        return NONE_CHOSEN_NONE_OFFERED.format(node=label, input=name)
    for one in values:
        if match_option(one, options) is None:
            if options:
                return NOT_AVAILABLE.format(node=label, input=name, value=quoted(one), options=list_options(options))
            return NOT_AVAILABLE_NONE.format(node=label, input=name, value=quoted(one))
    return None


def _check_number(label: str, name: str, kind: str, value: Any, config: dict[str, Any]) -> str | None:
    # ComfyUI converts with int()/float() before comparing, so "5" passes and "many" does not.
    try:
        number = int(value) if kind == "INT" else float(value)
    except (TypeError, ValueError, OverflowError):
        return (NOT_WHOLE if kind == "INT" else NOT_NUMBER).format(node=label, input=name, value=quoted(value))
    if not math.isfinite(number):
        return NOT_FINITE.format(node=label, input=name, value=quoted(value))
    low, high = config.get("min"), config.get("max")
    if isinstance(low, (int, float)) and number < low:
        return BELOW_MIN.format(node=label, input=name, value=value, low=low)
    if isinstance(high, (int, float)) and number > high:
        return ABOVE_MAX.format(node=label, input=name, value=value, high=high)
    return None


def _param_problems(workflow: Workflow, param: Param, object_info: dict[str, Any]) -> list[str]:
    """What makes an option unable to fill its inputs on this server: wrong type, too wide a range, bad choices."""
    problems: list[str] = []
    here = param.name
    if param.choices_from:
        class_type, input_name = param.choices_from.rsplit(".", 1)
        if combo_options(input_spec(object_info, class_type, input_name)) is None:
            problems.append(NOT_A_LIST.format(option=here, choices_from=param.choices_from))
    for target in param.targets:
        node = workflow.graph.get(target.node_id)
        spec = input_spec(object_info, node["class_type"], target.input) if node else None
        kind = input_kind(spec)
        if node is None or kind not in FITTING_TYPES:
            continue  # a missing class or input is reported by the graph check
        where = WHERE.format(input=f"{node['class_type']}.{target.input}", node_id=target.node_id)
        if param.type not in FITTING_TYPES[kind]:
            fix = SUGGESTED_TYPE[kind]
            problems.append(WRONG_TYPE.format(option=here, type=param.type.value, where=where, kind=kind, fix=fix))
            continue
        if kind == "COMBO" and param.choices:
            options = combo_options(spec)
            wrong = [c for c in param.choices if options is not None and c not in options]
            if wrong:
                spelled = match_option(wrong[0], options or [])
                found = {"option": here, "value": quoted(wrong[0]), "where": where}
                found["options"] = list_options(options or []) or NONE
                if spelled:
                    problems.append(CHOICE_SPELLED.format(**found, spelled=quoted(spelled)))
                else:
                    problems.append(CHOICE_MISSING.format(**found))
        if kind in ("INT", "FLOAT"):
            problems += _range_problems(here, where, param, input_config(spec))
    return problems


def _range_problems(here: str, where: str, param: Param, config: dict[str, Any]) -> list[str]:
    low = 0 if param.type is ParamType.SEED else param.min
    high = MAX_SEED if param.type is ParamType.SEED else param.max
    problems: list[str] = []
    server_low, server_high = config.get("min"), config.get("max")
    if isinstance(server_low, (int, float)) and (low is None or low < server_low):
        problems.append(BELOW_SERVER_MIN.format(option=here, where=where, low=server_low))
    if isinstance(server_high, (int, float)) and (high is None or high > server_high):
        problems.append(ABOVE_SERVER_MAX.format(option=here, where=where, high=server_high))
    return problems
