"""`/zqbo` slash command: ack at once from stored state, slow work after the ack."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk.errors import SlackApiError

from bot import blocks, metrics
from bot.alerts import MUTE_NAMES
from bot.app import Services
from bot.audit.markers import MarkerError, parse_markers
from bot.commands import ADMIN_ONLY, parse
from bot.connect import new_error_id
from bot.models import ConnectionStatus
from bot.qbo.errors import QBOError
from bot.reconnect import ReconnectError
from bot.status import State, build_status

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    def zqbo_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        """Answer from stored state at once; what needs Intuit, QBO or a DM runs after."""
        cmd = parse(command.get("text"))
        metrics.SLACK_COMMANDS.labels(subcommand=cmd.name).inc()
        user_id = command.get("user_id", "")
        if cmd.name in ADMIN_ONLY and not services.admins.is_admin(user_id):
            ack(**blocks.not_allowed(ADMIN_ONLY[cmd.name], services.admins.who()).as_kwargs())
            return
        after: Callable[[], None] | None = None
        if cmd.name == "status":
            report = build_status(services.store, services.settings, services.clock)
            live = [c.realm_id for c in report.companies if c.state in (State.CONNECTED, State.EXPIRING)]
            fresh = {realm: services.prober.fresh(realm) for realm in live}
            probes = {realm: result for realm, result in fresh.items() if result is not None}
            stale = [realm for realm in live if realm not in probes]
            card = blocks.status_card(report, probes, probing=bool(stale))
            ack(response_type="ephemeral", **card.as_kwargs())
            if stale:
                after = lambda: refresh_status_card(services, respond)  # noqa: E731
        elif cmd.name == "connect":
            ack(response_type="ephemeral", **blocks.connect_preparing().as_kwargs())
            after = lambda: send_connect_link(  # noqa: E731
                services, respond, user_id, command.get("team_id", ""), command.get("channel_id", "")
            )
        elif cmd.name == "reconnect":
            ack(
                response_type="ephemeral",
                **blocks.notice("Opening a guided reconnect in your DMs…").as_kwargs(),
            )
            realm = cmd.args[0] if cmd.args else ""
            after = lambda: start_reconnect(  # noqa: E731
                services, respond, user_id, command.get("team_id", ""), realm
            )
        elif cmd.name == "disconnect":
            ack(response_type="ephemeral", **disconnect_prompt(services, cmd.args).as_kwargs())
        elif cmd.name == "check":
            ack(response_type="ephemeral", **blocks.notice("Checking QuickBooks now…", ":mag:").as_kwargs())
            after = lambda: run_check(services, respond, cmd.args)  # noqa: E731
        elif cmd.name == "users":
            ack(
                response_type="ephemeral",
                **blocks.notice("Reading 30 days of entries from QuickBooks…", ":mag:").as_kwargs(),
            )
            after = lambda: list_users(services, respond, cmd.args)  # noqa: E731
        elif cmd.name == "alerts":
            message = blocks.alerts_list(
                services.alerts.open_alerts(), services.alerts.mutes(), services.alerts.channel_problem()
            )
            ack(response_type="ephemeral", **message.as_kwargs())
        elif cmd.name in ("mute", "unmute"):
            ack(response_type="ephemeral", **mute(services, cmd.name, cmd.args, user_id).as_kwargs())
        elif cmd.name == "config":
            ack(response_type="ephemeral", **configure(services, cmd.raw, user_id).as_kwargs())
        elif cmd.name == "help":
            ack(response_type="ephemeral", **blocks.help_message().as_kwargs())
        else:
            ack(response_type="ephemeral", **blocks.help_message(unknown=cmd.raw).as_kwargs())
        if after is not None:
            services.after_ack.submit(_guarded, cmd.name, after, respond)

    app.command("/zqbo")(zqbo_command)


def disconnect_prompt(services: Services, args: tuple[str, ...]) -> blocks.Message:
    try:
        realm, conn = services.reconnect.resolve_realm(args[0] if args else "")
    except ReconnectError as exc:
        return blocks.notice(str(exc), ":thinking_face:")
    if conn is None or conn.status is not ConnectionStatus.CONNECTED:
        state = conn.status.value if conn else "not connected"
        return blocks.notice(f"Nothing to disconnect: QuickBooks is {state}.")
    return blocks.disconnect_prompt(conn)


def start_reconnect(
    services: Services, respond: Respond, user_id: str, team_id: str, realm: str, replace: bool = True
) -> None:
    """Open the checklist DM; answer where the command (or button) was, privately."""
    try:
        checklist = services.reconnect.start(user_id, team_id, realm)
    except ReconnectError as exc:
        respond(
            replace_original=True,
            response_type="ephemeral",
            **blocks.notice(str(exc), ":thinking_face:").as_kwargs(),
        )
        return
    except SlackApiError as exc:
        error = exc.response.get("error", "unknown")
        log.error("could not open the reconnect DM for %s: %s", user_id, error)
        text = f"I could not send you a DM (Slack said `{error}`). Check that zqbo may message you."
        respond(replace_original=replace, response_type="ephemeral", **blocks.notice(text, ":x:").as_kwargs())
        return
    respond(
        replace_original=replace,
        response_type="ephemeral",
        **blocks.notice(
            f"Your guided reconnect is in <slack://channel?id={checklist.channel}|your DMs with zqbo>: "
            "one checklist, updated as you go.",
            ":white_check_mark:",
        ).as_kwargs(),
    )


def _guarded(name: str, work: Callable[[], None], respond: Respond) -> None:
    """Post-ack work: a failure becomes an error card with a reference, never silence."""
    try:
        work()
    except Exception:
        error_id = new_error_id()
        log.exception("/zqbo %s failed [%s]", name, error_id)
        try:
            respond(
                replace_original=True,
                response_type="ephemeral",
                **blocks.error_message("Something went wrong on zqbo's side.", error_id).as_kwargs(),
            )
        except Exception:
            log.exception("could not tell the user about [%s]", error_id)


def refresh_status_card(services: Services, respond: Respond) -> None:
    report = build_status(services.store, services.settings, services.clock)
    live = [c.realm_id for c in report.companies if c.state in (State.CONNECTED, State.EXPIRING)]
    if not live:
        return
    probes = {realm: services.prober.probe(realm) for realm in live}
    report = build_status(services.store, services.settings, services.clock)  # probe may have changed it
    respond(
        replace_original=True, response_type="ephemeral", **blocks.status_card(report, probes).as_kwargs()
    )


def send_connect_link(
    services: Services, respond: Respond, user_id: str, team_id: str, channel_id: str
) -> None:
    url, state = services.oauth.start(user_id, team_id, channel_id=channel_id)
    message = blocks.connect_link(url, state.expires_at, services.settings.dedicated_email)
    respond(replace_original=True, response_type="ephemeral", **message.as_kwargs())


def _realm(services: Services, args: tuple[str, ...]) -> str:
    realm, conn = services.reconnect.resolve_realm(args[0] if args else "")
    if conn is None:
        raise ReconnectError("No QuickBooks company is connected yet: `/zqbo reconnect` sets one up.")
    return realm


def run_check(services: Services, respond: Respond, args: tuple[str, ...]) -> None:
    try:
        realms = [_realm(services, args)] if args else [c.realm_id for c in services.store.list_connections()]
    except ReconnectError as exc:
        respond(replace_original=True, **blocks.notice(str(exc), ":thinking_face:").as_kwargs())
        return
    if not realms:
        respond(replace_original=True, **blocks.notice("No QuickBooks company is connected yet.").as_kwargs())
        return
    results = [services.auditor.run(realm, trigger="slack", wait=30) for realm in realms]
    respond(replace_original=True, **blocks.check_results(results).as_kwargs())


def list_users(services: Services, respond: Respond, args: tuple[str, ...]) -> None:
    try:
        realm = _realm(services, args)
    except ReconnectError as exc:
        respond(replace_original=True, **blocks.notice(str(exc), ":thinking_face:").as_kwargs())
        return
    try:
        stats = services.auditor.users(realm)
    except QBOError as exc:
        respond(
            replace_original=True, **blocks.notice(f"QuickBooks did not answer: {exc}", ":x:").as_kwargs()
        )
        return
    dedicated_id, source = services.auditor.dedicated(realm)
    respond(replace_original=True, **blocks.users_table(stats, dedicated_id, source).as_kwargs())


def mute(services: Services, name: str, args: tuple[str, ...], user_id: str) -> blocks.Message:
    usage = "Usage: `/zqbo mute <kind> [hours] [realm]`, `/zqbo unmute <kind> [realm]`; kinds: " + ", ".join(
        f"`{k}`" for k in MUTE_NAMES
    )
    if not args or args[0].lower() not in MUTE_NAMES:
        return blocks.notice(usage, ":thinking_face:")
    kind = MUTE_NAMES[args[0].lower()]
    rest = list(args[1:])
    hours = 24.0
    if name == "mute" and rest and rest[0].replace(".", "", 1).isdigit():
        hours = float(rest.pop(0))
        if not 0 < hours <= 24 * 30:
            return blocks.notice("Mute for between a minute and 30 days (in hours).", ":thinking_face:")
    try:
        realm = _realm(services, tuple(rest))
    except ReconnectError as exc:
        return blocks.notice(str(exc), ":thinking_face:")
    if name == "unmute":
        ended = services.alerts.unmute(kind, realm)
        return blocks.notice(f"`{args[0]}` alerts are {'unmuted' if ended else 'not muted'}.")
    until = services.alerts.mute(kind, realm, hours, user_id)
    return blocks.notice(
        f"`{args[0]}` alerts muted until {blocks.when(until)} by <@{user_id}>.", ":zipper_mouth_face:"
    )


def configure(services: Services, raw: str, user_id: str) -> blocks.Message:
    parts = raw.split(None, 2)
    what = parts[1].lower() if len(parts) > 1 else ""
    rest = parts[2].strip() if len(parts) > 2 else ""
    if what == "markers" and rest:
        try:
            markers = parse_markers(rest)
        except MarkerError as exc:
            return blocks.notice(f"Not saved: {exc}", ":x:")
        services.store.put_doc("config", "markers", {"rules": rest, "by": user_id})
        return blocks.notice(
            "Markers saved: " + "; ".join(m.describe() for m in markers), ":white_check_mark:"
        )
    if what == "dedicated-user" and rest:
        words = rest.split()
        if not words[0].isdigit():
            return blocks.notice(
                "The dedicated QBO user id is a number, e.g. `/zqbo config dedicated-user 9`.", ":x:"
            )
        try:
            realm = _realm(services, tuple(words[1:]))
        except ReconnectError as exc:
            return blocks.notice(str(exc), ":thinking_face:")
        services.auditor.pin_dedicated(realm, words[0], user_id)
        return blocks.notice(
            f"Dedicated QBO user id for `{realm}` set to `{words[0]}`.", ":white_check_mark:"
        )
    if what:
        return blocks.notice(
            "Usage: `/zqbo config markers <rules>` or `/zqbo config dedicated-user <id> [realm]`.",
            ":thinking_face:",
        )
    return blocks.config_summary(services.auditor.markers(), services.settings)
