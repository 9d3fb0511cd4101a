"""The message catalogue: every sentence the bot writes exists in every language, with the same {values}."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import discord
import pytest

from core import i18n
from core.i18n import LOCALES, Clause, Lines, Text, localize


@pytest.mark.parametrize("code", LOCALES)
def test_every_sentence_is_translated_with_the_same_values(code: str) -> None:
    assert i18n.problems(code) == []


def test_the_catalogues_cover_the_sentences_of_every_front() -> None:
    written = i18n.templates()
    assert len(written) > 15
    assert "Submitting…" in written


def test_a_japanese_member_reads_japanese_and_values_stay_as_given() -> None:
    failed = Text("❌ {reason}").format(reason=Text("This command cannot be used here."))
    status = Lines((Text("**/{command}** for {mention}").format(command="image", mention="<@1>"), failed))

    assert status == "**/image** for <@1>\n❌ This command cannot be used here."  # English as it is
    assert localize(status, discord.Locale.japanese) == "**/image**（<@1> さん）\n❌ このコマンドはここでは使えません。"
    assert localize(status, "zh-CN") == "**/image**（<@1>）\n❌ 此命令不能在这里使用。"
    assert localize(status, discord.Locale.french) == status
    assert localize(status, None) == status


def test_text_a_member_wrote_is_never_looked_up_in_the_catalogue() -> None:
    # A member's prompt that happens to be an English sentence of the bot stays the member's words.
    said = Text("❌ {reason}").format(reason="Deleted.")
    assert localize(said, "ja") == "❌ Deleted."
    assert localize("Deleted.", "ja") == "Deleted."
    assert localize(Text("Deleted."), "ja") == "削除しました。"


def test_numbers_keep_their_format() -> None:
    text = Text("…and {count} more file(s) not downloaded.").format(count=3)
    assert localize(text, "ja") == "…ほか 3 個のファイルはダウンロードしていません。"


def test_a_sentence_survives_pickling_and_copying() -> None:
    text = Text("❌ {reason}").format(reason=Text("Deleted."))
    for again in (pickle.loads(pickle.dumps(text)), copy.deepcopy(text), copy.copy(text)):
        assert isinstance(again, Text)
        assert localize(again, "ja") == "❌ 削除しました。"
    lines = Lines((Text("Deleted."), "x"), " · ")
    assert localize(pickle.loads(pickle.dumps(lines)), "zh-CN") == "已删除。 · x"


def test_a_template_must_be_written_out_to_be_translated(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "bad.py").write_text('from core.i18n import Text\nWHAT = Text(f"{1} thing")\n')
    with pytest.raises(ValueError, match=r"core/bad.py:2: Text\(\) takes a literal template"):
        i18n.templates(tmp_path)


def test_a_sentence_inside_another_loses_its_full_stop_in_every_language() -> None:
    inner = Clause(Text("This command cannot be used here."))
    assert inner == "This command cannot be used here"
    assert localize(Text("❌ {reason}").format(reason=inner), "ja") == "❌ このコマンドはここでは使えません"
    assert localize(pickle.loads(pickle.dumps(inner)), "zh-CN") == "此命令不能在这里使用"
