"""The command line: one-off jobs and nightly batches (`run`), a health report (`check`) and the servers (`servers`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from core.comfyui.client import ComfyClient
from core.comfyui.listener import ComfyListener
from core.community import load_community
from core.config import Settings
from core.errors import BotError, ComfyServerError, ComfyUnreachable, ConfigError, InvalidInput
from core.jobs.engine import ComfyServer, Engine, JobResult, OutputFile, Progress
from core.jobs.routing import Verdict, verdict
from core.jobs.server_view import servers_report
from core.workflows import (
    FILE_TYPES,
    Catalog,
    InputFile,
    ParamType,
    Workflow,
    load_catalog,
    runnable,
    validate_workflow,
)
from core.workflows.detect import binding_toml

EXIT_CODES = """\
exit codes:
  0  every job finished (check: everything is usable)
  1  some jobs failed or timed out (check: problems were found)
  2  configuration or usage error; nothing was run"""
PLAIN_PROGRESS_INTERVAL = 10.0  # seconds between progress lines when stderr is a log file, not a terminal
CANCEL_WAIT = 10.0  # how long cancelling jobs at the --timeout deadline may take
SERVERS_WAIT = 5.0  # how long `servers` waits for the websockets, then for /object_info (a silent server: connecting)
# At a terminal the reader usually runs the server too: the one hint core messages cannot give.
UNREACHABLE_HINT = "Check that ComfyUI is running and that COMFYUI_URL points to it."
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # everything but \t and \n: no \r, no ANSI escapes


def add_commands(sub: Any) -> None:
    """Add `run`, `check` and `servers` to the parser's subcommands (`sub` is what add_subparsers returned)."""
    run = sub.add_parser(
        "run",
        help="run a workflow once (or --count times) and save its files",
        description="""\
Run a workflow on the ComfyUI server(s) of COMFYUI_URL and save the files it makes.
The saved paths are printed on stdout, one per line. Progress and messages go to stderr:
one updating line on a terminal, plain lines otherwise (e.g. in a nightly job's log).
DISCORD_TOKEN is not used.""",
        epilog=f"""\
examples:
  bot.py run image prompt="a cat" --out pics
  bot.py run music tags="city pop" lyrics=@lyrics.txt --count 10 --timeout 3600
  bot.py run blur picture=holiday.png

{EXIT_CODES}""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("workflow", help="command name, e.g. image or music (see `bot.py check`)")
    run.add_argument(
        "values",
        nargs="*",
        metavar="key=value",
        help='option values, e.g. prompt="a cat"; key=@file reads the text from a file; '
        "image/audio/video options take a file path",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("out"),
        help="folder for the files, made when the first one is saved (default: out)",
    )
    run.add_argument(
        "--count",
        type=_positive(int),
        default=1,
        help="number of jobs; each gets a new random seed, or the next seed when seed= is given (default: 1)",
    )
    run.add_argument(
        "--timeout",
        type=_positive(float),
        metavar="SECONDS",
        help="time limit for the whole batch: jobs not finished by then are cancelled on the server and "
        "reported as failed (default: none; each job still has JOB_TIMEOUT)",
    )
    sub.add_parser(
        "check",
        help="check the settings, the servers and every workflow on them",
        description="""\
Check what the bot and `run` would use, without running anything:
  - the settings (environment and .env; DISCORD_TOKEN is not needed),
  - every workflow in WORKFLOWS_DIR (API format, binding file; for a workflow without
    one, the options detected in it, ready to save as its .toml),
  - each server in COMFYUI_URL: whether it answers, its ComfyUI version, and whether each
    workflow can run there (node classes, models and other values it offers).""",
        epilog=f"examples:\n  bot.py check\n  COMFYUI_URL=http://gpu-box:8188 bot.py check\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_parser(
        "servers",
        help="show each ComfyUI server's state, version, load and what it can run",
        description=f"""\
Connect to each configured ComfyUI server (COMFYUI_URL, or servers.toml / SERVERS_FILE) as the bot
does, wait up to {SERVERS_WAIT:g} seconds for them, and print what /servers shows in Discord: each
server's state and for how long (with its last error), version, queue, jobs and slots, tags, the
commands it can run and what it lacks for the others. DISCORD_TOKEN is not used.""",
        epilog="""\
examples:
  bot.py servers
  SERVERS_FILE=servers.toml bot.py servers

exit codes:
  0  every server is up
  1  some server is down or did not answer in time
  2  configuration or usage error""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be more than 0 (got {text})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Run the `run`, `check` or `servers` command; the exit code is described in its help."""
    try:
        return asyncio.run(execute(args, settings))
    except KeyboardInterrupt:
        return 130


async def execute(args: argparse.Namespace, settings: Settings) -> int:
    """`main` without the event loop, for tests: a BotError before any job runs is a usage error (2)."""
    try:
        if args.command == "check":
            return await check(settings)
        if args.command == "servers":
            return await servers(settings)
        return await run_jobs(settings, args.workflow, args.values, args.out, args.count, timeout=args.timeout)
    except BotError as exc:
        print(_clean(for_terminal(exc)), file=sys.stderr)
        return 2


def for_terminal(error: BotError) -> str:
    """The error's message for the person at the terminal, with the server's own reason."""
    text = error.user_message
    if isinstance(error, ComfyUnreachable):
        text += f" {UNREACHABLE_HINT}"
    if isinstance(error, ComfyUnreachable | ComfyServerError) and error.detail:
        text += f" ({' '.join(error.detail.split())})"
    return text


class Terminal:
    """Everything `run` tells the person running it on stderr: lasting lines, and progress that suits the stream.

    On a terminal, progress is one line redrawn in place. Otherwise (a log file, a pipe) it is a plain line
    at most every `interval` seconds, and nothing written contains a control character but newlines.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        live: bool | None = None,
        interval: float = PLAIN_PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self.clock = clock
        self._statuses: dict[str, str] = {}  # job tag -> its latest progress, for unfinished jobs
        self._drawn = ""  # the live line now on screen
        self._printed: tuple[float, str] | None = None  # when and what the last plain progress line said

    def say(self, text: str) -> None:
        """Write a line that stays (a failure, a server going away, a summary)."""
        self._erase()
        print(_clean(text), file=self.stream, flush=True)
        self._show()

    def result(self, text: str) -> None:
        """Print a saved file's path on stdout, where scripts read them."""
        self._erase()
        print(text, flush=True)
        self._show()

    def progress(self, tag: str, text: str) -> None:
        """Show `text` as the latest progress of job `tag` on the live line."""
        self._statuses[tag] = text
        self._show()

    def done(self, tag: str) -> None:
        """Drop job `tag` from the live line."""
        self._statuses.pop(tag, None)
        self._show()

    def close(self) -> None:
        """Forget every job and erase the live line."""
        self._statuses.clear()
        self._erase()

    def _summary(self) -> str:
        if not self._statuses:
            return ""
        tag, text = next(iter(self._statuses.items()))
        others = len(self._statuses) - 1
        return _clean(f"{tag} {text}" + (f" (+{others} more)" if others else "")).replace("\n", " ")

    def _show(self) -> None:
        summary = self._summary()
        if self.live:
            width = shutil.get_terminal_size().columns - 1
            if summary[:width] != self._drawn:
                self._erase()
                self._drawn = summary[:width]
                self.stream.write(self._drawn)
                self.stream.flush()
            return
        now = self.clock()
        last_time, last_text = self._printed or (-self.interval, "")
        if summary and summary != last_text and now - last_time >= self.interval:
            self._printed = (now, summary)
            print(summary, file=self.stream, flush=True)

    def _erase(self) -> None:
        if self.live and self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = ""


def _clean(text: str) -> str:
    return _CONTROL.sub("\ufffd", text)


def parse_assignments(pairs: Sequence[str], workflow: Workflow) -> dict[str, Any]:
    """Turn `key=value` words into option values: `key=@file.txt` reads text from a file, and image/audio/video
    options take a file path (`image=photo.png`), which is uploaded to the server that runs the job.

    An unknown key is kept as it is, for `Workflow.resolve` to refuse with the names of the options."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f'{pair!r} is not a key=value pair (e.g. prompt="a cat").')
        param = workflow.param(key)
        if param is None:
            values[key] = value
            continue
        is_file = param.type in FILE_TYPES
        if is_file or value.startswith("@"):
            path = Path(value.removeprefix("@"))
            try:
                values[key] = InputFile(path.name, path.read_bytes()) if is_file else path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInput(f"{key}: cannot read {str(path)!r}: {exc}") from None
        else:
            values[key] = value
    return values


def find_workflow(catalog: Catalog, name: str) -> Workflow:
    workflow = catalog.workflows.get(name.lstrip("/"))
    if workflow is None:
        known = ", ".join(sorted(catalog.workflows)) or "none"
        raise InvalidInput(f"There is no workflow {name!r}. Available: {known}.")
    return workflow


@dataclass(frozen=True, slots=True)
class _Job:
    tag: str  # "[3/10]", how the job is named in every line about it
    given: dict[str, Any]  # the option values as given, resolved when the job starts


async def run_jobs(
    settings: Settings, name: str, pairs: Sequence[str], out: Path, count: int, *, timeout: float | None = None
) -> int:
    """Run `count` jobs of one workflow and save their files into `out`; 0 when all succeed, 1 otherwise."""
    started = time.monotonic()
    catalog = load_catalog(settings.workflows_dir)
    workflow = find_workflow(catalog, name)
    given = parse_assignments(pairs, workflow)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {str(out)!r} is a file, not a folder.")
    seed_param = next((p for p in workflow.params if p.type is ParamType.SEED), None)
    jobs = []
    for index in range(count):
        values = dict(given)
        if seed_param and str(given.get(seed_param.name, "")).isdigit() and index:
            values[seed_param.name] = int(given[seed_param.name]) + index  # a fixed seed walks forward
        workflow.resolve(values)  # bad input is refused now, before any server is asked
        jobs.append(_Job(f"[{index + 1}/{count}]", values))

    terminal = Terminal()
    async with aiohttp.ClientSession() as session:
        engine = Engine.from_settings(session, settings)
        engine.start()
        watcher = asyncio.create_task(watch_servers(engine.servers, terminal.say))
        tasks: dict[asyncio.Task[bool], _Job] = {}
        try:
            workflow = await adapt(engine, workflow, timeout)
            tasks = {asyncio.create_task(_one_job(engine, workflow, job, out, terminal)): job for job in jobs}
            left = None if timeout is None else max(0.0, started + timeout - time.monotonic())
            done, late = await asyncio.wait(tasks, timeout=left)
            if late:
                assert timeout is not None
                confirmed = await _stop_late_jobs(engine, late)
                what = "it was cancelled." if confirmed else "the server did not confirm the cancel; it may still run."
                for task in (t for t in tasks if t in late):  # in job order
                    terminal.say(
                        f"{tasks[task].tag} failed: not finished when --timeout ({timeout:g} s) ran out; {what}"
                    )
        finally:
            watcher.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(watcher, *tasks, return_exceptions=True)
            await engine.close()
            terminal.close()
    succeeded = sum(1 for task in done if task.result())
    if count > 1:
        terminal.say(f"{succeeded} of {count} jobs succeeded.")
    return 0 if succeeded == count else 1


async def adapt(engine: Engine, workflow: Workflow, timeout: float | None) -> Workflow:
    """The workflow as the bot registers it: model names spelled as the first server that can run it lists them.

    Its jobs are then routed like the bot's: only to servers that can run it. One that no server can run (or
    when none answers in time) goes as it is to any server, whose refusal then says why.
    """
    try:
        async with asyncio.timeout(timeout):
            infos, versions = await engine.object_infos()
    except TimeoutError:
        return workflow
    kept = runnable(Catalog(workflows={workflow.name: workflow}), infos, versions).workflows
    engine.capabilities(kept)  # with several servers, the jobs then go only to those that can run it
    return kept.get(workflow.name, workflow)


async def _stop_late_jobs(engine: Engine, tasks: set[asyncio.Task[bool]]) -> bool:
    """Stop jobs at the batch deadline, here and on the server (which would otherwise run them anyway).

    Returns False when the server did not confirm every cancel within CANCEL_WAIT (all are sent at once).
    """
    # Jobs watched by a listener have been (or are being) submitted; the others never reached a server.
    submitted = [(server, prompt_id) for server in engine.servers for prompt_id in server.listener.watches]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    try:
        async with asyncio.timeout(CANCEL_WAIT):
            answers = await asyncio.gather(
                *(server.client.cancel(prompt_id) for server, prompt_id in submitted), return_exceptions=True
            )
    except TimeoutError:
        return False
    return not any(isinstance(answer, BaseException) for answer in answers)


async def _one_job(engine: Engine, workflow: Workflow, job: _Job, out: Path, terminal: Terminal) -> bool:
    def show(progress: Progress) -> None:
        if progress.resubmitted:
            terminal.say(f"{job.tag} {progress.describe()}")
        else:
            terminal.progress(job.tag, progress.describe())

    try:
        with await engine.run(workflow, workflow.resolve(job.given), show) as result:
            paths = save_result(result, out)
    except BotError as exc:
        terminal.say(f"{job.tag} failed: {for_terminal(exc)}")
        return False
    finally:
        terminal.done(job.tag)
    for path in paths:
        terminal.result(str(path))
    for text in result.texts:
        terminal.say(f"{job.tag} text output: {text}")
    for line in result.skipped:  # outputs over the caps stay on the server
        terminal.say(f"{job.tag} skipped: {line}")
    terminal.say(f"{job.tag} done: {len(paths)} file(s) saved.")
    return True


def save_result(result: JobResult, out: Path) -> list[Path]:
    """Write a job's files into `out` (made now, when there is something to write), never over an existing file.

    Files are named after the workflow and seed so that batches do not collide.
    """
    seed = result.values.get("seed")
    stem = f"{result.workflow}_{seed}" if seed is not None else f"{result.workflow}_{result.job_id[:8]}"
    paths = []
    for file in result.files:
        path = out / f"{stem}_{_CONTROL.sub('_', Path(file.filename).name)}"  # the name comes from the server
        try:
            out.mkdir(parents=True, exist_ok=True)
            paths.append(_write_new(path, file))
        except OSError as exc:
            raise BotError(f"Cannot save {path}: {exc.strerror or exc}.") from None
    return paths


def _write_new(path: Path, file: OutputFile) -> Path:
    """Write the output `file` to `path`, or to `path` with _2, _3… added when that name is taken."""
    candidate, number = path, 1
    while True:
        try:
            with candidate.open("xb") as f:
                file.copy_to(f)
            return candidate
        except FileExistsError:
            number += 1
            candidate = path.with_stem(f"{path.stem}_{number}")


async def watch_servers(servers: Sequence[ComfyServer], say: Callable[[str], None]) -> None:
    """Say when a server stops answering and when it answers again (its jobs wait for it meanwhile)."""
    await asyncio.gather(*(_watch_server(server, say) for server in servers))


async def _watch_server(server: ComfyServer, say: Callable[[str], None]) -> None:
    # A dropped websocket that reconnects at once is not news: the listener calls a server down only once a
    # connection attempt has failed (see ComfyListener.state).
    name, listener = server.client.name, server.listener
    await listener.connected.wait()  # one that never answered is explained by its jobs' failure instead
    while True:
        await listener.down.wait()
        say(f"ComfyUI server {name} stopped answering; its jobs move to another server or wait until it is back.")
        await listener.connected.wait()  # woken before the reconciliation that follows a reconnect
        say(f"ComfyUI server {name} is answering again.")


async def check(settings: Settings) -> int:
    """Print whether each server is reachable and can run each workflow; 0 only when all is well."""
    catalog = load_catalog(settings.workflows_dir)
    problems = len(catalog.problems)
    names = ", ".join(f"/{n}" for n in sorted(catalog.workflows)) or "none"
    print(f"Workflows in {settings.workflows_dir}/: {len(catalog.workflows)} command(s) ({names})")
    for problem in catalog.problems:
        print(f"  - {problem}")
    for note in catalog.notes:
        print(f"  note: {note}")
    for workflow in catalog.workflows.values():
        if workflow.binding is None:
            print(f"  /{workflow.name}: {workflow.source.name} has no binding file; detected options, which you can")
            print(f"  save as {workflow.source.with_suffix('.toml').name} and adjust:")
            toml = binding_toml(workflow.name, workflow.description, workflow.params)
            print("\n".join(f"      {line}" if line else "" for line in toml.splitlines()))
    if not catalog.workflows:
        problems += 1
        print("  - no usable command: add an API-format .json and its .toml binding.")
    community_file = settings.community_file
    if settings.community_file_named or community_file.is_file():  # none: everything allowed, no quota
        try:
            load_community(community_file, required=True)
            print(f"Community rules in {community_file}: OK")
        except ConfigError as exc:
            problems += len(exc.problems)
            print(f"Community rules in {community_file}: {len(exc.problems)} problem(s)")
            for problem in exc.problems:
                print(f"  - {problem}")
    table: list[tuple[str, list[Verdict]]] = []  # server -> its verdict on each workflow, in catalog order
    async with aiohttp.ClientSession() as session:
        for server in settings.servers:
            client = ComfyClient(session, server)  # with its headers, query token and TLS settings
            try:
                version = (await client.probe()).version
                object_info = await client.object_info()
            except (ComfyUnreachable, ComfyServerError) as exc:
                problems += 1
                state = "NOT reachable" if isinstance(exc, ComfyUnreachable) else "answered with an error"
                print(f"Server {client.name}: {state} ({exc.reason})")
                down = isinstance(exc, ComfyUnreachable)
                table.append((client.name, [verdict(client.name, None, connected=not down)] * len(catalog.workflows)))
                continue
            shown = version or "of unknown version"
            print(f"Server {client.name}: reachable (ComfyUI {shown}, {len(object_info)} node classes)")
            verdicts: list[Verdict] = []
            for workflow in catalog.workflows.values():
                found = validate_workflow(workflow, object_info, version)
                verdicts.append(verdict(client.name, found))
                problems += len(found)
                verdict_text = f"{len(found)} problem(s)" if found else "OK"
                print(f"  /{workflow.name} ({workflow.source.name}): {verdict_text}")
                for line in found:
                    print(f"    - {line}")
            table.append((client.name, verdicts))
    print_table(list(catalog.workflows), table)
    print("All good." if not problems else f"{problems} problem(s) found.")
    return 0 if not problems else 1


def print_table(workflows: Sequence[str], table: Sequence[tuple[str, Sequence[Verdict]]]) -> None:
    """Print which server can run which workflow: one line per pair, OK, down, or the first thing it lacks.

    Only for two servers or more: with one, the server's section above already says all of it.
    """
    if not workflows or len(table) < 2:
        return
    print("Workflow × server:")
    width = max(len(name) for name in workflows) + 1
    server_width = max(len(server) for server, _ in table)
    for index, name in enumerate(workflows):
        for server, verdicts in table:
            print(f"  {'/' + name:<{width}}  {server:<{server_width}}  {verdicts[index].describe()}")


async def servers(settings: Settings, wait: float = SERVERS_WAIT) -> int:
    """Print each server's state, load and capabilities as /servers shows them; 0 only when every one is up."""
    catalog = load_catalog(settings.workflows_dir)
    async with aiohttp.ClientSession() as session:
        engine = Engine.from_settings(session, settings)
        engine.start()
        try:
            await _settled(engine, wait)
            try:  # the commands the bot would register, as it checks them on startup and /reload
                async with asyncio.timeout(wait):
                    infos, versions = await engine.object_infos()
                if infos:
                    catalog = runnable(catalog, infos, versions)
            except TimeoutError:
                pass  # a server answering its websocket but not /object_info: shown without capabilities
            engine.capabilities(catalog.workflows)
            lines = servers_report(engine)
            up = all(status.state == "up" for status in engine.server_status())
        finally:
            await engine.close()
    for line in lines:
        print(_clean(line))
    return 0 if up else 1


async def _settled(engine: Engine, wait: float) -> None:
    """Wait until every server is up or has failed a connection attempt, for at most `wait` seconds."""

    async def settled(listener: ComfyListener) -> None:
        waits = [asyncio.ensure_future(listener.connected.wait()), asyncio.ensure_future(listener.down.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in waits:
                pending.cancel()

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            await asyncio.gather(*(settled(server.listener) for server in engine.servers))
