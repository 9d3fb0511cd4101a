"""How a community runs the bot, configured without code: one `community.toml` (COMMUNITY_FILE).

Each concern reads its own top-level table of that file in a module of its own here ([access], [quotas],
[safety]…); `read_community` only reads the file and says clearly what is wrong with it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.community.access import AccessRules, access_rules
from core.community.quotas import QuotaRules, quota_rules
from core.community.safety import ImageScreen, Safety, load_image_screen, parse_safety
from core.errors import ConfigError

T = TypeVar("T")

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


@dataclass(frozen=True, slots=True)
class Community:
    """Every table of the community file, read and checked."""

    access: AccessRules
    quotas: QuotaRules
    safety: Safety
    image_screen: ImageScreen | None  # None when images are not checked


def load_community(path: Path, *, required: bool = False) -> Community:
    """Read the community file and each of its tables; one ConfigError lists the problems of all of them."""
    tables = read_community(path, required=required)
    problems: list[str] = []

    def part(parse: Callable[[Mapping[str, Any]], T]) -> T | None:
        try:
            return parse(tables)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None

    access = part(access_rules)
    quotas = part(lambda t: quota_rules(t, path.name))
    safety = part(parse_safety)
    screen = part(lambda _: load_image_screen(safety)) if safety is not None else None
    if problems or access is None or quotas is None or safety is None:
        raise ConfigError(problems)
    return Community(access, quotas, safety, screen)
