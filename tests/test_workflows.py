from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidInput, WorkflowError
from core.i18n import localize
from core.workflows import (
    Catalog,
    ParamType,
    Target,
    Workflow,
    load_catalog,
    load_graph,
    load_workflow,
    runnable,
    validate_graph,
    validate_workflow,
)
from tests.conftest import WORKFLOWS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "workflows"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "workflow-samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the shared workflow samples are not at {SAMPLES}")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(WORKFLOWS)


def test_the_shipped_commands_load_without_problems(catalog) -> None:
    assert catalog.problems == []
    assert sorted(catalog.workflows) == ["image", "music", "music_extend", "upscale", "video"]
    assert [p.name for p in catalog.workflows["video"].params] == ["prompt", "negative", "seed", "frames"]
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
            "image has no option 'sampler'. Its options are: prompt, negative, seed, steps, width, height.",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(catalog, given: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        catalog.workflows["image"].resolve(given)
    assert caught.value.user_message == message


@pytest.mark.parametrize(
    ("given", "ja", "zh"),
    [
        (
            {"prompt": "x", "steps": 0},
            "steps は 1 から 50 の範囲にしてください（入力値：0）。",
            "steps 必须在 1 到 50 之间（收到的是 0）。",
        ),
        (
            {"prompt": "x", "steps": "many"},
            "steps は整数にしてください（入力値：'many'）。",
            "steps 必须是整数（收到的是 'many'）。",
        ),
        ({}, "prompt は必須です。", "prompt 为必填项。"),
        (
            {"prompt": "x", "sampler": "euler"},
            "image にオプション 'sampler' はありません。"
            "オプションは次のとおりです：prompt, negative, seed, steps, width, height。",
            "image 没有选项 'sampler'。它的选项有：prompt, negative, seed, steps, width, height。",
        ),
    ],
)
def test_a_refused_value_is_explained_in_the_members_language(catalog, given: dict[str, Any], ja: str, zh: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        catalog.workflows["image"].resolve(given)
    assert localize(caught.value.user_message, "ja") == ja
    assert localize(caught.value.user_message, "zh-CN") == zh


def test_a_file_of_the_wrong_kind_is_refused_in_japanese() -> None:
    from core.workflows.model import InputFile, Param, Target

    photo = Param("photo", ParamType.IMAGE, "A photo", (Target("1", "image"),))
    with pytest.raises(InvalidInput) as caught:
        photo.coerce(InputFile("song.mp3", b"ID3"))
    assert localize(caught.value.user_message, "ja") == (
        "photo は画像ファイル（png, jpg, jpeg, webp, gif, bmp）にしてください。添付されたのは 'song.mp3' です。"
    )


def set_by_members(workflow: Workflow) -> frozenset[Target]:
    """The inputs a required option always sets (the song /music_extend continues): the bot skips their check."""
    return frozenset(t for p in workflow.params if p.required for t in p.targets)


def test_shipped_workflows_match_real_node_definitions(catalog, object_info: dict[str, Any]) -> None:
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = [
        "v1-5-pruned-emaonly-fp16.safetensors",
        "ace_step_v1_3.5b.safetensors",
    ]
    for (class_type, name), model in zip(
        [("UNETLoader", "unet_name"), ("CLIPLoader", "clip_name"), ("VAELoader", "vae_name")],
        ["wan2.1_t2v_1.3B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors"],
        strict=True,
    ):
        info[class_type]["input"]["required"][name][0] = [model]
    for workflow in catalog.workflows.values():
        assert validate_graph(workflow.graph, info, replaced=set_by_members(workflow)) == [], workflow.name
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
    problems = [
        p for w in catalog.workflows.values() for p in validate_graph(w.graph, object_info, replaced=set_by_members(w))
    ]
    assert [p.split(":")[0] for p in problems[3:]] == [  # /video's three Wan files
        "“Load Diffusion Model” (UNETLoader, node 1)",
        "“Load CLIP” (CLIPLoader, node 2)",
        "“Load VAE” (VAELoader, node 3)",
    ]
    assert problems[:3] == [
        "“Load Checkpoint” (CheckpointLoaderSimple, node 4): input ckpt_name: "
        "'v1-5-pruned-emaonly-fp16.safetensors' is not available on the server (it has none).",
        "“Load Checkpoint” (CheckpointLoaderSimple, node 74:40): input ckpt_name: "
        "'ace_step_v1_3.5b.safetensors' is not available on the server (it has none).",
        "“Load Checkpoint” (CheckpointLoaderSimple, node 1): input ckpt_name: "  # /music_extend's
        "'ace_step_v1_3.5b.safetensors' is not available on the server (it has none).",
    ]


@needs_samples
def test_a_real_export_with_custom_nodes_names_them(object_info: dict[str, Any]) -> None:
    graph = load_graph(SAMPLES / "10_wan21_vace_i2v_video.json")
    assert (
        "Node 163 “Unet Loader (GGUF)” uses UnetLoaderGGUF, which this server does not have: a custom node, or a "
        "core node of a newer ComfyUI than this server's 0.3.64." in validate_graph(graph, object_info, "0.3.64")
    )


def test_validation_names_missing_classes_inputs_and_links(object_info: dict[str, Any]) -> None:
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
        load_graph(FIXTURES / "ui_export.json")
    assert caught.value.user_message == (
        "ui_export.json: this is the editor (UI) format. In ComfyUI open the workflow and use "
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
    (tmp_path / "ui.json").write_text((FIXTURES / "ui_export.json").read_text())
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
    assert catalog.problems == [
        "broken.json: not valid JSON at line 1, column 2: Expecting property name enclosed in double quotes. "
        "Export it again from ComfyUI (Workflow > Export (API)).",
        "no_sampler.json: no prompt, seed or size inputs were found to make options of; add a binding file "
        "no_sampler.toml that names them.",
        "ui.json: this is the editor (UI) format. In ComfyUI open the workflow and use Workflow > Export (API), "
        "then save that file here instead.",
    ]


# --- checks over the fixture workflows and a small /object_info in both option-list forms -----------------------


@pytest.fixture(scope="module")
def fragment() -> dict[str, Any]:
    return json.loads((FIXTURES / "object_info_fragment.json").read_text(encoding="utf-8"))


def _detected(name: str) -> Workflow:
    from core.workflows.loader import detect_workflow

    return detect_workflow(FIXTURES / f"{name}.json")


@pytest.mark.parametrize("name", ["txt2img_subgraph", "ace_step_v1", "ace_step_v15", "upscale_only"])
def test_fixture_workflows_pass_the_check(fragment: dict[str, Any], name: str) -> None:
    assert validate_workflow(_detected(name), fragment, "0.38.1") == []


def test_a_missing_file_is_named_in_either_option_form(fragment: dict[str, Any]) -> None:
    # video.json's upscale model is listed in the V3 form ["COMBO", {"options": [...]}]
    assert validate_workflow(_detected("video"), fragment) == [
        "UpscaleModelLoader (node 3): input model_name: '2x-Missing.pth' is not available on the server "
        "(it has: 4x-UltraSharp.pth)."
    ]
    graph = load_graph(FIXTURES / "txt2img_subgraph.json")
    graph["12:34"]["inputs"]["sampler_name"] = "heun"  # the legacy form [[...], {...}]
    assert validate_graph(graph, fragment) == [
        "KSampler (node 12:34): input sampler_name: 'heun' is not available on the server "
        "(it has: euler, dpmpp_2m, uni_pc)."
    ]


def test_an_empty_choice_says_what_to_pick(fragment: dict[str, Any]) -> None:
    assert validate_workflow(_detected("linked_prompt"), fragment) == [
        "“Style LoRA” (LoraLoader, node 2) has no lora_name chosen; pick one of: ink.safetensors, film.safetensors."
    ]
    fragment = copy.deepcopy(fragment)
    fragment["LoraLoader"]["input"]["required"]["lora_name"] = ["COMBO", {"options": []}]
    assert validate_graph(load_graph(FIXTURES / "linked_prompt.json"), fragment) == [
        "“Style LoRA” (LoraLoader, node 2) has no lora_name chosen; the server has none to pick from."
    ]


def test_a_list_the_server_fills_elsewhere_is_not_judged(fragment: dict[str, Any]) -> None:
    graph = {"1": {"class_type": "LoadImageOutput", "inputs": {"image": "ComfyUI_00001_.png [output]"}}}
    assert validate_graph(graph, fragment) == []  # ["COMBO", {"remote": ...}] has no options to compare with


@pytest.mark.parametrize(
    ("version", "ends"),
    [("0.3.64", "than this server's 0.3.64."), (None, "than this server's version.")],
)
def test_a_missing_class_may_be_a_newer_core_node(fragment: dict[str, Any], version: str | None, ends: str) -> None:
    info = {k: v for k, v in fragment.items() if not k.startswith(("TextEncodeAceStepAudio1.5", "EmptyAceStep1.5"))}
    assert validate_graph(load_graph(FIXTURES / "ace_step_v15.json"), info, version) == [
        f"Node 2 uses TextEncodeAceStepAudio1.5, which this server does not have: a custom node, or a core node "
        f"of a newer ComfyUI {ends}",
        f"Node 4 uses EmptyAceStep1.5LatentAudio, which this server does not have: a custom node, or a core node "
        f"of a newer ComfyUI {ends}",
    ]


def test_windows_model_paths_match_the_servers_spelling(fragment: dict[str, Any]) -> None:
    workflow = _detected("txt2img_subgraph")  # saved as SD1.5\dream.safetensors; the server lists SD1.5/...
    assert validate_workflow(workflow, fragment) == []
    kept = runnable(Catalog(workflows={"sub": workflow}), [fragment])
    assert kept.workflows["sub"].graph["12:4"]["inputs"]["ckpt_name"] == "SD1.5/dream.safetensors"
    assert workflow.graph["12:4"]["inputs"]["ckpt_name"] == "SD1.5\\dream.safetensors"  # the loaded one is kept
    graph = copy.deepcopy(workflow.graph)
    graph["12:4"]["inputs"]["ckpt_name"] = "SD1.5\\missing.safetensors"
    assert validate_graph(graph, fragment) == [  # shown as written, not with doubled backslashes
        "CheckpointLoaderSimple (node 12:4): input ckpt_name: 'SD1.5\\missing.safetensors' is not available on the "
        "server (it has: SD1.5/dream.safetensors, ace_step_v1_3.5b.safetensors, ace_step_1.5_turbo_aio.safetensors)."
    ]


def test_runnable_names_the_version_and_skips_what_no_server_runs(fragment: dict[str, Any]) -> None:
    info = {k: v for k, v in fragment.items() if k != "LoadVideo"}
    kept = runnable(Catalog(workflows={"video": _detected("video")}), [info], ["0.3.64"])
    assert kept.workflows == {}
    assert kept.problems == [
        "video.json: /video skipped: Node 1 uses LoadVideo, which this server does not have: a custom node, or a "
        "core node of a newer ComfyUI than this server's 0.3.64. (and 1 more problem(s); run `python bot.py check`)"
    ]


def test_an_admin_reads_why_a_workflow_was_skipped_in_their_language(fragment: dict[str, Any]) -> None:
    info = {k: v for k, v in fragment.items() if k != "LoadVideo"}
    [problem] = runnable(Catalog(workflows={"video": _detected("video")}), [info], ["0.3.64"]).problems
    assert localize(problem, "ja") == (
        "video.json：/video はスキップしました：ノード 1 は LoadVideo を使っていますが、このサーバーにはありません。"
        "カスタムノードか、このサーバーの 0.3.64 より新しい ComfyUI のコアノードです。"
        "（ほか 1 件の問題があります。`python bot.py check` を実行してください）"
    )


def test_a_server_without_models_is_named_in_chinese(catalog, object_info: dict[str, Any]) -> None:
    [problem] = validate_graph(catalog.workflows["image"].graph, object_info)
    assert localize(problem, "zh-CN") == (
        "“Load Checkpoint”（CheckpointLoaderSimple，节点 4）：输入 ckpt_name：服务器上没有 "
        "'v1-5-pruned-emaonly-fp16.safetensors'（一个也没有）。"
    )


def test_options_are_checked_against_the_inputs_they_fill(fragment: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "sub.json").write_text((FIXTURES / "txt2img_subgraph.json").read_text())
    (tmp_path / "sub.toml").write_text(
        '[params.sampler]\ntype = "choice"\nchoices = ["euler", "heun"]\ntarget = "12:34.sampler_name"\n'
        '[params.steps]\ntype = "int"\nmax = 20000\ntarget = "12:34.steps"\n'
        '[params.cfg]\ntype = "text"\ntarget = "12:34.cfg"\n'
        '[params.model]\ntype = "choice"\nchoices_from = "CheckpointLoader.ckpt_name"\ntarget = "12:4.ckpt_name"\n'
    )
    assert validate_workflow(load_workflow(tmp_path / "sub.toml"), fragment) == [
        "option sampler: 'heun' is not available for KSampler.sampler_name (node 12:34); the server has: euler, "
        "dpmpp_2m, uni_pc.",
        "option steps allows values below KSampler.steps (node 12:34)'s minimum 1; set min = 1.",
        "option steps allows values above KSampler.steps (node 12:34)'s maximum 10000; set max = 10000.",
        'option cfg is of type text, but KSampler.cfg (node 12:34) takes FLOAT; use type = "float".',
        "option model: choices_from CheckpointLoader.ckpt_name is not a list of values on this server.",
    ]


def test_a_json_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    text = (FIXTURES / "upscale_only.json").read_text(encoding="utf-8")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (tmp_path / "bom.toml").write_bytes(b'\xef\xbb\xbf[params.photo]\ntype = "image"\ntarget = "1.image"\n')
    assert load_graph(tmp_path / "bom.json")["1"]["class_type"] == "LoadImage"
    assert load_workflow(tmp_path / "bom.toml").params[0].type is ParamType.IMAGE


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"1": {"class_type": "SaveImage",}}',
            "bad.json: not valid JSON at line 1, column 34: Expecting property name enclosed in double quotes. "
            "Export it again from ComfyUI (Workflow > Export (API)).",
        ),
        (b'{"1": "\xff"}', "bad.json: not UTF-8 text (byte 8 cannot be read); save it as UTF-8."),
    ],
)
def test_unreadable_json_is_explained_for_an_admin(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "bad.json").write_bytes(content)
    with pytest.raises(WorkflowError) as caught:
        load_graph(tmp_path / "bad.json")
    assert caught.value.user_message == message


def test_long_file_names_make_distinct_readable_commands(tmp_path: Path) -> None:
    text = (FIXTURES / "upscale_only.json").read_text()
    for stem in ("upscale photos with the ultrasharp model 4x", "upscale photos with the ultrasharp model 2x", "image"):
        (tmp_path / f"{stem}.json").write_text(text)
    (tmp_path / "image.toml").write_text('[params.photo]\ntype = "image"\ntarget = "1.image"\n')
    (tmp_path / "Image!.json").write_text(text)
    catalog = load_catalog(tmp_path)
    assert sorted(catalog.workflows) == [
        "image",
        "image-2",
        "upscale-photos-with-the",
        "upscale-photos-with-the-2",
    ]
    assert catalog.notes == [
        "Image!.json: the command is /image-2 (/image is already taken); a binding file Image!.toml can choose "
        "another name.",
        "upscale photos with the ultrasharp model 2x.json: the command is /upscale-photos-with-the "
        "(names are at most 32 characters); a binding file upscale photos with the ultrasharp model 2x.toml can "
        "choose another name.",
        "upscale photos with the ultrasharp model 4x.json: the command is /upscale-photos-with-the-2 "
        "(names are at most 32 characters and /upscale-photos-with-the is already taken); a binding "
        "file upscale photos with the ultrasharp model 4x.toml can choose another name.",
    ]
    assert catalog.problems == []
    assert localize(catalog.notes[0], "ja") == (
        "Image!.json：コマンドは /image-2 になります（/image はすでに使われています）。"
        "バインディングファイル Image!.toml で別の名前を付けられます。"
    )


async def test_input_options_reads_both_forms_from_the_server() -> None:
    import aiohttp

    from core.comfyui.client import ComfyClient
    from tests.fakes.comfyui import FakeComfyUI

    fake = FakeComfyUI(models={"upscale_models": ["4x-UltraSharp.pth"], "checkpoints": ["a.safetensors"]})
    await fake.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = ComfyClient(session, fake.url)
            assert await client.input_options("UpscaleModelLoader", "model_name") == ["4x-UltraSharp.pth"]  # COMBO
            assert await client.input_options("CheckpointLoaderSimple", "ckpt_name") == ["a.safetensors"]  # legacy
            assert await client.input_options("RIFE VFI", "ckpt_name") == []  # a class it lacks, name with a space
    finally:
        await fake.stop()


@pytest.mark.abuse
def test_a_workflow_cannot_take_the_name_of_one_of_the_bots_own_commands(tmp_path: Path) -> None:
    text = (FIXTURES / "upscale_only.json").read_text()
    (tmp_path / "queue.json").write_text(text)  # detected: renamed
    (tmp_path / "upscale.json").write_text(text)
    (tmp_path / "upscale.toml").write_text(
        '[command]\nname = "reload"\n[params.photo]\ntype = "image"\ntarget = "1.image"\n'
    )  # bound: refused, the admin chose that name
    catalog = load_catalog(tmp_path)
    assert sorted(catalog.workflows) == ["queue-2"]
    assert catalog.notes == [
        "queue.json: the command is /queue-2 (/queue is already taken); a binding file queue.toml can choose "
        "another name."
    ]
    assert catalog.problems == ["upscale.toml: /reload is one of the bot's own commands; choose another name."]


@pytest.mark.abuse
def test_a_choice_longer_than_discord_allows_is_refused_when_the_binding_is_read(tmp_path: Path) -> None:
    (tmp_path / "image.json").write_text((WORKFLOWS / "image.json").read_text())
    long_choice = "euler_" + "x" * 150
    (tmp_path / "image.toml").write_text(
        f'[params.prompt]\ntarget = "6.text"\n[params.sampler]\ntype = "choice"\nchoices = ["euler", "{long_choice}"]'
        '\ntarget = "3.sampler_name"\n'
    )
    catalog = load_catalog(tmp_path)
    assert catalog.workflows == {}
    assert catalog.problems == [
        f"image.toml: parameter 'sampler': a choice may have at most 100 characters (Discord's limit); "
        f"{long_choice[:40]!r}… has 156."
    ]
