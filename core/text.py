"""Cap text from members, workflows and servers before it goes into a message; join lists in any language."""

from __future__ import annotations

from collections.abc import Sequence

from core.i18n import Text

ELLIPSIS = "…"
LIST = Text("{items}, {item}")  # the connective of a list; Japanese and Chinese write "、"


def cap(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def joined(items: Sequence[str], connective: Text = LIST) -> str:
    """`items` linked pair by pair with `connective` ("{items}, {item}"), so that each language has its own."""
    if not items:
        return ""
    result = items[0]
    for item in items[1:]:
        result = connective.format(items=result, item=item)
    return result
