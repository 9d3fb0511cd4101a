"""Read node input specs from a server's /object_info, whichever of ComfyUI's two option-list forms they use.

Legacy nodes describe a list input as `[["a", "b"], {...}]`; V3 nodes as `["COMBO", {"options": ["a", "b"]}]`.
A `COMBO` without `options` is filled by the editor from another route (e.g. `remote`), so its values are unknown.
"""

from __future__ import annotations

from typing import Any

from core.text import cap

SECTIONS = ("required", "optional", "hidden")


def input_spec(object_info: dict[str, Any], class_type: str, input_name: str) -> Any | None:
    """The spec of one declared input (`[type, options]`), or None when the class or input is not there."""
    info = object_info.get(class_type)
    inputs = info.get("input") if isinstance(info, dict) else None
    if not isinstance(inputs, dict):
        return None
    for section in SECTIONS:
        declared = inputs.get(section)
        if isinstance(declared, dict) and input_name in declared:
            return declared[input_name]
    return None


def declared_inputs(info: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every input a class declares (name -> spec) and the names of the required ones."""
    found = info.get("input")
    inputs: dict[str, Any] = found if isinstance(found, dict) else {}
    declared: dict[str, Any] = {}
    for section in reversed(SECTIONS):  # a name declared twice counts as required, as ComfyUI reads it
        part = inputs.get(section)
        if isinstance(part, dict):
            declared.update(part)
    required = inputs.get("required")
    return declared, list(required) if isinstance(required, dict) else []


def input_kind(spec: Any) -> str | None:
    """The declared type of an input: "COMBO" for an option list in either form, else "INT", "STRING", ...."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return None
    if isinstance(spec[0], (list, tuple)):
        return "COMBO"
    return spec[0] if isinstance(spec[0], str) else None


def input_config(spec: Any) -> dict[str, Any]:
    """The options dict of a spec (`min`, `max`, `options`, ...), {} when it has none."""
    if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1]
    return {}


def listed_options(spec: Any) -> list[Any] | None:
    """The raw option list of an input in either form, `[[...], {...}]` or `["COMBO", {"options": [...]}]`."""
    if input_kind(spec) != "COMBO":
        return None
    listed = spec[0] if isinstance(spec[0], (list, tuple)) else input_config(spec).get("options")
    return list(listed) if isinstance(listed, (list, tuple)) else None


def combo_options(spec: Any) -> list[str] | None:
    """The values an option-list input accepts, in either form; None when it is not one or its list is unknown."""
    listed = listed_options(spec)
    return None if listed is None else [str(v) for v in listed]


def same_path(name: str) -> str:
    """A model path with `/` separators, for matching a Windows export against a Linux server and back."""
    return name.replace("\\", "/")


def match_option(value: Any, options: list[str]) -> str | None:
    """The server's own spelling of `value`: exact, or the same path written with the other separator."""
    text = str(value)
    if text in options:
        return text
    wanted = same_path(text)
    found = [o for o in options if same_path(o) == wanted]
    return found[0] if len(found) == 1 else None


MAX_QUOTED = 100


def quoted(value: Any) -> str:
    """A value for a message on one line: like repr, but a Windows path keeps single backslashes; cut when long."""
    text = repr(value).replace("\\\\", "\\") if isinstance(value, str) else repr(value)
    return cap(text[:-1], MAX_QUOTED - 1) + text[-1]  # the closing quote stays
