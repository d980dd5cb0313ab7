"""Events API: App Home shows the status card."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot import blocks
from bot.services import Services
from bot.status import build_status

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    def ack_event() -> None:
        """Events are acked by Bolt itself; the work happens after."""

    def publish_home(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab") not in (None, "home"):
            return
        report = build_status(
            services.store, services.settings, services.clock, limit=blocks.status.MAX_COMPANIES_ON_HOME
        )
        client.views_publish(user_id=event["user"], view=blocks.home(report))

    app.event("app_home_opened")(ack=ack_event, lazy=[publish_home])
