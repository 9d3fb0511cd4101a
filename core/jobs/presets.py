"""Presets: a member's saved option values for one command, by name; the one named `default` applies by itself.

A preset holds what a job was asked with, less its seed (a preset is a taste, not one picture: each use draws
a new seed unless a seed is given) and its attached files (they are not kept once the job is done). Options
given with the command override the preset's values. Stored in the job store's `presets` table.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidInput
from core.i18n import Text
from core.jobs.store import JobRecord, JobStore
from core.workflows import FILE_TYPES, ParamType, Workflow

MAX_PRESETS = 25  # per member, all commands together; also Discord's cap for autocomplete answers
MAX_NAME = 32
NAME = re.compile(rf"[\w-]{{1,{MAX_NAME}}}")  # letters of any script, digits, _ and -
DEFAULT = "default"

BAD_NAME = Text("A preset name is 1 to {most} letters, digits, _ or - (got {name}).")
TOO_MANY = Text(
    "You have {count} presets, the most a member may keep; delete one with /preset delete first.", count=MAX_PRESETS
)
NO_SUCH = Text("You have no preset {name} for /{command}. /preset list shows yours.")
STALE = Text("Your preset {name} for /{command} no longer fits the command: {problem} Save it again or delete it.")
NO_OPTION = Text("it has no option {name} any more.")  # the {problem} of STALE
NO_JOB = Text("You have no job {job}. /history shows yours with their ids.")
NO_JOB_YET = Text("You have no job yet to save a preset from.")
NOTHING_TO_SAVE = Text("Job {job} of /{command} has no options a preset can keep (seeds and files are not kept).")


@dataclass(frozen=True, slots=True)
class Preset:
    """One saved set of option values of a member for a command."""

    user_id: int
    command: str
    name: str
    values: dict[str, Any]
    created_at: float


def checked_name(name: str) -> str:
    """Return `name` without surrounding spaces if it is a valid preset name; InvalidInput otherwise."""
    stripped = name.strip()
    if not NAME.fullmatch(stripped):
        raise InvalidInput(BAD_NAME.format(most=MAX_NAME, name=quoted_name(stripped)))
    return stripped


def keepable(workflow: Workflow, record: JobRecord) -> dict[str, Any]:
    """The values of job `record` a preset keeps: the workflow's current options, less seeds and files."""
    kept = {
        p.name: record.values[p.name]
        for p in workflow.params
        if p.name in record.values and p.type is not ParamType.SEED and p.type not in FILE_TYPES
    }
    if not kept:
        raise InvalidInput(NOTHING_TO_SAVE.format(job=f"`{record.id[:8]}`", command=workflow.name))
    return kept


def applied(workflow: Workflow, preset: Preset, given: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's values overridden by those `given`; a saved value the command no longer takes is refused."""
    merged = dict(given)
    for name, value in preset.values.items():
        if name in given:
            continue
        param = workflow.param(name)
        try:
            if param is None:
                raise InvalidInput(NO_OPTION.format(name=name))
            merged[name] = param.coerce(value)
        except InvalidInput as exc:
            problem = exc.user_message
            raise InvalidInput(
                STALE.format(name=quoted_name(preset.name), command=workflow.name, problem=problem)
            ) from None
    return merged


JOB_REF = re.compile(r"[0-9a-f-]{8,36}")  # a job id, or its first 8 characters as /history shows it


async def own_job(store: JobStore, user_id: int, ref: str | None) -> JobRecord:
    """The member's job `ref` (a whole id or its start), or their newest job; InvalidInput when there is none."""
    if ref is None:
        _, newest = await store.jobs_of(user_id, limit=1)
        if not newest:
            raise InvalidInput(NO_JOB_YET)
        return newest[0]
    wanted = ref.strip().strip("`").lower()
    found: list[str] = []
    if JOB_REF.fullmatch(wanted):  # hex digits and dashes only: nothing LIKE would read as a wildcard

        def ids(db: sqlite3.Connection) -> list[str]:
            rows = db.execute("SELECT id FROM jobs WHERE user_id = ? AND id LIKE ? LIMIT 2", (user_id, wanted + "%"))
            return [job_id for (job_id,) in rows]

        found = await store.call(ids)
    record = await store.get(found[0]) if len(found) == 1 else None
    if record is None:
        raise InvalidInput(NO_JOB.format(job=quoted_name(ref)))
    return record


class Presets:
    """The members' presets in the job store (one instance per store: it remembers who has a default)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        # (member, command) of every `default` preset: the one looked up on every command, so that a member
        # without one (nearly all) costs no trip to the store's thread. The bot is the store's only writer.
        self._defaults: set[tuple[int, str]] | None = None

    async def default(self, user_id: int, command: str) -> Preset | None:
        """Return the member's `default` preset for `command`, or None."""
        if self._defaults is None:
            rows = await self.store.call(lambda db: db.execute("SELECT user_id, command FROM presets WHERE name = ?",
                                                               (DEFAULT,)).fetchall())  # fmt: skip
            self._defaults = {(int(user), str(cmd)) for user, cmd in rows}
        if (user_id, command) not in self._defaults:
            return None
        return await self.get(user_id, command, DEFAULT)

    async def save(self, user_id: int, command: str, name: str, values: dict[str, Any]) -> bool:
        """Store (or replace) a preset; True when it replaced one. Refused past MAX_PRESETS, atomically."""

        def save(db: sqlite3.Connection) -> bool:
            key = (user_id, command, name)
            [(exists,)] = db.execute("SELECT count(*) FROM presets WHERE user_id = ? AND command = ? AND name = ?", key)
            [(count,)] = db.execute("SELECT count(*) FROM presets WHERE user_id = ?", (user_id,))
            if not exists and count >= MAX_PRESETS:
                raise InvalidInput(TOO_MANY)
            db.execute(
                'INSERT OR REPLACE INTO presets (user_id, command, name, "values", created_at) VALUES (?, ?, ?, ?, ?)',
                (*key, json.dumps(values), time.time()),
            )
            return bool(exists)

        replaced = await self.store.call(save)
        if name == DEFAULT and self._defaults is not None:
            self._defaults.add((user_id, command))
        return replaced

    async def get(self, user_id: int, command: str, name: str) -> Preset | None:
        """Return the member's preset `name` for `command`, or None."""
        found = await self.store.call(
            lambda db: _presets(db, "WHERE user_id = ? AND command = ? AND name = ?", (user_id, command, name))
        )
        return found[0] if found else None

    async def of(self, user_id: int, command: str | None = None) -> list[Preset]:
        """Return the member's presets (for one command, or all), by command and name."""
        if command is None:
            where, args = "WHERE user_id = ?", (user_id,)
        else:
            where, args = "WHERE user_id = ? AND command = ?", (user_id, command)
        return await self.store.call(lambda db: _presets(db, where + " ORDER BY command, name", args))

    async def delete(self, user_id: int, command: str, name: str) -> bool:
        """Delete the member's preset `name` for `command`; False when there was none."""

        def delete(db: sqlite3.Connection) -> bool:
            args = (user_id, command, name)
            return db.execute("DELETE FROM presets WHERE user_id = ? AND command = ? AND name = ?", args).rowcount > 0

        deleted = await self.store.call(delete)
        if name == DEFAULT and self._defaults is not None:
            self._defaults.discard((user_id, command))
        return deleted


def _presets(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[Preset]:
    rows = db.execute(f'SELECT user_id, command, name, "values", created_at FROM presets {where}', args)
    return [Preset(user, command, name, json.loads(values), at) for user, command, name, values, at in rows]


def quoted_name(name: str) -> str:
    """A member's preset name inside a message: short, on one line, in code style so nothing renders."""
    short = name if len(name) <= MAX_NAME + 8 else name[:MAX_NAME] + "…"
    return "`" + short.replace("`", "'").replace("\n", " ") + "`"
