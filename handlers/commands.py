"""`/zqbo` slash command: ack at once from stored state, slow work after the ack."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond

from bot import blocks, metrics, slash
from bot.commands import ADMIN_ONLY, TOO_LONG, parse, too_long_sentence
from bot.connect import new_error_id
from bot.fairness import HEAVY, Refusal
from bot.services import Services
from bot.store.base import StoreUnavailable
from bot.tenancy.workspaces import READ_ONLY_COMMAND

log = logging.getLogger(__name__)

# Subcommands whose answer comes after the ack, through the command's response_url.
FOLLOW_UP = {
    "connect": blocks.connect_preparing,
    "reconnect": lambda: blocks.notice("Opening a guided reconnect in your DMs…"),
    "check": lambda: blocks.notice("Checking QuickBooks now…", ":mag:"),
    "users": lambda: blocks.notice("Reading 30 days of entries from QuickBooks…", ":mag:"),
    "report": lambda: blocks.notice("Drawing the report…", ":bar_chart:"),
    "digest": lambda: blocks.notice("One moment…", ":calendar:"),
}
# What a person of another organisation (Slack Connect) may run: a look, never a change, and
# nothing that reads the companies' QuickBooks entries (check, users) or lists alerts.
LOOK_ONLY = frozenset({"status", "help", "unknown"})
assert set(FOLLOW_UP) <= set(HEAVY)
Update = Callable[[blocks.Message], None]  # shows a message in place of the command's answer
NO_RESPONSE_URL = (
    "Slack did not give zqbo a way to answer this command later (no response_url), so it was "
    "not run. Try again from a channel or from zqbo's DM."
)


def register(app: App, services: Services) -> None:
    def zqbo_command(ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        """Answer from stored state at once; what needs Intuit, QBO or a DM runs after."""
        try:
            scope = services.workspaces.scope_of(context)
            outsider = partial(services.workspaces.outsider, command.get("team_id"), context)
            after = answer(services, ack, command, scope, outsider)
        except StoreUnavailable as exc:
            error_id = new_error_id()
            log.error("/zqbo answered without the store [%s]: %s", error_id, exc)
            ack(response_type="ephemeral", **blocks.store_unavailable(error_id).as_kwargs())
            return
        if after is not None:  # in the workspace's own queue: a busy neighbour never delays it
            services.after_ack.submit_for(scope, _guarded, command.get("text") or "", after, respond)

    app.command("/zqbo")(zqbo_command)


def answer(
    services: Services,
    ack: Ack,
    command: dict[str, Any],
    scope: str = "",
    outsider: Callable[[], bool] = lambda: False,
) -> Callable[[Respond], None] | None:
    """Ack the command; return the work to do after the ack, if any. Everything it reads or
    changes is the workspace's (`scope`). A person of another organisation (`outsider`, asked
    only when the subcommand is more than a look) gets status and help, nothing else."""
    text = command.get("text") or ""
    cmd = parse(text)
    metrics.SLACK_COMMANDS.labels(subcommand=cmd.name if cmd.name != TOO_LONG else "unknown").inc()
    user_id, team_id = command.get("user_id", ""), command.get("team_id", "")
    can_follow_up = bool(command.get("response_url"))

    def reply(message: blocks.Message) -> None:
        ack(response_type="ephemeral", **message.as_kwargs())

    if cmd.name == TOO_LONG:
        reply(blocks.notice(too_long_sentence(len(text)), ":thinking_face:"))
        return None
    if cmd.name not in LOOK_ONLY and outsider():  # before the admin check: no users.info on them
        reply(blocks.notice(READ_ONLY_COMMAND.format(name=cmd.name), ":lock:"))
        return None
    if cmd.name in ADMIN_ONLY and not slash.may_run(services, cmd, user_id, scope):
        reply(blocks.not_allowed(ADMIN_ONLY[cmd.name], services.admins.who(scope)))
        return None
    if cmd.name in FOLLOW_UP and not can_follow_up:
        reply(blocks.notice(NO_RESPONSE_URL, ":thinking_face:"))
        return None
    if cmd.name == "status":
        card, stale = slash.status_ack(
            services,
            can_follow_up,
            cmd.args[0] if cmd.args else "",
            scope,
            team_id=team_id,
            app_id=str(command.get("api_app_id") or ""),
        )
        reply(card)
        if not stale:
            return None
        return lambda respond: _replace(respond, slash.status_after_probe(services, stale, scope))
    if cmd.name in FOLLOW_UP:
        held = services.limits.take(scope, user_id)  # every FOLLOW_UP subcommand is HEAVY
        if isinstance(held, Refusal):
            reply(blocks.notice(held.sentence, ":hourglass_flowing_sand:"))
            return None
        reply(FOLLOW_UP[cmd.name]())
        work: dict[str, Callable[[Update], blocks.Message | None]] = {
            "connect": lambda _: slash.connect_link(
                services, user_id, team_id, command.get("channel_id", ""), scope
            ),
            "reconnect": lambda _: slash.reconnect_command(services, user_id, team_id, cmd.args, scope),
            "check": lambda update: slash.run_check(services, cmd.args, scope, update),
            "users": lambda _: slash.list_users(services, cmd.args, scope),
            "report": lambda _: slash.report(services, cmd.args, user_id, scope),
            "digest": lambda _: slash.digest(services, cmd.args, user_id, scope),
        }
        job = work[cmd.name]

        def run(respond: Respond) -> None:
            try:
                _replace(respond, job(lambda message: _replace(respond, message)))
            finally:
                services.limits.give_back(held)

        return run
    if cmd.name == "disconnect":
        reply(slash.disconnect_prompt(services, cmd.args, scope))
    elif cmd.name == "alerts":
        reply(slash.alerts(services, scope))
    elif cmd.name in ("mute", "unmute"):
        reply(slash.mute(services, cmd.name, cmd.args, user_id, scope))
    elif cmd.name == "config":
        reply(slash.configure(services, cmd.raw, user_id, scope))
    elif cmd.name == "integration":
        reply(slash.integration_command(services, cmd.raw, user_id, scope))
    elif cmd.name == "help":
        reply(blocks.help_message())
    else:
        reply(blocks.help_message(unknown=cmd.raw))
    return None


def _replace(respond: Respond, message: blocks.Message | None) -> None:
    if message is not None:
        respond(replace_original=True, response_type="ephemeral", **message.as_kwargs())


def _guarded(text: str, work: Callable[[Respond], None], respond: Respond) -> None:
    """Post-ack work: a failure becomes an error card with a reference, never silence."""
    try:
        work(respond)
    except Exception as exc:
        error_id = new_error_id()
        if isinstance(exc, StoreUnavailable):
            log.error("/zqbo %s: store unavailable [%s]: %s", text.split()[:1], error_id, exc)
            message = blocks.store_unavailable(error_id)
        else:
            log.exception("/zqbo %s failed [%s]", text.split()[:1], error_id)
            message = blocks.error_message("Something went wrong on zqbo's side.", error_id)
        try:
            respond(replace_original=True, response_type="ephemeral", **message.as_kwargs())
        except Exception:
            log.exception("could not tell the user about [%s]", error_id)
