"""`zqbo demo`: the emulators and the real bot, played in the terminal.

The bot runs exactly as in production (Bolt + Flask, real Slack/Intuit/QuickBooks clients),
only pointed at local emulators through SLACK_API_URL, QBO_ENVIRONMENT and QBO_API_URL.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import requests
from werkzeug.serving import make_server

from bot.app import build_services, create_web_app
from bot.config import load_settings
from bot.emulator import IntuitEmulator, SlackEmulator
from bot.emulator.slack import TEAM_ID
from bot.render import link_buttons, render
from bot.services import Services

PERSON = "jane@acme.example"
REALM = "9130357766483916"
MARK = "Zomentum payment"
DEDICATED = "zomentum.integration@acme.example"


class Player:
    def __init__(self, pause: float, echo: Callable[[str], None]) -> None:
        self.pause = pause
        self.echo = echo
        self.n = 0

    def step(self, title: str) -> None:
        self.n += 1
        self.echo("")
        self.echo(click.style(f"── {self.n}. {title} ", bold=True) + "─" * max(0, 70 - len(title)))
        time.sleep(self.pause)

    def say(self, text: str) -> None:
        self.echo(click.style(text, dim=True))

    def slack(self, who: str, message: dict[str, Any]) -> None:
        self.echo(click.style(f"  {who}", fg="cyan"))
        self.echo(render(message.get("blocks") or [], message.get("text", "")))
        time.sleep(self.pause)


def run_demo(pause: float = 0.6, echo: Callable[[str], None] = click.echo) -> None:
    play = Player(pause, echo)
    workdir = Path(tempfile.mkdtemp(prefix="zqbo-demo-"))
    try:
        with _stage(workdir) as stage:
            _play(play, stage.slack, stage.intuit, stage.events, workdir)
            _all_accepted(stage.slack)
    finally:
        # The demo's database and key are throwaway: gone at exit, on Ctrl-C or an error too.
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Stage:
    """The emulators and the bot, served on loopback ports."""

    slack: SlackEmulator
    intuit: IntuitEmulator
    url: str
    services: Services

    @property
    def events(self) -> str:
        return f"{self.url}/slack/events"


@contextmanager
def _stage(workdir: Path) -> Iterator[Stage]:
    with IntuitEmulator() as intuit, SlackEmulator() as slack:
        intuit.seed_demo()
        server = make_server("127.0.0.1", 0, None, threaded=True)  # type: ignore[arg-type]
        bot_url = f"http://127.0.0.1:{server.server_port}"
        settings = load_settings(_env_file=None, **_settings(slack, intuit, bot_url, workdir))
        services = build_services(settings)
        server.app = create_web_app(services)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield Stage(slack, intuit, bot_url, services)
        finally:
            server.shutdown()
            # Nothing may write to the database once its folder is being removed.
            for pool in (services.after_ack, services.background):
                pool.shutdown(wait=True, cancel_futures=True)
            services.store.close()


def _settings(slack: SlackEmulator, intuit: IntuitEmulator, bot_url: str, workdir: Path) -> dict[str, object]:
    """Everything given explicitly, so no environment of the shell (a DATABASE_URL, a bot token)
    reaches the demo: one process, embedded SQLite in the demo's folder, no broker."""
    common: dict[str, object] = {
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        "ZQBO_PUBLIC_URL": bot_url,
        "QBO_CLIENT_ID": intuit.client_id,
        "QBO_CLIENT_SECRET": intuit.client_secret,
        "QBO_ENVIRONMENT": intuit.discovery_url,
        "QBO_API_URL": intuit.api_url,
        "REDIS_URL": "",
        "DATABASE_URL": "",
        "ZQBO_ENCRYPTION_KEY": "",
        "ZQBO_DB": str(workdir / "zqbo.db"),
        "ZQBO_MARKERS": "PrivateNote~Zomentum",
    }
    return {
        **common,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "ZQBO_DEDICATED_EMAIL": DEDICATED,
        "ZQBO_ALERT_CHANNEL": "C0ALERTS",
        "ZQBO_ADMINS": "U0ADMIN",
        "ZQBO_DEDICATED_USER_ID": "9",
    }


def _all_accepted(slack: SlackEmulator) -> None:
    """Every message zqbo sent must be one real Slack accepts: the emulator checks them as Slack
    does (Block Kit, limits); the demo fails loudly on any it refused."""
    refused = [f"{c.method}: {c.error} {c.args.get('errors') or ''}".strip() for c in slack.refused_calls()]
    refused += [
        f"{r['url']}: {r['error']} {r['problems']}" for r in slack.refused_responses() if r["status"] == 400
    ]
    if refused:
        raise click.ClickException("Slack would have refused what zqbo sent:\n  " + "\n  ".join(refused))


@dataclass(frozen=True)
class Person:
    """Someone typing in Slack: in which workspace, and in which channel."""

    name: str
    user_id: str
    team_id: str = TEAM_ID
    channel: str = "C0ALERTS"


ANA = Person("ana", "U0ADMIN")


def _command(
    play: Player, slack: SlackEmulator, events: str, text: str, who: Person = ANA
) -> tuple[dict[str, Any], str]:
    play.echo(click.style(f"  {who.name} › /zqbo {text}", fg="green", bold=True))
    resp, response_url = slack.send_command(
        events, text, user_id=who.user_id, user_name=who.name, team_id=who.team_id, channel_id=who.channel
    )
    resp.raise_for_status()
    ack = json.loads(resp.text) if resp.text else {}
    play.slack("zqbo (only visible to you)", ack)
    return ack, response_url


def _checklist(slack: SlackEmulator) -> dict[str, Any]:
    channel = slack.dm_channel("U0ADMIN")
    return next(m for m in slack.messages(channel) if m["text"].startswith("zqbo guided reconnect"))


def _press(play: Player, slack: SlackEmulator, events: str, action_id: str, label: str) -> None:
    """Ana presses a button on her checklist; wait until zqbo has updated the message."""
    play.echo(click.style(f"  ana presses [ {label} ]", fg="green", bold=True))
    done = len([c for c in slack.calls_to("chat.update") if c.ok])
    slack.press_button(
        events, _checklist(slack), action_id, user_id="U0ADMIN", channel_id=slack.dm_channel("U0ADMIN")
    )
    slack.wait_for_calls("chat.update", done + 1, timeout=10)


def _sign_in(play: Player, slack: SlackEmulator, intuit: IntuitEmulator, as_user: str) -> None:
    [auth_url] = link_buttons(_checklist(slack))
    play.say(f"  Intuit's consent screen (emulated), signed in as {as_user} → Connect")
    done = len([c for c in slack.calls_to("chat.update") if c.ok])
    page = requests.get(intuit.authorize(auth_url, as_user=as_user), timeout=10)
    play.say(f"  Browser shows: “{_title(page.text)}” (HTTP {page.status_code})")
    slack.wait_for_calls("chat.update", done + 1, timeout=10)


def _check(play: Player, slack: SlackEmulator, events: str, who: Person = ANA) -> None:
    _, response_url = _command(play, slack, events, "check", who)
    [answer] = slack.wait_for_responses(response_url, 1, timeout=30)
    play.slack("zqbo (updates the message)", answer)


def _show_channel(
    play: Player,
    slack: SlackEmulator,
    shown: dict[str, str],
    channel: str = "C0ALERTS",
    name: str = "#qbo-alerts",
) -> None:
    """Print what is new or changed in a channel since the last look."""
    for message in slack.messages(channel):
        fingerprint = json.dumps(message.get("blocks"), sort_keys=True)
        key = f"{channel}/{message['ts']}"
        if shown.get(key) == fingerprint:
            continue
        where = f"{name} (thread)" if message.get("thread_ts") else name
        verb = "updated" if key in shown else "posted"
        shown[key] = fingerprint
        play.slack(f"zqbo → {where} ({verb})", message)


def _title(html: str) -> str:
    return html.split("<h1", 1)[-1].split(">", 1)[-1].split("</h1>", 1)[0]


def _play(play: Player, slack: SlackEmulator, intuit: IntuitEmulator, events: str, workdir: Path) -> None:
    play.echo(
        click.style("zqbo demo", bold=True) + " — Slack and Intuit are emulated on 127.0.0.1;"
        " the bot is the real one."
    )
    play.say(
        f"  Slack API  {slack.api_url}\n  Intuit     {intuit.discovery_url}\n"
        f"  QBO API    {intuit.api_url}\n  Store      SQLite in {workdir}"
    )

    play.step("Nothing is connected yet")
    _command(play, slack, events, "status")

    play.step("Ana asks for a connection link")
    _, response_url = _command(play, slack, events, "connect")
    [message] = slack.wait_for_responses(response_url, 1)
    play.slack("zqbo (updates the message)", message)
    [auth_url] = link_buttons(message)

    play.step(
        f"Ana signs in to Intuit with her everyday login, {PERSON} (how most integrations get connected)"
    )
    page = requests.get(intuit.authorize(auth_url, as_user=PERSON), timeout=10)
    play.say(f"  Browser shows: “{_title(page.text)}” (HTTP {page.status_code})")
    slack.wait_for_calls("chat.postMessage", 1, timeout=10)
    for call in slack.calls_to("chat.postMessage"):
        if str(call.args.get("channel", "")).startswith("D"):
            play.slack("zqbo → DM to ana", call.args)

    play.step("The payments integration posts; zqbo's check sees whom QBO logged the entries under")
    for number, amount in (("ZP-1001", 120.50), ("ZP-1002", 89.00), ("ZP-1003", 410.25)):
        intuit.add_entry(REALM, "Payment", by=PERSON, amount=amount, doc_number=number, private_note=MARK)
    play.say("  QBO (emulated): 3 Payments marked “Zomentum payment”, LastModifiedByRef = user 1 (Jane)")
    _check(play, slack, events)
    shown: dict[str, str] = {}
    _show_channel(play, slack, shown)

    play.step("Status: connected, but under a person — the wrong identity")
    _, response_url = _command(play, slack, events, "status")
    [live] = slack.wait_for_responses(response_url, 1, timeout=10)
    play.slack("zqbo (after asking QuickBooks live)", live)

    play.step("Ana starts the guided reconnect: one checklist in her DMs")
    _command(play, slack, events, "reconnect")
    deadline = time.monotonic() + 10
    while not any(
        m["text"].startswith("zqbo guided reconnect") for m in slack.messages(slack.dm_channel("U0ADMIN"))
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the checklist DM did not arrive")
        time.sleep(0.05)
    play.slack("zqbo → DM to ana", _checklist(slack))

    play.step("Step 1 done in QuickBooks; step 2: disconnect (Slack asks to confirm)")
    _press(play, slack, events, "zqbo_rc_user_done", "Done")
    _press(play, slack, events, "zqbo_rc_disconnect", "Disconnect")
    play.say(f"  Intuit saw {intuit.count('revoke')} revoke call")
    _press(play, slack, events, "zqbo_rc_link", "Get sign-in link")
    play.slack("zqbo (the same DM message, updated)", _checklist(slack))

    play.step("Step 3, first try: the browser still had Ana's own Intuit session")
    _sign_in(play, slack, intuit, PERSON)
    play.slack("zqbo (the checklist turns red at step 4)", _checklist(slack))

    play.step("Disconnect and retry, this time in a private window as the dedicated user")
    _press(play, slack, events, "zqbo_rc_retry", "Disconnect and retry")
    _press(play, slack, events, "zqbo_rc_link", "Get sign-in link")
    _sign_in(play, slack, intuit, DEDICATED)
    play.slack("zqbo (the same DM message, updated)", _checklist(slack))

    play.step("The integration's next entry is logged under the dedicated user (QBO user 9)")
    intuit.add_entry(REALM, "Payment", by=DEDICATED, amount=77.0, doc_number="ZP-1004", private_note=MARK)
    _check(play, slack, events)
    play.slack("zqbo (the checklist: step 5 ticked)", _checklist(slack))
    _show_channel(play, slack, shown)

    play.step("Status again: connected as the dedicated user")
    _command(play, slack, events, "status")

    play.step("Done")
    play.echo(
        "  Next: create the Slack app from app_manifest.yml and the Intuit app (README), then `zqbo serve`."
    )
