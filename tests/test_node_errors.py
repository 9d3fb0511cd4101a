from __future__ import annotations

import json
from typing import Any

import pytest

from core.comfyui.node_errors import describe_rejection, missing_option_inputs
from core.i18n import localize
from tests.conftest import TRANSCRIPTS, WORKFLOWS

needs_transcripts = pytest.mark.skipif(
    not TRANSCRIPTS.is_dir(), reason="the recorded ComfyUI transcripts (../shared/comfyui-transcripts) are absent"
)


def _prompt_responses(scenario: str) -> list[tuple[dict[str, Any], int, Any]]:
    events = json.loads((TRANSCRIPTS / scenario).read_text())["events"]
    return [
        (e["request"].get("body_json"), e["response"]["status"], e["response"].get("body_json"))
        for e in events
        if e["kind"] == "http" and e["request"]["method"] == "POST" and e["request"]["path"] == "/prompt"
    ]


@needs_transcripts
def test_missing_checkpoint_names_node_input_and_what_the_server_has() -> None:
    _request, status, body = _prompt_responses("05_sd15_missing_checkpoint.json")[0]
    assert status == 400
    prompt = json.loads((WORKFLOWS / "image.json").read_text())
    assert describe_rejection(body["error"], body["node_errors"], prompt) == (
        "ComfyUI refused the workflow:\n"
        "• “Load Checkpoint” (CheckpointLoaderSimple, node 4): input ckpt_name: "
        "'v1-5-pruned-emaonly-fp16.safetensors' is not available on the server. The server has none installed."
    )


@needs_transcripts
def test_every_recorded_rejection_reads_well() -> None:
    described = [
        describe_rejection(body.get("error"), body["node_errors"], request["prompt"], version="0.3.64")
        for request, status, body in _prompt_responses("12_bad_prompts.json")
        if isinstance(body, dict)
        and (status == 400 or body.get("node_errors"))
        and isinstance(request, dict)
        and isinstance(request.get("prompt"), dict)
    ]
    assert described == [
        "ComfyUI refused the workflow:\n• Prompt has no outputs",
        "ComfyUI refused the workflow:\n• Cannot execute because a node is missing the class_type property "
        "(Node ID '#1').",
        "ComfyUI refused the workflow:\n• Node 1 uses NoSuchNode, which this server does not have: a custom node, "
        "or a core node of a newer ComfyUI than this server's 0.3.64.",
        "ComfyUI refused the workflow:\n• Prompt has no outputs",
        "ComfyUI refused the workflow:\n• EmptyImage (node 1): required input width is missing.",
        "ComfyUI refused the workflow:\n• EmptyImage (node 1): Failed to convert an input value to a INT value "
        "(width, wide, invalid literal for int() with base 10: 'wide').",
        "ComfyUI refused the workflow:\n• EmptyImage (node 1): input width: Value 0 smaller than min of 1.",
        "ComfyUI refused the workflow:\n• EmptyImage (node 1): input height: Value 99999 bigger than max of 16384.",
        "ComfyUI refused the workflow:\n• ImageScaleBy (node 2): input upscale_method: 'bogus' is not available on "
        "the server. It has: nearest-exact, bilinear, area, bicubic, lanczos.",
        "ComfyUI refused the workflow:\n• SaveImage (node 2): Bad linked input, must be a length-2 list of "
        "[node_id, slot_index] (images).",
        "ComfyUI refused the workflow:\n• SaveImage (node 2): it links to node '77', which is not in the workflow.",
        "ComfyUI refused the workflow:\n• SaveImage (node 2): Return type mismatch between linked nodes "
        "(images, received_type(LATENT) mismatch input_type(IMAGE)).",
        "ComfyUI refused the workflow:\n• EmptyImage (node 3): required input color is missing.",
        "ComfyUI refused the workflow:\n• Prompt has no outputs",
    ]


def test_long_option_lists_are_looked_up_and_shortened() -> None:
    node_errors = {
        "4": {
            "errors": [
                {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": "ckpt_name: 'x.safetensors' not in (list of length 30)",
                    "extra_info": {"input_name": "ckpt_name", "input_config": None, "received_value": "x.safetensors"},
                }
            ],
            "dependent_outputs": ["9"],
            "class_type": "CheckpointLoaderSimple",
        }
    }
    assert missing_option_inputs(node_errors) == {("CheckpointLoaderSimple", "ckpt_name")}
    options = {("CheckpointLoaderSimple", "ckpt_name"): [f"m{i}.safetensors" for i in range(30)]}
    text = describe_rejection(None, node_errors, {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {}}}, options)
    assert text == (
        "ComfyUI refused the workflow:\n• CheckpointLoaderSimple (node 4): input ckpt_name: 'x.safetensors' is not "
        "available on the server. It has: m0.safetensors, m1.safetensors, m2.safetensors, m3.safetensors, "
        "m4.safetensors, m5.safetensors, m6.safetensors, m7.safetensors and 22 more."
    )


def _not_in_list(value: Any, allowed: list[str]) -> dict[str, Any]:
    extra = {"input_name": "lora_name", "input_config": [allowed, {}], "received_value": value}
    item = {"type": "value_not_in_list", "message": "Value not in list", "details": "", "extra_info": extra}
    return {"2": {"errors": [item], "dependent_outputs": ["9"], "class_type": "LoraLoader"}}


PROMPT_WITH_LORA = {"2": {"class_type": "LoraLoader", "inputs": {}, "_meta": {"title": "Style LoRA"}}}


def test_a_windows_path_and_an_empty_choice_read_as_in_the_workflow_check() -> None:
    windows = describe_rejection(None, _not_in_list("sdxl\\ink.safetensors", ["film.safetensors"]), PROMPT_WITH_LORA)
    assert windows == (
        "ComfyUI refused the workflow:\n• “Style LoRA” (LoraLoader, node 2): input lora_name: "
        "'sdxl\\ink.safetensors' is not available on the server. It has: film.safetensors."
    )
    empty = describe_rejection(None, _not_in_list("", ["film.safetensors"]), PROMPT_WITH_LORA)
    assert empty == (
        "ComfyUI refused the workflow:\n• “Style LoRA” (LoraLoader, node 2): no lora_name chosen; "
        "pick one of: film.safetensors."
    )


def test_a_class_the_server_lacks_reads_the_same_on_both_generations() -> None:
    prompt = {"7": {"class_type": "ImageBlurPlus", "inputs": {}, "_meta": {"title": "Soft focus"}}}
    older = {"type": "invalid_prompt", "message": "Cannot execute because node ImageBlurPlus does not exist.",
             "details": "Node ID '#7'", "extra_info": {}}  # fmt: skip
    newer = {"type": "missing_node_type",
             "message": "Node 'Soft focus' not found. The custom node may not be installed.",
             "details": "Node ID '#7'", "extra_info": {"node_id": "7", "class_type": "ImageBlurPlus",
             "node_title": "Soft focus"}}  # fmt: skip
    expected = (
        "ComfyUI refused the workflow:\n• Node 7 “Soft focus” uses ImageBlurPlus, which this server does not have: "
        "a custom node, or a core node of a newer ComfyUI than this server's {}."
    )
    assert describe_rejection(older, {}, prompt, version="0.3.64") == expected.format("0.3.64")  # type: ignore[arg-type]
    assert describe_rejection(newer, {}, prompt, version="0.38.1") == expected.format("0.38.1")  # type: ignore[arg-type]


def test_the_bots_words_are_translated_and_the_servers_stay_as_it_wrote_them() -> None:
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}, "_meta": {"title": "Canvas"}}}
    too_big = {"type": "value_bigger_than_max", "message": "Value 99999 bigger than max of 16384",
               "details": "height", "extra_info": {"input_name": "height"}}  # fmt: skip
    odd = {"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes",
           "details": "images", "extra_info": {}}  # fmt: skip
    missing = {"type": "required_input_missing", "message": "Required input is missing", "details": "color",
               "extra_info": {"input_name": "color"}}  # fmt: skip
    node_errors: Any = {"1": {"errors": [too_big, odd, missing], "dependent_outputs": [], "class_type": "EmptyImage"}}
    text = describe_rejection(None, node_errors, prompt)

    assert text == (
        "ComfyUI refused the workflow:\n"
        "• “Canvas” (EmptyImage, node 1): input height: Value 99999 bigger than max of 16384.\n"
        "• “Canvas” (EmptyImage, node 1): Return type mismatch between linked nodes (images).\n"
        "• “Canvas” (EmptyImage, node 1): required input color is missing."
    )
    assert localize(text, "ja") == (
        "ComfyUI がワークフローを受け付けませんでした：\n"
        "• 「Canvas」（EmptyImage、ノード 1）：入力 height：Value 99999 bigger than max of 16384。\n"
        "• 「Canvas」（EmptyImage、ノード 1）：Return type mismatch between linked nodes (images).\n"
        "• 「Canvas」（EmptyImage、ノード 1）：必須の入力 color がありません。"
    )
    assert localize(text, "zh-CN") == (
        "ComfyUI 拒绝了该工作流：\n"
        "• “Canvas”（EmptyImage，节点 1）：输入 height：Value 99999 bigger than max of 16384。\n"
        "• “Canvas”（EmptyImage，节点 1）：Return type mismatch between linked nodes (images).\n"
        "• “Canvas”（EmptyImage，节点 1）：缺少必需的输入 color。"
    )


def test_a_missing_class_and_a_long_list_read_in_chinese() -> None:
    prompt = {"7": {"class_type": "ImageBlurPlus", "inputs": {}, "_meta": {"title": "Soft focus"}}}
    error: Any = {"type": "missing_node_type", "message": "Node 'Soft focus' not found.", "details": "Node ID '#7'",
                  "extra_info": {"node_id": "7", "class_type": "ImageBlurPlus"}}  # fmt: skip
    assert localize(describe_rejection(error, {}, prompt, version="0.3.64"), "zh-CN") == (
        "ComfyUI 拒绝了该工作流：\n• 节点 7 “Soft focus” 使用了 ImageBlurPlus，但此服务器没有：它是自定义节点，"
        "或是比此服务器的 0.3.64 版更新的 ComfyUI 的核心节点。"
    )
    listed = describe_rejection(None, _not_in_list("x", [f"m{i}" for i in range(10)]), PROMPT_WITH_LORA)
    assert localize(listed, "ja") == (
        "ComfyUI がワークフローを受け付けませんでした：\n• 「Style LoRA」（LoraLoader、ノード 2）：入力 lora_name："
        "'x' はサーバーにありません。サーバーにあるのは：m0, m1, m2, m3, m4, m5, m6, m7 ほか 2 件。"
    )


def test_a_refusal_with_very_many_problems_says_how_many_more() -> None:
    items = [{"type": "required_input_missing", "message": "", "details": "", "extra_info": {"input_name": f"in{i}"}}
             for i in range(200)]  # fmt: skip
    node_errors: Any = {"1": {"errors": items, "dependent_outputs": [], "class_type": "EmptyImage"}}
    text = describe_rejection(None, node_errors, {})
    assert len(text) < 1600
    assert text.endswith("• EmptyImage (node 1): required input in26 is missing.\n• …and 173 more problem(s).")
    assert localize(text, "ja").endswith("必須の入力 in26 がありません。\n• …ほか 173 件の問題があります。")
