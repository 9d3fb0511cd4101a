"""Forms (modals) that ask for what a slash option cannot hold, such as multi-line lyrics, or a file to upload."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import discord

from core.workflows import Param, Workflow
from discord_ui.errors import report_error

MODAL_TEXT_MAX = 4000  # Discord's limit for a text input
MODAL_ITEMS = 5  # Discord's limit of top-level components in a modal
Submit = Callable[[discord.Interaction[Any], dict[str, Any]], Awaitable[None]]


class TextForm(discord.ui.Modal):
    """Asks for the multi-line values of `params` and a file for each of `uploads` (discord.py's FileUpload);
    `submit` gets the interaction and what was typed (str) or uploaded (discord.Attachment), by option name."""

    def __init__(self, workflow: Workflow, params: list[Param], submit: Submit, uploads: list[Param] = ()) -> None:  # type: ignore[assignment]
        super().__init__(title=f"/{workflow.name}"[:45], timeout=15 * 60)
        self.command, self.submit = workflow.name, submit
        self.inputs: dict[str, discord.ui.TextInput[TextForm]] = {}
        self.uploads: dict[str, discord.ui.FileUpload[TextForm]] = {}
        for param in list(uploads)[:MODAL_ITEMS]:
            upload: discord.ui.FileUpload[TextForm] = discord.ui.FileUpload(required=True, min_values=1, max_values=1)
            self.uploads[param.name] = upload
            self.add_item(discord.ui.Label(text=param.name[:45], description=param.description[:100] or None,
                                           component=upload))  # fmt: skip
        for param in params[: MODAL_ITEMS - len(self.uploads)]:
            default = param.default if param.default is not None else workflow.current_value(param)
            longest = min(param.max_length or MODAL_TEXT_MAX, MODAL_TEXT_MAX)
            field: discord.ui.TextInput[TextForm] = discord.ui.TextInput(
                label=param.name[:45],
                style=discord.TextStyle.paragraph,
                placeholder=param.description[:100],
                default=str(default or "")[:longest],  # Discord refuses a form whose text is over its limit
                max_length=longest,
                required=True,
            )
            self.inputs[param.name] = field
            self.add_item(field)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:  # type: ignore[override]
        given: dict[str, Any] = {name: field.value for name, field in self.inputs.items()}
        given |= {name: upload.values[0] for name, upload in self.uploads.items() if upload.values}
        await self.submit(interaction, given)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]
        await report_error(interaction, error, command=self.command)
