"""Alerts in the alert channel (bot/alerts.py), the resolved note, and `/zqbo alerts`."""

from __future__ import annotations

from typing import Any

from bot.blocks.message import (
    Block,
    Message,
    Mrkdwn,
    actions,
    button,
    code,
    context,
    md,
    mention,
    section,
)

ALERT_TITLES = {
    "entries_under_person": "Automated entries logged under a person",
    "wrong_identity": "QuickBooks connected as the wrong identity",
    "connection_lost": "QuickBooks connection lost",
    "refresh_expiring": "QuickBooks refresh token expiring",
    "dedicated_used_by_person": "Dedicated integration account used by a person",
    "integration_shared_account": "Two integrations share one QuickBooks user",
    "checks_failing": "QuickBooks checks failing",
}
MAX_ALERT_ENTRIES = 10
MAX_LISTED_ALERTS = 20


def _money(amount: Any) -> str:
    return f"{amount:,.2f}" if isinstance(amount, int | float) else "—"


ENTRY_KINDS = ("entries_under_person", "dedicated_used_by_person", "integration_shared_account")


def _entries_line(alert: Any) -> Mrkdwn:
    """What the entries are and what should be: "14 automated entries of *Stripe* written by QBO
    user `…` — Stripe should write as stripe.integration@acme.com"."""
    who = md("QBO user {}", code(alert.group))
    plural = "y" if alert.count == 1 else "ies"
    name = alert.integration
    should = md(" — {} should write as {}", name, alert.expected) if name and alert.expected else Mrkdwn("")
    if alert.kind == "integration_shared_account":
        return md(
            "{} automated entr{} of *{}* written by *{}*'s dedicated user ({}): two integrations share "
            "one QuickBooks user, so their entries cannot be told apart{}:",
            alert.count,
            plural,
            name,
            alert.owner,
            who,
            should if alert.expected else md(" — give {} a dedicated user of its own", name),
        )
    if alert.kind == "dedicated_used_by_person":
        whose = md("*{}*'s dedicated user", name) if name else Mrkdwn("the dedicated user")
        return md(
            "{} manual entr{} under {} ({}): entries that match no integration's markers — a person "
            "is using the service account:",
            alert.count,
            plural,
            whose,
            who,
        )
    if name:
        return md("{} automated entr{} of *{}* written by {}{}:", alert.count, plural, name, who, should)
    return md(
        "{} automated entr{} written by {}, not the dedicated integration user:", alert.count, plural, who
    )


def alert_message(alert: Any) -> Message:
    """An alert as posted and as updated (acknowledged, resolved): one function, one look."""
    title = ALERT_TITLES.get(alert.kind, alert.kind)
    company = alert.company_name or alert.realm_id
    icon = Mrkdwn(":white_check_mark:" if not alert.open else ":rotating_light:")
    prefix = "Resolved: " if not alert.open else ""
    lines = [md("{} *{}{}* — {} (realm {})", icon, prefix, title, company, code(alert.realm_id))]
    if alert.kind in ENTRY_KINDS:
        lines.append(_entries_line(alert))
        for e in alert.entries[:MAX_ALERT_ENTRIES]:
            lines.append(
                md(
                    "• {} {} · {} · {} · by {}",
                    e["entity"],
                    e.get("doc_number") or e["id"],
                    _money(e.get("amount")),
                    e.get("txn_date") or "",
                    code(e["modified_by"]),
                )
            )
        if alert.count > MAX_ALERT_ENTRIES:
            lines.append(md("…and {} more", alert.count - MAX_ALERT_ENTRIES))
    else:
        lines.append(md("{}", alert.detail))
    blocks: list[Block] = [section(Mrkdwn("\n").join(lines))]
    notes = []
    if alert.acked_by:
        notes.append(md(":eyes: Acknowledged by {}", mention(alert.acked_by)))
    if not alert.open:
        notes.append(md(":white_check_mark: {}", alert.resolution))
    if notes:
        blocks.append(context(Mrkdwn(" · ").join(notes)))
    if alert.open:
        elements = []
        if alert.kind != "checks_failing" and getattr(alert, "integration", ""):
            # the checklist of the integration the alert is about (zqbo's own flow for the
            # workspace's integration)
            elements.append(
                button(
                    "Start guided reconnect",
                    "zqbo_reconnect",
                    value=f"{alert.realm_id}|{alert.integration}",
                    style="primary",
                )
            )
        elif alert.kind != "checks_failing":
            elements.append(
                button("Start guided reconnect", "zqbo_reconnect", value=alert.realm_id, style="primary")
            )
        if not alert.acked_by:
            elements.append(button("Acknowledge", "zqbo_alert_ack", value=alert.fingerprint))
        elements.append(button("Mute 24h", "zqbo_alert_mute", value=f"{alert.kind}|{alert.realm_id}"))
        blocks.append(actions(*elements))
    about = f" ({alert.integration})" if getattr(alert, "integration", "") else ""
    return Message(f"zqbo: {prefix}{title}{about} — {company}", blocks)


def alert_resolved_note(alert: Any) -> Message:
    return Message(
        f"Resolved: {alert.resolution}",
        [section(md(":white_check_mark: Resolved — {}.", alert.resolution))],
    )


def alerts_list(alerts: list[Any], mutes: dict[str, dict[str, Any]], channel_problem: str) -> Message:
    blocks: list[Block] = [section(md("*Open alerts: {}*", len(alerts)))]
    if channel_problem:
        blocks.append(section(md(":warning: Alerts cannot be posted: {}", channel_problem)))
    for alert in alerts[:MAX_LISTED_ALERTS]:
        title = ALERT_TITLES.get(alert.kind, alert.kind)
        acked = md(" · acked by {}", mention(alert.acked_by)) if alert.acked_by else ""
        muted = " · muted" if alert.muted else ""
        blocks.append(
            section(
                md(
                    "• *{}* — {}: {}{}{}",
                    title,
                    alert.company_name or alert.realm_id,
                    alert.detail,
                    acked,
                    muted,
                )
            )
        )
    if len(alerts) > MAX_LISTED_ALERTS:
        blocks.append(context(md("…and {} more", len(alerts) - MAX_LISTED_ALERTS)))
    if mutes:
        listed = Mrkdwn(", ").join(md("{} until {} UTC", k, str(v["until"])[:16]) for k, v in mutes.items())
        blocks.append(context(Mrkdwn("Muted: ") + listed))
    return Message(f"zqbo: {len(alerts)} open alerts", blocks)
