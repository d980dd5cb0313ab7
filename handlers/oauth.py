"""GET /qbo/callback: Intuit sends the browser back here after consent."""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from slack_sdk.errors import SlackApiError

from bot import blocks
from bot.app import Services
from bot.connect import CallbackResult
from bot.pages import callback_page

log = logging.getLogger(__name__)


def register(web: Flask, services: Services) -> None:
    @web.get("/qbo/callback")
    def qbo_callback() -> Response:
        result = services.oauth.complete(request.args.to_dict())
        # The browser gets its page now; the DM follows (Slack may ask us to wait).
        services.background.submit(notify_user, services, result)
        status, html = callback_page(result, services.settings.dedicated_email)
        return Response(
            html,
            status=status,
            mimetype="text/html",
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )


def notify_user(services: Services, result: CallbackResult) -> None:
    """DM the Slack user the link belonged to. Best effort: the page already tells them."""
    if result.state is None:
        return  # unknown or missing state: we do not know who this is
    if result.ok and result.connection is not None:
        message = blocks.dm_connected(result.connection, services.settings.dedicated_email)
    else:
        message = blocks.dm_callback_problem(result)
    try:
        channel = services.slack.conversations_open(users=result.state.slack_user_id)["channel"]["id"]
        services.slack.chat_postMessage(channel=channel, **message.as_kwargs())
    except SlackApiError as exc:
        log.error(
            "could not DM %s about the QBO callback: %s",
            result.state.slack_user_id,
            exc.response.get("error"),
        )
    except Exception:
        log.exception("could not DM %s about the QBO callback", result.state.slack_user_id)
