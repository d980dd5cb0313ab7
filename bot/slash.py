"""What each `/zqbo` subcommand and button does, as functions from services and plain input to a
`blocks.Message`. The Bolt listeners in handlers/ only ack, route and send what these return."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from slack_sdk.errors import SlackApiError

from bot import blocks
from bot.alerts import CHANNEL_PROBLEM_KIND, KINDS, MUTE_NAMES, problem_key
from bot.audit.markers import parse_markers
from bot.audit.scan import AuditResult
from bot.blocks import Message, code, md, mention
from bot.blocks.status import MAX_COMPANIES_ON_CARD
from bot.commands import (
    MUTE_DEFAULT,
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
from bot.reconnect import ReconnectError
from bot.services import Services
from bot.status import State, StatusReport, build_status
from bot.tenancy.workspaces import NotInstalled, SettingError, parse_setting

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
    services: Services, can_follow_up: bool, realm: str = "", scope: str = ""
) -> tuple[Message, list[str]]:
    """The card from stored state (the workspace's companies, problems first; or the one named),
    and the companies on it that a live probe should ask after the ack."""
    if realm:
        if not REALM_ID.fullmatch(realm):
            return _refusal("A realm id is the company's number in QuickBooks (digits only)."), []
        mine = not services.workspaces.multi or services.workspaces.owns(scope, realm)
        report = workspace_report(services, scope, realm=realm) if mine else None
        if report is None or not report.companies:  # another workspace's: as if nobody had it
            return _refusal(f"No connected company has realm id `{realm}`."), []
    else:
        report = workspace_report(services, scope)
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
    )
    card = _CARDS.get(key)
    if card is None or not report.marker:
        card = blocks.status_card(report, probes, probing=bool(stale))
        _CARDS.put(key, card)
    return card, stale


def status_after_probe(services: Services, realms: list[str], scope: str = "") -> Message:
    """The card again once QBO answered for `realms` (probes are coalesced: one per company in
    flight, and a fresh answer is reused)."""
    probes: dict[str, CheckResult] = {realm: services.prober.probe(realm) for realm in realms}
    report = workspace_report(services, scope)  # a probe may change it
    return blocks.status_card(report, probes)


# --- connecting -----------------------------------------------------------------------------


def connect_link(services: Services, user_id: str, team_id: str, channel_id: str, scope: str = "") -> Message:
    url, state = services.oauth.start(user_id, team_id, scope=scope, channel_id=channel_id)
    return blocks.connect_link(url, state.expires_at, services.workspaces.get(scope).dedicated_email)


def start_reconnect(services: Services, user_id: str, team_id: str, realm: str, scope: str = "") -> Message:
    """Open the checklist DM; the answer says where it is."""
    try:
        checklist = services.reconnect.start(user_id, team_id, realm, scope=scope)
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
    try:
        checklist = services.reconnect.start_integration(user_id, team_id, realm, name, scope)
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


def _realm(services: Services, args: tuple[str, ...], scope: str) -> str:
    realm, conn = services.reconnect.resolve_realm(args[0] if args else "", scope)
    if conn is None:
        raise ReconnectError("No QuickBooks company is connected yet: `/zqbo reconnect` sets one up.")
    return realm


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


USAGE_ONE_WORKSPACE = "Usage: `/zqbo config markers <rules>` or `/zqbo config dedicated-user <id> [realm]`."


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
