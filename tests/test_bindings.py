"""Every parameter type and target form, rendered into golden JSON; random values never break rendering."""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.comfyui.object_info import combo_options, input_config, input_kind, input_spec
from core.errors import BotError, InvalidInput, WorkflowError
from core.workflows import (
    FILE_TYPES,
    InputFile,
    Param,
    ParamType,
    Workflow,
    load_catalog,
    load_workflow,
    validate_graph,
    validate_workflow,
)
from core.workflows.model import EXTENSIONS, MAX_SEED, MAX_UPLOAD_BYTES, Localized
from tests.conftest import WORKFLOWS

GRAPH = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "old", "clip": ["1", 1]}, "_meta": {"title": "Positive"}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}, "_meta": {"title": "Negative"}},
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "5": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 0,
            "steps": 20,
            "cfg": 8.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["1", 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
        },
    },
    "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
    "7": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "8": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}},
    "9": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 1,
            "steps": 4,
            "cfg": 1.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 0.5,
            "model": ["1", 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["5", 0],
        },
    },
}
BINDING = """
[command]
name = "every"
description = "All parameter types"

[params.prompt]
type = "text"
required = true
max_length = 50
target = "2.text"

[params.story]
type = "multiline"
target = { title = "Negative", input = "text" }

[params.size]
type = "int"
min = 64
max = 1024
step = 64
target = [{ class = "EmptyLatentImage", input = "width" }, { node = "4", input = "height" }]

[params.cfg]
type = "float"
min = 1
max = 20
default = 7.5
target = "5.cfg"

[params.sharp]
type = "bool"
default = false
target = "5.denoise"

[params.seed]
type = "seed"
target = ["5.seed", "9.seed"]

[params.sampler]
type = "choice"
choices = ["euler", "dpmpp_2m", "uni_pc"]
target = "5.sampler_name"

[params.model]
type = "choice"
choices_from = "CheckpointLoaderSimple.ckpt_name"
target = "1.ckpt_name"

[params.photo]
type = "image"
target = "7.image"
"""


@pytest.fixture(scope="module")
def every(tmp_path_factory: pytest.TempPathFactory) -> Workflow:
    folder: Path = tmp_path_factory.mktemp("every")
    (folder / "every.json").write_text(json.dumps(GRAPH))
    (folder / "every.toml").write_text(BINDING)
    return load_workflow(folder / "every.toml")


def test_every_type_and_target_form_renders_golden_json(every: Workflow) -> None:
    assert [(p.name, p.type) for p in every.params] == [
        ("prompt", ParamType.TEXT),
        ("story", ParamType.MULTILINE),
        ("size", ParamType.INT),
        ("cfg", ParamType.FLOAT),
        ("sharp", ParamType.BOOL),
        ("seed", ParamType.SEED),
        ("sampler", ParamType.CHOICE),
        ("model", ParamType.CHOICE),
        ("photo", ParamType.IMAGE),
    ]
    values = every.resolve(
        {
            "prompt": "a cat",
            "story": "line 1\nline 2",
            "size": "768",
            "sharp": "yes",
            "seed": 99,
            "sampler": "uni_pc",
            "model": "b.safetensors",
            "photo": InputFile("cat.png", b"\x89PNG"),
        }
    )
    assert values["photo"] == InputFile("cat.png", b"\x89PNG")
    values["photo"] = "discord-bot/cat.png"  # what the engine puts there once it has uploaded the file
    expected = copy.deepcopy(GRAPH)
    expected["2"]["inputs"]["text"] = "a cat"
    expected["3"]["inputs"]["text"] = "line 1\nline 2"
    expected["4"]["inputs"].update(width=768, height=768)
    expected["5"]["inputs"].update(cfg=7.5, denoise=True, seed=99, sampler_name="uni_pc")
    expected["9"]["inputs"]["seed"] = 99
    expected["1"]["inputs"]["ckpt_name"] = "b.safetensors"
    expected["7"]["inputs"]["image"] = "discord-bot/cat.png"
    assert every.render(values) == expected


def test_defaults_come_from_the_binding_or_the_workflow(every: Workflow) -> None:
    values = every.resolve({"prompt": "a cat", "seed": 5})
    assert values == {
        "prompt": "a cat",
        "story": "",
        "size": 512,
        "cfg": 7.5,
        "sharp": False,
        "seed": 5,
        "sampler": "euler",
        "model": "a.safetensors",
        "photo": "example.png",
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"sampler": "heun"}, "sampler must be one of: euler, dpmpp_2m, uni_pc (got 'heun')."),
        ({"size": 2048}, "size must be between 64 and 1024 (got 2048)."),
        ({"cfg": float("inf")}, "cfg must be a number (got inf)."),
        ({"size": 96}, "size must be a multiple of 64 (got 96)."),
        ({"cfg": "hot"}, "cfg must be a number (got 'hot')."),
        ({"sharp": "maybe"}, "sharp must be true or false (got 'maybe')."),
        (
            {"photo": InputFile("song.mp3", b"ID3")},
            "photo must be an image file (png, jpg, jpeg, webp, gif, bmp); got 'song.mp3'.",
        ),
        ({"photo": 5}, "photo must be an attached file."),
    ],
)
def test_each_type_refuses_bad_values_clearly(every: Workflow, given: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        every.resolve({"prompt": "a cat", **given})
    assert caught.value.user_message == message


def _any_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.text(max_size=80),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.lists(st.integers(), max_size=3),
        st.builds(InputFile, st.sampled_from(["a.png", "b.wav", "c.txt", "d"]), st.binary(max_size=8)),
    )


def _server_info(object_info: dict[str, Any]) -> dict[str, Any]:
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = [
        "a.safetensors",
        "b.safetensors",
        "v1-5-pruned-emaonly-fp16.safetensors",
        "ace_step_v1_3.5b.safetensors",
    ]
    for loader, name in (("LoadImage", "image"), ("LoadAudio", "audio")):  # the upload below, as the server lists it
        info[loader]["input"]["required"][name][0].append("discord-bot/up.png")
    return info


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_values_render_or_are_refused_clearly(
    data: st.DataObject, every: Workflow, object_info: dict[str, Any]
) -> None:
    workflows = [every, *load_catalog(WORKFLOWS).workflows.values()]
    workflow = data.draw(st.sampled_from(workflows))
    names = [p.name for p in workflow.params]
    given_values = data.draw(st.dictionaries(st.sampled_from(names), _any_value(), max_size=len(names)))
    try:
        values = workflow.resolve(given_values)
    except InvalidInput as exc:
        assert exc.user_message and "\n" not in exc.user_message
        return
    values = {k: "discord-bot/up.png" if isinstance(v, InputFile) else v for k, v in values.items()}  # as uploaded
    prompt = workflow.render(values)
    json.dumps(prompt, allow_nan=False)  # what POST /prompt sends must be plain JSON
    info = _server_info(object_info)
    bound = {(t.node_id, t.input) for p in workflow.params for t in p.targets if p.type is not ParamType.CHOICE}
    problems = [
        line
        for line in validate_graph(prompt, info)
        if any(f"node {node})" in line and f"input {name}:" in line for node, name in bound)
    ]
    assert problems == []
    for param in workflow.params:
        if param.type in (ParamType.INT, ParamType.FLOAT, ParamType.SEED):
            assert math.isfinite(values[param.name])


# --- 10,000 generated parameter sets (issue 11 item 8) ---------------------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "workflows"
# Every option type, each on an input whose server spec (object_info_fragment.json) decides what is valid.
ABUSE_GRAPH = {
    "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SD1.5/dream.safetensors"}},
    "enc": {
        "class_type": "TextEncodeAceStepAudio1.5",
        "inputs": {
            "tags": "lofi",
            "lyrics": "[verse]",
            "seed": 0,
            "bpm": 120,
            "duration": 60.0,
            "timesignature": "4",
            "language": "en",
            "keyscale": "C major",
            "generate_audio_codes": True,
            "clip": ["ckpt", 1],
        },
    },
    "lat": {"class_type": "EmptyAceStep1.5LatentAudio", "inputs": {"seconds": 60.0, "batch_size": 1}},
    "ks": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 0,
            "steps": 8,
            "cfg": 1.0,
            "sampler_name": "euler",
            "scheduler": "simple",
            "denoise": 1.0,
            "model": ["ckpt", 0],
            "positive": ["enc", 0],
            "negative": ["enc", 0],
            "latent_image": ["lat", 0],
        },
    },
    "img": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
    "aud": {"class_type": "LoadAudio", "inputs": {"audio": "a.wav"}},
    "vid": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
}
ABUSE_BINDING = """
[params.tags]
type = "text"
required = true
max_length = 200
target = "enc.tags"
[params.lyrics]
type = "multiline"
max_length = 3000
target = "enc.lyrics"
[params.seed]
type = "seed"
target = ["ks.seed", "enc.seed"]
[params.bpm]
type = "int"
min = 10
max = 300
step = 2
target = "enc.bpm"
[params.duration]
type = "float"
min = 1
max = 600
target = ["enc.duration", "lat.seconds"]
[params.steps]
type = "int"
min = 1
max = 100
default = 8
target = "ks.steps"
[params.cfg]
type = "float"
min = 0
max = 100
target = "ks.cfg"
[params.codes]
type = "bool"
target = "enc.generate_audio_codes"
[params.meter]
type = "choice"
choices = ["3", "4", "6"]
target = "enc.timesignature"
[params.language]
type = "choice"
choices_from = "TextEncodeAceStepAudio1.5.language"
target = "enc.language"
[params.model]
type = "choice"
choices_from = "CheckpointLoaderSimple.ckpt_name"
target = "ckpt.ckpt_name"
[params.photo]
type = "image"
target = "img.image"
[params.voice]
type = "audio"
target = "aud.audio"
[params.clip]
type = "video"
target = "vid.file"
"""
ABUSE_EXAMPLES = 1_000  # hypothesis, which shrinks a failure to its smallest case
ABUSE_LOOP = 10_000  # a seeded loop over the same kinds of values: 10,000 parameter sets in ~2 s
GENERATED = {"parameter sets": 0, "rendered": 0, "refused": 0}  # read by the suite's summary


@pytest.fixture(scope="module")
def abuse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workflow, dict[str, Any]]:
    folder: Path = tmp_path_factory.mktemp("abuse")
    (folder / "abuse.json").write_text(json.dumps(ABUSE_GRAPH))
    (folder / "abuse.toml").write_text(ABUSE_BINDING)
    info = json.loads((FIXTURES / "object_info_fragment.json").read_text(encoding="utf-8"))
    workflow = load_workflow(folder / "abuse.toml")
    assert validate_workflow(workflow, info) == []  # the binding itself fits the server
    assert {p.type for p in workflow.params} == set(ParamType)
    return workflow, info


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),  # NaN, ±inf, -0.0, subnormals
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=50),
    st.sampled_from(["", " ", "0", "-1", "1e309", "nan", "inf", "0x10", "٣", "1_000", "12.5", "true", "@everyone"]),
    st.sampled_from(["SD1.5\\dream.safetensors", "SD1.5/dream.safetensors", "../../etc/passwd", "ja", "EN"]),
    st.just("x" * 100_000),
    st.just("9" * 5_000),
    st.just("a\ud800b"),  # a lone surrogate, as from undecodable command-line bytes
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(
        InputFile,
        st.sampled_from(["a.png", "b.JPG", "c.wav", "d.mp3", "e.mp4", "f.webm", "g.txt", "noext", ".png", "ü.mov"]),
        st.binary(max_size=16),
    ),
    st.just(InputFile("huge.png", bytes(MAX_UPLOAD_BYTES + 1))),
)


def _value_for(param: Param) -> st.SearchStrategy[Any]:
    """Mostly plausible values at and around the option's limits, often anything at all."""
    near: st.SearchStrategy[Any]
    if param.type in (ParamType.INT, ParamType.SEED):
        low, high = (0, MAX_SEED) if param.type is ParamType.SEED else (int(param.min or 0), int(param.max or 0))
        near = st.one_of(st.integers(low - 3, high + 3), st.sampled_from([low, high, low - 1, high + 1]).map(str))
    elif param.type is ParamType.FLOAT:
        near = st.floats(float(param.min or 0) - 1, float(param.max or 0) + 1) | st.floats().map(str)
    elif param.type is ParamType.CHOICE:
        near = st.sampled_from([*param.choices, "en", "ja", "xx", "SD1.5\\dream.safetensors", "", "SD1.5/missing"])
    elif param.type in FILE_TYPES:
        names = [f"x{e}" for ext in EXTENSIONS.values() for e in ext]
        near = st.builds(InputFile, st.sampled_from(names), st.binary(max_size=8))
    elif param.type is ParamType.BOOL:
        near = st.sampled_from([True, False, "yes", "off", "1", "maybe", 2])
    else:
        near = st.text(max_size=300)
    return st.one_of(near, _JUNK)


_STRATEGIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {}


def _parameter_sets(workflow: Workflow) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of the options, each with a value; built once, since building strategies is the slow part."""
    if workflow.name not in _STRATEGIES:
        _STRATEGIES[workflow.name] = st.fixed_dictionaries(
            {}, optional={p.name: _value_for(p) for p in workflow.params}
        )
    return _STRATEGIES[workflow.name]


def _type_correct(kind: str | None, value: Any, spec: Any) -> bool:
    config = input_config(spec)
    if kind in ("INT", "FLOAT"):
        whole = kind == "INT"
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            return False
        return math.isfinite(value) and config.get("min", -math.inf) <= value <= config.get("max", math.inf)
    if kind == "STRING":
        return isinstance(value, str)
    if kind == "BOOLEAN":
        return isinstance(value, bool)
    if kind == "COMBO":
        return isinstance(value, str) and value in (combo_options(spec) or [value])
    return False


def _one_parameter_set(workflow: Workflow, info: dict[str, Any], given: dict[str, Any]) -> None:
    """Resolve, check server lists and upload as the engine does, render; valid JSON for ComfyUI, or a clear refusal."""
    GENERATED["parameter sets"] += 1
    try:
        values = workflow.resolve(given)
        for param in workflow.params:
            value = values[param.name]
            if param.choices_from:
                class_type, input_name = param.choices_from.rsplit(".", 1)
                offered = combo_options(input_spec(info, class_type, input_name)) or []
                values[param.name] = param.offered_value(value, offered)
            elif isinstance(value, InputFile):
                values[param.name] = f"discord-bot/{value.filename}"  # the name POST /upload/image answers
    except BotError as exc:
        GENERATED["refused"] += 1
        assert exc.user_message and len(exc.user_message) < 400, exc.user_message
        return
    prompt = workflow.render(values)
    GENERATED["rendered"] += 1
    json.dumps(prompt, allow_nan=False, ensure_ascii=False).encode("utf-8")  # what POST /prompt can carry
    for node_id, node in ABUSE_GRAPH.items():  # links untouched
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                assert prompt[node_id]["inputs"][name] == value
    uploads = {t for p in workflow.params if p.type in FILE_TYPES for t in p.targets}
    for param in workflow.params:
        for target in param.targets:
            value = prompt[target.node_id]["inputs"][target.input]
            spec = input_spec(info, prompt[target.node_id]["class_type"], target.input)
            kind = input_kind(spec)
            if target in uploads and isinstance(value, str) and value.startswith("discord-bot/"):
                continue  # uploaded just before: on the server's list from then on
            assert _type_correct(kind, value, spec), (param.name, target, value)


@pytest.mark.abuse
@settings(
    max_examples=ABUSE_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_generated_parameter_sets_render_valid_prompts_or_clear_refusals(
    data: st.DataObject, abuse: tuple[Workflow, dict[str, Any]]
) -> None:
    workflow, info = abuse
    _one_parameter_set(workflow, info, data.draw(_parameter_sets(workflow)))


JUNK_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**53,
    2**64,
    -(2**63),
    10**40,
    0.5,
    -0.0,
    1e-320,
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    "",
    " ",
    "0",
    "-1",
    "1e309",
    "nan",
    "inf",
    "0x10",
    "٣",
    "1_000",
    "12.5",
    "true",
    "@everyone",
    "<@&123>",
    "x" * 100_000,
    "9" * 5_000,
    "a\ud800b",
    "\x00",
    "🎵" * 3000,
    "ﬁ",
    "\u202e",
    "SD1.5\\dream.safetensors",
    "SD1.5/dream.safetensors",
    "../../etc/passwd",
    "ja",
    "EN",
    [1, 2],
    {"a": 1},
    InputFile("a.png", b"x"),
    InputFile("b.wav", b""),
    InputFile("c.mp4", b"x"),
    InputFile("d.txt", b"x"),
    InputFile(".png", b""),
    InputFile("huge.png", bytes(MAX_UPLOAD_BYTES + 1)),
]


def _valid(param: Param, rng: random.Random) -> Any:
    """A value the option accepts, often at an edge of its range, sometimes written as text."""
    if param.type in (ParamType.INT, ParamType.SEED):
        low, high = (0, MAX_SEED) if param.type is ParamType.SEED else (int(param.min or 0), int(param.max or 0))
        step = int(param.step or 1)
        value: Any = rng.choice(
            [low, low + step * ((high - low) // step), low + step * rng.randint(0, (high - low) // step)]
        )
        return str(value) if rng.random() < 0.2 else value
    if param.type is ParamType.FLOAT:
        return rng.choice([param.min, param.max, rng.uniform(float(param.min or 0), float(param.max or 0))])
    if param.type is ParamType.CHOICE:
        return rng.choice(param.choices or ("en", "ja", "SD1.5/dream.safetensors", "SD1.5\\dream.safetensors"))
    if param.type in FILE_TYPES:
        return InputFile(f"{rng.choice(['a', 'ü b', '../x'])}{rng.choice(EXTENSIONS[param.type])}", b"data")
    if param.type is ParamType.BOOL:
        return rng.choice([True, False, "yes", "off", "1", "FALSE"])
    return rng.choice(TEXTS)[: rng.choice([1, 10, 80, param.max_length or 1])]


# Text in many scripts, with quotes, braces, newlines and mentions; cut to each option's length when used.
_TEXT_RNG = random.Random(7)
TEXTS = [
    "".join(chr(_TEXT_RNG.choice([_TEXT_RNG.randint(32, 126), _TEXT_RNG.randint(0xA0, 0x2FFF)])) for _ in range(6000))
    for _ in range(20)
] + ['x{"a": [1]}\n\t@everyone <@&1> \\ \' " 😀 ﷽ ' * 200]


def _invalid(param: Param, rng: random.Random) -> Any:
    """Just outside the option's range, a wrong file or word, or any junk value."""
    if param.type in (ParamType.INT, ParamType.SEED, ParamType.FLOAT) and rng.random() < 0.5:
        low, high = (0, MAX_SEED) if param.type is ParamType.SEED else (param.min or 0, param.max or 0)
        return rng.choice([low - 1, high + 1, (low + high) / 2 + 0.5])
    if param.type is ParamType.CHOICE and rng.random() < 0.5:
        return rng.choice(["xx", "SD1.5/missing.safetensors", " ", "EN"])
    return rng.choice(JUNK_VALUES)


@pytest.mark.abuse
def test_ten_thousand_parameter_sets_render_valid_prompts_or_clear_refusals(
    abuse: tuple[Workflow, dict[str, Any]], record_property: Callable[[str, object], None]
) -> None:
    workflow, info = abuse
    rng = random.Random(11)  # derandomized: the same 10,000 sets on every run
    before = dict(GENERATED)
    for _ in range(ABUSE_LOOP):
        dirt = rng.choice([0.0, 0.0, 0.02, 0.1, 0.5])  # how many options of this set get a bad value
        given_values = {}
        for param in workflow.params:
            if rng.random() < 0.2:
                continue  # left out: its default or the workflow's own value
            given_values[param.name] = _invalid(param, rng) if rng.random() < dirt else _valid(param, rng)
        _one_parameter_set(workflow, info, given_values)
    done = {k: GENERATED[k] - before[k] for k in GENERATED}
    record_property("generated parameter sets", done["parameter sets"])
    assert done["parameter sets"] == ABUSE_LOOP
    assert done["rendered"] > ABUSE_LOOP // 10 and done["refused"] > ABUSE_LOOP // 10  # both paths are exercised


def test_a_rendered_prompt_shares_nothing_with_the_workflow(every: Workflow) -> None:
    before = json.dumps(every.graph, sort_keys=True)
    prompt = every.render({"prompt": "a cat", "size": 768, "photo": "discord-bot/cat.png"})
    for node in prompt.values():  # whatever a later step does to the prompt, the next job starts clean
        for value in node["inputs"].values():
            if isinstance(value, list):
                value.append("changed")
        node["inputs"]["extra"] = "changed"
    assert json.dumps(every.graph, sort_keys=True) == before


def bound(folder: Path, lines: dict[str, str]) -> Path:
    """Write the `every` binding with extra `lines` at the top of some [params.NAME] tables (or [command])."""
    text = BINDING
    for table, extra in lines.items():
        header = f"[{table}]\n" if table == "command" else f"[params.{table}]\n"
        text = text.replace(header, f"{header}{extra}\n")
    (folder / "every.json").write_text(json.dumps(GRAPH))
    (folder / "every.toml").write_text(text, encoding="utf-8")
    return folder / "every.toml"


def test_a_binding_names_describes_and_labels_its_options_in_japanese_and_chinese(tmp_path: Path) -> None:
    sampler_ja = (
        'name_ja = "サンプラー"\ndescription_ja = "サンプリング方法"\nchoices_ja = ["オイラー", "DPM++ 2M", "UniPC"]'
    )
    sampler_zh = 'name_zh-CN = "采样器"\nchoices_zh-CN = ["欧拉", "DPM++ 2M", "UniPC"]'
    workflow = load_workflow(bound(tmp_path, {"sampler": f"{sampler_ja}\n{sampler_zh}"}))
    sampler = workflow.param("sampler")
    assert sampler is not None
    assert sampler.localized == (
        Localized("ja", "サンプラー", "サンプリング方法", ("オイラー", "DPM++ 2M", "UniPC")),
        Localized("zh-CN", "采样器", None, ("欧拉", "DPM++ 2M", "UniPC")),
    )
    assert (sampler.name_for("ja"), sampler.description_for("ja")) == ("サンプラー", "サンプリング方法")
    assert (sampler.name_for("zh-CN"), sampler.description_for("zh-CN")) == ("采样器", "sampler")  # English
    assert (sampler.name_for("fr"), sampler.description_for(None)) == ("sampler", "sampler")
    assert sampler.choice_label("euler", "zh-CN") == "欧拉"
    assert sampler.choice_label("euler", "en-US") is None
    prompt = workflow.param("prompt")
    assert prompt is not None and prompt.localized == () and prompt.description_for("ja") == "prompt"


@pytest.mark.parametrize(
    ("table", "line", "message"),
    [
        (
            "prompt",
            'name_ja = "プロ ンプト"',
            "every.toml: parameter 'prompt' name_ja 'プロ ンプト' must be 1-32 lowercase letters, digits, '-' or '_'.",
        ),
        (
            "prompt",
            'name_zh-CN = "Prompt"',
            "every.toml: parameter 'prompt' name_zh-CN 'Prompt' must be 1-32 lowercase letters, digits, '-' or '_'.",
        ),
        (
            "prompt",
            f'name_ja = "{"長" * 33}"',
            f"every.toml: parameter 'prompt' name_ja '{'長' * 33}' must be 1-32 lowercase letters, digits, '-' or '_'.",
        ),
        (
            "cfg",
            f'description_zh-CN = "{"长" * 101}"',
            "every.toml: parameter 'cfg' description_zh-CN: description must be 1-100 characters.",
        ),
        (
            "cfg",
            'description_ja = ""',
            "every.toml: parameter 'cfg' description_ja: description must be 1-100 characters.",
        ),
        (
            "sampler",
            'choices_ja = ["オイラー"]',
            "every.toml: parameter 'sampler' choices_ja: needs one label per choice (3, in the same order); it has 1.",
        ),
        (
            "sampler",
            'choices_zh-CN = ["", "b", "c"]',
            "every.toml: parameter 'sampler' choices_zh-CN: '' must be 1-100 characters (Discord's limit).",
        ),
        (
            "model",
            'choices_ja = ["a"]',
            "every.toml: parameter 'model' choices_ja: only an option with choices = [...] can have its choices "
            "translated.",
        ),
        (
            "prompt",
            'name_jp = "プロンプト"',
            "every.toml: parameter 'prompt' name_jp: unknown locale 'jp' (use ja or zh-CN).",
        ),
        ("cfg", 'name_ja = "prompt"', "every.toml: parameters 'prompt' and 'cfg' are both named 'prompt' in ja."),
    ],
)
def test_a_localized_option_that_discord_refuses_is_reported(
    tmp_path: Path, table: str, line: str, message: str
) -> None:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(bound(tmp_path, {table: line}))
    assert str(caught.value) == message


def test_every_localized_key_that_is_wrong_is_listed_at_once(tmp_path: Path) -> None:
    lines = {"command": 'name_ja = "画像 生成"', "prompt": 'name_zh-CN = "Prompt"', "cfg": 'description_ja = ""'}
    with pytest.raises(WorkflowError) as caught:
        load_workflow(bound(tmp_path, lines))
    assert str(caught.value).splitlines() == [
        "every.toml: command name_ja '画像 生成' must be 1-32 lowercase letters, digits, '-' or '_'.",
        "every.toml: parameter 'prompt' name_zh-CN 'Prompt' must be 1-32 lowercase letters, digits, '-' or '_'.",
        "every.toml: parameter 'cfg' description_ja: description must be 1-100 characters.",
    ]
