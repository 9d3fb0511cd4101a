"""Daily quotas: jobs and GPU-seconds per member and day, from the `[quotas]` table of community.toml.

A member's allowance is the top-level one, or, when they hold roles listed under `[quotas.roles.<role id>]`,
the most generous of those roles' (per key: no limit beats any limit, else the larger). A job counts once it
reached ComfyUI; its place in the day's count is reserved before the first await (`QuotaBook.reserve`, like
`Limits.reserve`) and given back when it never got there. GPU-seconds are checked before a job starts and
counted once it ran (the engine measures them and stores them with the job). The day's usage is read from the
job store at start and kept in memory from then on (this bot is the store's only writer).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sqlite3
import time
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError, InvalidInput
from core.i18n import Text
from core.jobs.store import JobRecord, JobStore

log = logging.getLogger(__name__)

TABLE = "quotas"
LIMIT_KEYS = ("jobs_per_day", "gpu_seconds_per_day")
KEYS = (*LIMIT_KEYS, "reset_hour", "timezone", "admins_exempt", "roles")
ROLE_ID = re.compile(r"[0-9]{17,20}", re.ASCII)
DAY = dt.timedelta(days=1)

# What a member is told
JOBS_USED_UP = Text("You have used all {limit} of your jobs for today. Your quota resets <t:{reset}:R>.")
GPU_USED_UP = Text(
    "You have used all {limit} of your GPU-seconds for today ({used} used). Your quota resets <t:{reset}:R>."
)
QUOTA_TITLE_OWN = Text("**Your quota for today**")
QUOTA_TITLE_OTHER = Text("**Quota of <@{member}> for today**")
QUOTA_JOBS = Text("Jobs: {used} of {limit} used, {left} left")
QUOTA_JOBS_UNLIMITED = Text("Jobs: {used} used (no limit)")
QUOTA_GPU = Text("GPU time: {used} of {limit} seconds used, {left} left")
QUOTA_GPU_UNLIMITED = Text("GPU time: {used} seconds used (no limit)")
QUOTA_EXEMPT = Text("Admins are not held to the quota.")
QUOTA_RESETS = Text("Resets <t:{reset}:R> (<t:{reset}:f>).")


class QuotaExceeded(InvalidInput):
    """The member has used up a daily quota; the message says which and when it resets."""


@dataclass(frozen=True, slots=True)
class Allowance:
    """What one member may use per day; 0 means no limit."""

    jobs_per_day: int = 0
    gpu_seconds_per_day: int = 0


@dataclass(frozen=True, slots=True)
class QuotaRules:
    """The `[quotas]` table: the default allowance, per-role ones, when a day starts, and admins' exemption."""

    default: Allowance = Allowance()
    roles: Mapping[int, Allowance] = field(default_factory=dict)
    reset_hour: int = 0
    timezone: dt.tzinfo = dt.UTC
    admins_exempt: bool = True

    @property
    def limited(self) -> bool:
        """Tell whether any allowance has a limit at all."""
        return any(a != Allowance() for a in (self.default, *self.roles.values()))

    def allowance(self, role_ids: Iterable[int]) -> Allowance:
        """The most generous allowance of the listed roles among `role_ids`; the default when none is listed."""
        held = [self.roles[r] for r in role_ids if r in self.roles]
        if not held:
            return self.default
        return Allowance(
            jobs_per_day=_most_generous(a.jobs_per_day for a in held),
            gpu_seconds_per_day=_most_generous(a.gpu_seconds_per_day for a in held),
        )

    def day_start(self, now: float) -> float:
        """The last reset at or before `now` (a Unix time)."""
        local = dt.datetime.fromtimestamp(now, self.timezone)
        start = self._reset_on(local.date())
        if start > local:
            start = self._reset_on(local.date() - DAY)
        return start.timestamp()

    def next_reset(self, now: float) -> float:
        """The first reset after `now` (a Unix time)."""
        start = dt.datetime.fromtimestamp(self.day_start(now), self.timezone)
        return self._reset_on(start.date() + DAY).timestamp()

    def _reset_on(self, day: dt.date) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, self.reset_hour, tzinfo=self.timezone)


def _most_generous(limits: Iterable[int]) -> int:
    values = list(limits)
    return 0 if 0 in values else max(values)


def quota_rules(community: Mapping[str, Any], file_name: str = "community.toml") -> QuotaRules:
    """Turn the `[quotas]` table of the community file into QuotaRules; ConfigError lists every problem."""
    table = community.get(TABLE)
    if table is None:
        return QuotaRules()
    where = f"{file_name} [{TABLE}]"
    if not isinstance(table, dict):
        raise ConfigError([f"{where} must be a table."])
    problems: list[str] = []
    problems += [f"{where} has an unknown key {key!r} (known: {', '.join(KEYS)})" for key in table if key not in KEYS]
    default = _allowance(table, Allowance(), where, problems)
    reset_hour = table.get("reset_hour", 0)
    if not _whole(reset_hour) or not 0 <= reset_hour <= 23:
        problems.append(f"{where} reset_hour must be a whole number from 0 to 23 (found {reset_hour!r})")
        reset_hour = 0
    zone = table.get("timezone", "UTC")
    timezone = _zone(zone)
    if timezone is None:
        problems.append(
            f'{where} timezone must be a time zone name such as "Europe/Paris" or "UTC" (found {zone!r}; '
            "if no name works, install the tzdata package)"
        )
        timezone = dt.UTC
    exempt = table.get("admins_exempt", True)
    if not isinstance(exempt, bool):
        problems.append(f"{where} admins_exempt must be true or false (found {exempt!r})")
        exempt = True
    roles: dict[int, Allowance] = {}
    role_tables = table.get("roles", {})
    if not isinstance(role_tables, dict):
        problems.append(f"{where} roles must be a table of [{TABLE}.roles.<role id>] tables")
        role_tables = {}
    for key, role_table in role_tables.items():
        role_where = f"{file_name} [{TABLE}.roles.{key}]"
        if not ROLE_ID.fullmatch(key):
            problems.append(f"{role_where}: {key!r} is not a role id (17-20 digits)")
            continue
        if not isinstance(role_table, dict):
            problems.append(f"{role_where} must be a table")
            continue
        problems += [
            f"{role_where} has an unknown key {name!r} (known: {', '.join(LIMIT_KEYS)})"
            for name in role_table
            if name not in LIMIT_KEYS
        ]
        roles[int(key)] = _allowance(role_table, default, role_where, problems)
    if problems:
        raise ConfigError(problems)
    return QuotaRules(default, roles, reset_hour, timezone, exempt)


def _allowance(table: Mapping[str, Any], inherited: Allowance, where: str, problems: list[str]) -> Allowance:
    """The limits set in `table`, each key left out taken from `inherited`."""
    values: dict[str, int] = {}
    for key in LIMIT_KEYS:
        value = table.get(key, getattr(inherited, key))
        if not _whole(value) or value < 0:
            problems.append(f"{where} {key} must be a whole number >= 0, 0 for no limit (found {value!r})")
            value = 0
        values[key] = value
    return Allowance(**values)


def _zone(name: Any) -> dt.tzinfo | None:
    """The time zone called `name`, or None when there is none by that name."""
    if not isinstance(name, str):
        return None
    if name == "UTC":
        return dt.UTC  # needs no time zone database
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Used:
    """One member's usage in the current day: jobs that reached ComfyUI (or hold a place) and GPU-seconds."""

    jobs: int = 0
    gpu_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class QuotaView:
    """One member's quota as /quota shows it."""

    used: Used
    allowance: Allowance
    exempt: bool
    resets_at: float


class QuotaHold:
    """One job's place in its member's count of the day; release() gives it back unless the job reached ComfyUI."""

    __slots__ = ("_book", "day", "job_id", "member_id", "submitted")

    def __init__(self, book: QuotaBook, job_id: str, member_id: int, day: float) -> None:
        self._book = book
        self.job_id = job_id
        self.member_id = member_id
        self.day = day
        self.submitted = False

    def release(self) -> None:
        """End the hold: a job that never reached ComfyUI no longer counts. A second call does nothing."""
        self._book._release(self)


class QuotaBook:
    """Each member's usage of the current day, checked and counted in one synchronous step per job."""

    def __init__(self, rules: QuotaRules, clock: Callable[[], float] = time.time) -> None:
        self.rules = rules
        self.clock = clock
        self._day = rules.day_start(clock())
        self._used: dict[int, Used] = {}
        self._holds: dict[str, QuotaHold] = {}

    async def load(self, store: JobStore) -> None:
        """Read the current day's usage from the job store: jobs that reached ComfyUI, and their GPU-seconds."""
        day = self.rules.day_start(self.clock())
        rows = await store.call(_usage_since, day)
        self._day = day
        self._used = {int(user): Used(int(jobs), float(seconds)) for user, jobs, seconds in rows}
        log.info("quotas: %d member(s) used the bot since the last reset", len(self._used))

    def used(self, member_id: int) -> Used:
        """`member_id`'s usage in the current day."""
        self._roll()
        return self._used.get(member_id, Used())

    def view(self, member_id: int, role_ids: Iterable[int], *, admin: bool) -> QuotaView:
        """What /quota shows for a member."""
        now = self.clock()
        return QuotaView(
            self.used(member_id),
            self.rules.allowance(role_ids),
            exempt=admin and self.rules.admins_exempt,
            resets_at=self.rules.next_reset(now),
        )

    def check(self, member_id: int, role_ids: Iterable[int]) -> None:
        """Raise QuotaExceeded when the member may not start a job now; reserve() checks again."""
        self._roll()
        allowance = self.rules.allowance(role_ids)
        used = self._used.get(member_id, Used())
        reset = int(self.rules.next_reset(self.clock()))
        if allowance.jobs_per_day and used.jobs >= allowance.jobs_per_day:
            raise QuotaExceeded(JOBS_USED_UP.format(limit=allowance.jobs_per_day, reset=reset))
        if allowance.gpu_seconds_per_day and used.gpu_seconds >= allowance.gpu_seconds_per_day:
            raise QuotaExceeded(
                GPU_USED_UP.format(limit=allowance.gpu_seconds_per_day, used=round(used.gpu_seconds), reset=reset)
            )

    def reserve(self, member_id: int, role_ids: Iterable[int], job_id: str, *, exempt: bool = False) -> QuotaHold:
        """Check the member's quota and count the job in the same step (call it before any await).

        An `exempt` member (an admin, unless admins_exempt is false) is counted but never refused.
        """
        if not exempt:
            self.check(member_id, role_ids)
        self._roll()
        self._add(member_id, jobs=1)
        hold = self._holds[job_id] = QuotaHold(self, job_id, member_id, self._day)
        return hold

    # What the engine tells (core.jobs.engine.Usage)

    def submitted(self, record: JobRecord) -> None:
        """A job reached ComfyUI: its place is kept; a job recovered after a restart is counted now."""
        hold = self._holds.get(record.id)
        if hold is not None:
            hold.submitted = True
        elif record.user_id is not None and self._in_today(record.created_at):
            self._add(record.user_id, jobs=1)

    def ran(self, record: JobRecord, seconds: float) -> None:
        """Add the GPU-seconds a job used to its member's day (the day it was asked for)."""
        self._roll()
        hold = self._holds.get(record.id)
        # A held job belongs to the day it was reserved in (the clock of a test may differ from created_at)
        today = hold.day == self._day if hold is not None else self._in_today(record.created_at)
        if record.user_id is not None and today:
            self._add(record.user_id, seconds=seconds)

    def _in_today(self, when: float) -> bool:
        self._roll()
        return self.rules.day_start(when) == self._day

    def _add(self, member_id: int, *, jobs: int = 0, seconds: float = 0.0) -> None:
        used = self._used.get(member_id, Used())
        self._used[member_id] = Used(used.jobs + jobs, used.gpu_seconds + seconds)

    def _release(self, hold: QuotaHold) -> None:
        if self._holds.pop(hold.job_id, None) is None:
            return  # released already
        self._roll()
        if not hold.submitted and hold.day == self._day and self.used(hold.member_id).jobs > 0:
            self._add(hold.member_id, jobs=-1)

    def _roll(self) -> None:
        """Start a new day's counts once the reset hour has passed."""
        day = self.rules.day_start(self.clock())
        if day != self._day:
            self._day = day
            self._used = {}


def _usage_since(db: sqlite3.Connection, start: float) -> list[tuple[Any, ...]]:
    """(member, jobs that reached ComfyUI, GPU-seconds) of every member with jobs asked for since `start`."""
    return db.execute(
        "SELECT user_id, count(*) FILTER (WHERE attempts > 0), total(gpu_seconds) FROM jobs "
        "WHERE user_id IS NOT NULL AND created_at >= ? GROUP BY user_id",
        (start,),
    ).fetchall()
