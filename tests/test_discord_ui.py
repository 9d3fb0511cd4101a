"""discord_ui without Discord: the status scheduler's pacing, batching by bytes, caps and token redaction."""

from __future__ import annotations

import ast
import asyncio
import gc
import itertools
import logging
import math
import re
import weakref
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from cogs.access import NotAdmin
from core.jobs.engine import OutputFile
from discord_ui.delivery import REQUEST_LIMIT, as_files, batches
from discord_ui.errors import report_error
from discord_ui.logs import install_token_filter, redact
from discord_ui.messages import cap, mentions, shown
from discord_ui.status import EDITS_PER_TURN, Edit, JobMessage, StatusScheduler
from tests.conftest import ROOT


class VirtualTime:
    """A clock the test moves forward; sleepers wake when it passes their deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.timers.append((self.now + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, future in list(self.timers):
            if deadline <= self.now and not future.done():
                future.set_result(None)
        self.timers = [(d, f) for d, f in self.timers if not f.done()]
        for _ in range(20):  # let the scheduler, the edits it started and its next nap run
            await asyncio.sleep(0)


async def simulate_queue(jobs: int, *, interval: float, queue_rate: float, period: float) -> dict[str, list[float]]:
    """`jobs` wait in line; every `period` s the first one starts and all others move up one place.

    Returns the times of every edit of each job's status message.
    """
    time = VirtualTime()
    scheduler = StatusScheduler(interval, queue_rate, clock=time.clock, sleep=time.sleep)
    edits: dict[str, list[float]] = defaultdict(list)

    def editor(key: str):
        async def edit(text: str) -> None:
            edits[key].append(time.now)

        return edit

    line = [f"job{i}" for i in range(jobs)]
    for place, key in enumerate(line, start=1):
        scheduler.show(key, f"position {place}", editor(key), queued=True)
    running: str | None = None
    while line:
        await time.advance(period)
        if running is not None:
            await scheduler.drop(running)
        running = line.pop(0)
        scheduler.show(running, "Running…", editor(running))
        for place, key in enumerate(line, start=1):
            scheduler.show(key, f"position {place}", editor(key), queued=True)
    await scheduler.close()
    return edits


@pytest.mark.abuse
async def test_queue_position_edits_per_job_do_not_grow_with_the_queue() -> None:
    # Issue 11 measured 27-30 edits per job with 1,000 queued when each job was only paced on its own.
    alone = await simulate_queue(1000, interval=2.0, queue_rate=math.inf, period=0.06)
    shared = await simulate_queue(1000, interval=2.0, queue_rate=2.0, period=0.06)
    small = await simulate_queue(100, interval=2.0, queue_rate=2.0, period=0.06)

    most_alone = max(len(t) for t in alone.values())
    most = max(len(t) for t in shared.values())
    mean, mean_small = (sum(len(t) for t in e.values()) / len(e) for e in (shared, small))
    print(f"edits per job with 1,000 queued: paced per job {most_alone} max; scheduler {most} max, {mean:.2f} mean")
    assert most_alone >= 25  # the old behaviour, reproduced
    assert most <= 3
    assert mean <= mean_small + 0.5  # ten times the queue, not more edits per job
    for times in shared.values():  # and never two edits of one message within the interval
        assert all(b - a >= 2.0 for a, b in itertools.pairwise(times))


async def test_the_newest_state_wins_and_a_dropped_status_is_never_edited() -> None:
    scheduler = StatusScheduler(interval=0.05, first_delay=0.0)
    shown_texts: list[str] = []

    async def edit(text: str) -> None:
        shown_texts.append(text)

    for text in ("a", "b", "c"):
        scheduler.show("job", text, edit)
    await asyncio.sleep(0.01)
    for text in ("d", "e"):
        scheduler.show("job", text, edit)
    await asyncio.sleep(0.1)
    scheduler.show("job", "f", edit)
    await scheduler.drop("job")
    await asyncio.sleep(0.1)
    await scheduler.close()
    assert shown_texts == ["c", "e"]


async def test_edits_falling_due_together_start_a_few_per_loop_turn_and_all_go_out() -> None:
    scheduler = StatusScheduler(first_delay=0.0)
    turn = 0
    started: dict[str, int] = {}

    async def ticker() -> None:
        nonlocal turn
        while True:
            await asyncio.sleep(0)
            turn += 1

    def editing(key: str) -> Edit:
        async def edit(text: str, preview: bytes | None = None) -> None:
            started[key] = turn

        return edit

    tick = asyncio.create_task(ticker())
    jobs = 5 * EDITS_PER_TURN
    for i in range(jobs):
        scheduler.show(f"job{i}", "Running", editing(f"job{i}"))
    await asyncio.sleep(0.1)
    tick.cancel()
    await scheduler.close()

    assert len(started) == jobs  # every message edited, none held back for longer than a few turns
    per_turn = {t: list(started.values()).count(t) for t in started.values()}
    assert max(per_turn.values()) == EDITS_PER_TURN
    assert [started[f"job{i}"] for i in range(jobs)] == sorted(started.values())  # in the order they came


def recording_scheduler(**options: Any) -> tuple[StatusScheduler, VirtualTime, Edit, list[tuple[float, str]]]:
    """A scheduler on virtual time, an edit function, and the (time, text) of every edit made through it."""
    time = VirtualTime()
    scheduler = StatusScheduler(clock=time.clock, sleep=time.sleep, **options)
    edits: list[tuple[float, str]] = []

    async def edit(text: str) -> None:
        edits.append((time.now, text))

    return scheduler, time, edit, edits


# Times below are sums of binary fractions, so the virtual clock reaches each deadline exactly.


@pytest.mark.parametrize("queued", [False, True])
async def test_a_status_replaced_within_the_first_delay_is_never_edited(queued: bool) -> None:
    scheduler, time, edit, edits = recording_scheduler(interval=2.0, first_delay=1.0)
    scheduler.show("job", "Submitting…", edit)
    await time.advance(0.5)
    scheduler.show("job", "Queued: position 1 in line", edit, queued=queued)
    await time.advance(0.375)
    assert edits == []
    await scheduler.drop("job")  # the result came at 0.875 s
    await time.advance(4.0)
    await scheduler.close()
    assert edits == []


async def test_a_slow_job_shows_its_newest_status_after_the_first_delay_then_is_paced() -> None:
    scheduler, time, edit, edits = recording_scheduler(interval=2.0, first_delay=1.0)
    scheduler.show("job", "Submitting…", edit)
    await time.advance(0.5)
    scheduler.show("job", "Running KSampler: step 1/20 (5%)", edit)
    await time.advance(0.375)
    assert edits == []  # not before the first delay
    await time.advance(0.125)
    assert edits == [(1.0, "Running KSampler: step 1/20 (5%)")]  # the newest state, as soon as it is over
    scheduler.show("job", "Running KSampler: step 2/20 (10%)", edit)
    await time.advance(1.75)
    assert len(edits) == 1  # then paced by the interval, as before
    await time.advance(0.25)
    assert edits[1:] == [(3.0, "Running KSampler: step 2/20 (10%)")]
    await scheduler.close()


async def test_each_job_waits_its_own_first_delay() -> None:
    scheduler, time, edit, edits = recording_scheduler(interval=0.25, first_delay=1.0)
    scheduler.show("early", "early", edit)
    await time.advance(0.5)
    scheduler.show("late", "late", edit)
    await time.advance(0.5)
    assert edits == [(1.0, "early")]
    await time.advance(0.25)
    assert edits == [(1.0, "early")]  # the other job's edit and the interval do not bring it forward
    await time.advance(0.25)
    assert edits == [(1.0, "early"), (1.5, "late")]
    await scheduler.close()


@pytest.mark.parametrize(("named", "expected"), [(555, ["defer"]), (None, ["defer", "original_response"])])
async def test_the_status_message_id_comes_with_the_defer(named: int | None, expected: list[str]) -> None:
    calls: list[str] = []

    async def defer(**kw: Any) -> SimpleNamespace:
        calls.append("defer")
        return SimpleNamespace(message_id=named)  # discord.py's InteractionCallbackResponse

    async def original_response() -> SimpleNamespace:
        calls.append("original_response")
        return SimpleNamespace(id=777)

    interaction: Any = SimpleNamespace(
        user=SimpleNamespace(id=42),
        response=SimpleNamespace(defer=defer),
        original_response=original_response,
        created_at=discord.utils.utcnow(),  # the token's life counts from it
    )
    message = JobMessage(interaction, "image", StatusScheduler())
    await message.open()
    assert calls == expected  # a second request only when Discord's answer does not name the message
    assert message.message_id == (named or 777)


@pytest.mark.abuse
def test_batches_hold_ten_files_and_one_request_worth_of_bytes() -> None:
    mb = 2**20
    nowhere = Path("unused")  # batches go by the sizes alone

    def sized(name: str, size: int) -> OutputFile:
        return OutputFile(name, nowhere, size, "9")

    big = [sized(f"big{i}.png", 8 * mb) for i in range(4)]
    assert [[f.filename for f in b] for b in batches(big, 10 * mb)] == [
        ["big0.png", "big1.png", "big2.png"],
        ["big3.png"],
    ]
    small = [sized(f"s{i}.png", 10) for i in range(23)]
    assert [len(b) for b in batches(small, 10 * mb)] == [10, 10, 3]
    assert all(sum(f.size for f in b) <= REQUEST_LIMIT for b in batches(big, 10 * mb))
    huge = [sized("h0.mp4", 40 * mb), sized("h1.mp4", 40 * mb)]
    assert [len(b) for b in batches(huge, 50 * mb)] == [1, 1]  # a boosted server's larger limit
    assert batches([], 10 * mb) == [[]]


def test_caps_mark_the_cut_and_values_stay_on_one_line() -> None:
    assert cap("x" * 3000) == "x" * 1999 + "…"
    assert cap("short") == "short"
    assert shown("line one\nline *two*", 300) == "line one / line \\*two\\*"
    assert mentions().to_dict() == {"parse": []}


@pytest.mark.abuse
def test_tokens_are_redacted_from_discord_log_records(caplog: pytest.LogCaptureFixture) -> None:
    token = "aW50ZXJhY3Rpb246MTIzOmFiYw"
    assert redact(f"POST https://discord.com/api/v10/interactions/123/{token}/callback") == (
        "POST https://discord.com/api/v10/interactions/123/[token]/callback"
    )
    assert redact(f"/webhooks/99/{token}/messages/@original") == "/webhooks/99/[token]/messages/@original"
    assert redact(f"{{'id': '5', 'token': '{token}', 'type': 2}}") == "{'id': '5', 'token': '[token]', 'type': 2}"
    install_token_filter()
    caplog.set_level(logging.DEBUG)
    logging.getLogger("discord.webhook.async_").debug("Webhook %s has returned %s", f"/webhooks/1/{token}", 200)
    assert caplog.records[-1].getMessage() == "Webhook /webhooks/1/[token] has returned 200"


def test_only_discord_ui_messages_sends_and_imports_point_down() -> None:
    sends = re.compile(r"\.(send_message|send|edit|edit_original_response|edit_message)\(")
    sources = [ROOT / "bot.py", *(ROOT / "cogs").glob("*.py"), *(ROOT / "discord_ui").glob("*.py")]
    offenders = [
        f"{path.name}:{number}"
        for path in sources
        if path.name != "messages.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if sends.search(line)
    ]
    assert offenders == []  # every message goes through discord_ui.messages (mentions and caps set once)

    def imported(path):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        return names | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}

    assert not {m for m in imported(ROOT / "bot.py") if m.startswith("cogs")}
    for path in (ROOT / "discord_ui").glob("*.py"):
        assert not {m for m in imported(path) if m.split(".")[0] in ("bot", "cogs", "cli")}, path.name


def test_a_form_never_prefills_more_text_than_its_field_takes() -> None:
    from dataclasses import replace

    from core.workflows import load_catalog
    from discord_ui.forms import TextForm
    from tests.conftest import WORKFLOWS

    music = load_catalog(WORKFLOWS).workflows["music"]
    lyrics = next(p for p in music.params if p.name == "lyrics")
    short = replace(lyrics, max_length=20, default="[verse] " + "la " * 50)  # a workflow's text longer than allowed

    async def submit(*_: object) -> None: ...

    form = TextForm(music, [short], submit)
    field = form.inputs["lyrics"]
    assert field.max_length == 20 and field.default == ("[verse] " + "la " * 50)[:20]


async def test_an_attachment_in_memory_is_sent_in_one_write_without_a_copy() -> None:
    data = b"\x89PNG" + bytes(3 * 2**20)
    [attachment] = as_files([OutputFile("a.png", None, len(data), "9", data)])
    form = aiohttp.FormData(quote_fields=False)  # as discord.py builds an upload
    form.add_field("files[0]", attachment.fp, filename="a.png", content_type="application/octet-stream")
    [(payload, _, _)] = list(form())  # type: ignore[call-overload]
    writes: list[bytes] = []

    class Writer:
        async def write(self, chunk: bytes) -> None:
            writes.append(chunk)

    await payload.write(Writer())  # type: ignore[arg-type]
    assert [w is data for w in writes] == [True]


def test_an_attachment_in_memory_is_freed_once_sent_without_waiting_for_the_garbage_collector() -> None:
    data = b"\x89PNG" + bytes(2**20)
    [attachment] = as_files([OutputFile("a.png", None, len(data), "9", data)])
    fp = attachment.fp
    gone = weakref.ref(fp)
    attachment.close()  # what discord.py does once the request is over: it restores the file's own close
    assert not fp.closed and "close" not in vars(fp)
    fp.close()
    assert fp.closed
    gc.disable()  # the bytes must go with the last reference, not at some later full collection
    try:
        del attachment, fp
        assert gone() is None
    finally:
        gc.enable()


class AnsweredInteraction:
    """Just enough of an interaction for the error funnel's first answer: what was sent is kept."""

    def __init__(self, locale: str) -> None:
        self.id, self.command, self.locale = 1, None, locale
        self.user = SimpleNamespace(id=5, mention="<@5>")
        self.sent: list[dict[str, Any]] = []
        self.response = SimpleNamespace(is_done=lambda: bool(self.sent), send_message=self._send)

    async def _send(self, **fields: Any) -> None:
        self.sent.append(fields)


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("zh-CN", [
            "只有机器人的所有者和拥有管理员身份组的成员可以使用 /reload。",
            "此命令在 Discord 上次向你显示后已更改。请过一分钟再试。",
        ]),
        ("ja", [
            "/reload を使えるのは、ボットのオーナーと管理者ロールを持つメンバーだけです。",
            "このコマンドは Discord に前回表示されたあとで変更されました。1 分ほどしてからもう一度お試しください。",
        ]),
        ("en-US", [
            "Only the bot's owner and members with the admin role can use /reload.",
            "This command changed since Discord last showed it to you. Please try again in a minute.",
        ]),
    ],
)  # fmt: skip
async def test_check_failures_and_stale_commands_are_explained_in_the_members_language(
    locale: str, expected: list[str]
) -> None:
    said = []
    for error in (NotAdmin("reload"), app_commands.CommandNotFound("image", [])):
        interaction = AnsweredInteraction(locale)
        await report_error(interaction, error)  # type: ignore[arg-type]
        [answer] = interaction.sent
        assert answer["ephemeral"] is True
        said.append(answer["content"])
    assert said == expected
