"""How a community runs the bot, configured without code: one `community.toml` (COMMUNITY_FILE).

Each concern reads its own top-level table of that file in a module of its own here ([access], [quotas],
[safety]…); `read_community` only reads the file and says clearly what is wrong with it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from core.errors import ConfigError

DEFAULT_COMMUNITY_FILE = "community.toml"


def read_community(path: Path, *, required: bool = False) -> dict[str, Any]:
    """The tables of the community file at `path`; {} when it does not exist and was not asked for by name."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError([f"COMMUNITY_FILE points to {str(path)!r}, which does not exist."]) from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"COMMUNITY_FILE {str(path)!r} cannot be read: {exc}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path.name} is not valid TOML: {exc}"]) from None
