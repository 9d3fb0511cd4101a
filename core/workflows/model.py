"""A workflow bound to a command: its API-format graph and the parameters members can set."""

from __future__ import annotations

import enum
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from core.comfyui.node_errors import list_options
from core.comfyui.object_info import match_option, quoted
from core.comfyui.types import Prompt
from core.community.access import CommandRule
from core.errors import InvalidInput
from core.i18n import Text, Variants, language

# Discord's rules for command and option names, descriptions and counts.
MAX_NAME = 32
NAME_RE = re.compile(rf"^[-_\w]{{1,{MAX_NAME}}}$")
MAX_DESCRIPTION = 100
MAX_OPTIONS = 25
MAX_CHOICE = 100  # Discord's cap for a choice's name and value
# The bot's own commands: a workflow may not take their names (it would replace them)
BUILT_IN_COMMANDS = frozenset(
    {"queue", "cancel", "reload", "workflows", "servers", "access", "help", "history", "preset", "quota"}
)
MAX_TEXT_LENGTH = 6000  # Discord's cap for a string option
# Discord integer options are limited to ±2^53; seeds stay inside so a member can type one back in.
MAX_SEED = 2**53 - 1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
MAX_UPLOAD_BYTES = 50 * 2**20  # ComfyUI accepts 100 MB bodies by default; Discord attachments are smaller anyway

# What a member reads when a value is refused; {option} is the option's name, {value} the value as given.
EMPTY = Text("{option} must not be empty.")
TOO_LONG = Text("{option} is too long ({length} characters; the limit is {limit}).")
NOT_BOOL = Text("{option} must be true or false (got {value}).")
NOT_A_CHOICE = Text("{option} must be one of: {choices} (got {value}).")
NOT_A_FILE = Text("{option} must be an attached file.")
FILE_TOO_LARGE = Text("{option} is larger than {megabytes} MB.")
NOT_WHOLE = Text("{option} must be a whole number (got {value}).")
NOT_NUMBER = Text("{option} must be a number (got {value}).")
OUT_OF_RANGE = Text("{option} must be between {low} and {high} (got {value}).")
NOT_A_MULTIPLE = Text("{option} must be a multiple of {step} (got {value}).")
NOT_OFFERED = Text("{option}: {value} is not available on the server. It has: {options}.")
NOT_TEXT = Text("{option} contains characters that are not text (is the file or terminal UTF-8?).")
NO_SUCH_OPTION = Text("{command} has no option {option}. Its options are: {options}.")
REQUIRED = Text("{option} is required.")
NONE = Text("none")
ANY = Text("any")
HUGE = Text("a huge number")
HUGE_NEGATIVE = Text("a huge negative number")


class ParamType(enum.StrEnum):
    TEXT = "text"
    MULTILINE = "multiline"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    SEED = "seed"
    CHOICE = "choice"
    IMAGE = "image"  # an attachment, uploaded to the server that runs the job
    AUDIO = "audio"
    VIDEO = "video"


# Options that take an attached file; each is uploaded with POST /upload/image, which stores any file type.
FILE_TYPES = frozenset({ParamType.IMAGE, ParamType.AUDIO, ParamType.VIDEO})
EXTENSIONS = {ParamType.IMAGE: IMAGE_EXTENSIONS, ParamType.AUDIO: AUDIO_EXTENSIONS, ParamType.VIDEO: VIDEO_EXTENSIONS}
WRONG_KIND = {
    ParamType.IMAGE: Text("{option} must be an image file ({extensions}); got {file}."),
    ParamType.AUDIO: Text("{option} must be an audio file ({extensions}); got {file}."),
    ParamType.VIDEO: Text("{option} must be a video file ({extensions}); got {file}."),
}


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file a member attached for an image/audio/video parameter, before it is uploaded to ComfyUI."""

    filename: str
    data: bytes = field(repr=False)  # megabytes: never in a log line or a test report

    def __str__(self) -> str:
        return self.filename


@dataclass(frozen=True, slots=True)
class Target:
    """One node input a parameter writes to."""

    node_id: str
    input: str

    def __str__(self) -> str:
        return f"{self.node_id}.{self.input}"


@dataclass(frozen=True, slots=True)
class Localized:
    """A command's or option's name and/or description in one of core.i18n.LOCALES, from its binding.

    `choices` are an option's choice labels in that locale, in the order of the option's own `choices`.
    """

    locale: str
    name: str | None
    description: str | None
    choices: tuple[str, ...] = ()


def localized_in(entries: tuple[Localized, ...], locale: object) -> Localized | None:
    """The entry for a Discord locale (a str or a discord.Locale), or None where the binding gives none."""
    code = language(locale)
    return next((entry for entry in entries if entry.locale == code), None)


@dataclass(frozen=True, slots=True)
class Param:
    """A command option and the node inputs it fills."""

    name: str
    type: ParamType
    description: str
    targets: tuple[Target, ...]
    required: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()  # fixed choices for a CHOICE parameter
    choices_from: str | None = None  # "Class.input": the server's list for that input (e.g. checkpoints)
    localized: tuple[Localized, ...] = ()  # name_ja, description_zh-CN, choices_ja, ... of its [params.NAME] table

    def name_for(self, locale: object) -> str:
        """The option's name as members with this Discord locale see it (English where none is given)."""
        entry = localized_in(self.localized, locale)
        return entry.name if entry and entry.name else self.name

    def description_for(self, locale: object) -> str:
        """The option's description in this Discord locale (English where none is given)."""
        entry = localized_in(self.localized, locale)
        return entry.description if entry and entry.description else self.description

    def choice_label(self, value: str, locale: object) -> str | None:
        """The label of one of `choices` in this Discord locale, or None where none is given."""
        entry = localized_in(self.localized, locale)
        if entry is None or not entry.choices:
            return None
        return dict(zip(self.choices, entry.choices, strict=True)).get(value)

    def coerce(self, raw: Any) -> Any:
        """Check and convert one value given by a member or on the command line."""
        if self.type in (ParamType.TEXT, ParamType.MULTILINE):
            text = _text(self.name, raw).strip()
            if not text:
                raise InvalidInput(EMPTY.format(option=self.name))
            if self.max_length is not None and len(text) > self.max_length:
                raise InvalidInput(TOO_LONG.format(option=self.name, length=len(text), limit=self.max_length))
            return text
        if self.type is ParamType.BOOL:
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise InvalidInput(NOT_BOOL.format(option=self.name, value=quoted(raw)))
        if self.type is ParamType.CHOICE:
            value = _text(self.name, raw).strip()
            if self.choices and value not in self.choices:
                raise InvalidInput(
                    NOT_A_CHOICE.format(option=self.name, choices=", ".join(self.choices), value=quoted(value))
                )
            if not value:
                raise InvalidInput(EMPTY.format(option=self.name))
            return value
        if self.type in FILE_TYPES:
            return self._coerce_file(raw)
        return self._coerce_number(raw)

    def _coerce_file(self, raw: Any) -> InputFile:
        # Only an attached file: when none is given, the workflow's own input file is used as exported.
        if not isinstance(raw, InputFile):
            raise InvalidInput(NOT_A_FILE.format(option=self.name))
        extensions = EXTENSIONS[self.type]
        if PurePosixPath(raw.filename).suffix.lower() not in extensions:
            kinds = ", ".join(e.lstrip(".") for e in extensions)
            wrong = WRONG_KIND[self.type].format(option=self.name, extensions=kinds, file=quoted(raw.filename))
            raise InvalidInput(wrong)
        if len(raw.data) > MAX_UPLOAD_BYTES:
            raise InvalidInput(FILE_TOO_LARGE.format(option=self.name, megabytes=MAX_UPLOAD_BYTES // 2**20))
        return raw

    def _coerce_number(self, raw: Any) -> int | float:
        whole = self.type in (ParamType.INT, ParamType.SEED)
        try:
            if isinstance(raw, bool):
                raise ValueError
            value: int | float = int(raw) if whole else float(raw)
            if (whole and isinstance(raw, float) and raw != int(raw)) or not math.isfinite(value):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise InvalidInput(
                (NOT_WHOLE if whole else NOT_NUMBER).format(option=self.name, value=quoted(raw))
            ) from None
        low = 0 if self.type is ParamType.SEED else self.min
        high = MAX_SEED if self.type is ParamType.SEED else self.max
        if (low is not None and value < low) or (high is not None and value > high):
            shown = {"low": num_text(low), "high": num_text(high), "value": num_text(value)}
            raise InvalidInput(OUT_OF_RANGE.format(option=self.name, **shown))
        if self.step and whole and (value - int(low or 0)) % int(self.step):
            raise InvalidInput(NOT_A_MULTIPLE.format(option=self.name, step=num_text(self.step), value=num_text(value)))
        return value

    def offered_value(self, value: Any, offered: list[str]) -> str:
        """The server's own spelling of a `choices_from` value; InvalidInput naming what it has otherwise."""
        found = match_option(value, offered)
        if found is None:
            has = list_options(offered) or NONE
            raise InvalidInput(NOT_OFFERED.format(option=self.name, value=quoted(value), options=has))
        return found


def _text(name: str, raw: Any) -> str:
    text = str(raw)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. undecodable bytes of a command-line argument
        raise InvalidInput(NOT_TEXT.format(option=name)) from None
    return text


def num_text(value: float | None, unset: str = ANY) -> str:
    """Show a bound or a value in a message: whole numbers without ".0", huge ones in words."""
    if value is None:
        return unset
    if abs(value) >= 10**30:  # never through str() or float(): a huge whole number raises in both
        return HUGE if value > 0 else HUGE_NEGATIVE
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


@dataclass(frozen=True, slots=True)
class Followups:
    """The binding's [followups]: what the buttons under a result of this command may run."""

    upscale: str | None = None  # a command with an image option, run on the chosen output image
    variation: bool = False  # this command again with a new seed (the chosen image as its image option, if any)
    extend: str | None = None  # a command with an audio option, run on the chosen output audio

    def __bool__(self) -> bool:
        return bool(self.upscale or self.variation or self.extend)


@dataclass(frozen=True, slots=True)
class Workflow:
    """A command: name, description, the API-format graph and its parameters (required first)."""

    name: str
    description: str
    graph: Prompt
    params: tuple[Param, ...]
    source: Path  # the API-format graph
    binding: Path | None = None  # the TOML binding; None when the options were detected automatically
    access: CommandRule | None = None  # the binding's [access] table: where and by whom it may be used
    nsfw: bool = False  # age-restricted: registered so on Discord and refused outside age-restricted channels
    localized: tuple[Localized, ...] = ()  # name_ja, description_zh-CN, ... of the [command] table
    raw_inputs: tuple[Target, ...] = ()  # the binding's [api] raw_inputs: node inputs the HTTP API may set as is
    previews: bool = True  # [command] previews: show the server's preview images while the job runs
    followups: Followups = field(default_factory=Followups)  # the binding's [followups]

    def file_param(self, kind: ParamType) -> Param | None:
        """The first option taking a file of `kind` (image, audio, video), where a follow-up puts its file."""
        return next((p for p in self.params if p.type is kind), None)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def option_label(self, name: str) -> str:
        """An option's name as each member's Discord shows it (a Variants), or `name` for one it does not have."""
        param = self.param(name)
        if param is None:
            return name
        return Variants(name, {entry.locale: entry.name for entry in param.localized if entry.name})

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Validate the given values, fill defaults and draw random seeds; every param gets a value."""
        unknown = sorted(set(given) - {p.name for p in self.params})
        if unknown:
            names = ", ".join(p.name for p in self.params)
            raise InvalidInput(NO_SUCH_OPTION.format(command=self.name, option=repr(unknown[0]), options=names))
        values: dict[str, Any] = {}
        for param in self.params:
            raw = given.get(param.name)
            if raw is None:
                if param.required:
                    raise InvalidInput(REQUIRED.format(option=param.name))
                if param.type is ParamType.SEED and param.default is None:
                    values[param.name] = random.randint(0, MAX_SEED)
                    continue
                if param.default is None:  # the exported workflow's own value, as the admin saved it
                    values[param.name] = self.current_value(param)
                    continue
                raw = param.default
            values[param.name] = param.coerce(raw)
        return values

    def current_value(self, param: Param) -> Any:
        """The value the exported workflow itself has at the parameter's first target."""
        target = param.targets[0]
        return self.graph[target.node_id]["inputs"].get(target.input)

    def render(self, values: Mapping[str, Any]) -> Prompt:
        """A deep copy of the graph with each value set on its target inputs, by key."""
        prompt = _copied(self.graph)
        for param in self.params:
            if param.name in values:
                for target in param.targets:
                    prompt[target.node_id]["inputs"][target.input] = values[param.name]
        return prompt


def _copied(value: Any) -> Any:
    """A copy of a JSON tree (dicts, lists, scalars): three times as fast as copy.deepcopy, once per job."""
    if type(value) is dict:
        return {key: _copied(item) for key, item in value.items()}
    if type(value) is list:
        return [_copied(item) for item in value]
    return value
