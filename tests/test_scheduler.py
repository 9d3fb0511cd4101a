"""The bot's queue on its own: first come first served, slots handed directly, places in line coalesced."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from core.errors import BotError, JobCancelled
from core.jobs import scheduler
from core.jobs.scheduler import Scheduler, Waiter, Waiting


@dataclass
class Pool:
    """Servers as the scheduler sees them: a name and free slots; a job's subject names those it may use."""

    free: dict[str, int]
    given_back: list[tuple[str, str]] = field(default_factory=list)
    rounds: int = 0
    refuse: BotError | None = None

    def new_round(self) -> Callable[[Waiter[str]], str | BotError | None]:
        self.rounds += 1

        def decide(waiter: Waiter[str]) -> str | BotError | None:
            if self.refuse is not None:
                return self.refuse
            waiter.accepted = True
            for name in waiter.subject:
                if self.free.get(name, 0) > 0:
                    self.free[name] -= 1
                    return name
            return None

        return decide

    def give_back(self, server: str, job_id: str) -> None:
        self.given_back.append((server, job_id))
        self.free[server] += 1


def queue_of(pool: Pool) -> Scheduler[str]:
    return Scheduler(pool.new_round, pool.give_back)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_free_slots_go_first_come_first_served_one_at_a_time() -> None:
    pool = Pool({"gpu": 0})
    queue = queue_of(pool)
    got: list[str] = []

    async def job(n: int) -> None:
        await queue.wait(f"job {n}", ("gpu",), None, 5)
        got.append(f"job {n}")

    tasks = [asyncio.create_task(job(n)) for n in range(5)]
    await settle()
    assert list(queue) == [f"job {n}" for n in range(5)] and got == []
    for n in range(5):
        pool.free["gpu"] += 1
        queue.dispatch()
        await settle()
        assert got == [f"job {k}" for k in range(n + 1)]  # exactly the next one went
    await asyncio.gather(*tasks)
    assert len(queue) == 0


async def test_a_job_whose_servers_are_full_does_not_hold_up_one_that_fits_elsewhere() -> None:
    pool = Pool({"big": 0, "small": 1})
    queue = queue_of(pool)
    first = asyncio.create_task(queue.wait("needs big", ("big",), None, 5))
    second = asyncio.create_task(queue.wait("any", ("big", "small"), None, 5))
    assert await second == "small"
    assert not first.done() and list(queue) == ["needs big"]
    pool.free["big"] = 1
    queue.dispatch()
    assert await first == "big"


async def test_places_in_line_are_reported_in_one_pass_not_once_per_move(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler, "POSITION_PAUSE", 0.05)
    pool = Pool({"gpu": 0})
    queue = queue_of(pool)
    told: dict[int, list[Waiting]] = {n: [] for n in range(100)}
    tasks = [asyncio.create_task(queue.wait(f"job {n}", ("gpu",), told[n].append, 5)) for n in range(100)]
    await asyncio.sleep(0.1)
    assert [t[-1] for t in told.values()] == [Waiting(n + 1, servers_down=False) for n in range(100)]
    for _ in range(50):  # fifty slots free one after another, as fast as jobs finish
        pool.free["gpu"] += 1
        queue.dispatch()
        await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    assert [told[n][-1] for n in range(50, 100)] == [Waiting(n + 1, servers_down=False) for n in range(50)]
    # However many jobs moved on, each waiting one was told its place a few times, not fifty
    assert max(len(told[n]) for n in range(50, 100)) <= 4
    pool.free["gpu"] += 50
    queue.dispatch()
    await asyncio.gather(*tasks)


async def test_a_cancelled_job_leaves_the_line_and_the_others_move_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler, "POSITION_PAUSE", 0.05)
    pool = Pool({"gpu": 0})
    queue = queue_of(pool)
    told: list[Waiting] = []
    first = asyncio.create_task(queue.wait("first", ("gpu",), None, 5))
    second = asyncio.create_task(queue.wait("second", ("gpu",), told.append, 5))
    await asyncio.sleep(0.01)
    assert told == [Waiting(2, servers_down=False)]
    assert queue.cancel("first") and not queue.cancel("first")
    with pytest.raises(JobCancelled):
        await first
    await asyncio.sleep(0.1)
    assert told[-1] == Waiting(1, servers_down=False) and queue.position("second") == 1
    pool.free["gpu"] = 1
    queue.dispatch()
    assert await second == "gpu"


async def test_a_slot_handed_to_a_job_that_is_cancelled_at_that_moment_comes_back() -> None:
    pool = Pool({"gpu": 0})
    queue = queue_of(pool)
    task = asyncio.create_task(queue.wait("leaving", ("gpu",), None, 5))
    await settle()
    pool.free["gpu"] = 1
    queue.dispatch()  # handed the slot...
    task.cancel()  # ...and cancelled before it could run again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.given_back == [("gpu", "leaving")] and pool.free == {"gpu": 1}
    assert len(queue) == 0


async def test_a_refusal_reaches_the_job_and_no_place_is_reported_before() -> None:
    pool = Pool({"gpu": 0}, refuse=BotError("No connected ComfyUI server can run /image right now."))
    queue = queue_of(pool)
    told: list[Waiting] = []
    with pytest.raises(BotError) as caught:
        await queue.wait("refused", ("gpu",), told.append, 5)
    assert caught.value.user_message == "No connected ComfyUI server can run /image right now."
    await asyncio.sleep(0.01)
    assert told == [] and len(queue) == 0


async def test_a_job_not_yet_accepted_is_decided_again_after_its_patience() -> None:
    pool = Pool({"gpu": 0})
    rounds: list[float] = []

    def new_round() -> Callable[[Waiter[str]], str | BotError | None]:
        rounds.append(asyncio.get_running_loop().time())
        return lambda waiter: BotError("unreachable") if len(rounds) > 1 else None

    queue = Scheduler(new_round, pool.give_back)
    with pytest.raises(BotError):
        await asyncio.wait_for(queue.wait("early", ("gpu",), None, 0.2), 2)
    assert len(rounds) == 2 and rounds[1] - rounds[0] >= 0.19  # nothing in between: no polling


async def test_telling_a_long_queue_its_places_yields_the_loop_between_slices() -> None:
    """A pass over hundreds of waiting jobs gives other tasks a turn every REPORTS_PER_TURN jobs."""
    queue: Scheduler[str] = Scheduler(lambda: lambda waiter: None, lambda server, job_id: None)
    turn = 0
    told: dict[str, tuple[int, int]] = {}  # job -> (position, loop turn it was told in)

    async def ticker() -> None:
        nonlocal turn
        while True:
            await asyncio.sleep(0)
            turn += 1

    def noting(job_id: str) -> Callable[[Waiting], None]:
        return lambda waiting: told.__setitem__(job_id, (waiting.position, turn))

    jobs = 3 * scheduler.REPORTS_PER_TURN
    waits = [asyncio.create_task(queue.wait(f"j{i}", None, noting(f"j{i}"), patience=60)) for i in range(jobs)]
    await asyncio.sleep(0)
    for waiter in queue._waiting.values():
        waiter.accepted = True
    tick = asyncio.create_task(ticker())
    queue.cancel("j0")  # everyone behind moves up: one pass tells them all
    await asyncio.sleep(0.1)
    tick.cancel()
    await queue.close()
    for task in waits:
        task.cancel()
    await asyncio.gather(*waits, return_exceptions=True)

    assert sorted(position for position, _ in told.values()) == list(range(1, jobs))
    turns = [turn for _, turn in told.values()]
    assert max(turns.count(t) for t in turns) <= scheduler.REPORTS_PER_TURN
    assert len(set(turns)) >= 3
