"""What zqbo sends to Slack, made safe in one place: escaping and Slack's limits.

Escaping. Slack mrkdwn has three escapes (`&`, `<`, `>`); unescaped, a QBO company named
`<!channel>` pings a whole channel and `<https://evil|log in>` becomes a live link. Here a string
is trusted only if zqbo built it: `Mrkdwn`. Everything else — QBO names and memos, Intuit emails,
command text, stored reasons — is escaped the moment it meets a `Mrkdwn` (`md()`, `+`, `join`)
or a block or message (`section()`, `Message(...)`). Forgetting to mark something makes it
*escaped*, never live: safe by default, the way HTML templates autoescape.

Limits. `Message` and `home_view` cut every block to what Slack accepts (API_FACTS.md): top-level
text 40,000, section 3,000, 10 fields of 2,000, button text 75 / value 2,000 / url 3,000, ids 255,
context 10 elements, actions 25, confirm title/text/buttons 100/300/30, and 50 blocks per message
(100 per Home view). Text is cut on a boundary: never inside `&amp;` or a `<…>` token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

Block = dict[str, Any]

TEXT_LIMIT = 40_000
SECTION_LIMIT = 3_000
FIELD_LIMIT = 2_000
MAX_FIELDS = 10
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS = 25
BUTTON_TEXT_LIMIT = 75
BUTTON_VALUE_LIMIT = 2_000
URL_LIMIT = 3_000
ID_LIMIT = 255
HEADER_LIMIT = 150
CONFIRM_TITLE_LIMIT = 100
CONFIRM_TEXT_LIMIT = 300
CONFIRM_BUTTON_LIMIT = 30
ELLIPSIS = "…"


class Mrkdwn(str):
    """mrkdwn that zqbo built itself, sent as is. Combining it with anything else escapes the
    other side, so untrusted text can only ever enter as plain characters."""

    __slots__ = ()

    def __add__(self, other: object) -> Mrkdwn:
        return Mrkdwn(str.__add__(self, esc(other)))

    def __radd__(self, other: object) -> Mrkdwn:
        return Mrkdwn(str.__add__(esc(other), self))

    def join(self, parts: Iterable[object]) -> Mrkdwn:  # type: ignore[override]
        return Mrkdwn(str.join(self, (esc(p) for p in parts)))


def esc(value: object) -> Mrkdwn:
    """Slack's three escapes, for anything not built by zqbo; Mrkdwn passes through."""
    if isinstance(value, Mrkdwn):
        return value
    return Mrkdwn(str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def _safe(value: object) -> object:
    """What may enter a template: zqbo's Mrkdwn and plain numbers as they are (so format specs
    like `{:>6}` or `{:,}` still work), anything else as escaped text."""
    if isinstance(value, Mrkdwn) or (isinstance(value, int | float) and not isinstance(value, str)):
        return value
    return esc(value)


def md(template: str, /, *args: object, **kwargs: object) -> Mrkdwn:
    """`template` is zqbo's own mrkdwn; every value put into it is escaped unless it is Mrkdwn."""
    return Mrkdwn(template.format(*(_safe(a) for a in args), **{k: _safe(v) for k, v in kwargs.items()}))


_USER_ID = re.compile(r"[UWB][A-Z0-9]{2,20}")
_CHANNEL_ID = re.compile(r"[CDG][A-Z0-9]{2,20}")
_TEAM_ID = re.compile(r"[TE][A-Z0-9]{2,20}")


def mention(user_id: str) -> Mrkdwn:
    """`<@U…>` for a real-looking Slack user id; anything else is shown as plain text."""
    return Mrkdwn(f"<@{user_id}>") if _USER_ID.fullmatch(user_id or "") else esc(user_id or "someone")


def mentions(user_ids: Iterable[str]) -> Mrkdwn:
    return Mrkdwn(", ").join(mention(u) for u in user_ids)


def link(url: str, label: object) -> Mrkdwn:
    """A link with a label. Only http(s) and slack:// targets; `|` and `>` cannot end it early."""
    if not url.startswith(("https://", "http://", "slack://")) or len(url) > URL_LIMIT:
        return esc(label)
    target = esc(url).replace("|", "%7C")
    return Mrkdwn(f"<{target}|{esc(str(label).replace('|', '¦'))}>")


def channel_link(team_id: str, channel_id: str, label: object) -> Mrkdwn:
    """A deep link into Slack; it carries the team, so it opens in the right workspace."""
    if not _CHANNEL_ID.fullmatch(channel_id or ""):
        return esc(label)
    team = f"team={team_id}&" if _TEAM_ID.fullmatch(team_id or "") else ""
    return link(f"slack://channel?{team}id={channel_id}", label)


def code(value: object) -> Mrkdwn:
    """Inline code for an untrusted value: a backtick inside it cannot close the span."""
    return Mrkdwn("`" + esc(str(value).replace("`", "ˋ")) + "`")


def when(dt: datetime, fmt: str = "{date_short_pretty} at {time}") -> Mrkdwn:
    """A date Slack shows in each reader's own time zone."""
    fallback = dt.strftime("%Y-%m-%d %H:%M UTC")
    return Mrkdwn(f"<!date^{int(dt.timestamp())}^{fmt}|{fallback}>")


def relative(dt: datetime, now: datetime) -> str:
    delta = dt - now
    seconds = abs(delta.total_seconds())
    if seconds < 90:
        amount = f"{int(seconds)} s"
    elif seconds < 90 * 60:
        amount = f"{round(seconds / 60)} min"
    elif seconds < 36 * 3600:
        amount = f"{round(seconds / 3600)} h"
    else:
        amount = f"{round(seconds / 86400)} days"
    return f"in {amount}" if delta >= timedelta(0) else f"{amount} ago"


# --- cutting to Slack's limits ----------------------------------------------------------------


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, ending in … when cut, never inside an entity or `<…>`."""
    if len(text) <= limit:
        return text
    head = text[: max(0, limit - len(ELLIPSIS))]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    lt = head.rfind("<")
    if lt != -1 and ">" not in head[lt:]:
        head = head[:lt]
    result = head + ELLIPSIS
    return Mrkdwn(result) if isinstance(text, Mrkdwn) else result


def _fit_text(obj: Mapping[str, Any] | None, limit: int) -> dict[str, Any] | None:
    if not isinstance(obj, Mapping):
        return None
    fitted = dict(obj)
    fitted["text"] = cut(str(fitted.get("text", "")), limit) or " "
    return fitted


def _fit_confirm(confirm: Mapping[str, Any]) -> dict[str, Any]:
    fitted = dict(confirm)
    for key, limit in (
        ("title", CONFIRM_TITLE_LIMIT),
        ("text", CONFIRM_TEXT_LIMIT),
        ("confirm", CONFIRM_BUTTON_LIMIT),
        ("deny", CONFIRM_BUTTON_LIMIT),
    ):
        if key in fitted:
            fitted[key] = _fit_text(fitted[key], limit)
    return fitted


def _fit_element(element: Mapping[str, Any]) -> dict[str, Any]:
    fitted = dict(element)
    if "text" in fitted:
        limit = BUTTON_TEXT_LIMIT if fitted.get("type") == "button" else SECTION_LIMIT
        fitted["text"] = _fit_text(fitted["text"], limit)
    if "value" in fitted:
        fitted["value"] = str(fitted["value"])[:BUTTON_VALUE_LIMIT]
    if "action_id" in fitted:
        fitted["action_id"] = str(fitted["action_id"])[:ID_LIMIT]
    if "confirm" in fitted:
        fitted["confirm"] = _fit_confirm(fitted["confirm"])
    return fitted


def fit_block(block: Mapping[str, Any]) -> dict[str, Any]:
    fitted = dict(block)
    kind = fitted.get("type")
    if "block_id" in fitted:
        fitted["block_id"] = str(fitted["block_id"])[:ID_LIMIT]
    if kind == "section":
        if "text" in fitted:
            fitted["text"] = _fit_text(fitted["text"], SECTION_LIMIT)
        if "fields" in fitted:
            fitted["fields"] = [_fit_text(f, FIELD_LIMIT) for f in fitted["fields"][:MAX_FIELDS]]
        if "accessory" in fitted:
            fitted["accessory"] = _fit_element(fitted["accessory"])
    elif kind == "header":
        fitted["text"] = _fit_text(fitted.get("text"), HEADER_LIMIT)
    elif kind == "context":
        elements = [
            _fit_text(e, SECTION_LIMIT) if e.get("type") in ("mrkdwn", "plain_text") else dict(e)
            for e in fitted.get("elements", [])
        ]
        if len(elements) > MAX_CONTEXT_ELEMENTS:
            rest = MAX_CONTEXT_ELEMENTS - 1
            tail = Mrkdwn(" ").join(Mrkdwn(str(e.get("text", ""))) for e in elements[rest:])
            elements = [*elements[:rest], {"type": "mrkdwn", "text": cut(tail, SECTION_LIMIT)}]
        fitted["elements"] = elements
    elif kind == "actions":
        fitted["elements"] = [_fit_element(e) for e in fitted.get("elements", [])[:MAX_ACTIONS]]
    return fitted


def fit_blocks(blocks: Sequence[Mapping[str, Any]], max_blocks: int) -> list[Block]:
    fitted = [fit_block(b) for b in blocks]
    if len(fitted) > max_blocks:
        hidden = len(fitted) - (max_blocks - 1)
        fitted = [*fitted[: max_blocks - 1], context(md("…and {} more not shown here", hidden))]
    return fitted


class Message:
    """A Slack message: fallback `text` (what notifications and screen readers use) and blocks,
    both escaped and cut to Slack's limits on the way in."""

    __slots__ = ("blocks", "text")

    def __init__(
        self, text: object, blocks: Sequence[Block] = (), *, max_blocks: int = MAX_MESSAGE_BLOCKS
    ) -> None:
        self.text: str = cut(esc(text), TEXT_LIMIT)
        self.blocks: list[Block] = fit_blocks(blocks, max_blocks)

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}

    def __repr__(self) -> str:
        return f"Message(text={self.text!r}, blocks={len(self.blocks)})"


def home_view(blocks: Sequence[Block]) -> dict[str, Any]:
    """An App Home tab (views.publish): up to 100 blocks."""
    return {"type": "home", "blocks": fit_blocks(blocks, MAX_VIEW_BLOCKS)}


# --- block builders: every text goes through esc() on the way in -----------------------------


def section(text: object, accessory: Block | None = None) -> Block:
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": cut(esc(text), SECTION_LIMIT)}}
    if accessory:
        block["accessory"] = accessory
    return block


def context(*parts: object) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": esc(p)} for p in parts]}


def confirm(title: str, text: object, yes: str, no: str = "Cancel") -> Block:
    """Slack's own confirmation dialog: the action only arrives if the user confirms."""
    return {
        "title": {"type": "plain_text", "text": title},
        "text": {"type": "mrkdwn", "text": esc(text)},
        "confirm": {"type": "plain_text", "text": yes},
        "deny": {"type": "plain_text", "text": no},
        "style": "danger",
    }


def button(
    text: str,
    action_id: str,
    *,
    value: str = "",
    url: str = "",
    style: str = "",
    ask: Block | None = None,
) -> Block:
    element: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
    }
    if value:
        element["value"] = value
    if url:
        element["url"] = url
    if style:
        element["style"] = style
    if ask:
        element["confirm"] = ask
    return element


def actions(*elements: Block) -> Block:
    return {"type": "actions", "elements": list(elements)}


DIVIDER: Block = {"type": "divider"}


def notice(text: object, icon: str = ":information_source:") -> Message:
    """A one-line answer. Plain text is escaped; build it with md() to keep mentions and links."""
    return Message(text, [section(Mrkdwn(icon + " ") + text)])


def error_message(what: object, error_id: str = "") -> Message:
    ref = md(" (reference `{}`)", error_id) if error_id else ""
    return Message(what, [section(Mrkdwn(":x: ") + what + ref)])
