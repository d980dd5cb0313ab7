"""What Slack keeps and sends back: a bot's message, its blocks, a kept view, the bot's profile.

The one place that says which real sample each shape follows (tests/conformance/slack/, held to
by tests/conformance/test_emulator_fidelity.py):
- a bot's message (chat.postMessage / chat.update `message`, conversations.history `messages`,
  block_actions `message`): inbound/block_actions.message.json (a 2026 capture: `user` the bot
  user, `type`, `ts`, `bot_id`, `app_id`, `text`, `team` as a string, `blocks` with block ids; no
  `subtype`, which only legacy bot messages carry) plus `bot_profile` as Slack's SDKs record it
  (web_api/chat.postMessage.java_sdk_all_fields.json);
- blocks as kept: every block has a `block_id` (Slack makes short random ones, "jJQhN"), plain_text
  objects carry `emoji`, mrkdwn ones `verbatim`, input blocks `optional` and `dispatch_action`
  (inbound/view_submission.json, block_actions.message_2020.json);
- a kept view (views.open / views.update / views.publish `view`, block_actions / view_submission
  `view`, app_home_opened `view`): web_api/views.*.json and inbound/view_submission.json.
"""

from __future__ import annotations

import json
import secrets
import string
import time
import uuid
from typing import Any

from bot.emulator.slack_tenancy import APP_ID

BOT_NAME = "zqbo"
_ID_CHARS = string.ascii_letters + string.digits


def short_id(taken: set[str] | None = None) -> str:
    """A block id as Slack makes one when the app gives none: 4 or 5 letters and digits."""
    while True:
        made = "".join(secrets.choice(_ID_CHARS) for _ in range(4 + secrets.randbelow(2)))
        if not taken or made not in taken:
            return made


def kept_blocks(blocks: Any) -> list[dict[str, Any]]:
    """Blocks as Slack keeps them: a copy with block ids and the defaults Slack fills in."""
    if not isinstance(blocks, list):
        return []
    kept = json.loads(json.dumps(blocks))
    taken = {str(b.get("block_id")) for b in kept if isinstance(b, dict) and b.get("block_id")}
    for block in kept:
        if not isinstance(block, dict):
            continue
        if not block.get("block_id"):
            block["block_id"] = short_id(taken)
            taken.add(block["block_id"])
        if block.get("type") == "input":
            block.setdefault("optional", False)
            block.setdefault("dispatch_action", False)
            element = block.get("element")
            if isinstance(element, dict):
                element.setdefault("action_id", short_id())
        _text_defaults(block)
    return kept


def _text_defaults(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _text_defaults(item)
    elif isinstance(node, dict):
        if isinstance(node.get("text"), str):
            if node.get("type") == "plain_text":
                node.setdefault("emoji", True)
            elif node.get("type") == "mrkdwn":
                node.setdefault("verbatim", False)
        for value in node.values():
            _text_defaults(value)


def bot_profile(bot_id: str, team_id: str, updated: int) -> dict[str, Any]:
    icons = {f"image_{size}": f"https://avatars.slack-edge.com/zqbo_{size}.png" for size in (36, 48, 72)}
    return {
        "id": bot_id,
        "deleted": False,
        "name": BOT_NAME,
        "updated": updated,
        "app_id": APP_ID,
        "icons": icons,
        "team_id": team_id,
    }


def bot_message(
    *, ts: str, text: str, blocks: Any, bot_user_id: str, bot_id: str, team_id: str, updated: int
) -> dict[str, Any]:
    """A message the app posted with its bot token, as Slack keeps and returns it."""
    return {
        "user": bot_user_id,
        "type": "message",
        "ts": ts,
        "bot_id": bot_id,
        "app_id": APP_ID,
        "text": text,
        "team": team_id,
        "bot_profile": bot_profile(bot_id, team_id, updated),
        "blocks": kept_blocks(blocks),
    }


def kept_view(
    view: dict[str, Any], *, bot_id: str, view_id: str, team_id: str, user_id: str
) -> dict[str, Any]:
    """A view as Slack keeps and returns it: ids filled in, the team, a fresh hash (`user`, who
    sees it, is the emulator's note and is left out of what Slack sends)."""
    copy = json.loads(json.dumps(view))
    for key in ("title", "submit", "close"):
        _text_defaults(copy.get(key))
    return {
        "private_metadata": "",
        "callback_id": "",
        "external_id": "",
        "clear_on_close": False,
        "notify_on_close": False,
        "submit": None,
        "close": None,
        **copy,
        "blocks": kept_blocks(copy.get("blocks") or []),
        "id": view_id,
        "team_id": team_id,
        "user": user_id,
        "state": {"values": {}},
        "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": APP_ID,
        "app_installed_team_id": team_id,
        "bot_id": bot_id,
    }


def as_sent(view: dict[str, Any]) -> dict[str, Any]:
    """A kept view as Slack sends it (the emulator's `user` note left out)."""
    return {k: v for k, v in json.loads(json.dumps(view)).items() if k != "user"}
