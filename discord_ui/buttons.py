"""Persistent job buttons: Cancel while a job runs; Re-roll, Details and Delete on its result; Re-run in /history;
the follow-ups U1..U4, V1..V4 and Extend on the result of a workflow whose binding declares them.

A button's custom_id carries the action and the job id, and its state comes from the store, so buttons
keep working after a restart. What a button does beyond showing things (cancel, run again, who may act)
belongs to the front that registered them, through `JobActions`.

Labels are in the language of the member the view is built for (the requester of the job). A button that
discord.py re-creates from its custom_id after a restart only dispatches the click: its label is never sent
again (the message keeps the labels it was posted with), so it is built in English.
"""

from __future__ import annotations

import contextlib
import logging
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import discord

from core.errors import InvalidInput
from core.i18n import Lines, Text, localize
from core.jobs.engine import JobResult
from core.jobs.kept import KeptFiles
from core.jobs.store import JobRecord
from core.workflows import InputFile, Workflow
from discord_ui.errors import report_error
from discord_ui.messages import DELETED, JOB_STATES, bot_reaches, cap, followup, option_lines, respond

log = logging.getLogger(__name__)

# Job ids are UUIDs; jobs stored before they were (32 hex digits) keep their working buttons.
JOB_ID = r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{32}"
JOB_BUTTON = rf"job:(?P<action>cancel|reroll|rerun|details|delete):(?P<job>{JOB_ID})"
ACTIONS = {
    "cancel": (Text("Cancel"), discord.ButtonStyle.secondary),
    "reroll": (Text("Re-roll"), discord.ButtonStyle.primary),
    "rerun": (Text("Re-run"), discord.ButtonStyle.primary),
    "details": (Text("Details"), discord.ButtonStyle.secondary),
    "delete": (Text("Delete"), discord.ButtonStyle.danger),
}
# A follow-up's custom_id: `fu:<action>:<job id>:<index of the output in the job's result>`
FOLLOWUP_BUTTON = rf"fu:(?P<action>upscale|variation|extend):(?P<job>{JOB_ID}):(?P<index>[0-9]{{1,4}})"
MAX_PER_FOLLOWUP = 4  # U1..U4, V1..V4: one button per output, for the first four outputs of the kind
FOLLOWUP_LETTERS = {"upscale": "U", "variation": "V"}  # labels U1, V2: the same in every language
EXTEND = Text("Extend")
EXTEND_NUMBER = Text("Extend {number}")
FOLLOWUP_ROWS = {"upscale": 1, "variation": 2, "extend": 1}  # under Re-roll, Details and Delete (row 0)
NOT_KNOWN = Text("This job is no longer known to the bot.")
NOT_YOURS_TO_DELETE = Text("Only the member who asked for this result (or an admin) can delete it.")
# Job details (the Details button)
DETAILS_TITLE = Text("**/{command}** · job `{job}` · {state}")
DETAILS_SERVER = Text("**server:** {server} · attempts {attempts}")
NO_SERVER_YET = Text("none yet")
DETAILS_TIMES = Text("**started:** <t:{created}:f> · last change <t:{updated}:R>")
DETAILS_ERROR = Text("**error:** {error}")


class JobActions(Protocol):
    """What job buttons need from the front that owns the jobs."""

    async def job(self, job_id: str) -> JobRecord | None: ...

    def workflow(self, name: str) -> Workflow | None: ...

    async def may_manage(self, interaction: discord.Interaction[Any], owner_id: int | None) -> bool: ...

    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: str) -> None: ...

    async def reroll(self, interaction: discord.Interaction[Any], record: JobRecord) -> None: ...

    async def rerun(self, interaction: discord.Interaction[Any], record: JobRecord) -> None: ...

    async def followup(
        self, interaction: discord.Interaction[Any], record: JobRecord, action: str, index: int
    ) -> None: ...


_actions: weakref.WeakKeyDictionary[discord.Client, JobActions] = weakref.WeakKeyDictionary()


def install(client: discord.Client, actions: JobActions) -> None:
    """Make job buttons clickable on `client` (also on messages sent before a restart)."""
    _actions[client] = actions
    client.add_dynamic_items(JobButton, FollowupButton)


def uninstall(client: discord.Client) -> None:
    """Stop handling job buttons on `client` and forget its actions."""
    client.remove_dynamic_items(JobButton, FollowupButton)
    _actions.pop(client, None)


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=JOB_BUTTON):
    """A button on a job's message; its custom_id is `job:<action>:<job id>`."""

    def __init__(self, action: str, job_id: str, label: str | None = None) -> None:
        default_label, style = ACTIONS[action]
        button = discord.ui.Button[Any](
            label=str(label or default_label), style=style, custom_id=f"job:{action}:{job_id}"
        )
        super().__init__(button)
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:  # type: ignore[override]
        record: JobRecord | None = None
        try:
            actions = _actions.get(interaction.client)
            if actions is None:
                raise InvalidInput(NOT_KNOWN)
            record = await actions.job(self.job_id)
            if self.action == "cancel":
                await actions.cancel_job(interaction, self.job_id)
                return
            if record is None:
                raise InvalidInput(NOT_KNOWN)
            if self.action == "details":
                await respond(interaction, job_details(record, actions.workflow(record.workflow)))
            elif self.action == "delete":
                if not await actions.may_manage(interaction, record.user_id):
                    raise InvalidInput(NOT_YOURS_TO_DELETE)
                await delete_result(interaction, record)
            elif self.action == "rerun":
                await actions.rerun(interaction, record)
            else:
                await actions.reroll(interaction, record)
        except Exception as exc:  # explained privately, as for commands, naming the job's command
            await report_error(interaction, exc, command=record.workflow if record else None)


class FollowupButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=FOLLOWUP_BUTTON):
    """U1..U4, V1..V4 or Extend under a result; its custom_id names the job and which of its outputs to use."""

    def __init__(self, action: str, job_id: str, index: int, label: str = "") -> None:
        button = discord.ui.Button[Any](
            label=label or action,  # re-created from its custom_id after a restart: the label is not sent again
            style=discord.ButtonStyle.secondary,
            custom_id=f"fu:{action}:{job_id}:{index}",
            row=FOLLOWUP_ROWS[action],
        )
        super().__init__(button)
        self.action, self.job_id, self.index = action, job_id, index

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> FollowupButton:
        return cls(match["action"], match["job"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:  # type: ignore[override]
        record: JobRecord | None = None
        try:
            actions = _actions.get(interaction.client)
            record = await actions.job(self.job_id) if actions is not None else None
            if actions is None or record is None:
                raise InvalidInput(NOT_KNOWN)
            await actions.followup(interaction, record, self.action, self.index)
        except Exception as exc:  # explained privately, naming the job's command
            await report_error(interaction, exc, command=record.workflow if record else None)


def followup_buttons(
    job_id: str, actions: Sequence[str], kinds: Sequence[str], *, locale: object = None
) -> list[FollowupButton]:
    """The follow-up buttons for a result whose files have the media `kinds` (in order), for the `actions` offered.

    Upscale and Variation get one button per image (at most four), Extend one per audio file (likewise).
    """
    found: list[FollowupButton] = []
    images = [index for index, kind in enumerate(kinds) if kind == "image"][:MAX_PER_FOLLOWUP]
    sounds = [index for index, kind in enumerate(kinds) if kind == "audio"][:MAX_PER_FOLLOWUP]
    for action in ("upscale", "variation"):
        if action in actions:
            letter = FOLLOWUP_LETTERS[action]
            found += [FollowupButton(action, job_id, index, f"{letter}{n}") for n, index in enumerate(images, 1)]
    if "extend" in actions:
        for number, index in enumerate(sounds, 1):
            text = EXTEND if len(sounds) == 1 else EXTEND_NUMBER.format(number=number)
            found.append(FollowupButton("extend", job_id, index, localize(text, locale)))
    return found


async def keep_followups(
    kept: KeptFiles, workflow: Workflow, values: Mapping[str, Any], result: JobResult, *, locale: object = None
) -> list[FollowupButton]:
    """Keep the attachments (for Re-roll) and the outputs the workflow's follow-ups may use; return their buttons.

    A file that cannot be kept costs its buttons, never the result: it is delivered all the same.
    """
    followups = workflow.followups
    offered = [a for a in ("upscale", "variation", "extend") if getattr(followups, a)]
    chosen = followup_buttons(result.job_id, offered, [f.kind for f in result.files], locale=locale)
    inputs = {name: value for name, value in values.items() if isinstance(value, InputFile)}
    if not chosen and not inputs:
        return []
    try:
        await kept.prune_if_due()
        await kept.keep(result.job_id, inputs, {b.index: result.files[b.index] for b in chosen})
    except OSError as exc:
        log.warning("job %s: its files could not be kept for follow-ups: %s", result.job_id, exc)
        return []
    return chosen


async def delete_result(interaction: discord.Interaction[Any], record: JobRecord) -> None:
    """Delete the clicked result message and the further ones its files took, and say so privately."""
    if not bot_reaches(interaction):
        # Only the click's own token reaches here (a group DM): answered as an update of the clicked message, it
        # may delete that message. The further ones belong to the command's token, long gone: they stay.
        await interaction.response.defer()
        with contextlib.suppress(discord.NotFound):  # two clicks at once
            await interaction.delete_original_response()
        await followup(interaction, DELETED, ephemeral=True)
        return
    await respond(interaction, DELETED)
    channel = interaction.channel
    messages: list[discord.PartialMessage | discord.Message] = []
    if interaction.message is not None:
        messages.append(interaction.message)
    if isinstance(channel, discord.abc.Messageable) and hasattr(channel, "get_partial_message"):
        messages += [channel.get_partial_message(message_id) for message_id in record.more_messages]  # type: ignore[attr-defined]
    for message in messages:
        with contextlib.suppress(discord.NotFound):  # two clicks at once, or deleted by hand already
            await message.delete()


def label(action: str, locale: object) -> str:
    """The label of an action's button in the language of `locale`."""
    return localize(ACTIONS[action][0], locale)


def job_view(job_id: str, *actions: str, locale: object = None) -> discord.ui.View:
    """Build a lasting view with one button per action for job `job_id`, labelled for `locale`."""
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id, label(action, locale)))
    return view


def status_view(job_id: str, *, locale: object = None) -> discord.ui.View:
    """Build the buttons of a job still waiting or running: Cancel."""
    return job_view(job_id, "cancel", locale=locale)


def result_view(job_id: str, *, locale: object = None, followups: Sequence[FollowupButton] = ()) -> discord.ui.View:
    """Build the buttons of a finished job: Reroll, Details, Delete, then its follow-ups (see followup_buttons)."""
    view = job_view(job_id, "reroll", "details", "delete", locale=locale)
    for button in followups:
        view.add_item(button)
    return view


def job_details(record: JobRecord, workflow: Workflow | None = None) -> Lines:
    """Everything about a job, for its Details button (the send helpers cap the whole)."""
    lines: list[str] = [DETAILS_TITLE.format(command=record.workflow, job=record.id, state=JOB_STATES[record.state])]
    lines += option_lines(record.values, workflow)
    lines.append(DETAILS_SERVER.format(server=record.server or NO_SERVER_YET, attempts=record.attempts))
    lines.append(DETAILS_TIMES.format(created=int(record.created_at), updated=int(record.updated_at)))
    if record.error:
        lines.append(DETAILS_ERROR.format(error=cap(record.error, 600)))  # stored in the requester's language
    return Lines(lines)
