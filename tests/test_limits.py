"""Job limits: the Limits bookkeeping with exact messages, and the engine's server slots and JOB_TIMEOUT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from core.errors import InvalidInput, JobTimeout
from core.i18n import localize
from core.jobs.engine import Engine, new_job_id
from core.jobs.limits import Limits
from core.jobs.store import JobRecord
from core.workflows import load_catalog
from tests.conftest import WORKFLOWS
from tests.fakes.comfyui import FakeComfyUI

pytestmark = pytest.mark.abuse  # issue 11: limits that hold, a server slot that never leaks, JOB_TIMEOUT

IMAGE = load_catalog(WORKFLOWS).workflows["image"]
PENDING_REFUSAL = (
    "You already have 2 job(s) waiting or running; the limit is 2. Please wait for one to finish, "
    "or cancel one with /cancel."
)
QUEUE_REFUSAL = "The bot's queue is full (2 job(s) waiting for a ComfyUI server). Please try again in a few minutes."


class Clock:
    """A time.monotonic() stand-in that starts at 0, as the machine's clock does right after a boot."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ids() -> Iterator[str]:
    return (f"job-{n}" for n in range(1000))


def refusal(limits: Limits, member: int) -> str:
    with pytest.raises(InvalidInput) as caught:
        limits.reserve(member, "refused")
    assert "refused" not in limits.active  # a refused job holds nothing
    return caught.value.user_message


def test_pending_limit_refuses_the_third_job_and_frees_a_place_on_release() -> None:
    limits, job = Limits(max_pending_per_member=2), ids()
    first = limits.reserve(1, next(job))
    limits.reserve(1, next(job))
    assert refusal(limits, 1) == PENDING_REFUSAL
    limits.reserve(2, next(job))  # another member is not affected
    first.release()
    limits.reserve(1, next(job))
    assert limits.pending(1) == 2 and limits.pending(2) == 1


def test_a_second_release_does_not_free_another_jobs_place() -> None:
    limits, job = Limits(max_pending_per_member=2), ids()
    first = limits.reserve(1, next(job))
    first.release()
    limits.reserve(1, next(job))
    limits.reserve(1, next(job))
    first.release()
    assert refusal(limits, 1) == PENDING_REFUSAL


def test_first_job_is_never_cooled_down() -> None:
    clock = Clock()  # 0.0: a cooldown measured from "time zero" would refuse this job
    limits = Limits(cooldown_seconds=30, clock=clock)
    limits.reserve(1, "first")
    limits.reserve(2, "other member")


def test_cooldown_counts_from_the_members_last_job_in_whole_seconds_rounded_up() -> None:
    clock = Clock()
    clock.now = 1000.0
    limits = Limits(cooldown_seconds=30, clock=clock)
    limits.reserve(1, "first").release()  # the stamp is taken at reservation, not when the job ends
    clock.now = 1012.5
    assert refusal(limits, 1) == "Please wait 18 more second(s) before starting another job."
    clock.now = 1029.2
    assert refusal(limits, 1) == "Please wait 1 more second(s) before starting another job."
    clock.now = 1030.0
    limits.reserve(1, "second")
    clock.now = 1031.0
    assert refusal(limits, 1) == "Please wait 29 more second(s) before starting another job."


def test_a_refused_attempt_does_not_restart_the_cooldown() -> None:
    clock = Clock()
    limits = Limits(cooldown_seconds=10, clock=clock)
    limits.reserve(1, "first")
    clock.now = 9.0
    refusal(limits, 1)
    clock.now = 10.0
    limits.reserve(1, "second")


def test_queue_full_is_refused_for_everyone_until_a_job_gets_a_server() -> None:
    limits, job = Limits(max_queued_jobs=2), ids()
    waiting = [limits.reserve(member, next(job)) for member in (1, 2)]
    assert refusal(limits, 3) == QUEUE_REFUSAL
    assert refusal(limits, 1) == QUEUE_REFUSAL
    limits.left_queue(waiting[0].job_id)  # it got a server slot: still pending, no longer queued
    assert limits.queued == 1 and limits.pending(1) == 1
    third = limits.reserve(3, next(job))
    assert refusal(limits, 4) == QUEUE_REFUSAL
    third.release()  # a job that ends before reaching a server leaves the queue too
    limits.reserve(4, next(job))


def test_refusals_read_in_the_members_language() -> None:
    clock = Clock()
    limits, job = Limits(max_pending_per_member=2, cooldown_seconds=30, max_queued_jobs=3, clock=clock), ids()
    limits.reserve(1, next(job))
    clock.now += 12.5
    assert localize(refusal(limits, 1), "ja") == "次のジョブを始めるまで、あと 18 秒お待ちください。"
    clock.now += 30
    limits.reserve(1, next(job))
    clock.now += 30
    assert localize(refusal(limits, 1), "ja") == (
        "待機中・実行中のジョブがすでに 2 件あります（上限 2 件）。"
        "どれかが終わるのを待つか、/cancel でキャンセルしてください。"
    )
    limits.reserve(2, next(job))
    assert localize(refusal(limits, 3), "zh-CN") == (
        "机器人的队列已满（3 个任务正在等待 ComfyUI 服务器）。请过几分钟再试。"
    )


def test_limits_of_zero_mean_no_limit() -> None:
    limits, job = Limits(), ids()
    for _ in range(50):
        limits.reserve(1, next(job))
    assert limits.pending(1) == 50


def test_check_refuses_like_reserve_but_reserves_nothing() -> None:
    limits = Limits(max_pending_per_member=1, cooldown_seconds=60)
    limits.check(1)
    limits.check(1)
    assert limits.active == {}
    limits.reserve(1, "only")
    with pytest.raises(InvalidInput) as caught:
        limits.check(1)
    assert caught.value.user_message == (
        "You already have 1 job(s) waiting or running; the limit is 1. Please wait for one to finish, "
        "or cancel one with /cancel."
    )


def test_recovered_jobs_count_towards_the_member_without_being_refused() -> None:
    limits = Limits(max_pending_per_member=2, cooldown_seconds=60, max_queued_jobs=2)
    recovered = [limits.adopt(1, f"old-{n}") for n in range(3)]  # more than the limit: they were accepted before
    assert refusal(limits, 1) == (
        "You already have 3 job(s) waiting or running; the limit is 2. Please wait for one to finish, "
        "or cancel one with /cancel."
    )
    assert limits.queued == 0
    limits.reserve(2, "new")  # adopting set no cooldown and took no queue place
    for reservation in recovered:
        reservation.release()
    limits.reserve(1, "after")


def test_active_is_a_read_only_view_in_reservation_order() -> None:
    limits = Limits()
    limits.reserve(5, "a")
    limits.reserve(6, "b")
    assert list(limits.active.items()) == [("a", 5), ("b", 6)]
    with pytest.raises(TypeError):
        limits.active["c"] = 7  # type: ignore[index]


async def test_concurrent_reservations_from_one_member_let_exactly_the_limit_through() -> None:
    limits = Limits(max_pending_per_member=2)
    started: list[str] = []

    async def command(n: int) -> str:
        await asyncio.sleep(0)  # all twenty are in flight before any reserves
        try:
            reservation = limits.reserve(1, f"job-{n}")
        except InvalidInput as exc:
            return exc.user_message
        try:
            started.append(reservation.job_id)
            await asyncio.sleep(0.01)  # the job's awaits: others arrive meanwhile
            return "ran"
        finally:
            reservation.release()

    answers = await asyncio.gather(*(command(n) for n in range(20)))
    assert answers.count("ran") == 2 and len(started) == 2
    assert answers.count(PENDING_REFUSAL) == 18
    assert limits.active == {}


# The engine: server slots and JOB_TIMEOUT.


async def test_an_unexpected_error_before_submitting_gives_the_server_slot_back(
    comfy: FakeComfyUI, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(session, (comfy.url,), job_timeout=15, max_output_bytes=2**24, max_jobs_per_server=2)
    engine.start()
    server = engine.servers[0]

    async def broken(*_: Any) -> dict[str, Any]:
        raise RuntimeError("not a BotError")

    try:
        with monkeypatch.context() as patched:
            patched.setattr(engine, "_server_values", broken)
            for _ in range(engine.max_jobs_per_server):
                with pytest.raises(RuntimeError, match="not a BotError"):
                    await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}))
        assert server.load == 0 and list(engine.queue) == [] and engine.limits.queued == 0
        result = await asyncio.wait_for(engine.run(IMAGE, IMAGE.resolve({"prompt": "still runs"})), 10)
        assert result.files and server.load == 0
    finally:
        await engine.close()


async def test_jobs_cancelled_at_any_moment_give_every_slot_back(
    comfy: FakeComfyUI, session: aiohttp.ClientSession
) -> None:
    # Members cancel and jobs time out at every point of their path: in the bot's queue, just as a slot is
    # taken, while uploading or submitting. Whatever the moment, the slot and the queue place come back.
    comfy.node_delay = 0.01
    engine = Engine(session, (comfy.url,), job_timeout=15, max_output_bytes=2**24, max_jobs_per_server=1)
    engine.start()
    server = engine.servers[0]
    try:
        await asyncio.wait_for(server.listener.connected.wait(), 5)
        for round_ in range(6):
            jobs = [asyncio.create_task(engine.run(IMAGE, IMAGE.resolve({"prompt": f"cat {n}"}))) for n in range(8)]
            for n, job in enumerate(jobs):
                await asyncio.sleep(0.001 * ((n + round_) % 4))
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            assert (server.active, list(engine.queue), engine.limits.queued) == (set(), [], 0)
        result = await asyncio.wait_for(engine.run(IMAGE, IMAGE.resolve({"prompt": "still runs"})), 10)
        assert result.files and server.load == 0
    finally:
        await engine.close()


async def test_job_timeout_counts_the_wait_in_the_bots_own_queue(
    comfy: FakeComfyUI, session: aiohttp.ClientSession
) -> None:
    engine = Engine(session, (comfy.url,), job_timeout=0.5, max_output_bytes=2**24, max_jobs_per_server=1)
    engine.start()
    engine.servers[0].active.add("someone else's job")  # the only slot stays taken
    seen: list[str] = []
    try:
        began = time.monotonic()
        with pytest.raises(JobTimeout) as caught:
            await asyncio.wait_for(
                engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}), lambda p: seen.append(p.describe())), 5
            )
        waited = time.monotonic() - began
    finally:
        await engine.close()
    assert caught.value.user_message == "The job did not finish within 1 minute(s), so the bot stopped waiting for it."
    assert seen == ["Waiting for a free slot: position 1 in the bot's queue"]
    assert 0.4 < waited < 2.0
    assert list(engine.queue) == [] and engine.servers[0].active == {"someone else's job"}
    assert not [r for r in comfy.requests if r.method == "POST" and r.path == "/prompt"]  # never submitted


async def test_job_timeout_counts_from_the_jobs_creation(comfy: FakeComfyUI, session: aiohttp.ClientSession) -> None:
    engine = Engine(session, (comfy.url,), job_timeout=1.0, max_output_bytes=2**24)
    engine.start()
    comfy.pause()
    # Asked for 0.8 s ago (an attachment download, say): only 0.2 s are left for ComfyUI.
    record = JobRecord(id=new_job_id(), workflow="image", values={}, created_at=time.time() - 0.8)
    try:
        began = time.monotonic()
        with pytest.raises(JobTimeout):
            await engine.run(IMAGE, IMAGE.resolve({"prompt": "a cat"}), record=record)
        waited = time.monotonic() - began
    finally:
        comfy.resume()
        await engine.close()
    assert waited < 0.7  # counted from submission it would be a full second
    assert ("/interrupt", {"prompt_id": record.id}) in [(r.path, r.json) for r in comfy.requests]
