"""Who may use which command where: community.toml's [access], bindings' [access], and changes made with /access.

For each command, its allowed channels and its allowed roles are decided separately, each by the first of
these that sets it: a change made with /access for that command, community.toml [access.commands.NAME], the
workflow's binding [access] table, a change made with /access for every command ("*"), community.toml
[access] itself. Not set anywhere: any channel, any role. An empty list: nowhere, nobody. A thread follows
the rule of its parent channel (or its own, when it is listed). Banned members and roles may use no command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import ConfigError, InvalidInput
from core.i18n import Text
from core.jobs.store import JobStore
from core.text import LIST, cap, joined

log = logging.getLogger(__name__)

EVERY_COMMAND = "*"  # the key of the rule for every command, in /access and in the store
MIN_SNOWFLAKE, MAX_SNOWFLAKE = 10**16, 2**64 - 1  # Discord ids have 17 to 20 digits
MAX_SHOWN = 10  # channels or roles named in one refusal; the rest are counted

# What a member is told
BANNED_MEMBER = Text("You may not use this bot: a moderator has barred you from it.")
BANNED_ROLE = Text("You may not use this bot: members with the role {role} are barred from it.")
NO_DMS = Text("/{command} cannot be used in direct messages; use it in the server.")
NOBODY = Text("/{command} is turned off: nobody may use it right now.")
WRONG_ROLE = Text("/{command} is only for members with the role {roles}.")
NOWHERE = Text("/{command} is turned off: it may not be used in any channel right now.")
WRONG_CHANNEL = Text("/{command} cannot be used in this channel. Use it in {channels}.")
OR = Text("{items} or {item}")  # roles: any one of them will do
MORE = Text("{items} (+{count} more)")  # channels or roles past MAX_SHOWN


@dataclass(frozen=True, slots=True)
class CommandRule:
    """Where and by whom a command may be used; None leaves the question to the next source."""

    channels: frozenset[int] | None = None  # empty: in no channel
    roles: frozenset[int] | None = None  # empty: by nobody

    def over(self, fallback: CommandRule) -> CommandRule:
        """This rule, with what it leaves unset taken from `fallback`."""
        return CommandRule(
            self.channels if self.channels is not None else fallback.channels,
            self.roles if self.roles is not None else fallback.roles,
        )


@dataclass(frozen=True, slots=True)
class AccessRules:
    """The rules in effect: bans, admin roles, the rule for every command and each command's own."""

    admin_roles: frozenset[int] = frozenset()
    banned_users: frozenset[int] = frozenset()
    banned_roles: frozenset[int] = frozenset()
    default: CommandRule = CommandRule()
    commands: Mapping[str, CommandRule] = field(default_factory=dict)

    def rule(self, command: str, binding: CommandRule | None = None) -> CommandRule:
        """The rule for `command`: its own (community.toml, /access), then its binding's, then every command's."""
        own = self.commands.get(command, CommandRule())
        return own.over(binding or CommandRule()).over(self.default)


def refusal(
    rules: AccessRules,
    *,
    user_id: int,
    role_ids: Collection[int] | None,
    channel_id: int | None,
    parent_channel_id: int | None,
    command: str,
    binding: CommandRule | None = None,
) -> str | None:
    """Say why `command` may not be used by this member in this channel, or None when it may.

    `role_ids` is None outside a server (a direct message), where a member has no roles.
    """
    if user_id in rules.banned_users:
        return BANNED_MEMBER
    if role_ids is not None and (banned := sorted(rules.banned_roles.intersection(role_ids))):
        return BANNED_ROLE.format(role=f"<@&{banned[0]}>")
    rule = rules.rule(command, binding)
    if role_ids is None and (rules.banned_roles or rule.roles is not None):
        return NO_DMS.format(command=command)  # roles cannot be checked in a direct message
    if rule.roles is not None and not rule.roles.intersection(role_ids or ()):
        if not rule.roles:
            return NOBODY.format(command=command)
        return WRONG_ROLE.format(command=command, roles=_listed("role", rule.roles, OR))
    if rule.channels is not None and not ({channel_id, parent_channel_id} & rule.channels):
        if not rule.channels:
            return NOWHERE.format(command=command)
        return WRONG_CHANNEL.format(command=command, channels=_listed("channel", rule.channels, LIST))
    return None


def _listed(kind: str, ids: Iterable[int], connective: Text) -> str:
    """Channel or role mentions (they ping nobody), at most MAX_SHOWN of them, linked with `connective`."""
    ordered = sorted(ids)
    shown = joined([f"<#{i}>" if kind == "channel" else f"<@&{i}>" for i in ordered[:MAX_SHOWN]], connective)
    more = len(ordered) - MAX_SHOWN
    return MORE.format(items=shown, count=more) if more > 0 else shown


# Reading community.toml [access] and bindings' [access]

COMMAND_KEYS = ("channels", "roles")
ACCESS_KEYS = ("admin_roles", "banned_users", "banned_roles", *COMMAND_KEYS, "commands")
MAX_SHOWN_VALUE = 100  # a wrong value of the file, quoted back

# What is wrong with a table; a binding's [access] is reported on Discord too (/reload, /workflows)
NOT_A_RULE_TABLE = Text("{where} must be a table with channels and/or roles.")
NOT_A_LIST = Text("{where} {key} must be a list of Discord ids, e.g. {key} = [123456789012345678].")
NOT_AN_ID = Text("{where} {key}: {value} is not a Discord id (a whole number of 17 to 20 digits).")
UNKNOWN_KEY = Text("{where} has no key {key}; its keys are: {keys}.")


def access_rules(tables: Mapping[str, Any]) -> AccessRules:
    """The [access] table of community.toml as rules; ConfigError lists every problem, naming table and key."""
    table = tables.get("access", {})
    here = "community.toml [access]"
    problems: list[str] = []
    if not isinstance(table, dict):
        raise ConfigError([f"{here} must be a table."])
    problems += _unknown_keys(table, ACCESS_KEYS, here)
    admin_roles, banned_users, banned_roles = (_ids(table, key, here, problems) for key in ACCESS_KEYS[:3])
    default = _rule(table, here, problems)
    commands: dict[str, CommandRule] = {}
    raw_commands = table.get("commands", {})
    if not isinstance(raw_commands, dict):
        problems.append(f"{here} commands must be a table of commands, e.g. [access.commands.image].")
        raw_commands = {}
    for name, spec in raw_commands.items():
        where = f"community.toml [access.commands.{name}]"
        if not isinstance(spec, dict):
            problems.append(NOT_A_RULE_TABLE.format(where=where))
            continue
        problems += _unknown_keys(spec, COMMAND_KEYS, where)
        commands[str(name)] = _rule(spec, where, problems)
    if problems:
        raise ConfigError(problems)
    return AccessRules(
        admin_roles=frozenset(admin_roles or ()),
        banned_users=frozenset(banned_users or ()),
        banned_roles=frozenset(banned_roles or ()),
        default=default,
        commands=commands,
    )


def binding_rule(table: Any, where: str) -> tuple[CommandRule, list[str]]:
    """A binding file's [access] table as the command's rule, and what is wrong with it."""
    here = f"{where}: [access]"
    if not isinstance(table, dict):
        return CommandRule(), [NOT_A_RULE_TABLE.format(where=here)]
    problems = _unknown_keys(table, COMMAND_KEYS, here)
    rule = _rule(table, here, problems)
    return rule, problems


def _rule(table: Mapping[str, Any], here: str, problems: list[str]) -> CommandRule:
    channels, roles = (_ids(table, key, here, problems) for key in COMMAND_KEYS)
    return CommandRule(channels, roles)


def _ids(table: Mapping[str, Any], key: str, here: str, problems: list[str]) -> frozenset[int] | None:
    """A list of Discord ids (whole numbers, or their digits quoted); None when the key is absent."""
    if key not in table:
        return None
    raw = table[key]
    if not isinstance(raw, list):
        problems.append(NOT_A_LIST.format(where=here, key=key))
        return None
    ids: set[int] = set()
    for item in raw:
        number = int(item) if isinstance(item, str) and item.isascii() and item.isdecimal() else item
        if isinstance(number, bool) or not isinstance(number, int) or not MIN_SNOWFLAKE <= number <= MAX_SNOWFLAKE:
            problems.append(NOT_AN_ID.format(where=here, key=key, value=cap(repr(item), MAX_SHOWN_VALUE)))
        else:
            ids.add(number)
    return frozenset(ids)


def _unknown_keys(table: Mapping[str, Any], known: tuple[str, ...], here: str) -> list[str]:
    keys = ", ".join(known)  # names to write in the file, the same in every language
    unknown = [key for key in table if key not in known]
    return [UNKNOWN_KEY.format(where=here, key=cap(repr(key), MAX_SHOWN_VALUE), keys=keys) for key in unknown]


# Changes made with /access, kept in the job store on top of the file


@dataclass(frozen=True, slots=True)
class Changes:
    """What /access changed: per command ("*": every command) rules, and bans (True) or lifted bans (False)."""

    commands: Mapping[str, CommandRule] = field(default_factory=dict)
    users: Mapping[int, bool] = field(default_factory=dict)
    roles: Mapping[int, bool] = field(default_factory=dict)

    def on(self, rules: AccessRules) -> AccessRules:
        """`rules` with these changes on top."""
        commands = dict(rules.commands)
        for name, rule in self.commands.items():
            if name != EVERY_COMMAND:
                commands[name] = rule.over(commands.get(name, CommandRule()))
        return replace(
            rules,
            banned_users=_banned(rules.banned_users, self.users),
            banned_roles=_banned(rules.banned_roles, self.roles),
            default=self.commands.get(EVERY_COMMAND, CommandRule()).over(rules.default),
            commands=commands,
        )


def _banned(base: frozenset[int], changes: Mapping[int, bool]) -> frozenset[int]:
    return frozenset({i for i in base if changes.get(i, True)} | {i for i, banned in changes.items() if banned})


class Access:
    """The rules in effect: community.toml's with the changes made with /access, which the job store keeps."""

    def __init__(self, file_rules: AccessRules) -> None:
        self.file_rules = file_rules
        self.store: JobStore | None = None  # until load(): the file's rules only, and no change can be made
        self.changes = Changes()
        self.rules = file_rules
        # One change at a time: each one reads the rules in effect, and two at once would lose one of them
        self._lock = asyncio.Lock()

    async def load(self, store: JobStore) -> Access:
        """Read the changes made with /access before this start from `store`, which keeps the next ones."""
        self.store = store
        self._set(await store.call(_load))
        return self

    async def _save(self, fn: Callable[..., None], *args: Any) -> None:
        if self.store is None:
            raise RuntimeError("the access rules were not loaded from the job store")
        await self.store.call(fn, *args)

    def _set(self, changes: Changes) -> None:
        self.changes = changes
        self.rules = changes.on(self.file_rules)

    async def allow(
        self,
        command: str,
        *,
        by: int,
        channel: int | None = None,
        role: int | None = None,
        binding: CommandRule | None = None,
    ) -> CommandRule:
        """Let `command` ("*": every command) be used in `channel` and/or by `role`; return its new rule."""
        return await self._change(command, by, channel, role, binding, allow=True)

    async def deny(
        self,
        command: str,
        *,
        by: int,
        channel: int | None = None,
        role: int | None = None,
        binding: CommandRule | None = None,
    ) -> CommandRule:
        """Take `channel` and/or `role` off `command`'s lists; a list left empty allows nowhere/nobody."""
        return await self._change(command, by, channel, role, binding, allow=False)

    async def _change(
        self, command: str, by: int, channel: int | None, role: int | None, binding: CommandRule | None, *, allow: bool
    ) -> CommandRule:
        if channel is None and role is None:
            raise InvalidInput(NEED_CHANNEL_OR_ROLE)
        async with self._lock:
            return await self._changed(command, by, channel, role, binding, allow=allow)

    async def _changed(
        self, command: str, by: int, channel: int | None, role: int | None, binding: CommandRule | None, *, allow: bool
    ) -> CommandRule:
        current = self.rules.default if command == EVERY_COMMAND else self.rules.rule(command, binding)
        unlisted = (channel is not None and current.channels is None) or (role is not None and current.roles is None)
        if not allow and unlisted:
            raise InvalidInput(NOT_LISTED.format(command=command_label(command)))
        change = self.changes.commands.get(command, CommandRule())
        channels, roles = change.channels, change.roles
        if channel is not None:
            channels = _edited(current.channels, channel, allow)
        if role is not None:
            roles = _edited(current.roles, role, allow)
        new = CommandRule(channels, roles)
        await self._save(_save_command, command, new, by)
        self._set(replace(self.changes, commands={**self.changes.commands, command: new}))
        what = " and ".join(f"{kind} {i}" for kind, i in (("channel", channel), ("role", role)) if i is not None)
        log.info("access: member %s %s /%s %s", by, "allowed" if allow else "denied", command, what)
        return new.over(current)

    async def reset(self, command: str, *, by: int) -> bool:
        """Drop the changes made with /access for `command`; False when there were none."""
        async with self._lock:
            if command not in self.changes.commands:
                return False
            await self._save(_delete_command, command)
            self._set(replace(self.changes, commands={k: v for k, v in self.changes.commands.items() if k != command}))
        log.info("access: member %s reset /%s to community.toml's rule", by, command)
        return True

    async def ban(self, kind: str, target: int, *, banned: bool, by: int) -> None:
        """Ban (or lift the ban of) a member (`kind` "user") or a role ("role")."""
        async with self._lock:
            await self._save(_save_ban, kind, target, banned, by)
            users, roles = dict(self.changes.users), dict(self.changes.roles)
            (users if kind == "user" else roles)[target] = banned
            self._set(replace(self.changes, users=users, roles=roles))
        log.info("access: member %s %s %s %s", by, "banned" if banned else "lifted the ban of", kind, target)


NEED_CHANNEL_OR_ROLE = Text("Give a channel, a role or both.")
NOT_LISTED = Text("{command} may already be used in every channel or by every role; allow the ones it is for instead.")
EVERY_COMMAND_LABEL = Text("Every command")


def command_label(command: str) -> str:
    """How a message names a command, or every command ("*")."""
    return EVERY_COMMAND_LABEL if command == EVERY_COMMAND else f"/{command}"


def _edited(current: frozenset[int] | None, item: int, allow: bool) -> frozenset[int]:
    if allow:
        return (current or frozenset()) | {item}
    return (current or frozenset()) - {item}


# The store's thread (JobStore.run_sql)


def _load(db: sqlite3.Connection) -> Changes:
    commands = {
        name: CommandRule(_id_set(channels), _id_set(roles))
        for name, channels, roles in db.execute("SELECT command, channels, roles FROM access_commands")
    }
    users: dict[int, bool] = {}
    roles: dict[int, bool] = {}
    for kind, target, banned in db.execute("SELECT kind, target, banned FROM access_bans"):
        (users if kind == "user" else roles)[target] = bool(banned)
    return Changes(commands, users, roles)


def _id_set(text: str | None) -> frozenset[int] | None:
    return None if text is None else frozenset(json.loads(text))


def _id_text(ids: frozenset[int] | None) -> str | None:
    return None if ids is None else json.dumps(sorted(ids))


def _save_command(db: sqlite3.Connection, command: str, rule: CommandRule, by: int) -> None:
    db.execute(
        "INSERT INTO access_commands (command, channels, roles, changed_by, changed_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(command) DO UPDATE SET channels = excluded.channels, roles = excluded.roles, "
        "changed_by = excluded.changed_by, changed_at = excluded.changed_at",
        (command, _id_text(rule.channels), _id_text(rule.roles), by, time.time()),
    )


def _delete_command(db: sqlite3.Connection, command: str) -> None:
    db.execute("DELETE FROM access_commands WHERE command = ?", (command,))


def _save_ban(db: sqlite3.Connection, kind: str, target: int, banned: bool, by: int) -> None:
    db.execute(
        "INSERT INTO access_bans (kind, target, banned, changed_by, changed_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(kind, target) DO UPDATE SET banned = excluded.banned, changed_by = excluded.changed_by, "
        "changed_at = excluded.changed_at",
        (kind, target, int(banned), by, time.time()),
    )


# How /access shows rules

ANYWHERE, NOWHERE_SHORT = Text("any channel"), Text("no channel")
ANYONE, NOBODY_SHORT = Text("any member"), Text("nobody")
RULE = Text("in {channels} · for {roles}")


def describe(rule: CommandRule) -> str:
    """One line for a rule: where, and for whom."""
    where = ANYWHERE if rule.channels is None else _listed("channel", rule.channels, LIST) or NOWHERE_SHORT
    who = ANYONE if rule.roles is None else _listed("role", rule.roles, LIST) or NOBODY_SHORT
    return RULE.format(channels=where, roles=who)
