"""The browser side of connecting QuickBooks: the connect link and Sign in with Slack
(bot/signin.py), then GET /qbo/callback, where Intuit sends the browser back after consent."""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from slack_sdk.errors import SlackApiError

from bot import blocks
from bot.connect import CallbackResult
from bot.pages import callback_page, reconnect_page, sign_in_page
from bot.services import Services
from bot.signin import CALLBACK_PATH, COOKIE, COOKIE_PATH, SIGN_IN_TTL, Step, new_browser_secret
from bot.tenancy.workspaces import NotInstalled

log = logging.getLogger(__name__)


def register(web: Flask, services: Services) -> None:
    @web.get("/qbo/connect/<link_id>")
    def qbo_connect(link_id: str) -> Response:
        """The link zqbo shows in Slack: on to Sign in with Slack, in this browser."""
        if services.sign_in is None:
            return _html(*sign_in_page(None, ""))
        browser = request.cookies.get(COOKIE) or new_browser_secret()
        step = services.sign_in.open_link(link_id[:100], browser)
        return _step(step, browser)

    @web.get(CALLBACK_PATH)
    def slack_signed_in() -> Response:
        """Slack sends the browser back here after Sign in with Slack."""
        if services.sign_in is None:
            return _html(*sign_in_page(None, ""))
        browser = request.cookies.get(COOKIE, "")
        return _step(services.sign_in.signed_in(request.args.to_dict(), browser), browser)

    def _step(step: Step, browser: str) -> Response:
        if step.refusal is not None:
            workspace = services.workspaces.display_name(step.link.team_id) if step.link else ""
            return _html(*sign_in_page(step.refusal, workspace))
        answer = Response("", status=302, headers={"Location": step.redirect, **_NO_STORE})
        answer.set_cookie(
            COOKIE,
            browser,
            max_age=int(SIGN_IN_TTL.total_seconds()),
            path=COOKIE_PATH,
            secure=services.sign_in is not None and services.sign_in.secure_cookie,
            httponly=True,
            samesite="Lax",
        )
        return answer

    @web.get("/qbo/callback")
    def qbo_callback() -> Response:
        result = services.oauth.complete(request.args.to_dict(), request.cookies.get(COOKIE, ""))
        # The browser gets its page now; Slack follows (it may ask us to wait): a guided
        # reconnect updates its checklist message, a plain connect sends a DM.
        if result.state is not None and result.state.purpose == "reconnect":
            services.background.submit(update_checklist, services, result)
        else:
            services.background.submit(notify_user, services, result)
        status, html = callback_page(result, _dedicated_email(services, result), _workspace(services, result))
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


def _workspace(services: Services, result: CallbackResult) -> str:
    return services.workspaces.display_name(result.state.team_id) if result.state is not None else ""


_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _html(status: int, html: str) -> Response:
    return Response(html, status=status, mimetype="text/html", headers=_NO_STORE)


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
