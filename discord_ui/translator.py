"""The bot's commands in Japanese and Simplified Chinese, through discord.py's `app_commands.Translator`.

Discord shows a command's localized name and descriptions to members whose client uses that locale, and
still sends the English names in interactions, so nothing else in the bot depends on these texts.
"""

from __future__ import annotations

import discord
from discord import app_commands

from core.workflows.model import MAX_CHOICE, MAX_DESCRIPTION, MAX_NAME, Param, ParamType, Workflow, localized_in

# Keys: a command's qualified name ("access allow"), or "<qualified name>:<option name>" for an option.
# Values: (localized name, localized description).
Catalogue = dict[str, tuple[str, str]]

JA: Catalogue = {
    "queue": ("キュー", "待機中・実行中のあなたのジョブを表示（管理者は全員分）"),
    "cancel": ("キャンセル", "待機中または実行中のあなたの最新のジョブをキャンセル"),
    "reload": ("再読み込み", "ワークフローフォルダを読み直して確認し、コマンドを更新"),
    "workflows": ("ワークフロー", "ワークフローコマンドとそのオプションの一覧"),
    "servers": ("サーバー", "各ComfyUIサーバーの状態・負荷・実行できる内容を表示"),
    "access": ("アクセス", "どのコマンドを誰がどこで使えるかを表示・変更"),
    "access show": ("表示", "どのコマンドを誰がどこで使えるかを表示"),
    "access allow": ("許可", "コマンドをチャンネルやロールで使えるようにする"),
    "access allow:command": ("コマンド", "コマンド名、またはすべてのコマンドなら *"),
    "access allow:channel": ("チャンネル", "使える場所"),
    "access allow:role": ("ロール", "使える人"),
    "access deny": ("拒否", "コマンドの一覧からチャンネルやロールを外す"),
    "access deny:command": ("コマンド", "コマンド名、またはすべてのコマンドなら *"),
    "access deny:channel": ("チャンネル", "使えない場所"),
    "access deny:role": ("ロール", "使えない人"),
    "access reset": ("リセット", "/access で行ったコマンドの変更を元に戻す"),
    "access reset:command": ("コマンド", "コマンド名、またはすべてのコマンドなら *"),
    "access ban": ("禁止", "メンバー、またはロールを持つ全員がボットを使えないようにする"),
    "access ban:who": ("対象", "メンバーまたはロール"),
    "access unban": ("禁止解除", "禁止したメンバーやロールが再びボットを使えるようにする"),
    "access unban:who": ("対象", "メンバーまたはロール"),
    "help": ("ヘルプ", "ここで使えるコマンドの一覧、または1つのコマンドの詳細を表示"),
    "help:command": ("コマンド", "詳しく表示するコマンド（例つき）"),
    "preset": ("プリセット", "コマンドオプションのプリセットを保存・一覧・削除"),
    "preset save": ("保存", "最後のジョブ（または job: のジョブ）のオプションを名前をつけて保存"),
    "preset save:name": ("名前", "プリセットの名前。'default' は自動で適用されます"),
    "preset save:job": ("ジョブ", "/history に表示されるジョブID"),
    "preset list": ("一覧", "あなたのプリセットの一覧"),
    "preset delete": ("削除", "あなたのプリセットを1つ削除"),
    "preset delete:name": ("名前", "プリセットの名前"),
    "preset delete:command": ("コマンド", "同じ名前のプリセットが複数あるときの、そのコマンド"),
    "history": ("履歴", "最近のジョブを再実行・詳細つきで表示（管理者は誰の分でも）"),
    "history:member": ("メンバー", "誰のジョブを表示するか（管理者のみ）"),
    "quota": ("クォータ", "1日のクォータの使用量と残りを表示"),
    "quota:member": ("メンバー", "管理者のみ：誰のクォータを表示するか"),
}

ZH_CN: Catalogue = {
    "queue": ("队列", "显示你正在等待或运行的任务（管理员可见全部）"),
    "cancel": ("取消", "取消你最新的、仍在等待或运行的任务"),
    "reload": ("重新加载", "重新读取工作流文件夹，检查并更新命令"),
    "workflows": ("工作流", "列出工作流命令及其选项"),
    "servers": ("服务器", "显示每个 ComfyUI 服务器的状态、负载和可运行的内容"),
    "access": ("权限", "查看或更改谁可以在哪里使用哪些命令"),
    "access show": ("查看", "查看谁可以在哪里使用哪些命令"),
    "access allow": ("允许", "允许在某个频道和/或由某个身份组使用命令"),
    "access allow:command": ("命令", "命令名，或用 * 表示所有命令"),
    "access allow:channel": ("频道", "在哪里"),
    "access allow:role": ("身份组", "由谁"),
    "access deny": ("拒绝", "从命令的列表中移除频道和/或身份组"),
    "access deny:command": ("命令", "命令名，或用 * 表示所有命令"),
    "access deny:channel": ("频道", "不在哪里"),
    "access deny:role": ("身份组", "不由谁"),
    "access reset": ("重置", "撤销用 /access 对某个命令所做的更改"),
    "access reset:command": ("命令", "命令名，或用 * 表示所有命令"),
    "access ban": ("封禁", "禁止某个成员或拥有某身份组的所有人使用机器人"),
    "access ban:who": ("对象", "成员或身份组"),
    "access unban": ("解封", "允许被封禁的成员或身份组再次使用机器人"),
    "access unban:who": ("对象", "成员或身份组"),
    "help": ("帮助", "列出你在这里可以使用的命令，或完整显示某个命令"),
    "help:command": ("命令", "要完整显示的命令（附示例）"),
    "preset": ("预设", "保存、列出和删除你的命令选项预设"),
    "preset save": ("保存", "以一个名称保存你上一个任务（或 job: 指定的任务）的选项"),
    "preset save:name": ("名称", "预设名称；'default' 会自动应用"),
    "preset save:job": ("任务", "来自 /history 的任务 ID"),
    "preset list": ("列表", "列出你的预设"),
    "preset delete": ("删除", "删除你的一个预设"),
    "preset delete:name": ("名称", "预设的名称"),
    "preset delete:command": ("命令", "多个命令的预设同名时，指定其命令"),
    "history": ("历史", "显示你最近的任务，可重新运行和查看详情（管理员可看任何人的）"),
    "history:member": ("成员", "要显示谁的任务（仅管理员）"),
    "quota": ("配额", "显示你今日配额的已用量和剩余量"),
    "quota:member": ("成员", "仅管理员：要显示谁的配额"),
}

CATALOGUES: dict[discord.Locale, Catalogue] = {
    discord.Locale.japanese: JA,
    discord.Locale.chinese: ZH_CN,  # Discord's "zh-CN"
}

# The option cogs/generate.py adds to every workflow command whose binding has no option of that name.
PRESET_OPTION = "preset"
PRESET: dict[str, tuple[str, str]] = {
    "ja": ("プリセット", "保存したプリセット（/preset save）。指定したオプションはこちらより優先されます"),
    "zh-CN": ("预设", "你保存的预设（/preset save）；你给出的选项会覆盖其中的值"),
}
# The `<option>_file` option cogs/generate.py adds for a multi-line option, from that option's localized name.
TEXT_FILE: dict[str, tuple[str, str]] = {
    "ja": ("{name}ファイル", "{name}を書いた .txt ファイル（複数行のとき）"),
    "zh-CN": ("{name}文件", "写有{name}的 .txt 文件（用于多行文本）"),
}
# An option's default after its description, as cogs/generate.py shows it in English.
WITH_DEFAULT = {"ja": "{description}（既定値 {default}）", "zh-CN": "{description}（默认 {default}）"}

WORKFLOW = "workflow"  # a workflow command's extras key: its core.workflows.Workflow, whose binding localizes it
PARAM = "param"  # a workflow choice's locale_str extras key: its core.workflows.Param (see `workflow_choice`)

_NAMES = (
    app_commands.TranslationContextLocation.command_name,
    app_commands.TranslationContextLocation.group_name,
    app_commands.TranslationContextLocation.parameter_name,
)
_DESCRIPTIONS = (
    app_commands.TranslationContextLocation.command_description,
    app_commands.TranslationContextLocation.group_description,
    app_commands.TranslationContextLocation.parameter_description,
)


def catalogue_key(context: app_commands.TranslationContextTypes) -> str | None:
    """Name the catalogue entry of what discord.py asks to translate, or None for what has none."""
    data = context.data
    if isinstance(data, app_commands.Command | app_commands.Group):
        return data.qualified_name
    if isinstance(data, app_commands.Parameter):
        return f"{data.command.qualified_name}:{data.name}"
    return None  # choices and other strings keep their English text


def workflow_choice(param: Param, value: str) -> app_commands.Choice[str]:
    """One of a workflow option's fixed choices, carrying the option so that its label can be translated."""
    return app_commands.Choice(name=app_commands.locale_str(value[:MAX_CHOICE], **{PARAM: param}), value=value)


class CommandTranslator(app_commands.Translator):
    """Give the built-in commands in the locales of `CATALOGUES`, a workflow command as its binding says."""

    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        data = context.data
        if isinstance(data, app_commands.Choice):
            param = string.extras.get(PARAM)
            return param.choice_label(data.value, locale) if isinstance(param, Param) else None
        if isinstance(data, app_commands.Command) and WORKFLOW in data.extras:
            found = localized_in(data.extras[WORKFLOW].localized, locale)
            entry = (found.name, found.description) if found else None
        elif isinstance(data, app_commands.Parameter) and WORKFLOW in data.command.extras:
            entry = workflow_option(data.command.extras[WORKFLOW], data.display_name, str(locale))
        elif (catalogue := CATALOGUES.get(locale)) is not None and (key := catalogue_key(context)) is not None:
            entry = catalogue.get(key)
        else:
            entry = None
        if entry is None:
            return None
        if context.location in _NAMES:
            return entry[0]
        if context.location in _DESCRIPTIONS:
            return entry[1]
        return None


def workflow_option(workflow: Workflow, name: str, locale: str) -> tuple[str | None, str | None] | None:
    """A workflow command's option `name` in `locale` as (name, description), from its binding or built in."""
    if (param := workflow.param(name)) is not None:
        found = localized_in(param.localized, locale)
        if found is None:
            return None
        description = found.description
        if description and param.default is not None and param.type is not ParamType.MULTILINE:
            with_default = WITH_DEFAULT[locale].format(description=description, default=param.default)
            description = with_default if len(with_default) <= MAX_DESCRIPTION else description
        return found.name, description
    if name == PRESET_OPTION and locale in PRESET:
        shown, description = PRESET[locale]
        taken = any(p.name_for(locale) == shown for p in workflow.params)  # Discord refuses a command with both
        return (None if taken else shown), description
    text = workflow.param(name.removesuffix("_file")) if name.endswith("_file") else None
    if text is not None and text.type is ParamType.MULTILINE and locale in TEXT_FILE:
        found = localized_in(text.localized, locale)
        if found is None or found.name is None:
            return None  # "lyricsファイル" would read worse than lyrics_file
        shown, description = (template.format(name=found.name) for template in TEXT_FILE[locale])
        return (shown if len(shown) <= MAX_NAME else None), description
    return None
