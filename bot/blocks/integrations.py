"""A company's integrations: `/zqbo integration list`, what was saved, and `/zqbo users` by integration."""

from __future__ import annotations

from typing import Any

from bot.audit.classify import QUICKBOOKS, UNKNOWN
from bot.blocks.message import Block, Message, Mrkdwn, code, context, md, notice, section

MAX_ROWS = 40


def _dedicated(integration: Any) -> Mrkdwn:
    email = md("{}", integration.dedicated_email) if integration.dedicated_email else Mrkdwn("_no email set_")
    if integration.dedicated_user_id:
        learned = integration.dedicated.get("entry")
        how = md("learned from {}", learned) if learned else md("{}", integration.source)
        user = md("QBO user {} ({})", code(integration.dedicated_user_id), how)
    else:
        user = Mrkdwn("QBO user id not known yet")
    return md("dedicated user {} · {}", email, user)


def _describe(integration: Any) -> Mrkdwn:
    rules = md("{}", integration.markers) if integration.markers else Mrkdwn("_no markers: matches nothing_")
    text = md("*{}*\n• markers: {}\n• {}", integration.name, rules, _dedicated(integration))
    if integration.follows_workspace:
        text += Mrkdwn("\n• follows the workspace's settings (`/zqbo config`); zqbo's own connection")
    if integration.notes:
        text += md("\n• notes: {}", integration.notes)
    return text


def integrations_list(realm_id: str, integrations: list[Any]) -> Message:
    blocks: list[Block] = [
        section(
            md(
                "*Integrations of {}* — an entry belongs to the first whose markers match; entries "
                "matching none are people's work.",
                code(realm_id),
            )
        )
    ]
    for number, integration in enumerate(integrations, start=1):
        blocks.append(section(md("{}. ", number) + _describe(integration)))
    if not integrations:
        blocks.append(section(Mrkdwn("None: every entry counts as people's work.")))
    blocks.append(
        context(
            'Add one: `/zqbo integration add <name> markers "<rules>" email <address> [realm]`; '
            "check one's connection: `/zqbo reconnect <name>`."
        )
    )
    return Message(f"zqbo: {len(integrations)} integrations", blocks)


def integration_saved(realm_id: str, integration: Any, how: str) -> Message:
    return Message(
        f"Integration {integration.name} {how}",
        [
            section(
                md(":white_check_mark: Integration {} for {}:\n", how, code(realm_id))
                + _describe(integration)
            ),
            context(
                md(
                    "Its next entries are checked against its own dedicated user. To move it onto that "
                    "user step by step: `/zqbo reconnect {}`.",
                    integration.name,
                )
            ),
        ],
    )


def _who(user: str) -> str:
    return {QUICKBOOKS: "QuickBooks", UNKNOWN: "unknown"}.get(user, user)


def users_table(stats: dict[str, dict[str, int]], integrations: list[Any]) -> Message:
    """QBO users on the last 30 days' entries (automated / manual), then each integration's
    writers: under its own dedicated user, or under whom else."""
    if not stats:
        return notice("No entries changed in the last 30 days.")
    owner: dict[str, Any] = {}
    for integration in integrations:
        if integration.dedicated_user_id:
            owner.setdefault(integration.dedicated_user_id, integration)
    one = len(integrations) == 1
    rows = []
    for user, row in sorted(stats.items(), key=lambda kv: -(kv[1]["automated"] + kv[1]["manual"])):
        if user == QUICKBOOKS:
            mark = "  ← QuickBooks itself (recurring, bank rules): never alerted"
        elif user == UNKNOWN:
            mark = "  ← no writer recorded on the entry: never alerted"
        elif user in owner:
            mark = (
                "  ← dedicated integration user"
                if one
                else f"  ← {owner[user].name}'s dedicated integration user"
            )
        else:
            mark = ""
        rows.append(
            md("`{:>16}`  automated {:>6}  manual {:>6}{}", _who(user), row["automated"], row["manual"], mark)
        )
    blocks: list[Block] = [
        section(Mrkdwn("*QBO users on entries, last 30 days*\n") + Mrkdwn("\n").join(rows[:MAX_ROWS]))
    ]
    for integration in integrations[:20]:
        writers = {u: r.get(f"integration:{integration.name}", 0) for u, r in stats.items()}
        writers = {u: n for u, n in sorted(writers.items(), key=lambda kv: -kv[1]) if n}
        lines = [md("*{}* — {}", integration.name, _dedicated(integration))]
        for user, count in list(writers.items())[:10]:
            if user == integration.dedicated_user_id:
                verdict = Mrkdwn(":white_check_mark: its dedicated user")
            elif user in owner:
                verdict = md(":x: {}'s dedicated user", owner[user].name)
            elif user in (QUICKBOOKS, UNKNOWN):
                verdict = Mrkdwn("not compared")
            elif integration.dedicated_user_id:
                verdict = Mrkdwn(":x: not its dedicated user")
            else:
                verdict = Mrkdwn("not compared (dedicated user id unknown)")
            plural = "entry" if count == 1 else "entries"
            lines.append(md("`{:>16}`  {:>6} {}  {}", _who(user), count, plural, verdict))
        if not writers:
            lines.append(Mrkdwn("_no entries of it in the last 30 days_"))
        blocks.append(section(Mrkdwn("\n").join(lines)))
    if len(integrations) > 20:
        blocks.append(context(md("…and {} more integrations", len(integrations) - 20)))
    default = next((i for i in integrations if i.follows_workspace), None)
    if default is not None and not default.dedicated_user_id:
        blocks.append(
            context(
                Mrkdwn(
                    "The dedicated QBO user id is not known yet: "
                    "pin it with `/zqbo config dedicated-user &lt;id&gt;`."
                )
            )
        )
    elif default is not None:
        blocks.append(
            context(md("Dedicated QBO user id: {} ({}).", code(default.dedicated_user_id), default.source))
        )
    return Message("QBO users on entries, last 30 days", blocks)
