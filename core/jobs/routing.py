"""Which servers can run which workflow, and the answer when none connected can."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import BotError
from core.i18n import Clause, Lines, Text
from core.text import cap, joined

MAX_REASON = 300  # one server's reason in a refusal; a message holds several
MAX_REFUSAL = 1800  # under Discord's 2000 characters, with room for the front's framing
MAX_SERVER_NAME = 100  # a COMFYUI_URL entry is named after its address, which may be long

# A server's state, in a table (`bot.py check`, /servers) or a refusal
DOWN = Text("down")
NO_ANSWER = Text("did not answer /object_info")
OK = Text("OK")
LACKS = Text("lacks: {reason}")
LACKS_MORE = Text("lacks: {reason} (and {count} more problem(s))")
UNREADABLE = Text("its /object_info could not be read")
# What a member is told when no server can run their command
NO_SERVER_CAN = Text("No connected ComfyUI server can run /{workflow} right now: {servers}.")
SERVER_DOWN = Text("{server} is down")
SERVER_STATE = Text("{server} {state}")
SERVERS = Text("{items}; {item}")
MORE_SERVERS = Text("{count} more server(s)")


class NoCapableServer(BotError):
    """No connected ComfyUI server can run the workflow; the message names what each one lacks."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one server says about one workflow: None when it can run it, else the first reason it cannot."""

    server: str
    reason: str | None  # None: it can run the workflow
    connected: bool = True
    more: int = 0  # further problems beyond `reason`
    known: bool = True  # False: its /object_info could not be read

    def describe(self) -> str:
        """One line for a table or a refusal: OK, down, or what it lacks."""
        if not self.connected:
            return DOWN
        if not self.known:
            return NO_ANSWER
        if self.reason is None:
            return OK
        if isinstance(self.reason, Text | Lines):
            # a sentence of the bot: shown whole, so that it can be translated, but without its full stop
            reason: str = Clause(self.reason)
        else:
            reason = cap(self.reason.rstrip("."), MAX_REASON - len(LACKS.format(reason="")))
        return LACKS_MORE.format(reason=reason, count=self.more) if self.more else LACKS.format(reason=reason)


def verdict(server: str, problems: Sequence[str] | None, *, connected: bool = True) -> Verdict:
    """Sum a server's problems with a workflow up (None: its /object_info is not known)."""
    if problems is None:
        return Verdict(server, UNREADABLE, connected, known=False)
    if not problems:
        return Verdict(server, None, connected)
    return Verdict(server, problems[0], connected, len(problems) - 1)


def refusal(workflow: str, verdicts: Sequence[Verdict]) -> NoCapableServer:
    """The error for a command no connected server can run, naming each server's reason."""
    parts: list[str] = []
    length = 0
    for v in verdicts:
        name = cap(v.server, MAX_SERVER_NAME)
        part = (
            SERVER_DOWN.format(server=name) if not v.connected else SERVER_STATE.format(server=name, state=v.describe())
        )
        length += len(part) + 2
        if parts and length > MAX_REFUSAL:  # the servers named so far say enough; the others are counted
            parts.append(MORE_SERVERS.format(count=len(verdicts) - len(parts)))
            break
        parts.append(part)
    return NoCapableServer(NO_SERVER_CAN.format(workflow=workflow, servers=joined(parts, SERVERS)))
