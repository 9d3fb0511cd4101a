"""Read `workflows/`: API-format JSON graphs and the TOML binding files that turn them into commands."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.comfyui.types import Prompt
from core.community.access import binding_rule
from core.errors import WorkflowError
from core.i18n import LOCALES, Text
from core.text import cap
from core.workflows.detect import detect_params
from core.workflows.model import (
    BUILT_IN_COMMANDS,
    MAX_CHOICE,
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_OPTIONS,
    MAX_TEXT_LENGTH,
    NAME_RE,
    Followups,
    Localized,
    Param,
    ParamType,
    Target,
    Workflow,
)

# What /reload and /workflows tell an admin about whole files. The problems inside a binding file (its keys
# and values, as `python bot.py check` also prints them) stay English, like the TOML keys they name.
BUILT_IN_NAME = Text("{file}: /{command} is one of the bot's own commands; choose another name.")
ALREADY_DEFINED = Text("{file}: command /{command} is already defined by {other}.")
RENAMED = Text("{file}: the command is /{command} ({why}); a binding file {binding} can choose another name.")
NAME_TOO_LONG = Text("names are at most {max} characters")
NAME_TAKEN = Text("/{command} is already taken")
NAME_TOO_LONG_AND_TAKEN = Text("names are at most {max} characters and /{command} is already taken")
NOTHING_DETECTED = Text(
    "{file}: no prompt, seed or size inputs were found to make options of; "
    "add a binding file {binding} that names them."
)
NOT_JSON = Text(
    "{file}: not valid JSON at line {line}, column {column}: {error}. "
    "Export it again from ComfyUI (Workflow > Export (API))."
)
TOO_DEEP = Text("{file}: not a workflow (nested too deeply).")
UI_FORMAT = Text(
    "{file}: this is the editor (UI) format. In ComfyUI open the workflow and use "
    "Workflow > Export (API), then save that file here instead."
)
NOT_API_FORMAT = Text("{file}: expected an API-format workflow (an object of nodes).")
NO_CLASS_TYPE = Text("{file}: node {node_id} has no class_type; is this an API-format export?")
BAD_INPUTS = Text("{file}: node {node_id} has malformed inputs.")
NOT_FOUND = Text("{file}: file not found.")
NOT_UTF8 = Text("{file}: not UTF-8 text (byte {byte} cannot be read); save it as UTF-8.")
UNREADABLE = Text("{file}: cannot be read ({reason}).")
NO_FOLLOWUP_COMMAND = Text(
    "{file}: [followups] {key} = /{command}, which is not loaded (commands: {commands}); the button is left out."
)
NO_FOLLOWUP_OPTION = Text(
    "{file}: [followups] {key} = /{command}, which has no {kind} option to take the chosen output; "
    "the button is left out."
)


@dataclass(slots=True)
class Catalog:
    """The commands found in a folder, and what kept other files from becoming commands."""

    workflows: dict[str, Workflow] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth telling the admin, but nothing was skipped


def load_catalog(folder: Path) -> Catalog:
    """Load every workflow in `folder`; a broken file is reported and skipped, never fatal to the rest.

    Each binding (*.toml) makes a command; a graph (*.json) that no binding uses becomes a command named
    after the file, with its options detected automatically.
    """
    catalog = Catalog()
    used_graphs: set[Path] = set()
    found: list[Workflow] = []
    for binding_path in sorted(folder.glob("*.toml")):
        used_graphs.add(binding_path.with_suffix(".json").resolve())  # claimed even if the binding is broken
        try:
            workflow = load_workflow(binding_path)
        except WorkflowError as exc:
            catalog.problems.append(exc.user_message)
            continue
        used_graphs.add(workflow.source.resolve())
        found.append(workflow)
    taken = {w.name for w in found} | BUILT_IN_COMMANDS
    for graph_path in sorted(folder.glob("*.json")):
        if graph_path.resolve() not in used_graphs:
            try:
                workflow = detect_workflow(graph_path)
            except WorkflowError as exc:
                catalog.problems.append(exc.user_message)
                continue
            workflow = _unique_name(workflow, taken, catalog.notes)
            taken.add(workflow.name)
            found.append(workflow)
    for workflow in found:
        where = (workflow.binding or workflow.source).name
        if workflow.name in BUILT_IN_COMMANDS:
            catalog.problems.append(BUILT_IN_NAME.format(file=where, command=workflow.name))
        elif workflow.name in catalog.workflows:
            other = catalog.workflows[workflow.name]
            defined = (other.binding or other.source).name
            catalog.problems.append(ALREADY_DEFINED.format(file=where, command=workflow.name, other=defined))
        else:
            catalog.workflows[workflow.name] = workflow
    _check_followups(catalog)
    return catalog


# What each follow-up needs of the command it names: an option taking the kind of file it hands over
FOLLOWUP_KINDS = {"upscale": ParamType.IMAGE, "extend": ParamType.AUDIO}


def _check_followups(catalog: Catalog) -> None:
    """Drop each follow-up that names a command that is missing or takes no file of the right kind, with a note.

    The command itself stays: a binding copied without the command its Upscale runs still works, without Upscale.
    """
    for workflow in list(catalog.workflows.values()):
        where = (workflow.binding or workflow.source).name
        kept = {}
        for key, kind in FOLLOWUP_KINDS.items():
            name = kept[key] = getattr(workflow.followups, key)
            target = catalog.workflows.get(name) if name is not None else None
            if name is None or (target is not None and target.file_param(kind) is not None):
                continue
            kept[key] = None
            if target is None:
                known = ", ".join(sorted(catalog.workflows))
                catalog.notes.append(NO_FOLLOWUP_COMMAND.format(file=where, key=key, command=name, commands=known))
            else:
                catalog.notes.append(NO_FOLLOWUP_OPTION.format(file=where, key=key, command=name, kind=str(kind)))
        if kept != {key: getattr(workflow.followups, key) for key in FOLLOWUP_KINDS}:
            followups = dataclasses.replace(workflow.followups, **kept)
            catalog.workflows[workflow.name] = dataclasses.replace(workflow, followups=followups)


def detect_workflow(graph_path: Path) -> Workflow:
    """A command for a graph without a binding file: named after the file, options found by detect_params."""
    graph = load_graph(graph_path)
    params = detect_params(graph)
    if not params:
        raise WorkflowError(NOTHING_DETECTED.format(file=graph_path.name, binding=f"{graph_path.stem}.toml"))
    name = command_name_for(graph_path.stem)
    description = f"Run the {graph_path.stem} workflow"[: MAX_DESCRIPTION - 30] + " (options detected automatically)"
    return Workflow(name, description, graph, params, graph_path)


def command_name_for(stem: str) -> str:
    """A valid command name for a file name: lowercase, `-` for other characters, cut at a word boundary."""
    name = _slug(stem)
    if len(name) > MAX_NAME:
        cut = max(name.rfind("-", 0, MAX_NAME + 1), name.rfind("_", 0, MAX_NAME + 1))
        # Cut before the word that does not fit, unless that throws away more than half of the name.
        name = (name[:cut] if cut >= MAX_NAME // 2 else name[:MAX_NAME]).rstrip("-_")
    return name


def _slug(stem: str) -> str:
    return re.sub(r"[^-_\w]+", "-", stem.lower()).strip("-_") or "workflow"


def _unique_name(workflow: Workflow, taken: set[str], notes: list[str]) -> Workflow:
    """A detected command whose name is taken gets the first free `-2`, `-3`, ... suffix (files are sorted)."""
    name, number = workflow.name, 2
    while name in taken:
        name = f"{workflow.name[: MAX_NAME - len(str(number)) - 1].rstrip('-_')}-{number}"
        number += 1
    cut, taken_already = workflow.name != _slug(workflow.source.stem), name != workflow.name
    why = None
    if cut and taken_already:
        why = NAME_TOO_LONG_AND_TAKEN.format(max=MAX_NAME, command=workflow.name)
    elif cut:
        why = NAME_TOO_LONG.format(max=MAX_NAME)
    elif taken_already:
        why = NAME_TAKEN.format(command=workflow.name)
    if why:
        binding = f"{workflow.source.stem}.toml"
        notes.append(RENAMED.format(file=workflow.source.name, command=name, why=why, binding=binding))
    return workflow if name == workflow.name else dataclasses.replace(workflow, name=name)


def load_workflow(binding_path: Path) -> Workflow:
    """Load one binding file and the graph it names; WorkflowError says what to fix."""
    where = binding_path.name
    try:
        binding = tomllib.loads(_read_text(binding_path))
    except tomllib.TOMLDecodeError as exc:
        raise WorkflowError(f"{where}: not valid TOML ({exc}).") from exc
    graph_path = binding_path.with_name(str(binding.get("workflow") or f"{binding_path.stem}.json"))
    graph = load_graph(graph_path)

    command = binding.get("command") or {}
    name = str(command.get("name") or binding_path.stem)
    description = str(command.get("description") or f"Run the {graph_path.stem} workflow")
    _check_name(name, f"{where}: command name")
    _check_description(description, f"{where}: command description")
    nsfw = command.get("nsfw", False)
    if not isinstance(nsfw, bool):
        raise WorkflowError(f"{where}: [command] nsfw must be true or false (got {nsfw!r}).")
    previews = command.get("previews", True)
    if not isinstance(previews, bool):
        raise WorkflowError(f"{where}: [command] previews must be true or false (got {previews!r}).")

    raw_params = binding.get("params") or {}
    if not isinstance(raw_params, dict):
        raise WorkflowError(f"{where}: [params] must be a table of parameters.")
    problems: list[str] = []  # of the localized keys: each one listed, so that a translator fixes them at once
    localized = _localized(command, f"{where}: command", (), problems)
    params = [_parse_param(pname, spec, graph, where, problems) for pname, spec in raw_params.items()]
    problems += _same_localized_names(params, where)
    if problems:
        raise WorkflowError("\n".join(problems))
    if len(params) > MAX_OPTIONS:
        raise WorkflowError(f"{where}: {len(params)} parameters; Discord allows at most {MAX_OPTIONS}.")
    params.sort(key=lambda p: not p.required)  # Discord wants required options first
    access = None
    if "access" in binding:
        access, problems = binding_rule(binding["access"], where)
        if problems:
            raise WorkflowError("\n".join(problems))
    raw_inputs = _raw_inputs(binding.get("api"), graph, params, where)
    followups = _followups(binding.get("followups"), params, where)
    return Workflow(
        name,
        description,
        graph,
        tuple(params),
        graph_path,
        binding_path,
        access,
        nsfw=nsfw,
        localized=localized,
        raw_inputs=raw_inputs,
        previews=previews,
        followups=followups,
    )


def _followups(table: Any, params: list[Param], where: str) -> Followups:
    """Read [followups]: upscale = "command", variation = true, extend = "command" (see README, Binding file)."""
    if table is None:
        return Followups()
    here = f"{where}: [followups]"
    if not isinstance(table, dict):
        raise WorkflowError(f'{here} must be a table, e.g. upscale = "upscale", variation = true.')
    unknown = sorted(set(table) - {"upscale", "variation", "extend"})
    if unknown:
        raise WorkflowError(f"{here}: unknown key {unknown[0]!r} (use upscale, variation or extend).")
    names: dict[str, str | None] = {}
    for key in FOLLOWUP_KINDS:
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or _name_problems(value, "")):
            raise WorkflowError(f'{here} {key} must be the name of a command, e.g. {key} = "{key}" (got {value!r}).')
        names[key] = value
    variation = table.get("variation", False)
    if not isinstance(variation, bool):
        raise WorkflowError(f"{here} variation must be true or false (got {variation!r}).")
    if variation and not any(p.type in (ParamType.SEED, ParamType.IMAGE) for p in params):
        raise WorkflowError(f"{here} variation = true needs a seed or an image option to vary; there is neither.")
    return Followups(upscale=names["upscale"], variation=variation, extend=names["extend"])


def _raw_inputs(table: Any, graph: Prompt, params: list[Param], where: str) -> tuple[Target, ...]:
    """Read [api] raw_inputs = ["6.text", ...]: the node inputs HTTP API clients may set directly."""
    if table is None:
        return ()
    here = f"{where}: [api] raw_inputs"
    raw = table.get("raw_inputs", []) if isinstance(table, dict) else None
    if not isinstance(raw, list) or set(table) - {"raw_inputs"} or not all(isinstance(t, str) for t in raw):
        raise WorkflowError(f'{here} must be a list of "node id.input name" strings, e.g. ["6.text", "3.cfg"].')
    targets = tuple(_parse_target(item, graph, here) for item in raw)
    for target in targets:
        owner = next((p.name for p in params if target in p.targets), None)
        if owner is not None:
            raise WorkflowError(f"{here}: {target} is the target of option {owner}; it is set through that option.")
    return targets


LOCALIZED_KEYS = ("name", "description", "choices")  # each as <key>_<locale>, e.g. name_ja, choices_zh-CN


def _localized(
    table: Mapping[str, Any], here: str, choices: tuple[str, ...], problems: list[str]
) -> tuple[Localized, ...]:
    """Read a table's name_<locale>, description_<locale> (and choices_<locale> for an option with `choices`),
    checked as Discord checks them; what is wrong goes to `problems`."""
    for key in table:
        kind, _, locale = str(key).partition("_")
        if kind in LOCALIZED_KEYS and locale and key != "choices_from" and locale not in LOCALES:
            problems.append(f"{here} {key}: unknown locale {locale!r} (use {' or '.join(LOCALES)}).")
    found = []
    for locale in LOCALES:
        name, description, labels = (table.get(f"{key}_{locale}") for key in LOCALIZED_KEYS)
        if name is not None:
            problems += _name_problems(name := str(name), f"{here} name_{locale}")
        if description is not None:
            problems += _description_problems(description := str(description), f"{here} description_{locale}")
        if labels is not None:
            labels = _choice_labels(labels, choices, f"{here} choices_{locale}", problems)
        if name is not None or description is not None or labels:
            found.append(Localized(locale, name, description, labels or ()))
    return tuple(found)


def _choice_labels(raw: Any, choices: tuple[str, ...], here: str, problems: list[str]) -> tuple[str, ...]:
    """An option's choice labels in one locale: one for each of its `choices`, in the same order."""
    if not choices:
        problems.append(f"{here}: only an option with choices = [...] can have its choices translated.")
        return ()
    labels = tuple(str(label) for label in _as_list(raw))
    if len(labels) != len(choices):
        problems.append(
            f"{here}: needs one label per choice ({len(choices)}, in the same order); it has {len(labels)}."
        )
        return ()
    if (bad := next((label for label in labels if not 1 <= len(label) <= MAX_CHOICE), None)) is not None:
        problems.append(f"{here}: {bad[:40]!r} must be 1-{MAX_CHOICE} characters (Discord's limit).")
        return ()
    return labels


def _same_localized_names(params: list[Param], where: str) -> list[str]:
    """Options that members of one locale would see under the same name (Discord refuses the whole command)."""
    problems = []
    for locale in LOCALES:
        seen: dict[str, str] = {}
        for param in params:
            shown = param.name_for(locale)
            if shown in seen:
                problems.append(
                    f"{where}: parameters {seen[shown]!r} and {param.name!r} are both named {shown!r} in {locale}."
                )
            seen.setdefault(shown, param.name)
    return problems


def load_graph(path: Path) -> Prompt:
    """Read an API-format workflow; a UI-format export is refused with the fix."""
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = {"line": exc.lineno, "column": exc.colno, "error": exc.msg}
        raise WorkflowError(NOT_JSON.format(file=path.name, **where)) from None
    except RecursionError:
        raise WorkflowError(TOO_DEEP.format(file=path.name)) from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(UI_FORMAT.format(file=path.name))
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # a saved POST /prompt body
    if not isinstance(data, dict) or not data:
        raise WorkflowError(NOT_API_FORMAT.format(file=path.name))
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WorkflowError(NO_CLASS_TYPE.format(file=path.name, node_id=cap(str(node_id), 40)))
        if not isinstance(node.get("inputs", {}), dict):
            raise WorkflowError(BAD_INPUTS.format(file=path.name, node_id=cap(str(node_id), 40)))
        node.setdefault("inputs", {})
    return data


def _read_text(path: Path) -> str:
    """A text file as UTF-8, with or without the byte order mark some Windows editors write."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise WorkflowError(NOT_FOUND.format(file=path.name)) from None
    except UnicodeDecodeError as exc:
        raise WorkflowError(NOT_UTF8.format(file=path.name, byte=exc.start + 1)) from None
    except OSError as exc:
        raise WorkflowError(UNREADABLE.format(file=path.name, reason=str(exc.strerror or exc))) from None


def _parse_param(name: str, spec: Any, graph: Prompt, where: str, problems: list[str]) -> Param:
    here = f"{where}: parameter {name!r}"
    if not isinstance(spec, dict):
        raise WorkflowError(f"{here} must be a table.")
    _check_name(name, here)
    try:
        ptype = ParamType(str(spec.get("type", "text")))
    except ValueError:
        kinds = ", ".join(t.value for t in ParamType)
        raise WorkflowError(f"{here}: unknown type {spec.get('type')!r} (use one of: {kinds}).") from None
    description = str(spec.get("description") or name)
    _check_description(description, here)
    targets = tuple(_parse_target(t, graph, here) for t in _as_list(spec.get("target", spec.get("targets"))))
    if not targets:
        raise WorkflowError(f'{here} has no target (e.g. target = "6.text": node id, dot, input name).')
    max_length = spec.get("max_length")
    if ptype in (ParamType.TEXT, ParamType.MULTILINE):
        max_length = min(int(max_length or MAX_TEXT_LENGTH), MAX_TEXT_LENGTH)
    choices = tuple(str(c) for c in _as_list(spec.get("choices")))
    choices_from = spec.get("choices_from")
    if ptype is ParamType.CHOICE:
        if bool(choices) == bool(choices_from):
            raise WorkflowError(
                f'{here}: a choice needs either choices = ["a", "b"] or choices_from = "Class.input" '
                '(e.g. "CheckpointLoaderSimple.ckpt_name").'
            )
        if choices_from is not None and not re.fullmatch(r"\S.*\.\w+", str(choices_from)):
            raise WorkflowError(f'{here}: choices_from must look like "CheckpointLoaderSimple.ckpt_name".')
        if too_long := next((c for c in choices if len(c) > MAX_CHOICE), None):
            raise WorkflowError(
                f"{here}: a choice may have at most {MAX_CHOICE} characters (Discord's limit); "
                f"{too_long[:40]!r}… has {len(too_long)}."
            )
    elif choices or choices_from:
        raise WorkflowError(f'{here}: choices only apply to type = "choice".')
    param = Param(
        name=name,
        type=ptype,
        description=description,
        targets=targets,
        required=bool(spec.get("required", False)),
        default=spec.get("default"),
        min=spec.get("min"),
        max=spec.get("max"),
        step=spec.get("step"),
        max_length=max_length,
        choices=choices,
        choices_from=str(choices_from) if choices_from else None,
        localized=_localized(spec, here, choices, problems),
    )
    if param.default is not None:
        try:
            param.coerce(param.default)
        except Exception as exc:
            raise WorkflowError(f"{here}: default {param.default!r} is not valid: {exc}") from None
    return param


def _parse_target(raw: Any, graph: Prompt, here: str) -> Target:
    """A target by node id ("6.text" or {node, input}), by node title or by class when only one node has it."""
    if isinstance(raw, str) and "." in raw:
        node_id, input_name = raw.rsplit(".", 1)  # node ids may contain ':' (subgraphs), inputs never '.'
        target = Target(node_id, input_name)
    elif isinstance(raw, dict) and "input" in raw and len(raw.keys() & {"node", "title", "class"}) == 1:
        if "node" in raw:
            node_id = str(raw["node"])
        elif "title" in raw:
            node_id = _unique(graph, here, "title", str(raw["title"]), lambda n: (n.get("_meta") or {}).get("title"))
        else:
            node_id = _unique(graph, here, "class", str(raw["class"]), lambda n: n.get("class_type"))
        target = Target(node_id, str(raw["input"]))
    else:
        raise WorkflowError(
            f'{here}: target {raw!r} must be "6.text" (node id, dot, input name), or a table with input and '
            "one of node, title or class."
        )
    node = graph.get(target.node_id)
    if node is None:
        raise WorkflowError(f"{here}: target node {target.node_id!r} is not in the workflow.")
    value = node["inputs"].get(target.input, _MISSING)
    if value is _MISSING:
        raise WorkflowError(
            f"{here}: node {target.node_id} ({node['class_type']}) has no input {target.input!r}; "
            f"it has: {', '.join(node['inputs']) or 'none'}."
        )
    if isinstance(value, list):
        raise WorkflowError(f"{here}: input {target} is linked to another node, not a value it could set.")
    return target


_MISSING = object()


def _unique(graph: Prompt, here: str, key: str, wanted: str, get: Callable[[dict[str, Any]], Any]) -> str:
    found = [node_id for node_id, node in graph.items() if get(node) == wanted]
    if len(found) != 1:
        which = f"nodes {', '.join(found)}" if found else "no node"
        raise WorkflowError(f"{here}: {key} {wanted!r} matches {which}; it must match exactly one (or use a node id).")
    return found[0]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _check_name(name: str, here: str) -> None:
    if problems := _name_problems(name, here):
        raise WorkflowError(problems[0])


def _name_problems(name: str, here: str) -> list[str]:
    """Discord's rule for command and option names, in any language: lowercase letters, digits, - and _."""
    if not NAME_RE.match(name) or name.lower() != name:
        return [f"{here} {name!r} must be 1-32 lowercase letters, digits, '-' or '_'."]
    return []


def _check_description(text: str, here: str) -> None:
    if problems := _description_problems(text, here):
        raise WorkflowError(problems[0])


def _description_problems(text: str, here: str) -> list[str]:
    if not 1 <= len(text) <= MAX_DESCRIPTION:
        return [f"{here}: description must be 1-{MAX_DESCRIPTION} characters."]
    return []
