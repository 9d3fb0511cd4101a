"""Cap text from members, workflows and servers before it goes into a message."""

from __future__ import annotations

ELLIPSIS = "…"


def cap(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
