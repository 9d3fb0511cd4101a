"""What the bot says, and the one place that sends it: mentions limited, lengths capped.

Every send and edit of the bot goes through the helpers below, so that text which came from a member,
a workflow or a server never pings anyone and never makes a message longer than Discord accepts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import discord

from core import text as core_text
from core.i18n import Lines, Text, localize
from core.jobs.store import JobState
from core.workflows import Workflow

log = logging.getLogger(__name__)

MAX_CONTENT = 2000  # Discord's limit for a message's text
MAX_VALUE = 300  # one option value as shown with a result or in Details
MAX_FILES = 10  # attachments per message
VALUE_SEPARATOR = " · "  # between a job's option values on one line
UNKNOWN_INTERACTION = 10062  # the interaction expired before its first answer (3 s)
UNKNOWN_MESSAGE = 10008
INVALID_WEBHOOK_TOKEN = 50027  # the interaction token expired (15 min)

# Channels a slash command can come from, where the bot can post and edit its own messages.
ReplyChannel = (
    discord.TextChannel
    | discord.VoiceChannel
    | discord.StageChannel
    | discord.Thread
    | discord.DMChannel
    | discord.PartialMessageable
)

# Sentences of the job messages and the error funnel (each is translated in locales/*.po).
STATUS_HEADER = Text("**/{command}** for {mention}")
SUBMITTING = Text("Submitting…")
CANCELLED = Text("🚫 Cancelled.")
CANCELLING = Text("Cancelling the job…")
DELETED = Text("Deleted.")
FAILED = Text("❌ {reason}")
RESULT_BELOW = Text("Finished: the result is in the message below.")
DID_NOT_FINISH = Text("❌ /{command} did not finish; the reason was sent to {mention} privately.")
UNEXPECTED = Text("Something went wrong on the bot's side (reference {ref}). A server admin can look it up in the log.")
NOT_HERE = Text("This command cannot be used here.")
TOO_LARGE = Text("Too large for this server's {limit} upload limit, so not attached: {names}")
MORE_NOT_DOWNLOADED = Text("…and {count} more file(s) not downloaded.")
NOTHING = Text("(nothing)")
NO_JOBS = Text("You have no job waiting or running.")
NO_JOBS_AT_ALL = Text("No job is waiting or running.")
JOB_FAILED = Text("The job failed.")  # a failed job whose reason was not recorded
SOMEONE = Text("someone")
JOB_STATES = {  # a job's state in /history and Details
    JobState.QUEUED: Text("queued"),
    JobState.SUBMITTED: Text("submitted"),
    JobState.RUNNING: Text("running"),
    JobState.DELIVERING: Text("delivering"),
    JobState.DONE: Text("done"),
    JobState.FAILED: Text("failed"),
    JobState.CANCELLED: Text("cancelled"),
}  # a job's requester, when not known


def cap(text: str, limit: int = MAX_CONTENT) -> str:
    """Cut `text` to at most `limit` characters (a message's by default), marking the cut with an ellipsis."""
    return core_text.cap(text, limit)


def shown(value: object, limit: int = MAX_VALUE) -> str:
    """A value from a member, a workflow or a server as shown inline: one line, markdown escaped, capped."""
    text = str(value).replace("\n", " / ")
    return discord.utils.escape_markdown(cap(text, limit))


def option_values(
    values: Mapping[str, Any], workflow: Workflow | None, *, each: int = MAX_VALUE, total: int = MAX_CONTENT
) -> Lines:
    """A job's options on one line, `name: value · …`, named as the reader's Discord names them; each value
    capped at `each`, and no more options than `total` characters hold (then an ellipsis)."""
    parts: list[str] = []
    length = 0
    for name, value in values.items():
        label = workflow.option_label(name) if workflow is not None else name
        part = Lines((label, shown(value, each)), ": ")
        length += len(part) + len(VALUE_SEPARATOR)
        if length > total:
            parts.append(core_text.ELLIPSIS)
            break
        parts.append(part)
    return Lines(parts, VALUE_SEPARATOR)


def option_lines(values: Mapping[str, Any], workflow: Workflow | None) -> list[str]:
    """A job's options one per line, `**name:** value`, named as the reader's Discord names them."""
    labels = workflow.option_label if workflow is not None else str
    return [Lines(("**", labels(name), ":** ", shown(value)), "") for name, value in values.items()]


def bot_reaches(interaction: discord.Interaction[Any]) -> bool:
    """Whether the bot's own token can post, edit and delete where `interaction` came from.

    Not where the app acts only through a member's install (their group DMs, a server without the bot): there only
    interaction tokens reach, each for 15 minutes.
    """
    return interaction.is_guild_integration() or interaction.context.dm_channel


def header(command: str, user_id: int | None) -> str:
    """The first line of a job's message: which command, for whom."""
    return STATUS_HEADER.format(command=command, mention=f"<@{user_id}>" if user_id else SOMEONE)


def mentions(ping: discord.abc.Snowflake | None = None) -> discord.AllowedMentions:
    """Nobody is pinged, except `ping` (the requester, when their result is posted)."""
    return discord.AllowedMentions(everyone=False, roles=False, users=[ping] if ping else False, replied_user=False)


def _fields(
    content: str | None, ping: discord.abc.Snowflake | None, extra: dict[str, Any], locale: object
) -> dict[str, Any]:
    fields = {"allowed_mentions": mentions(ping), **extra}
    if isinstance(extra.get("view"), discord.ui.LayoutView):
        # A Components-v2 message has no content: its text is in the view, and turning a message into one
        # needs content set to null (https://discord.com/developers/docs/components/reference).
        assert content is None, "a LayoutView carries its own text"
        fields["content"] = None
    elif content is not None:
        fields["content"] = cap(localize(content, locale))
    return fields


async def respond(interaction: discord.Interaction[Any], content: str, *, ephemeral: bool = True, **extra: Any) -> None:
    """Answer an interaction for the first time (privately unless told otherwise)."""
    await interaction.response.send_message(ephemeral=ephemeral, **_fields(content, None, extra, interaction.locale))


async def update(interaction: discord.Interaction[Any], content: str, **extra: Any) -> None:
    """Answer a click on a message's component by editing that message (a page turned, say)."""
    await interaction.response.edit_message(**_fields(content, None, extra, interaction.locale))


async def followup(
    interaction: discord.Interaction[Any],
    content: str | None = None,
    *,
    ping: discord.abc.Snowflake | None = None,
    **extra: Any,
) -> discord.WebhookMessage:
    """Send a followup through the interaction's token (an interaction's followups always return the message)."""
    return await interaction.followup.send(**_fields(content, ping, extra, interaction.locale))


async def edit_original(
    interaction: discord.Interaction[Any],
    content: str | None = None,
    *,
    ping: discord.abc.Snowflake | None = None,
    **extra: Any,
) -> discord.InteractionMessage | None:
    """Edit the interaction's own message (the answer or the deferred "thinking" one)."""
    return await interaction.edit_original_response(**_fields(content, ping, extra, interaction.locale))


async def channel_send(
    channel: ReplyChannel,
    content: str | None = None,
    *,
    ping: discord.abc.Snowflake | None = None,
    locale: object = None,
    **extra: Any,
) -> discord.Message:
    """Post a new message in a channel with the bot's token, in the language of `locale`."""
    return await channel.send(**_fields(content, ping, extra, locale))


async def edit_message(
    message: discord.PartialMessage | discord.Message,
    content: str | None = None,
    *,
    ping: discord.abc.Snowflake | None = None,
    locale: object = None,
    **extra: Any,
) -> discord.Message:
    """Edit one of the bot's messages with the bot's token, in the language of `locale`."""
    return await message.edit(**_fields(content, ping, extra, locale))


def is_unknown_interaction(error: BaseException) -> bool:
    """True for Discord's 10062: the interaction expired before the bot's first answer."""
    return isinstance(error, discord.NotFound) and error.code == UNKNOWN_INTERACTION


def command_name(interaction: discord.Interaction[Any], fallback: str | None = None) -> str:
    """The command an interaction belongs to; forms and buttons pass theirs as `fallback`."""
    if interaction.command is not None:
        return interaction.command.qualified_name
    return fallback or "?"


async def send_private(interaction: discord.Interaction[Any], message: str, *, command: str | None = None) -> None:
    """Tell only the member who ran the command, whatever state the interaction is in."""
    try:
        if not interaction.response.is_done():
            await respond(interaction, message)
            return
        if not interaction.is_expired():
            if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
                # After a defer (a job's status) the first followup would replace it; edit it first so that
                # the followup is a new, private message. Any other first answer (a button's) stays as it is.
                mention = interaction.user.mention
                name = command_name(interaction, command)
                await edit_original(
                    interaction, DID_NOT_FINISH.format(command=name, mention=mention), attachments=[], view=None
                )
            await followup(interaction, message, ephemeral=True)
            return
    except discord.HTTPException as exc:
        if is_unknown_interaction(exc):
            log.warning("interaction %s expired before the bot could answer; telling the member in the channel",
                        interaction.id)  # fmt: skip
        else:
            log.warning("could not report an error through the interaction: %s", exc)
    channel = interaction.channel
    if isinstance(channel, ReplyChannel):
        try:
            text = f"{interaction.user.mention} {localize(message, interaction.locale)}"
            await channel_send(channel, text, ping=interaction.user)
        except discord.HTTPException as exc:  # no way left to reach the member: the log must do
            log.warning("could not tell member %s in the channel either: %s", interaction.user.id, exc)
