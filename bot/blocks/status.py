"""`/zqbo status` and the App Home tab: the status card."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
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
    home_view,
    link,
    md,
    mention,
    relative,
    section,
    when,
)
from bot.models import CheckResult
from bot.status import WRONG_IDENTITY, CompanyStatus, State, StatusReport

MAX_COMPANIES_ON_CARD = 8  # keeps a card well under Slack's 50 blocks
MAX_COMPANIES_ON_HOME = 16  # a Home tab takes 100

STATE_ICON = {
    State.CONNECTED: ":large_green_circle:",
    State.EXPIRING: ":large_yellow_circle:",
    State.LOST: ":red_circle:",
    State.DISCONNECTED: ":white_circle:",
    State.NEVER: ":white_circle:",
}


def _identity_line(company: CompanyStatus, dedicated_email: str) -> Mrkdwn:
    if not company.identity_email:
        return Mrkdwn("*Authorised as:* unknown (Intuit did not tell us; reconnect to find out)")
    who = md("{}", company.identity_email)
    if company.identity_name:
        who = md("{} ({})", company.identity_name, who)
    if not company.identity_verified:
        who += Mrkdwn(" — :warning: email not verified at Intuit")
    if company.is_dedicated is None:
        verdict = Mrkdwn("_set ZQBO_DEDICATED_EMAIL to tell if this is the dedicated integration user_")
    elif company.is_dedicated:
        verdict = Mrkdwn(":white_check_mark: the dedicated integration user")
    else:
        verdict = md(
            ":warning: *not* the dedicated user ({}): automated entries are logged under a person",
            dedicated_email,
        )
    return md("*Authorised as:* {}\n{}", who, verdict)


def check_line(label: str, check: CheckResult | None, now: datetime) -> Mrkdwn:
    if check is None:
        return md("*{}:* never", label)
    icon = ":white_check_mark:" if check.ok else ":x:"
    scanned = f", {check.entries_scanned} entries scanned" if check.kind == "audit" else ""
    return md(
        "*{}:* {} {}{} — {} ({})",
        label,
        Mrkdwn(icon),
        check.summary,
        scanned,
        when(check.at),
        relative(check.at, now),
    )


def _dedicated_line(c: CompanyStatus) -> Mrkdwn:
    if c.dedicated_user_source == "learned":
        since = md(" at {}", when(c.dedicated_learned_at)) if c.dedicated_learned_at else ""
        return md(
            "*Dedicated QBO user id:* {} — learned from {}{}; confirm it, or override with "
            "`/zqbo config dedicated-user <id>`",
            code(c.dedicated_user_id),
            c.dedicated_learned_from,
            since,
        )
    if c.dedicated_user_id:
        return md("*Dedicated QBO user id:* {} ({})", code(c.dedicated_user_id), c.dedicated_user_source)
    line = Mrkdwn(
        "*Dedicated QBO user id:* unknown — learned from the first automated entry after a "
        "reconnect as the dedicated user, or pin it with `/zqbo config dedicated-user <id>`"
    )
    not_compared = (c.last_check.details if c.last_check else {}).get("not_compared")
    if not_compared:
        line += md(
            "\n:warning: The last check could not compare {} automated entr{} with the dedicated user.",
            not_compared,
            "y" if not_compared == "1" else "ies",
        )
    return line


MAX_INTEGRATIONS_ON_CARD = 10


def _integrations_lines(c: CompanyStatus) -> Mrkdwn:
    """A line per integration: ✓ under its user / ✗ under whom / not compared / no entries seen yet."""
    lines = [Mrkdwn("*Integrations:*")]
    for line in c.integrations[:MAX_INTEGRATIONS_ON_CARD]:
        if line.state == "ok":
            verdict = Mrkdwn(":white_check_mark: under its dedicated user")
        elif line.state == "wrong":
            whom = Mrkdwn(", ").join(md("{}", w) if "'s " in w else code(w) for w in line.under[:3])
            should = md(" — should write as {}", line.dedicated_email) if line.dedicated_email else ""
            verdict = md(":x: under {}{}", whom, should)
        elif line.state == "not_compared":
            verdict = Mrkdwn(":grey_question: entries seen; its dedicated user id is not known yet")
        else:
            verdict = Mrkdwn(":heavy_minus_sign: no entries seen yet")
        lines.append(md("• {}: {}", line.name, verdict))
    if len(c.integrations) > MAX_INTEGRATIONS_ON_CARD:
        lines.append(
            md("…and {} more (`/zqbo integration list`)", len(c.integrations) - MAX_INTEGRATIONS_ON_CARD)
        )
    return Mrkdwn("\n").join(lines)


def _company_blocks(
    c: CompanyStatus, report: StatusReport, probe: CheckResult | None, probing: bool
) -> list[Block]:
    now = report.now
    state = md("{}", c.state.value)
    if c.state in (State.LOST, State.DISCONNECTED) and c.reason:
        state += md(" — {}", c.reason)
    if c.wrong_identity:
        state += Mrkdwn(" — :warning: *wrong identity*")
    head = md(
        "{} *{}*  ·  realm {}\n*State:* {}",
        Mrkdwn(STATE_ICON[c.state]),
        c.company_name or "Company name not known yet",
        code(c.realm_id),
        state,
    )
    if c.state in (State.LOST, State.DISCONNECTED):
        head += Mrkdwn(
            "\n:point_right: Reconnect as the dedicated integration user: `/zqbo reconnect` walks "
            "you through it (or `/zqbo connect` for just the link)."
        )
    elif c.state is State.EXPIRING:
        head += Mrkdwn(
            "\n:point_right: The refresh token ends soon: reconnect (`/zqbo reconnect`) before it does."
        )
    elif c.wrong_identity:
        head += Mrkdwn("\n:point_right: Reconnect as the dedicated integration user: `/zqbo reconnect`.")
    if c.reconnect is not None:
        since = md(" {}", when(c.reconnect.started_at)) if c.reconnect.started_at else ""
        head += md(
            "\n:compass: Guided reconnect under way — started by {}{}, step {} of 5.",
            mention(c.reconnect.started_by),
            since,
            c.reconnect.step,
        )
    access = "expired" if c.access_expires_at <= now else "valid"
    lines = [
        _identity_line(c, report.dedicated_email),
        md(
            "*Access token:* {}, {} (refreshed automatically)\n*Refresh token:* ends {} ({})",
            access,
            relative(c.access_expires_at, now),
            when(c.refresh_expires_at, "{date_short_pretty}"),
            relative(c.refresh_expires_at, now),
        ),
        _dedicated_line(c),
        check_line("Last check", c.last_check, now),
    ]
    if c.integrations:
        lines.append(_integrations_lines(c))
    if c.open_alerts:
        lines.append(md("*Open alerts:* {} (`/zqbo alerts`)", c.open_alerts))
    if c.next_check is not None:
        lines.append(md("*Next check:* {} ({})", when(c.next_check), relative(c.next_check, now)))
    else:
        lines.append(_no_next_check(report))
    if probing:
        live: Mrkdwn | None = Mrkdwn(":hourglass_flowing_sand: Asking QuickBooks now…")
    elif probe is not None:
        live = check_line("Live probe", probe, now)
    elif c.last_probe is not None:
        live = check_line("Last probe", c.last_probe, now)
    else:
        live = None
    blocks = [section(head), section(Mrkdwn("\n").join(lines))]
    if live:
        blocks.append(context(live))
    elements = []
    if c.needs_reconnect and c.reconnect is None:
        elements.append(button("Start guided reconnect", "zqbo_reconnect", value=c.realm_id, style="primary"))
    if c.dedicated_user_source == "learned":
        elements.append(button("Confirm dedicated user id", "zqbo_dedicated_confirm", value=c.realm_id))
    if elements:
        blocks.append(actions(*elements))
    return blocks


def _company_row(c: CompanyStatus, report: StatusReport, probe: CheckResult | None, probing: bool) -> Block:
    """One company in a card that lists several: what stands out, and the way in for more."""
    accessory = (
        button("Start guided reconnect", "zqbo_reconnect", value=c.realm_id, style="primary")
        if c.needs_reconnect and c.reconnect is None
        else None
    )
    return section(company_line(c, report, probe, probing), accessory)


def company_line(
    c: CompanyStatus, report: StatusReport, probe: CheckResult | None = None, probing: bool = False
) -> Mrkdwn:
    """A company's state in two lines: name, realm, state; who authorised, last check, alerts."""
    state = md("{}", c.state.value)
    if c.wrong_identity:
        state = Mrkdwn(":warning: *wrong identity*")
    elif c.state in (State.LOST, State.DISCONNECTED) and c.reason:
        state += md(" — {}", c.reason[:120])
    who = c.identity_email or "identity unknown"
    check = c.last_check
    checked = (
        md(
            "{} last check {}",
            Mrkdwn(":white_check_mark:" if check.ok else ":x:"),
            relative(check.at, report.now),
        )
        if check
        else Mrkdwn("not checked yet")
    )
    live = ""
    if probing:
        live = Mrkdwn(" · :hourglass_flowing_sand: asking QuickBooks")
    elif probe is not None and not probe.ok:
        live = md(" · :x: {}", probe.summary[:120])
    alerts = (
        md(" · *{} open alert{}*", c.open_alerts, "" if c.open_alerts == 1 else "s") if c.open_alerts else ""
    )
    return md(
        "{} *{}* · {} · {}\n{} · {}{}{}",
        Mrkdwn(STATE_ICON[c.state]),
        c.company_name or "Company name not known yet",
        code(c.realm_id),
        state,
        who,
        checked,
        alerts,
        live,
    )


def _never_connected() -> list[Block]:
    return [
        section(
            md(
                "{} *QuickBooks Online: never connected*\n"
                "zqbo watches that your payments integration posts to QuickBooks under a "
                "dedicated integration user. Connect a company to start.",
                Mrkdwn(STATE_ICON[State.NEVER]),
            )
        ),
        actions(
            button("Guided setup", "zqbo_reconnect", style="primary"),
            button("Connect QuickBooks", "zqbo_connect"),
        ),
        context("Tip: sign in to Intuit *as the dedicated integration user* when you connect."),
    ]


def _counts(report: StatusReport) -> str:
    order = {
        label: i for i, label in enumerate(("lost", "disconnected", WRONG_IDENTITY, State.EXPIRING.value))
    }
    parts = sorted(report.counts.items(), key=lambda kv: (order.get(kv[0], 9), kv[0]))
    return ", ".join(f"{n:,} {label}" for label, n in parts)


def summary(report: StatusReport) -> str:
    """One short line for notifications: counts by state, never the whole list."""
    if report.never_connected:
        return "zqbo: QuickBooks has never been connected"
    if report.total == 1 and report.companies:
        c = report.companies[0]
        return f"zqbo status — {c.company_name or c.realm_id}: {c.label}"
    return f"zqbo status — {report.total:,} companies: {_counts(report)}"


def _card_blocks(
    report: StatusReport, probes: Mapping[str, CheckResult], probing: bool, limit: int
) -> list[Block]:
    if report.never_connected:
        return _never_connected() + _channel_warning(report)
    head = Mrkdwn("*QuickBooks Online connection status*")
    if report.total > 1:
        head += md("\n{} companies: {}", f"{report.total:,}", _counts(report))
    blocks: list[Block] = [section(head)]
    shown = report.companies[:limit]
    blocks.append(DIVIDER)
    if len(shown) == 1:  # one company (or the one asked for): every detail
        blocks.extend(_company_blocks(shown[0], report, probes.get(shown[0].realm_id), probing))
    else:  # several: a line each, problems first; the details one command away
        for company in shown:
            blocks.append(_company_row(company, report, probes.get(company.realm_id), probing))
        blocks.append(context("Details for one company: `/zqbo status <realm>`."))
    if report.total > len(shown):
        blocks.append(
            context(
                md(
                    "…and {} more companies (problems are listed first; {} for any one)",
                    f"{report.total - len(shown):,}",
                    "`/zqbo status <realm>`",
                )
            )
        )
    return blocks + _channel_warning(report)


def _channel_warning(report: StatusReport) -> list[Block]:
    """Why alerts cannot be posted, or that they wait for a channel to be chosen."""
    if report.alert_problem:
        return [section(md(":warning: *Alerts cannot be posted:* {}", report.alert_problem))]
    if not report.alert_channel and report.scope:
        waiting = sum(c.open_alerts for c in report.companies)
        return [
            section(
                md(
                    ":warning: *No alert channel chosen yet:* {}alerts wait until one is "
                    "(`/zqbo config channel #channel`, or Settings in zqbo's App Home).",
                    f"{waiting:,} " if waiting else "",
                )
            )
        ]
    if not report.alert_channel and not report.never_connected:
        return [context(":warning: ZQBO_ALERT_CHANNEL is not set: alerts have nowhere to go.")]
    return []


def status_summary(report: StatusReport, home: str, problems: int) -> Message:
    """`/zqbo status` with many companies: the counts, the first problem companies, and the way
    to App Home, where every company is listed a page at a time."""
    head = md("*QuickBooks Online — {} companies:* {}", f"{report.total:,}", _counts(report))
    blocks: list[Block] = [section(head)]
    troubled = [c for c in report.companies if c.needs_reconnect or c.open_alerts][:problems]
    for company in troubled:
        blocks.append(section(company_line(company, report)))
    where = link(home, "zqbo's App Home") if home else Mrkdwn("zqbo's App Home")
    blocks.append(
        context(
            md(
                "Every company, problems first, with its report: {}. One company: {}.",
                where,
                "`/zqbo status <realm>`",
            )
        )
    )
    return Message(summary(report), blocks + _channel_warning(report))


def status_card(
    report: StatusReport, probes: Mapping[str, CheckResult] | None = None, probing: bool = False
) -> Message:
    return Message(summary(report), _card_blocks(report, probes or {}, probing, MAX_COMPANIES_ON_CARD))


def home(report: StatusReport, setup: list[Block] | None = None) -> dict[str, Any]:
    """The App Home tab: the same card (Home views take up to 100 blocks, so more companies),
    after the workspace's setup state when zqbo serves many workspaces."""
    return home_view([*(setup or []), *_card_blocks(report, {}, False, MAX_COMPANIES_ON_HOME)])


# Why no check is due yet, said for whoever schedules checks in this deployment (ZQBO_SCHEDULER).
NO_NEXT_CHECK = {
    "inline": "*Next check:* none yet — `zqbo serve` schedules checks itself, every {} min, from its "
    "first tick",
    "off": "*Next check:* none — scheduled checks are off (`ZQBO_SCHEDULER=off`, every {} min when on); "
    "`/zqbo check` runs one now",
    "worker": "*Next check:* none scheduled — no scheduler has run yet (`zqbo worker`, every {} min)",
}


def _no_next_check(report: StatusReport) -> Mrkdwn:
    text = NO_NEXT_CHECK.get(report.scheduler_mode, NO_NEXT_CHECK["worker"])
    return md(text, int(report.check_interval.total_seconds() // 60))
