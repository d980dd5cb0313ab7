"""Block Kit as readable terminal text: what Slack would show, for `zqbo demo` and logs."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import Any

# A user id → the name Slack shows for its mention (`<@U0ADMIN>` reads "@ana" in Slack).
Names = Callable[[str], str | None]


def _no_names(_: str) -> str | None:
    return None


EMOJI = {
    ":white_check_mark:": "✅",
    ":warning:": "⚠️ ",
    ":x:": "❌",
    ":large_green_circle:": "🟢",
    ":large_yellow_circle:": "🟡",
    ":red_circle:": "🔴",
    ":white_circle:": "⚪",
    ":point_right:": "👉",
    ":hourglass_flowing_sand:": "⏳",
    ":link:": "🔗",
    ":thinking_face:": "🤔",
    ":white_large_square:": "⬜",
    ":heavy_minus_sign:": "➖",
    ":compass:": "🧭",
    ":lock:": "🔒",
    ":electric_plug:": "🔌",
    ":no_entry_sign:": "🚫",
    ":arrows_counterclockwise:": "🔄",
    ":tada:": "🎉",
    ":information_source:": "ℹ️ ",
    ":rotating_light:": "🚨",
    ":mag:": "🔍",
    ":wave:": "👋",
}
_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]*)>")
_APP_LINK = re.compile(r"<slack://[^|>]+\|([^>]*)>")
_BARE = re.compile(r"<(https?://[^>]+)>")
_BOLD = re.compile(r"\*([^*\n]+)\*")
_ITALIC = re.compile(r"(?<![A-Za-z0-9])_([^_\n]+)_(?![A-Za-z0-9])")
_MENTION = re.compile(r"<@([A-Z0-9]+)>")
_CHANNEL = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")
_EMOJI = re.compile(r":[a-z0-9_+-]+:")


def mrkdwn(text: str, names: Names = _no_names) -> str:
    text = _DATE.sub(r"\1", text)
    text = _LINK.sub(r"\2 (\1)", text)
    text = _APP_LINK.sub(r"\1", text)
    text = _BARE.sub(r"\1", text)
    text = _BOLD.sub(r"\1", text)
    text = _ITALIC.sub(r"\1", text)
    text = _MENTION.sub(lambda m: f"@{names(m.group(1)) or m.group(1)}", text)
    text = _CHANNEL.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = _EMOJI.sub(lambda m: EMOJI.get(m.group(0), m.group(0)), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _wrap(text: str, indent: str = "  ", width: int = 96) -> str:
    lines = []
    for line in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(line, width, initial_indent=indent, subsequent_indent=indent) or [indent])
    return "\n".join(lines)


def render(blocks: list[dict[str, Any]], text: str = "", names: Names = _no_names) -> str:
    """`names`: how Slack would show a user mentioned by id (the demo asks its Slack emulator)."""
    if not blocks:
        return _wrap(mrkdwn(text, names))
    out: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "section":
            out.append(_wrap(mrkdwn(block.get("text", {}).get("text", ""), names)))
            if "accessory" in block:
                out.append(_wrap(_element(block["accessory"])))
        elif kind == "context":
            parts = [mrkdwn(e.get("text", ""), names) for e in block.get("elements", [])]
            out.append(_wrap("  ".join(parts), indent="  │ "))
        elif kind == "actions":
            out.append(_wrap("   ".join(_element(e) for e in block.get("elements", []))))
        elif kind == "divider":
            out.append("  " + "─" * 60)
        elif kind == "header":
            out.append(_wrap(block.get("text", {}).get("text", "").upper()))
        elif kind == "input":
            out.append(_input(block, names))
    return "\n".join(out)


def _input(block: dict[str, Any], names: Names = _no_names) -> str:
    """A modal's field: its label, what it holds (or its placeholder, in ⟨ ⟩) and its hint."""
    element = block.get("element", {})
    label = block.get("label", {}).get("text", "")
    held = (
        element.get("initial_value")
        or (f"#{element['initial_conversation']}" if element.get("initial_conversation") else "")
        or " ".join(f"@{names(u) or u}" for u in element.get("initial_users", []))
    )
    if held:
        shown = held.replace("\n", " ⏎ ")
    else:
        shown = f"⟨{element.get('placeholder', {}).get('text', '')}⟩"
    optional = "" if block.get("optional") else " *"
    text = _wrap(f"{label}{optional}: [ {shown} ]")
    hint = block.get("hint", {}).get("text", "")
    return f"{text}\n{_wrap(hint, indent='  │ ')}" if hint else text


def _element(element: dict[str, Any]) -> str:
    label = element.get("text", {}).get("text", "")
    if element.get("url"):
        return f"[ {label} ] → {element['url']}"
    return f"[ {label} ]"


def link_buttons(message: dict[str, Any]) -> list[str]:
    """The URLs of a message's link buttons, in order (what a user can click through)."""
    return [
        e["url"]
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b["elements"]
        if e.get("url")
    ]
