"""Guess the command options of a workflow that has no binding file, and write that guess as a binding.

Everything is found by following links from the samplers, never by node id, order or title: exports use
arbitrary ids, and titles lie (the positive and negative encoders often share one, or it is in another language).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from core.comfyui.types import Prompt
from core.text import cap
from core.workflows.model import MAX_DESCRIPTION, MAX_TEXT_LENGTH, NAME_RE, Param, ParamType, Target

PROMPT_LENGTH = 1500
LYRICS_LENGTH = 3000
SIZE_MIN, SIZE_MAX, SIZE_STEP = 64, 2048, 8
DURATION_MIN, DURATION_MAX = 1, 600
INSTRUMENTAL = "[instrumental]"  # ACE-Step's own marker for a song without vocals

# Samplers and the input holding their seed (SamplerCustomAdvanced gets its seed from the `noise` link).
SAMPLER_SEEDS: dict[str, str | None] = {
    "KSampler": "seed",
    "KSamplerAdvanced": "noise_seed",
    "SamplerCustom": "noise_seed",
    "SamplerCustomAdvanced": None,
}
# Guiders feeding SamplerCustomAdvanced: which inputs carry the positive and the negative conditioning.
GUIDERS: dict[str, dict[str, tuple[str, ...]]] = {
    "BasicGuider": {"positive": ("conditioning",), "negative": ()},
    "CFGGuider": {"positive": ("positive",), "negative": ("negative",)},
    "DualCFGGuider": {"positive": ("cond1", "cond2"), "negative": ("negative",)},
}
# Text encoders of ComfyUI 0.3.64 and their prompt inputs; every listed input receives the same prompt.
ENCODERS: dict[str, tuple[str, ...]] = {
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "CLIPTextEncodeSDXLRefiner": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
    "CLIPTextEncodeHiDream": ("clip_l", "clip_g", "t5xxl", "llama"),
    "CLIPTextEncodeHunyuanDiT": ("bert", "mt5xl"),
    "CLIPTextEncodePixArtAlpha": ("text",),
    "CLIPTextEncodeLumina2": ("user_prompt",),
    "TextEncodeHunyuanVideo_ImageToVideo": ("prompt",),
    "TextEncodeQwenImageEdit": ("prompt",),
    "TextEncodeQwenImageEditPlus": ("prompt",),
    "PhotoMakerEncode": ("text",),
}
# ACE-Step 1.0 and 1.5 encoders: tags and lyrics, and for 1.5 also the song's seed, tempo, length and key.
ACE_ENCODERS = ("TextEncodeAceStepAudio", "TextEncodeAceStepAudio1.5")
ACE15_NUMBERS = {"bpm": ("Tempo in beats per minute", 10, 300)}
ACE15_CHOICES = {
    "timesignature": "Beats per bar (time signature)",
    "language": "Language of the lyrics",
    "keyscale": "Key and scale (e.g. C major)",
}
# Loaders whose input is a file in ComfyUI's input folder: the member attaches one, the bot uploads it.
UPLOAD_LOADERS: dict[str, tuple[str, ParamType]] = {
    "LoadImage": ("image", ParamType.IMAGE),
    "LoadImageMask": ("image", ParamType.IMAGE),
    "LoadAudio": ("audio", ParamType.AUDIO),
    "LoadVideo": ("file", ParamType.VIDEO),
    "VHS_LoadVideo": ("video", ParamType.VIDEO),
    "VHS_LoadAudioUpload": ("audio", ParamType.AUDIO),
}
# Its output no longer depends on the text, so an encoder reached only through it needs no option.
ZERO_OUT = "ConditioningZeroOut"
# Link inputs that carry conditioning on nodes without positive/negative inputs (FluxGuidance, Combine, ...).
CONDITIONING_INPUT = re.compile(r"cond(itioning)?(_\w+|\d+)?")
# Custom encoders not in ENCODERS: a node with a `clip` link whose literal strings are named like a prompt.
PROMPT_INPUT = re.compile(r".*(text|prompt).*", re.IGNORECASE)
# Latent inputs of nodes that pass a latent through unchanged in size (RepeatLatentBatch, SetLatentNoiseMask, ...).
LATENT_INPUTS = ("samples", "latent", "latent_image")

T = TypeVar("T")

SEED_DESCRIPTION = "Random seed; leave empty for a new one (shown with the result)"


def detect_params(graph: Prompt) -> tuple[Param, ...]:
    """Guess the command options of an API-format workflow that has no binding file."""
    samplers = [node_id for node_id, node in graph.items() if _is_sampler(node)]
    if samplers:
        positive = _dedupe(e for s in samplers for e in _encoders(graph, s, "positive"))
        negative = [
            e for e in _dedupe(e for s in samplers for e in _encoders(graph, s, "negative")) if e not in positive
        ]
    else:
        # Without a sampler nothing tells positive from negative; a lone encoder can only be the prompt.
        found = [node_id for node_id, node in graph.items() if _encoder_inputs(node) is not None]
        positive, negative = (found if len(found) == 1 else []), []

    params: list[Param] = []
    params += _prompt_params(graph, positive)
    params += _file_params(graph)
    taken = {t for p in params for t in p.targets}
    params += _negative_params(graph, negative, taken)
    ace15 = [e for e in positive if graph[e]["class_type"] == ACE_ENCODERS[1]]
    seeds = _dedupe([*(t for s in samplers for t in _seed_targets(graph, s)), *_inputs(graph, ace15, "seed", _is_int)])
    if seeds:
        params.append(Param("seed", ParamType.SEED, SEED_DESCRIPTION, tuple(seeds)))
    params += _latent_params(graph, samplers, _inputs(graph, ace15, "duration", _is_number))
    params += _ace15_params(graph, ace15)
    params.sort(key=lambda p: not p.required)  # Discord wants required options first
    return tuple(params)


def binding_toml(name: str, description: str, params: Sequence[Param]) -> str:
    """Write the options as a binding file an admin can save (valid TOML that loader.load_workflow accepts)."""
    if not NAME_RE.match(name) or name != name.lower():
        raise ValueError(f"command name {name!r} must be 1-32 lowercase letters, digits, '-' or '_'")
    if not 1 <= len(description) <= MAX_DESCRIPTION:
        raise ValueError(f"command description must be 1-{MAX_DESCRIPTION} characters")
    lines = [
        "# Options detected automatically. Save this next to the workflow JSON under the same name",
        "# (image.json -> image.toml) to make them explicit, then edit freely: each [params.NAME] is a",
        '# slash-command option and `target` is "node id.input name".',
        "# Without `default` the workflow's own value is used.",
        "",
        "[command]",
        f"name = {_toml_value(name)}",
        f"description = {_toml_value(description)}",
    ]
    for param in params:
        lines += ["", f"[params.{_toml_key(param.name)}]"]
        fields: dict[str, Any] = {
            "type": param.type.value,
            "description": param.description,
            "required": param.required or None,
            "default": param.default,
            "min": param.min,
            "max": param.max,
            "step": param.step,
            "max_length": param.max_length,
            "choices": list(param.choices) or None,
            "choices_from": param.choices_from,
        }
        lines += [f"{key} = {_toml_value(value)}" for key, value in fields.items() if value is not None]
        targets = [_toml_target(t) for t in param.targets]
        lines.append(f"target = {targets[0] if len(targets) == 1 else '[' + ', '.join(targets) + ']'}")
    return "\n".join(lines) + "\n"


# --- graph walking -------------------------------------------------------------------------------------------


def _link(graph: Prompt, value: Any) -> str | None:
    """The node id a link input points at, or None for a literal value or a dangling link."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and str(value[0]) in graph:
        return str(value[0])
    return None


def _links(graph: Prompt, node: dict[str, Any]) -> dict[str, str]:
    found = {name: _link(graph, value) for name, value in node.get("inputs", {}).items()}
    return {name: node_id for name, node_id in found.items() if node_id is not None}


def _is_sampler(node: dict[str, Any]) -> bool:
    if node["class_type"] in SAMPLER_SEEDS:
        return True
    # A custom sampler ("KSampler (Efficient)" and the like): takes a positive link and has its own seed.
    inputs = node.get("inputs", {})
    return isinstance(inputs.get("positive"), list) and any(_is_int(inputs.get(n)) for n in ("seed", "noise_seed"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dedupe(items: Iterable[T]) -> list[T]:
    return list(dict.fromkeys(items))


def _encoder_inputs(node: dict[str, Any]) -> tuple[str, ...] | None:
    """The prompt inputs of a text encoder node, or None when the node is not one."""
    cls, inputs = node["class_type"], node.get("inputs", {})
    if cls in ACE_ENCODERS:
        return ("tags", "lyrics")
    if cls in ENCODERS:
        return ENCODERS[cls]
    if not isinstance(inputs.get("clip"), list) or any(CONDITIONING_INPUT.fullmatch(n) for n in inputs):
        return None
    names = tuple(n for n, v in inputs.items() if isinstance(v, str) and PROMPT_INPUT.fullmatch(n))
    return names or None


def _encoders(graph: Prompt, sampler_id: str, role: str) -> list[str]:
    """The text encoders whose conditioning reaches the sampler's `role` (positive or negative) input."""
    sampler = graph[sampler_id]
    links = _links(graph, sampler)
    if "guider" in links:
        guider = graph[links["guider"]]
        guider_links = _links(graph, guider)
        names = GUIDERS.get(guider["class_type"], {}).get(role)
        if names is None:  # an unknown guider: its role inputs, or for the positive anything conditioning-like
            names = _role_inputs(guider_links, role) or (_cond_inputs(guider_links) if role == "positive" else [])
        starts = [guider_links[n] for n in names if n in guider_links]
    else:
        starts = [links[role]] if role in links else []
    return _trace(graph, starts, role)


def _role_inputs(links: dict[str, str], role: str) -> list[str]:
    return [n for n in links if n == role or n.startswith(role + "_")]  # positive_A, positive_NEW, ...


def _cond_inputs(links: dict[str, str]) -> list[str]:
    return [n for n in links if CONDITIONING_INPUT.fullmatch(n)]


def _trace(graph: Prompt, starts: list[str], role: str) -> list[str]:
    """Walk conditioning links upstream from `starts` to the encoders, depth first, each node once."""
    found: list[str] = []
    seen: set[str] = set()
    stack = list(reversed(starts))
    while stack:
        node_id = stack.pop()
        if node_id in seen:  # shared branches and cycles in a malformed export
            continue
        seen.add(node_id)
        node = graph[node_id]
        if _encoder_inputs(node) is not None:
            found.append(node_id)
            continue
        if node["class_type"] == ZERO_OUT:
            continue
        links = _links(graph, node)
        names = _role_inputs(links, role) or _cond_inputs(links)
        stack.extend(links[n] for n in reversed(names))
    return found


def _literal(graph: Prompt, node_id: str, name: str, accept: Any) -> Target | None:
    """The input holding the value: the node's own literal, or that of a one-input primitive node it links to."""
    value = graph[node_id].get("inputs", {}).get(name)
    if accept(value):
        return Target(node_id, name)
    source = _link(graph, value)
    if source is not None:
        inputs = graph[source].get("inputs", {})
        if len(inputs) == 1:  # PrimitiveString, PrimitiveInt and similar value nodes
            (only, only_value), *_ = inputs.items()
            if accept(only_value):
                return Target(source, only)
    return None


def _texts(graph: Prompt, encoders: Iterable[str], names: Iterable[str] | None = None) -> list[Target]:
    found: list[Target] = []
    for node_id in encoders:
        for name in names or _encoder_inputs(graph[node_id]) or ():
            target = _literal(graph, node_id, name, lambda v: isinstance(v, str))
            if target is not None:
                found.append(target)
    return _dedupe(found)


def _seed_targets(graph: Prompt, sampler_id: str) -> list[Target]:
    node = graph[sampler_id]
    inputs = node.get("inputs", {})
    name = SAMPLER_SEEDS.get(node["class_type"], "seed" if "seed" in inputs else "noise_seed")
    if name is not None:
        target = _literal(graph, sampler_id, name, _is_int)
        return [target] if target else []
    noise = _link(graph, inputs.get("noise"))  # SamplerCustomAdvanced: RandomNoise (DisableNoise has no seed)
    if noise is None:
        return []
    for candidate in ("noise_seed", "seed"):
        target = _literal(graph, noise, candidate, _is_int)
        if target:
            return [target]
    return []


def _inputs(graph: Prompt, nodes: Iterable[str], name: str, accept: Any) -> list[Target]:
    """The `name` input of each node (or the primitive it links to) whose value passes `accept`."""
    return _dedupe(t for t in (_literal(graph, n, name, accept) for n in nodes) if t is not None)


def _latent_source(graph: Prompt, sampler_id: str) -> str | None:
    """The node that sets the sampler's latent size or length, found through size-preserving latent nodes."""
    node_id = _link(graph, graph[sampler_id].get("inputs", {}).get("latent_image"))
    seen: set[str] = set()
    while node_id is not None and node_id not in seen:
        seen.add(node_id)
        node = graph[node_id]
        inputs = node.get("inputs", {})
        if _is_sampler(node):
            return None  # a second pass: its size is the first sampler's
        if _is_int(inputs.get("width")) and _is_int(inputs.get("height")):
            return node_id
        if _literal(graph, node_id, "seconds", _is_number):  # ACE-Step's length, often from a primitive node
            return node_id
        node_id = next((_link(graph, inputs[n]) for n in LATENT_INPUTS if _link(graph, inputs.get(n))), None)
    return None


def _after_a_sampler(graph: Prompt, node_id: str) -> bool:
    """Whether the node depends on a sampler's output (a hires-fix LatentUpscale): its size is not the base size."""
    stack, seen = list(_links(graph, graph[node_id]).values()), {node_id}
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if _is_sampler(graph[current]):
            return True
        stack.extend(_links(graph, graph[current]).values())
    return False


# --- params ----------------------------------------------------------------------------------------------------


def _prompt_params(graph: Prompt, encoders: list[str]) -> list[Param]:
    params: list[Param] = []
    texts = _texts(graph, (e for e in encoders if graph[e]["class_type"] not in ACE_ENCODERS))
    if texts:
        params.append(
            Param(
                "prompt",
                ParamType.TEXT,
                "What to generate (the positive prompt)",
                tuple(texts),
                required=True,
                max_length=PROMPT_LENGTH,
            )
        )
    ace = [e for e in encoders if graph[e]["class_type"] in ACE_ENCODERS]
    tags = _texts(graph, ace, ("tags",))
    if tags:
        description = "Style tags, comma separated (e.g. lofi, jazz, mellow piano, 80 bpm)"
        params.append(Param("tags", ParamType.TEXT, description, tuple(tags), required=True, max_length=PROMPT_LENGTH))
    lyrics = _texts(graph, ace, ("lyrics",))
    if lyrics:
        current = _current(graph, lyrics[0])
        params.append(
            Param(
                "lyrics",
                ParamType.MULTILINE,
                "Lyrics with [verse]/[chorus] tags, or [instrumental]",
                tuple(lyrics),
                # An empty value would be refused when the option is left out; ACE-Step reads this as no vocals.
                default=None if current.strip() else INSTRUMENTAL,
                max_length=_text_limit(LYRICS_LENGTH, current),
            )
        )
    return params


def _negative_params(graph: Prompt, encoders: list[str], taken: set[Target]) -> list[Param]:
    params: list[Param] = []
    plain = [e for e in encoders if graph[e]["class_type"] not in ACE_ENCODERS]
    texts = [t for t in _texts(graph, plain) if t not in taken]
    if texts:
        limit = _text_limit(PROMPT_LENGTH, _current(graph, texts[0]))
        description = "What the result should avoid (the negative prompt)"
        params.append(Param("negative", ParamType.TEXT, description, tuple(texts), max_length=limit))
    # A negative ACE-Step encoder's tags steer away from a style; its lyrics mean nothing, so only tags.
    ace = [e for e in encoders if graph[e]["class_type"] in ACE_ENCODERS]
    tags = [t for t in _texts(graph, ace, ("tags",)) if t not in taken]
    if tags:
        limit = _text_limit(PROMPT_LENGTH, _current(graph, tags[0]))
        description = "Style tags the music should avoid, comma separated"
        params.append(Param("negative_tags", ParamType.TEXT, description, tuple(tags), max_length=limit))
    return params


def _file_params(graph: Prompt) -> list[Param]:
    """One attachment option per loader of an uploaded file: image, image_2, audio, video, ..."""
    params: list[Param] = []
    for node_id, node in graph.items():
        found = UPLOAD_LOADERS.get(node["class_type"])
        if found is None or not isinstance(node.get("inputs", {}).get(found[0]), str):
            continue
        name, kind = found[1].value, found[1]
        count = sum(p.type is kind for p in params)
        title = (node.get("_meta") or {}).get("title")
        description = f"The {kind.value} file to use" + (f" ({title})" if title and title != node["class_type"] else "")
        params.append(
            Param(
                name if not count else f"{name}_{count + 1}",
                kind,
                cap(description, MAX_DESCRIPTION),
                (Target(node_id, found[0]),),
                required=True,  # the exported file is the admin's own and is rarely on the server as well
            )
        )
    return params


def _ace15_params(graph: Prompt, encoders: list[str]) -> list[Param]:
    """ACE-Step 1.5's tempo and its lists (time signature, language, key), from the server's own lists."""
    params: list[Param] = []
    for name, (description, usual_low, usual_high) in ACE15_NUMBERS.items():
        targets = _inputs(graph, encoders, name, _is_int)
        if targets:
            values = [graph[t.node_id]["inputs"][t.input] for t in targets]
            low, high = min([usual_low, *values]), max([usual_high, *values])
            params.append(Param(name, ParamType.INT, description, tuple(targets), min=low, max=high))
    for name, description in ACE15_CHOICES.items():
        targets = _inputs(graph, encoders, name, lambda v: isinstance(v, str) and v != "")
        if targets:
            source = f"{ACE_ENCODERS[1]}.{name}"
            params.append(Param(name, ParamType.CHOICE, description, tuple(targets), choices_from=source))
    return params


def _latent_params(graph: Prompt, samplers: list[str], durations: list[Target] | None = None) -> list[Param]:
    sources = _dedupe(n for n in (_latent_source(graph, s) for s in samplers) if n is not None)
    sources = [n for n in sources if not _after_a_sampler(graph, n)]
    sized = [n for n in sources if _is_int(graph[n]["inputs"].get("width"))]
    timed = [n for n in sources if n not in sized]
    params: list[Param] = []
    for axis in ("width", "height"):
        if sized:
            targets = tuple(Target(n, axis) for n in sized)
            low, high, step = _size_bounds([graph[n]["inputs"][axis] for n in sized])
            description = f"{axis.capitalize()} in pixels"
            params.append(Param(axis, ParamType.INT, description, targets, min=low, max=high, step=step))
    # ACE-Step 1.5's encoder is told the length too; one option sets it there and on the latent.
    timed_targets: list[Target] = _dedupe([*_inputs(graph, timed, "seconds", _is_number), *(durations or ())])
    if timed_targets:
        values = [graph[t.node_id]["inputs"][t.input] for t in timed_targets]
        low, high = min([DURATION_MIN, *values]), max([DURATION_MAX, *values])
        targets = tuple(timed_targets)
        params.append(Param("duration", ParamType.FLOAT, "Length in seconds", targets, min=low, max=high))
    return params


def _size_bounds(values: list[int]) -> tuple[int, int, int]:
    """Min, max and step around the usual 64-2048 by 8, widened so the workflow's own sizes stay valid."""
    low = min([SIZE_MIN, *(v - v % SIZE_STEP for v in values)])
    high = max([SIZE_MAX, *values])
    step = next(s for s in (SIZE_STEP, 4, 2, 1) if all((v - low) % s == 0 for v in values))
    return low, high, step


def _current(graph: Prompt, target: Target) -> str:
    return str(graph[target.node_id]["inputs"][target.input])


def _text_limit(usual: int, current: str) -> int:
    # The workflow's own text is used when the option is left out, so it must fit (up to Discord's cap).
    return min(MAX_TEXT_LENGTH, max(usual, len(current)))


# --- TOML ------------------------------------------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else f"{'-' if value < 0 else ''}inf")
        )
    if isinstance(value, str):
        return '"' + "".join(_escape(ch) for ch in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {value!r} in a binding file")


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    return f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch  # TOML forbids raw control characters


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_target(target: Target) -> str:
    if "." in target.input:  # "node.input" splits at the last dot, so such an input needs the table form
        return f"{{ node = {_toml_value(target.node_id)}, input = {_toml_value(target.input)} }}"
    return _toml_value(str(target))
