"""/access: admins see the access rules in effect and change them at runtime (kept in the job store)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.access import admin_only, servers_only
from cogs.admin import send_chunks
from core.community.access import EVERY_COMMAND, CommandRule, command_label, describe
from core.errors import InvalidInput
from core.i18n import Lines, Text, localize
from discord_ui.messages import respond, shown

if TYPE_CHECKING:
    from bot import ComfyBot

MAX_CHOICES = 25
DESCRIPTION = "Show or change who may use which command where"  # Discord's; discord_ui/translator.py has its own
EVERY_COMMAND_LABEL = Text("* (every command)")
# What an admin is told
NO_SUCH_COMMAND = Text("There is no command /{command}; use one of the workflow commands or * for every command.")
CHANGED = Text("{command} may now be used {rule}.")
RESET = Text("{command} follows {file} (and its binding) again: {rule}.")
NOTHING_TO_RESET = Text("{command} has no changes made with /access; it follows {file}: {rule}.")
BANNED = Text("{who} may no longer use the bot.")
UNBANNED = Text("{who} may use the bot again (as far as the other rules allow).")
HEADER = Text("**Access rules in effect** ({file}, with the changes made with /access marked ✎):")
ADMINS = Text("Admins (never refused): the bot's owner{roles}.")
BANS = Text("Banned members: {users}. Banned roles: {roles}.")
NONE = Text("none")
EVERY_COMMAND_RULE = Text("{mark}Every command: {rule}")
COMMAND_RULE = Text("{mark}/{command}: {rule}")


Who = discord.Member | discord.User | discord.Role


@app_commands.default_permissions(manage_guild=True)
@servers_only
class Permissions(commands.GroupCog, group_name="access", group_description=DESCRIPTION):
    """Admins only; every change is logged with who made it."""

    def __init__(self, bot: ComfyBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:  # type: ignore[override]
        return await admin_only(interaction)

    @app_commands.command(name="show", description="Show who may use which command where")
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        rules, changed = self.bot.access.rules, self.bot.access.changes.commands
        admin_role_id = self.bot.settings.admin_role_id
        admin_roles = set(rules.admin_roles) | ({admin_role_id} if admin_role_id else set())
        roles = "".join(f", <@&{r}>" for r in sorted(admin_roles))
        mark = "✎ " if EVERY_COMMAND in changed else ""
        lines = [
            HEADER.format(file=self.bot.settings.community_file.name),
            ADMINS.format(roles=roles),
            BANS.format(
                users=", ".join(f"<@{u}>" for u in sorted(rules.banned_users)) or NONE,
                roles=", ".join(f"<@&{r}>" for r in sorted(rules.banned_roles)) or NONE,
            ),
            EVERY_COMMAND_RULE.format(mark=mark, rule=describe(rules.default)),
        ]
        for workflow in self.bot.catalog.workflows.values():
            mark = "✎ " if workflow.name in changed else ""
            rule = describe(rules.rule(workflow.name, workflow.access))
            lines.append(COMMAND_RULE.format(mark=mark, command=workflow.name, rule=rule))
        await interaction.response.defer(ephemeral=True, thinking=True)
        # send_chunks splits lines: it gets the text already in the member's language
        await send_chunks(interaction, localize(Lines(lines), interaction.locale))

    @app_commands.command(name="allow", description="Let a command be used in a channel and/or by a role")
    @app_commands.describe(command="A command, or * for every command", channel="Where", role="By whom")
    async def allow(
        self,
        interaction: discord.Interaction[Any],
        command: str,
        channel: app_commands.AppCommandChannel | app_commands.AppCommandThread | None = None,
        role: discord.Role | None = None,
    ) -> None:
        await self._change(interaction, command, channel, role, allow=True)

    @app_commands.command(name="deny", description="Take a channel and/or a role off a command's list")
    @app_commands.describe(command="A command, or * for every command", channel="Where not", role="Not by whom")
    async def deny(
        self,
        interaction: discord.Interaction[Any],
        command: str,
        channel: app_commands.AppCommandChannel | app_commands.AppCommandThread | None = None,
        role: discord.Role | None = None,
    ) -> None:
        await self._change(interaction, command, channel, role, allow=False)

    async def _change(
        self,
        interaction: discord.Interaction[Any],
        command: str,
        channel: discord.abc.Snowflake | None,
        role: discord.Role | None,
        *,
        allow: bool,
    ) -> None:
        name, binding = self._command(command)
        change = self.bot.access.allow if allow else self.bot.access.deny
        channel_id, role_id = channel.id if channel else None, role.id if role else None
        rule = await change(name, by=interaction.user.id, channel=channel_id, role=role_id, binding=binding)
        await respond(interaction, CHANGED.format(command=command_label(name), rule=describe(rule)))

    @app_commands.command(name="reset", description="Undo the changes made with /access for a command")
    @app_commands.describe(command="A command, or * for every command")
    async def reset(self, interaction: discord.Interaction[Any], command: str) -> None:
        name, binding = self._command(command)
        done = await self.bot.access.reset(name, by=interaction.user.id)
        rules = self.bot.access.rules
        rule = rules.default if name == EVERY_COMMAND else rules.rule(name, binding)
        text = RESET if done else NOTHING_TO_RESET
        file = self.bot.settings.community_file.name
        await respond(interaction, text.format(command=command_label(name), rule=describe(rule), file=file))

    @app_commands.command(name="ban", description="Keep a member, or everyone with a role, from using the bot")
    @app_commands.describe(who="A member or a role")
    async def ban(self, interaction: discord.Interaction[Any], who: Who) -> None:
        await self._ban(interaction, who, banned=True)

    @app_commands.command(name="unban", description="Let a banned member or role use the bot again")
    @app_commands.describe(who="A member or a role")
    async def unban(self, interaction: discord.Interaction[Any], who: Who) -> None:
        await self._ban(interaction, who, banned=False)

    async def _ban(self, interaction: discord.Interaction[Any], who: Who, *, banned: bool) -> None:
        role = isinstance(who, discord.Role)
        await self.bot.access.ban("role" if role else "user", who.id, banned=banned, by=interaction.user.id)
        mention = f"<@&{who.id}>" if role else f"<@{who.id}>"
        await respond(interaction, (BANNED if banned else UNBANNED).format(who=mention))

    @allow.autocomplete("command")
    @deny.autocomplete("command")
    @reset.autocomplete("command")
    async def _complete(self, interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        names = [n for n in self.bot.catalog.workflows if current.lower().lstrip("/") in n]
        choices = [app_commands.Choice(name=localize(EVERY_COMMAND_LABEL, interaction.locale), value=EVERY_COMMAND)]
        return (choices + [app_commands.Choice(name=f"/{n}", value=n) for n in names])[:MAX_CHOICES]

    def _command(self, command: str) -> tuple[str, CommandRule | None]:
        """The command's name and its binding's rule; InvalidInput for a command that does not exist."""
        name = command.strip().lstrip("/")
        if name == EVERY_COMMAND:
            return name, None
        workflow = self.bot.catalog.workflows.get(name)
        if workflow is None:
            raise InvalidInput(NO_SUCH_COMMAND.format(command=shown(name, 40)))
        return name, workflow.access


async def setup(bot: ComfyBot) -> None:
    await bot.add_cog(Permissions(bot))
