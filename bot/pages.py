"""Small HTML pages for the browser side of OAuth (the user is not in Slack there)."""

from __future__ import annotations

from html import escape

from bot.blocks import callback_problem_text
from bot.connect import CallbackResult, Outcome
from bot.status import is_dedicated

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


def callback_page(result: CallbackResult, dedicated_email: str) -> tuple[int, str]:
    if result.outcome is Outcome.CONNECTED and result.connection is not None:
        conn = result.connection
        company = escape(conn.company_name or "your QuickBooks company")
        email = escape(conn.identity.email or "an identity Intuit did not tell us")
        verdict = is_dedicated(conn.identity.email, dedicated_email)
        if verdict is False:
            body = (
                f"<p>zqbo is connected to <b>{company}</b>, authorised as <b>{email}</b>.</p>"
                f"<p class=warn>That is not the dedicated integration user "
                f"(<b>{escape(dedicated_email)}</b>): automated entries will be logged under this "
                f"person. Reconnect while signed in to Intuit as the dedicated user.</p>"
            )
            return 200, page("Connected, but not as the dedicated user", body, "warn")
        body = f"<p>zqbo is connected to <b>{company}</b>, authorised as <b>{email}</b>.</p>"
        if verdict:
            body += "<p class=ok>That is the dedicated integration user. ✓</p>"
        return 200, page("QuickBooks connected", body, "ok")
    what = escape(callback_problem_text(result))
    ref = f" Reference <code>{escape(result.error_id)}</code>." if result.error_id else ""
    body = (
        f"<p>{what}{ref}</p><p>Nothing was stored. In Slack, run <code>/zqbo connect</code> "
        "for a fresh link.</p>"
    )
    status = 502 if result.outcome is Outcome.FAILED else 400
    if result.outcome is Outcome.DECLINED:
        status = 200
    return status, page("QuickBooks was not connected", body, "bad")
