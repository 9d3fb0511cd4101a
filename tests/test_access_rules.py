"""Who may use which command where: the rules (community.toml, bindings, /access), their texts and their keeping."""

from __future__ import annotations

import logging
import shutil
import tomllib
from pathlib import Path

import pytest

from core.community import read_community
from core.community.access import (
    Access,
    AccessRules,
    CommandRule,
    access_rules,
    refusal,
)
from core.errors import ConfigError, InvalidInput, WorkflowError
from core.jobs.store import JobStore
from core.workflows.loader import load_workflow
from tests.conftest import WORKFLOWS

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


async def test_changes_made_with_access_are_kept_and_read_again_after_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    file_rules = rules(f"[access]\nbanned_users = [{ALICE}]\n[access.commands.music]\nchannels = [{ART}]")
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    try:
        access = await Access(file_rules, store).load()
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
        again = await Access(file_rules, store).load()
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


async def test_a_deny_needs_a_list_to_take_from_and_something_to_take(tmp_path: Path) -> None:
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    try:
        access = await Access(AccessRules(), store).load()
        with pytest.raises(InvalidInput) as caught:
            await access.deny("image", by=MODS, channel=ART)
        assert caught.value.user_message == (
            "/image may already be used in every channel or by every role; allow the ones it is for instead."
        )
        with pytest.raises(InvalidInput) as caught:
            await access.allow("image", by=MODS)
        assert caught.value.user_message == "Give a channel, a role or both."
        assert access.changes.commands == {}
    finally:
        await store.close()
