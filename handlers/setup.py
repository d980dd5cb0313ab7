"""Setting a workspace up: the "Add to Slack" success, the welcome DM, the Settings modal, and
uninstalling (`app_uninstalled`, `tokens_revoked`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltResponse
from slack_bolt.oauth.callback_options import FailureArgs, SuccessArgs
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks, slash
from bot.blocks.portfolio import COMPANY_SETTINGS_ACTION
from bot.blocks.setup import (
    COMPANY_FIELDS,
    COMPANY_SETTINGS_CALLBACK,
    FIELDS,
    OPEN_SETTINGS,
    SETTINGS_CALLBACK,
    submitted_digest,
)
from bot.connect import new_error_id
from bot.pages import install_failure_page, install_success_page
from bot.reports import digest as weekly
from bot.services import Services
from bot.tenancy.uninstall import forget_workspace
from bot.tenancy.workspaces import READ_ONLY, NotInstalled, SettingError, parse_setting, scope_for
from handlers.actions import foreign

log = logging.getLogger(__name__)

NOT_ADMIN_FIELD = "Only zqbo admins may change these settings."


def envelope_disagrees(body: dict[str, Any]) -> str:
    """Why an event's `authorizations` (which Bolt takes its workspace from) does not match its
    envelope's team and enterprise, or "". Slack never sends that; refusing it keeps a crafted
    event for one workspace from acting on another. Slack Connect events (is_ext_shared_channel)
    name the other side's team in the envelope by design, and are left to Bolt."""
    if body.get("type") != "event_callback" or body.get("is_ext_shared_channel") is True:
        return ""
    authorizations = body.get("authorizations") or []
    if not authorizations:
        return ""
    first = authorizations[0]
    if (first.get("enterprise_id") or None) != (body.get("enterprise_id") or None):
        return "its authorization names another enterprise"
    org_wide = first.get("is_enterprise_install") in (True, "true") and not first.get("team_id")
    if not org_wide and (first.get("team_id") or None) != (body.get("team_id") or None):
        return "its authorization names another workspace"
    return ""


def installed(services: Services, args: SuccessArgs) -> BoltResponse:
    """Bolt stored the installation: greet the installer with a way to set zqbo up."""
    installation = args.installation
    scope = scope_for(installation.enterprise_id, installation.team_id, installation.is_enterprise_install)
    services.workspaces.forget(scope)  # a reinstall: new token, fresh settings cache
    services.admins.forget(scope)
    if installation.bot_token and installation.user_id:
        client = services.workspaces.client_for(installation.bot_token)
        services.background.submit(_welcome, client, installation.user_id)
    log.info("zqbo installed in workspace %s", scope)
    if installation.is_enterprise_install:
        name, open_in_slack = installation.enterprise_name or "", installation.enterprise_url or ""
        in_browser = ""
    else:
        name, team = installation.team_name or "", installation.team_id
        open_in_slack = f"slack://app?team={team}&id={installation.app_id}"
        in_browser = f"https://app.slack.com/client/{team}"
    return _page(args, 200, install_success_page(name, open_in_slack, in_browser))


def install_failed(services: Services, args: FailureArgs) -> BoltResponse:
    """zqbo's own page for a failed "Add to Slack" (Bolt's says "Oops, Something Went Wrong!"),
    and a sentence in the log — never the code or state."""
    error_id = new_error_id()
    install_url = f"{services.settings.public_url}/slack/install"
    status, html, said = install_failure_page(args.reason, install_url, error_id)
    failure = f" ({type(args.error).__name__})" if args.error else ""
    log.warning("Slack install failed [%s]: %s%s", error_id, said, failure)
    return _page(args, status, html)


def _page(args: SuccessArgs | FailureArgs, status: int, html: str) -> BoltResponse:
    """An HTML page that also clears Bolt's state cookie, as its own pages do."""
    cookie = args.settings.state_utils.build_set_cookie_for_deletion()
    headers: dict[str, str | Sequence[str]] = {
        "Content-Type": "text/html; charset=utf-8",
        "Set-Cookie": cookie,
        "Cache-Control": "no-store",
    }
    return BoltResponse(status=status, headers=headers, body=html)


def _welcome(client: WebClient, user_id: str) -> None:
    try:
        channel = client.conversations_open(users=user_id)["channel"]["id"]
        client.chat_postMessage(channel=channel, **blocks.welcome_dm(user_id).as_kwargs())
    except SlackApiError as exc:
        log.warning("could not send the welcome DM to %s: %s", user_id, exc.response.get("error"))
    except Exception:
        log.exception("could not send the welcome DM to %s", user_id)


def register(app: App, services: Services) -> None:
    workspaces = services.workspaces

    @app.use
    def events_agree_with_their_envelope(body: dict[str, Any], next: Any) -> BoltResponse | None:
        problem = envelope_disagrees(body)
        if problem:
            log.warning(
                "event %s for team %s ignored: %s", body.get("event_id"), body.get("team_id"), problem
            )
            return BoltResponse(status=200, body="")
        next()
        return None

    def ack_at_once(ack: Ack) -> None:
        ack()  # the admin check and views.open run after (the trigger id lasts 3 s from the click)

    def open_settings(body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        user = body.get("user") if isinstance(body.get("user"), dict) else {}
        user_id, scope = str(user.get("id", "")), workspaces.scope_of(context)
        if not workspaces.multi:
            _say(client, body, "This zqbo is set up by its environment (ZQBO_ALERT_CHANNEL and the rest).")
            return
        if foreign(services, body, context):
            _say(client, body, READ_ONLY)
            return
        if not services.admins.is_admin(user_id, scope):
            _say(client, body, f"Only zqbo admins may change its settings: {services.admins.who(scope)}.")
            return
        try:
            client.views_open(
                trigger_id=str(body.get("trigger_id", "")),
                view=blocks.settings_modal(
                    workspaces.get(scope, fresh=True), weekly.settings(services, scope)
                ),
            )
        except SlackApiError as exc:
            log.warning("could not open the Settings modal: %s", exc.response.get("error"))

    def save_settings(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        """Validated field by field; mistakes go back into the modal next to the field."""
        user = body.get("user") if isinstance(body.get("user"), dict) else {}
        user_id, scope = str(user.get("id", "")), workspaces.scope_of(context)
        if not workspaces.multi or not services.admins.is_admin(user_id, scope):
            ack(response_action="errors", errors={FIELDS["alert_channel"]: NOT_ADMIN_FIELD})
            return
        values, errors = {}, {}
        for name, raw in blocks.submitted_values(view).items():
            if isinstance(raw, list):  # admins: picked, not typed
                values[name] = raw[:50]
                continue
            if not raw.strip():
                if name == "alert_channel":
                    errors[FIELDS[name]] = "Pick the channel where alerts go."
                elif name == "check_interval":
                    errors[FIELDS[name]] = "Give an interval from 1m to 24h, e.g. 15m."
                else:
                    values[name] = ""  # emptied: not set
                continue
            try:
                values[name] = parse_setting(name, raw)
            except SettingError as exc:
                errors[FIELDS[name]] = str(exc)[:150]
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        before = workspaces.get(scope, fresh=True).alert_channel
        try:
            workspaces.update(scope, user_id, **values)
        except NotInstalled:
            log.warning("settings of workspace %s not saved: it removed zqbo meanwhile", scope)
            return
        services.admins.forget(scope)
        chosen = submitted_digest(view)
        if chosen is None:
            weekly.turn_off(services, scope)
        elif chosen:  # turned on (or moved): in the time zone of the admin saving it
            weekly.turn_on(services, scope, user_id, *chosen)
        if values.get("alert_channel") and values["alert_channel"] != before:
            slash.channel_chosen(services, scope)
        log.info("workspace %s settings changed by %s: %s", scope, user_id, ", ".join(sorted(values)))

    def gone(context: BoltContext) -> None:
        """Acked at once by Bolt; the clean-up runs after."""

    def forget(event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        if event.get("type") == "tokens_revoked" and not (event.get("tokens") or {}).get("bot"):
            return  # only user tokens: zqbo has none, nothing of it changed
        scope = workspaces.scope_of(context)
        if not scope:
            return
        # Slack sends both events for one uninstall, and a team may reinstall at once: what was
        # installed after the event is not the installation that left.
        when = _float(event.get("event_ts")) or _float(body.get("event_time")) or time.time()
        forget_workspace(services, scope, context.enterprise_id, context.team_id, before=when)

    app.action(OPEN_SETTINGS)(ack=ack_at_once, lazy=[open_settings])
    app.view(SETTINGS_CALLBACK)(save_settings)

    def may_change_company(body: dict[str, Any], context: BoltContext, realm: str) -> str:
        """Why this person may not change this company's settings, or "" when they may: it must
        be a company of the pressing workspace, and they its admin or the workspace's."""
        user_id, scope = _user_id(body), workspaces.scope_of(context)
        if foreign(services, body, context):
            return READ_ONLY
        if not slash.owned(services, scope, realm):
            return "That company is not one zqbo watches for this workspace; nothing was changed."
        if not services.admins.is_admin_for(user_id, scope, realm):
            return f"Only zqbo admins may change this company's settings: {services.admins.who(scope)}."
        return ""

    def open_company_settings(body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        actions = body.get("actions") if isinstance(body.get("actions"), list) else []
        realm = str(actions[0].get("value", "")) if actions and isinstance(actions[0], dict) else ""
        refusal = may_change_company(body, context, realm)
        if refusal:
            _say(client, body, refusal)
            return
        try:
            client.views_open(
                trigger_id=str(body.get("trigger_id", "")),
                view=blocks.company_settings_modal(workspaces.company(realm)),
            )
        except SlackApiError as exc:
            log.warning("could not open the Company settings modal: %s", exc.response.get("error"))

    def save_company_settings(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
    ) -> None:
        realm = str(view.get("private_metadata") or "")
        refusal = may_change_company(body, context, realm)
        if refusal:  # said next to the view's first field (Slack wants errors on an input block)
            inputs = [b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)]
            field = next((i for i in inputs if i in COMPANY_FIELDS.values()), None)
            if field:
                ack(response_action="errors", errors={field: refusal[:150]})
            else:
                ack()
            return
        values: dict[str, Any] = {}
        for name, raw in blocks.submitted_values(view, COMPANY_FIELDS).items():
            if isinstance(raw, list):
                values[name] = raw[:50]
            elif not raw.strip():
                values[name] = ""  # emptied: the workspace's again
            else:
                try:
                    values[name] = parse_setting(name, raw)
                except SettingError as exc:
                    ack(response_action="errors", errors={COMPANY_FIELDS[name]: str(exc)[:150]})
                    return
        ack()
        before = workspaces.company(realm).alert_channel
        try:
            company = workspaces.update_company(realm, _user_id(body), **values)
        except NotInstalled:
            log.warning("settings of company %s not saved: its workspace removed zqbo meanwhile", realm)
            return
        if company.alert_channel != before:
            slash.company_channel_chosen(services, realm)
        log.info("company %s settings changed by %s: %s", realm, _user_id(body), ", ".join(sorted(values)))

    app.action(COMPANY_SETTINGS_ACTION)(ack=ack_at_once, lazy=[open_company_settings])
    app.view(COMPANY_SETTINGS_CALLBACK)(save_company_settings)

    def org_changed(event: dict[str, Any], context: BoltContext) -> None:
        """An org-wide install gained or lost workspaces: its data stays the org's; who counts as
        one of the org's people is asked of Slack afresh."""
        scope = workspaces.scope_of(context)
        workspaces.forget(scope)
        log.info(
            "org %s: %s %s", scope, event.get("type"), ",".join(map(str, event.get("team_ids") or []))[:200]
        )

    app.event("team_access_granted")(org_changed)
    app.event("team_access_revoked")(org_changed)
    app.event("app_uninstalled")(ack=gone, lazy=[forget])
    app.event("tokens_revoked")(ack=gone, lazy=[forget])


def _user_id(body: dict[str, Any]) -> str:
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    return str(user.get("id", ""))


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _say(client: WebClient, body: dict[str, Any], text: str) -> None:
    """A private answer where the button was (a DM or App Home has no response_url)."""
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    channel = body.get("channel") if isinstance(body.get("channel"), dict) else {}
    try:
        if channel.get("id"):
            client.chat_postEphemeral(
                channel=channel["id"], user=user.get("id", ""), **blocks.notice(text).as_kwargs()
            )
        else:
            dm = client.conversations_open(users=user.get("id", ""))["channel"]["id"]
            client.chat_postMessage(channel=dm, **blocks.notice(text).as_kwargs())
    except SlackApiError as exc:
        log.warning("could not answer the Settings button: %s", exc.response.get("error"))
