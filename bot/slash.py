"""What each `/zqbo` subcommand and button does, as functions from services and plain input to a
`blocks.Message`. The Bolt listeners in handlers/ only ack, route and send what these return."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError

from bot import blocks, portfolio
from bot.alerts import CHANNEL_PROBLEM_KIND, KINDS, MUTE_NAMES, problem_key
from bot.audit.markers import parse_markers
from bot.audit.scan import AuditResult
from bot.blocks import Message, Mrkdwn, code, md, mention
from bot.blocks.message import cut
from bot.blocks.status import MAX_COMPANIES_ON_CARD
from bot.commands import (
    MUTE_DEFAULT,
    Command,
    CommandError,
    looks_like_duration,
    parse_duration,
    parse_integration,
    parse_qbo_user_id,
)
from bot.connect import REALM_ID
from bot.integrations import MAX_NOTES, Integration, IntegrationError, check_name
from bot.models import CheckResult, ConnectionStatus
from bot.qbo.errors import NotConnected, QBOError, TransientError
from bot.reconnect import Checklist, ReconnectError
from bot.reports.report import DEFAULT_PERIOD, Period, build_report, looks_like_period, parse_period
from bot.services import Services
from bot.status import State, StatusReport, build_status
from bot.tenancy.workspaces import COMPANY_KIND, USER, NotInstalled, SettingError, parse_setting

log = logging.getLogger(__name__)

THINKING = ":thinking_face:"


class _RecentCards:
    """The last few rendered status cards (per process), by what they were rendered from."""

    def __init__(self, size: int = 16) -> None:
        self._cards: OrderedDict[tuple, Message] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Message | None:
        with self._lock:
            return self._cards.get(key)

    def put(self, key: tuple, card: Message) -> None:
        with self._lock:
            self._cards[key] = card
            while len(self._cards) > self._size:
                self._cards.popitem(last=False)


_CARDS = _RecentCards(size=1024)  # one per workspace with many; each a few KB


def _refusal(text: str) -> Message:
    return blocks.notice(text, THINKING)


# --- status ---------------------------------------------------------------------------------


def workspace_report(
    services: Services, scope: str, realm: str | None = None, limit: int | None = None
) -> StatusReport:
    """The status report of one workspace's companies, with that workspace's settings."""
    workspaces = services.workspaces
    config = workspaces.get(scope) if workspaces.multi else services.settings
    extra = {"limit": limit} if limit else {}
    return build_status(
        services.store, config, services.clock, realm=realm, team=workspaces.team_filter(scope), **extra
    )


def status_ack(
    services: Services,
    can_follow_up: bool,
    realm: str = "",
    scope: str = "",
    team_id: str = "",
    app_id: str = "",
) -> tuple[Message, list[str]]:
    """The card from stored state (the workspace's companies, problems first; or the one named),
    and the companies on it that a live probe should ask after the ack. With more companies than
    a card reads well (SUMMARY_OVER), a short summary and the way to App Home's portfolio."""
    if realm:
        if not REALM_ID.fullmatch(realm):
            return _refusal("A realm id is the company's number in QuickBooks (digits only)."), []
        mine = not services.workspaces.multi or services.workspaces.owns(scope, realm)
        report = workspace_report(services, scope, realm=realm) if mine else None
        if report is None or not report.companies:  # another workspace's: as if nobody had it
            return _refusal(f"No connected company has realm id `{realm}`."), []
    else:
        report = workspace_report(services, scope)
        if report.total > SUMMARY_OVER:
            return blocks.status_summary(report, home_link(team_id, app_id), SUMMARY_PROBLEMS), []
    shown = report.companies[:MAX_COMPANIES_ON_CARD]
    live = [c.realm_id for c in shown if c.state in (State.CONNECTED, State.EXPIRING)]
    fresh = {realm: services.prober.fresh(realm) for realm in live}
    probes = {realm: result for realm, result in fresh.items() if result is not None}
    stale = [realm for realm in live if realm not in probes] if can_follow_up else []
    # A burst of acks within one second, from unchanged store data and the same probe answers,
    # shares one rendering (the card is a pure function of them; its relative times are whole
    # seconds at most).
    key = (
        report.marker,
        scope,
        realm,
        int(report.now.timestamp()),
        tuple(sorted((r, id(p)) for r, p in probes.items())),
        bool(stale),
        report.scheduler_mode,  # (one process, one mode: it tells tests' bots apart)
    )
    card = _CARDS.get(key)
    if card is None or not report.marker:
        card = blocks.status_card(report, probes, probing=bool(stale))
        _CARDS.put(key, card)
    return card, stale


SUMMARY_OVER = 10  # more companies than this: `/zqbo status` sums up and links to App Home
SUMMARY_PROBLEMS = 5  # at most the companies the summary names (problems only)
_APP_ID = re.compile(r"A[A-Z0-9]{2,20}")
_TEAM = re.compile(r"[TE][A-Z0-9]{2,20}")


def home_link(team_id: str, app_id: str) -> str:
    """Slack's deep link to zqbo's App Home tab (the app id comes with every slash command);
    "" when the ids do not look like Slack's."""
    if not _APP_ID.fullmatch(app_id or "") or not _TEAM.fullmatch(team_id or ""):
        return ""
    return f"slack://app?team={team_id}&id={app_id}&tab=home"


def status_after_probe(services: Services, realms: list[str], scope: str = "") -> Message:
    """The card again once QBO answered for `realms` (probes are coalesced: one per company in
    flight, and a fresh answer is reused)."""
    probes: dict[str, CheckResult] = {realm: services.prober.probe(realm) for realm in realms}
    report = workspace_report(services, scope)  # a probe may change it
    return blocks.status_card(report, probes)


# --- App Home -------------------------------------------------------------------------------


def home(services: Services, scope: str, filter_name: str = "all", number: int = 0) -> dict[str, Any]:
    """App Home: the setup state (many workspaces), then the status card of the one company, or
    the portfolio of several, a page at a time."""
    from bot.blocks.portfolio import portfolio_home

    workspaces = services.workspaces
    config = workspaces.get(scope) if workspaces.multi else services.settings
    team = workspaces.team_filter(scope)
    if len(services.store.ranks(team)) > 1:
        listing = portfolio.page(services.store, config, services.clock, team, filter_name, number)
        setup = blocks.setup_blocks(workspaces.get(scope), listing.total) if workspaces.multi else None
        return portfolio_home(listing, setup)
    report = workspace_report(services, scope, limit=blocks.status.MAX_COMPANIES_ON_HOME)
    setup = blocks.setup_blocks(workspaces.get(scope), report.total) if workspaces.multi else None
    return blocks.home(report, setup)


def home_page_value(value: str) -> tuple[str, int]:
    """A pager button's value, "<filter>:<page>"; anything else is the first page of all."""
    name, _, number = value.partition(":")
    return (name, int(number)) if number.isdigit() and len(number) < 7 else ("all", 0)


# --- connecting -----------------------------------------------------------------------------


def connect_link(services: Services, user_id: str, team_id: str, channel_id: str, scope: str = "") -> Message:
    url, state = services.oauth.start(user_id, team_id, scope=scope, channel_id=channel_id)
    return blocks.connect_link(url, state.expires_at, services.workspaces.get(scope).dedicated_email)


def start_reconnect(services: Services, user_id: str, team_id: str, realm: str, scope: str = "") -> Message:
    """Open the checklist DM; the answer says where it is."""
    return _checklist_opened(
        services, user_id, team_id, lambda: services.reconnect.start(user_id, team_id, realm, scope=scope)
    )


def _checklist_opened(
    services: Services, user_id: str, team_id: str, start: Callable[[], Checklist]
) -> Message:
    """Start a guided checklist in the person's DM; say where it is, or why it could not start."""
    try:
        checklist = start()
    except ReconnectError as exc:
        return _refusal(str(exc))
    except SlackApiError as exc:
        error = str(exc.response.get("error", "unknown"))
        log.error("could not open the reconnect DM for %s: %s", user_id, error)
        return blocks.notice(
            md("I could not send you a DM (Slack said {}). Check that zqbo may message you.", code(error)),
            ":x:",
        )
    where = blocks.channel_link(checklist.team_id or team_id, checklist.channel, "your DMs with zqbo")
    return blocks.notice(
        md("Your guided reconnect is in {}: one checklist, updated as you go.", where), ":white_check_mark:"
    )


def reconnect_command(
    services: Services, user_id: str, team_id: str, args: tuple[str, ...], scope: str = ""
) -> Message:
    """`/zqbo reconnect [realm]` (zqbo's own connection) or `/zqbo reconnect <integration> [realm]`."""
    words = list(args)
    if len(words) <= 1 and (not words or REALM_ID.fullmatch(words[0])):
        return start_reconnect(services, user_id, team_id, words[0] if words else "", scope)
    realm = words.pop() if REALM_ID.fullmatch(words[-1]) else ""
    name = " ".join(words).strip('"“”')
    return start_integration_reconnect(services, user_id, team_id, realm, name, scope)


def start_integration_reconnect(
    services: Services, user_id: str, team_id: str, realm: str, name: str, scope: str = ""
) -> Message:
    """The guided checklist of one of a company's integrations, in a DM."""
    return _checklist_opened(
        services,
        user_id,
        team_id,
        lambda: services.reconnect.start_integration(user_id, team_id, realm, name, scope),
    )


def _realm(services: Services, args: tuple[str, ...], scope: str) -> str:
    realm, conn = services.reconnect.resolve_realm(args[0] if args else "", scope)
    if conn is None:
        raise ReconnectError("No QuickBooks company is connected yet: `/zqbo reconnect` sets one up.")
    return realm


def owned(services: Services, scope: str, realm: str) -> bool:
    """Whether a company named by a button or a modal (a value anyone could have copied) is one of
    the workspace's."""
    return _mine(services, scope, realm)


def _mine(services: Services, scope: str, realm: str) -> bool:
    """Whether a company named by a button (a value anyone could have copied) is the workspace's."""
    if not realm or services.store.get_connection(realm) is None:
        return False
    return not services.workspaces.multi or services.workspaces.owns(scope, realm)


def disconnect_prompt(services: Services, args: tuple[str, ...], scope: str = "") -> Message:
    try:
        realm, conn = services.reconnect.resolve_realm(args[0] if args else "", scope)
    except ReconnectError as exc:
        return _refusal(str(exc))
    if conn is None or conn.status is not ConnectionStatus.CONNECTED:
        state = conn.status.value if conn else "not connected"
        return blocks.notice(f"Nothing to disconnect: QuickBooks is {state}.")
    return blocks.disconnect_prompt(conn)


def disconnect(services: Services, realm: str, user_id: str, scope: str = "") -> Message:
    conn = services.connections.get(realm) if _mine(services, scope, realm) else None
    if conn is None:
        return blocks.notice("Nothing to disconnect: not connected.")
    try:
        conn = services.connections.disconnect(realm, reason="disconnected from Slack")
    except NotConnected:
        return blocks.notice("Nothing to disconnect: not connected.")
    except TransientError as exc:
        return blocks.disconnect_failed(conn, f"Intuit did not answer ({exc}).")
    return blocks.disconnect_done(conn, user_id)


# --- the audit ------------------------------------------------------------------------------


# More companies than this: `/zqbo check` hands a round to the job engine and shows its progress.
DIRECT_CHECK_MAX = 3
# A response_url takes 5 posts within 30 minutes: at most 3 progress updates, then the final card,
# and one left for an error card; the final one comes before the URL expires.
PROGRESS_POSTS = 3
PROGRESS_EVERY_SECONDS = 2.0
SLACK_ROUND_SECONDS = 25 * 60


def run_check(
    services: Services,
    args: tuple[str, ...],
    scope: str = "",
    update: Callable[[Message], None] | None = None,
) -> Message:
    """The entry audit now. A few companies are audited here, one after the other; more are a
    round on the job engine, whose progress `update` shows in the command's message."""
    try:
        realms = [_realm(services, args, scope)] if args else services.workspaces.realms(scope)
    except ReconnectError as exc:
        return _refusal(str(exc))
    if not realms:
        return blocks.notice("No QuickBooks company is connected yet.")
    if len(realms) <= DIRECT_CHECK_MAX or update is None:
        return blocks.check_results(
            [services.auditor.run(realm, trigger="slack", wait=30) for realm in realms]
        )
    return _check_round(services, realms, update)


def _check_round(services: Services, realms: list[str], update: Callable[[Message], None]) -> Message:
    from bot.jobs.engine import new_round_id

    names = {r: c.company_name for r in realms if (c := services.store.get_connection(r)) is not None}
    paced = _Paced(update, PROGRESS_POSTS, PROGRESS_EVERY_SECONDS)

    def progress(done: list[dict]) -> None:
        paced(lambda: blocks.check_progress(_audit_results(done), len(realms), names))

    done = services.engine.run_round(
        "audit", realms, new_round_id("check"), progress=progress, timeout=SLACK_ROUND_SECONDS
    )
    results = sorted(_audit_results(done), key=lambda r: (r.ok, names.get(r.realm_id, "")))
    return blocks.check_results(results, names=names, total=len(realms))


def _audit_results(done: list[dict]) -> list[AuditResult]:
    return [
        AuditResult(
            str(d.get("realm_id", "")),
            bool(d.get("ok")),
            str(d.get("summary", "")),
            qbo_calls=int(d.get("qbo_calls") or 0),
        )
        for d in done
    ]


class _Paced:
    """Shows progress at most `most` times, `every` seconds apart (Slack counts response_url posts)."""

    def __init__(self, post: Callable[[Message], None], most: int, every: float) -> None:
        self._post, self._most, self._every = post, most, every
        self._posts, self._last = 0, float("-inf")

    def __call__(self, render: Callable[[], Message]) -> None:
        now = time.monotonic()
        if self._posts >= self._most or now - self._last < self._every:
            return
        self._posts, self._last = self._posts + 1, now
        try:
            self._post(render())
        except Exception:  # a lost progress update is no reason to lose the round
            log.exception("could not show the check's progress")


def list_users(services: Services, args: tuple[str, ...], scope: str = "") -> Message:
    try:
        realm = _realm(services, args, scope)
    except ReconnectError as exc:
        return _refusal(str(exc))
    try:
        stats = services.auditor.users(realm)
    except QBOError as exc:
        return blocks.notice(f"QuickBooks did not answer: {exc}", ":x:")
    return blocks.users_table(stats, services.auditor.integrations.of(realm))


def alerts(services: Services, scope: str = "") -> Message:
    mine = scope if services.workspaces.multi else None
    return blocks.alerts_list(
        services.alerts.open_alerts(scope=mine),
        services.alerts.mutes(mine),
        services.alerts.channel_problem(scope),
    )


def _mute_usage() -> Message:
    kinds = ", ".join(f"`{k}`" for k in MUTE_NAMES)
    return _refusal(
        "Usage: `/zqbo mute <kind> [duration] [realm]` (duration: hours, or 90m / 12h / 7d; "
        f"default 24h), `/zqbo unmute <kind> [realm]`. Kinds: {kinds}."
    )


def mute(services: Services, name: str, args: tuple[str, ...], user_id: str, scope: str = "") -> Message:
    if not args or args[0].lower() not in MUTE_NAMES:
        return _mute_usage()
    kind_name, kind = args[0].lower(), MUTE_NAMES[args[0].lower()]
    rest = list(args[1:])
    duration = MUTE_DEFAULT
    try:
        if name == "mute" and rest:
            connected = set(services.workspaces.realms(scope))
            # `mute entries 12` is hours; `mute entries <realm>` a company; `mute entries 12 <realm>` both
            if len(rest) >= 2 or (rest[0] not in connected and looks_like_duration(rest[0])):
                duration = parse_duration(rest.pop(0))
        if len(rest) > 1:
            return _mute_usage()
        realm = _realm(services, tuple(rest), scope)
    except (CommandError, ReconnectError) as exc:
        return _refusal(str(exc))
    if name == "unmute":
        ended = services.alerts.unmute(kind, realm)
        return blocks.notice(f"`{kind_name}` alerts are {'unmuted' if ended else 'not muted'}.")
    until = services.alerts.mute(kind, realm, duration.total_seconds() / 3600, user_id)
    return blocks.notice(
        md("{} alerts muted until {} by {}.", code(kind_name), blocks.when(until), mention(user_id)),
        ":zipper_mouth_face:",
    )


def mute_button(services: Services, value: str, user_id: str, scope: str = "") -> tuple[Message, bool]:
    """The Mute 24h button on an alert: its value names a known kind and one of the workspace's
    companies, or nothing is stored (a tampered, copied or stale button). True when the mute is
    to be announced."""
    kind, _, realm = value.partition("|")
    if kind not in KINDS or not _mine(services, scope, realm):
        return _refusal("That button no longer matches a company zqbo watches; nothing was muted."), False
    until = services.alerts.mute(kind, realm, MUTE_DEFAULT.total_seconds() / 3600, user_id)
    message = blocks.notice(
        md(
            "{} muted *{}* alerts for 24 h (until {}).",
            mention(user_id),
            blocks.ALERT_TITLES.get(kind, kind),
            blocks.when(until),
        ),
        ":zipper_mouth_face:",
    )
    return message, True


def confirm_dedicated(services: Services, realm: str, user_id: str, scope: str = "") -> Message:
    doc = services.auditor.confirm_dedicated(realm, user_id) if _mine(services, scope, realm) else None
    if not doc:
        return blocks.notice("There is no learned id to confirm any more.")
    return blocks.notice(md("Dedicated QBO user id {} confirmed by {}.", code(doc["id"]), mention(user_id)))


# --- settings -------------------------------------------------------------------------------

# `/zqbo config <word> <value>` -> the workspace setting it changes
CONFIG_WORDS = {
    "channel": "alert_channel",
    "email": "dedicated_email",
    "admins": "admins",
    "interval": "check_interval",
    "markers": "markers",
}
ENV_OF = {
    "alert_channel": "ZQBO_ALERT_CHANNEL",
    "dedicated_email": "ZQBO_DEDICATED_EMAIL",
    "admins": "ZQBO_ADMINS",
    "check_interval": "ZQBO_CHECK_INTERVAL",
}
CONFIG_USAGE = (
    "Usage: `/zqbo config channel #channel`, `/zqbo config email <address>`, "
    "`/zqbo config admins @a @b`, `/zqbo config interval 15m`, `/zqbo config markers <rules>` or "
    "`/zqbo config dedicated-user <id> [realm]`."
)


def configure(services: Services, raw: str, user_id: str, scope: str = "") -> Message:
    parts = raw.split(None, 2)
    what = parts[1].lower() if len(parts) > 1 else ""
    rest = parts[2].strip() if len(parts) > 2 else ""
    workspaces = services.workspaces
    if what in COMPANY_WORDS and rest:
        try:
            found = company_setting(services, what, rest, scope)
        except (SettingError, CommandError) as exc:
            return blocks.notice(str(exc), ":x:")
        if found is not None:
            realm, name, value = found
            return _save_company(services, realm, name, value, user_id)
    if what in CONFIG_WORDS and rest:
        name = CONFIG_WORDS[what]
        if not workspaces.multi and name in ENV_OF:  # one workspace: the environment decides
            return blocks.notice(
                md("This zqbo is set up by its environment: change {} where it runs.", code(ENV_OF[name])),
                ":thinking_face:",
            )
        try:
            value = parse_setting(name, rest)
        except SettingError as exc:
            return blocks.notice(str(exc), ":x:")
        try:
            workspace = workspaces.update(scope, user_id, **{name: value})
        except NotInstalled:
            return blocks.notice("zqbo was just removed from this workspace: nothing was saved.", ":x:")
        if name == "alert_channel":
            channel_chosen(services, scope)
        return blocks.setting_saved(name, workspace, parse_markers(workspace.markers))
    if what == "dedicated-user" and rest:
        words = rest.split()
        try:
            user = parse_qbo_user_id(words[0])
            if len(words) > 2:
                raise CommandError("Usage: `/zqbo config dedicated-user <id> [realm]`.")
            realm = _realm(services, tuple(words[1:]), scope)
        except (CommandError, ReconnectError) as exc:
            return blocks.notice(str(exc), ":x:")
        services.auditor.pin_dedicated(realm, user, user_id)
        return blocks.notice(f"Dedicated QBO user id for `{realm}` set to `{user}`.", ":white_check_mark:")
    if what:
        return _refusal(CONFIG_USAGE if workspaces.multi else USAGE_ONE_WORKSPACE)
    workspace = workspaces.get(scope, fresh=True)
    return blocks.config_summary(
        parse_markers(workspace.markers), services.settings, workspace, workspaces.multi
    )


USAGE_ONE_WORKSPACE = (
    "Usage: `/zqbo config markers <rules>`, `/zqbo config dedicated-user <id> [realm]`, or for one "
    "company `/zqbo config channel #channel <company>`, `/zqbo config admins @a @b <company>`, "
    "`/zqbo config name <realm> <display name>` (`reset` instead of the value: back to the default)."
)

# --- one company's settings: `/zqbo config channel|admins|name … <company>` ------------------------

COMPANY_WORDS = {"channel": "alert_channel", "admins": "admins", "name": "display_name"}
RESET = "reset"


def find_company(services: Services, text: str, scope: str) -> str | None:
    """The workspace's company `text` names: its realm id, its display name or its QuickBooks
    name (case and spacing aside); None when none of the workspace's companies is called that.
    Another workspace's company is answered exactly like one nobody connected."""
    wanted = " ".join(text.split()).casefold()
    if not wanted:
        return None
    workspaces = services.workspaces
    realms = set(workspaces.realms(scope))
    if text.strip() in realms:
        return text.strip()

    def same(name: object) -> bool:
        return isinstance(name, str) and " ".join(name.split()).casefold() == wanted

    # a fixed number of store reads whatever the number of companies: their chosen names, then
    # QuickBooks' names
    for realm, doc in sorted(services.store.list_docs(COMPANY_KIND).items()):
        if realm in realms and same(doc.get("display_name")):
            return realm
    for conn in services.store.list_connections(workspaces.team_filter(scope)):
        if same(conn.company_name):
            return conn.realm_id
    return None


def company_setting(services: Services, what: str, rest: str, scope: str) -> tuple[str, str, Any] | None:
    """(realm, setting, value) when `config <what> <rest>` names one of the workspace's companies;
    None when it names none (a workspace setting: `config channel #x`). A company named but a
    value zqbo will not keep raises SettingError / CommandError with what to type."""
    name = COMPANY_WORDS[what]
    words = rest.split()
    if name == "display_name":  # `name <company> <display name>` (or the display name first)
        realm = find_company(services, words[0], scope)
        value_text = rest.split(None, 1)[1] if realm and len(words) > 1 else ""
        if realm is None and len(words) > 1 and (realm := find_company(services, words[-1], scope)):
            value_text = rest.rsplit(None, 1)[0]
        if realm is None:
            mine = services.workspaces.realms(scope)
            if len(mine) != 1:
                raise CommandError("Say which company: `/zqbo config name <realm> <display name>`.")
            realm, value_text = mine[0], rest
        if not value_text:
            raise CommandError("Give the display name: `/zqbo config name <realm> <display name>`.")
        if value_text.lower() == RESET:
            return realm, name, ""
        return realm, name, parse_setting(name, value_text)
    if name == "alert_channel":  # `channel #channel <company>`
        value_text, target = words[0], " ".join(words[1:])
    else:  # `admins @a @b <company>`: the mentions first, the company after them
        count = 0
        while count < len(words) and (USER.fullmatch(words[count]) or words[count].startswith("@")):
            count += 1
        value_text, target = " ".join(words[:count]), " ".join(words[count:])
        if not count and words and words[0].lower() == RESET:
            value_text, target = RESET, " ".join(words[1:])
    if not target:
        return None
    realm = find_company(services, target, scope)
    if realm is None:
        raise CommandError(
            f"No company of this workspace is called `{cut(target, 80)}` (give its realm id: `/zqbo status`)."
        )
    if value_text.lower() == RESET:
        return realm, name, ""
    return realm, name, parse_setting(name, value_text)


def _save_company(services: Services, realm: str, name: str, value: Any, user_id: str) -> Message:
    workspaces = services.workspaces
    before = workspaces.company(realm).alert_channel
    try:
        company = workspaces.update_company(realm, user_id, **{name: value})
    except NotInstalled:
        return blocks.notice("zqbo was just removed from this workspace: nothing was saved.", ":x:")
    if name == "alert_channel" and company.alert_channel != before:
        company_channel_chosen(services, realm)
    return blocks.company_setting_saved(name, company)


def company_channel_chosen(services: Services, realm: str) -> None:
    """A company's alert channel changed: its alerts that waited for a channel go out now, in the
    background, under its audit lock (as a check would post them)."""

    def post_waiting() -> None:
        ttl = max(3.0, services.settings.queue_heartbeat_seconds)
        try:
            with services.store.lock(f"job:audit:{realm}", ttl=ttl, wait=30, renew=True) as got:
                if got:
                    services.alerts.flush(realm)
        except Exception:
            log.exception("could not post the alerts that waited for a channel (%s)", realm)

    services.background.submit(post_waiting)


# What a company's own admins may run for it; connecting and the guided reconnect end in an Intuit
# grant stored for the workspace, so they stay with the workspace's admins.
COMPANY_ADMIN_MAY = frozenset({"check", "disconnect", "mute", "unmute", "config"})


def may_run(services: Services, cmd: Command, user_id: str, scope: str) -> bool:
    """An admin-only subcommand: a workspace admin may run it; a company's own admin may run it
    for that company."""
    if services.admins.is_admin(user_id, scope):
        return True
    if cmd.name in COMPANY_ADMIN_MAY:
        realm = named_realm(services, cmd.name, cmd.args, cmd.raw, scope)
        return bool(realm) and services.admins.is_admin_for(user_id, scope, realm)
    return False


def named_realm(services: Services, name: str, args: tuple[str, ...], raw: str, scope: str) -> str:
    """The one company an admin-only command acts on, for the company-admin check ("" when it acts
    on the workspace as a whole, or on no company yet): a realm id among its words, a company
    named in `config channel|admins|name`, or the only company."""
    if name == "connect":
        return ""
    if name == "config":
        parts = raw.split(None, 2)
        what = parts[1].lower() if len(parts) > 1 else ""
        if what in COMPANY_WORDS and len(parts) > 2:
            try:
                found = company_setting(services, what, parts[2], scope)
            except (SettingError, CommandError):
                return ""
            return found[0] if found else ""
        if what == "dedicated-user" and len(parts) > 2:
            args = tuple(parts[2].split()[1:])
        else:
            return ""
    mine = services.workspaces.realms(scope)
    named = [a for a in args if a in mine]
    if named:
        return named[-1]
    return mine[0] if len(mine) == 1 else ""


def channel_chosen(services: Services, scope: str) -> None:
    """A workspace chose (or changed) its alert channel: the note that alerts cannot be posted is
    out of date, and the alerts that waited for a channel go out now, in the background, each
    company under its audit lock (as a check would post them)."""
    services.store.delete_doc(CHANNEL_PROBLEM_KIND, problem_key(scope))

    def post_waiting() -> None:
        ttl = max(3.0, services.settings.queue_heartbeat_seconds)
        for realm in services.workspaces.realms(scope):
            try:
                with services.store.lock(f"job:audit:{realm}", ttl=ttl, wait=30, renew=True) as got:
                    if got:
                        services.alerts.flush(realm)
            except Exception:
                log.exception("could not post the alerts that waited for a channel (%s)", realm)

    services.background.submit(post_waiting)


# --- reports --------------------------------------------------------------------------------

_CHANNEL_ARG = re.compile(r"<#([CG][A-Z0-9]{2,20})(?:\|[^>]*)?>")


def dedicated_writers(services: Services, realm: str) -> dict[str, str]:
    """QBO user id -> the integration it is the dedicated user of (the report's writer labels)."""
    return {
        i.dedicated_user_id: i.name for i in services.auditor.integrations.of(realm) if i.dedicated_user_id
    }


def _company(services: Services, words: list[str], scope: str) -> tuple[str, str]:
    """(realm, company name) of the workspace's company named by realm id or name; the only one
    when none is named. Another workspace's company is as unknown as one nobody connected."""
    conns = {c.realm_id: c for c in services.store.list_connections(services.workspaces.team_filter(scope))}
    if not conns:
        raise CommandError("No QuickBooks company is connected yet: `/zqbo connect` sets one up.")
    typed = " ".join(words).strip()
    if not typed:
        if len(conns) == 1:
            conn = next(iter(conns.values()))
            return conn.realm_id, conn.company_name
        raise CommandError(
            f"zqbo watches {len(conns):,} companies here: name one, e.g. `/zqbo report <realm id> 30d`."
        )
    if typed in conns:
        return typed, conns[typed].company_name
    named = [c for c in conns.values() if c.company_name.casefold() == typed.casefold()]
    named = named or [c for c in conns.values() if c.company_name.casefold().startswith(typed.casefold())]
    if len(named) == 1:
        return named[0].realm_id, named[0].company_name
    shown = cut(typed, 80)
    if named:
        raise CommandError(f"More than one company starts with “{shown}”: give its realm id.")
    raise CommandError(f"No company here is named “{shown}” or has that realm id.")


def report(
    services: Services, args: tuple[str, ...], user_id: str, scope: str = "", channel_hint: str = ""
) -> Message:
    """`/zqbo report [company] [period] [#channel]`: the summary here, the chart and the CSV in the
    person's DM (or the channel named, if zqbo is in it)."""
    words = list(args)
    target = ""
    for word in list(words):
        match = _CHANNEL_ARG.fullmatch(word)
        if match:
            target = match.group(1)
            words.remove(word)
    try:
        period_word = words.pop() if words and looks_like_period(words[-1]) else ""
        today = services.clock.now().date()
        period = parse_period(period_word, today)
        realm, company = _company(services, words, scope)
    except CommandError as exc:
        return _refusal(str(exc))
    return deliver_report(services, realm, company, period, user_id, scope, target)


def report_button(services: Services, realm: str, user_id: str, scope: str = "") -> Message:
    """App Home's Report button (value: a realm id): the last 30 days, into the presser's DM."""
    if not _mine(services, scope, realm):
        return _refusal("That button no longer matches a company zqbo watches; no report was made.")
    conn = services.store.get_connection(realm)
    period = parse_period(DEFAULT_PERIOD, services.clock.now().date())
    return deliver_report(services, realm, conn.company_name if conn else realm, period, user_id, scope, "")


def deliver_report(
    services: Services, realm: str, company: str, period: Period, user_id: str, scope: str, target: str
) -> Message:
    built = build_report(
        services.store,
        realm,
        company,
        period,
        dedicated_writers(services, realm),
        services.settings.qbo_environment,
    )
    client = services.workspaces.client(scope)
    try:
        channel = target or client.conversations_open(users=user_id)["channel"]["id"]
        client.files_upload_v2(
            channel=channel,
            file_uploads=[
                {
                    "file": built.png,
                    "filename": f"{built.slug}.png",
                    "title": f"{cut(company, 80)} — entries",
                },
                {"file": built.csv, "filename": f"{built.slug}-flagged.csv", "title": "Flagged entries"},
            ],
            initial_comment=blocks.report_text(built),
        )
    except SlackApiError as exc:
        error = str(exc.response.get("error", "unknown"))
        log.warning("report for %s not uploaded: %s", realm, error)
        if target and error in ("not_in_channel", "channel_not_found"):
            return _refusal(
                md(
                    "zqbo is not in <#{}>: invite it there, or leave the channel out to get it in your DM.",
                    target,
                )
            )
        return blocks.notice(md("Slack did not take the report's files ({}).", code(error)), ":x:")
    where = md("<#{}>", target) if target else Mrkdwn("your DMs with zqbo")
    return blocks.report_posted(built, where)


# --- the weekly digest ----------------------------------------------------------------------

DIGEST_USAGE = (
    "Usage: `/zqbo digest <day> <hour>` (e.g. `/zqbo digest monday 9`: every Monday at 09:00 in your "
    "time zone), `/zqbo digest off`, `/zqbo digest now` (a preview in your DM), or `/zqbo digest` "
    "to see when it goes out."
)


def digest(services: Services, args: tuple[str, ...], user_id: str, scope: str = "") -> Message:
    from bot.reports import digest as weekly

    words = [w.lower() for w in args]
    if words == ["now"]:
        client = services.workspaces.client(scope)
        dm = client.conversations_open(users=user_id)["channel"]["id"]
        sent = weekly.post_digest(services, scope, channel=dm)
        return blocks.notice(
            f"The digest of {len(sent.lines):,} companies is in your DMs with zqbo (a preview).",
            ":calendar:",
        )
    if words == ["off"]:
        was = weekly.turn_off(services, scope)
        return blocks.notice("The weekly digest is off." if was else "The weekly digest was not on.")
    if not words:
        doc = weekly.settings(services, scope)
        if doc is None:
            return blocks.notice("The weekly digest is off. " + DIGEST_USAGE)
        return _digest_on(services, doc, scope)
    try:
        weekday, hour = weekly.parse_when(words)
    except ValueError:
        return _refusal(DIGEST_USAGE)
    return _digest_on(services, weekly.turn_on(services, scope, user_id, weekday, hour), scope)


def _digest_on(services: Services, doc: dict, scope: str) -> Message:
    from bot.reports import digest as weekly

    channel = services.workspaces.get(scope).alert_channel
    due = weekly.next_due(int(doc["weekday"]), int(doc["hour"]), str(doc["tz"]), services.clock.now())
    where = md("<#{}>", channel) if channel else Mrkdwn("the alert channel, once one is chosen")
    return blocks.notice(
        md(
            "Weekly digest: every {} at {} ({}), in {}. Next: {}.",
            weekly.WEEKDAYS[int(doc["weekday"])].capitalize(),
            f"{int(doc['hour']):02d}:00",
            doc["tz"],
            where,
            blocks.when(due),
        ),
        ":calendar:",
    )


# --- integrations ---------------------------------------------------------------------------


def integration_command(services: Services, raw: str, user_id: str, scope: str = "") -> Message:
    """`/zqbo integration list|add|set|remove|rename …` (admins only): a company's integrations."""
    try:
        command = parse_integration(raw)
        realm = _realm(services, (command.realm,) if command.realm else (), scope)
        book = services.auditor.integrations
        if command.action == "list":
            return blocks.integrations_list(realm, book.of(realm))
        if command.action == "remove":
            gone = book.remove(realm, command.name)
            return blocks.notice(
                md(
                    "{} is no longer one of `{}`'s integrations: its entries now count as people's work.",
                    gone.name,
                    realm,
                ),
                ":white_check_mark:",
            )
        if command.action == "rename":
            renamed = book.rename(realm, command.name, command.new_name)
            return blocks.notice(md("Renamed to {}.", renamed.name), ":white_check_mark:")
        values = _integration_fields(command.fields)
        if command.action == "add":
            added = book.add(realm, Integration(name=check_name(command.name), **values), user_id)
            return blocks.integration_saved(realm, added, "added")
        changed = book.change(realm, command.name, user_id, **values)
        return blocks.integration_saved(realm, changed, "changed")
    except (CommandError, ReconnectError, IntegrationError, SettingError) as exc:
        return blocks.notice(str(exc), ":x:")


def _integration_fields(typed: dict[str, str]) -> dict[str, str]:
    """What a person typed, checked as each setting is (markers, email, QBO user id, notes)."""
    values: dict[str, str] = {}
    for key, text in typed.items():
        if key == "markers":
            values[key] = parse_setting("markers", text)
            if not parse_markers(text):
                raise CommandError('Give at least one rule, e.g. `markers "PrivateNote~Stripe"`.')
        elif key == "dedicated_email":
            values[key] = parse_setting("dedicated_email", text)
        elif key == "dedicated_user_id":
            values[key] = parse_qbo_user_id(text)
        elif key == "notes":
            if len(text) > MAX_NOTES:
                raise CommandError(f"Notes are at most {MAX_NOTES} characters.")
            values[key] = text
    return values
