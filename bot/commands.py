"""Reading `/zqbo …` text. Anything unrecognised becomes help; anything malformed becomes a
sentence saying what is expected (CommandError), never an exception or a silent guess."""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
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
    "integration",
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
    "integration": "manage a company's integrations",
}
ALIASES = {
    "": "help",
    "?": "help",
    "-h": "help",
    "--help": "help",
    "state": "status",
    "integrations": "integration",
}
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


# `/zqbo integration …`: list, add, set, remove, rename a company's integrations ----------------
INTEGRATION_USAGE = (
    "Usage: `/zqbo integration list [realm]`, "
    '`/zqbo integration add <name> markers "<rules>" email <address> [user <QBO user id>] '
    '[notes "<text>"] [realm]`, `/zqbo integration set <name> markers|email|user|notes <value> [realm]`, '
    "`/zqbo integration remove <name> [realm]`, `/zqbo integration rename <name> to <new name> [realm]`. "
    'Quote a name or value with spaces ("Zomentum Payments").'
)
INTEGRATION_ACTIONS = ("list", "add", "set", "remove", "rename")
INTEGRATION_FIELDS = {
    "markers": "markers",
    "email": "dedicated_email",
    "user": "dedicated_user_id",
    "notes": "notes",
}
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_REALM_WORD = re.compile(r"[0-9]{6,20}")  # a trailing realm id (QBO's are long; a name never is digits)


@dataclass(frozen=True)
class IntegrationCommand:
    action: str  # one of INTEGRATION_ACTIONS
    name: str = ""
    fields: dict[str, str] = field(default_factory=dict)  # Integration field -> text as typed
    new_name: str = ""
    realm: str = ""


def parse_integration(raw: str) -> IntegrationCommand:
    """`integration <action> …` as typed (quotes group words; curly quotes count), or CommandError."""
    try:
        words = shlex.split(raw.translate(_QUOTES))
    except ValueError:
        raise CommandError("A quote is not closed. " + INTEGRATION_USAGE) from None
    words = words[1:]  # "integration"
    action = words.pop(0).lower() if words else "list"
    if action not in INTEGRATION_ACTIONS:
        raise CommandError(INTEGRATION_USAGE)
    realm = ""
    if words and _REALM_WORD.fullmatch(words[-1]) and (len(words) < 2 or words[-2].lower() != "user"):
        realm = words.pop()
    if action == "list":
        if words:
            raise CommandError(INTEGRATION_USAGE)
        return IntegrationCommand("list", realm=realm)
    if action == "rename":
        lowered = [w.lower() for w in words]
        if "to" not in lowered:
            raise CommandError(INTEGRATION_USAGE)
        at = lowered.index("to")
        name, new = " ".join(words[:at]), " ".join(words[at + 1 :])
        if not name or not new:
            raise CommandError(INTEGRATION_USAGE)
        return IntegrationCommand("rename", name, new_name=new, realm=realm)
    at = next((i for i, w in enumerate(words) if w.lower() in INTEGRATION_FIELDS), len(words))
    name = " ".join(words[:at])
    if not name:
        raise CommandError("Name the integration. " + INTEGRATION_USAGE)
    fields: dict[str, str] = {}
    key = ""
    for word in words[at:]:
        if word.lower() in INTEGRATION_FIELDS and (not key or fields[key]):
            key = INTEGRATION_FIELDS[word.lower()]
            if key in fields:
                raise CommandError(f"`{word}` is given twice. " + INTEGRATION_USAGE)
            fields[key] = ""
        else:
            fields[key] = f"{fields[key]} {word}".strip()
    if action == "remove":
        if fields:
            raise CommandError(INTEGRATION_USAGE)
        return IntegrationCommand("remove", name, realm=realm)
    if action == "add" and "markers" not in fields:
        raise CommandError(
            'An integration needs markers that recognise its entries, e.g. `markers "PrivateNote~Stripe"`. '
            + INTEGRATION_USAGE
        )
    if not fields or any(not v for k, v in fields.items() if k != "notes"):
        raise CommandError("Give a value after each of markers, email, user. " + INTEGRATION_USAGE)
    return IntegrationCommand(action, name, fields, realm=realm)
