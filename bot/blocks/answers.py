"""Answers to `/zqbo` subcommands and the DMs around connecting: help, links, refusals,
disconnect, check results, users, config."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.blocks.message import (
    Block,
    Message,
    Mrkdwn,
    actions,
    button,
    code,
    confirm,
    context,
    md,
    mention,
    section,
    when,
)
from bot.connect import CallbackResult, Outcome, describe_outcome
from bot.models import Connection
from bot.status import is_dedicated

HELP_COMMANDS = (
    ("status [realm]", "connection state, identity, token expiry and checks (problems first)"),
    ("connect", "get a link to connect QuickBooks (sign in as the dedicated user)"),
    ("reconnect [integration] [realm]", "guided reconnect as the dedicated user, step by step in a DM"),
    ("disconnect [realm]", "revoke zqbo's QuickBooks connection (asks to confirm)"),
    ("check [realm]", "run the entry audit now"),
    ("users [realm]", "QBO user ids on entries in the last 30 days, automated / manual"),
    ("report [company] [7d|30d|90d|month|YYYY-MM] [#channel]", "a chart and a CSV of flagged entries"),
    ("digest now", "preview the weekly digest of every company (admins)"),
    ("alerts", "open alerts and mutes"),
    ("mute <kind> [duration] [realm]", "mute a kind of alert (default 24h; e.g. 90m, 12h, 7d)"),
    ("unmute <kind> [realm]", "end a mute"),
    ("config [markers <rules> | dedicated-user <id> [realm]]", "show or change the audit's settings"),
    (
        "integration list|add|set|remove|rename …",
        "a company's integrations, each with its markers and dedicated user (`/zqbo integration` for more)",
    ),
    ("help", "this message"),
)


def help_message(unknown: str = "") -> Message:
    lines = [md("• `/zqbo {}` — {}", name, what) for name, what in HELP_COMMANDS]
    blocks: list[Block] = []
    if unknown:
        shown = unknown if len(unknown) <= 100 else unknown[:100] + "…"
        blocks.append(section(md(":thinking_face: I don't know {}. Here is what I can do:", code(shown))))
    blocks.append(
        section(Mrkdwn("*zqbo keeps your QuickBooks connection honest*\n") + Mrkdwn("\n").join(lines))
    )
    blocks.append(
        context(
            "zqbo checks that automated entries are logged under a dedicated QuickBooks user, "
            "not under a person."
        )
    )
    return Message("zqbo help", blocks)


def connect_preparing() -> Message:
    text = "Preparing a QuickBooks authorisation link…"
    return Message(text, [context(Mrkdwn(":hourglass_flowing_sand: ") + text)])


def connect_link(url: str, expires_at: datetime, dedicated_email: str) -> Message:
    who = (
        md("Sign in to Intuit as *{}*, the dedicated integration user", dedicated_email)
        if dedicated_email
        else Mrkdwn("Sign in to Intuit as the dedicated integration user (not your own login)")
    )
    return Message(
        "Connect QuickBooks Online",
        [
            section(
                md(
                    "*Connect QuickBooks Online*\n{}: every automated entry will be logged under "
                    "whoever authorises this link. A private browser window avoids reusing your own "
                    "Intuit session.",
                    who,
                )
            ),
            actions(button("Connect to QuickBooks", "zqbo_connect_link", url=url, style="primary")),
            context(md("This link is yours alone, works once, and expires {}.", when(expires_at, "{time}"))),
        ],
    )


def not_allowed(what: str, who: Mrkdwn) -> Message:
    return Message(
        f"Only zqbo admins can {what}.",
        [
            section(
                md(
                    ":lock: Only zqbo admins can {}. Admins: {}.\n"
                    "Ask one of them, or run `/zqbo status` to see the connection.",
                    what,
                    who,
                )
            )
        ],
    )


def store_unavailable(error_id: str) -> Message:
    text = "zqbo cannot reach its store right now; try again in a minute."
    return Message(text, [section(md(":warning: {} (reference {})", text, code(error_id)))])


# --- DMs after the OAuth callback -----------------------------------------------------------


def dm_connected(conn: Connection, dedicated_email: str) -> Message:
    verdict = is_dedicated(conn.identity.email, dedicated_email)
    if verdict is None:
        tail = Mrkdwn("Set ZQBO_DEDICATED_EMAIL so zqbo can tell whether this is the dedicated user.")
    elif verdict:
        tail = Mrkdwn(":white_check_mark: That is the dedicated integration user.")
    else:
        tail = md(
            ":warning: That is *not* the dedicated user ({}). Entries will be logged under this "
            "person. Reconnect while signed in as the dedicated user.",
            dedicated_email,
        )
    name = conn.company_name or "your company"
    who = conn.identity.email or "an identity Intuit did not tell us"
    return Message(
        f"QuickBooks connected: {name} as {who}",
        [
            section(
                md(
                    ":link: *QuickBooks connected* — {} (realm {})\nAuthorised as *{}*.\n{}",
                    name,
                    code(conn.realm_id),
                    who,
                    tail,
                )
            ),
            context("Run `/zqbo status` any time to see the connection."),
        ],
    )


def callback_problem_text(result: CallbackResult) -> str:
    return describe_outcome(result.outcome)


# What to do next when a fresh link would not help (as the callback page says).
_CALLBACK_NEXT = {
    Outcome.TAKEN: "Nothing was stored here. To connect your own company, run `/zqbo connect` and "
    "pick it on Intuit's screen.",
    Outcome.NOT_ADMIN: "Nothing was stored. Ask a zqbo admin to connect QuickBooks.",
}


def dm_callback_problem(result: CallbackResult) -> Message:
    what = callback_problem_text(result)
    ref = md(" Reference {}.", code(result.error_id)) if result.error_id else ""
    todo = _CALLBACK_NEXT.get(result.outcome, "Nothing was stored. Run `/zqbo connect` for a fresh link.")
    return Message(
        f"QuickBooks was not connected: {what}",
        [section(md(":x: *QuickBooks was not connected.* {}{}\n{}", what, ref, Mrkdwn(todo)))],
    )


# --- /zqbo disconnect -----------------------------------------------------------------------


def disconnect_prompt(conn: Connection) -> Message:
    name = conn.company_name or conn.realm_id
    ask = confirm(
        "Disconnect QuickBooks?",
        md("zqbo revokes its connection to {} at Intuit. Checks stop until someone reconnects.", name),
        "Disconnect",
    )
    return Message(
        f"Disconnect {name}?",
        [
            section(
                md(
                    "*Disconnect {}* (realm {})?\nIt is authorised as *{}*. "
                    "zqbo revokes the refresh token at Intuit, which disconnects the app from the "
                    "company; reconnect with `/zqbo reconnect`.",
                    name,
                    code(conn.realm_id),
                    conn.identity.email or "an unknown identity",
                )
            ),
            actions(
                button("Disconnect", "zqbo_disconnect", value=conn.realm_id, style="danger", ask=ask),
            ),
        ],
    )


def disconnect_done(conn: Connection, by: str) -> Message:
    name = conn.company_name or conn.realm_id
    return Message(
        f"{name} disconnected",
        [
            section(
                md(
                    ":electric_plug: *{} is disconnected.* {} revoked zqbo's connection at "
                    "Intuit; its tokens are gone. Run `/zqbo reconnect` to connect again as the "
                    "dedicated integration user.",
                    name,
                    mention(by),
                )
            )
        ],
    )


def disconnect_failed(conn: Connection, problem: str) -> Message:
    prompt = disconnect_prompt(conn)
    return Message(
        "Disconnect failed",
        [section(md(":x: {} The connection is unchanged.", problem)), *prompt.blocks[1:]],
    )


# --- audit commands ------------------------------------------------------------------------------


def _companies(n: int) -> str:
    return f"{n} compan{'y' if n == 1 else 'ies'}"


def _company(realm_id: str, names: dict[str, str] | None) -> Mrkdwn:
    name = (names or {}).get(realm_id)
    return md("*{}* {}", name, code(realm_id)) if name else code(realm_id)


def check_results(
    results: list[Any], names: dict[str, str] | None = None, total: int | None = None
) -> Message:
    """The audit's answer, a line per company; with `total`, a round that may not be over."""
    lines = []
    for r in results:
        icon = Mrkdwn(":white_check_mark:" if r.ok else ":x:")
        calls = f" · {r.qbo_calls} QBO call{'s' if r.qbo_calls != 1 else ''}" if r.qbo_calls else ""
        lines.append(md("{} {} — {}{}", icon, _company(r.realm_id, names), r.summary, calls))
    failed = sum(1 for r in results if not r.ok)
    text = f"zqbo check: {_companies(len(results))} checked"
    if failed:
        text += f", {failed} failed"
    if len(results) == 1 and total is None:
        text = f"zqbo check: {results[0].summary}"
    parts = [section(Mrkdwn("*Entry audit*\n") + Mrkdwn("\n").join(lines))]
    if total is not None and total > len(results):
        left = total - len(results)
        text += f"; {left} still being checked"
        parts.append(
            context(
                md(
                    "{} of {} are still being checked; `/zqbo status` shows their results when they finish.",
                    _companies(left),
                    total,
                )
            )
        )
    return Message(text, parts)


PROGRESS_BAR = 20
PROGRESS_FAILURES = 10


def check_progress(done: list[Any], total: int, names: dict[str, str]) -> Message:
    """A round of `/zqbo check` under way: a bar, N of M companies, and the failures so far."""
    filled = round(PROGRESS_BAR * len(done) / total) if total else PROGRESS_BAR
    bar = "█" * filled + "░" * (PROGRESS_BAR - filled)
    failed = [r for r in done if not r.ok]
    head = md(":hourglass_flowing_sand: *Entry audit* — {} of {} companies\n`{}`", len(done), total, bar)
    text = f"zqbo check: {len(done)} of {total} companies checked"
    parts = [section(head)]
    if failed:
        text += f", {len(failed)} failed"
        lines = [
            md(":x: {} — {}", _company(r.realm_id, names), r.summary) for r in failed[:PROGRESS_FAILURES]
        ]
        if len(failed) > PROGRESS_FAILURES:
            lines.append(md("… and {} more", len(failed) - PROGRESS_FAILURES))
        parts.append(section(Mrkdwn("\n").join(lines)))
    return Message(text, parts)
