"""Slack, emulated over real HTTP: the Web API methods zqbo calls, a response_url sink, and a
client side that signs slash commands, button presses and events the way Slack does.

Shapes follow ../shared/API_FACTS.md: errors are HTTP 200 `{"ok": false, "error": ...}`, rate
limits HTTP 429 with `Retry-After`; every call is recorded (including refused ones) so tests can
assert what the bot really sent. Slack's message limits are enforced on chat.postMessage,
chat.update, chat.postEphemeral, views.publish and response_url posts (top-level text, block
count, every block through slack_sdk's Block Kit models plus the per-element limits slack_sdk
does not check: slack_blockkit.py), so a card that Slack would refuse fails here too. Messages keep their text
exactly as sent and may carry metadata, read back with conversations.history.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

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
)

RESPONSE_URL_POSTS = 5
RESPONSE_URL_LIFETIME = 30 * 60
TEAM_ID = "T0EMU"
HISTORY_LIMIT = 100
HISTORY_MAX_LIMIT = 999
HOLD_TIMEOUT = 60.0

__all__ = ["BAD_MESSAGE_ERRORS", "MessageRefusal", "SlackEmulator", "block_kit_problems", "check_message"]


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

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "real_name": self.real_name,
            "deleted": False,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": self.is_owner,
            "is_bot": self.is_bot,
            "tz": "Europe/London",
            "profile": {
                "real_name": self.real_name,
                "display_name": self.name,
                "email": self.email,
            },
        }


@dataclass
class Channel:
    id: str
    name: str
    is_member: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)


class SlackEmulator(EmulatorServer):
    name = "slack-emulator"

    def __init__(
        self,
        bot_token: str = "xoxb-emulator-0000-token",
        signing_secret: str = "emu-signing-secret-5f2a",
        clock: Clock | None = None,
        port: int = 0,
    ) -> None:
        self.bot_token = bot_token
        self.signing_secret = signing_secret
        self.calls: list[SlackCall] = []
        self.users: dict[str, SlackUser] = {}
        self.channels: dict[str, Channel] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self._responses: dict[str, dict[str, Any]] = {}
        self._refused_responses: list[dict[str, Any]] = []
        self._ts = itertools.count(1)
        self._cond = threading.Condition()
        self._holds: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._holds_after: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._releases: list[threading.Event] = []  # every hold not yet released, arrived or not
        self._drops_after: dict[str, int] = {}
        super().__init__(clock=clock, port=port)
        self.add_user("U0ADMIN", "ana", "Ana Admin", "ana@acme.example", is_admin=True)
        self.add_user("U0OWNER", "olu", "Olu Owner", "olu@acme.example", is_owner=True)
        self.add_user("U0STAFF", "sam", "Sam Staff", "sam@acme.example")
        self.add_channel("C0ALERTS", "qbo-alerts")

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # world setup ---------------------------------------------------------------------------------
    def add_user(self, user_id: str, name: str, real_name: str, email: str, **flags: bool) -> SlackUser:
        user = SlackUser(user_id, name, real_name, email, **flags)
        with self._lock:
            self.users[user_id] = user
        return user

    def add_channel(self, channel_id: str, name: str, is_member: bool = True) -> Channel:
        channel = Channel(channel_id, name, is_member)
        with self._lock:
            self.channels[channel_id] = channel
        return channel

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

    def send_command(
        self,
        bot_url: str,
        text: str,
        *,
        user_id: str = "U0ADMIN",
        user_name: str | None = None,
        channel_id: str = "C0ALERTS",
        team_id: str = TEAM_ID,
        command: str = "/zqbo",
        timestamp: int | None = None,
        bad_signature: bool = False,
    ) -> tuple[requests.Response, str]:
        """Type `command text` in Slack. Returns the bot's HTTP answer and the response_url."""
        response_url = self.new_response_url()
        user = self.users.get(user_id)
        form = {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "team_domain": "acme",
            "channel_id": channel_id,
            "channel_name": self.channels[channel_id].name
            if channel_id in self.channels
            else "directmessage",
            "user_id": user_id,
            "user_name": user_name or (user.name if user else "someone"),
            "command": command,
            "text": text,
            "api_app_id": "A0ZQBO",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{next(self._ts)}.{int(time.time())}.emu",
        }
        body = urlencode(form).encode()
        resp = self._post_signed(bot_url, body, "application/x-www-form-urlencoded", timestamp, bad_signature)
        return resp, response_url

    def send_action(
        self,
        bot_url: str,
        payload: dict[str, Any],
        *,
        timestamp: int | None = None,
        bad_signature: bool = False,
    ) -> requests.Response:
        """Deliver an interactivity payload (a button press) as Slack does: `payload=` JSON."""
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
    ) -> tuple[requests.Response, str]:
        """Press the button `action_id` on `message` (as posted or as received at a response_url)."""
        element = next(
            (
                e
                for b in message.get("blocks", [])
                for e in (b.get("elements", []) if b.get("type") == "actions" else [b.get("accessory") or {}])
                if e.get("action_id") == action_id
            ),
            None,
        )
        if element is None:
            raise AssertionError(f"no button {action_id!r} on the message")
        response_url = response_url or self.new_response_url()
        user = self.users.get(user_id)
        channel = channel_id or message.get("channel") or "C0ALERTS"
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM_ID, "domain": "acme"},
            "user": {"id": user_id, "username": user.name if user else "someone", "team_id": TEAM_ID},
            "api_app_id": "A0ZQBO",
            "token": "legacy-verification-token",
            "trigger_id": f"{next(self._ts)}.{int(time.time())}.emu",
            "channel": {"id": channel},
            "container": {"type": "message", "message_ts": message.get("ts", ""), "channel_id": channel},
            "message": message,
            "response_url": response_url,
            "actions": [
                {
                    "type": element.get("type", "button"),
                    "action_id": action_id,
                    "block_id": "b",
                    "value": element.get("value", ""),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return self.send_action(bot_url, payload), response_url

    def send_event(
        self, bot_url: str, event: dict[str, Any], *, bad_signature: bool = False
    ) -> requests.Response:
        """Deliver an Events API callback (e.g. app_home_opened)."""
        envelope = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "A0ZQBO",
            "event": {"event_ts": f"{time.time():.6f}", **event},
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
        }
        body = json.dumps(envelope).encode()
        return self._post_signed(bot_url, body, "application/json", bad_signature=bad_signature)

    # HTTP ----------------------------------------------------------------------------------------
    def _routes(self) -> None:
        self.app.add_url_rule("/api/<method>", "api", self._api, methods=["GET", "POST"])
        self.app.add_url_rule("/response/<key>", "response", self._response, methods=["POST"])

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
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or args.get("token", "")
        if token != self.bot_token:
            self._record(method, args, False, "invalid_auth", 200)
            return _ok_false("invalid_auth")
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            self._record(method, args, False, "unknown_method", 200)
            return _ok_false("unknown_method")
        with self._lock:
            result = handler(args)
        ok = bool(result.get("ok"))
        error = None if ok else result.get("error")
        lost = self._take_after_apply(method)
        if lost is False:
            self._record(method, args, ok, error, 200)
            return Response(json.dumps(result), content_type="application/json")
        self._record(method, args, ok, error, 500, answer_lost=True)
        if isinstance(lost, tuple):
            applied, release = lost
            applied.set()
            release.wait(HOLD_TIMEOUT)
        return Response("connection lost", status=500)

    # Web API methods (called under the lock) -------------------------------------------------
    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://acme.slack.com/",
            "team": "Acme",
            "user": "zqbo",
            "team_id": TEAM_ID,
            "user_id": "U0ZQBO",
            "bot_id": "B0ZQBO",
            "is_enterprise_install": False,
        }

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user", "")))
        return {"ok": True, "user": user.as_api()} if user else {"ok": False, "error": "user_not_found"}

    def _m_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        ids = [u for u in str(args.get("users", "")).split(",") if u]
        if len(ids) != 1:
            return {"ok": False, "error": "not_enough_users" if not ids else "too_many_users"}
        if ids[0] not in self.users:
            return {"ok": False, "error": "user_not_found"}
        channel_id = self.dm_channel(ids[0])
        if channel_id not in self.channels:
            self.channels[channel_id] = Channel(channel_id, f"dm-{ids[0]}")
        return {"ok": True, "channel": {"id": channel_id, "is_im": True, "user": ids[0]}}

    def _channel_for_post(self, args: dict[str, Any]) -> tuple[Channel | None, str | None]:
        channel_id = str(args.get("channel", ""))
        if channel_id in self.users:  # posting to a user id opens the DM, as Slack does
            channel_id = self.dm_channel(channel_id)
            self.channels.setdefault(channel_id, Channel(channel_id, f"dm-{args['channel']}"))
        channel = self.channels.get(channel_id)
        if channel is None:
            return None, "channel_not_found"
        if not channel.is_member:
            return None, "not_in_channel"
        return channel, None

    def _new_ts(self) -> str:
        return f"{int(self.clock.now().timestamp())}.{next(self._ts):06d}"

    def _checked_post(self, args: dict[str, Any]) -> tuple[Channel | None, dict[str, Any] | None]:
        """The channel to post in, or Slack's refusal (channel first, then the message itself)."""
        channel, error = self._channel_for_post(args)
        if channel is None:
            return None, {"ok": False, "error": error}
        refusal = check_message(args)
        if refusal is not None:
            return None, refusal.as_api()
        return channel, None

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, refused = self._checked_post(args)
        metadata, metadata_error = _metadata(args)
        if channel is None or metadata_error:
            return refused or {"ok": False, "error": metadata_error}
        message = {
            "type": "message",
            "user": "U0ZQBO",
            "bot_id": "B0ZQBO",
            "ts": self._new_ts(),
            "text": args.get("text", ""),
            "blocks": args.get("blocks") or [],
            "channel": channel.id,
        }
        if metadata is not None:
            message["metadata"] = metadata
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        channel.messages.append(message)
        return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": message}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, refused = self._checked_post(args)
        metadata, metadata_error = _metadata(args)
        if channel is None or metadata_error:
            return refused or {"ok": False, "error": metadata_error}
        for message in channel.messages:
            if message["ts"] == args.get("ts"):
                message["text"] = args.get("text", "")
                message["blocks"] = args.get("blocks") or []
                if metadata is not None:  # an update without metadata keeps the message's own
                    message["metadata"] = metadata
                message["edited"] = {"user": "U0ZQBO", "ts": self._new_ts()}
                return {
                    "ok": True,
                    "channel": channel.id,
                    "ts": message["ts"],
                    "text": message["text"],
                    "message": message,
                }
        return {"ok": False, "error": "message_not_found"}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, refused = self._checked_post(args)
        if channel is None:
            return refused or {"ok": False, "error": "channel_not_found"}
        if str(args.get("user", "")) not in self.users:
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self._new_ts()}

    def _m_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("user_id", ""))
        view = args.get("view")
        if user_id not in self.users:
            return {"ok": False, "error": "user_not_found"}
        if not isinstance(view, dict) or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        blocks = view.get("blocks", [])
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            return {"ok": False, "error": "invalid_blocks_format"}
        problems = block_kit_problems(blocks, "/view/blocks", MAX_VIEW_BLOCKS)
        if problems:
            return MessageRefusal("invalid_blocks", problems).as_api()
        stored = {**view, "id": f"V{uuid.uuid4().hex[:10].upper()}"}
        self.home_views[user_id] = stored
        return {"ok": True, "view": stored}

    def _m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """Parent messages (no thread replies), newest first, paged by an opaque cursor."""
        channel = self.channels.get(str(args.get("channel", "")))
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
