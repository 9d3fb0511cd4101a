"""Forms (modals) that ask for what a slash option cannot hold, such as multi-line lyrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import discord

from core.workflows import Param, Workflow
from discord_ui.errors import report_error

MODAL_TEXT_MAX = 4000  # Discord's limit for a text input
Submit = Callable[[discord.Interaction[Any], dict[str, str]], Awaitable[None]]


class TextForm(discord.ui.Modal):
    """Asks for the multi-line values of `params`; `submit` gets the interaction and what was typed."""

    def __init__(self, workflow: Workflow, params: list[Param], submit: Submit) -> None:
        super().__init__(title=f"/{workflow.name}"[:45], timeout=15 * 60)
        self.command, self.submit = workflow.name, submit
        self.inputs: dict[str, discord.ui.TextInput[TextForm]] = {}
        for param in params[:5]:
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
        await self.submit(interaction, {name: field.value for name, field in self.inputs.items()})

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]
        await report_error(interaction, error, command=self.command)
