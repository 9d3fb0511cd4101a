"""What the bot writes, in English, able to say itself again in Japanese or Simplified Chinese.

Every sentence the bot shows is a `Text`: the English text itself (a str, so logs, the command line and
tests read it as it is) that also remembers its template and values. A front that knows its reader's
language renders it once more with `localize`, just before sending. Sentences made of several are
`Lines`, which localize part by part; a name a binding gives per language is a `Variants`. Values from
members, workflows and servers stay as they are.

The translations are gettext catalogues, `locales/<locale>.po`, keyed by the English template, so that
translators can use the usual tools (Poedit, Weblate) and `python -m core.i18n` lists what is missing.
"""

from __future__ import annotations

import ast
import functools
import string
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]
LOCALES_DIR = ROOT / "locales"
LOCALES = ("ja", "zh-CN")  # Discord's locale codes; any other locale reads English
SOURCES = ("bot.py", "core", "cogs", "discord_ui")  # where the bot's sentences are written


class Text(str):
    """An English sentence that can be rendered again in another language (see `localize`)."""

    template: str
    values: Mapping[str, Any]

    def __new__(cls, template: str, **values: Any) -> Text:
        self = super().__new__(cls, template.format(**values) if values else template)
        self.template = template
        self.values = values
        return self

    def format(self, **values: Any) -> Text:  # type: ignore[override]  # keyword values only, kept for later
        return Text(self.template, **{**self.values, **values})

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (and copies) as what it is, not as a plain str
        return (_text, (self.template, dict(self.values)))


def _text(template: str, values: dict[str, Any]) -> Text:
    return Text(template, **values)


class Lines(str):
    """Sentences joined by `separator`, each localized on its own."""

    parts: tuple[str, ...]
    separator: str

    def __new__(cls, parts: Iterable[str], separator: str = "\n") -> Lines:
        kept = tuple(parts)
        self = super().__new__(cls, separator.join(kept))
        self.parts = kept
        self.separator = separator
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Lines, (self.parts, self.separator))


class Variants(str):
    """A name given per language by a binding (a workflow option's): English where it gives none."""

    names: Mapping[str, str]

    def __new__(cls, english: str, names: Mapping[str, str]) -> Variants:
        self = super().__new__(cls, english)
        self.names = names
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Variants, (str(self), dict(self.names)))


class Clause(str):
    """A sentence used inside another one: its final full stop dropped, in whichever language it is shown."""

    sentence: str

    def __new__(cls, sentence: str) -> Clause:
        self = super().__new__(cls, str(sentence).rstrip(FULL_STOPS))
        self.sentence = sentence
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Clause, (self.sentence,))


FULL_STOPS = ".。"


def language(locale: object) -> str | None:
    """The catalogue for a Discord locale ("ja", "zh-CN"), or None where the bot speaks English."""
    code = str(locale) if locale is not None else ""
    return code if code in LOCALES else None


def localize(text: str, locale: object) -> str:
    """`text` in the language of `locale`; English where there is no catalogue or no translation yet."""
    code = language(locale)
    if code is None or not isinstance(text, Text | Lines | Variants | Clause):
        return str(text)
    return _render(text, code, catalogue(code))


def _render(text: object, code: str, translations: Mapping[str, str]) -> Any:
    if isinstance(text, Text):
        template = translations.get(text.template) or text.template
        return template.format(**{name: _render(value, code, translations) for name, value in text.values.items()})
    if isinstance(text, Lines):
        return text.separator.join(_render(part, code, translations) for part in text.parts)
    if isinstance(text, Variants):
        return text.names.get(code) or str(text)
    if isinstance(text, Clause):
        return str(_render(text.sentence, code, translations)).rstrip(FULL_STOPS)
    return text


@functools.cache
def catalogue(code: str) -> Mapping[str, str]:
    """The translations of one locale, template -> translated template (read once)."""
    with (LOCALES_DIR / f"{code}.po").open("rb") as po:
        entries = read_po(po)
    return {
        message.id: message.string
        for message in entries
        if isinstance(message.id, str) and message.id and isinstance(message.string, str)
    }


@functools.cache
def templates(root: Path = ROOT) -> dict[str, str]:
    """Every `Text("...")` template written in the bot's sources, with where it is first written (read once)."""
    found: dict[str, str] = {}
    for source in SOURCES:
        path = root / source
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []:
            if file.name == "i18n.py" and file.parent.name == "core":
                continue  # Text's own machinery
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Text":
                    where = f"{file.relative_to(root)}:{node.lineno}"
                    first = node.args[0] if node.args else None
                    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                        raise ValueError(f"{where}: Text() takes a literal template, so that it can be translated")
                    found.setdefault(first.value, where)
    return found


def problems(code: str, root: Path = ROOT) -> list[str]:
    """What the catalogue of `code` lacks or has left over, and translations whose {values} differ."""
    written = templates(root)
    translations = catalogue(code)
    found = [f"{where}: no {code} translation of {template!r}" for template, where in written.items()
             if not translations.get(template)]  # fmt: skip
    found += [f"locales/{code}.po: {template!r} is no longer written anywhere" for template in translations
              if template not in written]  # fmt: skip
    entries = sum(line.startswith("msgid ") for line in (LOCALES_DIR / f"{code}.po").read_text("utf-8").splitlines())
    if entries - 1 != len(translations):  # the header is an entry too; Babel keeps one of two equal msgids
        found.append(f"locales/{code}.po: {entries - 1 - len(translations)} sentence(s) translated twice")
    for template, translated in translations.items():
        if translated and template in written and _fields(template) != _fields(translated):
            found.append(f"locales/{code}.po: the translation of {template!r} has other {{values}}: {translated!r}")
    return found


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def main() -> int:
    """`python -m core.i18n`: list every missing, stale or mismatched translation; exit 1 if there is one."""
    found = [problem for code in LOCALES for problem in problems(code)]
    print("\n".join(found) or f"Every sentence is translated into {', '.join(LOCALES)}.")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
