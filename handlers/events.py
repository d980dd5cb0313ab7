"""Events API: App Home shows the status card."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot import blocks, slash
from bot.services import Services

log = logging.getLogger(__name__)


def register(app: App, services: Services) -> None:
    def ack_event() -> None:
        """Events are acked by Bolt itself; the work happens after."""

    def publish_home(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        if event.get("tab") not in (None, "home"):
            return
        scope = services.workspaces.scope_of(context)
        report = slash.workspace_report(services, scope, limit=blocks.status.MAX_COMPANIES_ON_HOME)
        setup = None
        if services.workspaces.multi:  # setup state and the Settings button first
            setup = blocks.setup_blocks(services.workspaces.get(scope), report.total)
        client.views_publish(user_id=event["user"], view=blocks.home(report, setup))

    app.event("app_home_opened")(ack=ack_event, lazy=[publish_home])
