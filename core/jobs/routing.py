"""Which servers can run which workflow, and the answer when none connected can."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import BotError
from core.text import cap

MAX_REASON = 300  # one server's reason in a refusal; a message holds several
MAX_REFUSAL = 1800  # under Discord's 2000 characters, with room for the front's framing


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
            return "down"
        if not self.known:
            return "did not answer /object_info"
        if self.reason is None:
            return "OK"
        more = f" (and {self.more} more problem(s))" if self.more else ""
        return cap(f"lacks: {self.reason.rstrip('.')}", MAX_REASON) + more


def verdict(server: str, problems: Sequence[str] | None, *, connected: bool = True) -> Verdict:
    """Sum a server's problems with a workflow up (None: its /object_info is not known)."""
    if problems is None:
        return Verdict(server, "its /object_info could not be read", connected, known=False)
    if not problems:
        return Verdict(server, None, connected)
    return Verdict(server, problems[0], connected, len(problems) - 1)


def refusal(workflow: str, verdicts: Sequence[Verdict]) -> NoCapableServer:
    """The error for a command no connected server can run, naming each server's reason."""
    parts = [f"{v.server} {'is down' if not v.connected else v.describe()}" for v in verdicts]
    text = f"No connected ComfyUI server can run /{workflow} right now: {'; '.join(parts)}."
    return NoCapableServer(cap(text, MAX_REFUSAL))
