"""Setting zqbo up from Slack: the welcome DM, App Home's setup state, the Settings modal, and
what `/zqbo config` answers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.blocks.message import (
    DIVIDER,
    Block,
    Message,
    Mrkdwn,
    actions,
    button,
    code,
    context,
    cut,
    md,
    mention,
    mentions,
    section,
)
from bot.tenancy.workspaces import MAX_DISPLAY_NAME

SETTINGS_CALLBACK = "zqbo_settings"
OPEN_SETTINGS = "zqbo_open_settings"
# block ids of the Settings modal (the errors of `response_action: errors` name them)
FIELDS = {
    "alert_channel": "settings_channel",
    "dedicated_email": "settings_email",
    "admins": "settings_admins",
    "check_interval": "settings_interval",
    "markers": "settings_markers",
}
# The weekly digest's day and hour (bot/reports/digest.py), in the saving admin's time zone.
DIGEST_DAY, DIGEST_HOUR = "settings_digest_day", "settings_digest_hour"
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SETTING_NAMES = {
    "alert_channel": "Alert channel",
    "dedicated_email": "Dedicated email",
    "admins": "zqbo admins",
    "check_interval": "Check interval",
    "markers": "Markers",
}


def _minutes(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


def _rules(markers: list[Any]) -> Mrkdwn:
    return Mrkdwn("\n").join(md("• {}", m.describe()) for m in markers) or Mrkdwn(
        "_none: every entry counts as manual_"
    )


def config_summary(markers: list[Any], settings: Any, workspace: Any, multi: bool) -> Message:
    """`/zqbo config`: every setting and where it comes from."""
    channel = md("<#{}>", workspace.alert_channel) if workspace.alert_channel else Mrkdwn("_not set_")
    admins = mentions(workspace.admins) if workspace.admins else Mrkdwn("_Slack admins and owners_")
    lines = md(
        "*Markers* (an entry matching any is the integration's):\n{}\n"
        "*Entities audited:* {}\n*Check interval:* {} · *Alert channel:* {}\n"
        "*Dedicated email:* {} · *Admins:* {}",
        _rules(markers),
        ", ".join(settings.entities),
        _minutes(workspace.check_interval),
        channel,
        workspace.dedicated_email or "not set",
        admins,
    )
    how = (
        "Change with `/zqbo config channel #channel`, `email <address>`, `admins @a @b`, "
        "`interval 15m`, `markers PrivateNote~Zomentum; DocNumber^ZP-` or `dedicated-user <id> [realm]`, "
        "or with *Settings* in zqbo's App Home."
        if multi
        else "Change with `/zqbo config markers PrivateNote~Zomentum; DocNumber^ZP-` or "
        "`/zqbo config dedicated-user <id> [realm]`; the rest is set in zqbo's environment."
    )
    per_company = (
        "One company: `/zqbo config channel #channel <company>`, `admins @a @b <company>`, "
        "`name <realm> <display name>` (`reset` for the default), or *Company settings* in App Home."
    )
    return Message("zqbo config", [section(lines), context(how), context(per_company)])


def setting_saved(name: str, workspace: Any, markers: list[Any]) -> Message:
    value: Any = getattr(workspace, name)
    if name == "alert_channel":
        shown = md("<#{}> (invite @zqbo there if it is not a member yet)", value)
    elif name == "admins":
        shown = mentions(value)
    elif name == "check_interval":
        shown = Mrkdwn(_minutes(value))
    elif name == "markers":
        shown = Mrkdwn("\n") + _rules(markers)
    else:
        shown = code(value)
    return Message(
        f"{SETTING_NAMES[name]} saved",
        [section(md(":white_check_mark: *{}* saved: {}", SETTING_NAMES[name], shown))],
    )


COMPANY_SETTING_NAMES = {
    "alert_channel": "Alert channel",
    "display_name": "Display name",
    "admins": "Admins",
}
SOURCE_WORDS = {
    "company": "its own",
    "workspace": "the workspace's",
    "quickbooks": "the name in QuickBooks",
    "realm": "its realm id",
}


def company_setting_saved(name: str, company: Any) -> Message:
    """`/zqbo config channel|admins|name … <company>` saved (or reset to the workspace's)."""
    value: Any = getattr(company, name)
    if name == "alert_channel":
        shown = (
            md("<#{}> (invite @zqbo there if it is not a member yet)", value)
            if value
            else Mrkdwn("_none: alerts wait until one is chosen_")
        )
    elif name == "admins":
        shown = mentions(value) if value else Mrkdwn("Slack workspace admins and owners")
    else:
        shown = md("*{}*", value)
    where = SOURCE_WORDS.get(company.source.get(name, ""), "")
    return Message(
        f"{COMPANY_SETTING_NAMES[name]} of {company.display_name} saved",
        [
            section(
                md(
                    ":white_check_mark: *{}* of *{}* (realm {}): {} — {}",
                    COMPANY_SETTING_NAMES[name],
                    company.display_name,
                    code(company.realm_id),
                    shown,
                    where,
                )
            )
        ],
    )


def welcome_dm(installer: str) -> Message:
    """What the person who installed zqbo gets first."""
    return Message(
        "zqbo is installed: set it up",
        [
            section(
                md(
                    ":wave: Thanks for adding zqbo, {}. It watches your QuickBooks Online connection "
                    "and tells a channel when automated entries stop coming from your dedicated "
                    "integration user.\n*Three things to set up:* the alert channel, the dedicated "
                    "user's email, and who may change the connection. Then `/zqbo connect`.",
                    mention(installer),
                )
            ),
            actions(button("Set up zqbo", OPEN_SETTINGS, style="primary")),
        ],
    )


def setup_blocks(workspace: Any, connected: int) -> list[Block]:
    """App Home's setup state: what is done, what is missing, and the Settings button."""

    def item(done: bool, text: Mrkdwn) -> Mrkdwn:
        return Mrkdwn(":white_check_mark: " if done else ":white_circle: ") + text

    channel = workspace.alert_channel
    rows = [
        item(
            bool(channel),
            md("Alert channel: <#{}>", channel)
            if channel
            else Mrkdwn("Alert channel: not chosen — alerts wait until one is"),
        ),
        item(
            bool(workspace.dedicated_email),
            md("Dedicated integration user: {}", workspace.dedicated_email)
            if workspace.dedicated_email
            else Mrkdwn("Dedicated integration user's email: not set"),
        ),
        item(
            bool(workspace.admins),
            md("Admins: {}", mentions(workspace.admins))
            if workspace.admins
            else Mrkdwn("Admins: Slack workspace admins and owners"),
        ),
        item(
            connected > 0,
            md(
                "QuickBooks: {} connected",
                f"{connected:,} company" if connected == 1 else f"{connected:,} companies",
            )
            if connected
            else Mrkdwn("QuickBooks: not connected — `/zqbo connect`"),
        ),
    ]
    return [
        section(Mrkdwn("*Setup*\n") + Mrkdwn("\n").join(rows), button("Settings", OPEN_SETTINGS)),
        DIVIDER,
    ]


def _input(block_id: str, label: str, element: Block, hint: str = "", optional: bool = True) -> Block:
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": label},
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    return block


def _text_input(
    name: str, value: str, placeholder: str, multiline: bool = False, max_length: int = 3000
) -> Block:
    element: Block = {
        "type": "plain_text_input",
        "action_id": FIELDS[name],
        "placeholder": {"type": "plain_text", "text": placeholder},
        "multiline": multiline,
        "max_length": max_length,
    }
    if value:
        element["initial_value"] = cut(value, max_length)
    return element


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def _digest_inputs(digest: dict[str, Any] | None) -> list[Block]:
    days = [_option("Off", "off"), *(_option(day, str(i)) for i, day in enumerate(_DAYS))]
    hours = [_option(f"{h:02d}:00", str(h)) for h in range(24)]
    day: Block = {"type": "static_select", "action_id": DIGEST_DAY, "options": days}
    hour: Block = {"type": "static_select", "action_id": DIGEST_HOUR, "options": hours}
    day["initial_option"] = days[int(digest["weekday"]) + 1] if digest else days[0]
    hour["initial_option"] = hours[int(digest["hour"]) if digest else 9]
    where = f" ({digest['tz']})" if digest else ""
    return [
        _input(DIGEST_DAY, "Weekly digest", day, "Every company's week, in the alert channel."),
        _input(DIGEST_HOUR, f"Digest hour{where}", hour, "In your time zone, as Slack knows it."),
    ]


def submitted_digest(view: dict[str, Any]) -> tuple[int, int] | str | None:
    """(weekday, hour) chosen in the Settings modal, None for off, "" when the form had no such field."""
    state = view.get("state") if isinstance(view.get("state"), dict) else {}
    values = state.get("values") if isinstance(state.get("values"), dict) else {}

    def picked(block_id: str) -> str:
        block = values.get(block_id)
        field = block.get(block_id) if isinstance(block, dict) else None
        option = field.get("selected_option") if isinstance(field, dict) else None
        return str(option.get("value", "")) if isinstance(option, dict) else ""

    day, hour = picked(DIGEST_DAY), picked(DIGEST_HOUR)
    if not day:
        return ""
    if day == "off":
        return None
    if day.isdigit() and int(day) < 7 and hour.isdigit() and int(hour) < 24:
        return int(day), int(hour)
    return ""


def settings_modal(workspace: Any, digest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Settings modal. Its fields are validated on submit; mistakes come back inline."""
    channel: Block = {
        "type": "conversations_select",
        "action_id": FIELDS["alert_channel"],
        "placeholder": {"type": "plain_text", "text": "Pick a channel"},
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
    }
    if workspace.alert_channel:
        channel["initial_conversation"] = workspace.alert_channel
    admins: Block = {
        "type": "multi_users_select",
        "action_id": FIELDS["admins"],
        "placeholder": {"type": "plain_text", "text": "Slack admins and owners if empty"},
        "max_selected_items": 50,
    }
    if workspace.admins:
        admins["initial_users"] = list(workspace.admins)
    return {
        "type": "modal",
        "callback_id": SETTINGS_CALLBACK,
        "title": {"type": "plain_text", "text": "zqbo settings"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _input(FIELDS["alert_channel"], "Alert channel", channel, "Invite @zqbo to it.", optional=False),
            _input(
                FIELDS["dedicated_email"],
                "Dedicated integration user's email",
                _text_input(
                    "dedicated_email",
                    workspace.dedicated_email,
                    "integrations@yourcompany.com",
                    max_length=254,
                ),
                "The Intuit user the payments integration should post as.",
            ),
            _input(FIELDS["admins"], "Who may change the QuickBooks connection", admins),
            _input(
                FIELDS["check_interval"],
                "Check interval",
                _text_input("check_interval", _minutes(workspace.check_interval), "15m", max_length=12),
                "From 1m to 24h.",
            ),
            _input(
                FIELDS["markers"],
                "Markers of the integration's entries",
                _text_input(
                    "markers",
                    workspace.markers,
                    "PrivateNote~Zomentum; DocNumber^ZP-",
                    multiline=True,
                    max_length=2000,
                ),
                "field~contains, field=equals, field^starts with; separated by ;",
            ),
            *_digest_inputs(digest),
        ],
    }


COMPANY_SETTINGS_CALLBACK = "zqbo_company_settings"
COMPANY_FIELDS = {
    "alert_channel": "company_channel",
    "display_name": "company_name",
    "admins": "company_admins",
}


def company_settings_modal(company: Any) -> dict[str, Any]:
    """One company's own settings; each left empty falls back to the workspace's."""
    channel: Block = {
        "type": "conversations_select",
        "action_id": COMPANY_FIELDS["alert_channel"],
        "placeholder": {"type": "plain_text", "text": "The workspace's alert channel"},
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
    }
    if company.source.get("alert_channel") == "company":
        channel["initial_conversation"] = company.alert_channel
    name: Block = {
        "type": "plain_text_input",
        "action_id": COMPANY_FIELDS["display_name"],
        "placeholder": {"type": "plain_text", "text": "The name in QuickBooks"},
        "max_length": MAX_DISPLAY_NAME,
    }
    if company.source.get("display_name") == "company":
        name["initial_value"] = cut(company.display_name, MAX_DISPLAY_NAME)
    admins: Block = {
        "type": "multi_users_select",
        "action_id": COMPANY_FIELDS["admins"],
        "placeholder": {"type": "plain_text", "text": "The workspace's admins only"},
        "max_selected_items": 50,
    }
    if company.own_admins:
        admins["initial_users"] = list(company.own_admins)
    return {
        "type": "modal",
        "callback_id": COMPANY_SETTINGS_CALLBACK,
        "private_metadata": company.realm_id,
        "title": {"type": "plain_text", "text": "Company settings"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(md("*{}* · realm {}", company.display_name, code(company.realm_id))),
            _input(
                COMPANY_FIELDS["alert_channel"],
                "Alert channel for this company",
                channel,
                "Empty: the workspace's alert channel. Invite @zqbo to it.",
            ),
            _input(COMPANY_FIELDS["display_name"], "Display name", name, "What zqbo calls it in Slack."),
            _input(
                COMPANY_FIELDS["admins"],
                "Who else may act on this company",
                admins,
                "Besides the workspace's admins: checks, mutes, its settings.",
            ),
        ],
    }


def submitted_values(view: dict[str, Any], fields: dict[str, str] = FIELDS) -> dict[str, str | list[str]]:
    """What was typed or picked in a settings modal, by setting name (absent: left empty)."""
    state = view.get("state") if isinstance(view.get("state"), dict) else {}
    values = state.get("values") if isinstance(state.get("values"), dict) else {}
    out: dict[str, str | list[str]] = {}
    for name, block_id in fields.items():
        block = values.get(block_id)
        field = block.get(block_id) if isinstance(block, dict) else None
        if not isinstance(field, dict):
            continue
        if field.get("type") == "conversations_select":
            out[name] = str(field.get("selected_conversation") or "")
        elif field.get("type") == "multi_users_select":
            users = field.get("selected_users")
            out[name] = [str(u) for u in users] if isinstance(users, list) else []
        else:
            out[name] = str(field.get("value") or "")
    return out
