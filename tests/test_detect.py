"""Detection of command options in workflows without a binding file, and the binding it writes."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from core.comfyui.node_errors import node_label
from core.comfyui.types import Prompt
from core.errors import InvalidInput
from core.workflows import Param, ParamType, Target, Workflow, load_graph, load_workflow, validate_graph
from core.workflows.detect import binding_toml, detect_params
from core.workflows.model import FILE_TYPES, MAX_DESCRIPTION, MAX_SEED, NAME_RE, InputFile
from tests.conftest import WORKFLOWS

# Real exports from other projects, kept outside this repository; tests over them skip when it is absent.
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "workflow-samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the shared workflow samples are not at {SAMPLES}")

# name -> [(param name, its targets)], in the order detect_params returns them (required first).
EXPECTED: dict[str, list[tuple[str, list[str]]]] = {
    "image": [
        ("prompt", ["6.text"]),
        ("negative", ["7.text"]),
        ("seed", ["3.seed"]),
        ("width", ["5.width"]),
        ("height", ["5.height"]),
    ],
    "music": [
        ("tags", ["74:14.tags"]),
        ("lyrics", ["74:14.lyrics"]),
        ("seed", ["74:52.seed"]),
        ("duration", ["74:17.seconds"]),
    ],
    "01_sdxl_txt2img_ws_string_id": [
        ("prompt", ["6.text"]),
        ("negative", ["7.text"]),
        ("seed", ["3.seed"]),
        ("width", ["5.width"]),
        ("height", ["5.height"]),
    ],
    # img2img: the latent comes from VAEEncode of a loaded image, so there is no latent size to offer.
    "03_sdxl_img2img_cliptextencodesdxl": [
        ("prompt", ["16.text_g", "16.text_l"]),
        ("image", ["38.image"]),  # its LoadImage becomes an attachment
        ("negative", ["19.text_g", "19.text_l"]),
        ("seed", ["36.seed"]),
    ],
    # Flux: the prompt reaches SamplerCustomAdvanced only through BasicGuider 22; no negative at all.
    "04_flux_schnell_samplercustomadvanced": [
        ("prompt", ["6.text"]),
        ("seed", ["25.noise_seed"]),
        ("width", ["5.width"]),
        ("height", ["5.height"]),
    ],
    # SD3.5: negative 71 is a real encoder with its own (empty) text, reached through Combine/TimestepRange.
    "05_sd35_txt2img": [
        ("prompt", ["6.text"]),
        ("negative", ["71.text"]),
        ("seed", ["294.seed"]),
        ("width", ["135.width"]),
        ("height", ["135.height"]),
    ],
    # ACE-Step with a separate negative encoder: its tags become negative_tags.
    "08_ace_step_v1_caps_titles": [
        ("tags", ["15.tags"]),
        ("lyrics", ["15.lyrics"]),
        ("negative_tags", ["16.tags"]),
        ("seed", ["52.seed"]),
        ("duration", ["44.seconds"]),
    ],
    # WAN VACE: both prompts pass through WanVaceToVideo 109, which also sets the size.
    "10_wan21_vace_i2v_video": [
        ("prompt", ["105.text"]),
        ("image", ["73.image"]),
        ("negative", ["107.text"]),
        ("seed", ["108.seed"]),
        ("width", ["109.width"]),
        ("height", ["109.height"]),
    ],
}


SHIPPED = ("image", "music")
CASES = [pytest.param(name, marks=() if name in SHIPPED else needs_samples) for name in EXPECTED]


def _path(name: str) -> Path:
    return WORKFLOWS / f"{name}.json" if name in SHIPPED else SAMPLES / f"{name}.json"


def _graph(name: str) -> Prompt:
    return load_graph(_path(name))


def _found(params: tuple[Param, ...]) -> list[tuple[str, list[str]]]:
    return [(p.name, [str(t) for t in p.targets]) for p in params]


def _renamed(graph: Prompt, renames: dict[str, str]) -> Prompt:
    """The graph with node ids replaced, links included."""
    out: Prompt = {}
    for node_id, original in graph.items():
        node = copy.deepcopy(original)
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] in renames:
                node["inputs"][name] = [renames[value[0]], value[1]]
        out[renames.get(node_id, node_id)] = node
    return out


def _shuffled(graph: Prompt, seed: int) -> Prompt:
    items = list(graph.items())
    random.Random(seed).shuffle(items)
    return dict(items)


def _workflow(name: str, params: tuple[Param, ...]) -> Workflow:
    return Workflow("sample", "A detected workflow", _graph(name), params, _path(name))


@needs_samples
def test_sample_files_are_the_ones_described() -> None:
    api = sorted(p.stem for p in SAMPLES.glob("*.json") if not p.stem.startswith(("12_", "13_")))
    assert api == sorted(n for n in EXPECTED if n not in ("image", "music"))


@pytest.mark.parametrize("name", CASES)
def test_detects_the_targets_each_workflow_really_uses(name: str) -> None:
    assert _found(detect_params(_graph(name))) == EXPECTED[name]


@pytest.mark.parametrize("name", CASES)
def test_params_follow_discord_rules(name: str) -> None:
    params = detect_params(_graph(name))
    assert [p.required for p in params] == sorted((p.required for p in params), reverse=True)
    for param in params:
        assert NAME_RE.match(param.name)
        assert param.name == param.name.lower()
        assert 1 <= len(param.description) <= MAX_DESCRIPTION


def test_kinds_limits_and_defaults_of_the_shipped_image_workflow() -> None:
    prompt, negative, seed, width, height = detect_params(_graph("image"))
    assert (prompt.type, prompt.required, prompt.max_length, prompt.default) == (ParamType.TEXT, True, 1500, None)
    assert (negative.type, negative.required, negative.max_length, negative.default) == (
        ParamType.TEXT,
        False,
        1500,
        None,
    )
    assert (seed.type, seed.required, seed.default) == (ParamType.SEED, False, None)
    for size in (width, height):
        assert (size.type, size.min, size.max, size.step, size.default) == (ParamType.INT, 64, 2048, 8, None)


def test_kinds_and_limits_of_the_shipped_music_workflow() -> None:
    tags, lyrics, seed, duration = detect_params(_graph("music"))
    assert (tags.type, tags.required) == (ParamType.TEXT, True)
    assert (lyrics.type, lyrics.required, lyrics.default) == (ParamType.MULTILINE, False, None)
    assert seed.type is ParamType.SEED
    assert (duration.type, duration.min, duration.max, duration.default) == (ParamType.FLOAT, 1, 600, None)


@needs_samples
def test_empty_ace_lyrics_default_to_instrumental() -> None:
    lyrics = next(p for p in detect_params(_graph("08_ace_step_v1_caps_titles")) if p.name == "lyrics")
    assert lyrics.default == "[instrumental]"  # the export's "" would be refused when the option is left out


@pytest.mark.parametrize(
    ("renames", "titles"),
    [
        ({"6": "positive_prompt_node", "7": "1"}, {"positive_prompt_node": "Negative", "1": "Positive"}),
        ({"6": "238:227", "7": "0", "3": "sampler", "5": "zz"}, {"238:227": "ネガティブ", "0": "ポジティブプロンプト"}),
    ],
)
def test_ids_titles_and_order_do_not_matter(renames: dict[str, str], titles: dict[str, str]) -> None:
    graph = _renamed(_graph("image"), renames)
    for node_id, title in titles.items():
        graph[node_id]["_meta"] = {"title": title}
    for seed in range(3):
        found = dict(_found(detect_params(_shuffled(graph, seed))))
        assert found == {
            "prompt": [f"{renames['6']}.text"],
            "negative": [f"{renames['7']}.text"],
            "seed": [f"{renames.get('3', '3')}.seed"],
            "width": [f"{renames.get('5', '5')}.width"],
            "height": [f"{renames.get('5', '5')}.height"],
        }


def test_negative_sharing_the_positive_encoder_is_not_offered() -> None:
    # music.json's negative is ConditioningZeroOut of the positive encoder, as in ComfyUI's ACE-Step template.
    graph = _graph("image")
    graph["7"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}}
    assert [p.name for p in detect_params(graph)] == ["prompt", "seed", "width", "height"]


def test_an_encoder_only_reached_through_zero_out_is_not_offered() -> None:
    graph = _graph("image")
    graph["zero"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["7", 0]}}
    graph["3"]["inputs"]["negative"] = ["zero", 0]
    assert [p.name for p in detect_params(graph)] == ["prompt", "seed", "width", "height"]


def test_a_linked_text_is_not_a_target() -> None:
    graph = _graph("image")
    graph["7"]["inputs"]["text"] = ["6", 0]  # nonsense, but not a value the bot could set
    assert "negative" not in [p.name for p in detect_params(graph)]


def test_text_and_seed_in_primitive_nodes_are_targeted_there() -> None:
    graph = _graph("image")
    graph["p"] = {"class_type": "PrimitiveString", "inputs": {"value": "a red fox"}}
    graph["s"] = {"class_type": "PrimitiveInt", "inputs": {"value": 5}}
    graph["6"]["inputs"]["text"] = ["p", 0]
    graph["3"]["inputs"]["seed"] = ["s", 0]
    found = dict(_found(detect_params(graph)))
    assert (found["prompt"], found["seed"]) == (["p.value"], ["s.value"])


def test_conditioning_chains_cycles_and_guiders() -> None:
    graph: Prompt = {
        "enc_a": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["clip", 1]}},
        "enc_b": {"class_type": "CLIPTextEncode", "inputs": {"text": "b", "clip": ["clip", 1]}},
        "enc_n": {"class_type": "CLIPTextEncode", "inputs": {"text": "n", "clip": ["clip", 1]}},
        "clip": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "flux": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["loop", 0]}},
        # a malformed export: "loop" feeds itself; detection must still end
        "loop": {
            "class_type": "ConditioningAverage",
            "inputs": {"conditioning_to": ["enc_a", 0], "conditioning_from": ["loop", 0]},
        },
        "dual": {
            "class_type": "DualCFGGuider",
            "inputs": {"cond1": ["flux", 0], "cond2": ["enc_b", 0], "negative": ["enc_n", 0]},
        },
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": 9}},
        "lat": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
        "batch": {"class_type": "RepeatLatentBatch", "inputs": {"amount": 2, "samples": ["lat", 0]}},
        "s": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {"noise": ["noise", 0], "guider": ["dual", 0], "latent_image": ["batch", 0]},
        },
    }
    assert _found(detect_params(graph)) == [
        ("prompt", ["enc_a.text", "enc_b.text"]),
        ("negative", ["enc_n.text"]),
        ("seed", ["noise.noise_seed"]),
        ("width", ["lat.width"]),
        ("height", ["lat.height"]),
    ]
    graph["dual"] = {"class_type": "CFGGuider", "inputs": {"positive": ["enc_b", 0], "negative": ["flux", 0]}}
    assert _found(detect_params(graph))[:2] == [("prompt", ["enc_b.text"]), ("negative", ["enc_a.text"])]


def test_refiner_and_hires_passes_share_the_prompt_seed_and_base_size() -> None:
    graph = _graph("image")
    graph["up"] = {
        "class_type": "LatentUpscale",
        "inputs": {
            "upscale_method": "nearest-exact",
            "width": 1024,
            "height": 1024,
            "crop": "disabled",
            "samples": ["3", 0],
        },
    }
    graph["adv"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {"noise_seed": 1, "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["up", 0]},
    }
    found = dict(_found(detect_params(graph)))
    assert found["seed"] == ["3.seed", "adv.noise_seed"]
    assert (found["prompt"], found["width"]) == (["6.text"], ["5.width"])


def test_sizes_and_lengths_outside_the_usual_range_stay_valid() -> None:
    graph = _graph("image")
    graph["5"]["inputs"].update(width=770, height=4096)
    width, height = (p for p in detect_params(graph) if p.name in ("width", "height"))
    assert (width.min, width.max, width.step) == (64, 2048, 2)
    assert (height.min, height.max, height.step) == (64, 4096, 8)
    graph["5"]["inputs"].update(width=36, height=32)
    width, height = (p for p in detect_params(graph) if p.name in ("width", "height"))
    assert (width.min, width.step, height.min, height.step) == (32, 4, 32, 8)
    workflow = Workflow("image", "x", graph, detect_params(graph), Path("image.json"))
    assert workflow.render(workflow.resolve({"prompt": "x", "seed": 1}))["5"]["inputs"] == {
        "width": 36,
        "height": 32,
        "batch_size": 1,
    }

    music = _graph("music")
    music["74:17"]["inputs"]["seconds"] = 900.5
    duration = next(p for p in detect_params(music) if p.name == "duration")
    assert (duration.min, duration.max) == (1, 900.5)
    music["74:17"]["inputs"]["seconds"] = 0.5
    duration = next(p for p in detect_params(music) if p.name == "duration")
    assert (duration.min, duration.max) == (0.5, 600)


def test_a_long_negative_in_the_workflow_raises_its_limit() -> None:
    graph = _graph("image")
    graph["7"]["inputs"]["text"] = "blurry, " * 300
    negative = next(p for p in detect_params(graph) if p.name == "negative")
    assert negative.max_length == 2400


def test_nothing_to_detect_gives_no_options() -> None:
    assert detect_params({}) == ()
    graph: Prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["1", 0]}},
    }
    assert detect_params(graph) == ()


def test_without_a_sampler_a_lone_encoder_is_the_prompt() -> None:
    graph = _graph("image")
    del graph["3"], graph["7"], graph["8"], graph["9"]
    assert _found(detect_params(graph)) == [("prompt", ["6.text"])]
    graph["7"] = copy.deepcopy(graph["6"])
    assert detect_params(graph) == ()  # two encoders and nothing telling which is positive


PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {"STRING": str, "INT": int, "FLOAT": (int, float)}


def _values(workflow: Workflow, high: bool) -> dict[str, Any]:
    """Values for every option at one end of its range."""
    values: dict[str, Any] = {}
    for param in workflow.params:
        if param.type in FILE_TYPES:
            values[param.name] = InputFile("upload.png", b"png")
        elif param.type in (ParamType.TEXT, ParamType.MULTILINE):
            values[param.name] = "[verse]\nla la" if param.name == "lyrics" else "a lighthouse at dusk, 35mm"
        elif param.type is ParamType.SEED:
            values[param.name] = MAX_SEED if high else 0
        else:
            values[param.name] = param.max if high else param.min
    return values


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("high", [False, True])
def test_rendered_values_fit_the_real_node_definitions(name: str, high: bool, object_info: dict[str, Any]) -> None:
    workflow = _workflow(name, detect_params(_graph(name)))
    values = workflow.resolve(_values(workflow, high))
    values.update({p.name: f"discord-bot/{values[p.name]}" for p in workflow.params if p.type in FILE_TYPES})
    prompt = workflow.render(values)
    uploads = frozenset(t for p in workflow.params if p.type in FILE_TYPES for t in p.targets)
    problems = validate_graph(prompt, object_info, replaced=uploads)  # the upload puts the file on the server
    for param in workflow.params:
        if param.type in FILE_TYPES:
            continue
        for target in param.targets:
            label = node_label(prompt, target.node_id)
            mentions = re.compile(rf"\b{re.escape(target.input)}\b")
            assert not [p for p in problems if p.startswith(label) and mentions.search(p)], (param.name, problems)
            spec = object_info[prompt[target.node_id]["class_type"]]["input"]
            kind = {**spec.get("optional", {}), **spec["required"]}[target.input][0]
            value = prompt[target.node_id]["inputs"][target.input]
            assert isinstance(value, PYTHON_TYPES[kind]) and not isinstance(value, bool), (target, value)


@pytest.mark.parametrize("name", CASES)
def test_leaving_options_out_uses_the_workflows_own_values(name: str) -> None:
    workflow = _workflow(name, detect_params(_graph(name)))
    required = {p.name: InputFile("x.png", b"") if p.type in FILE_TYPES else "x" for p in workflow.params if p.required}
    given = {**required, "negative": "y"} if name == "05_sd35_txt2img" else required  # its own negative is ""
    values = workflow.resolve(given)
    for param in workflow.params:
        if param.name not in given and param.type is not ParamType.SEED and param.default is None:
            assert values[param.name] == workflow.current_value(param)


@pytest.mark.parametrize("name", CASES)
def test_binding_round_trips_through_the_loader(name: str, tmp_path: Path) -> None:
    params = detect_params(_graph(name))
    (tmp_path / "detected.json").write_bytes(_path(name).read_bytes())
    (tmp_path / "detected.toml").write_text(binding_toml("detected", "Run it", params), encoding="utf-8")
    workflow = load_workflow(tmp_path / "detected.toml")
    assert (workflow.name, workflow.description, workflow.params) == ("detected", "Run it", params)


def test_binding_writes_awkward_values_exactly(tmp_path: Path) -> None:
    (tmp_path / "image.json").write_bytes((WORKFLOWS / "image.json").read_bytes())
    odd = 'He said "hi" \\ back\n\ttab\x7f\x01 ünï 字'
    params = (
        Param("prompt", ParamType.TEXT, odd[:20], (Target("6", "text"),), required=True, default=odd, max_length=200),
        Param("sampler", ParamType.CHOICE, "Sampler", (Target("3", "sampler_name"),), choices=("euler", 'dp"m')),
        Param("cfg", ParamType.FLOAT, "CFG", (Target("3", "cfg"),), default=7.5, min=1.0, max=1e3, step=0.5),
        Param("steps", ParamType.INT, "Steps", (Target("3", "steps"), Target("3", "seed")), default=20, min=1),
        Param(
            "model",
            ParamType.CHOICE,
            "Model",
            (Target("4", "ckpt_name"),),
            choices_from="CheckpointLoaderSimple.ckpt_name",
        ),
    )
    text = binding_toml("image", 'Make "art"', params)
    (tmp_path / "image.toml").write_text(text, encoding="utf-8")
    workflow = load_workflow(tmp_path / "image.toml")
    assert (workflow.description, workflow.params) == ('Make "art"', params)
    assert isinstance(workflow.param("cfg").min, float)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "description"), [("Image", "x"), ("a b", "x"), ("x" * 33, "x"), ("ok", ""), ("ok", "x" * 101)]
)
def test_binding_refuses_a_command_the_loader_would_refuse(name: str, description: str) -> None:
    with pytest.raises(ValueError):
        binding_toml(name, description, ())


def test_binding_is_commented_for_the_admin() -> None:
    text = binding_toml("image", "Generate", detect_params(_graph("image")))
    assert text.startswith("# Options detected automatically.")
    assert '[params.prompt]\ntype = "text"\ndescription = "What to generate (the positive prompt)"\n' in text
    assert json.dumps("6.text") in text


# --- fixture workflows written for this project, one per shape ------------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "workflows"


def _fixture(name: str) -> tuple[Prompt, tuple[Param, ...]]:
    graph = load_graph(FIXTURES / f"{name}.json")
    return graph, detect_params(graph)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (  # subgraph ids "12:34" and no _meta anywhere
            "txt2img_subgraph",
            [
                ("prompt", ["12:6.text"]),
                ("negative", ["12:7.text"]),
                ("seed", ["12:34.seed"]),
                ("width", ["12:5.width"]),
                ("height", ["12:5.height"]),
            ],
        ),
        # the prompt lives in a String (Multiline) node; the negative is a zeroed copy, so not an option
        (
            "linked_prompt",
            [("prompt", ["3.value"]), ("seed", ["7.seed"]), ("width", ["6.width"]), ("height", ["6.height"])],
        ),
        (
            "ace_step_v1",
            [("tags", ["2.tags"]), ("lyrics", ["2.lyrics"]), ("seed", ["5.seed"]), ("duration", ["4.seconds"])],
        ),
        (  # one seed for sampler and encoder; the length is one Float node feeding encoder and latent
            "ace_step_v15",
            [
                ("tags", ["2.tags"]),
                ("lyrics", ["2.lyrics"]),
                ("seed", ["5.seed", "2.seed"]),
                ("duration", ["len.value"]),
                ("bpm", ["2.bpm"]),
                ("timesignature", ["2.timesignature"]),
                ("language", ["2.language"]),
                ("keyscale", ["2.keyscale"]),
            ],
        ),
        ("upscale_only", [("image", ["1.image"])]),  # no prompt at all: the photo is the only option
        ("video", [("video", ["1.file"])]),
    ],
)
def test_fixture_shapes_are_detected(name: str, expected: list[tuple[str, list[str]]]) -> None:
    assert _found(_fixture(name)[1]) == expected


def test_ace_step_15_options_follow_the_servers_lists() -> None:
    graph, params = _fixture("ace_step_v15")
    by_name = {p.name: p for p in params}
    assert (by_name["tags"].required, by_name["lyrics"].type) == (True, ParamType.MULTILINE)
    assert (by_name["bpm"].type, by_name["bpm"].min, by_name["bpm"].max) == (ParamType.INT, 10, 300)
    assert (by_name["duration"].min, by_name["duration"].max) == (1, 600)
    assert {n: by_name[n].choices_from for n in ("timesignature", "language", "keyscale")} == {
        "timesignature": "TextEncodeAceStepAudio1.5.timesignature",
        "language": "TextEncodeAceStepAudio1.5.language",
        "keyscale": "TextEncodeAceStepAudio1.5.keyscale",
    }
    workflow = Workflow("song", "Song", graph, params, FIXTURES / "ace_step_v15.json")
    prompt = workflow.render(workflow.resolve({"tags": "jazz", "duration": 45, "seed": 8}))
    assert (prompt["len"]["inputs"]["value"], prompt["2"]["inputs"]["seed"], prompt["5"]["inputs"]["seed"]) == (
        45.0,
        8,
        8,
    )
    assert prompt["2"]["inputs"]["duration"] == prompt["4"]["inputs"]["seconds"] == ["len", 0]  # links untouched


def test_upload_loaders_become_required_attachments_named_by_kind() -> None:
    graph: Prompt = {
        "a": {"class_type": "LoadImage", "inputs": {"image": "a.png"}, "_meta": {"title": "Face"}},
        "b": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
        "c": {"class_type": "LoadAudio", "inputs": {"audio": "voice.wav"}},
        "d": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
        "e": {"class_type": "LoadImage", "inputs": {"image": ["a", 0]}},  # linked: nothing to attach
    }
    params = detect_params(graph)
    assert [(p.name, p.type, str(p.targets[0]), p.required, p.description) for p in params] == [
        ("image", ParamType.IMAGE, "a.image", True, "The image file to use (Face)"),
        ("image_2", ParamType.IMAGE, "b.image", True, "The image file to use"),
        ("audio", ParamType.AUDIO, "c.audio", True, "The audio file to use"),
        ("video", ParamType.VIDEO, "d.file", True, "The video file to use"),
    ]


def test_a_video_option_takes_only_video_files() -> None:
    _, (video,) = _fixture("video")
    assert video.coerce(InputFile("clip.MOV", b"x")).filename == "clip.MOV"
    with pytest.raises(InvalidInput) as caught:
        video.coerce(InputFile("photo.png", b"x"))
    assert caught.value.user_message == ("video must be a video file (mp4, webm, mov, mkv, avi, m4v); got 'photo.png'.")
