"""The admin view of the ComfyUI servers in plain lines: one wording for `/servers` and `bot.py servers`."""

from __future__ import annotations

from collections.abc import Sequence

from core.i18n import Lines, Text
from core.jobs.engine import Engine, ServerStatus
from core.jobs.routing import DOWN, LACKS, MAX_SERVER_NAME, verdict
from core.text import cap, joined

INDENT = "  "  # a server's detail lines, under its state line
MAX_ERROR = 200
MAX_TAGS = 150
MAX_RUNS = 300
MAX_LACKS = 4  # commands listed with what the server lacks; further ones are counted
MAX_LACK = 250

NO_SERVER = Text("No ComfyUI server is configured.")
SUMMARY = Text("{count} ComfyUI server(s): {states}.")
COUNTS = {"up": Text("{count} up"), "connecting": Text("{count} connecting"), "down": Text("{count} down")}
STATES = {"up": Text("up"), "connecting": Text("connecting"), "down": DOWN}
STATE = Text("{server}: {state} {duration}")
STATE_LAST_ERROR = Text("{server}: {state} {duration} (last error: {error})")  # it is up again
STATE_ERROR = Text("{server}: {state} {duration}: {error}")
STATE_NO_ANSWER = Text("{server}: {state} {duration}: no answer yet")
VERSION_UNKNOWN = Text("version unknown")
QUEUE = Text("queue {count}")
QUEUE_UNKNOWN = Text("queue unknown")
JOBS = Text("jobs {jobs}/{slots}")
JOBS_NO_LIMIT = Text("jobs {jobs} (no limit)")
TAGS = Text("tags {tags}")
CAPABILITIES_UNKNOWN = Text("capabilities unknown: its /object_info has not been read")
RUNS = Text("runs {commands}")
NOTHING_TO_CHECK = Text("no command to check")
CANNOT_RUN = Text("cannot run /{command}: {lacks}")
MORE_LACKS = Text("…and {count} more command(s) it cannot run")
# Durations, rounded down to their largest units
SECONDS = Text("{seconds} s")
MINUTES = Text("{minutes} min")
HOURS = Text("{hours} h")
HOURS_MINUTES = Text("{hours} h {minutes} min")
DAYS = Text("{days} d")
DAYS_HOURS = Text("{days} d {hours} h")


def servers_report(engine: Engine) -> list[str]:
    """Every configured server of `engine` as plain lines, after a one-line summary."""
    slots = [engine.slots(server) for server in engine.servers]
    return report(engine.server_status(), slots)


def report(statuses: Sequence[ServerStatus], slots: Sequence[int]) -> list[str]:
    """A summary line, then each server's lines; `slots[i]` is what Engine.slots gives for server i (0: no limit)."""
    if not statuses:
        return [NO_SERVER]
    counts = {state: sum(1 for s in statuses if s.state == state) for state in COUNTS}
    states = joined([COUNTS[state].format(count=count) for state, count in counts.items() if count])
    lines: list[str] = [SUMMARY.format(count=len(statuses), states=states)]
    for status, slot_count in zip(statuses, slots, strict=True):
        lines += describe_server(status, slot_count)
    return lines


def describe_server(status: ServerStatus, slots: int) -> list[str]:
    """One server: its state and since when (with the last error), then load, tags and what it can run."""
    shown = {
        "server": cap(status.name, MAX_SERVER_NAME),
        "state": STATES.get(status.state, status.state),
        "duration": duration(status.for_seconds),
    }
    error = one_line(status.last_error, MAX_ERROR) if status.last_error else None
    if error and status.state == "up":
        state = STATE_LAST_ERROR.format(**shown, error=error)  # it came back; the error may explain a recent outage
    elif error:
        state = STATE_ERROR.format(**shown, error=error)
    elif status.state == "connecting":
        state = STATE_NO_ANSWER.format(**shown)  # its first connection attempt has neither succeeded nor failed
    else:
        state = STATE.format(**shown)
    version = f"ComfyUI {cap(status.version, 40)}" if status.version else VERSION_UNKNOWN
    # A server that is not up may have done anything with its queue since it was last heard from.
    queue = QUEUE.format(count=status.queue) if status.queue is not None and status.state == "up" else QUEUE_UNKNOWN
    jobs = JOBS.format(jobs=status.jobs, slots=slots) if slots else JOBS_NO_LIMIT.format(jobs=status.jobs)
    facts = [version, queue, jobs]
    if status.tags:
        tags = ", ".join(f"{k}={v}" for k, v in status.tags.items())
        facts.append(TAGS.format(tags=one_line(tags, MAX_TAGS - len(TAGS.format(tags="")))))
    lines = [state, indented(Lines(facts, " · "))]
    if not status.known:
        return [*lines, indented(CAPABILITIES_UNKNOWN)]
    if status.runs:
        runs = ", ".join(f"/{name}" for name in status.runs)
        lines.append(indented(RUNS.format(commands=cap(runs, MAX_RUNS - len(RUNS.format(commands=""))))))
    elif not status.lacks:
        lines.append(indented(NOTHING_TO_CHECK))
    for command, reason in status.lacks[:MAX_LACKS]:
        room = MAX_LACK - len(CANNOT_RUN.format(command=command, lacks=LACKS.format(reason="")))
        # A sentence of the bot stays whole (to be translated); a server's or a workflow's words fit on the line
        said = reason if isinstance(reason, Text | Lines) else one_line(reason, room)
        lacks = verdict(status.name, [said]).describe()  # the same wording as `bot.py check`'s table
        lines.append(indented(CANNOT_RUN.format(command=command, lacks=lacks)))
    if len(status.lacks) > MAX_LACKS:
        lines.append(indented(MORE_LACKS.format(count=len(status.lacks) - MAX_LACKS)))
    return lines


def indented(line: str) -> str:
    """A detail line under its server's state line (the indent is the same in every language)."""
    return Lines((INDENT, line), "")


def duration(seconds: float) -> str:
    """A time span rounded down to its largest units: "42 s", "3 min", "2 h 5 min", "4 d 1 h"."""
    whole = max(0, int(seconds))
    if whole < 60:
        return SECONDS.format(seconds=whole)
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if hours < 1:
        return MINUTES.format(minutes=minutes)
    if days < 1:
        return HOURS_MINUTES.format(hours=hours, minutes=minutes % 60) if minutes % 60 else HOURS.format(hours=hours)
    return DAYS_HOURS.format(days=days, hours=hours % 24) if hours % 24 else DAYS.format(days=days)


def one_line(text: str, limit: int) -> str:
    """Text from a server or a config file on one line (line breaks and tabs become spaces), capped."""
    return cap(" ".join(text.split()), limit)
