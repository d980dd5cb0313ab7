"""Slack, emulated over real HTTP: the Web API methods zqbo calls, a response_url sink, and a
client side that signs slash commands, button presses and events the way Slack does.

Shapes follow ../shared/API_FACTS.md: errors are HTTP 200 `{"ok": false, "error": ...}`, rate
limits HTTP 429 with `Retry-After`; every call is recorded (including refused ones) so tests can
assert what the bot really sent. Slack's message limits are enforced on chat.postMessage,
chat.update, chat.postEphemeral, views.publish and response_url posts, and a modal's on
views.open, views.update and a view submission's response_action (top-level text, block count,
every block through slack_sdk's Block Kit models plus the per-element limits slack_sdk does not
check: slack_blockkit.py), so a card that Slack would refuse fails here too. Messages keep their
text exactly as sent and may carry metadata, read back with conversations.history.

Many workspaces (slack_tenancy.py): teams, Enterprise Grid organisations, and the app installed
in them through OAuth v2 (the consent page at /oauth/v2/authorize, oauth.v2.access, token
rotation). Each Web API call acts as its token's team, or an org-wide install's teams; users and
channels of other teams do not exist for it. The default team T0EMU ("Acme") comes with the app
installed under `bot_token`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urljoin

import requests
from flask import Response, request

from bot.clock import Clock
from bot.emulator.server import EmulatorServer
from bot.emulator.slack_blockkit import (
    BAD_MESSAGE_ERRORS,
    MAX_VIEW_BLOCKS,
    MessageRefusal,
    block_kit_problems,
    check_message,
    check_modal,
    submission_state,
)
from bot.emulator.slack_files import Files, UploadedFile
from bot.emulator.slack_openid import OpenID, user_claims
from bot.emulator.slack_shapes import as_sent, bot_message, kept_blocks, kept_view, short_id
from bot.emulator.slack_tenancy import APP_ID, Grant, Team, Workspaces

RESPONSE_URL_POSTS = 5
RESPONSE_URL_LIFETIME = 30 * 60
TEAM_ID = "T0EMU"
HISTORY_LIMIT = 100
HISTORY_MAX_LIMIT = 999
HOLD_TIMEOUT = 60.0
# The bot scopes of app_manifest.yml: what the preinstalled token of T0EMU carries.
DEFAULT_SCOPES = "commands,chat:write,im:write,users:read,files:write,channels:history,groups:history"
# Methods that take the app's credentials (or, userInfo, a Sign in with Slack token) instead of a bot token.
NO_TOKEN_METHODS = frozenset({"oauth.v2.access", "openid.connect.token", "openid.connect.userInfo"})
TRIGGER_LIFETIME = 3.0  # seconds a trigger_id can open a modal

__all__ = [
    "BAD_MESSAGE_ERRORS",
    "MessageRefusal",
    "NotAValidCommand",
    "SlackEmulator",
    "block_kit_problems",
    "check_message",
]


class NotAValidCommand(Exception):
    """What Slack tells a person whose workspace does not have the app: "/zqbo is not a valid
    command" — the app is never asked."""


@dataclass
class SlackCall:
    method: str
    args: dict[str, Any]
    at: datetime
    ok: bool = True
    error: str | None = None
    status: int = 200
    answer_lost: bool = False  # applied, but the bot got HTTP 500 (drop_after_apply / hold_after_apply)


@dataclass
class SlackUser:
    id: str
    name: str
    real_name: str
    email: str
    is_admin: bool = False
    is_owner: bool = False
    is_bot: bool = False
    team_id: str = TEAM_ID
    tz: str = "Europe/London"  # an IANA name, as Slack gives it (tests set another)

    def as_api(self) -> dict[str, Any]:
        """As users.info answers (web_api/users.info.json)."""
        avatar = hashlib.md5(self.id.encode(), usedforsecurity=False).hexdigest()
        images = {
            f"image_{size}": f"https://secure.gravatar.com/avatar/{avatar}.jpg?s={size}"
            for size in (24, 32, 48, 72, 192, 512)
        }
        return {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "deleted": False,
            "color": "9f69e7",
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": "Greenwich Mean Time" if self.tz == "Europe/London" else self.tz,
            "tz_offset": _tz_offset(self.tz),
            "profile": {
                "avatar_hash": "g" + avatar[:11],
                "status_text": "",
                "status_emoji": "",
                "real_name": self.real_name,
                "display_name": self.name,
                "real_name_normalized": self.real_name,
                "display_name_normalized": self.name,
                "email": self.email,
                **images,
                "image_original": images["image_512"],
                "team": self.team_id,
            },
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": self.is_owner,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1_700_000_000,
            "has_2fa": False,
        }


@dataclass
class Channel:
    id: str
    name: str
    is_member: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)
    team_id: str = TEAM_ID
    shared_with: tuple[str, ...] = ()  # Slack Connect: the other organisations' teams in it


class SlackEmulator(EmulatorServer):
    name = "slack-emulator"

    def __init__(
        self,
        bot_token: str = "xoxb-emulator-0000-token",
        signing_secret: str = "emu-signing-secret-5f2a",
        clock: Clock | None = None,
        port: int = 0,
        *,
        client_id: str = "emu-client-id",
        client_secret: str = "emu-client-secret",
        token_rotation: bool = False,
        redirect_uri: str | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.signing_secret = signing_secret
        # The OAuth app (hosted mode): settable, as an app's settings page is.
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_rotation = token_rotation
        self.redirect_uri = redirect_uri  # the app's configured Redirect URL, used when none is sent
        self.workspaces = Workspaces()
        self.openid = OpenID()  # Sign in with Slack; `openid.redirect_urls` are the app's Redirect URLs
        self.teams = self.workspaces.teams
        self.tokens = self.workspaces.tokens
        self.calls: list[SlackCall] = []
        self.users: dict[str, SlackUser] = {}
        self.channels: dict[str, Channel] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.files = Files()  # files_upload_v2: uploads and shared files, with their bytes
        self.open_views: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, dict[str, Any]] = {}
        self._responses: dict[str, dict[str, Any]] = {}
        self._refused_responses: list[dict[str, Any]] = []
        self._ts = itertools.count(1)
        self._cond = threading.Condition()
        self._holds: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._holds_after: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._releases: list[threading.Event] = []  # every hold not yet released, arrived or not
        self._drops_after: dict[str, int] = {}
        super().__init__(clock=clock, port=port)
        self._bot_updated = int(self.clock.now().timestamp())  # bot_profile.updated
        self.add_team(TEAM_ID, "Acme", "acme")
        self.workspaces.bot_identity(TEAM_ID, "U0ZQBO", "B0ZQBO")
        self.workspaces.issue(
            team_id=TEAM_ID,
            enterprise_id=None,
            is_enterprise_install=False,
            scope=DEFAULT_SCOPES,
            installer_id="U0ADMIN",
            now=self.clock.now(),
            token=bot_token,
        )
        self.add_user("U0ADMIN", "ana", "Ana Admin", "ana@acme.example", is_admin=True)
        self.add_user("U0OWNER", "olu", "Olu Owner", "olu@acme.example", is_owner=True)
        self.add_user("U0STAFF", "sam", "Sam Staff", "sam@acme.example")
        self.add_channel("C0ALERTS", "qbo-alerts")

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # world setup ---------------------------------------------------------------------------------
    def add_team(
        self,
        team_id: str,
        name: str,
        domain: str | None = None,
        enterprise_id: str | None = None,
        enterprise_name: str | None = None,
    ) -> Team:
        """A workspace (in an Enterprise Grid organisation when enterprise_id is given); the app
        is not installed in it until install() or the OAuth flow runs."""
        with self._lock:
            return self.workspaces.add_team(team_id, name, domain, enterprise_id, enterprise_name)

    def add_user(
        self, user_id: str, name: str, real_name: str, email: str, *, team_id: str = TEAM_ID, **flags: bool
    ) -> SlackUser:
        user = SlackUser(user_id, name, real_name, email, team_id=team_id, **flags)
        with self._lock:
            self._known_team(team_id)
            self.users[user_id] = user
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        is_member: bool = True,
        *,
        team_id: str = TEAM_ID,
        shared_with: tuple[str, ...] = (),
    ) -> Channel:
        """A channel of `team_id`; `shared_with` other organisations' teams makes it a Slack
        Connect channel: their members see it, type commands and press buttons in it."""
        channel = Channel(channel_id, name, is_member, team_id=team_id, shared_with=tuple(shared_with))
        with self._lock:
            for team in (team_id, *shared_with):
                self._known_team(team)
            self.channels[channel_id] = channel
        return channel

    def set_scopes(self, scopes: str, token: str | None = None) -> None:
        """What a bot token was granted (default: the preinstalled one), as Slack reports it in
        the `x-oauth-scopes` header of every Web API answer: a test can grant fewer than the
        manifest asks for, as an app whose scopes were edited without a reinstall has."""
        with self._lock:
            self.tokens[token or self.bot_token].scope = ",".join(_scope_list(scopes))

    def _known_team(self, team_id: str) -> None:
        if team_id not in self.teams:
            raise ValueError(f"unknown team {team_id!r}: add_team() it first")

    # inspection ----------------------------------------------------------------------------------
    def calls_to(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def refused_calls(self) -> list[SlackCall]:
        """Calls Slack refused because the bot built a bad message (BAD_MESSAGE_ERRORS):
        `assert slack.refused_calls() == []` says every message the bot sent was acceptable."""
        with self._lock:
            return [c for c in self.calls if not c.ok and c.error in BAD_MESSAGE_ERRORS]

    def messages(self, channel_id: str) -> list[dict[str, Any]]:
        """The channel as a user would see it now (updates applied, in posting order)."""
        with self._lock:
            channel = self.channels.get(channel_id)
            return json.loads(json.dumps(channel.messages)) if channel else []

    def wait_for_calls(self, method: str, n: int, timeout: float = 5.0, ok: bool = True) -> list[SlackCall]:
        """Wait until `method` has been called (successfully, unless ok=False) at least `n` times."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                calls = [c for c in self.calls_to(method) if c.ok or not ok]
                if len(calls) >= n:
                    return calls
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{method} was called {len(calls)} of {n} times")
                self._cond.wait(left)

    def refused_responses(self, url: str | None = None) -> list[dict[str, Any]]:
        """response_url posts that were refused (bad payload: HTTP 400; expired or used up: 404),
        each `{"url", "status", "error", "problems", "body", "at"}`; none reached the user."""
        with self._lock:
            return [dict(r) for r in self._refused_responses if url is None or r["url"] == url]

    def dm_channel(self, user_id: str) -> str:
        return "D" + user_id[1:]

    # fault injection -----------------------------------------------------------------------------
    def fail_next(self, method: str, error: str, times: int = 1) -> None:
        """The next `times` calls to `method` answer `{"ok": false, "error": error}`."""
        self._queue_fault(method, {"error": error, "retry_after": None}, times)

    def hold_next(self, method: str) -> threading.Event:
        """The next call to `method` hangs until release_held(); then it fails without effect,
        as if the connection died before Slack acted. Returns an event set when it arrives."""
        arrived, release = threading.Event(), threading.Event()
        with self._lock:
            self._holds[method] = (arrived, release)
            self._releases.append(release)
        return arrived

    def drop_after_apply(self, method: str, times: int = 1) -> None:
        """The next `times` calls to `method` take effect (a message is posted) but the answer
        never comes back: HTTP 500. They are recorded as applied: ok reflects what Slack did,
        status=500 and answer_lost=True; messages() shows what is really in the channel."""
        with self._lock:
            self._drops_after[method] = self._drops_after.get(method, 0) + times

    def hold_after_apply(self, method: str) -> threading.Event:
        """The next call to `method` takes effect, then hangs until release_held() and answers
        HTTP 500. Returns an event set once it has taken effect (recorded as drop_after_apply)."""
        applied, release = threading.Event(), threading.Event()
        with self._lock:
            self._holds_after[method] = (applied, release)
            self._releases.append(release)
        return applied

    def release_held(self) -> None:
        """Let every held call (hold_next, hold_after_apply) answer; holds not yet reached are
        cancelled. (A hold is popped when its call arrives, so the releases are kept apart.)"""
        with self._lock:
            releases, self._releases = self._releases, []
            self._holds, self._holds_after = {}, {}
        for release in releases:
            release.set()

    def rate_limit_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` calls to `method` answer HTTP 429 with Retry-After."""
        self._queue_fault(method, {"error": "ratelimited", "retry_after": retry_after}, times)

    # response_url sink ---------------------------------------------------------------------------
    def new_response_url(self) -> str:
        key = uuid.uuid4().hex
        with self._lock:
            self._responses[key] = {"created": time.time(), "posts": []}
        return f"{self.url}/response/{key}"

    def responses(self, url: str) -> list[dict[str, Any]]:
        key = url.rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            record = self._responses.get(key)
            return list(record["posts"]) if record else []

    def wait_for_responses(self, url: str, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until `url` has received at least `n` posts; returns them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.responses(url)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{url} received {len(self.responses(url))} of {n} posts")
                self._cond.wait(left)
        return self.responses(url)

    # playing Slack's side: signed requests to the bot -----------------------------------------
    def sign(self, body: bytes, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        base = b"v0:" + ts.encode() + b":" + body
        digest = hmac.new((secret or self.signing_secret).encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}

    def _post_signed(
        self,
        bot_url: str,
        body: bytes,
        content_type: str,
        timestamp: int | None = None,
        bad_signature: bool = False,
    ) -> requests.Response:
        secret = "not-the-signing-secret" if bad_signature else None
        headers = {"Content-Type": content_type, **self.sign(body, timestamp, secret)}
        return requests.post(bot_url, data=body, headers=headers, timeout=10)

    def _team_fields(self, team_id: str, enterprise_id: str | None) -> dict[str, Any]:
        """Who a request comes from, as Slack describes it: the team, its domain, its enterprise
        (the team's own unless given) and whether the app reaches it through an org-wide install."""
        with self._lock:
            team = self.teams.get(team_id)
            enterprise_id = enterprise_id or (team.enterprise_id if team else None)
            return {
                "team_id": team_id,
                "domain": team.domain if team else "acme",
                "enterprise_id": enterprise_id,
                "enterprise_name": self.workspaces.enterprises.get(enterprise_id) if enterprise_id else None,
                "is_enterprise_install": self.workspaces.org_installed(team_id),
            }

    def new_trigger_id(self, user_id: str = "U0ADMIN", team_id: str = TEAM_ID) -> str:
        """A trigger_id as Slack sends with a command or an interaction: views.open takes it once,
        within 3 seconds (of the emulator's clock)."""
        trigger_id = f"{next(self._ts)}.{int(time.time())}.{uuid.uuid4().hex[:16]}"
        with self._lock:
            self._triggers[trigger_id] = {"user_id": user_id, "team_id": team_id, "at": self.clock.now()}
        return trigger_id

    def command_fields(
        self,
        user_id: str,
        team_id: str,
        channel_id: str,
        enterprise_id: str | None = None,
        response_url: str | None = None,
        user_name: str | None = None,
    ) -> dict[str, str]:
        """A slash command's form, as Slack sends it, but for `command` and `text`: who typed it,
        where, and a fresh response_url and trigger_id."""
        user = self.users.get(user_id)
        who = self._team_fields(team_id, enterprise_id)
        form = {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "team_domain": who["domain"],
        }
        if who["enterprise_id"]:
            form.update(enterprise_id=who["enterprise_id"], enterprise_name=who["enterprise_name"])
        form.update(
            {
                "channel_id": channel_id,
                "channel_name": self.channels[channel_id].name
                if channel_id in self.channels
                else "directmessage",
                "user_id": user_id,
                "user_name": user_name or (user.name if user else "someone"),
                "api_app_id": APP_ID,
                "is_enterprise_install": "true" if who["is_enterprise_install"] else "false",
                "response_url": response_url or self.new_response_url(),
                "trigger_id": self.new_trigger_id(user_id, team_id),
            }
        )
        return form

    def send_command(
        self,
        bot_url: str,
        text: str,
        *,
        user_id: str = "U0ADMIN",
        user_name: str | None = None,
        channel_id: str = "C0ALERTS",
        team_id: str = TEAM_ID,
        enterprise_id: str | None = None,
        command: str = "/zqbo",
        timestamp: int | None = None,
        bad_signature: bool = False,
    ) -> tuple[requests.Response, str]:
        """Type `command text` in Slack. Returns the bot's HTTP answer and the response_url.
        A member of another organisation typing it in a Slack Connect channel types it in their
        own workspace: the payload names their team, and where the app is not installed for it
        Slack answers them itself (NotAValidCommand) and the app hears nothing."""
        response_url = self.new_response_url()
        user = self.users.get(user_id)
        with self._lock:
            channel = self.channels.get(channel_id)
            if user is not None and channel is not None and user.team_id in channel.shared_with:
                team_id, enterprise_id = user.team_id, None
                if not self.workspaces.reachable(team_id):
                    raise NotAValidCommand(command)
        form = self.command_fields(user_id, team_id, channel_id, enterprise_id, response_url, user_name)
        form.update(command=command, text=text)
        body = urlencode(form).encode()
        resp = self._post_signed(bot_url, body, "application/x-www-form-urlencoded", timestamp, bad_signature)
        return resp, response_url

    def _interaction_fields(self, team_id: str, enterprise_id: str | None, user_id: str) -> dict[str, Any]:
        """The team, user and enterprise keys of an interactivity payload (block_actions,
        view_submission)."""
        who = self._team_fields(team_id, enterprise_id)
        user = self.users.get(user_id)
        team: dict[str, Any] = {"id": team_id, "domain": who["domain"]}
        enterprise = None
        if who["enterprise_id"]:
            team.update(enterprise_id=who["enterprise_id"], enterprise_name=who["enterprise_name"])
            enterprise = {"id": who["enterprise_id"], "name": who["enterprise_name"]}
        name = user.name if user else "someone"
        # The person's own team: in a Slack Connect channel, another organisation's
        # (java-slack-sdk issue #1041: `team` is the app's workspace, `user.team_id` the clicker's).
        user_team = user.team_id if user else team_id
        return {
            "team": team,
            "user": {"id": user_id, "username": name, "name": name, "team_id": user_team},
            "enterprise": enterprise,
            "is_enterprise_install": who["is_enterprise_install"],
        }

    def send_action(
        self,
        bot_url: str,
        payload: dict[str, Any],
        *,
        team_id: str | None = None,
        enterprise_id: str | None = None,
        timestamp: int | None = None,
        bad_signature: bool = False,
    ) -> requests.Response:
        """Deliver an interactivity payload (a button press) as Slack does: `payload=` JSON.
        The payload goes as given; with team_id, its team, user.team_id, enterprise and
        is_enterprise_install are set for that team (user.id kept)."""
        if team_id is not None:
            user_id = str((payload.get("user") or {}).get("id", "U0ADMIN"))
            payload = {**payload, **self._interaction_fields(team_id, enterprise_id, user_id)}
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self._post_signed(bot_url, body, "application/x-www-form-urlencoded", timestamp, bad_signature)

    def press_button(
        self,
        bot_url: str,
        message: dict[str, Any],
        action_id: str,
        *,
        user_id: str = "U0ADMIN",
        channel_id: str | None = None,
        response_url: str | None = None,
        team_id: str = TEAM_ID,
        enterprise_id: str | None = None,
    ) -> tuple[requests.Response, str]:
        """Press the button `action_id` on `message`, as Slack reports it (block_actions):
        - a message in a channel or DM (one posted with chat.postMessage, found by its ts): the
          payload embeds the message as Slack keeps it (inbound/block_actions.message.json);
        - any other message (a command's answer, a response_url post: ephemeral, Slack keeps
          none): `container.is_ephemeral` and no `message` (inbound/block_actions.ephemeral.json);
        - a view (a published App Home, an open modal: pass the view): `container` is the view,
          the payload carries the view and no channel, message or response_url
          (inbound/block_actions.modal.json); the returned response_url is then "".
        """
        if message.get("type") in ("home", "modal"):
            return self._press_in_view(bot_url, message, action_id, user_id, team_id, enterprise_id), ""
        channel = channel_id or message.get("channel") or "C0ALERTS"
        with self._lock:
            kept = self.channels.get(channel)
            stored = next((m for m in kept.messages if m["ts"] == message.get("ts")), None) if kept else None
            shown = {k: v for k, v in stored.items() if k != "channel"} if stored else None
            shown = json.loads(json.dumps(shown)) if shown else None
            name = kept.name if kept and not channel.startswith("D") else "directmessage"
        block, element = _find_button(shown or message, action_id)
        response_url = response_url or self.new_response_url()
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": str(message.get("ts") or self._new_ts()),
            "channel_id": channel,
            "is_ephemeral": shown is None,
        }
        thread_ts = (shown or message).get("thread_ts")
        if thread_ts:
            container["thread_ts"] = thread_ts
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {},
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "container": container,
            "trigger_id": self.new_trigger_id(user_id, team_id),
            **self._interaction_fields(team_id, enterprise_id, user_id),
            "channel": {"id": channel, "name": name},
        }
        if shown is not None:
            payload["message"] = shown
        payload.update(
            state={"values": {}},
            response_url=response_url,
            actions=[_action(block, element)],
        )
        return self.send_action(bot_url, payload), response_url

    def select_option(
        self,
        bot_url: str,
        view: dict[str, Any],
        action_id: str,
        value: str,
        *,
        user_id: str = "U0ADMIN",
        team_id: str = TEAM_ID,
    ) -> requests.Response:
        """Pick the option `value` of the static_select `action_id` in a published or open view
        (block_actions with `selected_option`, as Slack sends a select's change)."""
        return self._press_in_view(bot_url, view, action_id, user_id, team_id, None, selected=value)

    def _press_in_view(
        self,
        bot_url: str,
        view: dict[str, Any],
        action_id: str,
        user_id: str,
        team_id: str,
        enterprise_id: str | None,
        selected: str | None = None,
    ) -> requests.Response:
        with self._lock:
            kept = self.open_views.get(str(view.get("id")))
            if kept is None:
                kept = next((v for v in self.home_views.values() if v.get("id") == view.get("id")), None)
            if kept is None:
                raise AssertionError(f"no published or open view {view.get('id')!r}")
            shown = as_sent(kept)
        block, element = _find_button(shown, action_id)
        action = _action(block, element)
        if selected is not None:  # a select: what was picked, never a value of its own
            option = next((o for o in element.get("options") or [] if o.get("value") == selected), None)
            if option is None:
                raise AssertionError(f"no option {selected!r} in {action_id!r}")
            action.pop("text", None)
            action.update(selected_option=option, placeholder=element.get("placeholder"))
        payload = {
            "type": "block_actions",
            "user": {},
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "container": {"type": "view", "view_id": shown["id"]},
            "trigger_id": self.new_trigger_id(user_id, team_id),
            **self._interaction_fields(team_id, enterprise_id, user_id),
            "view": shown,
            "actions": [action],
        }
        return self.send_action(bot_url, payload)

    def send_event(
        self,
        bot_url: str,
        event: dict[str, Any],
        *,
        team_id: str = TEAM_ID,
        enterprise_id: str | None = None,
        bad_signature: bool = False,
    ) -> requests.Response:
        """Deliver an Events API callback (e.g. app_home_opened) from `team_id`; an enterprise id
        as team_id addresses the org-wide install itself (authorizations' team_id null)."""
        envelope = self._event_envelope(event, team_id, enterprise_id)
        body = json.dumps(envelope).encode()
        return self._post_signed(bot_url, body, "application/json", bad_signature=bad_signature)

    def _event_envelope(
        self,
        event: dict[str, Any],
        team_id: str,
        enterprise_id: str | None,
        is_enterprise_install: bool | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            org_level = team_id in self.workspaces.enterprises
            if org_level:
                enterprise_id = team_id
                members = [t.id for t in self.teams.values() if t.enterprise_id == enterprise_id]
                team_id = members[0] if members else enterprise_id
        who = self._team_fields(team_id, enterprise_id)
        org = org_level or (
            who["is_enterprise_install"] if is_enterprise_install is None else is_enterprise_install
        )
        with self._lock:
            bot_user_id, _ = self.workspaces.bot_identity(who["enterprise_id"] if org else team_id)
            event = self._event_fields(event)
        envelope: dict[str, Any] = {"token": "legacy-verification-token", "team_id": team_id}
        if who["enterprise_id"]:  # a workspace outside any organisation has no enterprise_id key
            envelope["enterprise_id"] = who["enterprise_id"]
        return {
            **envelope,
            "context_team_id": team_id,
            "context_enterprise_id": who["enterprise_id"],
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": who["enterprise_id"],
                    "team_id": None if org_level else team_id,
                    "user_id": bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": org,
                }
            ],
            "is_ext_shared_channel": False,
        }

    def _event_fields(self, event: dict[str, Any]) -> dict[str, Any]:
        """What Slack puts in an event beside what the caller gave: app_home_opened names the DM
        with the app, the tab and (the Home tab, once published) the view
        (inbound/event_callback.app_home_opened.json); every event has its event_ts."""
        event = dict(event)
        if event.get("type") == "app_home_opened":
            user_id = str(event.get("user", ""))
            event.setdefault("channel", self.dm_channel(user_id))
            event.setdefault("tab", "home")
            home = self.home_views.get(user_id)
            if home is not None and event["tab"] == "home":
                event.setdefault("view", as_sent(home))
        event.setdefault("event_ts", f"{time.time():.6f}")
        return event

    def send_view_submission(
        self,
        bot_url: str,
        view_id_or_view: str | dict[str, Any],
        values: dict[str, Any],
        *,
        user_id: str = "U0ADMIN",
        team_id: str = TEAM_ID,
    ) -> requests.Response:
        """Press Submit on a modal (an open view's id, or a view), its inputs holding `values`
        (action_id -> a string, user/conversation id, list of ids, or an option's value). Returns
        the bot's answer; what it asks for (errors, update, push, clear, or nothing: close) is
        applied to open_views, and a view Slack would refuse is recorded as a refused call."""
        if isinstance(view_id_or_view, str):
            with self._lock:
                view = self.open_views.get(view_id_or_view)
            if view is None:
                raise AssertionError(f"no open view {view_id_or_view!r}")
        else:
            view = {"id": f"V{uuid.uuid4().hex[:10].upper()}", "team_id": team_id, **view_id_or_view}
        submitted = {
            **{k: v for k, v in json.loads(json.dumps(view)).items() if k != "user"},
            "state": {"values": submission_state(view, values)},
            "app_installed_team_id": view.get("app_installed_team_id", team_id),
        }
        payload = {
            "type": "view_submission",
            **self._interaction_fields(team_id, None, user_id),
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "trigger_id": self.new_trigger_id(user_id, team_id),
            "view": submitted,
            "response_urls": [],
        }
        resp = self.send_action(bot_url, payload)
        self._apply_response_action(view, resp)
        return resp

    def _apply_response_action(self, view: dict[str, Any], resp: requests.Response) -> None:
        if resp.status_code != 200:
            return  # Slack shows the user an error and keeps the modal open
        try:
            answer = json.loads(resp.text) if resp.text.strip() else {}
        except ValueError:
            answer = {"response_action": "?"}
        action = answer.get("response_action") if isinstance(answer, dict) else "?"
        view_id = str(view.get("id"))
        error, problems = None, []
        with self._lock:
            if action in (None, "clear"):
                root = self.open_views.get(view_id, view).get("root_view_id", view_id)
                for vid in [
                    v for v, open_view in self.open_views.items() if open_view.get("root_view_id") == root
                ]:
                    del self.open_views[vid]
                self.open_views.pop(view_id, None)
            elif action == "errors":
                inputs = {b.get("block_id") for b in view.get("blocks") or [] if b.get("type") == "input"}
                errors = answer.get("errors")
                if not isinstance(errors, dict) or not errors or not set(errors) <= inputs:
                    error = "invalid_arguments"
                    problems = [f"errors must name input blocks of the view {sorted(map(str, inputs))}"]
            elif action in ("update", "push"):
                refusal = check_modal(answer.get("view"))
                if refusal is not None:
                    error, problems = refusal.error, refusal.problems
                else:
                    new_id = view_id if action == "update" else f"V{uuid.uuid4().hex[:10].upper()}"
                    stored = self._stored_view(
                        answer["view"],
                        str(view.get("bot_id", "B0ZQBO")),
                        new_id,
                        str(view.get("team_id", TEAM_ID)),
                        str(view.get("user", "")),
                    )
                    stored["root_view_id"] = view.get("root_view_id", view_id)
                    stored["previous_view_id"] = view_id if action == "push" else view.get("previous_view_id")
                    self.open_views[new_id] = stored
            else:
                error, problems = "invalid_arguments", [f"unknown response_action {action!r}"]
        if error is not None:
            self._record("view_submission", {"response": answer, "errors": problems}, False, error, 200)

    # playing the installer's browser, and the app's lifecycle in a workspace --------------------
    def install(
        self,
        bot_base_url: str,
        team_id: str,
        user_id: str | None = None,
        *,
        org: bool = False,
        session: requests.Session | None = None,
        cancel: bool = False,
    ) -> requests.Response:
        """Install the app the way a person does: open the bot's /slack/install, follow it to
        Slack's consent page, approve for `team_id` (org=True: for its whole enterprise; team_id
        may then be the enterprise id) — or press Cancel (cancel=True) —, and follow the redirect
        back to the bot. Returns the bot's answer to its /slack/oauth_redirect. Cookies stay in
        the session, as in a browser."""
        browser = session or requests.Session()
        start = browser.get(f"{bot_base_url.rstrip('/')}/slack/install", allow_redirects=False, timeout=10)
        _loopback_is_secure(browser)
        authorize_url = self._authorize_url_from(start)
        consent = browser.get(authorize_url, timeout=10)
        if consent.status_code != 200:
            raise AssertionError(f"Slack's consent page answered {consent.status_code}: {consent.text[:300]}")
        with self._lock:
            team = self.teams.get(team_id)
            enterprise_id = team_id if team_id in self.workspaces.enterprises else None
            if org and enterprise_id is None:
                enterprise_id = team.enterprise_id if team else None
        if org and enterprise_id is None:
            raise AssertionError(f"{team_id} is in no enterprise: nothing to install org-wide")
        choice = ("enterprise_id", enterprise_id) if org else ("team_id", team_id)
        if cancel:
            choice = ("decision", "cancel")
        forms = _Forms.parse(consent.text)
        form = next((f for f in forms if f.fields.get(choice[0]) == choice[1]), None)
        if form is None:
            raise AssertionError(f"the consent page offers no {choice[0]}={choice[1]}")
        fields = dict(form.fields)
        if user_id is not None:
            fields["user_id"] = user_id
        approved = browser.post(
            urljoin(authorize_url, form.action), data=fields, allow_redirects=False, timeout=10
        )
        if approved.status_code != 302:
            raise AssertionError(f"Slack refused the approval: {approved.status_code} {approved.text[:300]}")
        return browser.get(approved.headers["Location"], timeout=10)

    def sign_in(
        self, link: str, user_id: str, browser: requests.Session | None = None, *, decline: bool = False
    ) -> requests.Response:
        """Open a bot's link in a browser that goes through Sign in with Slack as `user_id` (or
        presses Cancel): returns the bot's answer to Slack's redirect back (a 302 on to Intuit, or
        a page), or the bot's answer to the link itself when it did not send the browser here."""
        browser = browser or requests.Session()
        start = browser.get(link, allow_redirects=False, timeout=10)
        _loopback_is_secure(browser)
        target = urljoin(link, start.headers.get("Location", "")) if start.is_redirect else ""
        if not target.startswith(f"{self.url}/openid/connect/authorize"):
            return start
        page = browser.get(target, timeout=10)
        forms = _Forms.parse(page.text)
        wanted = "cancel" if decline else "allow"
        form = next((f for f in forms if f.fields.get("decision") == wanted), None)
        if page.status_code != 200 or form is None:
            raise AssertionError(f"Slack's sign-in page ({page.status_code}): {page.text[:300]}")
        approved = browser.post(
            urljoin(target, form.action),
            data={**form.fields, "user_id": user_id},
            allow_redirects=False,
            timeout=10,
        )
        if approved.status_code != 302:
            raise AssertionError(f"Slack refused the sign-in: {approved.status_code} {approved.text[:300]}")
        answer = browser.get(approved.headers["Location"], allow_redirects=False, timeout=10)
        _loopback_is_secure(browser)
        return answer

    def _authorize_url_from(self, page: requests.Response) -> str:
        """Where the bot's install page sends the browser: its redirect, or its Add to Slack link."""
        if page.is_redirect:
            return urljoin(page.url, page.headers["Location"])
        authorize = f"{self.url}/oauth/v2/authorize"
        links = [link for link in _Forms.parse_links(page.text) if link.startswith(authorize)]
        if page.status_code != 200 or not links:
            raise AssertionError(
                f"the install page ({page.status_code}) links to no {authorize}: {page.text[:300]}"
            )
        return links[0]

    def token_for(self, team_id: str) -> str:
        """The newest bot token issued for `team_id` (the preinstalled bot_token for T0EMU until a
        reinstall); for a team reached only through an org-wide install, that install's token."""
        with self._lock:
            return self.workspaces.latest_token(team_id)

    def revoke_team(self, team_id: str) -> list[str]:
        """Revoke every bot token of a team (or of an org-wide install, by enterprise id);
        returns the tokens revoked. Calls with them answer token_revoked."""
        with self._lock:
            return [g.token for g in self.workspaces.revoke(team_id)]

    def uninstall(self, events_url: str, team_id: str) -> tuple[requests.Response, requests.Response]:
        """Someone removes the app from a workspace (or, by enterprise id, from the organisation):
        its tokens are revoked, then Slack delivers `tokens_revoked` and `app_uninstalled`.
        Returns the bot's answers to both events."""
        with self._lock:
            org = team_id in self.workspaces.enterprises
            bot_user_id, _ = self.workspaces.bot_identity(team_id)
            self.workspaces.revoke(team_id)
        revoked = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [bot_user_id]}}
        first = self._post_event(events_url, self._event_envelope(revoked, team_id, None, org))
        second = self._post_event(
            events_url, self._event_envelope({"type": "app_uninstalled"}, team_id, None, org)
        )
        return first, second

    def remove_from_org_install(self, events_url: str, team_id: str) -> requests.Response:
        """An org admin takes one workspace away from the org-wide install: its token no longer
        reaches that workspace, and Slack tells the app with `team_access_revoked`
        (docs.slack.dev/reference/events/team_access_revoked). Returns the bot's answer."""
        with self._lock:
            enterprise_id = self.teams[team_id].enterprise_id
            for grant in self.tokens.values():
                if grant.is_enterprise_install and grant.enterprise_id == enterprise_id:
                    grant.removed_teams.add(team_id)
        event = {"type": "team_access_revoked", "team_ids": [team_id]}
        return self._post_event(events_url, self._event_envelope(event, str(enterprise_id), None))

    def _post_event(self, events_url: str, envelope: dict[str, Any]) -> requests.Response:
        return self._post_signed(events_url, json.dumps(envelope).encode(), "application/json")

    # HTTP ----------------------------------------------------------------------------------------
    def _routes(self) -> None:
        self.app.add_url_rule("/api/<method>", "api", self._api, methods=["GET", "POST"])
        self.app.add_url_rule("/response/<key>", "response", self._response, methods=["POST"])
        self.app.add_url_rule("/upload/v1/<key>", "upload", self._upload, methods=["POST"])
        self.app.add_url_rule("/oauth/v2/authorize", "authorize", self._authorize, methods=["GET"])
        self.app.add_url_rule(
            "/oauth/v2/authorize/approve", "approve", self._approve_install, methods=["POST"]
        )
        self.app.add_url_rule("/openid/connect/authorize", "oidc_authorize", self._oidc_authorize)
        self.app.add_url_rule(
            "/openid/connect/authorize/approve", "oidc_approve", self._oidc_approve, methods=["POST"]
        )
        self.app.add_url_rule("/openid/connect/keys", "oidc_keys", self._oidc_keys)
        # not Slack's: how `zqbo emulator say`, in another process, plays a person typing
        self.app.add_url_rule("/_emulator/command", "say_command", self._say_command, methods=["POST"])
        self.app.add_url_rule("/_emulator/response/<key>", "say_responses", self._say_responses)

    def _say_command(self) -> Response:
        """A slash command's form for a user (a fresh response_url kept here), and the names
        Slack would show for the team's members."""
        asked = request.get_json(force=True, silent=True) or {}
        user_id, channel_id = str(asked.get("user_id", "U0ADMIN")), str(asked.get("channel_id", "C0ALERTS"))
        user = self.users.get(user_id)
        if user is None:
            return Response(
                json.dumps({"error": f"no user {user_id} in this Slack"}), 404, mimetype="application/json"
            )
        form = self.command_fields(user_id, user.team_id, channel_id)
        names = {u.id: u.name for u in self.users.values() if u.team_id == user.team_id}
        return Response(json.dumps({"form": form, "names": names}), mimetype="application/json")

    def _say_responses(self, key: str) -> Response:
        """The posts a response_url received after the first `after`, waiting up to `wait` s."""
        after = request.args.get("after", 0, type=int)
        wait = min(max(request.args.get("wait", 0.0, type=float), 0.0), 30.0)
        url = f"{self.url}/response/{key}"
        deadline = time.monotonic() + wait
        with self._cond:
            while len(self.responses(url)) <= after and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
        return Response(json.dumps({"posts": self.responses(url)[after:]}), mimetype="application/json")

    # Sign in with Slack: the page a person sees ----------------------------------------------------
    def _oidc_authorize(self) -> Response:
        args = request.args
        self._delay("openid_authorize")
        problem = None
        if args.get("client_id") != self.client_id:
            problem = "invalid_client_id: this app does not exist"
        elif args.get("response_type") != "code":
            problem = "unsupported_response_type: response_type must be code"
        elif "openid" not in _scope_list(args.get("scope", "")):
            problem = "invalid_scope: Sign in with Slack needs the openid scope"
        elif not self.openid.redirect_ok(args.get("redirect_uri", "")):
            problem = "bad_redirect_uri: redirect_uri is not one of the app's Redirect URLs"
        if problem:
            return _html("Slack: something went wrong", f"<p>{html.escape(problem)}</p>", 400)
        fields = {
            k: args.get(k, "") for k in ("client_id", "redirect_uri", "state", "nonce", "team", "scope")
        }
        body = (
            "<p>zqbo wants to know who you are on Slack (your name, email and workspace).</p>"
            + _form(
                "Continue",
                {**fields, "decision": "allow", "user_id": ""},
                "/openid/connect/authorize/approve",
            )
            + _form("Cancel", {**fields, "decision": "cancel"}, "/openid/connect/authorize/approve")
        )
        return _html("Slack (emulated): sign in to zqbo", body, 200)

    def _oidc_approve(self) -> Response:
        form = request.form
        redirect_uri = form.get("redirect_uri", "")
        if form.get("client_id") != self.client_id or not self.openid.redirect_ok(redirect_uri):
            return _html("Slack: something went wrong", "<p>invalid_client_id or bad_redirect_uri</p>", 400)
        state = form.get("state", "")
        if form.get("decision") != "allow":
            return _redirect(redirect_uri, {"error": "access_denied", "state": state})
        with self._lock:
            # `team` only picks the workspace the page opens on: a person may switch to another one
            # they belong to (what real Slack does with a non-member is not known here).
            user = self.users.get(form.get("user_id", ""))
            if user is None:
                return _html("Slack: something went wrong", "<p>Sign in to Slack first.</p>", 400)
            code = self.openid.new_code(
                self.client_id,
                redirect_uri,
                user.id,
                user.team_id,
                form.get("nonce", ""),
                self.clock.now(),
                state,
            )
        return _redirect(redirect_uri, {"code": code, "state": state})

    def _oidc_keys(self) -> Response:
        with self._lock:
            return Response(json.dumps(self.openid.jwks()), content_type="application/json")

    # OAuth v2: the consent page a person sees --------------------------------------------------------
    def _authorize(self) -> Response:
        args = request.args
        self._delay("authorize")
        scopes = _scope_list(args.get("scope", ""))
        user_scopes = _scope_list(args.get("user_scope", ""))
        explicit = args.get("redirect_uri") or None
        problem = None
        if args.get("client_id") != self.client_id:
            problem = "invalid_client_id: this app does not exist"
        elif not scopes and not user_scopes:
            problem = "invalid_scope: the app asked for no scope"
        elif not (explicit or self.redirect_uri):
            problem = "bad_redirect_uri: no redirect_uri, and the app has no Redirect URL"
        elif explicit and self.redirect_uri and not explicit.startswith(self.redirect_uri):
            problem = "bad_redirect_uri: redirect_uri does not match the app's Redirect URL"
        if problem:
            return _html("Slack: something went wrong", f"<p>{html.escape(problem)}</p>", 400)
        with self._lock:
            teams = [t for t in self.teams.values() if not args.get("team") or t.id == args["team"]]
            choices = [
                (t.name, t.domain + ".slack.com", {"team_id": t.id}, self._installer(t.id)) for t in teams
            ]
            for enterprise_id, name in self.workspaces.enterprises.items():
                members = [t for t in teams if t.enterprise_id == enterprise_id]
                if members:
                    label = f"the whole {name} organisation"
                    choices.append(
                        (
                            label,
                            "Enterprise Grid",
                            {"enterprise_id": enterprise_id},
                            self._installer(members[0].id),
                        )
                    )
        common = {
            "client_id": self.client_id,
            "scope": ",".join(scopes),
            "user_scope": ",".join(user_scopes),
            "state": args.get("state", ""),
            "redirect_uri": explicit or "",
        }
        forms = "".join(
            _form(f"Allow in {name} ({where})", {**common, **target, "user_id": installer or ""})
            for name, where, target, installer in choices
        )
        cancel = _form("Cancel", {**common, "decision": "cancel"})
        listed = "".join(f"<li><code>{html.escape(scope)}</code></li>" for scope in scopes + user_scopes)
        body = (
            f"<p>zqbo ({html.escape(APP_ID)}) is requesting permission to:</p><ul>{listed}</ul>"
            f"<h2>Where should zqbo be installed?</h2>{forms or '<p>No workspace to choose.</p>'}{cancel}"
        )
        return _html("Slack (emulated): install zqbo", body, 200)

    def _installer(self, team_id: str) -> str | None:
        """Who approves by default: the team's first admin (else owner, else anyone)."""
        members = [u for u in self.users.values() if u.team_id == team_id and not u.is_bot]
        for pick in (lambda u: u.is_admin, lambda u: u.is_owner, lambda u: True):
            found = [u for u in members if pick(u)]
            if found:
                return found[0].id
        return None

    def _approve_install(self) -> Response:
        form = request.form
        self._delay("authorize")
        if form.get("client_id") != self.client_id:
            return _html("Slack: something went wrong", "<p>invalid_client_id</p>", 400)
        explicit = form.get("redirect_uri") or None
        target = explicit or self.redirect_uri
        if not target or (explicit and self.redirect_uri and not explicit.startswith(self.redirect_uri)):
            return _html("Slack: something went wrong", "<p>bad_redirect_uri</p>", 400)
        state = form.get("state", "")
        if form.get("decision") == "cancel":
            return _redirect(target, {"error": "access_denied", "state": state})
        team_id, enterprise_id = form.get("team_id") or None, form.get("enterprise_id") or None
        user_id = form.get("user_id", "")
        scope = ",".join(_scope_list(form.get("scope", "")))
        with self._lock:
            user = self.users.get(user_id)
            user_team = self.teams.get(user.team_id) if user else None
            if team_id is not None:
                allowed = team_id in self.teams and user_team is not None and user_team.id == team_id
            else:
                allowed = (
                    enterprise_id in self.workspaces.enterprises
                    and user_team is not None
                    and user_team.enterprise_id == enterprise_id
                )
            if not allowed:
                return _html(
                    "Slack: something went wrong", "<p>That user cannot install apps there.</p>", 400
                )
            code = self.workspaces.new_code(
                client_id=self.client_id,
                redirect_uri=explicit,
                team_id=team_id,
                enterprise_id=enterprise_id,
                user_id=user_id,
                scope=scope,
                now=self.clock.now(),
            )
        return _redirect(target, {"code": code.code, "state": state})

    def _args(self) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.args.items())
        args.update(request.form.items())
        if request.is_json:
            args.update(request.get_json(silent=True) or {})
        for key in ("blocks", "attachments", "view", "metadata"):
            if isinstance(args.get(key), str):
                try:
                    args[key] = json.loads(args[key])
                except ValueError:
                    pass
        return args

    def _record(
        self,
        method: str,
        args: dict[str, Any],
        ok: bool,
        error: str | None,
        status: int,
        answer_lost: bool = False,
    ) -> None:
        with self._cond:
            self.calls.append(SlackCall(method, args, self.clock.now(), ok, error, status, answer_lost))
            self._cond.notify_all()

    def _take_after_apply(self, method: str) -> tuple[threading.Event, threading.Event] | bool:
        """A queued 'applied, answer lost' fault: a hold (events), a drop (True), or none (False)."""
        with self._lock:
            hold = self._holds_after.pop(method, None)
            if hold is not None:
                return hold
            if self._drops_after.get(method):
                self._drops_after[method] -= 1
                return True
            return False

    def _api(self, method: str) -> Response:
        args = self._args()
        self._delay(method)
        with self._lock:
            hold = self._holds.pop(method, None)
        if hold is not None:
            hold[0].set()
            hold[1].wait(60)
            self._record(method, args, False, "held", 500)
            return Response("connection lost", status=500)
        fault = self._take_fault(method)
        if fault is not None:
            self._record(
                method, args, False, fault["error"], 429 if fault["retry_after"] is not None else 200
            )
            if fault["retry_after"] is not None:
                return Response(
                    json.dumps({"ok": False, "error": "ratelimited"}),
                    status=429,
                    headers={"Retry-After": str(fault["retry_after"])},
                    content_type="application/json",
                )
            return _ok_false(fault["error"])
        grant: Grant | None = None
        if method not in NO_TOKEN_METHODS:
            header = request.headers.get("Authorization", "")
            token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else args.get("token", "")
            if method == "auth.revoke" and self.openid.revoke(str(token)):  # a Sign in with Slack token
                self._record(method, args, True, None, 200)
                return Response(json.dumps({"ok": True, "revoked": True}), content_type="application/json")
            with self._lock:
                grant, auth_error = self.workspaces.authenticate(str(token), self.clock.now())
            if grant is None:
                self._record(method, args, False, auth_error, 200)
                return _ok_false(str(auth_error))
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            self._record(method, args, False, "unknown_method", 200)
            return _ok_false("unknown_method")
        with self._lock:
            result = handler(args, grant)
        ok = bool(result.get("ok"))
        error = None if ok else result.get("error")
        lost = self._take_after_apply(method)
        if lost is False:
            self._record(method, args, ok, error, 200)
            headers = {"x-oauth-scopes": grant.scope} if grant is not None else {}
            return Response(json.dumps(result), content_type="application/json", headers=headers)
        self._record(method, args, ok, error, 500, answer_lost=True)
        if isinstance(lost, tuple):
            applied, release = lost
            applied.set()
            release.wait(HOLD_TIMEOUT)
        return Response("connection lost", status=500)

    # Web API methods (called under the lock, with the caller's grant) ----------------------------
    def _user_for(self, grant: Grant, user_id: Any) -> SlackUser | None:
        """A user the token can see: one of its team (or of its org's teams)."""
        user = self.users.get(str(user_id or ""))
        return user if user is not None and self.workspaces.covers(grant, user.team_id) else None

    def _channel_for(self, grant: Grant, channel_id: Any) -> Channel | None:
        channel = self.channels.get(str(channel_id or ""))
        if channel is None:
            return None
        teams = (channel.team_id, *channel.shared_with)
        return channel if any(self.workspaces.covers(grant, t) for t in teams) else None

    def _m_auth_test(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        answer: dict[str, Any] = {"ok": True, "user": "zqbo"}
        if grant.is_enterprise_install:
            enterprise_id = str(grant.enterprise_id)
            answer.update(
                url=self.workspaces.enterprise_url(enterprise_id),
                team=self.workspaces.enterprises.get(enterprise_id, enterprise_id),
                team_id=enterprise_id,
            )
        else:
            team = self.teams[str(grant.team_id)]
            answer.update(url=team.url, team=team.name, team_id=team.id)
            enterprise_id = team.enterprise_id
        answer.update(user_id=grant.bot_user_id, bot_id=grant.bot_id)
        if enterprise_id:
            answer["enterprise_id"] = enterprise_id
        answer["is_enterprise_install"] = grant.is_enterprise_install
        return answer

    def _m_auth_teams_list(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        """The workspaces a token reaches: every team of the org for an org-wide install (the
        ones it was approved for), its own team otherwise."""
        teams = [t for t in self.teams.values() if self.workspaces.covers(grant, t.id)]
        listed = [{"id": t.id, "name": t.name} for t in teams]
        return {"ok": True, "teams": listed, "response_metadata": {"next_cursor": ""}}

    def _m_auth_revoke(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        if _flag(args.get("test")):
            return {"ok": True, "revoked": False}
        self.workspaces.revoke_token(grant)
        return {"ok": True, "revoked": True}

    def _m_oauth_v2_access(self, args: dict[str, Any], grant: None) -> dict[str, Any]:
        client_id, client_secret = _client_credentials(request.headers.get("Authorization", ""), args)
        if client_id != self.client_id:
            return {"ok": False, "error": "invalid_client_id"}
        if client_secret != self.client_secret:
            return {"ok": False, "error": "bad_client_secret"}
        now = self.clock.now()
        grant_type = args.get("grant_type") or "authorization_code"
        if grant_type == "refresh_token":
            issued, error = self.workspaces.refresh(str(args.get("refresh_token") or ""), now)
            if issued is None:
                return {"ok": False, "error": error}
            return self.workspaces.access_answer(issued, with_installer=False)
        if grant_type != "authorization_code":
            return {"ok": False, "error": "invalid_grant_type"}
        issued, error = self.workspaces.exchange_code(
            client_id=client_id,
            code=str(args.get("code") or ""),
            redirect_uri=args.get("redirect_uri") or None,
            default_redirect_uri=self.redirect_uri,
            now=now,
            rotating=self.token_rotation,
        )
        if issued is None:
            return {"ok": False, "error": error}
        return self.workspaces.access_answer(issued)

    def _m_openid_connect_token(self, args: dict[str, Any], grant: None) -> dict[str, Any]:
        client_id, client_secret = _client_credentials(request.headers.get("Authorization", ""), args)
        if client_id != self.client_id:
            return {"ok": False, "error": "invalid_client_id"}
        if client_secret != self.client_secret:
            return {"ok": False, "error": "bad_client_secret"}
        if (args.get("grant_type") or "authorization_code") != "authorization_code":
            return {"ok": False, "error": "invalid_grant_type"}
        now = self.clock.now()
        found, error = self.openid.exchange(
            client_id, str(args.get("code") or ""), str(args.get("redirect_uri") or ""), now
        )
        if found is None:
            return {"ok": False, "error": error}
        claims = user_claims(self.users[found.user_id], self.teams[found.team_id], now)
        return self.openid.token_answer(found, claims, now)

    def _m_openid_connect_userInfo(self, args: dict[str, Any], grant: None) -> dict[str, Any]:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else str(args.get("token", ""))
        found = self.openid.who(token, self.clock.now())
        if found is None:
            return {"ok": False, "error": "invalid_auth"}
        return user_claims(self.users[found[0]], self.teams[found[1]], self.clock.now())

    def _m_users_info(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        user = self._user_for(grant, args.get("user"))
        return {"ok": True, "user": user.as_api()} if user else {"ok": False, "error": "user_not_found"}

    def _m_conversations_open(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        ids = [u for u in str(args.get("users", "")).split(",") if u]
        if len(ids) != 1:
            return {"ok": False, "error": "not_enough_users" if not ids else "too_many_users"}
        user = self._user_for(grant, ids[0])
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        channel_id = self._open_dm(user)
        return {"ok": True, "channel": {"id": channel_id, "is_im": True, "user": ids[0]}}

    def _open_dm(self, user: SlackUser) -> str:
        channel_id = self.dm_channel(user.id)
        if channel_id not in self.channels:
            self.channels[channel_id] = Channel(channel_id, f"dm-{user.id}", team_id=user.team_id)
        return channel_id

    def _m_conversations_info(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        channel = self._channel_for(grant, args.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        is_im = channel.id.startswith("D")
        info: dict[str, Any] = {
            "id": channel.id,
            "name": channel.name,
            "is_channel": not is_im,
            "is_im": is_im,
            "is_member": channel.is_member,
            "is_private": False,
            "is_archived": False,
            "context_team_id": channel.team_id,
        }
        if not is_im:  # a channel as web_api/conversations.info.json shows one
            creator = self._installer(channel.team_id) or ""
            info.update(
                created=self._bot_updated,
                creator=creator,
                is_group=False,
                is_mpim=False,
                is_general=channel.name == "general",
                is_shared=False,
                is_ext_shared=False,
                is_org_shared=False,
                is_pending_ext_shared=False,
                is_read_only=False,
                pending_shared=[],
                parent_conversation=None,
                unlinked=0,
                name_normalized=channel.name,
                last_read="0000000000.000000",
                previous_names=[],
                topic={"value": "", "creator": "", "last_set": 0},
                purpose={"value": "", "creator": "", "last_set": 0},
                locale="en-US",
            )
        return {"ok": True, "channel": info}

    def _channel_for_post(self, args: dict[str, Any], grant: Grant) -> tuple[Channel | None, str | None]:
        channel_id = str(args.get("channel", ""))
        if channel_id in self.users:  # posting to a user id opens the DM, as Slack does
            user = self._user_for(grant, channel_id)
            if user is None:
                return None, "channel_not_found"
            channel_id = self._open_dm(user)
        channel = self._channel_for(grant, channel_id)
        if channel is None:
            return None, "channel_not_found"
        if not channel.is_member:
            return None, "not_in_channel"
        return channel, None

    def _new_ts(self) -> str:
        return f"{int(self.clock.now().timestamp())}.{next(self._ts):06d}"

    def _checked_post(
        self, args: dict[str, Any], grant: Grant
    ) -> tuple[Channel | None, dict[str, Any] | None]:
        """The channel to post in, or Slack's refusal (channel first, then the message itself)."""
        channel, error = self._channel_for_post(args, grant)
        if channel is None:
            return None, {"ok": False, "error": error}
        refusal = check_message(args)
        if refusal is not None:
            return None, refusal.as_api()
        return channel, None

    def _m_chat_postMessage(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        channel, refused = self._checked_post(args, grant)
        metadata, metadata_error = _metadata(args)
        if channel is None or metadata_error:
            return refused or {"ok": False, "error": metadata_error}
        message = bot_message(
            ts=self._new_ts(),
            text=str(args.get("text", "")),
            blocks=args.get("blocks") or [],
            bot_user_id=grant.bot_user_id,
            bot_id=grant.bot_id,
            team_id=channel.team_id,
            updated=self._bot_updated,
        )
        message["channel"] = channel.id  # the emulator's note: where it is (history leaves it out)
        if metadata is not None:
            message["metadata"] = metadata
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        channel.messages.append(message)
        return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": message}

    def _m_chat_update(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        channel, refused = self._checked_post(args, grant)
        metadata, metadata_error = _metadata(args)
        if channel is None or metadata_error:
            return refused or {"ok": False, "error": metadata_error}
        for message in channel.messages:
            if message["ts"] == args.get("ts"):
                message["text"] = args.get("text", "")
                message["blocks"] = kept_blocks(args.get("blocks") or [])
                if metadata is not None:  # an update without metadata keeps the message's own
                    message["metadata"] = metadata
                message["edited"] = {"user": grant.bot_user_id, "ts": self._new_ts()}
                return {
                    "ok": True,
                    "channel": channel.id,
                    "ts": message["ts"],
                    "text": message["text"],
                    "message": message,
                }
        return {"ok": False, "error": "message_not_found"}

    def _m_chat_postEphemeral(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        channel, refused = self._checked_post(args, grant)
        if channel is None:
            return refused or {"ok": False, "error": "channel_not_found"}
        if self._user_for(grant, args.get("user")) is None:
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self._new_ts()}

    # files_upload_v2 (bot/emulator/slack_files.py) ---------------------------------------------
    def shared_files(self, channel_id: str) -> list[UploadedFile]:
        """The files shared in a channel (or a user's DM), in order, with their bytes."""
        with self._lock:
            channel_id = self.dm_channel(channel_id) if channel_id in self.users else channel_id
            return [f for f in self.files.by_id.values() if f.shared and f.channel == channel_id]

    def _m_files_getUploadURLExternal(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        answer, key = self.files.start(args, grant.install_key)
        if answer.get("ok"):
            answer["upload_url"] = f"{self.url}/upload/v1/{key}"
        return answer

    def _upload(self, key: str) -> Response:
        with self._lock:
            status, body = self.files.upload(key, request.get_data())
        return Response(body, status=status, content_type="text/plain")

    def _m_files_completeUploadExternal(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        found, error = self.files.complete(args, grant.install_key)
        if error:
            return {"ok": False, "error": error}
        channel = None
        if args.get("channel_id"):
            channel, error = self._channel_for_post({"channel": args["channel_id"]}, grant)
            if channel is None:
                return {"ok": False, "error": error}
        ts = self._new_ts()
        created = int(self.clock.now().timestamp())
        shared = [f.as_api(created, grant.bot_user_id) for f in found]
        for upload in found:
            upload.shared = channel is not None
            upload.channel = channel.id if channel else ""
            upload.initial_comment = str(args.get("initial_comment") or "")
        if channel is not None:  # shared: a message with the files, as Slack posts one
            message = bot_message(
                ts=ts,
                text=str(args.get("initial_comment") or ""),
                blocks=[],
                bot_user_id=grant.bot_user_id,
                bot_id=grant.bot_id,
                team_id=channel.team_id,
                updated=self._bot_updated,
            )
            message.update(channel=channel.id, files=shared, upload=True)
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            channel.messages.append(message)
        return {"ok": True, "files": shared}

    def _m_views_publish(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        user_id = str(args.get("user_id", ""))
        view = args.get("view")
        if self._user_for(grant, user_id) is None:
            return {"ok": False, "error": "user_not_found"}
        if not isinstance(view, dict) or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        blocks = view.get("blocks", [])
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            return {"ok": False, "error": "invalid_blocks_format"}
        problems = block_kit_problems(blocks, "/view/blocks", MAX_VIEW_BLOCKS)
        if problems:
            return MessageRefusal("invalid_blocks", problems).as_api()
        team_id = self.users[user_id].team_id
        view_id = str(self.home_views.get(user_id, {}).get("id") or f"V{uuid.uuid4().hex[:10].upper()}")
        stored = kept_view(view, bot_id=grant.bot_id, view_id=view_id, team_id=team_id, user_id=user_id)
        self.home_views[user_id] = stored
        return {"ok": True, "view": as_sent(stored)}

    def _m_views_open(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        trigger_id = str(args.get("trigger_id") or args.get("interactivity_pointer") or "")
        trigger = self._triggers.get(trigger_id)
        if trigger is None or not self.workspaces.covers(grant, trigger["team_id"]):
            return {"ok": False, "error": "invalid_trigger_id"}
        if trigger.get("used"):
            return {"ok": False, "error": "exchanged_trigger_id"}
        if (self.clock.now() - trigger["at"]).total_seconds() > TRIGGER_LIFETIME:
            return {"ok": False, "error": "expired_trigger_id"}
        view = args.get("view")
        refusal = check_modal(view)
        if refusal is not None:
            return refusal.as_api()
        assert isinstance(view, dict)
        if view.get("external_id") and self._view_by_external_id(grant, view["external_id"]) is not None:
            return {"ok": False, "error": "duplicate_external_id"}
        trigger["used"] = True
        view_id = f"V{uuid.uuid4().hex[:10].upper()}"
        stored = self._stored_view(view, grant.bot_id, view_id, trigger["team_id"], trigger["user_id"])
        self.open_views[view_id] = stored
        return {"ok": True, "view": _as_api(stored)}

    def _m_views_update(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        current = None
        if args.get("view_id"):
            current = self.open_views.get(str(args["view_id"]))
            if current is not None and not self.workspaces.covers(grant, current["team_id"]):
                current = None
        elif args.get("external_id"):
            current = self._view_by_external_id(grant, str(args["external_id"]))
        else:
            return {"ok": False, "error": "invalid_arguments"}
        if current is None:
            return {"ok": False, "error": "not_found"}
        if args.get("hash") and args["hash"] != current["hash"]:
            return {"ok": False, "error": "hash_conflict"}
        view = args.get("view")
        refusal = check_modal(view)
        if refusal is not None:
            return refusal.as_api()
        assert isinstance(view, dict)
        stored = self._stored_view(view, grant.bot_id, current["id"], current["team_id"], current["user"])
        stored["root_view_id"] = current["root_view_id"]
        stored["previous_view_id"] = current["previous_view_id"]
        self.open_views[current["id"]] = stored
        return {"ok": True, "view": _as_api(stored)}

    def _view_by_external_id(self, grant: Grant, external_id: str) -> dict[str, Any] | None:
        return next(
            (
                v
                for v in self.open_views.values()
                if v.get("external_id") == external_id and self.workspaces.covers(grant, v["team_id"])
            ),
            None,
        )

    def _stored_view(
        self, view: dict[str, Any], bot_id: str, view_id: str, team_id: str, user_id: str
    ) -> dict[str, Any]:
        return kept_view(view, bot_id=bot_id, view_id=view_id, team_id=team_id, user_id=user_id)

    def _m_conversations_history(self, args: dict[str, Any], grant: Grant) -> dict[str, Any]:
        """Parent messages (no thread replies), newest first, paged by an opaque cursor."""
        channel = self._channel_for(grant, args.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not channel.is_member:
            return {"ok": False, "error": "not_in_channel"}
        try:
            oldest = Decimal(str(args.get("oldest") or "0"))
            latest = Decimal(str(args["latest"])) if args.get("latest") else None
            limit = int(args.get("limit") or HISTORY_LIMIT)
        except (InvalidOperation, ValueError):
            return {"ok": False, "error": "invalid_arguments"}
        before = _cursor_ts(str(args["cursor"])) if args.get("cursor") else None
        if args.get("cursor") and before is None:
            return {"ok": False, "error": "invalid_cursor"}
        limit = min(limit if limit > 0 else HISTORY_LIMIT, HISTORY_MAX_LIMIT)
        inclusive = _flag(args.get("inclusive"))
        with_metadata = _flag(args.get("include_all_metadata"))

        def in_window(ts: Decimal) -> bool:
            after_oldest = ts >= oldest if inclusive else ts > oldest
            before_latest = latest is None or (ts <= latest if inclusive else ts < latest)
            return after_oldest and before_latest and (before is None or ts <= before)

        parents = [m for m in channel.messages if m.get("thread_ts", m["ts"]) == m["ts"]]
        window = sorted(
            (m for m in parents if in_window(Decimal(m["ts"]))), key=lambda m: Decimal(m["ts"]), reverse=True
        )
        page, rest = window[:limit], window[limit:]
        messages = []
        for m in page:
            shown = {k: v for k, v in m.items() if k != "channel" and (with_metadata or k != "metadata")}
            replies = [r["ts"] for r in channel.messages if r.get("thread_ts") == m["ts"] and r is not m]
            if replies:  # as Slack shows a thread's parent (messages() keeps it as posted)
                shown.update(thread_ts=m["ts"], reply_count=len(replies), latest_reply=replies[-1])
            messages.append(json.loads(json.dumps(shown)))
        next_cursor = base64.b64encode(f"next_ts:{rest[0]['ts']}".encode()).decode() if rest else ""
        return {
            "ok": True,
            "messages": messages,
            "has_more": bool(rest),
            "pin_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }

    # response_url --------------------------------------------------------------------------------
    def _response(self, key: str) -> Response:
        self._delay("response_url")
        body = request.get_json(force=True, silent=True)
        with self._cond:
            record = self._responses.get(key)
            if record is None or time.time() - record["created"] > RESPONSE_URL_LIFETIME:
                return self._refuse_response(key, body, 404, "expired_url")
            if len(record["posts"]) >= RESPONSE_URL_POSTS:
                return self._refuse_response(key, body, 404, "used_url")
            if not isinstance(body, dict):
                return self._refuse_response(key, body, 400, "invalid_payload")
            refusal = None if body.get("delete_original") else check_message(body)
            if refusal is not None:
                return self._refuse_response(key, body, 400, refusal.error, refusal.problems)
            record["posts"].append(body)
            self._cond.notify_all()
        return Response("ok", status=200, content_type="text/html")

    def _refuse_response(
        self, key: str, body: Any, status: int, error: str, problems: list[str] | None = None
    ) -> Response:
        """Slack answers a bad response_url post with a bare error word; nothing reaches the user."""
        with self._cond:
            self._refused_responses.append(
                {
                    "url": f"{self.url}/response/{key}",
                    "status": status,
                    "error": error,
                    "problems": list(problems or []),
                    "body": body,
                    "at": self.clock.now(),
                }
            )
            self._cond.notify_all()
        return Response(error, status=status, content_type="text/plain")


def _find_button(message: dict[str, Any], action_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The block holding the button `action_id` and the button (an actions element or an accessory)."""
    for block in message.get("blocks") or []:
        elements = (
            block.get("elements", []) if block.get("type") == "actions" else [block.get("accessory") or {}]
        )
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return block, element
    raise AssertionError(f"no button {action_id!r} on the message")


def _action(block: dict[str, Any], element: dict[str, Any]) -> dict[str, Any]:
    """actions[0] of a button press: what the button says and holds, and when it was pressed."""
    text = dict(element.get("text") or {"type": "plain_text", "text": ""})
    if text.get("type") == "plain_text":
        text.setdefault("emoji", True)
    action: dict[str, Any] = {
        "action_id": element["action_id"],
        "block_id": str(block.get("block_id") or short_id()),
        "text": text,
    }
    for key in ("value", "style", "url"):
        if key in element:
            action[key] = element[key]
    action.update(type=element.get("type", "button"), action_ts=f"{time.time():.6f}")
    return action


def _tz_offset(tz: str) -> int:
    """Seconds east of UTC now, as Slack's tz_offset (standard or daylight, as it is today)."""
    from zoneinfo import ZoneInfo

    offset = datetime.now(ZoneInfo(tz)).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def _ok_false(error: str) -> Response:
    return Response(json.dumps({"ok": False, "error": error}), content_type="application/json")


def _flag(value: Any) -> bool:
    """A boolean Web API argument: slack_sdk sends "1"/"0", JSON bodies true/false."""
    return value is True or str(value).lower() in ("1", "true")


def _metadata(args: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Message metadata as Slack takes it: a JSON object (or its JSON string) with a string
    `event_type` and an object `event_payload`."""
    raw = args.get("metadata")
    if raw is None or raw == "":
        return None, None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None, "invalid_metadata_format"
    if not isinstance(raw, dict):
        return None, "invalid_metadata_format"
    event_type, payload = raw.get("event_type"), raw.get("event_payload")
    if not isinstance(event_type, str) or not event_type or not isinstance(payload, dict):
        return None, "invalid_metadata_schema"
    return {"event_type": event_type, "event_payload": payload}, None


def _cursor_ts(cursor: str) -> Decimal | None:
    """The ts a history cursor resumes at (inclusive), or None for a cursor we never issued."""
    try:
        text = base64.b64decode(cursor, validate=True).decode()
        return Decimal(text.removeprefix("next_ts:")) if text.startswith("next_ts:") else None
    except (ValueError, InvalidOperation):
        return None


def _client_credentials(authorization: str, args: dict[str, Any]) -> tuple[str, str]:
    """client_id and client_secret as oauth.v2.access takes them: HTTP Basic auth (what slack_sdk
    sends) or form fields."""
    if authorization.startswith("Basic "):
        try:
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            return client_id, secret
        except (ValueError, UnicodeDecodeError):
            return "", ""
    return str(args.get("client_id") or ""), str(args.get("client_secret") or "")


def _scope_list(text: str) -> list[str]:
    return [scope for scope in text.replace(" ", ",").split(",") if scope]


def _html(title: str, body: str, status: int) -> Response:
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Response(page, status=status, content_type="text/html; charset=utf-8")


def _form(button: str, fields: dict[str, str], action: str = "/oauth/v2/authorize/approve") -> str:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields.items()
    )
    return (
        f'<form method="post" action="{action}">{hidden}'
        f'<button type="submit">{html.escape(button)}</button></form>'
    )


def _redirect(target: str, params: dict[str, str]) -> Response:
    sep = "&" if "?" in target else "?"
    return Response("", status=302, headers={"Location": f"{target}{sep}{urlencode(params)}"})


@dataclass
class _Form:
    action: str
    fields: dict[str, str]


class _Forms(HTMLParser):
    """The forms (action and named inputs) and the links of an HTML page, as a browser reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.links: list[str] = []

    @classmethod
    def parse(cls, page: str) -> list[_Form]:
        parser = cls()
        parser.feed(page)
        return parser.forms

    @classmethod
    def parse_links(cls, page: str) -> list[str]:
        parser = cls()
        parser.feed(page)
        return parser.links

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(_Form(values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1].fields[values["name"]] = values.get("value", "")
        elif tag == "a" and values.get("href"):
            self.links.append(values["href"])


def _loopback_is_secure(browser: requests.Session) -> None:
    """Browsers send Secure cookies (Bolt's state cookie) to http://127.0.0.1 and localhost, which
    they count as secure origins; requests' cookie jar does not, so those cookies drop the flag."""
    for cookie in browser.cookies:
        if cookie.domain in ("127.0.0.1", "localhost", "localhost.local"):
            cookie.secure = False


_as_api = as_sent
