"""Typed errors. Each carries a message that is safe to show to a member as is."""

from __future__ import annotations

from core.i18n import Text

UNREACHABLE = Text(
    "The ComfyUI server is not reachable right now, so nothing was generated. Please try again in a few minutes."
)
SERVER_ERROR = Text("The ComfyUI server answered with an error, so nothing was generated. Please try again later.")
INTERRUPTED = Text("The job was interrupted on the ComfyUI server before it finished.")
LOST = Text(
    "The ComfyUI server lost this job (it restarted or its queue was cleared) before it finished. Please try again."
)
LOST_TOO_OFTEN = Text(
    "The ComfyUI server went away {times} times while it ran this job (a restart or a crash), so the bot "
    "stopped there: a job that brings the server down would take the other jobs with it. If the server "
    "just had a bad moment, run the command again."
)
TIMED_OUT = Text("The job did not finish within {minutes} minute(s), so the bot stopped waiting for it.")
SERVER_WENT_DOWN = Text(
    "The ComfyUI server {server} went down with the job and no other server could take it "
    "within {minutes} minute(s), so the bot stopped waiting for it."
)
CANCELLED = Text("The job was cancelled.")
UNREADABLE = Text("The ComfyUI server {server} sent an answer the bot cannot read ({route}). Please try again later.")


class BotError(Exception):
    """An expected failure with a short message for the member and optional detail for the log."""

    def __init__(self, user_message: str, *, detail: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.detail = detail


class ConfigError(BotError):
    """One or more settings are missing or invalid; lists every problem at once."""

    def __init__(self, problems: list[str]) -> None:
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"The configuration has {len(problems)} problem(s):\n{lines}")
        self.problems = problems


class InvalidInput(BotError):
    """A value given by the member (or on the command line) is not acceptable."""


class WorkflowError(BotError):
    """A workflow or binding file cannot be used as it is."""


class ComfyUnreachable(BotError):
    """The ComfyUI server did not answer."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(UNREACHABLE, detail=f"{server}: {reason}")
        self.reason = reason


class ComfyServerError(BotError):
    """ComfyUI answered with something the bot cannot use (an HTTP error, a malformed body)."""

    def __init__(self, server: str, what: str) -> None:
        super().__init__(SERVER_ERROR, detail=f"{server}: {what}")
        self.reason = what


class PromptRejected(BotError):
    """ComfyUI refused the workflow at validation (400, or 200 carrying node_errors)."""


class ExecutionFailed(BotError):
    """A node raised while the workflow was running."""


class JobInterrupted(BotError):
    """The job was interrupted on the server before it finished."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(INTERRUPTED, detail=detail)


class JobLost(BotError):
    """The server no longer knows the job: it restarted or its queue was cleared."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(LOST, detail=detail)


class JobLostTooOften(JobLost):
    """The job was running each time its server went away, as often as the bot retries: it is not run again."""

    def __init__(self, times: int, detail: str | None = None) -> None:
        BotError.__init__(self, LOST_TOO_OFTEN.format(times=times), detail=detail)


class JobTimeout(BotError):
    """The job did not finish within the configured time."""

    def __init__(self, seconds: float, *, down_server: str | None = None) -> None:
        minutes = max(1, round(seconds / 60))
        message = TIMED_OUT.format(minutes=minutes)
        if down_server is not None:  # the job's server went down and no other could take it
            message = SERVER_WENT_DOWN.format(server=down_server, minutes=minutes)
        super().__init__(message, detail=f"timeout after {seconds:.0f}s")


class OutputTooLarge(BotError):
    """An output file is larger than the bot is willing to download."""


class JobCancelled(BotError):
    """The job was cancelled by its requester or an admin."""

    def __init__(self) -> None:
        super().__init__(CANCELLED)


class UnreadableAnswer(ComfyServerError):
    """ComfyUI answered 200 but in a shape the bot cannot use (a custom node, an unknown version, a proxy)."""

    def __init__(self, server: str, route: str, problem: str) -> None:
        super().__init__(server, f"{route}: unexpected answer: {problem}")
        self.user_message = UNREADABLE.format(server=server, route=route)
        self.args = (self.user_message,)
