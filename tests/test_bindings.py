"""Every parameter type and target form, rendered into golden JSON; random values never break rendering."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput
from core.workflows import InputFile, ParamType, Workflow, load_catalog, load_workflow, validate_graph
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
    info["LoadImage"]["input"]["required"]["image"][0].append("discord-bot/up.png")  # the upload below
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
