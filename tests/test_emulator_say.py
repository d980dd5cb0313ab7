"""`zqbo emulator say "/zqbo status"`: a newcomer running `zqbo emulator` and `zqbo serve` talks to
the bot from a terminal. The real script, in its own process, against a bot the fixtures started
(the real web app on the Slack and Intuit emulators)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import connected_bot

ZQBO = str(Path(sys.executable).parent / "zqbo")


def say(slack, url: str, *args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZQBO_", "SLACK_", "QBO_"))}
    env.update(
        ZQBO_PUBLIC_URL=url,
        SLACK_API_URL=slack.api_url,
        SLACK_SIGNING_SECRET=secret or slack.signing_secret,
    )
    return subprocess.run(
        [ZQBO, "emulator", "say", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_say_prints_the_status_card_and_its_live_update(intuit, slack, clock, redis_prefix, cipher):
    with connected_bot(intuit, slack, clock, cipher, redis_prefix) as bot:
        done = say(slack, bot.url, "/zqbo status")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("ana › /zqbo status\n")
    assert "zqbo (only visible to you)" in out and "QuickBooks Online connection status" in out
    assert "Acme Payments Ltd" in out and "Asking QuickBooks now" in out
    # the live probe's update reached the emulator's response_url and is printed after the card
    update = out.split("zqbo (updates the message)", 1)[1]
    assert "Live probe: ✅ QuickBooks answered for Acme Payments Ltd" in update


def test_say_without_the_command_name_and_with_a_wrong_secret(intuit, slack, clock, redis_prefix, cipher):
    with connected_bot(intuit, slack, clock, cipher, redis_prefix) as bot:
        helped = say(slack, bot.url, "help", "--wait", "0.5")
        refused = say(slack, bot.url, "/zqbo status", secret="not-the-secret")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("ana › /zqbo help\n") and "/zqbo status" in helped.stdout
    assert refused.returncode == 1
    assert "SLACK_SIGNING_SECRET must be the one `zqbo emulator` printed" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_say_says_when_nothing_is_running(slack, tmp_path):
    done = say(slack, "http://127.0.0.1:9", "/zqbo status")
    assert done.returncode == 1
    assert "Nothing answers at http://127.0.0.1:9/slack/events: is `zqbo serve` running" in done.stderr
