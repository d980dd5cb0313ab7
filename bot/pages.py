"""Small HTML pages for the browser side of OAuth (the user is not in Slack there)."""

from __future__ import annotations

from datetime import datetime
from html import escape

from bot.blocks import callback_problem_text
from bot.connect import CallbackResult, Outcome
from bot.models import Connection
from bot.signin import REFUSALS, Refusal
from bot.status import State, connection_state, is_dedicated

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · zqbo</title>
<style>
body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1d1c1d}}
h1{{font-size:1.4rem}} .ok{{color:#007a5a}} .warn{{color:#b35900}} .bad{{color:#c0392b}}
code{{background:#f4f4f4;padding:0 .25rem;border-radius:3px}}
</style></head>
<body><h1 class="{tone}">{title}</h1>{body}
<p>You can close this window and return to Slack.</p></body></html>"""


def page(title: str, body_html: str, tone: str = "ok") -> str:
    return _PAGE.format(title=escape(title), body=body_html, tone=tone)


def _where(workspace: str, company: str, linked: bool) -> str:
    """The line naming the Slack workspace and the QuickBooks company, linked or not."""
    space = f"the Slack workspace <b>{escape(workspace)}</b>" if workspace else "any Slack workspace"
    what = f"QuickBooks company <b>{escape(company)}</b>" if company else "No QuickBooks company"
    if linked:
        return f"<p>{what} is now linked to {space}.</p>"
    return f"<p>{what} was {'not ' if company else ''}linked to {space}.</p>"


def callback_page(result: CallbackResult, dedicated_email: str, workspace: str = "") -> tuple[int, str]:
    reconnecting = result.state is not None and result.state.purpose == "reconnect"
    back = (
        "<p>Your checklist in Slack (the direct message from zqbo) has been updated.</p>"
        if reconnecting
        else ""
    )
    if result.outcome is Outcome.CONNECTED and result.connection is not None:
        conn = result.connection
        company = escape(conn.company_name or "your QuickBooks company")
        email = escape(conn.identity.email or "an identity Intuit did not tell us")
        verdict = is_dedicated(conn.identity.email, dedicated_email)
        back = _where(workspace, conn.company_name or f"realm {conn.realm_id}", True) + back
        if verdict is False:
            body = (
                f"<p>zqbo is connected to <b>{company}</b>, authorised as <b>{email}</b>.</p>"
                f"<p class=warn>That is not the dedicated integration user "
                f"(<b>{escape(dedicated_email)}</b>): automated entries will be logged under this "
                f"person. Reconnect while signed in to Intuit as the dedicated user.</p>"
            )
            return 200, page("Connected, but not as the dedicated user", body + back, "warn")
        body = f"<p>zqbo is connected to <b>{company}</b>, authorised as <b>{email}</b>.</p>"
        if verdict and not conn.identity.email_verified:
            body += (
                "<p class=warn>Intuit says this email address is not verified. Verify it in the "
                "Intuit account, then reconnect.</p>"
            )
            return 200, page("Connected, but the email is not verified", body + back, "warn")
        if verdict:
            body += "<p class=ok>That is the dedicated integration user. ✓</p>"
        return 200, page("QuickBooks connected", body + back, "ok")
    what = escape(callback_problem_text(result))
    ref = f" Reference <code>{escape(result.error_id)}</code>." if result.error_id else ""
    where = _where(workspace, f"realm {result.realm_id}" if result.realm_id else "", False)
    if result.outcome is Outcome.OTHER_BROWSER:
        todo = (
            "<p>Nothing was stored, and the link still works for the person it was made for, in "
            "the browser where they signed in with Slack. To connect a company yourself, run "
            "<code>/zqbo connect</code> in your own Slack workspace.</p>"
        )
    elif result.outcome is Outcome.TAKEN:
        todo = "<p>Nothing was stored here.</p>"
    elif result.outcome is Outcome.NOT_ADMIN:
        todo = "<p>Nothing was stored. Ask a zqbo admin to connect QuickBooks.</p>"
    elif reconnecting:
        todo = (
            "<p>Nothing was stored. In Slack, press <b>Get a new link</b> on the checklist zqbo sent you.</p>"
        )
    else:
        todo = "<p>Nothing was stored. In Slack, run <code>/zqbo connect</code> for a fresh link.</p>"
    status = {
        Outcome.FAILED: 502,
        Outcome.DECLINED: 200,
        Outcome.NOT_ADMIN: 403,
        Outcome.WRONG_COMPANY: 403,
        Outcome.TAKEN: 409,
        Outcome.OTHER_COMPANY: 409,
        Outcome.UNINSTALLED: 410,
        Outcome.OTHER_BROWSER: 403,
    }.get(result.outcome, 400)
    return status, page("QuickBooks was not connected", f"<p>{what}{ref}</p>{where}{todo}", "bad")


def sign_in_page(refusal: Refusal | None, workspace: str) -> tuple[int, str]:
    """Why a connect link did not go on to Intuit (bot/signin.py). Nothing was stored."""
    if refusal is None:
        return 404, page("Not found", "<p>zqbo hands out QuickBooks links directly here.</p>", "bad")
    where = f" It was made in the Slack workspace <b>{escape(workspace)}</b>." if workspace else ""
    todo = (
        "<p>Nothing was connected. To connect a QuickBooks company yourself, run "
        "<code>/zqbo connect</code> in your own Slack workspace.</p>"
        if refusal is Refusal.SOMEONE_ELSE
        else "<p>Nothing was connected. In Slack, run <code>/zqbo connect</code> for a fresh link.</p>"
    )
    someone_else = refusal is Refusal.SOMEONE_ELSE
    title = "This link was made for someone else" if someone_else else "QuickBooks was not connected"
    status = {Refusal.SOMEONE_ELSE: 403, Refusal.DENIED: 200, Refusal.SLACK_FAILED: 502}.get(refusal, 400)
    return status, page(title, f"<p>{escape(REFUSALS[refusal])}{where}</p>{todo}", "bad")


def reconnect_page(connections: list[Connection] | None, now: datetime) -> str:
    """Intuit's required "Reconnect URL". Anyone can open it, so it says only whether QuickBooks
    is connected — no company, realm, identity or token — and how to reconnect from Slack. With
    many workspaces (`connections` None) it says only how to reconnect."""
    how = (
        "<p>To reconnect, a zqbo admin runs <code>/zqbo reconnect</code> in Slack. zqbo then "
        "walks them through it in a direct message: create the dedicated integration user "
        "(Company admin), disconnect the old connection, and sign in to Intuit as that user.</p>"
    )
    if connections is None:
        return page("Reconnect QuickBooks from Slack", how, "ok")
    healthy = [c for c in connections if connection_state(c, now) in (State.CONNECTED, State.EXPIRING)]
    if connections and len(healthy) == len(connections):
        title, tone = "QuickBooks is connected", "ok"
        state = "<p>zqbo's QuickBooks connection is working.</p>"
    elif connections:
        title, tone = "QuickBooks needs reconnecting", "bad"
        state = "<p>zqbo's QuickBooks connection needs reconnecting.</p>"
    else:
        title, tone = "QuickBooks is not connected yet", "warn"
        state = "<p>zqbo has no QuickBooks connection yet.</p>"
    return page(title, state + how, tone)


def install_success_page(workspace: str, open_in_slack: str, in_browser: str = "") -> str:
    """After "Add to Slack": what to do next (the welcome DM's Set up zqbo, then connect)."""
    where = f"the Slack workspace <b>{escape(workspace)}</b>" if workspace else "your Slack workspace"
    links = [
        f'<a href="{escape(url)}">{label}</a>'
        for url, label in ((open_in_slack, "Open zqbo in Slack"), (in_browser, "open Slack in this browser"))
        if url.startswith(("slack://", "https://"))
    ]
    link = f"<p>{' or '.join(links)}</p>" if links else ""
    body = (
        f"<p>zqbo is now installed in {where}.</p>"
        "<p>Next, in Slack: zqbo has sent you a direct message. Press <b>Set up zqbo</b> to choose "
        "the alert channel, the dedicated integration user's email and who may change the "
        "connection; then run <code>/zqbo connect</code> to connect your QuickBooks company.</p>" + link
    )
    return page("zqbo is installed", body, "ok")


# Bolt's reasons for a failed "Add to Slack" callback: (HTTP status, title, what happened, the log's
# sentence). Anything else is an `error` Slack put in the redirect.
_INSTALL_FAILURES: dict[str, tuple[int, str, str, str]] = {
    "access_denied": (
        200,
        "zqbo was not installed",
        "You pressed Cancel on Slack's screen, so nothing was installed.",
        "the person cancelled on Slack's consent screen",
    ),
    "invalid_browser": (
        400,
        "This install was started in another browser",
        "Slack sent this browser back, but the install was started in another browser (or this "
        "browser did not keep zqbo's cookie: cookies blocked, or zqbo not served over https), so "
        "nothing was installed.",
        "the browser that came back from Slack is not the one that started the install "
        "(no matching state cookie: another browser, or cookies blocked)",
    ),
    "invalid_state": (
        400,
        "This install link has expired",
        "The install link was already used or is more than 10 minutes old, so nothing was installed.",
        "the install's state is unknown, already used or expired",
    ),
    "missing_code": (
        400,
        "Slack did not finish the install",
        "Slack sent the browser back without an authorisation code, so nothing was installed.",
        "Slack's redirect carried no code",
    ),
    "invalid_code": (
        400,
        "Slack did not accept the install",
        "Slack would not exchange the authorisation code (it expires within minutes and works "
        "once), so nothing was installed.",
        "Slack refused to exchange the code (oauth.v2.access failed)",
    ),
    "storage_error": (
        503,
        "zqbo could not save the installation",
        "Slack approved the install, but zqbo could not save it, so nothing was installed.",
        "the installation could not be saved",
    ),
}


def install_failure_page(reason: str, install_url: str, error_id: str) -> tuple[int, str, str]:
    """(HTTP status, page, a sentence for the log) for a failed "Add to Slack" callback.
    `reason` may come from the browser's address bar: it is bounded and escaped."""
    shown = reason[:60]
    status, title, what, said = _INSTALL_FAILURES.get(
        reason,
        (
            400,
            "Slack did not install zqbo",
            f"Slack answered “{shown}”, so nothing was installed.",
            f"Slack sent the browser back with the error {shown!r}",
        ),
    )
    again = (
        f'<p>To try again, open <a href="{escape(install_url)}">{escape(install_url)}</a> in this '
        "browser and press <b>Allow</b> on Slack's screen.</p>"
    )
    if reason == "storage_error":
        again = f"<p>Try again in a minute. Reference <code>{escape(error_id)}</code>.</p>" + again
    return status, page(title, f"<p>{escape(what)}</p>{again}", "warn" if status == 200 else "bad"), said
