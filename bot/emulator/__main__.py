"""`zqbo emulator` / `python -m bot.emulator`: run the emulators until Ctrl-C."""

from __future__ import annotations

import threading

import click

from bot.emulator.intuit import IntuitEmulator
from bot.emulator.slack import SlackEmulator


def run_standalone(port_intuit: int = 0, port_slack: int = 0, stop: threading.Event | None = None) -> None:
    with IntuitEmulator(port=port_intuit) as intuit, SlackEmulator(port=port_slack) as slack:
        intuit.seed_demo()
        click.echo("Emulators are up. Point the bot at them with:\n")
        click.echo(f"  export SLACK_API_URL={slack.api_url}")
        click.echo(f"  export SLACK_BOT_TOKEN={slack.bot_token}")
        click.echo(f"  export SLACK_SIGNING_SECRET={slack.signing_secret}")
        click.echo(f"  export QBO_ENVIRONMENT={intuit.discovery_url}")
        click.echo(f"  export QBO_API_URL={intuit.api_url}")
        click.echo(f"  export QBO_CLIENT_ID={intuit.client_id}")
        click.echo(f"  export QBO_CLIENT_SECRET={intuit.client_secret}")
        click.echo("\nIntuit's consent page lets you pick the identity (jane@acme.example or")
        click.echo("zomentum.integration@acme.example). Ctrl-C stops.")
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    run_standalone()
