"""Parsing `/zqbo …` text. Anything unrecognised becomes help, never an error."""

from __future__ import annotations

from dataclasses import dataclass

KNOWN = (
    "status",
    "connect",
    "reconnect",
    "disconnect",
    "check",
    "users",
    "alerts",
    "mute",
    "unmute",
    "config",
    "help",
)
# Subcommands that change the connection or the audit: admins only (bot/admins.py).
ADMIN_ONLY = {
    "connect": "connect QuickBooks",
    "reconnect": "reconnect QuickBooks",
    "disconnect": "disconnect QuickBooks",
    "check": "run a check",
    "mute": "mute alerts",
    "unmute": "unmute alerts",
    "config": "change zqbo's settings",
}
ALIASES = {"": "help", "?": "help", "-h": "help", "--help": "help", "state": "status"}
MAX_TEXT = 500


@dataclass(frozen=True)
class Command:
    name: str  # one of KNOWN, or "unknown"
    args: tuple[str, ...] = ()
    raw: str = ""


def parse(text: str | None) -> Command:
    raw = (text or "")[:MAX_TEXT]
    words = raw.replace("\u00a0", " ").split()
    head = words[0].lower() if words else ""
    head = ALIASES.get(head, head)
    if head in KNOWN:
        return Command(head, tuple(words[1:]), raw)
    return Command("unknown", tuple(words), raw)
