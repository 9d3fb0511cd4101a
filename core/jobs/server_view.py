"""The admin view of the ComfyUI servers in plain lines: one wording for `/servers` and `bot.py servers`."""

from __future__ import annotations

from collections.abc import Sequence

from core.jobs.engine import Engine, ServerStatus
from core.jobs.routing import verdict
from core.text import cap

INDENT = "  "  # a server's detail lines, under its state line
MAX_SERVER_NAME = 100  # a COMFYUI_URL entry is named after its address, which may be long
MAX_ERROR = 200
MAX_TAGS = 150
MAX_RUNS = 300
MAX_LACKS = 4  # commands listed with what the server lacks; further ones are counted
MAX_LACK = 250


def servers_report(engine: Engine) -> list[str]:
    """Every configured server of `engine` as plain lines, after a one-line summary."""
    slots = [engine.slots(server) for server in engine.servers]
    return report(engine.server_status(), slots)


def report(statuses: Sequence[ServerStatus], slots: Sequence[int]) -> list[str]:
    """A summary line, then each server's lines; `slots[i]` is what Engine.slots gives for server i (0: no limit)."""
    if not statuses:
        return ["No ComfyUI server is configured."]
    counts = {state: sum(1 for s in statuses if s.state == state) for state in ("up", "connecting", "down")}
    summary = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    lines = [f"{len(statuses)} ComfyUI server(s): {summary}."]
    for status, slot_count in zip(statuses, slots, strict=True):
        lines += describe_server(status, slot_count)
    return lines


def describe_server(status: ServerStatus, slots: int) -> list[str]:
    """One server: its state and since when (with the last error), then load, tags and what it can run."""
    state = f"{cap(status.name, MAX_SERVER_NAME)}: {status.state} {duration(status.for_seconds)}"
    error = one_line(status.last_error, MAX_ERROR) if status.last_error else None
    if error and status.state == "up":
        state += f" (last error: {error})"  # it came back; the error may explain a recent outage
    elif error:
        state += f": {error}"
    elif status.state == "connecting":
        state += ": no answer yet"  # its first connection attempt has neither succeeded nor failed
    version = f"ComfyUI {cap(status.version, 40)}" if status.version else "version unknown"
    # A server that is not up may have done anything with its queue since it was last heard from.
    queue = f"queue {status.queue}" if status.queue is not None and status.state == "up" else "queue unknown"
    jobs = f"jobs {status.jobs}/{slots}" if slots else f"jobs {status.jobs} (no limit)"
    facts = [version, queue, jobs]
    if status.tags:
        facts.append(one_line("tags " + ", ".join(f"{k}={v}" for k, v in status.tags.items()), MAX_TAGS))
    lines = [state, INDENT + " · ".join(facts)]
    if not status.known:
        return [*lines, INDENT + "capabilities unknown: its /object_info has not been read"]
    if status.runs:
        lines.append(INDENT + cap("runs " + ", ".join(f"/{name}" for name in status.runs), MAX_RUNS))
    elif not status.lacks:
        lines.append(INDENT + "no command to check")
    for command, reason in status.lacks[:MAX_LACKS]:
        lacks = verdict(status.name, [reason]).describe()  # the same wording as `bot.py check`'s table
        lines.append(INDENT + one_line(f"cannot run /{command}: {lacks}", MAX_LACK))
    if len(status.lacks) > MAX_LACKS:
        lines.append(INDENT + f"…and {len(status.lacks) - MAX_LACKS} more command(s) it cannot run")
    return lines


def duration(seconds: float) -> str:
    """A time span rounded down to its largest units: "42 s", "3 min", "2 h 5 min", "4 d 1 h"."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{days} d {hours % 24} h" if hours % 24 else f"{days} d"


def one_line(text: str, limit: int) -> str:
    """Text from a server or a config file on one line (line breaks and tabs become spaces), capped."""
    return cap(" ".join(text.split()), limit)
