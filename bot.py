"""Entry point. `python bot.py` runs the Discord bot; `python bot.py run|check|servers` is the command line;
`python bot.py api` serves the HTTP API alone."""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands
from dotenv import load_dotenv

import cli
import http_api.serve
from core.community import load_community
from core.community.access import Access, AccessRules
from core.community.quotas import QuotaBook, QuotaRules
from core.community.safety import ImageScreen, Safety
from core.config import Settings, load_settings, setup_logging
from core.errors import BotError, ConfigError, JobCancelled, JobLost
from core.i18n import Lines, Text
from core.jobs.engine import Engine
from core.jobs.inputs import InputGone, restored_values
from core.jobs.kept import KeptFiles
from core.jobs.presets import Presets
from core.jobs.store import JobRecord, JobState, JobStore, StoreError
from core.workflows import Catalog, Workflow, load_catalog, runnable
from discord_ui.buttons import keep_followups
from discord_ui.delivery import deliver_to_channel, screen_for, tell_in_channel
from discord_ui.errors import BotTree
from discord_ui.logs import install_token_filter
from discord_ui.messages import CANCELLED, FAILED, JOB_FAILED
from discord_ui.status import StatusScheduler
from discord_ui.translator import CommandTranslator

log = logging.getLogger("bot")
EXTENSIONS = ("cogs.generate", "cogs.admin", "cogs.permissions", "cogs.help", "cogs.history", "cogs.quota")
# How often the heartbeat file next to JOBS_DB is refreshed; the Dockerfile's HEALTHCHECK allows 90 s.
HEARTBEAT_SECONDS = 30.0
# discord.py waits this long after the last GUILD_CREATE before it is ready (2 s by default). The bot needs no
# guild cache (an interaction carries its channel and member) and answers commands from READY on, so barely wait.
GUILD_READY_TIMEOUT = 0.05
GC_YOUNG_THRESHOLD = 10_000  # allocations between two passes of the cycle collector (CPython: 700)
# Next to JOBS_DB: the fingerprint of the commands as last synced, so an unchanged start makes no sync request.
SYNCED_FILE = "commands.synced"


class ComfyBot(commands.Bot):
    """The Discord side: owns the HTTP session, the job engine and the loaded workflows."""

    session: aiohttp.ClientSession
    engine: Engine
    catalog: Catalog
    store: JobStore

    def __init__(self, settings: Settings, *, settle_heap: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("guild_ready_timeout", GUILD_READY_TIMEOUT)
        super().__init__(
            command_prefix=commands.when_mentioned,
            # Slash commands and buttons come as interactions, which carry their member and channel: the bot
            # needs no message, typing or presence events, and each of its own status edits would be one more.
            intents=discord.Intents(guilds=True),
            max_messages=None,
            tree_cls=BotTree,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),  # a safe default; discord_ui sets each message's
            # Installed to a server or to a member's account, usable in servers, the bot's DMs and private
            # channels; limits, quotas and the age restriction still apply. Admin commands: cogs.access.servers_only.
            allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True),
            **kwargs,
        )
        install_token_filter()
        self.settings = settings
        self.settle_heap = settle_heap  # once started, see settle_heap(): for the bot's own process, not tests
        # Every status edit of the bot is paced here: Discord rate-limits edits.
        self.statuses = StatusScheduler(interval=2.0, preview_interval=settings.preview_seconds)
        self._recovery: asyncio.Task[None] | None = None
        self.job_tasks: set[asyncio.Task[Any]] = set()  # running jobs, stopped on close and resumed next start
        self.access = Access(AccessRules())  # everything allowed until setup_hook reads community.toml
        self.quotas = QuotaBook(QuotaRules())  # no quota until setup_hook has read community.toml
        self.safety = Safety()  # community.toml [safety], read in setup_hook
        self.image_screen: ImageScreen | None = None  # [safety] image_check: None when images are not checked
        self.api: http_api.serve.ApiServer | None = None  # the HTTP API, served in-process with HTTP_API_PORT

    async def start(self, token: str, *, reconnect: bool = True) -> None:
        # The heartbeat lives as long as the connection attempt: a stuck or disconnected bot stops refreshing it.
        beat = asyncio.create_task(
            heartbeat(self.settings.jobs_db.parent / "heartbeat", self.connected, HEARTBEAT_SECONDS), name="heartbeat"
        )
        try:
            await super().start(token, reconnect=reconnect)
        finally:
            beat.cancel()

    def connected(self) -> bool:
        """Say whether the bot is ready and its gateway connection is open."""
        return self.is_ready() and not self.is_closed() and self.ws is not None and self.ws.open

    async def setup_hook(self) -> None:
        # community.toml first, then the store: a bad file or JOBS_DB stops here (ConfigError, StoreError: run_bot)
        community = load_community(self.settings.community_file, required=self.settings.community_file_named)
        self.quotas = QuotaBook(community.quotas)
        self.safety, self.image_screen = community.safety, community.image_screen
        self.store = await JobStore(self.settings.jobs_db).open()
        self.access = await Access(community.access).load(self.store)
        await self.quotas.load(self.store)
        self.session = aiohttp.ClientSession()
        self.engine = Engine.from_settings(self.session, self.settings, self.store)
        self.engine.usage = self.quotas
        self.engine.start()
        self.catalog = await self.load_workflows()
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self.tree.set_translator(CommandTranslator())  # before the sync, which sends its localizations
        await self.sync_commands()
        if self.settings.http_api_port is not None:  # same engine: one queue, shared limits
            self.api = await http_api.serve.start_api(
                self.settings, self.engine, self.store, self.session, lambda: self.catalog.workflows
            )
        self._recovery = asyncio.create_task(self.recover_jobs(), name="recover jobs")
        if self.settle_heap:
            settle_heap()

    @functools.cached_property
    def presets(self) -> Presets:
        """The members' presets (one instance: it remembers who has a default preset)."""
        return Presets(self.store)

    @functools.cached_property
    def kept(self) -> KeptFiles:
        """The files kept for the buttons under results (beside the job store, so they outlive a restart)."""
        return KeptFiles(self.settings.jobs_db.parent / "followups", self.settings.followup_keep_hours)

    @property
    def status_edit_interval(self) -> float:
        """Seconds between two edits of one status message."""
        return self.statuses.interval

    @status_edit_interval.setter
    def status_edit_interval(self, seconds: float) -> None:
        self.statuses.interval = seconds

    async def recover_jobs(self) -> None:
        """Finish what a previous run left: wait for, fetch or resubmit each stored job, then deliver it once.

        Jobs that ended but whose member was never told are told now, without running them again. One
        job's failure never stops the others.
        """
        # The HTTP API's jobs (negative member ids) are not Discord's to deliver: the API ends them at its start.
        records = [r for r in await self.store.unfinished() if r.user_id is None or r.user_id >= 0]
        if records:
            log.info("picking up %d unfinished job(s) from the last run", len(records))
        outcomes = await asyncio.gather(*(self.recover_job(r) for r in records), return_exceptions=True)
        for record, outcome in zip(records, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("recovering job %s failed", record.id, exc_info=outcome)

    async def recover_job(self, record: JobRecord) -> None:
        self.track_job()
        channel = self.get_partial_messageable(record.channel_id or 0)
        if record.state.finished:  # it ended, but its member was never told
            await self.report_recovered(channel, record)
            return
        # A recovered job counts towards its member's pending jobs like a new one (it is never refused).
        reservation = self.engine.limits.adopt(record.user_id, record.id) if record.user_id else None
        try:
            workflow = self.catalog.workflows.get(record.workflow)
            if record.prompt is None:  # never reached a server: nothing to wait for, start it afresh
                if workflow is None:
                    raise JobLost(detail=f"workflow {record.workflow} is gone")
                # Its options name its attachments; the files themselves come back from the kept copies.
                values = await restored_values(self.store, workflow, record)
                # A full JOB_TIMEOUT from now, as for resumed jobs: the bot's downtime is not the job's fault.
                result = await self.engine.run(workflow, values, record=record, since=time.time())
            else:
                result = await self.engine.resume(record)
                values = await self.kept_values(workflow, record)
            with result:  # its temporary files go once delivered, or once delivery fails
                # Kept and offered as on the live path (cogs/generate.py), so U/V/Extend and Re-roll work here too.
                followups = (
                    await keep_followups(self.kept, workflow, values, result, locale=record.locale) if workflow else []
                )
                # The cached channel tells whether it is age-restricted; an unknown one gets the image check.
                screen = screen_for(self.image_screen, self.get_channel(record.channel_id or 0))
                more = await deliver_to_channel(
                    channel,
                    record,
                    result,
                    max_image_pixels=self.settings.max_image_pixels,
                    screen=screen,
                    style=self.settings.result_view,
                    workflow=workflow,
                    followups=followups,
                )
            await self.engine.finish(record.id, JobState.DONE, more_messages=more)
        except BotError as exc:
            log.info("recovered job %s failed: %s | %s", record.id, exc.user_message, exc.detail or "")
            state = JobState.CANCELLED if isinstance(exc, JobCancelled) else JobState.FAILED
            await self.report_recovered(channel, replace(record, state=state, error=exc.user_message))
        except discord.HTTPException as exc:
            log.warning("could not deliver recovered job %s: %s", record.id, exc)
        finally:
            if reservation is not None:
                reservation.release()

    async def kept_values(self, workflow: Workflow | None, record: JobRecord) -> dict[str, Any]:
        """A resumed job's options with its attachments read back for Re-roll; names only where a copy is gone."""
        if workflow is None:
            return dict(record.values)
        try:
            return await restored_values(self.store, workflow, record)
        except InputGone as exc:  # the result still goes out; Re-roll then says the files are not kept
            log.info("job %s: %s", record.id, exc.detail)
            return dict(record.values)

    async def report_recovered(self, channel: discord.PartialMessageable, record: JobRecord) -> None:
        """Tell the member how a job ended, then record that they were told."""
        if record.state is JobState.DONE:
            log.info("job %s was done before the restart; nothing more to tell", record.id)
        else:
            failed = FAILED.format(reason=record.error or JOB_FAILED)
            text = CANCELLED if record.state is JobState.CANCELLED else failed
            try:
                await tell_in_channel(channel, record, text)
            except discord.HTTPException as exc:
                log.warning("could not tell the member how job %s ended: %s", record.id, exc)
                return  # still not reported: the next start tries again
        await self.engine.finish(record.id, record.state, record.error)

    async def load_workflows(self) -> Catalog:
        """Read WORKFLOWS_DIR and keep what the servers can run; log why anything else was skipped."""
        catalog = load_catalog(self.settings.workflows_dir)
        infos, versions = await self.engine.object_infos()
        if infos:
            catalog = runnable(catalog, infos, versions)
        else:
            log.warning("no ComfyUI server answered: workflows are registered without checking them")
        self.engine.capabilities(catalog.workflows)  # each server now knows which of them it can run
        for problem in catalog.problems:
            log.warning("workflow skipped: %s", problem)
        for note in catalog.notes:
            log.info("workflow note: %s", note)
        return catalog

    async def reload_workflows(self) -> str:
        """Re-read and re-check the workflows, rebuild and re-sync the commands; say what changed."""
        before, after = self.catalog.workflows, (catalog := await self.load_workflows()).workflows
        self.catalog = catalog
        await self.reload_extension("cogs.generate")  # rebuilds one command per workflow
        await self.sync_commands(force=True)  # also puts back commands deleted on Discord's side
        lines: list[str] = [
            said.format(commands=", ".join(f"/{n}" for n in names))
            for said, names in (
                (Text("Added: {commands}"), sorted(after.keys() - before.keys())),
                (Text("Removed: {commands}"), sorted(before.keys() - after.keys())),
                (Text("Changed: {commands}"), sorted(n for n in after.keys() & before.keys() if after[n] != before[n])),
            )
            if names
        ]
        active = Text("{count} command(s) active.") if lines else Text("No change; {count} command(s) active.")
        lines.append(active.format(count=len(after)))
        lines += [Text("Skipped: {problem}").format(problem=p) for p in catalog.problems]
        lines += [Text("Note: {note}").format(note=n) for n in catalog.notes]
        return Lines(lines)

    @property
    def active_jobs(self) -> Mapping[str, int]:
        """Job id -> member id of the jobs waiting or running, as the engine's limits count them."""
        return self.engine.limits.active

    def track_job(self) -> None:
        """Remember the running task as a job's, so that close() stops it like a crash would."""
        if (task := asyncio.current_task()) is not None:
            self.job_tasks.add(task)
            task.add_done_callback(self.job_tasks.discard)

    async def sync_commands(self, *, force: bool = False) -> None:
        """Sync to the development guild when one is set (instant); otherwise globally, only when changed.

        Unless `force`d, nothing is sent when the commands are the ones this store's bot last synced there.
        """
        guild = discord.Object(self.settings.dev_guild_id) if self.settings.dev_guild_id else None
        translator = self.tree.translator  # its localizations are in the payloads, so new ones change the fingerprint
        local = sorted(
            [
                _shape(await c.get_translated_payload(self.tree, translator) if translator else c.to_dict(self.tree))
                for c in self.tree.get_commands()
            ]
        )
        target = f"guild {guild.id}" if guild else "global"
        fingerprint = hashlib.sha256(repr((self.application_id, target, local)).encode()).hexdigest()
        marker = self.settings.jobs_db.parent / SYNCED_FILE
        if not force and await asyncio.to_thread(_read_marker, marker) == fingerprint:
            log.info("%d command(s) unchanged since they were last synced (%s); not syncing", len(local), target)
            return
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d command(s) to development guild %s", len(synced), guild.id)
        else:
            # AppCommand.to_dict leaves out the age-restricted flag, which a binding can change
            remote = sorted(_shape({**c.to_dict(), "nsfw": c.nsfw}) for c in await self.tree.fetch_commands())
            if local != remote:
                synced = await self.tree.sync()
                log.info("synced %d global command(s); Discord may take a while to show changes", len(synced))
        try:
            await asyncio.to_thread(marker.write_text, fingerprint, encoding="ascii")
        except OSError as exc:  # only costs a sync request at the next start
            log.warning("cannot write %s: %s", marker, exc.strerror or exc)

    async def on_connect(self) -> None:
        # READY: setup_hook has loaded the workflows and synced the commands, so commands are answered from now.
        log.info("connected to Discord as %s; %d command(s) usable", self.user, len(self.tree.get_commands()))

    async def close(self) -> None:
        # Jobs stay in the store as they are; the next start waits for them, fetches or resubmits them.
        for task in [self._recovery, *self.job_tasks]:
            if task is not None:
                task.cancel()
        await self.statuses.close()
        await super().close()
        if self.api is not None:
            await self.api.close()
        if hasattr(self, "engine"):
            await self.engine.close()
        if hasattr(self, "store"):
            await self.store.close()
        if hasattr(self, "session"):
            await self.session.close()


async def heartbeat(path: Path, alive: Callable[[], bool], interval: float) -> None:
    """Touch `path` every `interval` seconds while `alive()` is true, for a container's healthcheck."""
    failing = False
    while True:
        if alive():
            try:
                await asyncio.to_thread(path.touch)
            except OSError as exc:
                if not failing:  # once per failure streak, not every interval
                    log.warning("cannot write the heartbeat file %s: %s", path, exc.strerror or exc)
                failing = True
            else:
                failing = False
        await asyncio.sleep(interval)


def _read_marker(path: Path) -> str | None:
    """The fingerprint of the commands last synced, or None when there is none to read."""
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None


def _shape(payload: Mapping[str, Any]) -> str:
    """The parts of a command payload that decide whether a re-sync is needed."""
    keys = (
        "name",
        "description",
        "type",
        "required",
        "min_value",
        "max_value",
        "min_length",
        "max_length",
        "choices",
        "options",
        "value",
        "nsfw",
    )
    localized = ("name_localizations", "description_localizations")  # kept whole: their keys are locales

    def pick(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: dict(sorted(v.items())) if k in localized else pick(v)
                for k, v in sorted(value.items())
                if k in keys + localized and v not in (None, False, [], {})
            }
        if isinstance(value, list):
            return [pick(v) for v in value]
        return value

    return repr(pick(payload))


def settle_heap() -> None:
    """Tune the cycle collector for a long-lived bot, once start-up has built what lives as long as it.

    Each job allocates thousands of short-lived containers (JSON of frames and answers), nearly all freed by
    reference counting: collecting every 700 allocations ran the collector twice per job for nothing. And
    what start-up built (discord.py, every server's /object_info) is frozen out of its reach, so that its
    full passes no longer walk it all, each one a stall of the event loop.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


def run_bot(settings: Settings) -> int:
    assert settings.discord_token is not None
    bot = ComfyBot(settings, settle_heap=True)
    try:
        bot.run(settings.discord_token, log_handler=None)
    except discord.LoginFailure:
        print(
            "Discord rejected DISCORD_TOKEN. Reset the token in the Developer Portal (Bot > Reset Token) "
            "and put the new one in .env.",
            file=sys.stderr,
        )
        return 2
    except (StoreError, ConfigError) as exc:  # an unusable JOBS_DB or community.toml: its message, no traceback
        print(exc.user_message, file=sys.stderr)
        return 2
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bot.py",
        description="A Discord bot that runs ComfyUI workflows. Without a command it runs the bot; "
        "`run`, `check` and `servers` work from the command line and `api` serves the HTTP API; they need no "
        "Discord token.",
        epilog="`bot.py run --help`, `bot.py check --help` and `bot.py servers --help` describe them and their "
        "exit codes.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{run,check,servers,api}")
    cli.add_commands(sub)
    sub.add_parser(
        "api",
        help="serve the HTTP API without Discord",
        description="Serve the HTTP API (see README, HTTP API) on HTTP_API_HOST:HTTP_API_PORT (default port "
        f"{http_api.serve.DEFAULT_PORT}) until Ctrl+C. Needs HTTP_API_TOKENS; DISCORD_TOKEN is not used.",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    load_dotenv()
    # The command line never talks to Discord: a placeholder or malformed token must not stop them.
    env = os.environ if args.command is None else {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    try:
        settings = load_settings(env, require_token=args.command is None)
    except ConfigError as exc:
        print(
            f"{exc.user_message}\nSettings are read from the environment and from .env (see .env.example).",
            file=sys.stderr,
        )
        return 2
    # The command line prints its own messages; the admin's log detail shows only when asked for with DEBUG.
    cli_level = "DEBUG" if settings.log_level == "DEBUG" else "ERROR"
    setup_logging(settings.log_level if args.command in (None, "api") else cli_level)
    if args.command is None:
        return run_bot(settings)
    if args.command == "api":
        return http_api.serve.main(settings)
    return cli.main(args, settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
