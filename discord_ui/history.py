"""/history pages: five jobs a page, each with Re-run and Details, and Previous/Next that survive a restart.

A page button's custom_id carries whose history it shows and which page; the page itself is built by the
front that installed the pager (it reads the store and decides who may see what).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import discord

from core.i18n import Lines, Text, localize
from core.jobs.store import JobRecord, JobState
from core.workflows import Workflow
from discord_ui.buttons import JobButton
from discord_ui.errors import report_error
from discord_ui.messages import JOB_STATES, option_values, update

PAGE_SIZE = 5
MAX_PARAMS = 240  # one job's option values, together: five entries and a title fit in one message
MAX_PARAM = 80  # one option value
HISTORY_BUTTON = r"history:(?P<owner>[0-9]{1,20}):(?P<page>[0-9]{1,6})"
YOUR_JOBS = Text("**Your jobs** · page {page} of {pages} ({total} in all)")
THEIR_JOBS = Text("**Jobs of <@{user}>** · page {page} of {pages} ({total} in all)")
NO_JOBS_YET = Text("You have no jobs yet.")
NO_JOBS_OF = Text("<@{user}> has no jobs yet.")
ENTRY = Text("**{number}.** /{command} · {state} · <t:{when}:R> · job `{job}`{link}\n{values}")
RESULT_LINK = Text(" · [result]({url})")
# Component labels: localized where the page's View is built, for the member who will see it
RERUN = Text("Re-run {number}")
DETAILS = Text("Details {number}")
PREVIOUS = Text("Previous")
NEXT = Text("Next")

# Builds page `page` of member `owner`'s history for the member who clicked: the text and its buttons, in the
# clicker's language (their interaction's locale).
PageMaker = Callable[[discord.Interaction[Any], int, int], Awaitable[tuple[str, discord.ui.View]]]
_makers: weakref.WeakKeyDictionary[discord.Client, PageMaker] = weakref.WeakKeyDictionary()


def install(client: discord.Client, make_page: PageMaker) -> None:
    """Make history page buttons clickable on `client` (also on pages sent before a restart)."""
    _makers[client] = make_page
    client.add_dynamic_items(PageButton)


def uninstall(client: discord.Client) -> None:
    """Stop handling history page buttons on `client`."""
    client.remove_dynamic_items(PageButton)
    _makers.pop(client, None)


class PageButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=HISTORY_BUTTON):
    """Previous or Next on a history page; its custom_id is `history:<member id>:<page>`."""

    def __init__(self, owner: int, page: int, label: str = NEXT, *, disabled: bool = False) -> None:
        button = discord.ui.Button[Any](
            label=label, style=discord.ButtonStyle.secondary, custom_id=f"history:{owner}:{page}", disabled=disabled
        )
        super().__init__(button)
        self.owner, self.page = owner, page

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls, interaction: discord.Interaction[Any], item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> PageButton:
        return cls(int(match["owner"]), int(match["page"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:  # type: ignore[override]
        try:
            make_page = _makers.get(interaction.client)
            if make_page is None:
                raise RuntimeError("history pages are not installed on this client")
            content, view = await make_page(interaction, self.owner, self.page)
            await update(interaction, content, view=view)
        except Exception as exc:  # explained privately, as for commands
            await report_error(interaction, exc, command="history")


def pages(total: int) -> int:
    """How many pages `total` jobs fill (at least one)."""
    return max(1, -(-total // PAGE_SIZE))


def history_page(
    owner: int,
    records: list[JobRecord],
    *,
    page: int,
    total: int,
    own: bool,
    locale: object = None,
    workflows: Mapping[str, Workflow] | None = None,
) -> tuple[str, discord.ui.View]:
    """Build one page: a title, one entry per job, Re-run and Details for each, Previous and Next.

    The text is localized by the send helpers; the buttons' labels here, in the language of `locale`.
    `workflows` name each job's options as the reader's Discord does (a job of a workflow gone keeps its names).
    """
    view = discord.ui.View(timeout=None)
    if not records:
        return (NO_JOBS_YET if own else NO_JOBS_OF.format(user=owner)), view
    title = (YOUR_JOBS if own else THEIR_JOBS).format(user=owner, page=page + 1, pages=pages(total), total=total)
    first = page * PAGE_SIZE + 1
    known = workflows or {}
    entries = [entry(number, record, known.get(record.workflow)) for number, record in enumerate(records, start=first)]
    for number, record in enumerate(records, start=first):
        for row, action, label in ((0, "rerun", RERUN), (1, "details", DETAILS)):
            button = JobButton(action, record.id, label=localize(label.format(number=number), locale))
            button.row = row
            view.add_item(button)
    last = pages(total) - 1
    previous = PageButton(owner, max(page - 1, 0), localize(PREVIOUS, locale), disabled=page == 0)
    following = PageButton(owner, page + 1, localize(NEXT, locale), disabled=page >= last)
    for button in (previous, following):
        button.row = 2
        view.add_item(button)
    return Lines([title, *entries], "\n\n"), view  # five capped entries fit; the send helper caps the whole


def entry(number: int, record: JobRecord, workflow: Workflow | None = None) -> Text:
    """One job in the history: command, state, when, its result's link and its option values (capped)."""
    link = result_link(record)
    return ENTRY.format(
        number=number,
        command=record.workflow,
        state=JOB_STATES[record.state],
        when=int(record.created_at),
        job=record.id[:8],
        link=RESULT_LINK.format(url=link) if link else "",
        values=option_values(record.values, workflow, each=MAX_PARAM, total=MAX_PARAMS),
    )


def result_link(record: JobRecord) -> str | None:
    """The address of a finished job's result message, when the bot knows where it is."""
    if record.state is not JobState.DONE or not record.channel_id or not record.message_id:
        return None
    return f"https://discord.com/channels/{record.guild_id or '@me'}/{record.channel_id}/{record.message_id}"
