"""An in-process fake Discord (REST + gateway) for end-to-end tests of an unmodified discord.py 2.7.1 client.

The fake is an aiohttp server on ``127.0.0.1`` with a random port.  While it runs it patches the two class
attributes discord.py builds its URLs from (``discord.http.Route.BASE`` and
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``); :meth:`FakeDiscord.stop` restores them.  Every HTTP request
the bot makes (REST, interaction callbacks and webhooks, CDN downloads) is recorded as a :class:`Request`; anything
the fake does not implement is answered with a 404 and also appended to :attr:`FakeDiscord.unhandled`, so tests
should assert that list stays empty.

Typical use::

    async with FakeDiscord() as fake:
        bot = MyBot(intents=discord.Intents.default(), guild_ready_timeout=0)
        task = await start_bot(bot, fake)
        try:
            await bot.tree.sync()
            it = await fake.invoke_slash("echo", {"text": "hi"})
            await fake.wait_for(lambda: it.original is not None and "hi" in it.original["content"])
        finally:
            await stop_bot(bot, task)
        assert not fake.unhandled

Bots **must** be built with ``guild_ready_timeout=0`` (or at most ``0.05``): with discord.py's default of 2 s every
bot start waits two seconds after the last GUILD_CREATE before ``on_ready``.  :func:`start_bot` refuses larger values.

What is modelled (see the project's notes on testing against Discord, discord-testing.md):

* login (``/users/@me``, ``/oauth2/applications/@me``, ``/gateway/bot``), the gateway (HELLO, heartbeat ACK,
  IDENTIFY -> READY + GUILD_CREATE, RESUME -> RESUMED with replay of missed events, REQUEST_GUILD_MEMBERS,
  zlib-stream compression when asked for), command sync with Discord's validation;
* where commands are offered: a global command only in its ``contexts`` (null: servers and the bot's DM) and through
  its ``integration_types`` (the guild's install, or a member's after ``install_for``), a guild's command only
  there; elsewhere ``invoke_slash`` raises :class:`NotOffered`, as Discord never delivers it.  DM and group-DM
  interactions (``context=BOT_DM`` / ``PRIVATE_CHANNEL``, ``add_private_channel``) carry ``user``, no member or
  guild, ``context`` and ``authorizing_integration_owners``; the bot's own token cannot reach a group DM (403);
* interactions: the 3 s initial-response deadline (``interaction_deadline``), the 15 min token lifetime
  (``token_ttl``), double acknowledgement, allowed callback types, ``with_response`` bodies, deferred responses
  whose first followup edits ``@original``, modals, components, autocomplete;
* messages: channel sends/edits/deletes, webhook followups and edits, multipart uploads, attachments kept or added
  on edit, a CDN serving uploaded bytes, and Discord's limits with the same status and error codes;
* injected 429s (with the ``Via`` header discord.py needs to retry) and injected errors.

Beyond the required interface the fake also offers: ``default_user`` (the member interactions come from unless
``user=`` is given), ``interactions`` (every interaction sent), ``channels`` / ``roles``, ``gateway_log`` (every
gateway frame as ``("recv" | "send", frame)``), ``gateway_connections`` (the query of every websocket connect),
``ready_at`` (when each READY went out, to time start-up), ``resumes``, ``send_user_message()`` (a member posts a
message), ``click(..., values=[...])`` for select menus, ``Interaction.payload`` (the full INTERACTION_CREATE
data), ``Interaction.modal`` and ``async with FakeDiscord()``.
``Interaction.followups`` lists only messages a followup *created*: the first followup after a deferred response
edits ``@original`` instead, so its id is ``original_id``.

Components v2 (the IS_COMPONENTS_V2 flag) is checked as Discord documents it: no content or embeds with the flag,
the flag never removed once set, at most 40 components, media galleries of 1 to 10 items, 4000 characters of text
displays in all, and v2 components refused without the flag.

Not modelled: permissions, ephemeral visibility to other users, real rate-limit buckets, threads.  Interaction tokens
are accepted on webhooks without a bot token, as on Discord.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import inspect
import json
import mimetypes
import re
import secrets
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl
from aiohttp import BodyPartReader, WSMsgType, web

__all__ = ["FakeDiscord", "Interaction", "NotOffered", "Part", "Request", "start_bot", "stop_bot"]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_REQUEST_SIZE = 25 * 2**20
ALL_PERMISSIONS = "2251799813685247"
EVERYONE_PERMISSIONS = "1071698660929"

# gateway opcodes
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE = 0, 1, 2, 3, 4
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12

# interaction types and callback types
IT_COMMAND, IT_COMPONENT, IT_AUTOCOMPLETE, IT_MODAL_SUBMIT = 2, 3, 4, 5
CB_MESSAGE, CB_DEFERRED, CB_DEFERRED_UPDATE, CB_UPDATE, CB_AUTOCOMPLETE, CB_MODAL = 4, 5, 6, 7, 8, 9
ALLOWED_CALLBACKS: dict[int, frozenset[int]] = {
    IT_COMMAND: frozenset({CB_MESSAGE, CB_DEFERRED, CB_MODAL}),
    IT_COMPONENT: frozenset({CB_MESSAGE, CB_DEFERRED, CB_DEFERRED_UPDATE, CB_UPDATE, CB_MODAL}),
    IT_MODAL_SUBMIT: frozenset({CB_MESSAGE, CB_DEFERRED, CB_DEFERRED_UPDATE, CB_UPDATE}),
    IT_AUTOCOMPLETE: frozenset({CB_AUTOCOMPLETE}),
}

# where an interaction happens (its "context") and how the app is installed (a command's "integration_types"), from
# https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-object-interaction-context-types
GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2
GUILD_INSTALL, USER_INSTALL = 0, 1
# A command synced with no contexts is stored with "contexts": null and offered in servers and the bot's DM only
# (discord-api-docs issue 6744); with "dm_permission": false, in servers only.
DEFAULT_CONTEXTS, GUILD_ONLY_CONTEXTS = (GUILD, BOT_DM), (GUILD,)
# What an app installed to a member's account may do where its bot is not present (DMs and group DMs of others):
# ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE | USE_EXTERNAL_EMOJIS
PRIVATE_APP_PERMISSIONS = str((1 << 15) | (1 << 14) | (1 << 17) | (1 << 18))

CONTEXT_NAMES = {GUILD: "a server channel", BOT_DM: "a DM with the bot", PRIVATE_CHANNEL: "a private channel"}

# message flags
FLAG_SUPPRESS_EMBEDS, FLAG_EPHEMERAL, FLAG_LOADING = 1 << 2, 1 << 6, 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS, FLAG_COMPONENTS_V2 = 1 << 12, 1 << 15
CREATE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2

# application command option types
OPT_SUB, OPT_GROUP, OPT_STRING, OPT_INTEGER, OPT_BOOLEAN = 1, 2, 3, 4, 5
OPT_USER, OPT_CHANNEL, OPT_ROLE, OPT_MENTIONABLE, OPT_NUMBER, OPT_ATTACHMENT = 6, 7, 8, 9, 10, 11
COMMAND_NAME_RE = re.compile(r"^[-_\w]{1,32}$")
SELECT_TYPES = frozenset({3, 5, 6, 7, 8})
# Components v2 (https://discord.com/developers/docs/components/reference): their types, and their limits
SECTION, TEXT_DISPLAY, THUMBNAIL, MEDIA_GALLERY, FILE_COMPONENT, SEPARATOR, CONTAINER = 9, 10, 11, 12, 13, 14, 17
V2_TYPES = frozenset({SECTION, TEXT_DISPLAY, THUMBNAIL, MEDIA_GALLERY, FILE_COMPONENT, SEPARATOR, CONTAINER})
V2_MAX_COMPONENTS, V2_MAX_TEXT, GALLERY_ITEMS = 40, 4000, (1, 10)
FILE_UPLOAD = 19  # in a modal's label

EMBED_LIMITS = {"title": 256, "description": 4096}


# --------------------------------------------------------------------------------------------------------------------
# public records


class NotOffered(AssertionError):
    """Discord would not offer this command here, so it never delivers such an interaction."""


@dataclass
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class Request:
    """One HTTP request the bot made, and what the fake answered."""

    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    headers: dict[str, str]
    json: Any | None  # JSON body, or the parsed payload_json of a multipart body
    parts: list[Part]
    files: list[Part]
    status: int = 0
    response: Any | None = None
    at: float = field(default_factory=time.monotonic)  # when the request arrived
    body_at: float = 0.0  # when its body (files included) had been read

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path} -> {self.status}>"


class Interaction:
    """One interaction the fake sent to the bot, and everything the bot did with its token."""

    def __init__(
        self,
        *,
        id: int,
        token: str,
        type: int,
        data: dict[str, Any],
        user: dict[str, Any],
        payload: dict[str, Any],
        message_id: int | None = None,
    ) -> None:
        self.id = id
        self.token = token
        self.type = type
        self.data = data
        self.user = user
        self.payload = payload  # the full INTERACTION_CREATE data
        self.message_id = message_id  # the message a component sits on
        self.created = time.monotonic()
        self.callback: Request | None = None
        self.original_id: int | None = None
        self.followups: list[int] = []
        self._requests: list[Request] = []
        self._messages: dict[int, dict[str, Any]] | None = None

    @property
    def requests(self) -> list[Request]:
        """Every request made with this interaction's token, in order (429s and errors included)."""
        return list(self._requests)

    @property
    def original(self) -> dict[str, Any] | None:
        """The current ``@original`` message object, if it exists."""
        if self.original_id is None or self._messages is None:
            return None
        return self._messages.get(self.original_id)

    @property
    def acknowledged(self) -> bool:
        return self.callback is not None and 200 <= self.callback.status < 300

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot answered with (callback type 9), if any."""
        body = self.callback.json if self.callback is not None and self.acknowledged else None
        if isinstance(body, dict) and body.get("type") == CB_MODAL:
            return body.get("data")
        return None

    def __repr__(self) -> str:
        return f"<Interaction id={self.id} type={self.type} requests={len(self._requests)}>"


# --------------------------------------------------------------------------------------------------------------------
# internals


_Problem = tuple[tuple[str | int, ...], str, str]  # (path in the JSON body, error code, message)


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


def _form_error(path: tuple[str | int, ...], code: str, message: str) -> _ApiError:
    return _form_errors([(path, code, message)])


def _form_errors(items: list[_Problem]) -> _ApiError:
    tree: dict[str, Any] = {}
    for path, code, message in items:
        node = tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
    return _ApiError(400, 50035, "Invalid Form Body", tree)


def _too_long(path: tuple[str | int, ...], limit: int) -> _Problem:
    return (path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _bad_length(path: tuple[str | int, ...], low: int, high: int) -> _Problem:
    return (path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def _iso(ts: float | None = None) -> str:
    when = dt.datetime.fromtimestamp(time.time() if ts is None else ts, tz=dt.UTC)
    return when.isoformat(timespec="microseconds")


def _walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for component in components or []:
        yield component
        yield from _walk_components(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            yield from _walk_components([component["component"]])
        if isinstance(component.get("accessory"), dict):
            yield from _walk_components([component["accessory"]])


class _Snowflakes:
    def __init__(self) -> None:
        self._last = 0
        self._increment = 0

    def next(self) -> int:
        self._increment = (self._increment + 1) & 0xFFF
        value = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (1 << 17) | (1 << 12) | self._increment
        value = max(value, self._last + 1)
        self._last = value
        return value


@dataclass
class _Blob:
    filename: str
    data: bytes
    content_type: str


@dataclass
class _MessageMeta:
    ephemeral: bool
    interaction: Interaction | None
    loading: bool = False


@dataclass
class _Injection:
    method: str
    path_re: re.Pattern[str]
    count: int
    retry_after: float | None = None  # set for 429s
    status: int = 429
    code: int = 0
    message: str = "You are being rate limited."


class _GatewaySession:
    def __init__(self, session_id: str, intents: int) -> None:
        self.session_id = session_id
        self.intents = intents
        self.seq = 0
        self.buffer: list[dict[str, Any]] = []
        self.conn: _GatewayConn | None = None
        self.dead = False


class _GatewayConn:
    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.zlib = zlib.compressobj() if compress else None
        self.session: _GatewaySession | None = None
        self.closed_by_fake = False
        self.writer: asyncio.Task[None] | None = None

    def send(self, frame: dict[str, Any]) -> None:
        self.queue.put_nowait(frame)


_Handler = Callable[[Request, re.Match[str]], tuple[int, Any]]


# --------------------------------------------------------------------------------------------------------------------
# the fake


class FakeDiscord:
    """A fake Discord API + gateway serving one guild with one text channel, for one bot application."""

    def __init__(
        self,
        *,
        interaction_deadline: float = 3.0,
        token_ttl: float = 900.0,
        attachment_size_limit: int = 10 * 2**20,
    ) -> None:
        self.interaction_deadline = interaction_deadline
        self.token_ttl = token_ttl
        self.attachment_size_limit = attachment_size_limit
        self._ids = _Snowflakes()
        self._blobs: dict[int, _Blob] = {}
        self._meta: dict[int, _MessageMeta] = {}
        self._by_token: dict[str, Interaction] = {}
        self._injections: list[_Injection] = []
        self._sessions: dict[str, _GatewaySession] = {}
        self._conns: set[_GatewayConn] = set()

        self.application_id = self._ids.next()
        self.bot_user_id = self.application_id
        self.guild_id = self._ids.next()
        self.channel_id = self._ids.next()
        token_head = base64.b64encode(str(self.application_id).encode()).decode().rstrip("=")
        self.token = f"{token_head}.{secrets.token_urlsafe(5)[:6]}.{secrets.token_urlsafe(29)[:38]}"
        self.url = ""

        self.requests: list[Request] = []
        self.unhandled: list[Request] = []
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self.interactions: list[Interaction] = []
        self.gateway_log: list[tuple[str, dict[str, Any]]] = []  # ("recv" | "send", frame)
        self.gateway_connections: list[dict[str, str]] = []  # the query of every gateway websocket connect
        self.ready_at: list[float] = []  # time.monotonic() when each READY had been sent
        self.user_installs: set[int] = set()  # members who installed the app to their account (install_for)

        self.bot_user: dict[str, Any] = {
            "id": str(self.bot_user_id),
            "username": "FakeBot",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "public_flags": 0,
            "flags": 0,
        }
        self._users: dict[int, dict[str, Any]] = {self.bot_user_id: self.bot_user}
        self._locales: dict[int, str] = {}  # a user's client language, sent as each interaction's "locale"
        self._members: dict[int, dict[str, Any]] = {}
        self._add_member(self.bot_user)
        self.default_user = self.make_user(name="tester")
        self.channels: dict[int, dict[str, Any]] = {
            self.channel_id: {
                "id": str(self.channel_id),
                "type": 0,
                "guild_id": str(self.guild_id),
                "name": "general",
                "position": 0,
                "parent_id": None,
                "topic": None,
                "nsfw": False,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "permission_overwrites": [],
                "flags": 0,
            }
        }
        self.roles: list[dict[str, Any]] = [self._role(self.guild_id, "@everyone", EVERYONE_PERMISSIONS)]

        self._activity = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._saved: tuple[str, yarl.URL] | None = None
        self._routes: list[tuple[str, re.Pattern[str], bool, _Handler]] = []
        self._setup_routes()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Serve on 127.0.0.1 (random port) and point discord.py at the fake."""
        app = web.Application(client_max_size=MAX_REQUEST_SIZE + 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = self.url + API_PREFIX
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.ws_url)

    async def stop(self) -> None:
        """Stop serving and restore discord.py's URLs."""
        for conn in list(self._conns):
            conn.closed_by_fake = True
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"fake discord stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._saved is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/"

    # ---------------------------------------------------------------- state helpers

    def _role(self, role_id: int, name: str, permissions: str) -> dict[str, Any]:
        return {
            "id": str(role_id),
            "name": name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": 0,
            "permissions": permissions,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    def _add_member(self, user: dict[str, Any]) -> dict[str, Any]:
        member = {
            "user": user,
            "nick": None,
            "avatar": None,
            "banner": None,
            "roles": [],
            "joined_at": _iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        self._members[int(user["id"])] = member
        return member

    def make_user(self, user_id: int | None = None, name: str = "member", locale: str = "en-US") -> dict[str, Any]:
        """A guild member's user payload (the member is added to the guild); `locale` is their client's language."""
        uid = user_id if user_id is not None else self._ids.next()
        self._locales[uid] = locale
        user = {
            "id": str(uid),
            "username": name.lower(),
            "discriminator": "0",
            "global_name": name,
            "avatar": None,
            "bot": False,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
        }
        self._users[uid] = user
        member = self._add_member(user)
        for session in self._live_sessions():
            if session.intents & INTENT_GUILD_MEMBERS:
                self._dispatch_to(session, "GUILD_MEMBER_ADD", {**member, "guild_id": str(self.guild_id)})
        return user

    def install_for(self, user: dict[str, Any]) -> None:
        """The member installs the app to their account: its user-installable commands follow them everywhere."""
        self.user_installs.add(int(user["id"]))

    def add_private_channel(self, *users: dict[str, Any]) -> int:
        """A group DM of these members (the bot is not in it): an app reaches it only through interactions."""
        cid = self._ids.next()
        self.channels[cid] = {
            "id": str(cid),
            "type": 3,
            "flags": 0,
            "last_message_id": None,
            "recipients": list(users),
            "owner_id": str(users[0]["id"]),
            "name": None,
            "icon": None,
        }
        return cid

    def cdn_url(self, attachment_id: int, filename: str) -> str:
        return f"{self.url}/cdn/attachments/{attachment_id}/{filename}"

    def _attachment(
        self, filename: str, data: bytes, *, ephemeral: bool = False, description: str | None = None
    ) -> dict[str, Any]:
        aid = self._ids.next()
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        self._blobs[aid] = _Blob(filename, data, content_type)
        obj: dict[str, Any] = {
            "id": str(aid),
            "filename": filename,
            "size": len(data),
            "url": self.cdn_url(aid, filename),
            "proxy_url": f"{self.url}/media/attachments/{aid}/{filename}",
            "content_type": content_type,
        }
        if description:
            obj["description"] = description
        if ephemeral:
            obj["ephemeral"] = True
        return obj

    def _guild_create(self) -> dict[str, Any]:
        return {
            "id": str(self.guild_id),
            "name": "Fake Guild",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": self.default_user["id"],
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": self.roles,
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(self.channel_id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "joined_at": _iso(),
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(self._members),
            "members": list(self._members.values()),
            "channels": [{k: v for k, v in c.items() if k != "guild_id"} for c in self.channels.values()],
            "threads": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "incidents_data": None,
        }

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": "FakeBot",
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot": self.bot_user,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.default_user,
            "team": None,
            "verify_key": secrets.token_hex(32),
            "flags": 0,
            "hook": True,
            "is_monetized": False,
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "redirect_uris": [],
            "tags": [],
            "approximate_guild_count": 1,
            "integration_types_config": {"0": {}},
        }

    # ---------------------------------------------------------------- HTTP plumbing

    def _setup_routes(self) -> None:
        app, num, tok = r"(?P<app>\d+)", r"(?P<{}>\d+)", r"(?P<token>[^/]+)"
        table: list[tuple[str, str, bool, _Handler]] = [
            ("GET", r"/users/@me", True, self._h_me),
            ("GET", r"/oauth2/applications/@me", True, self._h_application),
            ("GET", r"/applications/@me", True, self._h_application),
            ("GET", r"/gateway", False, self._h_gateway),
            ("GET", r"/gateway/bot", True, self._h_gateway_bot),
            ("PUT", rf"/applications/{app}/commands", True, self._h_put_commands),
            ("GET", rf"/applications/{app}/commands", True, self._h_get_commands),
            ("PUT", rf"/applications/{app}/guilds/{num.format('guild')}/commands", True, self._h_put_commands),
            ("GET", rf"/applications/{app}/guilds/{num.format('guild')}/commands", True, self._h_get_commands),
            ("POST", rf"/interactions/{num.format('iid')}/{tok}/callback", False, self._h_callback),
            ("POST", rf"/webhooks/{app}/{tok}", False, self._h_followup),
            ("GET", rf"/webhooks/{app}/{tok}/messages/(?P<mid>@original|\d+)", False, self._h_webhook_get),
            ("PATCH", rf"/webhooks/{app}/{tok}/messages/(?P<mid>@original|\d+)", False, self._h_webhook_edit),
            ("DELETE", rf"/webhooks/{app}/{tok}/messages/(?P<mid>@original|\d+)", False, self._h_webhook_delete),
            ("POST", r"/users/@me/channels", True, self._h_open_dm),
            ("GET", rf"/users/{num.format('uid')}", True, self._h_user_get),
            ("GET", rf"/guilds/{num.format('guild')}/members/{num.format('uid')}", True, self._h_member_get),
            ("GET", rf"/channels/{num.format('cid')}", True, self._h_channel_get),
            ("POST", rf"/channels/{num.format('cid')}/typing", True, self._h_typing),
            ("POST", rf"/channels/{num.format('cid')}/messages", True, self._h_channel_send),
            ("GET", rf"/channels/{num.format('cid')}/messages", True, self._h_channel_history),
            ("GET", rf"/channels/{num.format('cid')}/messages/{num.format('mid')}", True, self._h_channel_msg_get),
            ("PATCH", rf"/channels/{num.format('cid')}/messages/{num.format('mid')}", True, self._h_channel_msg_edit),
            ("DELETE", rf"/channels/{num.format('cid')}/messages/{num.format('mid')}", True, self._h_channel_msg_del),
            ("GET", r"/cdn/attachments/(?P<aid>\d+)/(?P<filename>[^/]+)", False, self._h_cdn),
            ("GET", r"/media/attachments/(?P<aid>\d+)/(?P<filename>[^/]+)", False, self._h_cdn),
        ]
        self._routes = [(method, re.compile(pattern + "$"), auth, handler) for method, pattern, auth, handler in table]

    def _touch(self) -> None:
        self._activity.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._gateway(request)
        path = request.path
        if path.startswith(API_PREFIX):
            path = path[len(API_PREFIX) :]
        rec = Request(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=None,
            parts=[],
            files=[],
        )
        self.requests.append(rec)
        interaction = self._interaction_for_path(path)
        if interaction is not None:
            interaction._requests.append(rec)
        try:
            await self._read_body(request, rec)
            rec.body_at = time.monotonic()
            status, body = self._route(rec)
        except _ApiError as exc:
            status, body = exc.status, exc.body
        rec.status, rec.response = status, body
        self._touch()
        return self._respond(rec, status, body)

    def _respond(self, rec: Request, status: int, body: Any) -> web.Response:
        headers: dict[str, str] = {}
        if status == 429:
            retry_after = float(body["retry_after"])
            headers = {
                "Via": "1.1 google",
                "Retry-After": str(max(1, int(retry_after + 0.999))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Bucket": "fakebucket" + str(abs(hash(rec.path)) % 10**8),
                "X-RateLimit-Scope": "user",
            }
        if body is None:
            return web.Response(status=status, headers=headers)
        if isinstance(body, bytes):
            blob_type = headers.get("Content-Type") or self._cdn_type(rec.path)
            return web.Response(status=status, body=body, headers={**headers, "Content-Type": blob_type})
        headers["Content-Type"] = "application/json"  # exactly this: discord.py compares the header string
        return web.Response(status=status, body=json.dumps(body).encode(), headers=headers)

    def _cdn_type(self, path: str) -> str:
        match = re.search(r"/attachments/(\d+)/", path)
        blob = self._blobs.get(int(match.group(1))) if match else None
        return blob.content_type if blob else "application/octet-stream"

    async def _read_body(self, request: web.Request, rec: Request) -> None:
        if not request.can_read_body:
            return
        content_type = request.content_type
        if content_type.startswith("multipart/"):
            total = 0
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                data = bytes(await part.read(decode=False))
                total += len(data)
                if total > MAX_REQUEST_SIZE:
                    raise _ApiError(413, 40005, "Request entity too large")
                rec.parts.append(Part(part.name or "", part.filename, part.headers.get("Content-Type"), data))
            rec.files = [p for p in rec.parts if p.name.startswith("files[")]
            payload = next((p for p in rec.parts if p.name == "payload_json"), None)
            if payload is not None:
                rec.json = json.loads(payload.data)
            return
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _ApiError(413, 40005, "Request entity too large") from None
        if raw:
            try:
                rec.json = json.loads(raw)
            except ValueError:
                raise _ApiError(400, 50109, "The request body contains invalid JSON.") from None

    def _route(self, rec: Request) -> tuple[int, Any]:
        for injection in self._injections:
            if injection.count > 0 and injection.method == rec.method and injection.path_re.search(rec.path):
                injection.count -= 1
                if injection.retry_after is not None:
                    return 429, {"message": injection.message, "retry_after": injection.retry_after, "global": False}
                raise _ApiError(injection.status, injection.code, injection.message)
        path_matched = False
        for method, pattern, needs_auth, handler in self._routes:
            match = pattern.match(rec.path)
            if match is None:
                continue
            path_matched = True
            if method != rec.method:
                continue
            if needs_auth and rec.headers.get("Authorization") != f"Bot {self.token}":
                raise _ApiError(401, 0, "401: Unauthorized")
            return handler(rec, match)
        self.unhandled.append(rec)
        if path_matched:
            raise _ApiError(405, 0, "405: Method Not Allowed")
        raise _ApiError(404, 0, "404: Not Found")

    def _interaction_for_path(self, path: str) -> Interaction | None:
        match = re.match(r"/(?:interactions/\d+|webhooks/\d+)/([^/]+)", path)
        return self._by_token.get(match.group(1)) if match else None

    # ---------------------------------------------------------------- test-side controls

    def forget_files(self) -> None:
        """Drop the bytes of every recorded upload (names and sizes stay); keeps long benchmarks small."""
        for rec in self.requests:
            for part in rec.parts:
                if part.name.startswith("files["):
                    part.data = b""
        self._blobs.clear()

    def inject_rate_limit(self, method: str, path_re: str, *, retry_after: float = 0.2, count: int = 1) -> None:
        """Answer the next ``count`` matching requests with a 429 (JSON body, ``Via`` and X-RateLimit headers)."""
        self._injections.append(_Injection(method.upper(), re.compile(path_re), count, retry_after=retry_after))

    def inject_error(self, method: str, path_re: str, *, status: int, code: int, message: str, count: int = 1) -> None:
        """Answer the next ``count`` matching requests with ``{"message", "code"}`` and ``status``."""
        self._injections.append(
            _Injection(method.upper(), re.compile(path_re), count, status=status, code=code, message=message)
        )

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` is true; re-checked on every request and gateway frame, and every 10 ms."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(self._describe_timeout(predicate, timeout))
            self._activity.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._activity.wait(), timeout=min(0.01, remaining))

    def _describe_timeout(self, predicate: Callable[[], bool], timeout: float) -> str:
        try:
            source = inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            source = repr(predicate)
        recent = "\n".join(f"  {r.method} {r.path} -> {r.status} {str(r.response)[:200]}" for r in self.requests[-8:])
        return (
            f"condition not met within {timeout}s: {source}\n"
            f"last requests:\n{recent or '  (none)'}\nunhandled: {self.unhandled}"
        )

    def delete_message(self, message_id: int) -> None:
        """Delete a message as a member or moderator would (the bot gets MESSAGE_DELETE; edits then get 404 10008)."""
        self._delete_message(message_id)

    async def disconnect_gateway(self, code: int = 4000) -> None:
        """Close the bot's gateway socket with ``code``; the session stays resumable (discord.py sends RESUME)."""
        conns = [c for c in self._conns if c.session is not None]
        assert conns, "no gateway connection to drop"
        for conn in conns:
            conn.closed_by_fake = True
            await conn.ws.close(code=code, message=b"fake disconnect")

    @property
    def resumes(self) -> int:
        """How many RESUMED events the fake has sent."""
        return sum(1 for d, f in self.gateway_log if d == "send" and f.get("t") == "RESUMED")

    async def send_user_message(
        self, content: str, *, user: dict[str, Any] | None = None, channel_id: int | None = None
    ) -> dict[str, Any]:
        """A guild member posts ``content`` in a channel (dispatched as MESSAGE_CREATE)."""
        author = user or self.default_user
        cid = channel_id or self.channel_id
        message = self._new_message_object(self._ids.next(), cid, author, message_type=0)
        message["content"] = content
        self.messages[int(message["id"])] = message
        self._meta[int(message["id"])] = _MessageMeta(ephemeral=False, interaction=None)
        self._dispatch_message("MESSAGE_CREATE", message)
        return message

    # ---------------------------------------------------------------- gateway

    def _live_sessions(self) -> list[_GatewaySession]:
        return [s for s in self._sessions.values() if not s.dead]

    def _dispatch_to(self, session: _GatewaySession, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
        session.buffer.append(frame)
        del session.buffer[:-1000]
        if session.conn is not None:
            session.conn.send(frame)

    def _dispatch(self, event: str, data: dict[str, Any], *, intent: int = 0) -> None:
        for session in self._live_sessions():
            if not intent or session.intents & intent:
                self._dispatch_to(session, event, data)

    def _dispatch_message(self, event: str, message: dict[str, Any]) -> None:
        channel = self.channels.get(int(message["channel_id"]))
        data = dict(message)
        if channel is not None and channel.get("guild_id"):
            data["guild_id"] = channel["guild_id"]
            member = self._members.get(int(message["author"]["id"]))
            if member is not None:
                data["member"] = {k: v for k, v in member.items() if k != "user"}
            self._dispatch(event, data, intent=INTENT_GUILD_MESSAGES)
        else:
            self._dispatch(event, data, intent=INTENT_DIRECT_MESSAGES)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.gateway_connections.append(dict(request.query))
        conn = _GatewayConn(ws, compress=request.query.get("compress") == "zlib-stream")
        self._conns.add(conn)
        conn.writer = asyncio.create_task(self._gateway_writer(conn))
        conn.send({"op": OP_HELLO, "s": None, "t": None, "d": {"heartbeat_interval": 41250, "_trace": ["fake"]}})
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                self.gateway_log.append(("recv", frame))
                self._touch()
                await self._gateway_op(conn, frame)
        finally:
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await conn.writer
            self._conns.discard(conn)
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                if not conn.closed_by_fake and ws.close_code in (1000, 1001):
                    session.dead = True  # a clean close by the client ends the session
            self._touch()
        return ws

    async def _gateway_writer(self, conn: _GatewayConn) -> None:
        while (frame := await conn.queue.get()) is not None:
            text = json.dumps(frame, separators=(",", ":"))
            try:
                if conn.zlib is not None:
                    data = conn.zlib.compress(text.encode()) + conn.zlib.flush(zlib.Z_SYNC_FLUSH)
                    await conn.ws.send_bytes(data)
                else:
                    await conn.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            self.gateway_log.append(("send", frame))
            if frame.get("t") == "READY":
                self.ready_at.append(time.monotonic())
            self._touch()

    async def _gateway_op(self, conn: _GatewayConn, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        raw = frame.get("d")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if op == OP_HEARTBEAT:
            conn.send({"op": OP_HEARTBEAT_ACK, "s": None, "t": None, "d": None})
        elif op == OP_IDENTIFY:
            if data.get("token") != self.token:
                await conn.ws.close(code=4004, message=b"Authentication failed.")
                return
            session = _GatewaySession(secrets.token_hex(16), int(data.get("intents", 0)))
            self._sessions[session.session_id] = session
            session.conn = conn
            conn.session = session
            ready = {
                "v": 10,
                "user": {**self.bot_user, "verified": True, "mfa_enabled": False, "email": None},
                "user_settings": {},
                "guilds": [{"id": str(self.guild_id), "unavailable": True}],
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": self.ws_url,
                "application": {"id": str(self.application_id), "flags": 0},
                "shard": data.get("shard") or [0, 1],
                "auth": {},
                "geo_ordered_rtc_regions": ["fake"],
                "_trace": ["fake"],
            }
            self._dispatch_to(session, "READY", ready)
            self._dispatch_to(session, "GUILD_CREATE", self._guild_create())
        elif op == OP_RESUME:
            session = self._sessions.get(str(data.get("session_id")))
            if data.get("token") != self.token or session is None or session.dead:
                conn.send({"op": OP_INVALID_SESSION, "s": None, "t": None, "d": False})
                return
            if session.conn is not None and session.conn is not conn:
                session.conn.closed_by_fake = True
                await session.conn.ws.close(code=4000)
            session.conn = conn
            conn.session = session
            last = int(data.get("seq") or 0)
            for missed in session.buffer:
                if missed["s"] > last:
                    conn.send(missed)
            self._dispatch_to(session, "RESUMED", {"_trace": ["fake"]})
        elif op == OP_REQUEST_MEMBERS:
            self._members_chunk(conn, data)
        elif op in (OP_PRESENCE, OP_VOICE):
            return
        else:
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    def _members_chunk(self, conn: _GatewayConn, data: dict[str, Any]) -> None:
        if conn.session is None:
            return
        members = list(self._members.values())
        if data.get("user_ids"):
            wanted = {int(u) for u in data["user_ids"]}
            members = [m for m in members if int(m["user"]["id"]) in wanted]
        elif data.get("query"):
            query = str(data["query"]).lower()
            members = [m for m in members if m["user"]["username"].startswith(query)]
        if data.get("limit"):
            members = members[: int(data["limit"])]
        chunk: dict[str, Any] = {
            "guild_id": str(self.guild_id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        if data.get("presences"):
            chunk["presences"] = []
        self._dispatch_to(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    # ---------------------------------------------------------------- REST: login

    def _h_me(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        return 200, {**self.bot_user, "verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"}

    def _h_application(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        return 200, self._application()

    def _h_gateway(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        return 200, {"url": self.ws_url.rstrip("/")}

    def _h_gateway_bot(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return 200, {"url": self.ws_url.rstrip("/"), "shards": 1, "session_start_limit": limit}

    # ---------------------------------------------------------------- REST: commands

    def _check_app(self, m: re.Match[str]) -> int | None:
        if int(m.group("app")) != self.application_id:
            raise _ApiError(403, 50001, "Missing Access")
        guild = m.groupdict().get("guild")
        if guild is not None and int(guild) != self.guild_id:
            raise _ApiError(403, 50001, "Missing Access")
        return int(guild) if guild is not None else None

    def _h_get_commands(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        return 200, self.commands.get(self._check_app(m), [])

    def _h_put_commands(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        guild = self._check_app(m)
        body = rec.json
        if not isinstance(body, list):
            raise _form_error((), "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        problems: list[_Problem] = []
        seen: set[tuple[int, str]] = set()
        for index, command in enumerate(body):
            problems += self._validate_command(command, (index,))
            key = (int(command.get("type", 1)), str(command.get("name")))
            if key in seen:
                problems.append(
                    ((index, "name"), "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
                )
            seen.add(key)
        for kind in (1, 2, 3):
            if sum(1 for c in body if int(c.get("type", 1)) == kind) > (100 if kind == 1 else 15):
                problems.append(((), "APPLICATION_COMMAND_TOO_MANY", "Too many application commands"))
        if problems:
            raise _form_errors(problems)
        previous = {(int(c.get("type", 1)), c["name"]): c for c in self.commands.get(guild, [])}
        stored: list[dict[str, Any]] = []
        for command in body:
            kind = int(command.get("type", 1))
            old = previous.get((kind, command["name"]))
            out: dict[str, Any] = {
                "id": old["id"] if old else str(self._ids.next()),
                "application_id": str(self.application_id),
                "version": str(self._ids.next()),
                "type": kind,
                "name": command["name"],
                "description": command.get("description", ""),
                "default_member_permissions": command.get("default_member_permissions"),
                "nsfw": bool(command.get("nsfw", False)),
                "contexts": command.get("contexts"),
                "integration_types": command.get("integration_types") or [0],
            }
            if command.get("options"):
                out["options"] = command["options"]
            for key in ("name_localizations", "description_localizations"):
                if command.get(key):
                    out[key] = command[key]
            if guild is None:
                out["dm_permission"] = command.get("dm_permission", True)
            else:
                out["guild_id"] = str(guild)
            stored.append(out)
        self.commands[guild] = stored
        return 200, stored

    def _validate_command(self, command: dict[str, Any], path: tuple[str | int, ...]) -> list[_Problem]:
        problems: list[_Problem] = []
        kind = int(command.get("type", 1))
        name = command.get("name")
        description = command.get("description", "")
        if kind == 1:
            if not isinstance(name, str) or not COMMAND_NAME_RE.match(name) or name != name.lower():
                problems.append(((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"))
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                problems.append(_bad_length((*path, "description"), 1, 100))
            problems += self._validate_options(command.get("options") or [], (*path, "options"))
        else:
            if not isinstance(name, str) or not 1 <= len(name) <= 32:
                problems.append(_bad_length((*path, "name"), 1, 32))
            if description:
                problems.append(
                    (
                        (*path, "description"),
                        "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                        "Context menu commands cannot have description",
                    )
                )
        return problems

    def _validate_options(self, options: list[dict[str, Any]], path: tuple[str | int, ...]) -> list[_Problem]:
        problems: list[_Problem] = []
        if len(options) > 25:
            problems.append(_too_long(path, 25))
        names: set[str] = set()
        seen_optional = False
        for index, option in enumerate(options):
            where = (*path, index)
            name = option.get("name")
            if not isinstance(name, str) or not COMMAND_NAME_RE.match(name) or name != name.lower():
                problems.append(((*where, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"))
            elif name in names:
                problems.append(
                    ((*where, "name"), "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME", "Option names must be unique")
                )
            names.add(str(name))
            description = option.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                problems.append(_bad_length((*where, "description"), 1, 100))
            kind = option.get("type")
            if kind in (OPT_SUB, OPT_GROUP):
                problems += self._validate_options(option.get("options") or [], (*where, "options"))
                continue
            if option.get("required"):
                if seen_optional:
                    problems.append(
                        (
                            (*where, "required"),
                            "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                            "Required options must be placed before non-required options",
                        )
                    )
            else:
                seen_optional = True
            for key, low in (("min_length", 0), ("max_length", 1)):
                value = option.get(key)
                if value is not None and not low <= int(value) <= 6000:
                    problems.append(((*where, key), "NUMBER_TYPE_MAX", f"int value should be between {low} and 6000."))
            choices = option.get("choices") or []
            if len(choices) > 25:
                problems.append(_too_long((*where, "choices"), 25))
            if choices and option.get("autocomplete"):
                problems.append(
                    (
                        (*where, "autocomplete"),
                        "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
                        "Autocomplete cannot be set with choices",
                    )
                )
            for cindex, choice in enumerate(choices):
                if not 1 <= len(str(choice.get("name", ""))) <= 100:
                    problems.append(_bad_length((*where, "choices", cindex, "name"), 1, 100))
                if kind == OPT_STRING and len(str(choice.get("value", ""))) > 100:
                    problems.append(_too_long((*where, "choices", cindex, "value"), 100))
        return problems

    # ---------------------------------------------------------------- messages

    def _new_message_object(
        self,
        mid: int,
        channel_id: int,
        author: dict[str, Any],
        *,
        message_type: int,
        interaction: Interaction | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": str(mid),
            "type": message_type,
            "content": "",
            "channel_id": str(channel_id),
            "author": author,
            "attachments": [],
            "embeds": [],
            "components": [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": _iso(),
            "edited_timestamp": None,
            "flags": 0,
        }
        if interaction is not None:
            message["webhook_id"] = str(self.application_id)
            message["application_id"] = str(self.application_id)
            metadata: dict[str, Any] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.user,
                "authorizing_integration_owners": interaction.payload.get("authorizing_integration_owners", {}),
            }
            if interaction.type == IT_COMMAND:
                metadata["name"] = interaction.data.get("name")
                metadata["command_type"] = interaction.data.get("type", 1)
            if interaction.message_id is not None:
                metadata["interacted_message_id"] = str(interaction.message_id)
            if interaction.original_id is not None and interaction.original_id != mid:
                metadata["original_response_message_id"] = str(interaction.original_id)
            message["interaction_metadata"] = metadata
        return message

    def _validate_and_merge(
        self,
        base: dict[str, Any],
        payload: dict[str, Any],
        files: list[Part],
        prefix: tuple[str | int, ...],
        *,
        editing: bool,
    ) -> tuple[dict[str, Any], list[tuple[str, bytes, str | None]]]:
        """Check Discord's limits on a create/edit and return the resulting message plus the new files to store."""
        for part in files:
            if len(part.data) > self.attachment_size_limit:
                raise _ApiError(413, 40005, "Request entity too large")
        problems: list[_Problem] = []
        if len(files) > 10:
            problems.append(_too_long((*prefix, "attachments"), 10))
        result = dict(base)
        if "content" in payload:
            content = payload["content"] or ""
            if len(str(content)) > 2000:
                problems.append(_too_long((*prefix, "content"), 2000))
            result["content"] = str(content)
        if "embeds" in payload:
            embeds = payload["embeds"] or []
            problems += self._embed_problems(embeds, (*prefix, "embeds"))
            result["embeds"] = [{"type": "rich", **e} for e in embeds]
        if "components" in payload:
            components = payload["components"] or []
            flags = int(payload.get("flags") or base.get("flags") or 0)
            problems += self._component_problems(components, (*prefix, "components"), flags)
            result["components"] = components
        new_files: list[tuple[str, bytes, str | None]] = []
        by_index = {}
        for part in files:
            match = re.fullmatch(r"files\[(\d+)\]", part.name)
            by_index[int(match.group(1)) if match else len(by_index)] = part
        listed = payload.get("attachments")
        if listed is None:
            kept = list(base.get("attachments", [])) if editing else []
            new_files = [(p.filename or "file", p.data, None) for p in files]
        else:
            existing = {str(a["id"]): a for a in base.get("attachments", [])} if editing else {}
            kept = []
            used: set[int] = set()
            for index, entry in enumerate(listed):
                ident = str(entry.get("id"))
                if ident in existing:
                    kept.append(existing[ident])
                elif ident.isdigit() and int(ident) in by_index:
                    part = by_index[int(ident)]
                    used.add(int(ident))
                    new_files.append(
                        (entry.get("filename") or part.filename or "file", part.data, entry.get("description"))
                    )
                else:
                    problems.append(((*prefix, "attachments", index), "ATTACHMENT_NOT_FOUND", "Unknown attachment"))
            new_files += [(p.filename or "file", p.data, None) for i, p in by_index.items() if i not in used]
        if len(kept) + len(new_files) > 10 and len(files) <= 10:
            problems.append(_too_long((*prefix, "attachments"), 10))
        if problems:
            raise _form_errors(problems)
        result["attachments"] = kept
        if editing:
            flags = int(base.get("flags", 0))
            if "flags" in payload and payload["flags"] is not None:
                wanted = int(payload["flags"])
                flags = (
                    (flags & ~FLAG_SUPPRESS_EMBEDS) | (wanted & FLAG_SUPPRESS_EMBEDS) | (wanted & FLAG_COMPONENTS_V2)
                )
            result["flags"] = flags & ~FLAG_LOADING
        # With IS_COMPONENTS_V2 "the content and embeds fields will no longer work", and a message edited into
        # one must set them to null (components reference); a v2 message keeps its flag, so never gets them back.
        if int(result.get("flags") or 0) & FLAG_COMPONENTS_V2:
            upgraded = editing and not int(base.get("flags") or 0) & FLAG_COMPONENTS_V2
            for key in ("content", "embeds"):
                if result.get(key) or (upgraded and key == "content" and key not in payload):
                    raise _form_error(
                        (*prefix, key),
                        "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                        f"The '{key}' field cannot be used when using MessageFlags.IS_COMPONENTS_V2",
                    )
        return result, new_files

    def _embed_problems(self, embeds: list[dict[str, Any]], path: tuple[str | int, ...]) -> list[_Problem]:
        problems: list[_Problem] = []
        if len(embeds) > 10:
            problems.append(_too_long(path, 10))
        total = 0
        for index, embed in enumerate(embeds):
            where = (*path, index)
            for key, limit in EMBED_LIMITS.items():
                text = str(embed.get(key) or "")
                total += len(text.strip())
                if len(text) > limit:
                    problems.append(_too_long((*where, key), limit))
            for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
                text = str((embed.get(key) or {}).get(sub) or "")
                total += len(text.strip())
                if len(text) > limit:
                    problems.append(_too_long((*where, key, sub), limit))
            fields = embed.get("fields") or []
            if len(fields) > 25:
                problems.append(_too_long((*where, "fields"), 25))
            for findex, fld in enumerate(fields):
                for key, limit in (("name", 256), ("value", 1024)):
                    text = str(fld.get(key) or "")
                    total += len(text.strip())
                    if not text.strip():
                        problems.append(
                            ((*where, "fields", findex, key), "BASE_TYPE_REQUIRED", "This field is required")
                        )
                    elif len(text) > limit:
                        problems.append(_too_long((*where, "fields", findex, key), limit))
        if total > 6000:
            problems.append((path, "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"))
        return problems

    def _component_problems(
        self, components: list[dict[str, Any]], path: tuple[str | int, ...], flags: int
    ) -> list[_Problem]:
        problems: list[_Problem] = []
        if flags & FLAG_COMPONENTS_V2:
            problems += self._v2_problems(components, path)
        elif len(components) > 5:
            problems.append(_too_long(path, 5))
        custom_ids: set[str] = set()
        if not flags & FLAG_COMPONENTS_V2 and any(c.get("type") in V2_TYPES for c in _walk_components(components)):
            problems.append((path, "COMPONENT_TYPE_INVALID", "Components v2 need the IS_COMPONENTS_V2 flag"))
        for index, row in enumerate(components):
            if not flags & FLAG_COMPONENTS_V2 and row.get("type") != 1:
                problems.append(
                    (
                        (*path, index, "type"),
                        "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                        "Top-level components must be action rows",
                    )
                )
            if row.get("type") == 1 and len(row.get("components") or []) > 5:
                problems.append(_too_long((*path, index, "components"), 5))
        for component in _walk_components(components):
            custom_id = component.get("custom_id")
            if custom_id is None:
                continue
            if len(str(custom_id)) > 100:
                problems.append(((*path, "custom_id"), "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."))
            if custom_id in custom_ids:
                problems.append(
                    ((*path, "custom_id"), "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
                )
            custom_ids.add(custom_id)
        return problems

    @staticmethod
    def _v2_problems(components: list[dict[str, Any]], path: tuple[str | int, ...]) -> list[_Problem]:
        """Discord's limits on a Components-v2 message (components reference, "Message limits" and each type's)."""
        problems: list[_Problem] = []
        every = list(_walk_components(components))
        if len(every) > V2_MAX_COMPONENTS:
            problems.append((path, "COMPONENT_MAX_TOTAL_COMPONENTS_EXCEEDED", "Must be 40 or fewer in total."))
        low, high = GALLERY_ITEMS
        for index, component in enumerate(every):
            if component.get("type") == MEDIA_GALLERY and not low <= len(component.get("items") or []) <= high:
                problems.append(_bad_length((*path, index, "items"), low, high))
        # "The combined length of all text across all components cannot exceed 4000 characters."
        text = sum(len(str(c.get("content") or "")) for c in every if c.get("type") == TEXT_DISPLAY)
        if text > V2_MAX_TEXT:
            problems.append(
                (path, "COMPONENT_MAX_TOTAL_TEXT_EXCEEDED", f"Text displays must be {V2_MAX_TEXT} or fewer in total.")
            )
        return problems

    @staticmethod
    def _is_empty(message: dict[str, Any]) -> bool:
        return not (
            message.get("content")
            or message.get("embeds")
            or message.get("attachments")
            or message.get("components")
            or message.get("sticker_items")
            or message.get("poll")
        )

    def _store_new_files(self, message: dict[str, Any], new_files: list[tuple[str, bytes, str | None]]) -> None:
        ephemeral = bool(int(message.get("flags", 0)) & FLAG_EPHEMERAL)
        added = [self._attachment(name, data, ephemeral=ephemeral, description=desc) for name, data, desc in new_files]
        message["attachments"] = [*message["attachments"], *added]

    def _create_message(
        self,
        payload: dict[str, Any],
        files: list[Part],
        *,
        channel_id: int,
        prefix: tuple[str | int, ...] = (),
        interaction: Interaction | None = None,
        ephemeral_allowed: bool = False,
        loading: bool = False,
    ) -> dict[str, Any]:
        mid = self._ids.next()
        if interaction is not None:
            message_type = 20 if interaction.type == IT_COMMAND else 0
        else:
            message_type = 19 if payload.get("message_reference") else 0
        base = self._new_message_object(
            mid, channel_id, self.bot_user, message_type=message_type, interaction=interaction
        )
        flags = int(payload.get("flags") or 0)
        ephemeral = ephemeral_allowed and bool(flags & FLAG_EPHEMERAL)
        base["flags"] = (flags & CREATE_FLAGS) | (FLAG_EPHEMERAL if ephemeral else 0) | (FLAG_LOADING if loading else 0)
        message, new_files = self._validate_and_merge(base, payload, files, prefix, editing=False)
        if not loading and not new_files and self._is_empty(message):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        reference = payload.get("message_reference")
        if reference and reference.get("message_id"):
            referenced = self.messages.get(int(reference["message_id"]))
            if referenced is None and reference.get("fail_if_not_exists", True):
                raise _form_error(
                    (*prefix, "message_reference"), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            message["message_reference"] = {
                "type": 0,
                "message_id": str(reference["message_id"]),
                "channel_id": str(channel_id),
                "guild_id": str(self.guild_id),
            }
            message["referenced_message"] = referenced
        self._store_new_files(message, new_files)
        self.messages[mid] = message
        self._meta[mid] = _MessageMeta(ephemeral=ephemeral, interaction=interaction, loading=loading)
        if interaction is not None:
            interaction._messages = self.messages
        channel = self.channels.get(channel_id)
        if channel is not None and not ephemeral:
            channel["last_message_id"] = str(mid)
        if not ephemeral:
            self._dispatch_message("MESSAGE_CREATE", message)
        return message

    def _edit_message(
        self, mid: int, payload: dict[str, Any], files: list[Part], prefix: tuple[str | int, ...] = ()
    ) -> dict[str, Any]:
        current = self.messages[mid]
        message, new_files = self._validate_and_merge(current, payload, files, prefix, editing=True)
        if not new_files and self._is_empty(message):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        self._store_new_files(message, new_files)
        message["edited_timestamp"] = _iso()
        self.messages[mid] = message
        meta = self._meta[mid]
        meta.loading = False
        if not meta.ephemeral:
            self._dispatch_message("MESSAGE_UPDATE", message)
        return message

    def _delete_message(self, mid: int) -> None:
        message = self.messages.pop(mid)
        meta = self._meta.pop(mid, None)
        if meta is None or not meta.ephemeral:
            data = {"id": str(mid), "channel_id": message["channel_id"]}
            channel = self.channels.get(int(message["channel_id"]))
            if channel is not None and channel.get("guild_id"):
                data["guild_id"] = channel["guild_id"]
            self._dispatch("MESSAGE_DELETE", data, intent=INTENT_GUILD_MESSAGES | INTENT_DIRECT_MESSAGES)

    # ---------------------------------------------------------------- REST: users and members

    def _h_open_dm(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        user = self._users.get(int((rec.json or {}).get("recipient_id") or 0))
        if user is None:
            raise _form_error(("recipient_id",), "USER_NOT_FOUND", "Unknown user")
        return 200, self.channels[self._dm_channel(user)]

    def _h_user_get(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        user = self._users.get(int(m.group("uid")))
        if user is None:
            raise _ApiError(404, 10013, "Unknown User")
        return 200, user

    def _h_member_get(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        if int(m.group("guild")) != self.guild_id:
            raise _ApiError(403, 50001, "Missing Access")
        member = self._members.get(int(m.group("uid")))
        if member is None:
            raise _ApiError(404, 10007, "Unknown Member")
        return 200, member

    # ---------------------------------------------------------------- REST: channels

    def _channel(self, m: re.Match[str]) -> dict[str, Any]:
        channel = self.channels.get(int(m.group("cid")))
        if channel is None:
            raise _ApiError(404, 10003, "Unknown Channel")
        if channel["type"] == 3:  # a group DM of members: the bot is not in it, its token opens nothing there
            raise _ApiError(403, 50001, "Missing Access")
        return channel

    def _channel_message(self, m: re.Match[str]) -> int:
        channel = self._channel(m)
        mid = int(m.group("mid"))
        message = self.messages.get(mid)
        if message is None or message["channel_id"] != channel["id"] or self._meta[mid].ephemeral:
            raise _ApiError(404, 10008, "Unknown Message")
        return mid

    def _h_channel_get(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        return 200, self._channel(m)

    def _h_typing(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        self._channel(m)
        return 204, None

    def _h_channel_send(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        channel = self._channel(m)
        message = self._create_message(rec.json or {}, rec.files, channel_id=int(channel["id"]))
        return 200, message

    def _h_channel_history(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        channel = self._channel(m)
        limit = min(100, int(rec.query.get("limit", 50)))
        found = [
            msg
            for mid, msg in self.messages.items()
            if msg["channel_id"] == channel["id"]
            and not self._meta[mid].ephemeral
            and ("before" not in rec.query or mid < int(rec.query["before"]))
            and ("after" not in rec.query or mid > int(rec.query["after"]))
        ]
        found.sort(key=lambda msg: int(msg["id"]), reverse=True)
        if "after" in rec.query:
            found = sorted(found, key=lambda msg: int(msg["id"]))[:limit]
            found.reverse()
        return 200, found[:limit]

    def _h_channel_msg_get(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        return 200, self.messages[self._channel_message(m)]

    def _h_channel_msg_edit(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        mid = self._channel_message(m)
        if self.messages[mid]["author"]["id"] != self.bot_user["id"]:
            raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        return 200, self._edit_message(mid, rec.json or {}, rec.files)

    def _h_channel_msg_del(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        self._delete_message(self._channel_message(m))
        return 204, None

    def _h_cdn(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        blob = self._blobs.get(int(m.group("aid")))
        if blob is None or blob.filename != m.group("filename"):
            return 404, {"message": "404: Not Found", "code": 0}
        return 200, blob.data

    # ---------------------------------------------------------------- REST: interactions

    def _h_callback(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        it = self._by_token.get(m.group("token"))
        if it is None or it.id != int(m.group("iid")):
            raise _ApiError(404, 10062, "Unknown interaction")
        try:
            return self._callback(it, rec)
        finally:
            if it.callback is None or not it.acknowledged:
                it.callback = rec

    def _callback(self, it: Interaction, rec: Request) -> tuple[int, Any]:
        if it.acknowledged:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        if rec.at - it.created > self.interaction_deadline:
            raise _ApiError(404, 10062, "Unknown interaction")
        body = rec.json if isinstance(rec.json, dict) else {}
        kind = body.get("type")
        if kind not in ALLOWED_CALLBACKS[it.type]:
            raise _form_error(("type",), "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")
        data = body.get("data") or {}
        channel_id = int(it.payload["channel_id"])
        resource_message: dict[str, Any] | None = None
        if kind == CB_MESSAGE:
            msg = self._create_message(
                data, rec.files, channel_id=channel_id, prefix=("data",), interaction=it, ephemeral_allowed=True
            )
            it.original_id = int(msg["id"])
            resource_message = msg
        elif kind == CB_DEFERRED:
            if rec.files:
                raise _form_error(("data",), "INTERACTION_RESPONSE_TYPE_INVALID", "Deferred responses take no files")
            flags = FLAG_EPHEMERAL if int(data.get("flags") or 0) & FLAG_EPHEMERAL else 0
            msg = self._create_message(
                {"flags": flags}, [], channel_id=channel_id, interaction=it, ephemeral_allowed=True, loading=True
            )
            it.original_id = int(msg["id"])
        elif kind in (CB_DEFERRED_UPDATE, CB_UPDATE):
            # A modal submitted from a slash command has no message: Discord accepts a deferred update there
            # (discord.py sends type 6 for ``defer()`` in ``Modal.on_submit``) but nothing can be updated.
            target = it.message_id if it.message_id in self.messages else None
            if kind == CB_UPDATE:
                if target is None:
                    raise _form_error(("type",), "INTERACTION_RESPONSE_TYPE_INVALID", "Interaction has no message")
                resource_message = self._edit_message(target, data, rec.files, ("data",))
            if target is not None:
                it.original_id = target
        elif kind == CB_AUTOCOMPLETE:
            choices = data.get("choices")
            if not isinstance(choices, list):
                raise _form_error(("data", "choices"), "BASE_TYPE_REQUIRED", "This field is required")
            if len(choices) > 25:
                raise _form_error(("data", "choices"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        elif kind == CB_MODAL:
            problems = []
            if not 1 <= len(str(data.get("title") or "")) <= 45:
                problems.append(_bad_length(("data", "title"), 1, 45))
            if not data.get("custom_id"):
                problems.append((("data", "custom_id"), "BASE_TYPE_REQUIRED", "This field is required"))
            if not 1 <= len(data.get("components") or []) <= 5:
                problems.append(_bad_length(("data", "components"), 1, 5))
            if problems:
                raise _form_errors(problems)
        if rec.query.get("with_response", "").lower() not in ("1", "true"):
            return 204, None
        info: dict[str, Any] = {"id": str(it.id), "type": it.type}
        if kind in (CB_MESSAGE, CB_DEFERRED, CB_UPDATE) and it.original_id is not None:
            meta = self._meta[it.original_id]
            info["response_message_id"] = str(it.original_id)
            info["response_message_loading"] = meta.loading
            info["response_message_ephemeral"] = meta.ephemeral
        resource: dict[str, Any] = {"type": kind}
        if resource_message is not None:
            resource["message"] = resource_message
        return 200, {"interaction": info, "resource": resource}

    def _webhook_interaction(self, m: re.Match[str], rec: Request) -> Interaction:
        if int(m.group("app")) != self.application_id:
            raise _ApiError(404, 10015, "Unknown Webhook")
        it = self._by_token.get(m.group("token"))
        if it is None or rec.at - it.created > self.token_ttl:
            raise _ApiError(401, 50027, "Invalid Webhook Token")
        if not it.acknowledged:
            raise _ApiError(404, 10015, "Unknown Webhook")
        return it

    def _webhook_message_id(self, it: Interaction, m: re.Match[str]) -> int:
        ref = m.group("mid")
        mid = it.original_id if ref == "@original" else int(ref)
        if mid is None or mid not in self.messages or (mid != it.original_id and mid not in it.followups):
            raise _ApiError(404, 10008, "Unknown Message")
        return mid

    def _h_followup(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        it = self._webhook_interaction(m, rec)
        payload = rec.json if isinstance(rec.json, dict) else {}
        original = it.original_id
        if original is not None and original in self._meta and self._meta[original].loading:
            message = self._edit_message(original, payload, rec.files)
        else:
            message = self._create_message(
                payload, rec.files, channel_id=int(it.payload["channel_id"]), interaction=it, ephemeral_allowed=True
            )
            it.followups.append(int(message["id"]))
        if rec.query.get("wait", "").lower() in ("1", "true"):
            return 200, message
        return 204, None

    def _h_webhook_get(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        it = self._webhook_interaction(m, rec)
        return 200, self.messages[self._webhook_message_id(it, m)]

    def _h_webhook_edit(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        it = self._webhook_interaction(m, rec)
        mid = self._webhook_message_id(it, m)
        return 200, self._edit_message(mid, rec.json if isinstance(rec.json, dict) else {}, rec.files)

    def _h_webhook_delete(self, rec: Request, m: re.Match[str]) -> tuple[int, Any]:
        it = self._webhook_interaction(m, rec)
        self._delete_message(self._webhook_message_id(it, m))
        return 204, None

    # ---------------------------------------------------------------- sending interactions

    def _new_interaction(
        self,
        kind: int,
        data: dict[str, Any],
        *,
        user: dict[str, Any] | None,
        context: int = GUILD,
        owners: dict[str, str] | None = None,
        message: dict[str, Any] | None = None,
        channel_id: int | None = None,
    ) -> Interaction:
        """An interaction as Discord sends it from `context` (`owners`: the installations that authorize it)."""
        assert self._live_sessions(), "no bot is connected to the fake gateway"
        user = user or self.default_user
        iid = self._ids.next()
        raw = f"interaction:{iid}:{secrets.token_urlsafe(96)}".encode()
        token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": kind,
            "token": token,
            "version": 1,
            "locale": self._locales.get(int(user["id"]), "en-US"),
            "app_permissions": ALL_PERMISSIONS,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.attachment_size_limit,
            "data": data,
            "context": context,
        }
        if context == GUILD:
            member = self._members.get(int(user["id"])) or self._add_member(user)
            channel = self.channels[int(message["channel_id"]) if message else channel_id or self.channel_id]
            payload |= {
                "guild_id": str(self.guild_id),
                "guild": {"id": str(self.guild_id), "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "channel_id": channel["id"],
                "channel": {**channel, "permissions": ALL_PERMISSIONS},
                "member": {**member, "permissions": ALL_PERMISSIONS},
                "authorizing_integration_owners": owners or {str(GUILD_INSTALL): str(self.guild_id)},
            }
        elif context == BOT_DM:
            dm_id = int(message["channel_id"]) if message else self._dm_channel(user)
            payload |= {
                "channel_id": str(dm_id),
                "channel": {"id": str(dm_id), "type": 1, "flags": 0, "last_message_id": None, "recipients": [user]},
                "user": user,
                "authorizing_integration_owners": owners or {str(GUILD_INSTALL): "0"},
            }
        else:
            cid = int(message["channel_id"]) if message else channel_id
            assert cid is not None and self.channels[cid]["type"] == 3, "private channels: see add_private_channel"
            payload |= {
                "channel_id": str(cid),
                "channel": self.channels[cid],
                "user": user,
                "app_permissions": PRIVATE_APP_PERMISSIONS,
                "authorizing_integration_owners": owners or {str(USER_INSTALL): user["id"]},
            }
        if message is not None:
            payload["message"] = message
        it = Interaction(
            id=iid,
            token=token,
            type=kind,
            data=data,
            user=user,
            payload=payload,
            message_id=int(message["id"]) if message else None,
        )
        it._messages = self.messages
        self._by_token[token] = it
        self.interactions.append(it)
        return it

    def add_text_channel(self, name: str, *, nsfw: bool = False) -> int:
        """Another text channel in the guild (age-restricted if `nsfw`); add it before the bot connects so
        GUILD_CREATE carries it."""
        cid = self._ids.next()
        self.channels[cid] = {
            **self.channels[self.channel_id],
            "id": str(cid),
            "name": name,
            "position": len(self.channels),
            "nsfw": nsfw,
        }
        return cid

    def add_thread(self, parent_id: int, name: str) -> int:
        """A public thread under a text channel, for commands sent from it (it carries no nsfw flag of its own:
        Discord's threads follow their parent)."""
        cid = self._ids.next()
        self.channels[cid] = {
            "id": str(cid),
            "type": 11,
            "guild_id": str(self.guild_id),
            "parent_id": str(parent_id),
            "owner_id": str(self.default_user["id"]),
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _iso(),
                "locked": False,
            },
        }
        return cid

    def _dm_channel(self, user: dict[str, Any]) -> int:
        for cid, channel in self.channels.items():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == user["id"]:
                return cid
        cid = self._ids.next()
        self.channels[cid] = {"id": str(cid), "type": 1, "flags": 0, "last_message_id": None, "recipients": [user]}
        return cid

    def _send_interaction(self, it: Interaction) -> None:
        it.created = time.monotonic()
        self._dispatch("INTERACTION_CREATE", it.payload)
        self._touch()

    def _find_command(self, name: str, context: int, user: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The synced command `name` as Discord offers it to `user` in `context`, and the installations that
        authorize it there (the interaction's authorizing_integration_owners); NotOffered where Discord would not."""
        top = name.split(maxsplit=1)[0]
        scopes: list[int | None] = [self.guild_id, None] if context == GUILD else [None]
        for scope in scopes:
            for command in self.commands.get(scope, []):
                if command["name"] == top and command.get("type", 1) == 1:
                    if scope is not None:  # a guild's command: only there, through the app installed to it
                        return command, {str(GUILD_INSTALL): str(self.guild_id)}
                    return command, self._authorizing(command, context, user)
        where = "globally or to the guild" if context == GUILD else "globally"
        synced = {scope: [c["name"] for c in cmds] for scope, cmds in self.commands.items()}
        raise AssertionError(f"/{top} was never synced {where}; synced commands: {synced}")

    def _authorizing(self, command: dict[str, Any], context: int, user: dict[str, Any]) -> dict[str, str]:
        """The installations through which `user` has the global `command` in `context`; NotOffered if none."""
        contexts = command.get("contexts")
        if contexts is None:
            contexts = list(GUILD_ONLY_CONTEXTS if command.get("dm_permission") is False else DEFAULT_CONTEXTS)
        where = CONTEXT_NAMES[context]
        if context not in contexts:
            raise NotOffered(f"Discord does not offer /{command['name']} in {where}: its contexts are {contexts}")
        installs = command.get("integration_types") or [GUILD_INSTALL]
        owners: dict[str, str] = {}
        if GUILD_INSTALL in installs and context != PRIVATE_CHANNEL:  # the bot is where a guild install reaches
            owners[str(GUILD_INSTALL)] = str(self.guild_id) if context == GUILD else "0"
        if USER_INSTALL in installs and int(user["id"]) in self.user_installs:
            owners[str(USER_INSTALL)] = str(user["id"])
        if not owners:
            installed = "their account" if int(user["id"]) in self.user_installs else "the server only"
            raise NotOffered(
                f"Discord does not offer /{command['name']} in {where} to a member who has the app installed to "
                f"{installed}: its integration_types are {installs}"
            )
        return owners

    def _resolve_path(self, command: dict[str, Any], name: str) -> tuple[list[str], list[dict[str, Any]]]:
        """Walk ``"group sub"`` to the leaf's option schema."""
        words = name.split()[1:]
        schema = command.get("options") or []
        for word in words:
            found = next((o for o in schema if o["name"] == word and o["type"] in (OPT_SUB, OPT_GROUP)), None)
            if found is None:
                raise AssertionError(f"/{name}: no subcommand {word!r}")
            schema = found.get("options") or []
        if any(o["type"] in (OPT_SUB, OPT_GROUP) for o in schema):
            subs = [o["name"] for o in schema]
            raise AssertionError(f"/{name} needs a subcommand, one of {subs}")
        return words, schema

    def _wrap_subcommands(self, command: dict[str, Any], words: list[str], leaf: list[dict[str, Any]]):
        options = leaf
        schema = command.get("options") or []
        chain = []
        for word in words:
            found = next(o for o in schema if o["name"] == word)
            chain.append(found)
            schema = found.get("options") or []
        for found in reversed(chain):
            options = [{"name": found["name"], "type": found["type"], "options": options}]
        return options

    def _option_value(
        self,
        option: dict[str, Any],
        value: Any,
        resolved: dict[str, dict[str, Any]],
        attachments: dict[str, tuple[str, bytes]],
        label: str,
    ) -> Any:
        kind = option["type"]
        if kind == OPT_STRING:
            assert isinstance(value, str), f"{label}: expected str, got {value!r}"
            if option.get("min_length") is not None:
                assert len(value) >= option["min_length"], f"{label}: shorter than min_length {option['min_length']}"
            if option.get("max_length") is not None:
                assert len(value) <= option["max_length"], f"{label}: longer than max_length {option['max_length']}"
        elif kind in (OPT_INTEGER, OPT_NUMBER):
            ok_types: tuple[type, ...] = (int,) if kind == OPT_INTEGER else (int, float)
            assert isinstance(value, ok_types) and not isinstance(value, bool), f"{label}: bad number {value!r}"
            if option.get("min_value") is not None:
                assert value >= option["min_value"], f"{label}: {value} < min_value {option['min_value']}"
            if option.get("max_value") is not None:
                assert value <= option["max_value"], f"{label}: {value} > max_value {option['max_value']}"
        elif kind == OPT_BOOLEAN:
            assert isinstance(value, bool), f"{label}: expected bool, got {value!r}"
        elif kind in (OPT_USER, OPT_MENTIONABLE) and (isinstance(value, dict) or int(value) in self._users):
            user = value if isinstance(value, dict) else self._users[int(value)]
            uid = str(user["id"])
            resolved.setdefault("users", {})[uid] = user
            member = self._members.get(int(uid))
            if member is not None:
                trimmed = {k: v for k, v in member.items() if k != "user"}
                resolved.setdefault("members", {})[uid] = {**trimmed, "permissions": ALL_PERMISSIONS}
            return uid
        elif kind in (OPT_ROLE, OPT_MENTIONABLE):
            role = next((r for r in self.roles if int(r["id"]) == int(value)), None)
            assert role is not None, f"{label}: unknown role {value!r}"
            resolved.setdefault("roles", {})[role["id"]] = role
            return role["id"]
        elif kind == OPT_USER:
            raise AssertionError(f"{label}: unknown user {value!r}")
        elif kind == OPT_CHANNEL:
            channel = self.channels.get(int(value))
            assert channel is not None, f"{label}: unknown channel {value!r}"
            types = option.get("channel_types")
            assert not types or channel["type"] in types, f"{label}: channel type {channel['type']} not in {types}"
            resolved.setdefault("channels", {})[channel["id"]] = {**channel, "permissions": ALL_PERMISSIONS}
            return channel["id"]
        elif kind == OPT_ATTACHMENT:
            filename, data = value if isinstance(value, tuple) else attachments[option["name"]]
            attachment = self._attachment(filename, data, ephemeral=True)
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            return attachment["id"]
        choices = option.get("choices")
        if choices:
            assert value in [c["value"] for c in choices], f"{label}: {value!r} is not one of the choices"
        return value

    def _build_options(
        self,
        name: str,
        schema: list[dict[str, Any]],
        options: dict[str, Any],
        attachments: dict[str, tuple[str, bytes]],
        *,
        resolved: dict[str, dict[str, Any]],
        focused: str | None = None,
    ) -> list[dict[str, Any]]:
        given = dict(options)
        for key, upload in attachments.items():
            given.setdefault(key, upload)
        known = {o["name"] for o in schema}
        unknown = set(given) - known
        assert not unknown, f"/{name}: unknown options {sorted(unknown)}; the synced schema has {sorted(known)}"
        built: list[dict[str, Any]] = []
        for option in schema:
            label = f"/{name} {option['name']}"
            if option["name"] == focused:
                assert option.get("autocomplete"), f"{label} has no autocomplete"
                value = given.get(option["name"], "")
                built.append({"name": option["name"], "type": option["type"], "value": str(value), "focused": True})
                continue
            if option["name"] not in given:
                assert focused is not None or not option.get("required"), f"{label} is required"
                continue
            if focused is not None and option["type"] != OPT_ATTACHMENT and option.get("autocomplete"):
                value = given[option["name"]]
            else:
                value = self._option_value(option, given[option["name"]], resolved, attachments, label)
            built.append({"name": option["name"], "type": option["type"], "value": value})
        return built

    def _command_data(
        self,
        name: str,
        options: dict[str, Any] | None,
        attachments: dict[str, tuple[str, bytes]] | None,
        *,
        context: int,
        user: dict[str, Any],
        focused: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The interaction's data for `/name` with these options, and the installations authorizing it."""
        command, owners = self._find_command(name, context, user)
        words, schema = self._resolve_path(command, name)
        resolved: dict[str, dict[str, Any]] = {}
        leaf = self._build_options(name, schema, options or {}, attachments or {}, resolved=resolved, focused=focused)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": command["name"],
            "type": 1,
            "options": self._wrap_subcommands(command, words, leaf),
        }
        if resolved:
            data["resolved"] = resolved
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return data, owners

    async def invoke_slash(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: dict[str, Any] | None = None,
        attachments: dict[str, tuple[str, bytes]] | None = None,
        guild: bool = True,
        channel_id: int | None = None,
        context: int | None = None,
    ) -> Interaction:
        """Send an APPLICATION_COMMAND interaction for a synced slash command (``"group sub"`` for subcommands).

        `context` is where it is run: GUILD (the default, `channel_id` or the general channel), BOT_DM (also
        ``guild=False``) or PRIVATE_CHANNEL (the group DM `channel_id`). Discord offers a command only where its
        contexts and integration_types allow: elsewhere this raises NotOffered and sends nothing.
        """
        context = context if context is not None else GUILD if guild else BOT_DM
        user = user or self.default_user
        data, owners = self._command_data(name, options, attachments, context=context, user=user)
        it = self._new_interaction(IT_COMMAND, data, user=user, context=context, owners=owners, channel_id=channel_id)
        self._send_interaction(it)
        return it

    async def autocomplete(self, name: str, options: dict[str, Any], focused: str) -> list[dict[str, Any]]:
        """Send an AUTOCOMPLETE interaction with ``focused`` marked and return the choices the bot answered."""
        data, owners = self._command_data(name, options, None, context=GUILD, user=self.default_user, focused=focused)
        it = self._new_interaction(IT_AUTOCOMPLETE, data, user=None, owners=owners)
        self._send_interaction(it)
        await self.wait_for(lambda: it.callback is not None)
        callback = it.callback
        assert callback is not None and it.acknowledged, f"autocomplete callback failed: {callback}"
        assert isinstance(callback.json, dict)
        return list(callback.json["data"]["choices"])

    async def click(
        self, message_id: int, custom_id: str, *, user: dict[str, Any] | None = None, values: list[str] | None = None
    ) -> Interaction:
        """Click a button (or pick ``values`` in a select) on a message: a MESSAGE_COMPONENT interaction."""
        message = self.messages.get(message_id)
        assert message is not None, f"message {message_id} does not exist"
        component = next((c for c in _walk_components(message["components"]) if c.get("custom_id") == custom_id), None)
        ids = [c.get("custom_id") for c in _walk_components(message["components"]) if c.get("custom_id")]
        assert component is not None, f"message {message_id} has no component {custom_id!r} (has {ids})"
        assert not component.get("disabled"), f"component {custom_id!r} is disabled"
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] in SELECT_TYPES:
            data["values"] = list(values or [])
        elif values is not None:
            raise AssertionError(f"component {custom_id!r} is not a select menu")
        context, owners = self._message_context(message)
        it = self._new_interaction(IT_COMPONENT, data, user=user, context=context, owners=owners, message=message)
        self._send_interaction(it)
        return it

    def _message_context(self, message: dict[str, Any]) -> tuple[int, dict[str, str] | None]:
        """Where a click on `message` comes from, and the installations of the command that posted it."""
        channel = self.channels.get(int(message["channel_id"]))
        kind = channel["type"] if channel is not None else 0
        context = BOT_DM if kind == 1 else PRIVATE_CHANNEL if kind == 3 else GUILD
        meta = self._meta.get(int(message["id"]))
        source = meta.interaction if meta is not None else None
        return context, source.payload["authorizing_integration_owners"] if source is not None else None

    async def submit_modal(
        self, interaction: Interaction, values: dict[str, Any], *, user: dict[str, Any] | None = None
    ) -> Interaction:
        """Fill and submit the modal the bot answered ``interaction`` with (MODAL_SUBMIT).

        A file upload (type 19) takes ``(filename, bytes)`` or a list of them: the member's uploads, which come
        as the component's attachment ids with the attachments under ``resolved`` (components reference, File
        Upload: "Modal Submit" response structure).
        """
        modal = interaction.modal
        assert modal is not None, f"the bot did not answer {interaction} with a modal (callback {interaction.callback})"
        remaining: dict[str, Any] = dict(values)
        resolved: dict[str, dict[str, Any]] = {}

        def fill(component: dict[str, Any], label: str | None) -> dict[str, Any]:
            out: dict[str, Any] = {"type": component["type"], "custom_id": component.get("custom_id")}
            if component.get("id") is not None:
                out["id"] = component["id"]
            keys = [component.get("custom_id"), label or component.get("label")]
            key = next((k for k in keys if k is not None and k in remaining), None)
            if component["type"] == 4:
                value = remaining.pop(key) if key is not None else component.get("value") or ""
                assert isinstance(value, str), f"text input {keys}: value must be str"
                if component.get("required", True):
                    assert value, f"text input {keys} is required"
                if value and component.get("min_length") is not None:
                    assert len(value) >= component["min_length"], f"text input {keys}: shorter than min_length"
                if component.get("max_length") is not None:
                    assert len(value) <= component["max_length"], f"text input {keys}: longer than max_length"
                out["value"] = value
            elif component["type"] in SELECT_TYPES:
                picked = remaining.pop(key) if key is not None else []
                out["values"] = [picked] if isinstance(picked, str) else list(picked)
            elif component["type"] == FILE_UPLOAD:
                given = remaining.pop(key) if key is not None else []
                uploads = [given] if isinstance(given, tuple) else list(given)
                low = component.get("min_values") or (1 if component.get("required", True) else 0)
                high = component.get("max_values") or 1
                assert low <= len(uploads) <= high, f"file upload {keys}: {len(uploads)} files, not {low} to {high}"
                out["values"] = []
                for filename, data in uploads:
                    attachment = self._attachment(filename, data, ephemeral=True)
                    resolved.setdefault("attachments", {})[attachment["id"]] = attachment
                    out["values"].append(attachment["id"])
            return out

        components: list[dict[str, Any]] = []
        for top in modal.get("components", []):
            if top["type"] == 1:
                row: dict[str, Any] = {"type": 1, "components": [fill(c, None) for c in top.get("components", [])]}
                if top.get("id") is not None:
                    row["id"] = top["id"]
                components.append(row)
            elif top["type"] == 18:
                label_out: dict[str, Any] = {"type": 18, "component": fill(top["component"], top.get("label"))}
                if top.get("id") is not None:
                    label_out["id"] = top["id"]
                components.append(label_out)
            elif top.get("id") is not None:
                components.append({"type": top["type"], "id": top["id"]})
        assert not remaining, f"modal {modal.get('custom_id')!r} has no inputs {sorted(remaining)}"
        data: dict[str, Any] = {"custom_id": modal["custom_id"], "components": components}
        if resolved:
            data["resolved"] = resolved
        message = self.messages.get(interaction.message_id) if interaction.message_id is not None else None
        it = self._new_interaction(
            IT_MODAL_SUBMIT,
            data,
            user=user or interaction.user,
            context=interaction.payload["context"],
            owners=interaction.payload["authorizing_integration_owners"],
            message=message,
            channel_id=int(interaction.payload["channel_id"]),
        )
        self._send_interaction(it)
        return it


# --------------------------------------------------------------------------------------------------------------------
# running a bot against the fake


async def start_bot(bot: discord.Client, fake: FakeDiscord, *, timeout: float = 10.0) -> asyncio.Task[None]:
    """Run ``bot.start(fake.token)`` in a task and wait until the bot is ready; raise if the task dies first."""
    ready_timeout = getattr(bot._connection, "guild_ready_timeout", 0.0)
    if ready_timeout > 0.05:
        raise ValueError(f"build the bot with guild_ready_timeout=0 (got {ready_timeout}); it would add seconds")
    task = asyncio.create_task(bot.start(fake.token), name="fake-discord-bot")
    deadline = time.monotonic() + timeout
    while not bot.is_ready():
        done, _ = await asyncio.wait({task}, timeout=0.005)
        if done:
            exc = task.exception()
            raise RuntimeError(f"the bot stopped before it was ready: {exc!r}") from exc
        if time.monotonic() > deadline:
            task.cancel()
            raise TimeoutError(f"the bot was not ready within {timeout}s; requests: {fake.requests}")
    return task


async def stop_bot(bot: discord.Client, task: asyncio.Task[None]) -> None:
    """Close the bot and wait for its ``start()`` task to finish (re-raising what it raised)."""
    await bot.close()
    await task
