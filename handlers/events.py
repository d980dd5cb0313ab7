"""Events API and App Home: the status card, or the portfolio of several companies with its
filter and pager (each company's Report button is answered in handlers/actions.py)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import slash
from bot.blocks.portfolio import FILTER_ACTION, NEXT_ACTION, PREVIOUS_ACTION
from bot.services import Services

log = logging.getLogger(__name__)


def _user(body: dict[str, Any]) -> str:
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    return str(user.get("id", ""))


def _action(body: dict[str, Any]) -> dict[str, Any]:
    actions = body.get("actions")
    first = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    return first


def register(app: App, services: Services) -> None:
    def ack_event() -> None:
        """Events are acked by Bolt itself; the work happens after."""

    def publish(
        client: WebClient, user_id: str, scope: str, filter_name: str = "all", number: int = 0
    ) -> None:
        view = slash.home(services, scope, filter_name, number)
        try:
            client.views_publish(user_id=user_id, view=view)
        except SlackApiError as exc:
            log.warning("could not publish App Home for %s: %s", user_id, exc.response.get("error"))

    def publish_home(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        if event.get("tab") not in (None, "home"):
            return
        publish(client, str(event.get("user", "")), services.workspaces.scope_of(context))

    def ack_at_once(ack: Ack) -> None:
        ack()

    def turn_page(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        """Previous / Next: the value carries the filter and the page to show."""
        name, number = slash.home_page_value(str(_action(body).get("value", "")))
        publish(client, _user(body), services.workspaces.scope_of(context), name, number)

    def choose_filter(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        option = _action(body).get("selected_option")
        name = str(option.get("value", "")) if isinstance(option, dict) else ""
        publish(client, _user(body), services.workspaces.scope_of(context), name, 0)

    app.event("app_home_opened")(ack=ack_event, lazy=[publish_home])
    app.action(PREVIOUS_ACTION)(ack=ack_at_once, lazy=[turn_page])
    app.action(NEXT_ACTION)(ack=ack_at_once, lazy=[turn_page])
    app.action(FILTER_ACTION)(ack=ack_at_once, lazy=[choose_filter])
