"""Button presses (interactivity)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond

from bot import blocks
from bot.app import Services
from bot.connect import new_error_id
from handlers.commands import send_connect_link

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    def ack_only(ack: Ack) -> None:
        ack()

    def connect_pressed(body: dict[str, Any], respond: Respond) -> None:
        user = body.get("user", {})
        try:
            send_connect_link(
                services,
                respond,
                user.get("id", ""),
                user.get("team_id", "") or body.get("team", {}).get("id", ""),
                body.get("channel", {}).get("id", ""),
            )
        except Exception:
            error_id = new_error_id()
            log.exception("connect button failed [%s]", error_id)
            respond(
                response_type="ephemeral",
                replace_original=False,
                **blocks.error_message("Could not prepare a link.", error_id).as_kwargs(),
            )

    app.action("zqbo_connect")(ack=ack_only, lazy=[connect_pressed])
    # A URL button still sends an interaction; acking it spares the user a warning icon.
    app.action("zqbo_connect_link")(ack_only)
