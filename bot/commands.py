"""Reading `/zqbo …` text. Anything unrecognised becomes help; anything malformed becomes a
sentence saying what is expected (CommandError), never an exception or a silent guess."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

KNOWN = (
    "status",
    "connect",
    "reconnect",
    "disconnect",
    "check",
    "users",
    "report",
    "digest",
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
    "digest": "set up or preview the weekly digest",
}
ALIASES = {"": "help", "?": "help", "-h": "help", "--help": "help", "state": "status"}
# Longer text is refused with a sentence, never cut: a cut `config markers …` would save half a rule.
MAX_TEXT = 2000
TOO_LONG = "too_long"

MUTE_MIN = timedelta(minutes=1)
MUTE_MAX = timedelta(days=30)
MUTE_DEFAULT = timedelta(hours=24)
_DURATION = re.compile(r"(?P<amount>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>m|min|mins|h|hr|hrs|hours?|d|days?)?")
_UNIT = {"m": 60, "min": 60, "mins": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600}
_UNIT.update({"d": 86400, "day": 86400, "days": 86400})
QBO_USER_ID = re.compile(r"[0-9]{1,20}")


class CommandError(ValueError):
    """Malformed input; the message is one sentence telling the user what is expected."""


@dataclass(frozen=True)
class Command:
    name: str  # one of KNOWN, "unknown", or TOO_LONG
    args: tuple[str, ...] = ()
    raw: str = ""


# With "Escape channels, users, and links" on, Slack sends links as <url|label> (emails as
# <mailto:a@b.com|a@b.com>) and `&`, `<`, `>` as entities; channel and user mentions stay
# <#C…|name> / <@U…|name> for the settings to read.
_LINK = re.compile(r"<((?:mailto:|https?://)[^|<>]*)(?:\|[^<>]*)?>")
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


def plain_text(text: str) -> str:
    """Command text as the person typed it: links back to what was typed, entities decoded."""
    text = _LINK.sub(lambda m: m.group(1).removeprefix("mailto:"), text)
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    return text


def parse(text: str | None) -> Command:
    raw = text or ""
    if len(raw) > MAX_TEXT:
        return Command(TOO_LONG, (), raw[:80])
    raw = plain_text(raw)
    words = raw.replace("\u00a0", " ").split()
    head = words[0].lower() if words else ""
    head = ALIASES.get(head, head)
    if head in KNOWN:
        return Command(head, tuple(words[1:]), raw)
    return Command("unknown", tuple(words), raw)


def too_long_sentence(length: int) -> str:
    return (
        f"That command is {length:,} characters long; zqbo reads at most {MAX_TEXT:,}, "
        "so nothing was done. Shorten it and try again."
    )


def looks_like_duration(token: str) -> bool:
    """Whether `token` was meant as a mute duration (so a bad one gets the duration sentence)."""
    if _DURATION.fullmatch(token.lower()):
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True  # -5, 1e9, nan, inf, ١٢ …: numbers, just not acceptable ones


def parse_duration(token: str) -> timedelta:
    """A mute duration: a number of hours (`24`, `1.5`) or with a unit (`90m`, `12h`, `7d`),
    between a minute and 30 days."""
    sentence = "Mute for between 1 minute and 30 days: a number of hours (`24`) or `90m`, `12h`, `7d`."
    match = _DURATION.fullmatch(token.lower())
    if not match:
        raise CommandError(sentence)
    amount = float(match.group("amount"))
    seconds = amount * _UNIT[match.group("unit") or "h"]
    if not math.isfinite(seconds) or not MUTE_MIN.total_seconds() <= seconds <= MUTE_MAX.total_seconds():
        raise CommandError(sentence)
    return timedelta(seconds=round(seconds))


def parse_qbo_user_id(token: str) -> str:
    """A QBO user id: ASCII digits, 1 to 20 of them (QBO's ids are numeric)."""
    if not QBO_USER_ID.fullmatch(token):
        raise CommandError(
            "The dedicated QBO user id is a number of 1 to 20 digits (0–9), "
            "e.g. `/zqbo config dedicated-user 9130347769252966`."
        )
    if token.strip("0") == "":
        raise CommandError(
            "QBO user id 0 is QuickBooks itself (recurring transactions, bank rules), never a person "
            "or an integration: give the dedicated integration user's id."
        )
    return token
