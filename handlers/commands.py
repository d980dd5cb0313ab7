"""`/zqbo` slash command: ack at once from stored state, slow work after the ack."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond

from bot import blocks, metrics
from bot.app import Services
from bot.commands import parse
from bot.connect import new_error_id
from bot.status import State, build_status

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    def ack_command(ack: Ack, command: dict[str, Any]) -> None:
        cmd = parse(command.get("text"))
        metrics.SLACK_COMMANDS.labels(subcommand=cmd.name).inc()
        if cmd.name == "status":
            report = build_status(services.store, services.settings, services.clock)
            probing = any(c.state in (State.CONNECTED, State.EXPIRING) for c in report.companies)
            ack(response_type="ephemeral", **blocks.status_card(report, probing=probing).as_kwargs())
        elif cmd.name == "connect":
            ack(response_type="ephemeral", **blocks.connect_preparing().as_kwargs())
        elif cmd.name == "help":
            ack(response_type="ephemeral", **blocks.help_message().as_kwargs())
        else:
            ack(response_type="ephemeral", **blocks.help_message(unknown=cmd.raw).as_kwargs())

    def after_ack(command: dict[str, Any], respond: Respond) -> None:
        cmd = parse(command.get("text"))
        try:
            if cmd.name == "status":
                refresh_status_card(services, respond)
            elif cmd.name == "connect":
                send_connect_link(
                    services,
                    respond,
                    command["user_id"],
                    command.get("team_id", ""),
                    command.get("channel_id", ""),
                )
        except Exception:
            error_id = new_error_id()
            log.exception("/zqbo %s failed [%s]", cmd.name, error_id)
            respond(
                replace_original=True,
                response_type="ephemeral",
                **blocks.error_message("Something went wrong on zqbo's side.", error_id).as_kwargs(),
            )

    app.command("/zqbo")(ack=ack_command, lazy=[after_ack])


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
