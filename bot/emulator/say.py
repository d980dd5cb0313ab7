"""`zqbo emulator say "/zqbo status"`: type a slash command, as a person in the emulated Slack,
to a running `zqbo serve`, and print what zqbo answers — its ack, then what it posts to the
command's response_url (the running `zqbo emulator` receives those posts, as Slack would)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import requests
from slack_sdk.signature import SignatureVerifier

from bot.render import render

SETTLE_SECONDS = 1.5  # after a follow-up, how long another may still come


class SayError(Exception):
    """A sentence for the person at the terminal."""


def say(
    typed: str,
    *,
    bot_url: str,
    slack_api_url: str,
    signing_secret: str,
    user_id: str = "U0ADMIN",
    channel_id: str = "C0ALERTS",
    wait: float = 5.0,
    echo: Callable[[str], None] = print,
) -> None:
    command, _, text = typed.strip().partition(" ")
    if not command.startswith("/"):
        command, text = "/zqbo", typed.strip()
    emulator = slack_api_url.rstrip("/").removesuffix("/api")
    try:
        asked = requests.post(
            f"{emulator}/_emulator/command", json={"user_id": user_id, "channel_id": channel_id}, timeout=5
        )
    except requests.ConnectionError as exc:
        raise SayError(
            f"The Slack emulator does not answer at {emulator}: is `zqbo emulator` running, and "
            "SLACK_API_URL set to the value it printed?"
        ) from exc
    if asked.status_code != 200:
        raise SayError(f"The Slack emulator refused: {asked.json().get('error', asked.text)}")
    form, names = asked.json()["form"], asked.json()["names"]
    form.update(command=command, text=text)
    body = urlencode(form)
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": SignatureVerifier(signing_secret).generate_signature(timestamp=stamp, body=body)
        or "",
    }
    url = f"{bot_url.rstrip('/')}/slack/events"
    echo(f"{names.get(user_id, user_id)} › {command} {text}".rstrip())
    try:
        answer = requests.post(url, data=body.encode(), headers=headers, timeout=10)
    except requests.ConnectionError as exc:
        raise SayError(f"Nothing answers at {url}: is `zqbo serve` running on ZQBO_PUBLIC_URL?") from exc
    if answer.status_code == 401:
        raise SayError(
            "zqbo refused the request's signature: SLACK_SIGNING_SECRET must be the one `zqbo emulator` "
            "printed, in both this shell and zqbo serve's."
        )
    if answer.status_code != 200:
        raise SayError(f"zqbo answered HTTP {answer.status_code}: {answer.text[:200]}")
    show = _shower(names, echo)
    show("zqbo (only visible to you)", answer.json() if answer.text.strip() else {})
    key = form["response_url"].rstrip("/").rsplit("/", 1)[-1]
    seen, patience = 0, wait
    while True:
        posts = requests.get(
            f"{emulator}/_emulator/response/{key}",
            params={"after": seen, "wait": patience},
            timeout=patience + 5,
        ).json()["posts"]
        if not posts:
            return
        for post in posts:
            show(
                "zqbo (updates the message)"
                if post.get("replace_original")
                else "zqbo (only visible to you)",
                post,
            )
        seen += len(posts)
        patience = SETTLE_SECONDS


def _shower(names: dict[str, str], echo: Callable[[str], None]) -> Callable[[str, dict[str, Any]], None]:
    def show(who: str, message: dict[str, Any]) -> None:
        if not (message.get("blocks") or message.get("text")):
            return  # an empty ack: the answer follows on the response_url
        echo(f"  {who}")
        echo(render(message.get("blocks") or [], message.get("text", ""), lambda u: names.get(u)))

    return show
