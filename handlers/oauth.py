"""GET /qbo/callback: Intuit sends the browser back here after consent."""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from slack_sdk.errors import SlackApiError

from bot import blocks
from bot.connect import CallbackResult
from bot.pages import callback_page, reconnect_page
from bot.services import Services
from bot.tenancy.workspaces import NotInstalled

log = logging.getLogger(__name__)


def register(web: Flask, services: Services) -> None:
    @web.get("/qbo/callback")
    def qbo_callback() -> Response:
        result = services.oauth.complete(request.args.to_dict())
        # The browser gets its page now; Slack follows (it may ask us to wait): a guided
        # reconnect updates its checklist message, a plain connect sends a DM.
        if result.state is not None and result.state.purpose == "reconnect":
            services.background.submit(update_checklist, services, result)
        else:
            services.background.submit(notify_user, services, result)
        status, html = callback_page(result, _dedicated_email(services, result))
        return _html(status, html)

    @web.get("/qbo/reconnect")
    def qbo_reconnect() -> Response:
        """The "Reconnect URL" registered with Intuit: state only, nothing identifying. Serving
        many workspaces, it cannot know whose company the visitor means, so it says only how
        to reconnect — nothing about any workspace's connections."""
        if services.workspaces.multi:
            return _html(200, reconnect_page(None, services.clock.now()))
        connections = services.store.list_connections()
        return _html(200, reconnect_page(connections, services.clock.now()))


def _dedicated_email(services: Services, result: CallbackResult) -> str:
    if result.state is None:
        return ""
    return services.workspaces.get(result.state.team_id if services.workspaces.multi else "").dedicated_email


def _html(status: int, html: str) -> Response:
    return Response(
        html,
        status=status,
        mimetype="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def update_checklist(services: Services, result: CallbackResult) -> None:
    try:
        services.reconnect.on_callback(result)
    except Exception:
        log.exception("could not update the reconnect checklist after the QBO callback")


def notify_user(services: Services, result: CallbackResult) -> None:
    """DM the Slack user the link belonged to. Best effort: the page already tells them."""
    if result.state is None:
        return  # unknown or missing state: we do not know who this is
    if result.ok and result.connection is not None:
        message = blocks.dm_connected(result.connection, _dedicated_email(services, result))
    else:
        message = blocks.dm_callback_problem(result)
    try:
        slack = services.workspaces.client(result.state.team_id if services.workspaces.multi else "")
        channel = slack.conversations_open(users=result.state.slack_user_id)["channel"]["id"]
        slack.chat_postMessage(channel=channel, **message.as_kwargs())
    except NotInstalled:
        log.warning("no DM about the QBO callback: its workspace removed zqbo")
    except SlackApiError as exc:
        log.error(
            "could not DM %s about the QBO callback: %s",
            result.state.slack_user_id,
            exc.response.get("error"),
        )
    except Exception:
        log.exception("could not DM %s about the QBO callback", result.state.slack_user_id)
