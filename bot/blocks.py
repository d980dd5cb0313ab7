"""Every Block Kit payload zqbo sends, built by plain functions from plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.connect import CallbackResult, describe_outcome
from bot.models import CheckResult, Connection
from bot.status import CompanyStatus, State, StatusReport, is_dedicated

Block = dict[str, Any]
MAX_COMPANIES_ON_CARD = 8  # keeps a card well under Slack's 50 blocks
SECTION_LIMIT = 3000

STATE_ICON = {
    State.CONNECTED: ":large_green_circle:",
    State.EXPIRING: ":large_yellow_circle:",
    State.LOST: ":red_circle:",
    State.DISCONNECTED: ":white_circle:",
    State.NEVER: ":white_circle:",
}


@dataclass(frozen=True)
class Message:
    text: str  # notification / fallback text
    blocks: list[Block] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def esc(text: object) -> str:
    """Slack's three escapes; anything user- or QBO-supplied goes through here."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def when(dt: datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """A date Slack shows in each reader's own time zone."""
    fallback = dt.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(dt.timestamp())}^{fmt}|{fallback}>"


def relative(dt: datetime, now: datetime) -> str:
    delta = dt - now
    seconds = abs(delta.total_seconds())
    if seconds < 90:
        amount = f"{int(seconds)} s"
    elif seconds < 90 * 60:
        amount = f"{round(seconds / 60)} min"
    elif seconds < 36 * 3600:
        amount = f"{round(seconds / 3600)} h"
    else:
        amount = f"{round(seconds / 86400)} days"
    return f"in {amount}" if delta >= timedelta(0) else f"{amount} ago"


def section(text: str, accessory: Block | None = None) -> Block:
    if len(text) > SECTION_LIMIT:
        text = text[: SECTION_LIMIT - 1] + "…"
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if accessory:
        block["accessory"] = accessory
    return block


def context(*parts: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": p[:SECTION_LIMIT]} for p in parts]}


def confirm(title: str, text: str, yes: str, no: str = "Cancel") -> Block:
    """Slack's own confirmation dialog: the action only arrives if the user confirms."""
    return {
        "title": {"type": "plain_text", "text": title[:100]},
        "text": {"type": "mrkdwn", "text": text[:300]},
        "confirm": {"type": "plain_text", "text": yes[:30]},
        "deny": {"type": "plain_text", "text": no[:30]},
        "style": "danger",
    }


def button(
    text: str,
    action_id: str,
    *,
    value: str = "",
    url: str = "",
    style: str = "",
    ask: Block | None = None,
) -> Block:
    element: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
    }
    if value:
        element["value"] = value
    if url:
        element["url"] = url
    if style:
        element["style"] = style
    if ask:
        element["confirm"] = ask
    return element


def actions(*elements: Block) -> Block:
    return {"type": "actions", "elements": list(elements)}


DIVIDER: Block = {"type": "divider"}


# --- /zqbo status ------------------------------------------------------------------------


def _identity_line(company: CompanyStatus, dedicated_email: str) -> str:
    if not company.identity_email:
        return "*Authorised as:* unknown (Intuit did not tell us; reconnect to find out)"
    who = esc(company.identity_email)
    if company.identity_name:
        who = f"{esc(company.identity_name)} ({who})"
    if not company.identity_verified:
        who += " — :warning: email not verified at Intuit"
    if company.is_dedicated is None:
        verdict = "_set ZQBO_DEDICATED_EMAIL to tell if this is the dedicated integration user_"
    elif company.is_dedicated:
        verdict = ":white_check_mark: the dedicated integration user"
    else:
        verdict = (
            f":warning: *not* the dedicated user ({esc(dedicated_email)}): automated entries "
            "are logged under a person"
        )
    return f"*Authorised as:* {who}\n{verdict}"


def _check_line(label: str, check: CheckResult | None, now: datetime) -> str:
    if check is None:
        return f"*{label}:* never"
    icon = ":white_check_mark:" if check.ok else ":x:"
    scanned = f", {check.entries_scanned} entries scanned" if check.kind == "audit" else ""
    return f"*{label}:* {icon} {esc(check.summary)}{scanned} — {when(check.at)} ({relative(check.at, now)})"


def _company_blocks(
    c: CompanyStatus, report: StatusReport, probe: CheckResult | None, probing: bool
) -> list[Block]:
    now = report.now
    name = esc(c.company_name or "Company name not known yet")
    state = c.state.value
    if c.state is State.LOST:
        state += f" — {esc(c.reason)}" if c.reason else ""
    elif c.state is State.DISCONNECTED and c.reason:
        state += f" — {esc(c.reason)}"
    if c.wrong_identity:
        state += " — :warning: *wrong identity*"
    head = f"{STATE_ICON[c.state]} *{name}*  ·  realm `{esc(c.realm_id)}`\n*State:* {state}"
    if c.state in (State.LOST, State.DISCONNECTED):
        head += (
            "\n:point_right: Reconnect as the dedicated integration user: `/zqbo reconnect` walks "
            "you through it (or `/zqbo connect` for just the link)."
        )
    elif c.state is State.EXPIRING:
        head += "\n:point_right: The refresh token ends soon: reconnect (`/zqbo reconnect`) before it does."
    elif c.wrong_identity:
        head += "\n:point_right: Reconnect as the dedicated integration user: `/zqbo reconnect`."
    if c.reconnect is not None:
        since = f" {when(c.reconnect.started_at)}" if c.reconnect.started_at else ""
        head += (
            f"\n:compass: Guided reconnect under way — started by <@{esc(c.reconnect.started_by)}>{since}, "
            f"step {c.reconnect.step} of 5."
        )
    lines = [_identity_line(c, report.dedicated_email)]
    access = "expired" if c.access_expires_at <= now else "valid"
    lines.append(
        f"*Access token:* {access}, {relative(c.access_expires_at, now)} (refreshed automatically)"
        f"\n*Refresh token:* ends {when(c.refresh_expires_at, '{date_short_pretty}')} "
        f"({relative(c.refresh_expires_at, now)})"
    )
    confirm_button = None
    if c.dedicated_user_source == "learned":
        since = f" at {when(c.dedicated_learned_at)}" if c.dedicated_learned_at else ""
        lines.append(
            f"*Dedicated QBO user id:* `{esc(c.dedicated_user_id)}` — learned from "
            f"{esc(c.dedicated_learned_from)}{since}; confirm it, or override with "
            "`/zqbo config dedicated-user <id>`"
        )
        confirm_button = button("Confirm dedicated user id", "zqbo_dedicated_confirm", value=c.realm_id)
    elif c.dedicated_user_id:
        lines.append(
            f"*Dedicated QBO user id:* `{esc(c.dedicated_user_id)}` ({esc(c.dedicated_user_source)})"
        )
    else:
        lines.append(
            "*Dedicated QBO user id:* unknown — learned from the first automated entry after a "
            "reconnect as the dedicated user, or pin it with ZQBO_DEDICATED_USER_ID"
        )
    lines.append(_check_line("Last check", c.last_check, now))
    if c.open_alerts:
        lines.append(f"*Open alerts:* {c.open_alerts} (`/zqbo alerts`)")
    if c.next_check is not None:
        lines.append(f"*Next check:* {when(c.next_check)} ({relative(c.next_check, now)})")
    else:
        lines.append(
            f"*Next check:* none scheduled — no scheduler has run yet (`zqbo worker`, every "
            f"{int(report.check_interval.total_seconds() // 60)} min)"
        )
    if probing:
        live = ":hourglass_flowing_sand: Asking QuickBooks now…"
    elif probe is not None:
        live = _check_line("Live probe", probe, now)
    elif c.last_probe is not None:
        live = _check_line("Last probe", c.last_probe, now)
    else:
        live = ""
    blocks = [section(head), section("\n".join(lines))]
    if live:
        blocks.append(context(live))
    elements = []
    if c.needs_reconnect and c.reconnect is None:
        elements.append(button("Start guided reconnect", "zqbo_reconnect", value=c.realm_id, style="primary"))
    if confirm_button:
        elements.append(confirm_button)
    if elements:
        blocks.append(actions(*elements))
    return blocks


def status_card(
    report: StatusReport, probes: Mapping[str, CheckResult] | None = None, probing: bool = False
) -> Message:
    probes = probes or {}
    if report.never_connected:
        return Message(
            text="zqbo: QuickBooks has never been connected",
            blocks=[
                section(
                    f"{STATE_ICON[State.NEVER]} *QuickBooks Online: never connected*\n"
                    "zqbo watches that your payments integration posts to QuickBooks under a "
                    "dedicated integration user. Connect a company to start."
                ),
                actions(
                    button("Guided setup", "zqbo_reconnect", style="primary"),
                    button("Connect QuickBooks", "zqbo_connect"),
                ),
                context("Tip: sign in to Intuit *as the dedicated integration user* when you connect."),
            ],
        )
    blocks: list[Block] = [section("*QuickBooks Online connection status*")]
    shown = report.companies[:MAX_COMPANIES_ON_CARD]
    for company in shown:
        blocks.append(DIVIDER)
        blocks.extend(_company_blocks(company, report, probes.get(company.realm_id), probing))
    if len(report.companies) > len(shown):
        blocks.append(context(f"…and {len(report.companies) - len(shown)} more companies"))
    if report.alert_problem:
        blocks.append(section(f":warning: *Alerts cannot be posted:* {esc(report.alert_problem)}"))
    elif not report.alert_channel:
        blocks.append(context(":warning: ZQBO_ALERT_CHANNEL is not set: alerts have nowhere to go."))
    summary = ", ".join(f"{c.company_name or c.realm_id}: {c.state.value}" for c in report.companies)
    return Message(text=f"zqbo status — {summary}", blocks=blocks)


# --- help, connect ----------------------------------------------------------------------

HELP_COMMANDS = (
    ("status", "connection state, identity, token expiry and checks"),
    ("connect", "get a link to connect QuickBooks (sign in as the dedicated user)"),
    ("reconnect [realm]", "guided reconnect as the dedicated user, step by step in a DM"),
    ("disconnect [realm]", "revoke zqbo's QuickBooks connection (asks to confirm)"),
    ("check [realm]", "run the entry audit now"),
    ("users [realm]", "QBO user ids on entries in the last 30 days, automated / manual"),
    ("alerts", "open alerts and mutes"),
    ("mute <kind> [hours] [realm]", "mute a kind of alert (default 24 h); `unmute <kind>` ends it"),
    ("config [markers <rules> | dedicated-user <id> [realm]]", "show or change the audit's settings"),
    ("help", "this message"),
)


def help_message(unknown: str = "") -> Message:
    lines = [f"• `/zqbo {name}` — {what}" for name, what in HELP_COMMANDS]
    blocks: list[Block] = []
    if unknown:
        blocks.append(section(f":thinking_face: I don't know `{esc(unknown[:100])}`. Here is what I can do:"))
    blocks.append(section("*zqbo keeps your QuickBooks connection honest*\n" + "\n".join(lines)))
    blocks.append(
        context(
            "zqbo checks that automated entries are logged under a dedicated QuickBooks user, "
            "not under a person."
        )
    )
    return Message(text="zqbo help", blocks=blocks)


def connect_preparing() -> Message:
    return Message(
        text="Preparing a QuickBooks authorisation link…",
        blocks=[context(":hourglass_flowing_sand: Preparing a QuickBooks authorisation link…")],
    )


def connect_link(url: str, expires_at: datetime, dedicated_email: str) -> Message:
    who = (
        f"Sign in to Intuit as *{esc(dedicated_email)}*, the dedicated integration user"
        if dedicated_email
        else "Sign in to Intuit as the dedicated integration user (not your own login)"
    )
    return Message(
        text="Connect QuickBooks Online",
        blocks=[
            section(
                f"*Connect QuickBooks Online*\n{who}: every automated entry will be logged under "
                "whoever authorises this link. A private browser window avoids reusing your own "
                "Intuit session."
            ),
            actions(button("Connect to QuickBooks", "zqbo_connect_link", url=url, style="primary")),
            context(f"This link is yours alone, works once, and expires {when(expires_at, '{time}')}."),
        ],
    )


def error_message(what: str, error_id: str = "") -> Message:
    ref = f" (reference `{error_id}`)" if error_id else ""
    return Message(text=what, blocks=[section(f":x: {esc(what)}{ref}")])


# --- DMs after the OAuth callback -----------------------------------------------------------


def dm_connected(conn: Connection, dedicated_email: str) -> Message:
    name = esc(conn.company_name or "your company")
    ident = esc(conn.identity.email or "an identity Intuit did not tell us")
    verdict = is_dedicated(conn.identity.email, dedicated_email)
    if verdict is None:
        tail = "Set ZQBO_DEDICATED_EMAIL so zqbo can tell whether this is the dedicated user."
    elif verdict:
        tail = ":white_check_mark: That is the dedicated integration user."
    else:
        tail = (
            f":warning: That is *not* the dedicated user ({esc(dedicated_email)}). Entries will be "
            "logged under this person. Reconnect while signed in as the dedicated user."
        )
    return Message(
        text=f"QuickBooks connected: {conn.company_name} as {conn.identity.email}",
        blocks=[
            section(
                f":link: *QuickBooks connected* — {name} (realm `{esc(conn.realm_id)}`)\n"
                f"Authorised as *{ident}*.\n{tail}"
            ),
            context("Run `/zqbo status` any time to see the connection."),
        ],
    )


def callback_problem_text(result: CallbackResult) -> str:
    return describe_outcome(result.outcome)


def dm_callback_problem(result: CallbackResult) -> Message:
    what = callback_problem_text(result)
    ref = f" Reference `{result.error_id}`." if result.error_id else ""
    return Message(
        text=f"QuickBooks was not connected: {what}",
        blocks=[
            section(
                f":x: *QuickBooks was not connected.* {esc(what)}{ref}\n"
                "Nothing was stored. Run `/zqbo connect` for a fresh link."
            ),
        ],
    )


# --- who may act ----------------------------------------------------------------------------


def not_allowed(what: str, who: str) -> Message:
    return Message(
        text=f"Only zqbo admins can {what}.",
        blocks=[
            section(
                f":lock: Only zqbo admins can {esc(what)}. Admins: {who}.\n"
                "Ask one of them, or run `/zqbo status` to see the connection."
            )
        ],
    )


def notice(text: str, icon: str = ":information_source:") -> Message:
    """A one-line ephemeral answer. `text` is trusted mrkdwn built by zqbo."""
    return Message(text=text, blocks=[section(f"{icon} {text}")])


# --- /zqbo disconnect -----------------------------------------------------------------------


def disconnect_prompt(conn: Connection) -> Message:
    name = esc(conn.company_name or conn.realm_id)
    who = esc(conn.identity.email or "an unknown identity")
    ask = confirm(
        "Disconnect QuickBooks?",
        f"zqbo revokes its connection to {name} at Intuit. Checks stop until someone reconnects.",
        "Disconnect",
    )
    return Message(
        text=f"Disconnect {conn.company_name}?",
        blocks=[
            section(
                f"*Disconnect {name}* (realm `{esc(conn.realm_id)}`)?\nIt is authorised as *{who}*. "
                "zqbo revokes the refresh token at Intuit, which disconnects the app from the "
                "company; reconnect with `/zqbo reconnect`."
            ),
            actions(
                button("Disconnect", "zqbo_disconnect", value=conn.realm_id, style="danger", ask=ask),
            ),
        ],
    )


def disconnect_done(conn: Connection, by: str) -> Message:
    name = esc(conn.company_name or conn.realm_id)
    return Message(
        text=f"{conn.company_name} disconnected",
        blocks=[
            section(
                f":electric_plug: *{name} is disconnected.* <@{esc(by)}> revoked zqbo's connection at "
                "Intuit; its tokens are gone. Run `/zqbo reconnect` to connect again as the "
                "dedicated integration user."
            )
        ],
    )


def disconnect_failed(conn: Connection, problem: str) -> Message:
    message = disconnect_prompt(conn)
    return Message(
        text="Disconnect failed",
        blocks=[section(f":x: {esc(problem)} The connection is unchanged."), *message.blocks[1:]],
    )


# --- the guided reconnect checklist (bot/reconnect.py) ---------------------------------------

_ICON = {
    "todo": ":white_large_square:",
    "link": ":hourglass_flowing_sand:",
    "done": ":white_check_mark:",
    "ok": ":white_check_mark:",
    "not_needed": ":heavy_minus_sign:",
    "failed": ":x:",
    "mismatch": ":x:",
    "unverified": ":warning:",
    "unknown": ":warning:",
    "waiting": ":hourglass_flowing_sand:",
}


def _done_by(step: Any) -> str:
    from bot.clock import parse_iso

    at = parse_iso(step.at)
    who = f" by <@{esc(step.by)}>" if step.by else ""
    return f"done{who}{' ' + when(at) if at else ''}"


def checklist_message(
    checklist: Any, conn: Connection | None, dedicated_email: str, now: datetime
) -> Message:
    """The one DM message of a guided reconnect, rebuilt from the checklist on every change."""
    from bot.clock import parse_iso

    key = checklist.key
    active = checklist.active
    expected = checklist.expected_email or dedicated_email
    company = esc(checklist.company_name or (conn.company_name if conn else "") or "your QuickBooks company")
    started = parse_iso(checklist.started_at)
    head = (
        f"*Guided reconnect — {company}*"
        + (f"  ·  realm `{esc(checklist.realm_id)}`" if checklist.realm_id else "")
        + f"\nStarted by <@{esc(checklist.started_by)}>{' ' + when(started) if started else ''}. "
        "Goal: the integration's QuickBooks connection authorised by a *dedicated integration "
        "user*, so every automated entry is logged under it and not under a person."
    )
    if checklist.status == "cancelled":
        head = f":no_entry_sign: *Cancelled* by <@{esc(checklist.ended_by)}>.\n" + head
    elif checklist.status == "superseded":
        head = (
            f":arrows_counterclockwise: *Replaced* by a newer checklist started by "
            f"<@{esc(checklist.ended_by)}>.\n" + head
        )
    elif checklist.status == "complete":
        head = ":tada: *All done.* The integration now posts as the dedicated user.\n" + head
    blocks: list[Block] = [section(head), DIVIDER]

    # 1. the dedicated user
    step = checklist.step("user")
    email = (
        f"*{esc(expected)}*"
        if expected
        else "_no email set: put the dedicated user's email in `ZQBO_DEDICATED_EMAIL` so zqbo can check it_"
    )
    text = (
        f"{_ICON[step.state]} *1. Create the dedicated user*\n"
        f"In QuickBooks: *⚙ Settings → Manage users → Add user*. Email: {email}. Role: *Company admin* — "
        "QuickBooks only lets company admins connect apps. A dedicated user gives a clean audit "
        "trail (entries show the integration, not a colleague), exposes no person's login, and "
        "makes troubleshooting easy."
    )
    if step.state == "done":
        text += f"\n_{_done_by(step)}_"
    blocks.append(
        section(
            text,
            button("Done", "zqbo_rc_user_done", value=key, style="primary")
            if active and step.state == "todo"
            else None,
        )
    )

    # 2. disconnect
    step = checklist.step("disconnect")
    text = f"{_ICON[step.state]} *2. Disconnect the current connection*\n"
    accessory = None
    if step.state == "not_needed":
        text += f"Not needed: {esc(step.note or 'nothing is connected')}."
    elif step.state == "done":
        text += f"Disconnected{' (was ' + esc(step.email) + ')' if step.email else ''} — _{_done_by(step)}_."
    else:
        current = esc(step.email or (conn.identity.email if conn else "") or "an unknown identity")
        text += f"Currently authorised as *{current}*. zqbo revokes its connection at Intuit."
        if step.state == "failed":
            text += f"\n:x: {esc(step.note)}"
        if active:
            accessory = button(
                "Try again" if step.state == "failed" else "Disconnect",
                "zqbo_rc_disconnect",
                value=key,
                style="danger",
                ask=confirm(
                    "Disconnect QuickBooks?",
                    f"zqbo revokes its connection to {company} at Intuit. Checks stop until step 3.",
                    "Disconnect",
                ),
            )
    text += (
        "\nIf the payments integration has its own QuickBooks connection, disconnect it too "
        "(QuickBooks: *Apps → My apps*), then reconnect it as the dedicated user."
    )
    blocks.append(section(text, accessory))

    # 3. reconnect
    step = checklist.step("reconnect")
    ready = checklist.step("disconnect").state in ("done", "not_needed")
    who = f"*{esc(expected)}*" if expected else "the dedicated user"
    text = f"{_ICON[step.state]} *3. Reconnect as the dedicated user*\n"
    if step.state == "done":
        text += f"Reconnected — _{_done_by(step)}_."
    elif not ready:
        text += "After step 2."
    else:
        text += (
            f"Sign in to Intuit as {who} — a *private browser window* avoids reusing your own "
            "Intuit session — and approve the connection."
        )
        if step.note:
            text += f"\n:warning: {esc(step.note)}"
    blocks.append(section(text))
    if active and ready and step.state != "done":
        expires = parse_iso(step.expires_at)
        elements = []
        if step.link_url and expires and expires > now:
            elements.append(button("Open Intuit sign-in", "zqbo_rc_open", url=step.link_url, style="primary"))
            elements.append(button("Get a new link", "zqbo_rc_link", value=key))
            blocks.append(actions(*elements))
            blocks.append(
                context(f"This link is yours alone, works once, and expires {when(expires, '{time}')}.")
            )
        else:
            blocks.append(actions(button("Get sign-in link", "zqbo_rc_link", value=key, style="primary")))

    # 4. identity
    step = checklist.step("identity")
    text = f"{_ICON[step.state]} *4. Identity check*\n"
    retry = None
    if step.state == "todo":
        text += "Automatic after you sign in: zqbo asks Intuit who authorised the connection."
    elif step.state == "ok":
        text += f"Connected to *{company}* as *{esc(step.email)}* — the dedicated user."
    else:
        text += f"*{esc(step.note)}*."
        if step.state == "mismatch":
            text += " The connection is kept (so nothing stops) but flagged *wrong identity*."
        if active:
            retry = button(
                "Disconnect and retry",
                "zqbo_rc_retry",
                value=key,
                style="danger",
                ask=confirm(
                    "Disconnect and retry?",
                    "zqbo revokes this connection and gives you a new sign-in link.",
                    "Disconnect",
                ),
            )
    blocks.append(section(text, retry))

    # 5. first entry
    step = checklist.step("first_entry")
    text = f"{_ICON[step.state]} *5. Verify the first automated entry*\n"
    if step.state == "done":
        text += f"{esc(step.entry)} was logged under the dedicated user. :tada:"
    elif step.state == "waiting":
        text += "Waiting for the integration's next entry: zqbo checks it is logged under the dedicated user."
    else:
        text += "After step 4."
    blocks.append(section(text))

    if active:
        blocks.append(actions(button("Cancel checklist", "zqbo_rc_cancel", value=key)))
    step_no = min(checklist.current_step, 5)
    summary = "cancelled" if checklist.status == "cancelled" else f"step {step_no} of 5"
    return Message(text=f"zqbo guided reconnect — {summary}", blocks=blocks)


# --- alerts (bot/alerts.py) ---------------------------------------------------------------------

ALERT_TITLES = {
    "entries_under_person": "Automated entries logged under a person",
    "wrong_identity": "QuickBooks connected as the wrong identity",
    "connection_lost": "QuickBooks connection lost",
    "refresh_expiring": "QuickBooks refresh token expiring",
    "dedicated_used_by_person": "Dedicated integration account used by a person",
    "checks_failing": "QuickBooks checks failing",
}
MAX_ALERT_ENTRIES = 10


def _money(amount: Any) -> str:
    return f"{amount:,.2f}" if isinstance(amount, int | float) else "—"


def alert_message(alert: Any) -> Message:
    """An alert as posted and as updated (acknowledged, resolved): one function, one look."""
    title = ALERT_TITLES.get(alert.kind, alert.kind)
    company = esc(alert.company_name or alert.realm_id)
    icon = ":white_check_mark:" if not alert.open else ":rotating_light:"
    prefix = "Resolved: " if not alert.open else ""
    head = f"{icon} *{prefix}{title}* — {company} (realm `{esc(alert.realm_id)}`)"
    lines = [head]
    if alert.kind in ("entries_under_person", "dedicated_used_by_person"):
        who = f"QBO user `{esc(alert.group)}`"
        if alert.kind == "entries_under_person":
            lines.append(
                f"{alert.count} automated entr{'y' if alert.count == 1 else 'ies'} written by {who}, "
                "not the dedicated integration user:"
            )
        else:
            lines.append(
                f"{alert.count} manual entr{'y' if alert.count == 1 else 'ies'} "
                f"under the dedicated user ({who}):"
            )
        for e in alert.entries[:MAX_ALERT_ENTRIES]:
            label = esc(f"{e['entity']} {e.get('doc_number') or e['id']}")
            lines.append(
                f"• {label} · {_money(e.get('amount'))} · {esc(e.get('txn_date') or '')} "
                f"· by `{esc(e['modified_by'])}`"
            )
        if alert.count > MAX_ALERT_ENTRIES:
            lines.append(f"…and {alert.count - MAX_ALERT_ENTRIES} more")
    else:
        lines.append(esc(alert.detail))
    blocks: list[Block] = [section("\n".join(lines))]
    notes = []
    if alert.acked_by:
        notes.append(f":eyes: Acknowledged by <@{esc(alert.acked_by)}>")
    if not alert.open:
        notes.append(f":white_check_mark: {esc(alert.resolution)}")
    if notes:
        blocks.append(context(" · ".join(notes)))
    if alert.open:
        elements = []
        if alert.kind != "checks_failing":
            elements.append(
                button("Start guided reconnect", "zqbo_reconnect", value=alert.realm_id, style="primary")
            )
        if not alert.acked_by:
            elements.append(button("Acknowledge", "zqbo_alert_ack", value=alert.fingerprint))
        elements.append(button("Mute 24h", "zqbo_alert_mute", value=f"{alert.kind}|{alert.realm_id}"))
        blocks.append(actions(*elements))
    return Message(text=f"zqbo: {prefix}{title} — {alert.company_name or alert.realm_id}", blocks=blocks)


def alert_resolved_note(alert: Any) -> Message:
    return Message(
        text=f"Resolved: {alert.resolution}",
        blocks=[section(f":white_check_mark: Resolved — {esc(alert.resolution)}.")],
    )


def alerts_list(alerts: list[Any], mutes: dict[str, dict[str, Any]], channel_problem: str) -> Message:
    blocks: list[Block] = [section(f"*Open alerts: {len(alerts)}*")]
    if channel_problem:
        blocks.append(section(f":warning: Alerts cannot be posted: {esc(channel_problem)}"))
    for alert in alerts[:20]:
        title = ALERT_TITLES.get(alert.kind, alert.kind)
        acked = f" · acked by <@{esc(alert.acked_by)}>" if alert.acked_by else ""
        muted = " · muted" if alert.muted else ""
        blocks.append(
            section(
                f"• *{esc(title)}* — {esc(alert.company_name or alert.realm_id)}: {esc(alert.detail)}"
                f"{acked}{muted}"
            )
        )
    if len(alerts) > 20:
        blocks.append(context(f"…and {len(alerts) - 20} more"))
    if mutes:
        blocks.append(
            context(
                "Muted: " + ", ".join(f"{esc(k)} until {esc(v['until'][:16])} UTC" for k, v in mutes.items())
            )
        )
    return Message(text=f"zqbo: {len(alerts)} open alerts", blocks=blocks)


# --- audit commands ------------------------------------------------------------------------------


def check_results(results: list[Any]) -> Message:
    lines = []
    for r in results:
        icon = ":white_check_mark:" if r.ok else ":x:"
        calls = f" · {r.qbo_calls} QBO call{'s' if r.qbo_calls != 1 else ''}" if r.qbo_calls else ""
        lines.append(f"{icon} `{esc(r.realm_id)}` — {esc(r.summary)}{calls}")
    return Message(text="zqbo check", blocks=[section("*Entry audit*\n" + "\n".join(lines))])


def users_table(stats: dict[str, dict[str, int]], dedicated_id: str, source: dict[str, Any]) -> Message:
    if not stats:
        return notice("No entries changed in the last 30 days.")
    rows = []
    for user, row in sorted(stats.items(), key=lambda kv: -(kv[1]["automated"] + kv[1]["manual"])):
        mark = "  ← dedicated integration user" if user == dedicated_id else ""
        rows.append(f"`{esc(user):>6}`  automated {row['automated']:>6}  manual {row['manual']:>6}{mark}")
    how = f" ({esc(source.get('source', ''))})" if dedicated_id else ""
    tail = (
        f"Dedicated QBO user id: `{esc(dedicated_id)}`{how}."
        if dedicated_id
        else "The dedicated QBO user id is not known yet: pin it with `/zqbo config dedicated-user <id>`."
    )
    return Message(
        text="QBO users on entries, last 30 days",
        blocks=[section("*QBO users on entries, last 30 days*\n" + "\n".join(rows[:40])), context(tail)],
    )


def config_summary(markers: list[Any], settings: Any) -> Message:
    rules = "\n".join(f"• {esc(m.describe())}" for m in markers) or "_none: every entry counts as manual_"
    return Message(
        text="zqbo config",
        blocks=[
            section(
                f"*Markers* (an entry matching any is the integration's):\n{rules}\n"
                f"*Entities audited:* {esc(', '.join(settings.entities))}\n"
                f"*Check interval:* {int(settings.check_interval.total_seconds() // 60)} min · "
                f"*Alert channel:* {esc(settings.alert_channel or 'not set')}"
            ),
            context(
                "Change with `/zqbo config markers PrivateNote~Zomentum; DocNumber^ZP-` or "
                "`/zqbo config dedicated-user <id> [realm]`."
            ),
        ],
    )
