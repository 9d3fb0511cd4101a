"""Members' attachments across restarts: keep a copy of each, and put it back on the server before a resubmission.

A job the server forgot is submitted again with the names its attachments were uploaded under. Those files may
be gone (ComfyUI's input folder was cleaned) or, worse, replaced by another file of the same name: the job would
then run on someone else's picture. The kept copy closes both holes. A job that never reached a server before the
bot stopped is started again from the kept copies too: its stored options name its attachments, nothing more.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from core.comfyui.client import ComfyClient
from core.errors import BotError
from core.i18n import Text
from core.jobs.store import SAFE_NAME, JobRecord, JobStore
from core.text import cap
from core.workflows.model import FILE_TYPES, InputFile, Workflow

log = logging.getLogger(__name__)
MAX_NAME = 100  # characters of a member's file name quoted back in a message

# What a member is told
GONE = Text(
    "The file you attached ({name}) is no longer on the ComfyUI server and the bot has no copy of it; "
    "please run the command again with the attachment."
)
GONE_BEFORE_UPLOAD = Text(
    "The bot restarted before the file you attached ({name}) reached the ComfyUI server, "
    "and the bot has no copy of it; please run the command again with the attachment."
)
NOT_KEPT = Text(
    "The bot could not keep a copy of your attachment, which it needs to run the job safely; please try again later."
)


class InputGone(BotError):
    """An attachment the job needs is neither on the server nor kept by the bot."""

    def __init__(self, param: str, name: str, *, uploaded: bool = True) -> None:
        message = GONE if uploaded else GONE_BEFORE_UPLOAD
        super().__init__(message.format(name=cap(name, MAX_NAME)), detail=f"input {param} gone")


async def keep_inputs(store: JobStore, job_id: str, values: Mapping[str, Any]) -> None:
    """Keep a copy of each attachment in `values`, before the job waits for a server or uploads anything."""
    for param, value in values.items():
        if isinstance(value, InputFile):
            try:
                await store.keep_input(job_id, _copy_name(param), value.data)
            except OSError as exc:
                # Without a copy a resubmission could run on another file of the same name: refuse instead.
                raise BotError(NOT_KEPT, detail=f"keeping input {param} of job {job_id}: {exc}") from exc


async def restored_values(store: JobStore, workflow: Workflow, record: JobRecord) -> dict[str, Any]:
    """The options of a job that never reached a server, with each attachment read back from its kept copy.

    Raises InputGone when a copy is missing: the job never runs on whatever file of that name the server has.
    """
    values = dict(record.values)
    for param in workflow.params:
        name = values.get(param.name)
        if param.type not in FILE_TYPES or name is None:
            continue
        copy = await store.kept_input(record.id, _copy_name(param.name))
        if copy is None:
            raise InputGone(param.name, str(name), uploaded=False)
        values[param.name] = InputFile(str(name), copy)
    return values


# An attachment's bytes by option name, or None when the bot holds no copy of it
Copies = Callable[[str], Awaitable[bytes | None]]


def stored_copies(store: JobStore, job_id: str) -> Copies:
    """The copies `keep_inputs` kept in the store (they survive a restart of the bot)."""

    async def copy_of(param: str) -> bytes | None:
        return await store.kept_input(job_id, _copy_name(param))

    return copy_of


def held_copies(values: Mapping[str, Any]) -> Copies:
    """The attachments a job of this process still holds in memory (a bot without a store, the command line)."""

    async def copy_of(param: str) -> bytes | None:
        value = values.get(param)
        return value.data if isinstance(value, InputFile) else None

    return copy_of


async def ensure_inputs(client: ComfyClient, record: JobRecord, copies: Copies) -> JobRecord:
    """Make sure every attachment of `record` is on `client`'s server before it is submitted there (again).

    Returns the record to submit: the same one, or one whose inputs and prompt name a re-uploaded file anew
    (for the caller to save). Raises InputGone when a file is missing and the bot has no copy of it.
    """
    renamed: dict[str, str] = {}
    for param, uploaded in record.inputs.items():
        subfolder, _, name = uploaded.rpartition("/")
        copy = await copies(param)
        if copy is not None:
            # Uploaded again even when the name still exists: ComfyUI keeps the name when the file there has the
            # same bytes (or is gone) and picks a new one when another file took it, so only ours is ever used.
            # A job moved to another server gets its files there the same way.
            again = await client.upload(name, copy, subfolder=subfolder)
            if again != uploaded:
                log.info("job %s: %s now uploaded as %s (another file had its name)", record.id, uploaded, again)
                renamed[uploaded] = again
        elif not await client.input_exists(name, subfolder=subfolder):
            raise InputGone(param, str(record.values.get(param) or name))
    if not renamed:
        return record
    inputs = {param: renamed.get(uploaded, uploaded) for param, uploaded in record.inputs.items()}
    return replace(record, inputs=inputs, prompt=_renamed(record.prompt, renamed))


def _renamed(prompt: dict[str, Any] | None, names: Mapping[str, str]) -> dict[str, Any] | None:
    """Point every node input that names an old upload at its new name."""
    if prompt is None:
        return None
    result: dict[str, Any] = {}
    for node_id, node in prompt.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            result[node_id] = node
            continue
        fixed = {key: names.get(value, value) if isinstance(value, str) else value for key, value in inputs.items()}
        result[node_id] = {**node, "inputs": fixed}
    return result


def _copy_name(param: str) -> str:
    """The store's name for a parameter's kept copy: option names may hold any letter, file names only ASCII."""
    if SAFE_NAME.fullmatch(param):
        return param
    # 34 characters: longer than any option name may be (32), so it never collides with one
    return "p-" + hashlib.sha256(param.encode()).hexdigest()[:32]
