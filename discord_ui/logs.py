"""Keep interaction and webhook tokens out of discord.py's log records, at every level."""

from __future__ import annotations

import logging
import re

import discord

REDACTED = "[token]"
_PATTERNS = (
    # URLs of interaction callbacks and webhooks: /interactions/<id>/<token>/..., /webhooks/<id>/<token>/...
    re.compile(r"(/(?:interactions|webhooks)/\d+/)[^/\s'\"?]+"),
    # gateway payloads logged as dicts or JSON: 'token': '...', "token":"..."
    re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+"""),
)


def redact(text: str) -> str:
    """`text` with every interaction or webhook token replaced by a marker."""
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


class TokenFilter(logging.Filter):
    """Rewrites a record's message with tokens redacted (it never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = TokenFilter()


def install_token_filter() -> None:
    """Attach the filter to every `discord.*` logger (a logger's filters do not apply to its children)."""
    # Importing discord created its module loggers; discord.__name__ is their common prefix.
    names = [n for n in logging.root.manager.loggerDict if n.startswith(f"{discord.__name__}.")]
    for name in ["discord", *names]:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
