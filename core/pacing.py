"""Spreading a burst of work over turns of the event loop, so that no turn holds it for long."""

from __future__ import annotations

import asyncio
from collections import deque


class Turnstile:
    """Lets at most `per_turn` callers through `enter` per turn of the event loop, the others in order after.

    Each caller goes on to work that does not await (building requests, opening connections); hundreds of
    them let through in one turn would all run in the next one and hold the loop for as long.
    """

    def __init__(self, per_turn: int) -> None:
        self.per_turn = per_turn
        self._passed = 0  # let through since the turn began
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._turn: asyncio.Handle | None = None

    async def enter(self) -> None:
        """Return at once while this turn has room, else once it is this caller's turn."""
        if not self._waiting and self._passed < self.per_turn:
            self._passed += 1
            self._next_turn()
            return
        gate = asyncio.get_running_loop().create_future()
        self._waiting.append(gate)
        self._next_turn()
        await gate  # a caller cancelled while waiting just leaves: its future is skipped

    def _next_turn(self) -> None:
        if self._turn is None:
            # call_soon from a running callback runs in the loop's next turn, not this one
            self._turn = asyncio.get_running_loop().call_soon(self._open)

    def _open(self) -> None:
        self._turn = None
        self._passed = 0
        while self._waiting and self._passed < self.per_turn:
            gate = self._waiting.popleft()
            if not gate.done():
                gate.set_result(None)
                self._passed += 1
        if self._waiting or self._passed:
            self._next_turn()
