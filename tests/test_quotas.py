"""Daily quotas: the [quotas] table, the day's count and its reset, GPU-seconds, /quota, and concurrent commands."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import tomllib
from pathlib import Path

import pytest

from bot import ComfyBot
from core.community import read_community
from core.community.quotas import Allowance, QuotaBook, QuotaExceeded, QuotaRules, quota_rules
from core.config import load_settings
from core.errors import ConfigError
from core.i18n import localize
from core.jobs.store import JobRecord, JobStore
from tests.conftest import WORKFLOWS
from tests.e2e_world import Start, World, finished
from tests.fakes.discord_fake import Interaction

ROLE_A, ROLE_B, ROLE_C = 111111111111111111, 222222222222222222, 333333333333333333
# 2026-03-02 10:00 UTC, a Monday
MONDAY_10 = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC).timestamp()
HOUR = 3600.0
DEFERRED = 5  # the interaction callback type of an accepted job


def rules_from(text: str) -> QuotaRules:
    return quota_rules({"quotas": tomllib.loads(text)})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(job_id: str, user: int, *, created_at: float, attempts: int = 1, gpu: float = 0.0) -> JobRecord:
    return JobRecord(id=job_id, workflow="image", values={}, user_id=user, attempts=attempts, created_at=created_at,
                     gpu_seconds=gpu)  # fmt: skip


# The table


def test_a_full_table_is_read_with_role_overrides_inheriting_what_they_leave_out() -> None:
    rules = rules_from(
        f"""
        jobs_per_day = 10
        gpu_seconds_per_day = 600
        reset_hour = 6
        timezone = "Europe/Paris"
        admins_exempt = false
        [roles.{ROLE_A}]
        jobs_per_day = 50
        [roles.{ROLE_B}]
        jobs_per_day = 0
        gpu_seconds_per_day = 60
        """
    )
    assert rules.default == Allowance(10, 600)
    assert rules.roles == {ROLE_A: Allowance(50, 600), ROLE_B: Allowance(0, 60)}
    assert (rules.reset_hour, str(rules.timezone), rules.admins_exempt) == (6, "Europe/Paris", False)


def test_no_table_means_no_quota_and_admins_exempt() -> None:
    rules = quota_rules({})
    assert rules == QuotaRules()
    assert not rules.limited and rules.admins_exempt
    assert rules.allowance([ROLE_A]) == Allowance(0, 0)


def test_a_member_gets_the_most_generous_of_their_listed_roles() -> None:
    rules = QuotaRules(
        default=Allowance(10, 100),
        roles={ROLE_A: Allowance(5, 1000), ROLE_B: Allowance(20, 50), ROLE_C: Allowance(3, 0)},
    )
    assert rules.allowance([]) == Allowance(10, 100)
    assert rules.allowance([999]) == Allowance(10, 100)  # no listed role: the default
    assert rules.allowance([ROLE_A]) == Allowance(5, 1000)  # a listed role may be stricter than the default
    assert rules.allowance([ROLE_A, ROLE_B]) == Allowance(20, 1000)
    assert rules.allowance([ROLE_B, ROLE_C]) == Allowance(20, 0)  # 0 (no limit) beats any limit


def test_every_problem_of_the_table_is_listed_with_its_table_and_key() -> None:
    with pytest.raises(ConfigError) as caught:
        quota_rules(
            {
                "quotas": {
                    "jobs_per_day": -1,
                    "gpu_seconds_per_day": 2.5,
                    "reset_hour": 24,
                    "timezone": "Mars/Olympus",
                    "admins_exempt": "yes",
                    "job_per_day": 3,
                    "roles": {"moderators": {"jobs_per_day": 5}, str(ROLE_A): {"jobs_per_day": True, "cooldown": 1}},
                }
            },
            "rules.toml",
        )
    assert caught.value.problems == [
        "rules.toml [quotas] has an unknown key 'job_per_day' (known: jobs_per_day, gpu_seconds_per_day, "
        "reset_hour, timezone, admins_exempt, roles)",
        "rules.toml [quotas] jobs_per_day must be a whole number >= 0, 0 for no limit (found -1)",
        "rules.toml [quotas] gpu_seconds_per_day must be a whole number >= 0, 0 for no limit (found 2.5)",
        "rules.toml [quotas] reset_hour must be a whole number from 0 to 23 (found 24)",
        'rules.toml [quotas] timezone must be a time zone name such as "Europe/Paris" or "UTC" (found '
        "'Mars/Olympus'; if no name works, install the tzdata package)",
        "rules.toml [quotas] admins_exempt must be true or false (found 'yes')",
        "rules.toml [quotas.roles.moderators]: 'moderators' is not a role id (17-20 digits)",
        f"rules.toml [quotas.roles.{ROLE_A}] has an unknown key 'cooldown' (known: jobs_per_day, gpu_seconds_per_day)",
        f"rules.toml [quotas.roles.{ROLE_A}] jobs_per_day must be a whole number >= 0, 0 for no limit (found True)",
    ]


def test_a_table_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "community.toml"
    path.write_text('quotas = "lots"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        quota_rules(read_community(path))
    assert caught.value.problems == ["community.toml [quotas] must be a table."]


def test_the_day_starts_at_the_reset_hour_in_the_configured_time_zone() -> None:
    paris = rules_from('reset_hour = 6\ntimezone = "Europe/Paris"')  # UTC+1 in March before the 29th
    # 10:00 UTC is 11:00 in Paris: the day began at 06:00 Paris = 05:00 UTC and ends tomorrow at 05:00 UTC
    assert paris.day_start(MONDAY_10) == MONDAY_10 - 5 * HOUR
    assert paris.next_reset(MONDAY_10) == MONDAY_10 + 19 * HOUR
    # 04:00 UTC (05:00 Paris) still belongs to the day before
    assert paris.day_start(MONDAY_10 - 6 * HOUR) == MONDAY_10 - 29 * HOUR
    utc = QuotaRules(reset_hour=12)
    assert utc.day_start(MONDAY_10) == MONDAY_10 - 22 * HOUR
    assert utc.next_reset(MONDAY_10) == MONDAY_10 + 2 * HOUR


# The day's count


def test_jobs_are_refused_once_the_days_are_used_and_allowed_again_after_the_reset() -> None:
    clock = Clock(MONDAY_10)
    book = QuotaBook(QuotaRules(default=Allowance(jobs_per_day=2), reset_hour=12), clock)
    for n in range(2):
        book.reserve(7, [], f"job{n}").submitted = True
    with pytest.raises(QuotaExceeded) as caught:
        book.reserve(7, [], "job2")
    reset = int(MONDAY_10 + 2 * HOUR)
    assert caught.value.user_message == f"You have used all 2 of your jobs for today. Your quota resets <t:{reset}:R>."
    book.reserve(8, [], "other member")  # someone else's count is their own
    clock.now = MONDAY_10 + 2 * HOUR - 1
    with pytest.raises(QuotaExceeded):
        book.check(7, [])
    clock.now = MONDAY_10 + 2 * HOUR  # the reset
    assert book.used(7).jobs == 0
    book.reserve(7, [], "job3")
    assert book.used(7).jobs == 1


def test_quota_refusals_read_in_japanese_and_chinese_with_their_reset_time() -> None:
    clock = Clock(MONDAY_10)
    book = QuotaBook(QuotaRules(default=Allowance(jobs_per_day=2, gpu_seconds_per_day=60), reset_hour=12), clock)
    for n in range(2):
        book.reserve(7, [], f"job{n}").submitted = True
    reset = int(MONDAY_10 + 2 * HOUR)
    with pytest.raises(QuotaExceeded) as caught:
        book.check(7, [])
    assert localize(caught.value.user_message, "ja") == (
        f"本日のジョブ 2 件をすべて使いました。クォータは <t:{reset}:R> にリセットされます。"
    )
    assert localize(caught.value.user_message, "zh-CN") == (
        f"你今天的 2 个任务已全部用完。配额将于 <t:{reset}:R> 重置。"
    )
    book.ran(record("job0", 8, created_at=MONDAY_10), 75.2)
    with pytest.raises(QuotaExceeded) as caught:
        book.check(8, [])
    assert localize(caught.value.user_message, "ja") == (
        f"本日の GPU 秒数 60 秒をすべて使いました（使用済み 75 秒）。クォータは <t:{reset}:R> にリセットされます。"
    )


def test_a_job_that_never_reached_comfyui_gives_its_place_back_once() -> None:
    book = QuotaBook(QuotaRules(default=Allowance(jobs_per_day=1)), Clock(MONDAY_10))
    hold = book.reserve(7, [], "refused before submitting")
    with pytest.raises(QuotaExceeded):
        book.reserve(7, [], "second")
    hold.release()
    hold.release()  # a second release must not free someone else's place
    assert book.used(7).jobs == 0
    kept = book.reserve(7, [], "submitted")
    book.submitted(record("submitted", 7, created_at=MONDAY_10))
    kept.release()
    assert book.used(7).jobs == 1


def test_a_place_reserved_before_the_reset_is_not_taken_from_the_new_day() -> None:
    clock = Clock(MONDAY_10)
    book = QuotaBook(QuotaRules(default=Allowance(jobs_per_day=1)), clock)
    hold = book.reserve(7, [], "late job")
    clock.now += 24 * HOUR
    book.reserve(7, [], "new day").submitted = True
    hold.release()  # never submitted, but it was yesterday's
    assert book.used(7).jobs == 1


def test_admins_exempt_are_counted_but_never_refused() -> None:
    book = QuotaBook(QuotaRules(default=Allowance(jobs_per_day=1)), Clock(MONDAY_10))
    book.reserve(7, [], "a")
    book.reserve(7, [], "b", exempt=True)
    assert book.used(7).jobs == 2


def test_gpu_seconds_refuse_a_job_once_the_days_are_used_and_count_per_job() -> None:
    clock = Clock(MONDAY_10)
    book = QuotaBook(QuotaRules(default=Allowance(gpu_seconds_per_day=60)), clock)
    hold = book.reserve(7, [], "long")
    book.submitted(record("long", 7, created_at=MONDAY_10))
    book.ran(record("long", 7, created_at=MONDAY_10), 59.4)
    hold.release()
    book.check(7, [])  # 59.4 < 60: one more may start, and may pass the limit
    book.ran(record("recovered", 7, created_at=MONDAY_10 - HOUR), 1.0)  # a job without a hold: by its creation
    book.ran(record("yesterday", 7, created_at=MONDAY_10 - 11 * HOUR), 100.0)  # before the reset: not today's
    assert book.used(7).gpu_seconds == pytest.approx(60.4)
    with pytest.raises(QuotaExceeded) as caught:
        book.check(7, [])
    reset = int(MONDAY_10 + 14 * HOUR)
    assert caught.value.user_message == (
        f"You have used all 60 of your GPU-seconds for today (60 used). Your quota resets <t:{reset}:R>."
    )


async def test_the_days_usage_is_summed_from_the_job_store(tmp_path: Path) -> None:
    store = await JobStore(tmp_path / "jobs.sqlite3").open()
    try:
        day = MONDAY_10 - 10 * HOUR  # midnight UTC
        for job in (
            record("a", 7, created_at=day + 1, gpu=12.5),
            record("b", 7, created_at=day + 2, gpu=3.0),
            record("never submitted", 7, created_at=day + 3, attempts=0),
            record("yesterday", 7, created_at=day - 1, gpu=50.0),
            record("c", 8, created_at=day + 4, gpu=1.0),
        ):
            await store.add(job)
        book = QuotaBook(QuotaRules(default=Allowance(jobs_per_day=5)), Clock(MONDAY_10))
        await book.load(store)
        assert (book.used(7).jobs, book.used(7).gpu_seconds) == (2, 15.5)
        assert (book.used(8).jobs, book.used(8).gpu_seconds) == (1, 1.0)
        assert book.used(9).jobs == 0
    finally:
        await store.close()


async def test_a_bad_quotas_table_stops_the_bot_before_the_store_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "community.toml"
    path.write_text("[quotas]\nreset_hour = 25\n", encoding="utf-8")
    env = {"COMMUNITY_FILE": str(path), "JOBS_DB": str(tmp_path / "jobs.sqlite3"), "WORKFLOWS_DIR": str(WORKFLOWS)}
    bot = ComfyBot(load_settings(env, require_token=False))
    with pytest.raises(ConfigError) as caught:
        await bot.setup_hook()
    assert caught.value.user_message == (
        "The configuration has 1 problem(s):\n"
        "  - community.toml [quotas] reset_hour must be a whole number from 0 to 23 (found 25)"
    )
    assert not (tmp_path / "jobs.sqlite3").exists()


# With the bot, the fake Discord and the fake ComfyUI


def community(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "community.toml"
    path.write_text(text, encoding="utf-8")
    return {"COMMUNITY_FILE": str(path), "MAX_PENDING_PER_MEMBER": "50"}


async def reply(world: World, it: Interaction) -> list[str]:
    await world.discord.wait_for(lambda: bool(world.private_replies(it)))
    return world.private_replies(it)


def next_reset(world: World) -> int:
    book = world.bot.quotas
    return int(book.rules.next_reset(book.clock()))


@pytest.mark.e2e
@pytest.mark.abuse
async def test_twenty_concurrent_commands_from_one_member_run_exactly_the_days_quota(
    start: Start, tmp_path: Path
) -> None:
    world = await start(settings_env=community(tmp_path, "[quotas]\njobs_per_day = 3\n"))
    world.comfy.pause()
    member = world.discord.make_user(name="eager")
    commands = await asyncio.gather(
        *(world.discord.invoke_slash("image", {"prompt": f"cat {n}"}, user=member) for n in range(20))
    )
    await world.discord.wait_for(lambda: all(it.acknowledged for it in commands), timeout=15)
    accepted = [it for it in commands if it.callback is not None and it.callback.json["type"] == DEFERRED]
    refusals = [text for it in commands if it not in accepted for text in world.private_replies(it)]
    refusal = f"You have used all 3 of your jobs for today. Your quota resets <t:{next_reset(world)}:R>."
    assert len(accepted) == 3
    assert refusals == [refusal] * 17
    world.comfy.resume()
    for it in accepted:
        await finished(world, it, timeout=15)
    assert len(world.prompts()) == 3
    assert world.bot.quotas.used(int(member["id"])).jobs == 3


@pytest.mark.e2e
async def test_a_chinese_member_is_told_of_the_used_up_quota_in_chinese(start: Start, tmp_path: Path) -> None:
    world = await start(settings_env=community(tmp_path, "[quotas]\njobs_per_day = 1\n"))
    member = world.discord.make_user(name="lin", locale="zh-CN")
    await finished(world, await world.discord.invoke_slash("image", {"prompt": "one"}, user=member))
    second = await world.discord.invoke_slash("image", {"prompt": "two"}, user=member)
    assert await reply(world, second) == [f"你今天的 1 个任务已全部用完。配额将于 <t:{next_reset(world)}:R> 重置。"]


@pytest.mark.e2e
async def test_quota_across_a_reset_and_a_restart(start: Start, tmp_path: Path) -> None:
    world = await start(settings_env=community(tmp_path, "[quotas]\njobs_per_day = 1\nreset_hour = 4\n"))
    member = world.discord.make_user(name="daily")
    await finished(world, await world.discord.invoke_slash("image", {"prompt": "one"}, user=member))
    await world.restart_bot()  # the day's count comes back from the job store
    second = await world.discord.invoke_slash("image", {"prompt": "two"}, user=member)
    refusal = f"You have used all 1 of your jobs for today. Your quota resets <t:{next_reset(world)}:R>."
    assert await reply(world, second) == [refusal]
    world.bot.quotas.clock = lambda: time.time() + 24 * HOUR  # the next day
    await finished(world, await world.discord.invoke_slash("image", {"prompt": "three"}, user=member))
    assert [p["prompt"]["6"]["inputs"]["text"] for p in world.prompts()] == ["one", "three"]


@pytest.mark.e2e
async def test_gpu_seconds_come_from_comfyuis_run_and_stop_further_jobs(start: Start, tmp_path: Path) -> None:
    world = await start(settings_env=community(tmp_path, "[quotas]\ngpu_seconds_per_day = 1\n"))
    world.comfy.node_delay = 0.2  # the image workflow runs 7 nodes: about 1.4 s
    member = world.discord.make_user(name="painter")
    first = await world.discord.invoke_slash("image", {"prompt": "slow"}, user=member)
    await finished(world, first)
    job_id = next(iter(world.comfy.history))
    stored = await world.bot.store.get(job_id)
    # ComfyUI's timestamps are whole milliseconds, so 7 × 0.2 s can read as 1.39999.
    assert stored is not None and 1.39 <= stored.gpu_seconds < 3.0
    used = world.bot.quotas.used(int(member["id"])).gpu_seconds
    assert used == pytest.approx(stored.gpu_seconds)
    second = await world.discord.invoke_slash("image", {"prompt": "again"}, user=member)
    assert await reply(world, second) == [
        f"You have used all 1 of your GPU-seconds for today ({round(used)} used). "
        f"Your quota resets <t:{next_reset(world)}:R>."
    ]
    quota = await world.discord.invoke_slash("quota", user=member)
    assert await reply(world, quota) == [
        "**Your quota for today**\nJobs: 1 used (no limit)\n"
        f"GPU time: {round(used)} of 1 seconds used, 0 left\n"
        f"Resets <t:{next_reset(world)}:R> (<t:{next_reset(world)}:f>)."
    ]


@pytest.mark.e2e
async def test_admins_are_exempt_unless_configured_otherwise(start: Start, tmp_path: Path) -> None:
    admin_role = 444444444444444444
    admin = {"id": "555555555555555555", "username": "mod", "roles": [admin_role]}
    env = community(tmp_path, "[quotas]\njobs_per_day = 1\n")
    world = await start(settings_env=env, admin_role_id=admin_role, members=(admin,))
    user = world.discord._users[int(admin["id"])]
    for prompt in ("a", "b"):
        await finished(world, await world.discord.invoke_slash("image", {"prompt": prompt}, user=user))
    quota = await world.discord.invoke_slash("quota", user=user)
    reset = next_reset(world)
    assert await reply(world, quota) == [
        "**Your quota for today**\nJobs: 2 used (no limit)\nGPU time: 0 seconds used (no limit)\n"
        f"Admins are not held to the quota.\nResets <t:{reset}:R> (<t:{reset}:f>)."
    ]
    # The owner looking at the admin's quota sees the same exemption
    theirs = await world.discord.invoke_slash("quota", {"member": admin["id"]})
    assert await reply(world, theirs) == [
        f"**Quota of <@{admin['id']}> for today**\nJobs: 2 used (no limit)\nGPU time: 0 seconds used (no limit)\n"
        f"Admins are not held to the quota.\nResets <t:{reset}:R> (<t:{reset}:f>)."
    ]
    world.bot.quotas.rules = quota_rules({"quotas": {"jobs_per_day": 1, "admins_exempt": False}})
    third = await world.discord.invoke_slash("image", {"prompt": "c"}, user=user)
    assert await reply(world, third) == [
        f"You have used all 1 of your jobs for today. Your quota resets <t:{reset}:R>."
    ]


@pytest.mark.e2e
async def test_only_admins_may_look_at_another_members_quota(start: Start, tmp_path: Path) -> None:
    # The fake guild knows the admin role only: it is also the role given its own quota here
    role = 444444444444444444
    patron = {"id": "555555555555555555", "username": "patron", "roles": [role]}
    text = f"[quotas]\njobs_per_day = 4\nadmins_exempt = false\n[quotas.roles.{role}]\njobs_per_day = 9\n"
    world = await start(settings_env=community(tmp_path, text), admin_role_id=role, members=(patron,))
    other = world.discord._users[int(patron["id"])]
    member = world.discord.make_user(name="curious")
    await finished(world, await world.discord.invoke_slash("image", {"prompt": "mine"}, user=other))
    refused = await world.discord.invoke_slash("quota", {"member": other["id"]}, user=member)
    assert await reply(world, refused) == ["Only admins can look at another member's quota."]
    own = await world.discord.invoke_slash("quota", user=member)
    reset = next_reset(world)
    assert await reply(world, own) == [
        "**Your quota for today**\nJobs: 0 of 4 used, 4 left\nGPU time: 0 seconds used (no limit)\n"
        f"Resets <t:{reset}:R> (<t:{reset}:f>)."
    ]
    looked = await world.discord.invoke_slash("quota", {"member": other["id"]})  # the bot's owner
    seconds = round(world.bot.quotas.used(int(other["id"])).gpu_seconds)
    assert await reply(world, looked) == [
        f"**Quota of <@{other['id']}> for today**\nJobs: 1 of 9 used, 8 left\n"
        f"GPU time: {seconds} seconds used (no limit)\nResets <t:{reset}:R> (<t:{reset}:f>)."
    ]


@pytest.mark.e2e
async def test_a_failed_job_counts_the_gpu_seconds_it_used(start: Start, tmp_path: Path) -> None:
    world = await start(settings_env=community(tmp_path, "[quotas]\ngpu_seconds_per_day = 100\n"))
    world.comfy.node_delay = 0.2
    world.comfy.fail_nodes = {"VAEDecode": ("RuntimeError", "out of memory")}
    member = world.discord.make_user(name="unlucky")
    await world.discord.invoke_slash("image", {"prompt": "doomed"}, user=member)
    await world.discord.wait_for(lambda: bool(world.comfy.history))
    job_id = next(iter(world.comfy.history))

    async def failed() -> JobRecord | None:
        found = await world.bot.store.get(job_id)
        return found if found is not None and found.reported else None

    stored = None
    for _ in range(100):
        if (stored := await failed()) is not None:
            break
        await asyncio.sleep(0.05)
    assert stored is not None and stored.state.value == "failed"
    # Every node up to VAEDecode ran (0.2 s each) before it failed; SaveImage never did
    assert 1.0 <= stored.gpu_seconds < 2.5
    assert world.bot.quotas.used(int(member["id"])).gpu_seconds == pytest.approx(stored.gpu_seconds)
    assert world.bot.quotas.used(int(member["id"])).jobs == 1


@pytest.mark.e2e
async def test_a_japanese_member_is_refused_another_members_quota_in_japanese(start: Start, tmp_path: Path) -> None:
    world = await start(settings_env=community(tmp_path, "[quotas]\njobs_per_day = 4\n"))
    member = world.discord.make_user(name="curious", locale="ja")
    other = world.discord.make_user(name="other")
    refused = await world.discord.invoke_slash("quota", {"member": other["id"]}, user=member)
    assert await reply(world, refused) == ["ほかのメンバーのクォータを見られるのは管理者だけです。"]
