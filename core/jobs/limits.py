"""Job limits that hold under concurrency: each front reserves a job's place in one synchronous step.

`Limits.reserve` checks and counts in the same step, with no await in between, so twenty commands or
button clicks arriving together cannot all pass a check that only one of them may pass. The place is
given back by `Reservation.release`, called in `finally` by whoever reserved it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from core.errors import InvalidInput
from core.i18n import Text

PRUNE_AT = 1000  # cooldown stamps kept before expired ones are dropped

# What a member is told
TOO_MANY_PENDING = Text(
    "You already have {pending} job(s) waiting or running; the limit is {limit}. "
    "Please wait for one to finish, or cancel one with /cancel."
)
COOLING_DOWN = Text("Please wait {seconds} more second(s) before starting another job.")
QUEUE_FULL = Text(
    "The bot's queue is full ({queued} job(s) waiting for a ComfyUI server). Please try again in a few minutes."
)


class Reservation:
    """One job's place under the limits, from its reservation to its end; release() gives it back once."""

    __slots__ = ("_limits", "_released", "created_at", "job_id", "member_id")

    def __init__(self, limits: Limits, job_id: str, member_id: int) -> None:
        self.job_id = job_id
        self.member_id = member_id
        self.created_at = time.time()  # when the job was asked for: JOB_TIMEOUT counts from here
        self._limits = limits
        self._released = False

    def release(self) -> None:
        """Free the job's place (its member's pending count, and its queue place if it still holds one)."""
        if not self._released:  # a second call must not free a place some other job holds
            self._released = True
            self._limits._forget(self.job_id)


class Limits:
    """Per-member pending jobs, the cooldown between a member's jobs, and the size of the bot's own queue.

    A count of 0 means no limit. "Queued" are jobs reserved and not yet given to a ComfyUI server
    (downloading attachments, or waiting in the engine for a free slot); the engine calls `left_queue`.
    """

    def __init__(
        self,
        *,
        max_pending_per_member: int = 0,
        cooldown_seconds: float = 0.0,
        max_queued_jobs: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_pending_per_member = max_pending_per_member
        self.cooldown_seconds = cooldown_seconds
        self.max_queued_jobs = max_queued_jobs
        self._clock = clock
        self._jobs: dict[str, int] = {}  # job id -> member id, for every job waiting or running
        self._queued: set[str] = set()
        self._last_start: dict[int, float] = {}  # member id -> clock() of their last reservation

    @property
    def active(self) -> Mapping[str, int]:
        """Job id -> member id of the jobs waiting or running, oldest first (read-only)."""
        return MappingProxyType(self._jobs)

    @property
    def queued(self) -> int:
        """Count the jobs waiting for a ComfyUI server."""
        return len(self._queued)

    def pending(self, member_id: int) -> int:
        """Count `member_id`'s jobs waiting or running."""
        return sum(1 for member in self._jobs.values() if member == member_id)

    def check(self, member_id: int) -> None:
        """Refuse with InvalidInput if `member_id` may not start a job now; reserve() checks again."""
        pending = self.pending(member_id)
        if self.max_pending_per_member and pending >= self.max_pending_per_member:
            raise InvalidInput(TOO_MANY_PENDING.format(pending=pending, limit=self.max_pending_per_member))
        last = self._last_start.get(member_id)
        if last is not None:
            wait = last + self.cooldown_seconds - self._clock()
            if wait > 0:
                raise InvalidInput(COOLING_DOWN.format(seconds=math.ceil(wait)))
        if self.max_queued_jobs and len(self._queued) >= self.max_queued_jobs:
            raise InvalidInput(QUEUE_FULL.format(queued=len(self._queued)))

    def reserve(self, member_id: int, job_id: str) -> Reservation:
        """Check every limit and take the job's place in the same step (call it before any await)."""
        self.check(member_id)
        if self.cooldown_seconds:
            self._stamp(member_id)
        return self._add(member_id, job_id, queued=True)

    def adopt(self, member_id: int, job_id: str) -> Reservation:
        """Count a job recovered from the store towards its member's pending jobs; it is never refused."""
        return self._add(member_id, job_id, queued=False)

    def left_queue(self, job_id: str) -> None:
        """The job got a server slot (or left the bot's queue for good); unknown ids are ignored."""
        self._queued.discard(job_id)

    def _add(self, member_id: int, job_id: str, *, queued: bool) -> Reservation:
        if job_id in self._jobs:
            raise ValueError(f"job {job_id} already holds a reservation")
        self._jobs[job_id] = member_id
        if queued:
            self._queued.add(job_id)
        return Reservation(self, job_id, member_id)

    def _stamp(self, member_id: int) -> None:
        now = self._clock()
        if len(self._last_start) >= PRUNE_AT:  # keep only stamps that still cool someone down
            self._last_start = {m: t for m, t in self._last_start.items() if t + self.cooldown_seconds > now}
        self._last_start[member_id] = now

    def _forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._queued.discard(job_id)
