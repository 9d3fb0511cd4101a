"""The bot's own queue: jobs wait here, first come first served, until a server slot is handed to them.

Nothing polls. Whenever something changes that could let a job go (a slot freed, a server up or down, new
capabilities, a job added or cancelled) the engine calls `dispatch`, which walks the queue once in order and
hands each job that fits a server directly: one wake-up for that job, none for the others. Their places in
line are reported by one pass that runs at most every POSITION_PAUSE seconds, however many jobs moved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from core.errors import BotError, JobCancelled

log = logging.getLogger(__name__)

S = TypeVar("S")  # what a job is handed: a server with a slot taken for it

POSITION_PAUSE = 0.5  # seconds between two reports of the places in line
# Waiting jobs told their place in one turn of the event loop: telling 500 of them held it for 8-12 ms
REPORTS_PER_TURN = 64


@dataclass(frozen=True, slots=True)
class Waiting:
    """What a waiting job is told: its place in line, or that no server able to run it is up."""

    position: int
    servers_down: bool


OnWaiting = Callable[[Waiting], Awaitable[None] | None]


@dataclass(eq=False, slots=True)
class Waiter(Generic[S]):
    """One job in the bot's queue."""

    job_id: str
    subject: Any  # what the engine needs to place it (its workflow)
    on_waiting: OnWaiting | None
    asked: float = field(default_factory=time.monotonic)
    granted: asyncio.Future[S] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    accepted: bool = False  # a server able to run it was up since it asked: an outage never drops it
    down: bool = False  # every server able to run it is down now
    shown: Waiting | None = None


# Given a waiter: the server it gets (its slot taken), the error it is refused with, or None to keep waiting.
Decide = Callable[[Waiter[S]], "S | BotError | None"]
# Makes the Decide of one dispatch round, so that what all waiters share (the servers up, what each can run)
# is worked out once per round, not once per waiting job.
Round = Callable[[], Decide[S]]
# Gives back the slot of a server handed to a job that left anyway (cancelled or timed out at that moment).
GiveBack = Callable[[S, str], None]


class Scheduler(Generic[S]):
    """First come, first served hand-out of server slots to waiting jobs."""

    def __init__(self, new_round: Round[S], give_back: GiveBack[S]) -> None:
        self._new_round = new_round
        self._give_back = give_back
        self._waiting: dict[str, Waiter[S]] = {}  # in arrival order
        self._reporter: asyncio.Task[None] | None = None
        self._report_again = False

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)

    def __iter__(self) -> Iterator[str]:
        """The waiting job ids, first in line first."""
        return iter(list(self._waiting))

    def position(self, job_id: str) -> int | None:
        """A waiting job's place in line (1: next), None when it is not waiting."""
        if job_id not in self._waiting:
            return None
        return list(self._waiting).index(job_id) + 1

    async def wait(self, job_id: str, subject: Any, on_waiting: OnWaiting | None, patience: float) -> S:
        """Queue a job and return the server handed to it; a refusal or a cancel is raised.

        A job not yet accepted by any server is decided on again after `patience` seconds: a server that
        was still connecting when it asked has had its chance by then.
        """
        waiter: Waiter[S] = Waiter(job_id, subject, on_waiting)
        self._waiting[job_id] = waiter
        handed = False
        try:
            self.dispatch(waiter)
            while not waiter.granted.done():
                timeout = None if waiter.accepted else max(0.0, waiter.asked + patience - time.monotonic())
                await asyncio.wait((waiter.granted,), timeout=timeout)
                if not waiter.granted.done():
                    self.dispatch(waiter)  # its patience ran out: refused now unless a server can take it
            server = waiter.granted.result()  # raises the refusal or the cancel
            handed = True
            return server
        finally:
            # Nothing awaited here: a slot handed to a job that is leaving anyway goes back at once.
            self._waiting.pop(job_id, None)
            if not handed and waiter.granted.done() and not waiter.granted.cancelled():
                if waiter.granted.exception() is None:
                    self._give_back(waiter.granted.result(), job_id)
            elif not waiter.granted.done():
                waiter.granted.cancel()
            if self._waiting:
                self._report_positions()

    def cancel(self, job_id: str) -> bool:
        """Drop a waiting job (it raises JobCancelled); False when it is not waiting."""
        waiter = self._waiting.pop(job_id, None)
        if waiter is None or waiter.granted.done():
            return False
        waiter.granted.set_exception(JobCancelled())
        self._report_positions()
        return True

    def dispatch(self, only: Waiter[S] | None = None) -> None:
        """Hand free slots to the waiting jobs that fit, in arrival order; refuse the ones that cannot run.

        `only`: a job that just arrived. Nothing changed for the others (every change dispatches them all),
        so it alone is decided: a thousand arrivals cost a thousand decisions, not half a million.
        """
        if not self._waiting:
            return
        moved = False
        decide = self._new_round()
        for waiter in [only] if only is not None else list(self._waiting.values()):
            was_down = waiter.down
            decision = decide(waiter)
            if isinstance(decision, BotError):
                del self._waiting[waiter.job_id]
                waiter.granted.set_exception(decision)
                moved = True
            elif decision is not None:
                del self._waiting[waiter.job_id]
                waiter.granted.set_result(decision)
                moved = True
            elif waiter.on_waiting is not None and waiter.accepted and (waiter.down != was_down or not waiter.shown):
                moved = True  # newly down, or not told its place yet
        if moved:
            self._report_positions()

    def _report_positions(self) -> None:
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.create_task(self._report(), name="queue positions")
        else:
            self._report_again = True

    async def _report(self) -> None:
        """Tell each waiting job its place in line when it changed; coalesces bursts of changes."""
        while True:
            self._report_again = False
            for position, waiter in enumerate(list(self._waiting.values()), start=1):
                if position % REPORTS_PER_TURN == 0:
                    await asyncio.sleep(0)
                told = Waiting(position, waiter.down)
                if waiter.on_waiting is None or not waiter.accepted or told == waiter.shown:
                    continue  # (not accepted yet: it may be refused in a moment, its place means nothing)
                if self._waiting.get(waiter.job_id) is not waiter:
                    continue  # handed a server meanwhile: its own progress speaks now
                waiter.shown = told
                try:
                    result = waiter.on_waiting(told)
                    if result is not None:
                        await result
                except Exception:
                    log.exception("reporting the queue position of job %s failed", waiter.job_id)
            await asyncio.sleep(POSITION_PAUSE)  # changes meanwhile are reported together, after it
            if not self._report_again:
                return

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            await asyncio.gather(self._reporter, return_exceptions=True)
