"""Who may use which command where: the rules (community.toml, bindings, /access), their texts and their keeping."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bot import ComfyBot
from core.community import read_community
from core.community.access import (
    Access,
    AccessRules,
    CommandRule,
    access_rules,
    binding_rule,
    command_label,
    describe,
    refusal,
)
from core.config import load_settings
from core.errors import ConfigError, InvalidInput, WorkflowError
from core.i18n import localize
from core.jobs.store import JobStore
from core.workflows.loader import load_workflow
from tests.conftest import WORKFLOWS
from tests.e2e_world import Start, World, finished
from tests.fakes.discord_fake import Interaction

ART, GENERAL, THREAD = 111111111111111111, 222222222222222222, 333333333333333333
ARTISTS, MUTED, MODS = 444444444444444444, 555555555555555555, 666666666666666666
ALICE, BOB = 777777777777777777, 888888888888888888


def rules(text: str) -> AccessRules:
    return access_rules(tomllib.loads(text))


def why(
    r: AccessRules,
    *,
    user: int = BOB,
    roles: tuple[int, ...] | None = (),
    channel: int = GENERAL,
    parent: int | None = None,
    command: str = "image",
    binding: CommandRule | None = None,
) -> str | None:
    return refusal(
        r, user_id=user, role_ids=roles, channel_id=channel, parent_channel_id=parent, command=command, binding=binding
    )


def test_without_rules_everyone_may_use_everything_everywhere() -> None:
    assert why(AccessRules()) is None
    assert why(AccessRules(), roles=None) is None  # a direct message, with nothing that needs roles


def test_a_channel_rule_refuses_elsewhere_says_where_and_a_thread_follows_its_parent() -> None:
    r = rules(f"[access]\nchannels = [{ART}]")
    assert why(r) == f"/image cannot be used in this channel. Use it in <#{ART}>."
    assert why(r, channel=ART) is None
    assert why(r, channel=THREAD, parent=ART) is None
    assert why(r, channel=THREAD, parent=GENERAL) == f"/image cannot be used in this channel. Use it in <#{ART}>."
    assert why(rules(f"[access]\nchannels = [{THREAD}]"), channel=THREAD, parent=GENERAL) is None  # listed itself


def test_a_role_rule_refuses_members_without_the_role_and_names_it() -> None:
    r = rules(f"[access.commands.image]\nroles = [{ARTISTS}, {MODS}]")
    assert why(r) == f"/image is only for members with the role <@&{ARTISTS}> or <@&{MODS}>."
    assert why(r, roles=(MODS,)) is None
    assert why(r, command="music") is None  # the rule is /image's only
    assert why(r, roles=None) == "/image cannot be used in direct messages; use it in the server."


def test_banned_members_and_roles_may_use_no_command() -> None:
    r = rules(f"[access]\nbanned_users = [{ALICE}]\nbanned_roles = [{MUTED}]")
    assert why(r, user=ALICE, roles=(ARTISTS,)) == "You may not use this bot: a moderator has barred you from it."
    assert why(r, roles=(ARTISTS, MUTED), command="music") == (
        f"You may not use this bot: members with the role <@&{MUTED}> are barred from it."
    )
    assert why(r, roles=(ARTISTS,)) is None
    # In a direct message nobody's roles are known: a banned role could slip through there
    assert why(r, roles=None) == "/image cannot be used in direct messages; use it in the server."


def test_empty_lists_mean_nowhere_and_nobody() -> None:
    assert why(rules("[access.commands.image]\nchannels = []")) == (
        "/image is turned off: it may not be used in any channel right now."
    )
    assert why(rules("[access.commands.image]\nroles = []"), roles=(ARTISTS,)) == (
        "/image is turned off: nobody may use it right now."
    )


def test_a_long_list_of_channels_is_cut_in_the_refusal() -> None:
    many = [ART + i for i in range(15)]
    text = why(rules(f"[access]\nchannels = {many}"))
    assert text is not None and text.endswith(f"<#{ART + 9}> (+5 more).")
    assert text.count("<#") == 10


def test_refusals_name_the_allowed_channels_and_roles_in_the_members_language() -> None:
    r = rules(f"[access.commands.image]\nchannels = [{ART}, {GENERAL}]\nroles = [{ARTISTS}, {MODS}]")
    wrong_role = why(r, channel=ART)
    assert wrong_role == f"/image is only for members with the role <@&{ARTISTS}> or <@&{MODS}>."
    assert localize(wrong_role, "ja") == f"/image は <@&{ARTISTS}> または <@&{MODS}> ロールのメンバー専用です。"
    assert localize(wrong_role, "zh-CN") == f"/image 仅限拥有身份组 <@&{ARTISTS}> 或 <@&{MODS}> 的成员使用。"
    wrong_channel = why(r, roles=(MODS,), channel=THREAD)
    assert localize(wrong_channel, "ja") == (
        f"/image はこのチャンネルでは使えません。<#{ART}>、<#{GENERAL}> で使ってください。"
    )
    assert localize(wrong_channel, "zh-CN") == f"/image 不能在此频道使用。请在 <#{ART}>、<#{GENERAL}> 中使用。"
    many = why(rules(f"[access]\nchannels = {[ART + i for i in range(12)]}"))
    assert many is not None
    assert localize(many, "ja").endswith(f"<#{ART + 8}>、<#{ART + 9}>（ほか 2 件） で使ってください。")
    assert localize(why(r, roles=None), "zh-CN") == "/image 不能在私信中使用，请在服务器中使用。"


def test_access_show_describes_a_rule_in_the_members_language() -> None:
    rule = CommandRule(channels=frozenset({ART, GENERAL}), roles=None)
    assert describe(rule) == f"in <#{ART}>, <#{GENERAL}> · for any member"
    assert localize(describe(rule), "ja") == f"チャンネル：<#{ART}>、<#{GENERAL}> · 対象：全員"
    assert localize(describe(CommandRule(frozenset(), frozenset({MODS}))), "zh-CN") == f"频道：无 · 成员：<@&{MODS}>"
    assert localize(command_label("*"), "ja") == "すべてのコマンド"


def test_precedence_per_field_command_then_binding_then_every_command() -> None:
    r = rules(f"[access]\nchannels = [{GENERAL}]\nroles = [{MODS}]\n[access.commands.image]\nroles = [{ARTISTS}]")
    binding = CommandRule(channels=frozenset({ART}), roles=frozenset({MUTED}))
    # channels from the binding (community.toml's /image sets none), roles from community.toml's /image
    assert r.rule("image", binding) == CommandRule(frozenset({ART}), frozenset({ARTISTS}))
    assert r.rule("music") == CommandRule(frozenset({GENERAL}), frozenset({MODS}))
    assert why(r, roles=(ARTISTS,), channel=ART, binding=binding) is None
    assert why(r, roles=(MUTED,), channel=ART, binding=binding) == (
        f"/image is only for members with the role <@&{ARTISTS}>."
    )


def test_a_bad_access_table_names_every_problem() -> None:
    text = f"""
[access]
admin_roles = "{MODS}"
banned_users = [12, true, "{ALICE}", 1.5]
colour = "red"
[access.commands.image]
channels = [{ART}]
where = 1
[access.commands.music]
roles = ["abc"]
"""
    with pytest.raises(ConfigError) as caught:
        rules(text)
    assert caught.value.problems == [
        "community.toml [access] has no key 'colour'; its keys are: admin_roles, banned_users, banned_roles, "
        "channels, roles, commands.",
        "community.toml [access] admin_roles must be a list of Discord ids, e.g. admin_roles = [123456789012345678].",
        "community.toml [access] banned_users: 12 is not a Discord id (a whole number of 17 to 20 digits).",
        "community.toml [access] banned_users: True is not a Discord id (a whole number of 17 to 20 digits).",
        "community.toml [access] banned_users: 1.5 is not a Discord id (a whole number of 17 to 20 digits).",
        "community.toml [access.commands.image] has no key 'where'; its keys are: channels, roles.",
        "community.toml [access.commands.music] roles: 'abc' is not a Discord id (a whole number of 17 to 20 digits).",
    ]
    with pytest.raises(ConfigError) as caught:
        rules("access = 3")
    assert caught.value.problems == ["community.toml [access] must be a table."]


def test_quoted_ids_are_read_and_a_missing_table_allows_everything(tmp_path: Path) -> None:
    path = tmp_path / "community.toml"
    path.write_text(f'[access]\nadmin_roles = ["{MODS}"]\n', encoding="utf-8")
    assert access_rules(read_community(path)).admin_roles == {MODS}
    assert access_rules(read_community(tmp_path / "absent.toml")) == AccessRules()


def binding_folder(tmp_path: Path, access: str) -> Path:
    shutil.copy(WORKFLOWS / "image.json", tmp_path / "image.json")
    text = (WORKFLOWS / "image.toml").read_text(encoding="utf-8")
    (tmp_path / "image.toml").write_text(text + "\n" + access, encoding="utf-8")
    return tmp_path / "image.toml"


def test_a_binding_access_table_becomes_the_commands_rule(tmp_path: Path) -> None:
    workflow = load_workflow(binding_folder(tmp_path, f"[access]\nchannels = [{ART}]\n"))
    assert workflow.access == CommandRule(channels=frozenset({ART}))
    assert load_workflow(WORKFLOWS / "image.toml").access is None


def test_a_bad_binding_access_table_is_refused_with_its_problems(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(binding_folder(tmp_path, "[access]\nchannels = [1]\nusers = []\n"))
    assert caught.value.user_message == (
        "image.toml: [access] has no key 'users'; its keys are: channels, roles.\n"
        "image.toml: [access] channels: 1 is not a Discord id (a whole number of 17 to 20 digits)."
    )


def test_a_bindings_access_problems_read_in_the_admins_language() -> None:
    _, problems = binding_rule({"channels": [1], "users": []}, "image.toml")
    assert [localize(problem, "ja") for problem in problems] == [
        "image.toml: [access] にキー 'users' はありません。使えるキー：channels, roles。",
        "image.toml: [access] の channels：1 は Discord ID（17〜20 桁の整数）ではありません。",
    ]
    _, problems = binding_rule(["not", "a table"], "image.toml")
    assert [localize(problem, "zh-CN") for problem in problems] == [
        "image.toml: [access] 必须是包含 channels 和/或 roles 的表。"
    ]


async def test_changes_made_with_access_are_kept_and_read_again_after_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    file_rules = rules(f"[access]\nbanned_users = [{ALICE}]\n[access.commands.music]\nchannels = [{ART}]")
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    try:
        access = await Access(file_rules).load(store)
        binding = CommandRule(roles=frozenset({ARTISTS}))
        assert await access.allow("image", by=MODS, channel=ART, binding=binding) == CommandRule(
            frozenset({ART}), frozenset({ARTISTS})
        )
        assert await access.allow("music", by=MODS, channel=GENERAL) == CommandRule(frozenset({ART, GENERAL}))
        assert await access.deny("music", by=MODS, channel=ART) == CommandRule(frozenset({GENERAL}))
        await access.allow("*", by=MODS, role=MODS)
        await access.ban("user", BOB, banned=True, by=MODS)
        await access.ban("user", ALICE, banned=False, by=MODS)  # lifts community.toml's ban
        await access.ban("role", MUTED, banned=True, by=MODS)
        await access.allow("queue-art", by=MODS, channel=ART)
        assert await access.reset("queue-art", by=MODS) is True
        assert await access.reset("queue-art", by=MODS) is False
        before = access.rules
    finally:
        await store.close()
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    try:
        again = await Access(file_rules).load(store)
    finally:
        await store.close()
    assert again.rules == before
    assert before.banned_users == {BOB} and before.banned_roles == {MUTED}
    assert before.rule("image", binding) == CommandRule(frozenset({ART}), frozenset({ARTISTS}))
    assert before.rule("music") == CommandRule(frozenset({GENERAL}), frozenset({MODS}))
    assert before.rule("queue-art") == CommandRule(None, frozenset({MODS}))
    assert f"access: member {MODS} allowed /image channel {ART}" in caplog.messages
    assert f"access: member {MODS} denied /music channel {ART}" in caplog.messages
    assert f"access: member {MODS} banned user {BOB}" in caplog.messages
    assert f"access: member {MODS} lifted the ban of user {ALICE}" in caplog.messages
    assert f"access: member {MODS} reset /queue-art to community.toml's rule" in caplog.messages


@pytest.mark.abuse
async def test_changes_made_at_the_same_moment_are_all_kept(tmp_path: Path) -> None:
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    channels = [ART + i for i in range(8)]
    try:
        access = await Access(AccessRules()).load(store)
        await asyncio.gather(
            *(access.allow("image", by=MODS, channel=c) for c in channels),
            *(access.ban("user", ALICE + i, banned=True, by=MODS) for i in range(8)),
        )
        assert access.rules.rule("image").channels == set(channels)
        assert len(access.rules.banned_users) == 8
    finally:
        await store.close()
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    try:
        assert (await Access(AccessRules()).load(store)).rules.rule("image").channels == set(channels)
    finally:
        await store.close()


async def test_a_deny_needs_a_list_to_take_from_and_something_to_take(tmp_path: Path) -> None:
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    try:
        access = await Access(AccessRules()).load(store)
        with pytest.raises(InvalidInput) as caught:
            await access.deny("image", by=MODS, channel=ART)
        assert caught.value.user_message == (
            "/image may already be used in every channel or by every role; allow the ones it is for instead."
        )
        with pytest.raises(InvalidInput) as caught:
            await access.allow("image", by=MODS)
        assert caught.value.user_message == "Give a channel, a role or both."
        assert localize(caught.value.user_message, "zh-CN") == "请指定频道、身份组或两者。"
        assert access.changes.commands == {}
    finally:
        await store.close()


# End to end: the real bot on the fake Discord


@dataclass
class Guild:
    """The fake guild's channels, roles and members for the access tests."""

    world: World
    art: int
    thread: int
    artists: int
    muted: int
    mods: int
    alice: dict[str, Any]  # an artist
    bob: dict[str, Any]  # no role
    carl: dict[str, Any]  # muted
    mod: dict[str, Any]  # admin through community.toml's admin_roles

    @property
    def general(self) -> int:
        return self.world.discord.channel_id

    async def run(self, command: str, options: dict[str, Any], user: dict[str, Any], channel: int) -> Interaction:
        return await self.world.discord.invoke_slash(command, options, user=user, channel_id=channel)

    async def refused(self, it: Interaction) -> str:
        await self.world.discord.wait_for(lambda: bool(self.world.private_replies(it)))
        return "\n".join(self.world.private_replies(it))


async def guild_with(start: Start, tmp_path: Path, community: Callable[[Guild], str] | None = None) -> Guild:
    """Start the bot, add channels, a thread, roles and members to the guild, then restart it with `community`."""
    world = await start()
    fake = world.discord
    art = fake.add_text_channel("art")
    thread = fake._ids.next()
    fake.channels[thread] = {
        "id": str(thread),
        "type": 11,  # a public thread
        "guild_id": str(fake.guild_id),
        "parent_id": str(art),
        "owner_id": fake.default_user["id"],
        "name": "cats",
        "message_count": 0,
        "member_count": 1,
        "rate_limit_per_user": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": "2026-01-01T00:00:00+00:00",
            "locked": False,
        },
    }
    roles = {}
    for name in ("artists", "muted", "mods"):
        roles[name] = fake._ids.next()
        fake.roles.append({**fake.roles[0], "id": str(roles[name]), "name": name})
    members = {}
    for name, role in (("alice", "artists"), ("bob", None), ("carl", "muted"), ("mod", "mods")):
        members[name] = fake.make_user(name=name)
        fake._members[int(members[name]["id"])]["roles"] = [str(roles[role])] if role else []
    guild = Guild(world, art, thread, roles["artists"], roles["muted"], roles["mods"], **members)
    if community is not None:
        path = tmp_path / "community.toml"
        path.write_text(community(guild), encoding="utf-8")
        world.settings = replace(world.settings, community_file=path, community_file_named=True)
    await world.restart_bot()  # GUILD_CREATE now carries the new channels and roles
    return guild


def community_toml(g: Guild) -> str:
    return f"""
[access]
admin_roles = [{g.mods}]
banned_users = [{g.carl["id"]}]
banned_roles = [{g.muted}]
channels = [{g.art}]

[access.commands.music]
roles = [{g.artists}]
"""


@pytest.mark.e2e
async def test_each_rule_refuses_before_anything_is_sent_and_allows_where_it_should(
    start: Start, tmp_path: Path
) -> None:
    g = await guild_with(start, tmp_path, community_toml)
    world, image = g.world, {"prompt": "a cat", "seed": 1}

    wrong_channel = await g.run("image", image, g.bob, g.general)
    assert await g.refused(wrong_channel) == f"/image cannot be used in this channel. Use it in <#{g.art}>."
    yuki = world.discord.make_user(name="yuki", locale="ja")  # a member whose Discord speaks Japanese
    in_japanese = await g.run("image", image, yuki, g.general)
    assert await g.refused(in_japanese) == f"/image はこのチャンネルでは使えません。<#{g.art}> で使ってください。"
    wrong_role = await g.run("music", {"tags": "jazz", "lyrics": "la"}, g.bob, g.art)
    assert await g.refused(wrong_role) == f"/music is only for members with the role <@&{g.artists}>."
    banned = await g.run("image", image, g.carl, g.art)
    assert await g.refused(banned) == "You may not use this bot: a moderator has barred you from it."
    world.discord._members[int(g.bob["id"])]["roles"] = [str(g.muted)]  # only read at the next interaction
    banned_role = await g.run("image", image, g.bob, g.art)
    assert await g.refused(banned_role) == (
        f"You may not use this bot: members with the role <@&{g.muted}> are barred from it."
    )
    world.discord._members[int(g.bob["id"])]["roles"] = []
    assert world.prompts() == []  # nothing reached ComfyUI
    assert all(it.modal is None for it in world.discord.interactions)  # nor was a form opened

    in_thread = await g.run("image", image, g.bob, g.thread)  # the thread follows #art
    assert "**seed:** 1" in (await finished(world, in_thread))["content"]
    artist = await g.run("music", {"tags": "jazz", "lyrics": "la"}, g.alice, g.art)
    await finished(world, artist)
    admin = await g.run("image", image, g.mod, g.general)  # admins (here through admin_roles) are never refused
    await finished(world, admin)
    assert len(world.prompts()) == 3
    show = await world.discord.invoke_slash("access show", user=g.mod)  # admin_roles make /access usable
    assert f"/music: in <#{g.art}> · for <@&{g.artists}>" in await g.refused(show)


@pytest.mark.e2e
async def test_access_changes_rules_at_runtime_they_survive_a_restart_and_apply_to_re_roll(
    start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    g = await guild_with(start, tmp_path)
    world, image, owner = g.world, {"prompt": "a cat", "seed": 1}, world_owner(g)

    outsider = await world.discord.invoke_slash("access show", user=g.bob)
    assert await g.refused(outsider) == "Only the bot's owner and members with the admin role can use /access show."
    choices = await world.discord.autocomplete("access allow", {"command": "/IM"}, focused="command")
    assert choices == [{"name": "* (every command)", "value": "*"}, {"name": "/image", "value": "image"}]
    allow = await world.discord.invoke_slash("access allow", {"command": "image", "channel": g.art})
    assert await g.refused(allow) == f"/image may now be used in <#{g.art}> · for any member."
    assert f"access: member {owner} allowed /image channel {g.art}" in caplog.messages
    refused = await g.run("image", image, g.bob, g.general)
    assert await g.refused(refused) == f"/image cannot be used in this channel. Use it in <#{g.art}>."
    job = await g.run("image", image, g.bob, g.art)
    result = await finished(world, job)

    await world.restart_bot()
    ban = await world.discord.invoke_slash("access ban", {"who": g.bob["id"]})
    assert await g.refused(ban) == f"<@{g.bob['id']}> may no longer use the bot."
    reroll = next(c["custom_id"] for c in walk(result["components"]) if c.get("custom_id", "").startswith("job:reroll"))
    click = await world.discord.click(int(result["id"]), reroll, user=g.bob)
    assert await g.refused(click) == "You may not use this bot: a moderator has barred you from it."
    await world.restart_bot()
    still = await g.run("image", image, g.bob, g.art)  # the ban is kept
    assert await g.refused(still) == "You may not use this bot: a moderator has barred you from it."
    show = await world.discord.invoke_slash("access show")
    assert await g.refused(show) == "\n".join(
        [
            "**Access rules in effect** (community.toml, with the changes made with /access marked ✎):",
            "Admins (never refused): the bot's owner.",
            f"Banned members: <@{g.bob['id']}>. Banned roles: none.",
            "Every command: in any channel · for any member",
            f"✎ /image: in <#{g.art}> · for any member",
            "/music: in any channel · for any member",
            "/music_extend: in any channel · for any member",
            "/upscale: in any channel · for any member",
        ]
    )
    unban = await world.discord.invoke_slash("access unban", {"who": g.bob["id"]})
    assert await g.refused(unban) == f"<@{g.bob['id']}> may use the bot again (as far as the other rules allow)."
    kept = await g.run("image", image, g.bob, g.general)  # and so is the channel rule
    assert await g.refused(kept) == f"/image cannot be used in this channel. Use it in <#{g.art}>."
    reset = await world.discord.invoke_slash("access reset", {"command": "image"})
    assert await g.refused(reset) == (
        "/image follows community.toml (and its binding) again: in any channel · for any member."
    )
    await finished(world, await g.run("image", image, g.bob, g.general))
    unknown = await world.discord.invoke_slash("access deny", {"command": "nope", "role": g.artists})
    assert await g.refused(unknown) == (
        "There is no command /nope; use one of the workflow commands or * for every command."
    )


def world_owner(g: Guild) -> int:
    return int(g.world.discord.default_user["id"])


def walk(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for row in components for c in [row, *row.get("components", [])]]


def test_the_readme_examples_are_valid_access_tables(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Access", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    community, binding = [block.split("\n", 1)[1] for block in section.split("```toml")[1:]]
    example = access_rules(tomllib.loads(community.split("```")[0]))
    assert example.commands["music"].roles == {523456789012345678}
    assert example.default.channels == {423456789012345678}
    image = load_workflow(binding_folder(tmp_path, binding.split("```")[0]))
    assert image.access == CommandRule(channels=frozenset({623456789012345678}))


async def test_a_bad_access_table_stops_the_bot_at_start_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "community.toml"
    path.write_text("[access]\nbanned_roles = [1]\n[access.commands.image]\nchannels = 5\n", encoding="utf-8")
    env = {"COMMUNITY_FILE": str(path), "JOBS_DB": str(tmp_path / "jobs.sqlite3"), "WORKFLOWS_DIR": str(WORKFLOWS)}
    bot = ComfyBot(load_settings(env, require_token=False))
    try:
        with pytest.raises(ConfigError) as caught:
            await bot.setup_hook()
    finally:
        await bot.close()
    assert caught.value.user_message == (
        "The configuration has 2 problem(s):\n"
        "  - community.toml [access] banned_roles: 1 is not a Discord id (a whole number of 17 to 20 digits).\n"
        "  - community.toml [access.commands.image] channels must be a list of Discord ids, "
        "e.g. channels = [123456789012345678]."
    )


@pytest.mark.e2e
async def test_access_answers_an_admin_in_japanese(start: Start) -> None:
    world = await start()
    fake = world.discord
    owner = int(fake.default_user["id"])
    fake._locales[owner] = "ja"  # the bot's owner (an admin) uses Discord in Japanese
    bob = fake.make_user(name="bob")

    choices = await fake.autocomplete("access allow", {"command": "im"}, focused="command")
    assert choices == [{"name": "*（すべてのコマンド）", "value": "*"}, {"name": "/image", "value": "image"}]
    ban = await fake.invoke_slash("access ban", {"who": bob["id"]})
    await fake.wait_for(lambda: bool(world.private_replies(ban)))
    assert world.private_replies(ban) == [f"<@{bob['id']}> はボットを使えなくなりました。"]
    unknown = await fake.invoke_slash("access deny", {"command": "nope"})
    await fake.wait_for(lambda: bool(world.private_replies(unknown)))
    assert world.private_replies(unknown) == [
        "コマンド /nope はありません。ワークフローコマンドのいずれか、またはすべてのコマンドなら * を指定してください。"
    ]
    show = await fake.invoke_slash("access show")
    await fake.wait_for(lambda: bool(world.private_replies(show)))
    assert "\n".join(world.private_replies(show)).splitlines()[:3] == [
        "**有効なアクセスルール**（community.toml。/access で変更したものには ✎ が付いています）：",
        "管理者（拒否されません）：ボットのオーナー。",
        f"禁止されたメンバー：<@{bob['id']}>。禁止されたロール：なし。",
    ]
