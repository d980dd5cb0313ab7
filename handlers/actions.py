"""Button presses (interactivity): ack at once, check who pressed, then do the work after."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond

from bot import blocks
from bot.app import Services
from bot.connect import new_error_id
from bot.qbo.errors import NotConnected, TransientError
from bot.reconnect import ReconnectError
from handlers.commands import send_connect_link, start_reconnect

log = logging.getLogger(__name__)

# action_id -> (what a refusal says the user tried, checklist action)
CHECKLIST_ACTIONS = {
    "zqbo_rc_user_done": "user_done",
    "zqbo_rc_disconnect": "disconnect",
    "zqbo_rc_link": "link",
    "zqbo_rc_retry": "retry",
    "zqbo_rc_cancel": "cancel",
}


def _who(body: dict[str, Any]) -> tuple[str, str]:
    user = body.get("user", {})
    team = user.get("team_id", "") or body.get("team", {}).get("id", "")
    return user.get("id", ""), team


def _value(body: dict[str, Any]) -> str:
    actions = body.get("actions") or [{}]
    return str(actions[0].get("value", ""))


def register(app: App, services: Services) -> None:
    def later(name: str, respond: Respond, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            except Exception:
                error_id = new_error_id()
                log.exception("button %s failed [%s]", name, error_id)
                respond(
                    response_type="ephemeral",
                    replace_original=False,
                    **blocks.error_message("That did not work on zqbo's side.", error_id).as_kwargs(),
                )

        services.after_ack.submit(run)

    def admin_only(what: str, work: Callable[[dict[str, Any], Respond], None]):
        """A button that changes the connection: refused, politely and privately, for non-admins."""

        def listener(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
            ack()
            user_id, _ = _who(body)

            def guarded() -> None:
                if not services.admins.is_admin(user_id):
                    respond(
                        response_type="ephemeral",
                        replace_original=False,
                        **blocks.not_allowed(what, services.admins.who()).as_kwargs(),
                    )
                    return
                work(body, respond)

            later(what, respond, guarded)

        return listener

    def connect(body: dict[str, Any], respond: Respond) -> None:
        user_id, team_id = _who(body)
        send_connect_link(services, respond, user_id, team_id, body.get("channel", {}).get("id", ""))

    def reconnect(body: dict[str, Any], respond: Respond) -> None:
        user_id, team_id = _who(body)
        start_reconnect(services, respond, user_id, team_id, _value(body), replace=False)

    def disconnect(body: dict[str, Any], respond: Respond) -> None:
        user_id, _ = _who(body)
        realm = _value(body)
        conn = services.connections.get(realm)
        if conn is None:
            respond(
                replace_original=True, **blocks.notice("Nothing to disconnect: not connected.").as_kwargs()
            )
            return
        try:
            conn = services.connections.disconnect(realm, reason=f"disconnected from Slack by <@{user_id}>")
        except NotConnected:
            respond(
                replace_original=True, **blocks.notice("Nothing to disconnect: not connected.").as_kwargs()
            )
            return
        except TransientError as exc:
            respond(
                replace_original=True,
                **blocks.disconnect_failed(conn, f"Intuit did not answer ({exc}).").as_kwargs(),
            )
            return
        respond(replace_original=True, **blocks.disconnect_done(conn, user_id).as_kwargs())

    def checklist_step(action: str) -> Callable[[dict[str, Any], Respond], None]:
        def work(body: dict[str, Any], respond: Respond) -> None:
            user_id, _ = _who(body)
            try:
                services.reconnect.act(_value(body), action, user_id)
            except ReconnectError as exc:
                respond(
                    response_type="ephemeral",
                    replace_original=False,
                    **blocks.notice(str(exc), ":thinking_face:").as_kwargs(),
                )

        return work

    def acknowledge(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        """Anyone in the alert channel may say they are on it."""
        ack()
        user_id, _ = _who(body)
        later("acknowledge", respond, lambda: services.alerts.acknowledge(_value(body), user_id))

    def mute(body: dict[str, Any], respond: Respond) -> None:
        user_id, _ = _who(body)
        kind, _, realm = _value(body).partition("|")
        until = services.alerts.mute(kind, realm, 24, user_id)
        title = blocks.ALERT_TITLES.get(kind, kind)
        text = f"<@{user_id}> muted *{title}* alerts for 24 h (until {blocks.when(until)})."
        respond(
            response_type="in_channel",
            replace_original=False,
            **blocks.notice(text, ":zipper_mouth_face:").as_kwargs(),
        )

    def confirm_dedicated(body: dict[str, Any], respond: Respond) -> None:
        user_id, _ = _who(body)
        doc = services.auditor.confirm_dedicated(_value(body), user_id)
        text = (
            f"Dedicated QBO user id `{doc['id']}` confirmed by <@{user_id}>."
            if doc
            else "There is no learned id to confirm any more."
        )
        respond(response_type="ephemeral", replace_original=False, **blocks.notice(text).as_kwargs())

    def ack_only(ack: Ack) -> None:
        ack()  # URL buttons still send an interaction; acking spares the user a warning icon

    app.action("zqbo_connect")(admin_only("connect QuickBooks", connect))
    app.action("zqbo_reconnect")(admin_only("reconnect QuickBooks", reconnect))
    app.action("zqbo_disconnect")(admin_only("disconnect QuickBooks", disconnect))
    for action_id, action in CHECKLIST_ACTIONS.items():
        app.action(action_id)(admin_only("change the QuickBooks connection", checklist_step(action)))
    app.action("zqbo_alert_ack")(acknowledge)
    app.action("zqbo_alert_mute")(admin_only("mute alerts", mute))
    app.action("zqbo_dedicated_confirm")(admin_only("confirm the dedicated user", confirm_dedicated))
    app.action("zqbo_connect_link")(ack_only)
    app.action("zqbo_rc_open")(ack_only)
