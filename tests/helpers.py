"""Small helpers that play a user: type a command, click a link, read what Slack shows."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import requests

from bot.render import link_buttons, render

__all__ = ["link_buttons"]


def card_text(message: dict[str, Any]) -> str:
    return render(message.get("blocks") or [], message.get("text", ""))


def command(slack, bot, text: str, **kw: Any) -> tuple[requests.Response, str]:
    resp, response_url = slack.send_command(bot.events_url, text, **kw)
    return resp, response_url


def ack_message(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    return json.loads(resp.text) if resp.text else {}


def connect(slack, intuit, bot, as_user: str, user_id: str = "U0ADMIN") -> requests.Response:
    """/zqbo connect → the link → Sign in with Slack → Intuit consent as `as_user` → the bot's
    callback page."""
    resp, response_url = command(slack, bot, "connect", user_id=user_id)
    ack_message(resp)
    [message] = slack.wait_for_responses(response_url, 1)
    [link] = link_buttons(message)
    browser, auth_url = signed_in(slack, link, user_id)
    callback = intuit.authorize(auth_url, as_user=as_user)
    return browser.get(callback, timeout=10)


def signed_in(
    slack, link: str, user_id: str = "U0ADMIN", browser: requests.Session | None = None
) -> tuple[requests.Session, str]:
    """Open zqbo's connect link in a browser and Sign in with Slack as `user_id`: (that browser,
    Intuit's authorisation URL zqbo sent it on to). The callback must be opened in that browser."""
    browser = browser or requests.Session()
    answer = slack.sign_in(link, user_id, browser)
    assert answer.status_code == 302, f"{answer.status_code}: {answer.text[:300]}"
    return browser, answer.headers["Location"]


def signed_form(slack, url: str, form: dict[str, str]) -> requests.Response:
    """POST a form signed as Slack signs it (any fields: malformed ones too)."""
    body = urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **slack.sign(body)}
    return requests.post(url, data=body, headers=headers, timeout=15)


def dms_to(slack, user_id: str, wait_for: int = 0, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Messages the bot posted in the DM with `user_id`, as posted (waits for `wait_for` of them)."""
    channel = slack.dm_channel(user_id)
    deadline = time.monotonic() + timeout
    while True:
        posts = [
            c.args for c in slack.calls_to("chat.postMessage") if c.ok and c.args.get("channel") == channel
        ]
        if len(posts) >= wait_for or time.monotonic() > deadline:
            return posts
        time.sleep(0.02)
