"""The guided reconnect's one DM message (bot/reconnect.py), rebuilt on every change."""

from __future__ import annotations

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
    confirm,
    context,
    md,
    mention,
    section,
    when,
)
from bot.clock import parse_iso
from bot.models import Connection

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


def _icon(state: str) -> Mrkdwn:
    return Mrkdwn(_ICON.get(state, ":white_large_square:"))


def _done_by(step: Any) -> Mrkdwn:
    at = parse_iso(step.at)
    who = md(" by {}", mention(step.by)) if step.by else ""
    return md("done{}{}", who, md(" {}", when(at)) if at else "")


def checklist_message(
    checklist: Any, conn: Connection | None, dedicated_email: str, now: datetime
) -> Message:
    if getattr(checklist, "integration", ""):
        return integration_checklist_message(checklist, conn)
    key = checklist.key
    active = checklist.active
    expected = checklist.expected_email or dedicated_email
    company = checklist.company_name or (conn.company_name if conn else "") or "your QuickBooks company"
    started = parse_iso(checklist.started_at)
    head = md(
        "*Guided reconnect — {}*{}\nStarted by {}{}. Goal: the integration's QuickBooks connection "
        "authorised by a *dedicated integration user*, so every automated entry is logged under it "
        "and not under a person.",
        company,
        md("  ·  realm {}", code(checklist.realm_id)) if checklist.realm_id else "",
        mention(checklist.started_by),
        md(" {}", when(started)) if started else "",
    )
    if checklist.status == "cancelled":
        head = md(":no_entry_sign: *Cancelled* by {}.\n", mention(checklist.ended_by)) + head
    elif checklist.status == "superseded":
        head = (
            md(
                ":arrows_counterclockwise: *Replaced* by a newer checklist started by {}.\n",
                mention(checklist.ended_by),
            )
            + head
        )
    elif checklist.status == "complete":
        head = Mrkdwn(":tada: *All done.* The integration now posts as the dedicated user.\n") + head
    blocks: list[Block] = [section(head), DIVIDER]

    # 1. the dedicated user
    step = checklist.step("user")
    email = (
        md("*{}*", expected)
        if expected
        else Mrkdwn(
            "_no email set: put the dedicated user's email in `ZQBO_DEDICATED_EMAIL` so zqbo can check it_"
        )
    )
    text = md(
        "{} *1. Create the dedicated user*\n"
        "In QuickBooks: *⚙ Settings → Manage users → Add user*. Email: {}. Role: *Company admin* — "
        "QuickBooks only lets company admins connect apps. A dedicated user gives a clean audit "
        "trail (entries show the integration, not a colleague), exposes no person's login, and "
        "makes troubleshooting easy.",
        _icon(step.state),
        email,
    )
    if step.state == "done":
        text += md("\n_{}_", _done_by(step))
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
    text = md("{} *2. Disconnect the current connection*\n", _icon(step.state))
    accessory = None
    if step.state == "not_needed":
        text += md("Not needed: {}.", step.note or "nothing is connected")
    elif step.state == "done":
        was = md(" (was {})", step.email) if step.email else ""
        text += md("Disconnected{} — _{}_.", was, _done_by(step))
    else:
        current = step.email or (conn.identity.email if conn else "") or "an unknown identity"
        text += md("Currently authorised as *{}*. zqbo revokes its connection at Intuit.", current)
        if step.state == "failed":
            text += md("\n:x: {}", step.note)
        if active:
            accessory = button(
                "Try again" if step.state == "failed" else "Disconnect",
                "zqbo_rc_disconnect",
                value=key,
                style="danger",
                ask=confirm(
                    "Disconnect QuickBooks?",
                    md("zqbo revokes its connection to {} at Intuit. Checks stop until step 3.", company),
                    "Disconnect",
                ),
            )
    text += Mrkdwn(
        "\nIf the payments integration has its own QuickBooks connection, disconnect it too "
        "(QuickBooks: *Apps → My apps*), then reconnect it as the dedicated user."
    )
    blocks.append(section(text, accessory))

    # 3. reconnect
    step = checklist.step("reconnect")
    ready = checklist.step("disconnect").state in ("done", "not_needed")
    who = md("*{}*", expected) if expected else Mrkdwn("the dedicated user")
    text = md("{} *3. Reconnect as the dedicated user*\n", _icon(step.state))
    if step.state == "done":
        text += md("Reconnected — _{}_.", _done_by(step))
    elif not ready:
        text += Mrkdwn("After step 2.")
    else:
        text += md(
            "Sign in to Intuit as {} — a *private browser window* avoids reusing your own "
            "Intuit session — and approve the connection.",
            who,
        )
        if step.note:
            text += md("\n:warning: {}", step.note)
    blocks.append(section(text))
    if active and ready and step.state != "done":
        expires = parse_iso(step.expires_at)
        if step.link_url and expires and expires > now:
            blocks.append(
                actions(
                    button("Open Intuit sign-in", "zqbo_rc_open", url=step.link_url, style="primary"),
                    button("Get a new link", "zqbo_rc_link", value=key),
                )
            )
            blocks.append(
                context(md("This link is yours alone, works once, and expires {}.", when(expires, "{time}")))
            )
        else:
            blocks.append(actions(button("Get sign-in link", "zqbo_rc_link", value=key, style="primary")))

    # 4. identity
    step = checklist.step("identity")
    text = md("{} *4. Identity check*\n", _icon(step.state))
    retry = None
    if step.state == "todo":
        text += Mrkdwn("Automatic after you sign in: zqbo asks Intuit who authorised the connection.")
    elif step.state == "ok":
        text += md("Connected to *{}* as *{}* — the dedicated user.", company, step.email)
    else:
        text += md("*{}*.", step.note)
        if step.state == "mismatch":
            text += Mrkdwn(" The connection is kept (so nothing stops) but flagged *wrong identity*.")
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
    text = md("{} *5. Verify the first automated entry*\n", _icon(step.state))
    if step.state == "done":
        text += md("{} was logged under the dedicated user. :tada:", step.entry)
    elif step.state == "waiting":
        text += Mrkdwn(
            "Waiting for the integration's next entry: zqbo checks it is logged under the dedicated user."
        )
    else:
        text += Mrkdwn("After step 4.")
    blocks.append(section(text))

    if active:
        blocks.append(actions(button("Cancel checklist", "zqbo_rc_cancel", value=key)))
    step_no = min(checklist.current_step, 5)
    summary = "cancelled" if checklist.status == "cancelled" else f"step {step_no} of 5"
    return Message(f"zqbo guided reconnect — {summary}", blocks)


def integration_checklist_message(checklist: Any, conn: Connection | None) -> Message:
    """The article's steps for one of the company's integrations (not zqbo's own connection):
    zqbo cannot revoke or authorise another app's connection, so a person ticks steps 2 and 3
    and zqbo verifies from the integration's next entries."""
    key, active, name = checklist.key, checklist.active, checklist.integration
    company = checklist.company_name or (conn.company_name if conn else "") or "your QuickBooks company"
    expected = checklist.expected_email
    who = md("*{}*", expected) if expected else md("{}'s dedicated user", name)
    started = parse_iso(checklist.started_at)
    head = md(
        "*Guided reconnect — {} in {}*  ·  realm {}\nStarted by {}{}. Goal: {} writes into QuickBooks "
        "as a *dedicated integration user* of its own, so every entry it makes is logged under that "
        "user and not under a person or another app.",
        name,
        company,
        code(checklist.realm_id),
        mention(checklist.started_by),
        md(" {}", when(started)) if started else "",
        name,
    )
    if checklist.status == "cancelled":
        head = md(":no_entry_sign: *Cancelled* by {}.\n", mention(checklist.ended_by)) + head
    elif checklist.status == "superseded":
        head = md(":arrows_counterclockwise: *Replaced* by a newer checklist.\n") + head
    elif checklist.status == "complete":
        head = md(":tada: *All done.* {} now writes as its dedicated user.\n", name) + head
    blocks: list[Block] = [section(head), DIVIDER]

    def done_button(step: Any, action: str) -> Any:
        return button("Done", action, value=key, style="primary") if active and step.state == "todo" else None

    step = checklist.step("user")
    email = (
        md("*{}*", expected)
        if expected
        else md("_no email set: `/zqbo integration set {} email <address>` so zqbo can show it_", name)
    )
    text = md(
        "{} *1. Create {}'s dedicated user*\nIn QuickBooks: *⚙ Settings → Manage users → Add user*. "
        "Email: {}. Role: *Company admin* — QuickBooks only lets company admins connect apps. One "
        "user per integration: entries then show which app wrote them.",
        _icon(step.state),
        name,
        email,
    )
    if step.state == "done":
        text += md("\n_{}_", _done_by(step))
    blocks.append(section(text, done_button(step, "zqbo_rc_user_done")))

    step = checklist.step("disconnect")
    text = md(
        "{} *2. Disconnect {}'s current connection*\nIn {}'s own settings (or QuickBooks: *Apps → My "
        "apps*), disconnect it from QuickBooks.",
        _icon(step.state),
        name,
        name,
    )
    if step.state == "done":
        text += md("\n_{}_", _done_by(step))
    blocks.append(section(text, done_button(step, "zqbo_rc_disconnect")))

    step = checklist.step("reconnect")
    ready = checklist.step("disconnect").state in ("done", "not_needed")
    text = md(
        "{} *3. Reconnect {} as {} in {}'s own settings*\n",
        _icon(step.state),
        name,
        expected or "its dedicated user",
        name,
    )
    if step.state == "done":
        text += md("Reconnected — _{}_.", _done_by(step))
    elif not ready:
        text += Mrkdwn("After step 2.")
    else:
        text += md(
            "Sign in to Intuit as {} when {} asks — a *private browser window* avoids reusing your "
            "own Intuit session. Press Done when {} says it is connected.",
            who,
            name,
            name,
        )
    blocks.append(section(text, done_button(step, "zqbo_rc_link") if ready else None))

    step = checklist.step("first_entry")
    text = md("{} *4. Verify {}'s next entry*\n", _icon(step.state), name)
    if step.state == "done":
        text += md("{} was logged under {} (QBO user {}). :tada:", step.entry, who, code(step.note))
    elif step.state == "waiting":
        text += md(
            "Waiting for {}'s next entry: zqbo checks it is logged under its dedicated user (and, "
            "when that user's QBO id is not known yet, learns it from that entry).",
            name,
        )
    else:
        text += Mrkdwn("After step 3.")
    blocks.append(section(text))
    if active:
        blocks.append(actions(button("Cancel checklist", "zqbo_rc_cancel", value=key)))
    # steps 1-3, then step 4 (the checklist's "first_entry"; zqbo's identity check does not apply)
    summary = (
        "cancelled" if checklist.status == "cancelled" else f"step {min(checklist.current_step, 4)} of 4"
    )
    return Message(f"zqbo guided reconnect of {name} — {summary}", blocks)
