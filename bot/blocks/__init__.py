"""Every Block Kit payload zqbo sends, built by plain functions from plain data, by surface.

`message` owns what all of them share: escaping (only zqbo's own `Mrkdwn` is sent as is) and
Slack's limits. Callers use `from bot import blocks` and the names below.
"""

from bot.blocks.alerts import ALERT_TITLES, alert_message, alert_resolved_note, alerts_list
from bot.blocks.answers import (
    callback_problem_text,
    check_progress,
    check_results,
    connect_link,
    connect_preparing,
    disconnect_done,
    disconnect_failed,
    disconnect_prompt,
    dm_callback_problem,
    dm_connected,
    help_message,
    not_allowed,
    store_unavailable,
)
from bot.blocks.checklist import checklist_message
from bot.blocks.integrations import integration_saved, integrations_list, users_table
from bot.blocks.message import (
    Message,
    Mrkdwn,
    channel_link,
    code,
    error_message,
    esc,
    md,
    mention,
    mentions,
    notice,
    when,
)
from bot.blocks.reports import digest_message, report_posted, report_text
from bot.blocks.setup import (
    company_setting_saved,
    company_settings_modal,
    config_summary,
    setting_saved,
    settings_modal,
    setup_blocks,
    submitted_values,
    welcome_dm,
)
from bot.blocks.status import home, status_card, status_summary

__all__ = [
    "ALERT_TITLES",
    "Message",
    "Mrkdwn",
    "alert_message",
    "alert_resolved_note",
    "alerts_list",
    "callback_problem_text",
    "channel_link",
    "check_progress",
    "check_results",
    "checklist_message",
    "code",
    "company_setting_saved",
    "company_settings_modal",
    "config_summary",
    "connect_link",
    "connect_preparing",
    "digest_message",
    "disconnect_done",
    "disconnect_failed",
    "disconnect_prompt",
    "dm_callback_problem",
    "dm_connected",
    "error_message",
    "esc",
    "help_message",
    "home",
    "integration_saved",
    "integrations_list",
    "md",
    "mention",
    "mentions",
    "not_allowed",
    "notice",
    "report_posted",
    "report_text",
    "setting_saved",
    "settings_modal",
    "setup_blocks",
    "status_card",
    "status_summary",
    "store_unavailable",
    "submitted_values",
    "users_table",
    "welcome_dm",
    "when",
]
