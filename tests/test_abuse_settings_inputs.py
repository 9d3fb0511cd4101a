"""Attachment jobs across restarts (issue 11 item 5): kept copies and their return to the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from core.comfyui.client import ComfyClient
from core.errors import BotError, ComfyServerError
from core.jobs.engine import UPLOAD_SUBFOLDER
from core.jobs.inputs import InputGone, ensure_inputs, keep_inputs, restored_values, stored_copies
from core.jobs.store import JobRecord, JobState, JobStore
from core.workflows import load_workflow
from core.workflows.model import InputFile, Workflow
from tests.conftest import write_blur_workflow
from tests.fakes.comfyui import FakeComfyUI

pytestmark = pytest.mark.abuse

JOB = "0b5e3f9a-2c1d-4e8f-9a7b-6c5d4e3f2a1b"
CAT, DOG = b"\x89PNG the member's cat", b"\x89PNG someone else's dog"


@pytest.fixture
async def client(comfy: FakeComfyUI) -> AsyncIterator[ComfyClient]:
    async with aiohttp.ClientSession() as session:
        yield ComfyClient(session, comfy.url)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    opened = await JobStore(tmp_path / "jobs.sqlite3").open()
    yield opened
    await opened.close()


async def submitted_job(client: ComfyClient, store: JobStore, *, keep: bool = True) -> JobRecord:
    """A /blur job as the engine leaves it after uploading the member's cat.png and submitting."""
    uploaded = await client.upload("cat.png", CAT, subfolder=UPLOAD_SUBFOLDER)
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": uploaded}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3}},
    }
    record = JobRecord(
        id=JOB, workflow="blur", values={"picture": "cat.png"}, state=JobState.SUBMITTED, prompt=prompt,
        inputs={"picture": uploaded},
    )  # fmt: skip
    await store.add(record)
    if keep:
        await keep_inputs(store, JOB, {"picture": InputFile("cat.png", CAT), "strength": 3})
    return record


def uploads(comfy: FakeComfyUI) -> int:
    return sum(1 for r in comfy.requests if r.path == "/upload/image")


async def test_a_kept_copy_and_the_uploaded_name_are_read_back(client: ComfyClient, store: JobStore) -> None:
    record = await submitted_job(client, store)
    assert record.inputs == {"picture": "discord-bot/cat.png"}
    assert await store.kept_input(JOB, "picture") == CAT
    stored = await store.get(JOB)
    assert stored is not None and stored.inputs == {"picture": "discord-bot/cat.png"}


async def test_a_file_still_on_the_server_is_used_as_it_is(
    comfy: FakeComfyUI, client: ComfyClient, store: JobStore
) -> None:
    record = await submitted_job(client, store)
    assert await ensure_inputs(client, record, stored_copies(store, JOB)) == record
    assert comfy.files[("input", "discord-bot", "cat.png")] == CAT
    assert [k for k in comfy.files if k[0] == "input" and k[1] == "discord-bot"] == [
        ("input", "discord-bot", "cat.png")
    ]


async def test_a_file_the_server_lost_is_uploaded_again_from_the_copy(
    comfy: FakeComfyUI, client: ComfyClient, store: JobStore
) -> None:
    record = await submitted_job(client, store)
    del comfy.files[("input", "discord-bot", "cat.png")]  # ComfyUI's input folder was cleaned
    before = uploads(comfy)
    assert await ensure_inputs(client, record, stored_copies(store, JOB)) == record
    assert uploads(comfy) == before + 1
    assert comfy.files[("input", "discord-bot", "cat.png")] == CAT


async def test_another_file_under_the_same_name_is_never_used(
    comfy: FakeComfyUI, client: ComfyClient, store: JobStore
) -> None:
    record = await submitted_job(client, store)
    comfy.files[("input", "discord-bot", "cat.png")] = DOG  # the name now holds someone else's picture
    again = await ensure_inputs(client, record, stored_copies(store, JOB))
    assert again.inputs == {"picture": "discord-bot/cat (1).png"}
    assert again.prompt is not None and again.prompt["1"]["inputs"]["image"] == "discord-bot/cat (1).png"
    assert again.prompt["2"] == record.prompt["2"]  # type: ignore[index]
    assert comfy.files[("input", "discord-bot", "cat (1).png")] == CAT
    assert comfy.files[("input", "discord-bot", "cat.png")] == DOG  # the other file is left alone


async def test_without_a_copy_a_file_still_there_is_checked_not_uploaded(
    comfy: FakeComfyUI, client: ComfyClient, store: JobStore
) -> None:
    record = await submitted_job(client, store, keep=False)
    before = uploads(comfy)
    assert await ensure_inputs(client, record, stored_copies(store, JOB)) == record
    assert uploads(comfy) == before
    views = [r for r in comfy.requests if r.path == "/view"]
    assert [r.query for r in views] == [{"filename": "cat.png", "subfolder": "discord-bot", "type": "input"}]


async def test_without_a_copy_a_lost_file_fails_the_job_clearly(
    comfy: FakeComfyUI, client: ComfyClient, store: JobStore
) -> None:
    record = await submitted_job(client, store, keep=False)
    del comfy.files[("input", "discord-bot", "cat.png")]
    with pytest.raises(InputGone) as caught:
        await ensure_inputs(client, record, stored_copies(store, JOB))
    assert caught.value.user_message == (
        "The file you attached (cat.png) is no longer on the ComfyUI server and the bot has no copy of it; "
        "please run the command again with the attachment."
    )


async def test_a_server_error_while_checking_is_not_taken_for_a_missing_file(
    comfy: FakeComfyUI, client: ComfyClient, store: JobStore
) -> None:
    record = await submitted_job(client, store, keep=False)
    comfy.http_failures.append(("GET", "/view", 500))
    with pytest.raises(ComfyServerError) as caught:
        await ensure_inputs(client, record, stored_copies(store, JOB))
    assert caught.value.reason == "GET /view cat.png (input) -> 500"


async def test_the_copy_is_gone_once_the_member_was_told(client: ComfyClient, store: JobStore) -> None:
    record = await submitted_job(client, store)
    await store.update(record, state=JobState.DONE, reported=True)
    assert await store.kept_input(JOB, "picture") is None


def photo_workflow(folder: Path, param: str) -> Workflow:
    """/blur with its picture option named `param`."""
    write_blur_workflow(folder)
    binding = folder / "blur.toml"
    binding.write_text(binding.read_text(encoding="utf-8").replace("[params.picture]", f'[params."{param}"]'))
    return load_workflow(binding)


@pytest.mark.parametrize("param", ["picture", "größe"])
async def test_a_job_that_never_reached_a_server_gets_its_attachment_back_from_the_copy(
    store: JobStore, tmp_path: Path, param: str
) -> None:
    workflow = photo_workflow(tmp_path / "workflows", param)
    record = JobRecord(id=JOB, workflow="blur", values={param: "cat.png"})
    await keep_inputs(store, JOB, {param: InputFile("cat.png", CAT)})
    assert await restored_values(store, workflow, record) == {param: InputFile("cat.png", CAT)}


async def test_a_job_that_never_reached_a_server_without_a_copy_fails_clearly(store: JobStore, tmp_path: Path) -> None:
    workflow = photo_workflow(tmp_path / "workflows", "picture")
    record = JobRecord(id=JOB, workflow="blur", values={"picture": "cat.png"})
    with pytest.raises(InputGone) as caught:
        await restored_values(store, workflow, record)
    assert caught.value.user_message == (
        "The bot restarted before the file you attached (cat.png) reached the ComfyUI server, and the bot has no "
        "copy of it; please run the command again with the attachment."
    )


async def test_a_copy_that_cannot_be_kept_refuses_the_job(store: JobStore) -> None:
    store.inputs_dir.write_text("")  # a file where the copies' folder should be
    with pytest.raises(BotError) as caught:
        await keep_inputs(store, JOB, {"picture": InputFile("cat.png", CAT)})
    assert caught.value.user_message == (
        "The bot could not keep a copy of your attachment, which it needs to run the job safely; "
        "please try again later."
    )
