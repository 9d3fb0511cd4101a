"""Members' attachments across restarts: keep a copy of each, and put it back on the server before a resubmission.

A job the server forgot is submitted again with the names its attachments were uploaded under. Those files may
be gone (ComfyUI's input folder was cleaned) or, worse, replaced by another file of the same name: the job would
then run on someone else's picture. The kept copy closes both holes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from core.comfyui.client import ComfyClient
from core.errors import BotError
from core.jobs.store import JobRecord, JobStore
from core.workflows.model import InputFile

log = logging.getLogger(__name__)
MAX_NAME = 100  # characters of a member's file name quoted back in a message


class InputGone(BotError):
    """An attachment the job needs is neither on the server nor kept by the bot."""

    def __init__(self, param: str, name: str) -> None:
        shown = name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"
        super().__init__(
            f"The file you attached ({shown}) is no longer on the ComfyUI server and the bot has no copy of it; "
            "please run the command again with the attachment.",
            detail=f"input {param} gone",
        )


async def remember_inputs(
    store: JobStore, record: JobRecord, values: Mapping[str, Any], uploaded: Mapping[str, Any]
) -> JobRecord:
    """Keep a copy of each attachment in `values` and record the name `uploaded` gives it on the server."""
    files = {param: value for param, value in values.items() if isinstance(value, InputFile)}
    if not files:
        return record
    for param, file in files.items():
        await store.keep_input(record.id, param, file.data)
    return await store.update(record, inputs={**record.inputs, **{p: str(uploaded[p]) for p in files}})


async def ensure_inputs(client: ComfyClient, record: JobRecord, store: JobStore) -> JobRecord:
    """Make sure every attachment of `record` is on the server before it is submitted again.

    Returns the record to submit: the same one, or one whose inputs and prompt name a re-uploaded file anew.
    Raises InputGone when a file is missing and the bot kept no copy of it.
    """
    renamed: dict[str, str] = {}
    for param, uploaded in record.inputs.items():
        subfolder, _, name = uploaded.rpartition("/")
        copy = await store.kept_input(record.id, param)
        if copy is not None:
            # Uploaded again even when the name still exists: ComfyUI keeps the name when the file there has the
            # same bytes (or is gone) and picks a new one when another file took it, so only ours is ever used.
            again = await client.upload(name, copy, subfolder=subfolder)
            if again != uploaded:
                log.info("job %s: %s now uploaded as %s (another file had its name)", record.id, uploaded, again)
                renamed[uploaded] = again
        elif not await client.input_exists(name, subfolder=subfolder):
            raise InputGone(param, str(record.values.get(param) or name))
    if not renamed:
        return record
    inputs = {param: renamed.get(uploaded, uploaded) for param, uploaded in record.inputs.items()}
    return await store.update(record, inputs=inputs, prompt=_renamed(record.prompt, renamed))


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
