"""`zqbo demo`: the emulators and the real bot, played in the terminal.

The bot runs exactly as in production (Bolt + Flask, real Slack/Intuit/QuickBooks clients),
only pointed at local emulators through SLACK_API_URL, QBO_ENVIRONMENT and QBO_API_URL.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import click
import requests
from werkzeug.serving import make_server

from bot.app import build_services, create_web_app
from bot.config import load_settings
from bot.emulator import IntuitEmulator, SlackEmulator
from bot.emulator.intuit import DEDICATED_QBO_ID, JANE_QBO_ID, STRIPE_QBO_ID
from bot.emulator.slack import TEAM_ID
from bot.render import Names, link_buttons, render
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
        self.channels: dict[str, str] = {}  # channel id -> name, as Slack shows a <#C…> mention
        self.names: Names = lambda _: None  # user id -> name, as Slack shows a <@U…> mention

    def step(self, title: str) -> None:
        self.n += 1
        self.echo("")
        self.echo(click.style(f"── {self.n}. {title} ", bold=True) + "─" * max(0, 70 - len(title)))
        time.sleep(self.pause)

    def say(self, text: str) -> None:
        self.echo(click.style(text, dim=True))

    def slack(self, who: str, message: dict[str, Any]) -> None:
        self.echo(click.style(f"  {who}", fg="cyan"))
        text = render(message.get("blocks") or [], message.get("text", ""), self.names)
        for channel_id, name in self.channels.items():
            text = text.replace(f"#{channel_id}", f"#{name}")
        self.echo(text)
        time.sleep(self.pause)


def run_demo(
    pause: float = 0.6, echo: Callable[[str], None] = click.echo, *, workspaces: bool = False
) -> None:
    """Play the single-workspace story, or (workspaces=True) two teams sharing one zqbo."""
    play = Player(pause, echo)
    workdir = Path(tempfile.mkdtemp(prefix="zqbo-demo-"))
    try:
        with _stage(workdir, multi=workspaces) as stage:
            play.names = lambda user_id: user.name if (user := stage.slack.users.get(user_id)) else None
            if workspaces:
                _play_workspaces(play, stage, workdir)
            else:
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
def _stage(workdir: Path, multi: bool) -> Iterator[Stage]:
    with IntuitEmulator() as intuit, SlackEmulator() as slack:
        intuit.seed_demo()
        server = make_server("127.0.0.1", 0, None, threaded=True)  # type: ignore[arg-type]
        bot_url = f"http://127.0.0.1:{server.server_port}"
        settings = load_settings(_env_file=None, **_settings(slack, intuit, bot_url, workdir, multi))
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


def _settings(
    slack: SlackEmulator, intuit: IntuitEmulator, bot_url: str, workdir: Path, multi: bool
) -> dict[str, object]:
    """Everything given explicitly, so no environment of the shell (a DATABASE_URL, a bot token)
    reaches the demo: one process, embedded SQLite in the demo's folder, no broker."""
    common: dict[str, object] = {
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url,
        # connect links ask for Sign in with Slack, with the Slack app's credentials
        "SLACK_CLIENT_ID": slack.client_id,
        "SLACK_CLIENT_SECRET": slack.client_secret,
        "SLACK_AUTHORIZE_URL": f"{slack.url}/oauth/v2/authorize",
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
        # the demo plays each check with /zqbo check; nothing runs on a schedule
        "ZQBO_SCHEDULER": "off",
    }
    if multi:
        # Many workspaces: the Slack app's OAuth credentials and no bot token. Every workspace
        # picks its own channel, dedicated user and admins.
        return {
            **common,
            "SLACK_BOT_TOKEN": "",
            "ZQBO_DEDICATED_EMAIL": "",
            "ZQBO_ALERT_CHANNEL": "",
            "ZQBO_ADMINS": "",
            "ZQBO_DEDICATED_USER_ID": "",
        }
    return {
        **common,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "ZQBO_DEDICATED_EMAIL": DEDICATED,
        "ZQBO_ALERT_CHANNEL": "C0ALERTS",
        "ZQBO_ADMINS": "U0ADMIN",
        "ZQBO_DEDICATED_USER_ID": DEDICATED_QBO_ID,
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


def _status(play: Player, slack: SlackEmulator, events: str, who: Person = ANA) -> None:
    """/zqbo status, and — when the card says it is asking QuickBooks — the card as the live
    probe leaves it (only its changed lines: Slack replaces the card in place)."""
    ack, response_url = _command(play, slack, events, "status", who)
    before = render(ack.get("blocks") or [], ack.get("text", ""), play.names)
    if "Asking QuickBooks now" not in before:
        return
    [live] = slack.wait_for_responses(response_url, 1, timeout=10)
    after = render(live.get("blocks") or [], live.get("text", ""), play.names)
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    play.echo(click.style("  zqbo (updates the card after asking QuickBooks live)", fg="cyan"))
    play.echo("\n".join(changed or after.splitlines()))


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


def _through_slack(
    play: Player, slack: SlackEmulator, link: str, user_id: str
) -> tuple[requests.Session, str]:
    """The browser opens zqbo's link and signs in with Slack as the person who asked for it:
    (that browser, Intuit's URL zqbo sends it on to)."""
    play.say(f"  Sign in with Slack (emulated) as {user_id} → Continue")
    browser = requests.Session()
    answer = slack.sign_in(link, user_id, browser)
    if answer.status_code != 302:
        raise RuntimeError(f"Sign in with Slack did not go on to Intuit: HTTP {answer.status_code}")
    return browser, answer.headers["Location"]


def _sign_in(play: Player, slack: SlackEmulator, intuit: IntuitEmulator, as_user: str) -> None:
    [link] = link_buttons(_checklist(slack))
    browser, auth_url = _through_slack(play, slack, link, "U0ADMIN")
    play.say(f"  Intuit's consent screen (emulated), signed in as {as_user} → Connect")
    done = len([c for c in slack.calls_to("chat.update") if c.ok])
    page = browser.get(intuit.authorize(auth_url, as_user=as_user), timeout=10)
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


def _sentence(html: str) -> str:
    """A page's first paragraph, as the browser shows it."""
    match = re.search(r"<p[^>]*>(.*?)</p>", html, re.S)
    return unescape(re.sub(r"<[^>]+>", "", match.group(1))) if match else ""


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
    [link] = link_buttons(message)

    play.step(
        f"Ana signs in to Intuit with her everyday login, {PERSON} (how most integrations get connected)"
    )
    browser, auth_url = _through_slack(play, slack, link, "U0ADMIN")
    page = browser.get(intuit.authorize(auth_url, as_user=PERSON), timeout=10)
    play.say(f"  Browser shows: “{_title(page.text)}” (HTTP {page.status_code})")
    slack.wait_for_calls("chat.postMessage", 1, timeout=10)
    for call in slack.calls_to("chat.postMessage"):
        if str(call.args.get("channel", "")).startswith("D"):
            play.slack("zqbo → DM to ana", call.args)

    play.step("The payments integration posts; zqbo's check sees whom QBO logged the entries under")
    for number, amount in (("ZP-1001", 120.50), ("ZP-1002", 89.00), ("ZP-1003", 410.25)):
        intuit.add_entry(REALM, "Payment", by=PERSON, amount=amount, doc_number=number, private_note=MARK)
    play.say(
        "  QBO (emulated): 3 Payments marked “Zomentum payment”,"
        f" LastModifiedByRef = user {JANE_QBO_ID} (Jane)"
    )
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

    play.step(
        f"The integration's next entry is logged under the dedicated user (QBO user {DEDICATED_QBO_ID})"
    )
    intuit.add_entry(REALM, "Payment", by=DEDICATED, amount=77.0, doc_number="ZP-1004", private_note=MARK)
    _check(play, slack, events)
    play.slack("zqbo (the checklist: step 5 ticked)", _checklist(slack))
    _show_channel(play, slack, shown)

    play.step("Entries nobody typed: QuickBooks' own, and one with no recorded writer")
    intuit.add_entry(REALM, "Payment", by="quickbooks", amount=49.0, doc_number="REC-7", private_note=MARK)
    intuit.add_entry(REALM, "Deposit", by=None, amount=310.0, private_note=MARK)
    play.say(
        "  QBO (emulated): a recurring Payment written by QuickBooks itself (LastModifiedByRef = 0) and a"
        " Deposit with no LastModifiedByRef, both marked “Zomentum payment”"
    )
    alerts_before = len(slack.messages("C0ALERTS"))
    _check(play, slack, events)
    if len(slack.messages("C0ALERTS")) != alerts_before:
        raise RuntimeError("an entry QuickBooks wrote, or with no writer, was alerted as a person's")
    play.say("  Counted on the check line and never compared with a person: no alert")
    _, response_url = _command(play, slack, events, "users")
    [answer] = slack.wait_for_responses(response_url, 1, timeout=30)
    play.slack("zqbo (updates the message)", answer)

    play.step("Status again: connected as the dedicated user")
    _command(play, slack, events, "status")

    _second_integration(play, slack, intuit, events, shown)
    _route_company(play, slack, intuit, events)
    _report_and_digest(play, slack, events)

    play.step("Done")
    play.echo(
        "  Next: create the Slack app from app_manifest.yml and the Intuit app (README), then `zqbo serve`."
    )


def _route_company(play: Player, slack: SlackEmulator, intuit: IntuitEmulator, events: str) -> None:
    """A firm keeps this company's books: its alerts go to the client's own channel, by the name
    the firm knows it by."""
    play.step("Ana routes this company's alerts to its own channel, #client-acme, and names it")
    slack.add_channel("C0CLIENT", "client-acme")
    _command(play, slack, events, f"config channel <#C0CLIENT|client-acme> {REALM}")
    _command(play, slack, events, f"config name {REALM} Acme (client)")
    intuit.add_entry(REALM, "Payment", by=PERSON, amount=64.0, doc_number="ZP-1006", private_note=MARK)
    play.say("  QBO (emulated): one more marked Payment lands under Jane's login")
    _check(play, slack, events)
    if not slack.messages("C0CLIENT"):
        raise RuntimeError("the company's alert did not reach its own channel")
    _show_channel(play, slack, {}, "C0CLIENT", "#client-acme")
    play.say("  #qbo-alerts stays for the companies that have no channel of their own")


def _report_and_digest(play: Player, slack: SlackEmulator, events: str) -> None:
    """The history every check kept, as a report (chart + CSV in Ana's DM) and as the digest."""
    play.step("A report of the last 7 days: a chart and a CSV of the flagged entries, in Ana's DM")
    _, response_url = _command(play, slack, events, "report 7d")
    [answer] = slack.wait_for_responses(response_url, 1, timeout=30)
    play.slack("zqbo (updates the message)", answer)
    folder = Path(tempfile.mkdtemp(prefix="zqbo-report-"))  # kept: the demo's own folder is removed
    for shared in slack.shared_files(ANA.user_id):
        path = folder / shared.filename
        path.write_bytes(shared.data)
        play.say(f"  zqbo → DM: file “{shared.title}” ({len(shared.data):,} bytes), saved to {path}")
    play.step("The weekly digest, previewed with /zqbo digest now")
    _, response_url = _command(play, slack, events, "digest now")
    [answer] = slack.wait_for_responses(response_url, 1, timeout=30)
    play.slack("zqbo (updates the message)", answer)
    digest = [
        m for m in slack.messages(slack.dm_channel(ANA.user_id)) if "weekly digest" in m.get("text", "")
    ]
    if digest:
        play.slack("zqbo → DM", digest[-1])
    play.say("  `/zqbo digest monday 9` posts it to #qbo-alerts every Monday at 09:00 in Ana's time zone")


def _second_integration(
    play: Player, slack: SlackEmulator, intuit: IntuitEmulator, events: str, shown: dict[str, str]
) -> None:
    """The same company has a second app writing into QuickBooks: Stripe's connector, connected
    with Jane's login. zqbo tells the two integrations apart by their markers."""
    play.step("A second integration in the same company: Stripe, connected under a person")
    _command(
        play,
        slack,
        events,
        'integration add Stripe markers "PrivateNote~Stripe" email stripe.integration@acme.example '
        f"user {STRIPE_QBO_ID}",
    )
    for number, amount in (("ch-3001", 25.0), ("ch-3002", 60.0)):
        intuit.add_entry(
            REALM, "Payment", by=PERSON, amount=amount, doc_number=number, private_note="Stripe charge"
        )
    intuit.add_entry(REALM, "Payment", by=DEDICATED, amount=12.0, doc_number="ZP-1005", private_note=MARK)
    play.say(
        f"  QBO (emulated): 2 Payments marked “Stripe charge” under user {JANE_QBO_ID} (Jane), and one more"
        " Zomentum payment under its dedicated user"
    )
    _check(play, slack, events)
    _show_channel(play, slack, shown)
    _command(play, slack, events, "status")


# Many workspaces: one zqbo, installed with "Add to Slack" by two finance teams ----------------
@dataclass(frozen=True)
class Team:
    """A Slack workspace that installs zqbo, and the QuickBooks company it connects."""

    name: str
    admin: Person
    channel_name: str
    realm: str
    company: str
    dedicated: str  # the dedicated integration user's Intuit login
    dedicated_id: str  # its QBO user id, which differs from one company to the next
    person: str  # a colleague's Intuit login
    person_id: str
    docs: tuple[str, ...]  # the integration's next payments

    @property
    def id(self) -> str:
        return self.admin.team_id

    @property
    def channel(self) -> str:
        return f"#{self.channel_name}"


ACME = Team(
    "Acme",
    Person("ana", "UA0ANA", "TACME", "CA0ALERTS"),
    "qbo-alerts",
    REALM,
    "Acme Payments Ltd",
    DEDICATED,
    DEDICATED_QBO_ID,
    PERSON,
    JANE_QBO_ID,
    ("ZP-1001", "ZP-1002"),
)
BETA = Team(
    "Beta Books",
    Person("bea", "UB0BEA", "TBETA", "CB0FINANCE"),
    "finance-alerts",
    "4620816365178036850",
    "Beta Books Inc",
    "integration@betabooks.example",
    "4620816365178036977",
    "bob@betabooks.example",
    "4620816365178036311",
    ("BB-2001",),
)


def _world(slack: SlackEmulator, intuit: IntuitEmulator) -> None:
    """Two Slack workspaces, each with its admin and alert channel; a second QuickBooks company
    (intuit.seed_demo made Acme's), with its own people and dedicated user."""
    for team in (ACME, BETA):
        admin = team.admin
        domain = team.name.lower().replace(" ", "")
        slack.add_team(team.id, team.name, domain)
        slack.add_user(
            admin.user_id,
            admin.name,
            f"{admin.name.title()} Admin",
            f"{admin.name}@{domain}.example",
            team_id=team.id,
            is_admin=True,
        )
        slack.add_channel(admin.channel, team.channel_name, team_id=team.id)
    intuit.add_identity(BETA.person, "Bob", "Books")
    intuit.add_identity(BETA.dedicated, "Beta", "Integration")
    intuit.add_company(
        BETA.realm, BETA.company, users={BETA.person: BETA.person_id, BETA.dedicated: BETA.dedicated_id}
    )


def _wait(what: str, found: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := found()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)
    return value


def _dms(slack: SlackEmulator, who: Person) -> list[dict[str, Any]]:
    return slack.messages(slack.dm_channel(who.user_id))


def _install(play: Player, stage: Stage, team: Team) -> None:
    who = team.admin
    play.echo(
        click.style(f"  {who.name} opens {stage.url}/slack/install → [ Add to Slack ]", fg="green", bold=True)
    )
    play.say(f"  Slack's consent screen (emulated): install zqbo in {team.name} → Allow")
    seen = len(_dms(stage.slack, who))
    page = stage.slack.install(stage.url, team.id, who.user_id)
    play.say(f"  Browser is back on zqbo: HTTP {page.status_code}")
    if page.status_code != 200:
        raise RuntimeError(f"installing in {team.name} failed: {page.status_code}")
    [welcome] = _wait("the welcome DM", lambda: _dms(stage.slack, who)[seen:])
    play.slack(f"zqbo → DM to {who.name} ({team.name})", welcome)


def _connect(play: Player, stage: Stage, team: Team, as_user: str, realm: str) -> requests.Response:
    """/zqbo connect, then Intuit's consent screen: signed in as `as_user`, picking `realm`."""
    _, response_url = _command(play, stage.slack, stage.events, "connect", team.admin)
    [message] = stage.slack.wait_for_responses(response_url, 1)
    [link] = link_buttons(message)
    browser, auth_url = _through_slack(play, stage.slack, link, team.admin.user_id)
    company = stage.intuit.companies[realm].name
    play.say(f"  Intuit's consent screen (emulated), signed in as {as_user}, company {company} → Connect")
    page = browser.get(stage.intuit.authorize(auth_url, as_user=as_user, realm=realm), timeout=10)
    play.say(f"  Browser shows: “{_title(page.text)}” (HTTP {page.status_code})")
    return page


def _settings_form(play: Player, stage: Stage, team: Team) -> None:
    """The admin presses Set up zqbo on the welcome DM, fills the Settings form and saves it; then
    zqbo's App Home shows what is set."""
    slack, events, who = stage.slack, stage.events, team.admin
    play.echo(click.style(f"  {who.name} presses [ Set up zqbo ]", fg="green", bold=True))
    welcome = next(m for m in _dms(slack, who) if m["text"].startswith("zqbo is installed"))
    slack.press_button(
        events,
        welcome,
        "zqbo_open_settings",
        user_id=who.user_id,
        channel_id=slack.dm_channel(who.user_id),
        team_id=team.id,
    )
    [view] = _wait("the Settings form", lambda: list(slack.open_views.values()))
    play.slack(f"Slack opens a form: “{view['title']['text']}”  [ Cancel ]  [ Save ]", view)
    values = {
        "settings_channel": who.channel,
        "settings_email": team.dedicated,
        "settings_admins": [who.user_id],
        "settings_interval": "15m",
        "settings_markers": "PrivateNote~Zomentum",
    }
    play.echo(
        click.style(
            f"  {who.name} picks {team.channel}, types {team.dedicated}, picks herself as admin → [ Save ]",
            fg="green",
            bold=True,
        )
    )
    saved = slack.send_view_submission(events, view["id"], values, user_id=who.user_id, team_id=team.id)
    saved.raise_for_status()
    if view["id"] in slack.open_views:
        raise RuntimeError(f"the Settings form did not save: {saved.text}")
    play.say("  The form closes: saved. She opens zqbo's App Home:")
    slack.send_event(
        events, {"type": "app_home_opened", "user": who.user_id, "tab": "home"}, team_id=team.id
    ).raise_for_status()
    home = _wait("App Home", lambda: slack.home_views.get(who.user_id))
    play.slack(f"zqbo's App Home ({team.name}, as {who.name} sees it)", home)


def _payments(n: int) -> str:
    return "1 Payment" if n == 1 else f"{n} Payments"


def _installed(stage: Stage) -> str:
    installations = stage.services.installations
    names = {team.id: team.name for team in (ACME, BETA)}
    return ", ".join(names.get(i, i) for i in installations.installed()) if installations else ""


def _play_workspaces(play: Player, stage: Stage, workdir: Path) -> None:
    slack, intuit, events = stage.slack, stage.intuit, stage.events
    _world(slack, intuit)
    play.channels = {team.admin.channel: team.channel_name for team in (ACME, BETA)}
    play.echo(
        click.style("zqbo demo --workspaces", bold=True) + " — one zqbo serves many Slack workspaces;"
        " Slack and Intuit are emulated on 127.0.0.1, the bot is the real one."
    )
    play.say(
        f"  Slack      {slack.url} (Add to Slack: {slack.url}/oauth/v2/authorize)\n"
        f"  Slack API  {slack.api_url}\n  Intuit     {intuit.discovery_url}\n"
        f"  QBO API    {intuit.api_url}\n  zqbo       {stage.url} (install link: {stage.url}/slack/install)\n"
        f"  Store      SQLite in {workdir}\n"
        "  No bot token: SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are set, so each workspace installs zqbo"
        " with Add to Slack\n  and keeps its own channel, dedicated user and QuickBooks company."
    )
    ana, bea = ACME.admin, BETA.admin

    play.step(f"{ACME.name}'s admin, {ana.name.title()}, clicks Add to Slack")
    _install(play, stage, ACME)

    play.step(f"{ana.name.title()} presses Set up zqbo and saves the Settings form")
    _settings_form(play, stage, ACME)

    play.step(f"{BETA.name} installs the same zqbo and sets it up with /zqbo config")
    _install(play, stage, BETA)
    _command(play, slack, events, f"config channel <#{bea.channel}|{BETA.channel_name}>", bea)
    _command(play, slack, events, f"config email {BETA.dedicated}", bea)

    play.step("Each connects its own QuickBooks company, signed in as its dedicated user")
    for team in (ACME, BETA):
        _connect(play, stage, team, team.dedicated, team.realm)
        # QBO user ids differ between companies: each pins its own dedicated user's
        _command(play, slack, events, f"config dedicated-user {team.dedicated_id}", team.admin)

    play.step("/zqbo status in each workspace shows its own company, and only it")
    for team in (ACME, BETA):
        _status(play, slack, events, team.admin)

    play.step("The integration posts under a person in both companies; /zqbo check in each")
    for team in (ACME, BETA):
        for n, doc in enumerate(team.docs):
            intuit.add_entry(
                team.realm,
                "Payment",
                by=team.person,
                amount=120.5 + 100 * n,
                doc_number=doc,
                private_note=MARK,
            )
        play.say(
            f"  QBO (emulated): {team.company} — {_payments(len(team.docs))} marked “{MARK}”,"
            f" LastModifiedByRef = user {team.person_id} ({team.person})"
        )
    shown: dict[str, str] = {}
    for team in (ACME, BETA):
        _check(play, slack, events, team.admin)
    for team in (ACME, BETA):
        _show_channel(play, slack, shown, team.admin.channel, f"{team.channel} in {team.name}")

    play.step(f"{BETA.name} tries to connect {ACME.name}'s company")
    tokens = intuit.count("token")
    page = _connect(play, stage, BETA, ACME.dedicated, ACME.realm)
    play.say(f"  “{_sentence(page.text)}”")
    if page.status_code != 409:
        raise RuntimeError(f"connecting another workspace's company answered {page.status_code}")
    refusal = _wait(
        "the refusal DM", lambda: [m for m in _dms(slack, bea) if "another Slack workspace" in m["text"]]
    )
    play.slack(f"zqbo → DM to {bea.name} ({BETA.name})", refusal[-1])
    if intuit.count("token") != tokens:
        raise RuntimeError("Intuit was asked to exchange the code of a company linked elsewhere")
    play.say(f"  Intuit was never asked to exchange the code: {ACME.name}'s connection is untouched.")

    play.step(f"{BETA.name} removes zqbo; {ACME.name} carries on")
    play.say(
        f"  Slack (emulated) revokes zqbo's bot token in {BETA.name} and sends tokens_revoked and"
        " app_uninstalled"
    )
    for answer in slack.uninstall(events, BETA.id):
        answer.raise_for_status()
    store, installations = stage.services.store, stage.services.installations
    if installations is None:
        raise RuntimeError("zqbo is not in multi-workspace mode")
    _wait(
        f"forgetting {BETA.name}",
        lambda: not store.realm_ids(BETA.id) and BETA.id not in installations.installed(),
    )
    revoked = intuit.current_refresh_token(BETA.realm) is None
    play.say(
        f"  zqbo deleted everything of {BETA.name}: its installation, company, settings and alerts"
        + ("; its QuickBooks grant is revoked at Intuit" if revoked else "")
        + f".\n  Workspaces with zqbo installed now: {_installed(stage)}"
    )
    _status(play, slack, events, ana)

    play.step("Done")
    play.echo(
        "  Next: README “Host zqbo for many workspaces” — the distributed Slack app"
        " (`zqbo manifest --distributed`), PostgreSQL, Redis and `zqbo serve`."
    )
