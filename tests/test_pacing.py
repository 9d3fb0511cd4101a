"""The turnstile that spreads a burst of work over turns of the event loop."""

from __future__ import annotations

import asyncio

from core.pacing import Turnstile


async def _turns_of(turnstile: Turnstile, callers: int) -> list[int]:
    """Let `callers` tasks through `turnstile` at once; the loop turn each got through in, in arrival order."""
    turn = 0
    through: dict[int, int] = {}

    async def ticker() -> None:
        nonlocal turn
        while True:
            await asyncio.sleep(0)
            turn += 1

    async def caller(i: int) -> None:
        await turnstile.enter()
        through[i] = turn

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(caller(i) for i in range(callers)))
    tick.cancel()
    return [through[i] for i in range(callers)]


async def test_a_burst_goes_through_a_few_per_turn_in_arrival_order() -> None:
    turns = await _turns_of(Turnstile(3), 10)

    assert turns == sorted(turns)  # first come, first through
    per_turn = {t: turns.count(t) for t in turns}
    assert max(per_turn.values()) == 3
    assert len(per_turn) == 4  # 3 + 3 + 3 + 1


async def test_callers_within_the_limit_are_not_held() -> None:
    turnstile = Turnstile(5)

    turns = await _turns_of(turnstile, 5)

    assert len(set(turns)) == 1


async def test_a_caller_cancelled_while_waiting_leaves_its_place_to_the_next() -> None:
    turnstile = Turnstile(1)
    callers = [asyncio.create_task(turnstile.enter()) for _ in range(4)]
    await asyncio.sleep(0)  # all four arrived in one turn: the first is through, three wait
    assert [task.done() for task in callers] == [True, False, False, False]
    callers[1].cancel()

    done, pending = await asyncio.wait(callers[2:], timeout=1)

    assert not pending and all(task.exception() is None for task in done)
    assert callers[1].cancelled()
