from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidInput, WorkflowError
from core.workflows import ParamType, load_catalog, load_graph, load_workflow, validate_graph
from tests.conftest import SHARED, WORKFLOWS


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(WORKFLOWS)


def test_both_shipped_commands_load_without_problems(catalog) -> None:
    assert catalog.problems == []
    assert sorted(catalog.workflows) == ["image", "music"]
    image, music = catalog.workflows["image"], catalog.workflows["music"]
    assert [p.name for p in image.params] == ["prompt", "negative", "seed", "steps", "width", "height"]
    assert [p.name for p in music.params] == ["tags", "lyrics", "duration", "seed"]
    assert music.param("lyrics").type is ParamType.MULTILINE
    assert [str(t) for t in music.param("tags").targets] == ["74:14.tags"]


def test_render_sets_values_by_key_on_a_copy(catalog) -> None:
    music = catalog.workflows["music"]
    before = copy.deepcopy(music.graph)
    lyrics = '[verse]\nShe said "hi" {and} \\n left\n[chorus]\nla la'
    values = music.resolve({"tags": "lofi, jazz", "lyrics": lyrics, "seed": 7})
    prompt = music.render(values)
    assert prompt["74:14"]["inputs"]["tags"] == "lofi, jazz"
    assert prompt["74:14"]["inputs"]["lyrics"] == lyrics  # quotes, braces and newlines survive untouched
    assert prompt["74:17"]["inputs"]["seconds"] == 60.0
    assert prompt["74:52"]["inputs"]["seed"] == 7
    assert prompt["74:14"]["inputs"]["clip"] == ["74:40", 1]
    assert music.graph == before  # the loaded workflow is never modified


def test_image_golden_render(catalog) -> None:
    image = catalog.workflows["image"]
    prompt = image.render(image.resolve({"prompt": "a cat", "seed": 42, "width": 768}))
    expected = json.loads((WORKFLOWS / "image.json").read_text())
    expected["6"]["inputs"]["text"] = "a cat"
    expected["3"]["inputs"]["seed"] = 42
    expected["5"]["inputs"]["width"] = 768
    assert prompt == expected


def test_seed_is_random_when_omitted(catalog) -> None:
    image = catalog.workflows["image"]
    seeds = {image.resolve({"prompt": "x"})["seed"] for _ in range(5)}
    assert len(seeds) > 1
    assert all(0 <= s < 2**53 for s in seeds)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"prompt": "   "}, "prompt must not be empty."),
        ({"prompt": "x" * 1001}, "prompt is too long (1001 characters; the limit is 1000)."),
        ({"prompt": "x", "steps": 0}, "steps must be between 1 and 50 (got 0)."),
        ({"prompt": "x", "steps": "many"}, "steps must be a whole number (got 'many')."),
        ({"prompt": "x", "width": 300}, "width must be a multiple of 64 (got 300)."),
        ({"prompt": "x", "seed": -1}, "seed must be between 0 and 9007199254740991 (got -1)."),
        ({}, "prompt is required."),
        (
            {"prompt": "x", "sampler": "euler"},
            "/image has no option 'sampler'. Its options are: prompt, negative, seed, steps, width, height.",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(catalog, given: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        catalog.workflows["image"].resolve(given)
    assert caught.value.user_message == message


def test_shipped_workflows_match_real_node_definitions(catalog, object_info: dict[str, Any]) -> None:
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = [
        "v1-5-pruned-emaonly-fp16.safetensors",
        "ace_step_v1_3.5b.safetensors",
    ]
    for workflow in catalog.workflows.values():
        assert validate_graph(workflow.graph, info) == [], workflow.name
        for param in workflow.params:  # every bound input is declared by its node, within its range
            for target in param.targets:
                node = workflow.graph[target.node_id]
                spec = info[node["class_type"]]["input"]["required"][target.input]
                options = spec[1] if len(spec) > 1 else {}
                for bound in ("min", "max"):
                    ours = getattr(param, bound)
                    if ours is not None and bound in options:
                        assert (ours >= options["min"]) if bound == "min" else (ours <= options["max"])


def test_a_server_without_models_names_both_checkpoints(catalog, object_info: dict[str, Any]) -> None:
    problems = [p for w in catalog.workflows.values() for p in validate_graph(w.graph, object_info)]
    assert problems == [
        "“Load Checkpoint” (CheckpointLoaderSimple, node 4): input ckpt_name: "
        "'v1-5-pruned-emaonly-fp16.safetensors' is not available on the server (it has none).",
        "“Load Checkpoint” (CheckpointLoaderSimple, node 74:40): input ckpt_name: "
        "'ace_step_v1_3.5b.safetensors' is not available on the server (it has none).",
    ]


def test_validation_names_missing_classes_inputs_and_links(object_info: dict[str, Any]) -> None:
    graph = load_graph(SHARED / "workflow-samples" / "10_wan21_vace_i2v_video.json")
    problems = validate_graph(graph, object_info)
    assert any("class UnetLoaderGGUF is not installed on the server (a missing custom node?)" in p for p in problems)
    broken = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "colour": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["77", 0], "filename_prefix": "x"}},
    }
    assert validate_graph(broken, object_info) == [
        "EmptyImage (node 1): required input color is missing.",
        "EmptyImage (node 1): input width: 0 is below the minimum 1.",
        "EmptyImage (node 1): the server's EmptyImage has no input colour.",
        "SaveImage (node 2): input images: links to node 77, which is not in the workflow.",
    ]


def test_ui_format_is_refused_with_the_fix() -> None:
    with pytest.raises(WorkflowError) as caught:
        load_graph(SHARED / "workflow-samples" / "12_ui_sd15_default_template.json")
    assert caught.value.user_message == (
        "12_ui_sd15_default_template.json: this is the editor (UI) format. In ComfyUI open the workflow and use "
        "Workflow > Export (API), then save that file here instead."
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ('"99.text"', "bad.toml: parameter 'prompt': target node '99' is not in the workflow."),
        (
            '"6.txt"',
            "bad.toml: parameter 'prompt': node 6 (CLIPTextEncode) has no input 'txt'; it has: text, clip.",
        ),
        ('"6.clip"', "bad.toml: parameter 'prompt': input 6.clip is linked to another node, not a value it could set."),
        (
            '"six"',
            "bad.toml: parameter 'prompt': target 'six' must be \"6.text\" (node id, dot, input name), or a table "
            "with input and one of node, title or class.",
        ),
        (
            '{title = "CLIP Text Encode (Prompt)", input = "text"}',
            "bad.toml: parameter 'prompt': title 'CLIP Text Encode (Prompt)' matches nodes 6, 7; it must match "
            "exactly one (or use a node id).",
        ),
        (
            '{class = "LoraLoader", input = "lora_name"}',
            "bad.toml: parameter 'prompt': class 'LoraLoader' matches no node; it must match exactly one "
            "(or use a node id).",
        ),
    ],
)
def test_binding_mistakes_are_reported(tmp_path: Path, target: str, message: str) -> None:
    (tmp_path / "bad.json").write_text((WORKFLOWS / "image.json").read_text())
    (tmp_path / "bad.toml").write_text(f'[params.prompt]\ntype = "text"\ntarget = {target}\n')
    with pytest.raises(WorkflowError) as caught:
        load_workflow(tmp_path / "bad.toml")
    assert caught.value.user_message == message


def test_catalog_reports_broken_files_and_keeps_the_rest(tmp_path: Path) -> None:
    for name in ("image.json", "image.toml"):
        (tmp_path / name).write_text((WORKFLOWS / name).read_text())
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "broken.toml").write_text('[command]\nname = "Broken Name"\n')
    (tmp_path / "My Portrait.json").write_text((WORKFLOWS / "image.json").read_text())
    (tmp_path / "ui.json").write_text((SHARED / "workflow-samples" / "12_ui_sd15_default_template.json").read_text())
    (tmp_path / "no_sampler.json").write_text(
        '{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},'
        ' "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}'
    )
    catalog = load_catalog(tmp_path)
    assert list(catalog.workflows) == ["image", "my-portrait"]
    detected = catalog.workflows["my-portrait"]
    assert detected.binding is None
    assert detected.description == "Run the My Portrait workflow (options detected automatically)"
    assert [p.name for p in detected.params] == ["prompt", "negative", "seed", "width", "height"]
    assert catalog.problems[0].startswith("broken.json: not valid JSON")
    assert catalog.problems[1:] == [
        "no_sampler.json: no prompt, seed or size inputs were found to make options of; add a binding file "
        "no_sampler.toml that names them.",
        "ui.json: this is the editor (UI) format. In ComfyUI open the workflow and use Workflow > Export (API), "
        "then save that file here instead.",
    ]
