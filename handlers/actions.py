"""Button presses (interactivity): ack at once, check who pressed, then do the work after."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond

from bot import blocks, slash
from bot.connect import new_error_id
from bot.reconnect import ReconnectError
from bot.services import Services
from bot.store.base import StoreUnavailable
from bot.tenancy.workspaces import READ_ONLY

log = logging.getLogger(__name__)

# action_id -> checklist action
CHECKLIST_ACTIONS = {
    "zqbo_rc_user_done": "user_done",
    "zqbo_rc_disconnect": "disconnect",
    "zqbo_rc_link": "link",
    "zqbo_rc_retry": "retry",
    "zqbo_rc_cancel": "cancel",
}
# (body, scope) -> the answer: every button acts only on the pressing workspace's data
Work = Callable[[dict[str, Any], str], "blocks.Message | None"]


def _who(body: dict[str, Any]) -> tuple[str, str]:
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    team = body.get("team")
    team_id = team.get("id") if isinstance(team, dict) else team  # Slack sends an object or an id
    return str(user.get("id", "")), str(user.get("team_id") or team_id or "")


def foreign(services: Services, body: dict[str, Any], context: BoltContext) -> bool:
    """A user of another organisation pressing a button in a channel shared with it (Slack
    Connect): the payload's `user.team_id` is not the installation's (bot/tenancy/workspaces.py)."""
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    return services.workspaces.outsider(user.get("team_id"), context)


def _value(body: dict[str, Any]) -> str:
    actions = body.get("actions")
    first = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    return str(first.get("value", ""))


def _channel(body: dict[str, Any]) -> str:
    channel = body.get("channel")
    return str(channel.get("id", "")) if isinstance(channel, dict) else ""


def _logged(name: str, work: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("button %s failed [%s]", name, new_error_id())

    return run


def register(app: App, services: Services) -> None:
    def later(
        name: str, scope: str, respond: Respond, work: Callable[[], blocks.Message | None], in_place: bool
    ) -> None:
        """Run after the ack, in the workspace's own queue; the answer replaces the message
        (in_place) or is a private reply."""

        def run() -> None:
            try:
                message = work()
            except Exception as exc:
                error_id = new_error_id()
                if isinstance(exc, StoreUnavailable):
                    log.error("button %s: store unavailable [%s]: %s", name, error_id, exc)
                    message = blocks.store_unavailable(error_id)
                else:
                    log.exception("button %s failed [%s]", name, error_id)
                    message = blocks.error_message("That did not work on zqbo's side.", error_id)
                in_place_now = False
            else:
                in_place_now = in_place
            if message is None:
                return
            kind = {"replace_original": True} if in_place_now else {"replace_original": False}
            try:
                respond(response_type="ephemeral", **kind, **message.as_kwargs())
            except Exception:
                log.exception("could not answer button %s", name)

        services.after_ack.submit_for(scope, run)

    def admin_only(what: str, work: Work, in_place: bool = False, company: bool = False):
        """A button that changes the connection: refused, politely and privately, for non-admins.
        With `company`, its value is a realm id, and that company's own admins may press it too."""

        def listener(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
            ack()
            user_id, _ = _who(body)
            scope = services.workspaces.scope_of(context)

            def guarded() -> blocks.Message | None:
                if foreign(services, body, context):  # never asked of users.info with this workspace's token
                    return blocks.notice(READ_ONLY, ":lock:")
                realm = _value(body) if company else ""
                if not services.admins.is_admin_for(user_id, scope, realm):
                    return blocks.not_allowed(what, services.admins.who(scope))
                return work(body, scope)

            later(what, scope, respond, guarded, in_place)

        return listener

    def connect(body: dict[str, Any], scope: str) -> blocks.Message:
        user_id, team_id = _who(body)
        return slash.connect_link(services, user_id, team_id, _channel(body), scope)

    def reconnect(body: dict[str, Any], scope: str) -> blocks.Message:
        """The value is a realm (zqbo's own connection) or "realm|integration" (an alert's)."""
        user_id, team_id = _who(body)
        realm, _, name = _value(body).partition("|")
        if name:
            return slash.start_integration_reconnect(services, user_id, team_id, realm, name, scope)
        return slash.start_reconnect(services, user_id, team_id, realm, scope)

    def disconnect(body: dict[str, Any], scope: str) -> blocks.Message:
        user_id, _ = _who(body)
        return slash.disconnect(services, _value(body), user_id, scope)

    def checklist_step(action: str) -> Work:
        def work(body: dict[str, Any], scope: str) -> blocks.Message | None:
            user_id, _ = _who(body)
            try:
                services.reconnect.act(_value(body), action, user_id, scope)
            except ReconnectError as exc:
                return blocks.notice(str(exc), ":thinking_face:")
            return None  # the checklist message itself was updated

        return work

    def acknowledge(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        """Anyone of the workspace in the alert channel may say they are on it (its alerts only)."""
        ack()
        user_id, _ = _who(body)
        scope = services.workspaces.scope_of(context)

        def work() -> blocks.Message | None:
            if foreign(services, body, context):
                return blocks.notice(READ_ONLY, ":lock:")
            alert = services.alerts.acknowledge(
                _value(body), user_id, scope if services.workspaces.multi else None
            )
            if alert is None:  # resolved since, or a button copied from elsewhere
                return blocks.notice("That alert is not open any more; nothing was changed.")
            return None  # the alert message itself now says who is on it

        later("acknowledge", scope, respond, work, in_place=False)

    def mute(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        """Admins only; a mute is news for the whole alert channel, a refusal is private."""
        ack()
        user_id, _ = _who(body)
        scope = services.workspaces.scope_of(context)

        def work() -> blocks.Message | None:
            if foreign(services, body, context):
                return blocks.notice(READ_ONLY, ":lock:")
            realm = _value(body).partition("|")[2]
            if not services.admins.is_admin_for(user_id, scope, realm):
                return blocks.not_allowed("mute alerts", services.admins.who(scope))
            message, announce = slash.mute_button(services, _value(body), user_id, scope)
            if not announce:
                return message
            respond(response_type="in_channel", replace_original=False, **message.as_kwargs())
            return None

        later("mute", scope, respond, work, in_place=False)

    def confirm_dedicated(body: dict[str, Any], scope: str) -> blocks.Message:
        user_id, _ = _who(body)
        return slash.confirm_dedicated(services, _value(body), user_id, scope)

    def report(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        """App Home's Report button: the company's last 30 days, into the presser's DM (App Home
        has no response_url: a refusal goes to the DM too)."""
        ack()
        user_id, _ = _who(body)
        scope = services.workspaces.scope_of(context)

        def work() -> None:
            if foreign(services, body, context):
                message = blocks.notice(READ_ONLY, ":lock:")
            else:
                message = slash.report_button(services, _value(body), user_id, scope)
            if body.get("response_url"):
                respond(response_type="ephemeral", replace_original=False, **message.as_kwargs())
            elif not message.text.startswith("Report for"):  # the report itself is in the DM already
                client = services.workspaces.client(scope)
                dm = client.conversations_open(users=user_id)["channel"]["id"]
                client.chat_postMessage(channel=dm, **message.as_kwargs())

        services.after_ack.submit_for(scope, _logged("report", work))

    def ack_only(ack: Ack) -> None:
        ack()  # URL buttons still send an interaction; acking spares the user a warning icon

    app.action("zqbo_connect")(admin_only("connect QuickBooks", connect, in_place=True))
    app.action("zqbo_reconnect")(admin_only("reconnect QuickBooks", reconnect))
    app.action("zqbo_disconnect")(
        admin_only("disconnect QuickBooks", disconnect, in_place=True, company=True)
    )
    for action_id, action in CHECKLIST_ACTIONS.items():
        app.action(action_id)(admin_only("change the QuickBooks connection", checklist_step(action)))
    app.action("zqbo_alert_ack")(acknowledge)
    app.action("zqbo_alert_mute")(mute)
    app.action("zqbo_dedicated_confirm")(
        admin_only("confirm the dedicated user", confirm_dedicated, company=True)
    )
    app.action("zqbo_report")(report)
    app.action("zqbo_connect_link")(ack_only)
    app.action("zqbo_rc_open")(ack_only)
