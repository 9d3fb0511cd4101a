"""NSFW safety: age-restricted commands, a prompt blocklist, and an optional check of image outputs.

The `[safety]` table of community.toml:

    blocklist = ["word", ...]            # refused in any text option, case-insensitively
    blocklist_regex = ["pattern", ...]   # Python regular expressions, case-insensitive
    image_check = "nudenet"              # off when absent
    threshold = 0.6                      # a score at or above this flags an image
    action = "spoiler"                   # or "withhold"
    [safety.guilds.123456789012345678]   # more words and patterns for one server
    blocklist = [...]
    blocklist_regex = [...]
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import logging
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core.errors import ConfigError, InvalidInput
from core.i18n import Text
from core.text import cap

log = logging.getLogger(__name__)

TABLE = "safety"
HERE = f"community.toml [{TABLE}]"
DEFAULT_THRESHOLD = 0.6
MAX_SHOWN_WORD = 40  # a matched word as quoted back to the member
NUDENET_INSTALL = "pip install nudenet"

# What members are told
AGE_RESTRICTED_IN_DM = Text(
    "/{command} is age-restricted: it can be used only in a server channel marked age-restricted, "
    "not in direct messages."
)
AGE_RESTRICTED_CHANNEL = Text(
    "/{command} is age-restricted: it can be used only in channels marked age-restricted (and their threads); "
    "this channel is not one."
)
BLOCKED_WORD = Text('{option} contains "{word}", a word this server does not allow; change it and try again.')
BLOCKED_PATTERN = Text(
    "{option} contains wording this server does not allow (a blocked pattern); change it and try again."
)
WITHHELD = Text("{filename} was withheld: the image check flagged it as possibly adult content.")
SPOILERED = Text("{filename} is hidden behind a spoiler: the image check flagged it as possibly adult content.")

# nudenet's classes that count as adult content (covered parts, faces, feet... do not).
NUDENET_EXPOSED = frozenset(
    {
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)


class ImageAction(enum.StrEnum):
    SPOILER = "spoiler"
    WITHHOLD = "withhold"


class ImageCheck(Protocol):
    """A classifier of images: 0.0 (nothing adult seen) to 1.0 (certain)."""

    async def score(self, data: bytes) -> float: ...


@dataclass(frozen=True, slots=True)
class Blocklist:
    """Words and patterns refused in members' text (words normalized, patterns compiled)."""

    words: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    words_re: re.Pattern[str] | None = field(init=False, default=None, repr=False, compare=False)  # all words

    def __post_init__(self) -> None:
        if self.words:
            object.__setattr__(self, "words_re", re.compile("|".join(_word_pattern(w) for w in self.words)))

    def __add__(self, other: Blocklist) -> Blocklist:
        return Blocklist(self.words + other.words, self.patterns + other.patterns)

    def refusal(self, option: str, text: str) -> str | None:
        """What the member is told when `text` (the option `option`) hits a rule; None when it is clean."""
        seen = normalized(text)
        if self.words_re is not None and (found := self.words_re.search(seen)):
            return BLOCKED_WORD.format(option=option, word=cap(found.group(), MAX_SHOWN_WORD))
        if any(p.search(seen) for p in self.patterns):
            return BLOCKED_PATTERN.format(option=option)  # never the pattern itself: it may be an admin's secret
        return None


@dataclass(frozen=True, slots=True)
class Safety:
    """The `[safety]` table: the blocklists and how image outputs are checked."""

    blocklist: Blocklist = field(default_factory=Blocklist)
    guilds: Mapping[int, Blocklist] = field(default_factory=dict)  # server id -> its own rules plus the common ones
    image_check: str | None = None  # the classifier's name; None: images are not checked
    threshold: float = DEFAULT_THRESHOLD
    action: ImageAction = ImageAction.SPOILER

    def check_channel(self, command: str, *, nsfw: bool, in_dm: bool, age_restricted: bool) -> None:
        """Refuse an age-restricted command outside age-restricted channels (DMs included)."""
        if not nsfw or age_restricted:
            return
        raise InvalidInput((AGE_RESTRICTED_IN_DM if in_dm else AGE_RESTRICTED_CHANNEL).format(command=command))

    def check_text(self, guild_id: int | None, texts: Iterable[tuple[str, str]]) -> None:
        """Refuse the first (option, text) pair that hits this server's blocklist."""
        rules = self.guilds.get(guild_id, self.blocklist) if guild_id is not None else self.blocklist
        for option, text in texts:
            if (refusal := rules.refusal(option, text)) is not None:
                raise InvalidInput(refusal)


def normalized(text: str) -> str:
    """Text as the blocklist sees it: compatibility forms folded (ｆｕｌｌ → full), case folded, and
    invisible format characters (zero-width spaces and joiners) removed so they cannot split a word."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in folded if unicodedata.category(c) != "Cf")


def _spaced(char: str) -> bool:
    """Whether `char` is a letter or digit of a script that separates words with spaces (not CJK or kana)."""
    return char.isalnum() and unicodedata.east_asian_width(char) not in ("W", "F")


def _word_pattern(word: str) -> str:
    """A whole-word match where the script has word boundaries ("ass" does not hit "class"); a plain
    substring match at an edge written in CJK, kana or hangul, which have none."""
    before = r"(?<!\w)" if _spaced(word[0]) else ""
    after = r"(?!\w)" if _spaced(word[-1]) else ""
    return before + re.escape(word) + after


def parse_safety(tables: Mapping[str, Any]) -> Safety:
    """The `[safety]` table of community.toml as rules; ConfigError lists every problem found."""
    raw = tables.get(TABLE)
    if raw is None:
        return Safety()
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError([f"community.toml [{TABLE}] must be a table."])
    _unknown(raw, {"blocklist", "blocklist_regex", "image_check", "threshold", "action", "guilds"}, HERE, problems)
    blocklist = _blocklist(raw, HERE, problems)
    guilds: dict[int, Blocklist] = {}
    raw_guilds = raw.get("guilds", {})
    if not isinstance(raw_guilds, dict):
        problems.append(f"{HERE} guilds must be a table of [safety.guilds.<server id>] tables.")
        raw_guilds = {}
    for key, table in raw_guilds.items():
        here = f"community.toml [{TABLE}.guilds.{key}]"
        if not re.fullmatch(r"[0-9]{17,20}", key):
            problems.append(f"{here}: {key!r} is not a server id (17-20 digits).")
        elif not isinstance(table, dict):
            problems.append(f"{here} must be a table.")
        else:
            _unknown(table, {"blocklist", "blocklist_regex"}, here, problems)
            guilds[int(key)] = blocklist + _blocklist(table, here, problems)
    image_check = raw.get("image_check")
    if image_check is not None and image_check not in IMAGE_CHECKS:
        problems.append(f"{HERE} image_check must be one of: {', '.join(IMAGE_CHECKS)} (got {image_check!r}).")
    threshold = raw.get("threshold", DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        problems.append(f"{HERE} threshold must be a number above 0 and at most 1 (got {threshold!r}).")
        threshold = DEFAULT_THRESHOLD
    action = raw.get("action", ImageAction.SPOILER.value)
    if action not in set(ImageAction):
        problems.append(f'{HERE} action must be "spoiler" or "withhold" (got {action!r}).')
        action = ImageAction.SPOILER.value
    if problems:
        raise ConfigError(problems)
    return Safety(blocklist, guilds, image_check, float(threshold), ImageAction(action))


def _unknown(table: Mapping[str, Any], known: set[str], here: str, problems: list[str]) -> None:
    names = ", ".join(sorted(known))
    problems += [f"{here} has no setting {key!r}; known: {names}." for key in table if key not in known]


def _blocklist(table: Mapping[str, Any], here: str, problems: list[str]) -> Blocklist:
    words = _strings(table, "blocklist", here, problems)
    patterns = []
    for index, pattern in enumerate(_strings(table, "blocklist_regex", here, problems)):
        try:
            patterns.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:  # the admin's own file: naming the pattern here is what they need
            problems.append(f"{here} blocklist_regex[{index}] {pattern!r} is not a valid regular expression: {exc}.")
    return Blocklist(tuple(normalized(w) for w in words), tuple(patterns))


def _strings(table: Mapping[str, Any], key: str, here: str, problems: list[str]) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append(f'{here} {key} must be a list of non-empty strings, like ["word", "other"].')
        return []
    return [v.strip() for v in value]


# Image checks


class NudeNetCheck:
    """nudenet's detector (an ONNX model shipped in its wheel): the highest score of an exposed part."""

    def __init__(self, detector: Any) -> None:
        self._detector = detector
        self._lock = asyncio.Lock()  # one inference at a time: it takes a CPU core while it runs

    async def score(self, data: bytes) -> float:
        async with self._lock:
            return await asyncio.to_thread(self._score, data)

    def _score(self, data: bytes) -> float:
        # Given a file's path nudenet reads any image format, in every version of its API.
        with tempfile.TemporaryDirectory(prefix="nsfw-check-") as folder:
            path = Path(folder) / "image"
            path.write_bytes(data)
            detections = self._detector.detect(str(path))
        return max((float(d["score"]) for d in detections if d.get("class") in NUDENET_EXPOSED), default=0.0)


def _nudenet() -> ImageCheck:
    try:
        module = importlib.import_module("nudenet")
    except ImportError:
        raise ConfigError(
            [f'{HERE} image_check = "nudenet" needs the nudenet package: {NUDENET_INSTALL} (in the bot\'s virtualenv).']
        ) from None
    return NudeNetCheck(module.NudeDetector())


IMAGE_CHECKS = {"nudenet": _nudenet}


@dataclass(frozen=True, slots=True)
class ImageScreen:
    """An image check with what to do about a flagged image."""

    check: ImageCheck
    threshold: float = DEFAULT_THRESHOLD
    action: ImageAction = ImageAction.SPOILER

    async def flagged(self, filename: str, data: bytes) -> bool:
        """Say whether the image scores at or above the threshold; a check that fails counts as flagged."""
        try:
            score = await self.check.score(data)
        except Exception:  # a broken image or classifier must not let an image through unchecked
            log.warning("the image check failed on %s; treating it as flagged", filename, exc_info=True)
            return True
        log.debug("image check: %s scored %.3f", filename, score)
        return score >= self.threshold


def load_image_screen(safety: Safety) -> ImageScreen | None:
    """The configured image check, its package imported only now that it is asked for; None when it is off."""
    if safety.image_check is None:
        return None
    check = IMAGE_CHECKS[safety.image_check]()
    log.info("image check %s on: %s at %.2f and above", safety.image_check, safety.action.value, safety.threshold)
    return ImageScreen(check, safety.threshold, safety.action)
