"""`zqbo emulator` / `python -m bot.emulator`: run the emulators until Ctrl-C."""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable

import click

from bot.emulator.intuit import IntuitEmulator
from bot.emulator.slack import SlackEmulator

BOT_PORT = 3000


def bot_env(intuit: IntuitEmulator, slack: SlackEmulator) -> dict[str, str]:
    """Every variable `zqbo serve` needs to run against these emulators (SQLite in ./zqbo.db)."""
    return {
        "SLACK_API_URL": slack.api_url,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "QBO_ENVIRONMENT": intuit.discovery_url,
        "QBO_API_URL": intuit.api_url,
        "QBO_CLIENT_ID": intuit.client_id,
        "QBO_CLIENT_SECRET": intuit.client_secret,
        "ZQBO_PUBLIC_URL": f"http://127.0.0.1:{BOT_PORT}",
        "PORT": str(BOT_PORT),
        "ZQBO_DEDICATED_EMAIL": "zomentum.integration@acme.example",
        "ZQBO_ALERT_CHANNEL": "C0ALERTS",
        "ZQBO_ADMINS": "U0ADMIN",  # ana, the emulated workspace's admin
        "ZQBO_MARKERS": "PrivateNote~Zomentum",
        # connect links ask for Sign in with Slack (on by default), with the Slack app's credentials
        **app_credentials(slack),
    }


def app_credentials(slack: SlackEmulator) -> dict[str, str]:
    """The Slack app's OAuth credentials: Sign in with Slack for connect links, and — without a
    bot token — "Add to Slack" for many workspaces."""
    return {
        "SLACK_CLIENT_ID": slack.client_id,
        "SLACK_CLIENT_SECRET": slack.client_secret,
        "SLACK_AUTHORIZE_URL": f"{slack.url}/oauth/v2/authorize",
    }


def run_standalone(
    port_intuit: int = 0,
    port_slack: int = 0,
    stop: threading.Event | None = None,
    echo: Callable[[str], None] = click.echo,
) -> None:
    with IntuitEmulator(port=port_intuit) as intuit, SlackEmulator(port=port_slack) as slack:
        intuit.seed_demo()
        echo("Emulators are up. Point the bot at them with:\n")
        for name, value in bot_env(intuit, slack).items():
            echo(f"  export {name}={shlex.quote(value)}")
        echo("\nthen run `zqbo serve` (REDIS_URL unset: SQLite in ./zqbo.db), and talk to it from a")
        echo('third shell with the same exports: `zqbo emulator say "/zqbo status"` types it as ana.')
        echo("For many workspaces (Add to Slack) instead: `unset SLACK_BOT_TOKEN`, run `zqbo serve`,")
        echo(f"then open http://127.0.0.1:{BOT_PORT}/slack/install and pick the workspace.")
        echo("Intuit's consent page lets you pick the identity (jane@acme.example or")
        echo("zomentum.integration@acme.example). Ctrl-C stops.")
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    run_standalone()
