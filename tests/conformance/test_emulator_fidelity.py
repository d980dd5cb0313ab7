"""The emulators hold to real payloads (tests/conformance/, each with its provenance): what they
answer through the real clients and what they send to an app carries at least the keys and JSON
types of Slack's and Intuit's own (shape.py). A field real Slack sends and the emulator lacks
fails here: e.g. a block_actions `message` without its string `team`. And every Web API call the
bot makes fits Slack's OpenAPI spec."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse
from xml.etree import ElementTree

import pytest
import requests
from flask import Flask, Response
from flask import request as http_request
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from slack_sdk import WebClient
from werkzeug.serving import make_server

from bot.emulator import SlackEmulator
from tests.conformance.shape import HERE as CORPUS
from tests.conformance.shape import sample, shape_problems, slack_spec, spec_problems, type_problems
from tests.conftest import DEDICATED, JANE, REALM

# Keys a real sample has only in a context our call is not in (a missing key or a null passes).
THREAD_ONLY = (
    "container.thread_ts",
    "message.thread_ts",
    "message.parent_user_id",
    "thread_ts",  # the same, held against a message itself
    "parent_user_id",
    # what the pressed button holds is the app's: a value, a style, only if it gave them
    "actions[*].value",
    "actions[*].style",
)
# The 2020 captures are of a legacy bot message (subtype bot_message, username); modern bot-token
# messages have neither (block_actions.message.json, 2026) and carry user/app_id/team instead.
LEGACY_BOT_MESSAGE = ("message.subtype", "message.username", *THREAD_ONLY)
# The OpenAPI examples (2021) show a legacy bot message with attachments; zqbo sends blocks.
POST_MESSAGE_DOCS = ("message.subtype", "message.username", "message.attachments")
# Only an install that asked for user scopes gets a user token back.
USER_TOKEN_ONLY = ("authed_user.access_token", "authed_user.scope", "authed_user.token_type")
# A Home view has no title, submit or close (views.publish.json: submit/close null).
HOME_VIEW = ("view.title", "view.close", "view.submit")


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emu:
        yield emu


def web(slack: SlackEmulator, token: str | None = None) -> WebClient:
    return WebClient(token=token or slack.bot_token, base_url=slack.api_url)


def check(real: Any, ours: Any, optional: tuple[str, ...] = ()) -> None:
    problems = shape_problems(real, ours, optional)
    assert problems == [], "the emulator lacks what the real one sends:\n" + "\n".join(problems)


def check_types(union_name: str, ours: Any) -> None:
    problems = type_problems(sample(union_name), ours)
    assert problems == [], "types differ from the union-of-fields sample:\n" + "\n".join(problems)


ALERT_BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "Automated entries logged under a person"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Payment ZP-1* 120.50"}},
    {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "zqbo_alert_ack", "text": {"type": "plain_text", "text": "Ack"}},
            {
                "type": "button",
                "action_id": "zqbo_alert_mute",
                "value": "Payment:1",
                "style": "danger",
                "text": {"type": "plain_text", "text": "Mute 24h"},
            },
        ],
    },
]


# Web API responses, through slack_sdk ------------------------------------------------------------
def test_chat_post_message_update_and_history(slack):
    client = web(slack)
    posted = client.chat_postMessage(channel="C0ALERTS", text="alert", blocks=ALERT_BLOCKS).data
    check(sample("slack/web_api/chat.postMessage"), posted, POST_MESSAGE_DOCS)
    # the message as Slack keeps it is the one a button press embeds (a 2026 capture)
    check(sample("slack/inbound/block_actions.message")["message"], posted["message"], THREAD_ONLY)
    check_types("slack/web_api/chat.postMessage.java_sdk_all_fields", posted)

    updated = client.chat_update(channel="C0ALERTS", ts=posted["ts"], text="acked", blocks=ALERT_BLOCKS[:2])
    check(sample("slack/web_api/chat.update"), updated.data)
    check(sample("slack/inbound/block_actions.message")["message"], updated["message"], THREAD_ONLY)
    check_types("slack/web_api/chat.update.java_sdk_all_fields", updated.data)

    history = client.conversations_history(channel="C0ALERTS").data
    check(sample("slack/web_api/conversations.history"), history)
    check(sample("slack/inbound/block_actions.message")["message"], history["messages"][0], THREAD_ONLY)
    check_types("slack/web_api/conversations.history.java_sdk_all_fields", history)


def test_ephemeral_open_info_and_users(slack):
    client = web(slack)
    ephemeral = client.chat_postEphemeral(channel="C0ALERTS", user="U0ADMIN", text="only you").data
    check(sample("slack/web_api/chat.postEphemeral"), ephemeral)
    check_types("slack/web_api/chat.postEphemeral.java_sdk_all_fields", ephemeral)
    opened = client.conversations_open(users="U0ADMIN").data
    check(sample("slack/web_api/conversations.open"), opened)
    check_types("slack/web_api/conversations.open.java_sdk_all_fields", opened)
    info = client.conversations_info(channel="C0ALERTS").data  # the sample is a public channel's
    check(sample("slack/web_api/conversations.info"), info)
    check_types("slack/web_api/conversations.info.java_sdk_all_fields", info)
    check_types(
        "slack/web_api/conversations.info.java_sdk_all_fields",
        client.conversations_info(channel=opened["channel"]["id"]).data,
    )
    user = client.users_info(user="U0ADMIN").data
    check(sample("slack/web_api/users.info"), user)
    check_types("slack/web_api/users.info.java_sdk_all_fields", user)


def test_files_upload_v2_as_slack_answers_it(slack):
    """The three steps of files_upload_v2 through slack_sdk: the answers have the union sample's
    keys and types, and the emulator keeps the bytes, shared in the channel asked."""
    client = web(slack)
    answer = client.files_upload_v2(
        channel="C0ALERTS", file=b"a,b\n1,2\n", filename="flagged.csv", title="Flagged", initial_comment="hi"
    ).data
    [start] = slack.calls_to("files.getUploadURLExternal")
    assert start.args["filename"] == "flagged.csv" and start.args["length"] == "8"
    check_types("slack/web_api/files.completeUploadExternal.java_sdk_all_fields", answer)
    assert answer["files"][0]["title"] == "Flagged"
    [shared] = slack.shared_files("C0ALERTS")
    assert shared.data == b"a,b\n1,2\n" and shared.initial_comment == "hi"
    url = client.files_getUploadURLExternal(filename="x.png", length=3).data
    check_types("slack/web_api/files.getUploadURLExternal.java_sdk_all_fields", url)
    assert url["upload_url"].startswith(slack.url + "/upload/v1/")
    # a file never uploaded cannot be shared; a channel without the bot refuses it
    refused = requests.post(
        slack.api_url + "files.completeUploadExternal",
        data={"files": json.dumps([{"id": url["file_id"]}]), "channel_id": "C0ALERTS"},
        headers={"Authorization": f"Bearer {slack.bot_token}"},
    ).json()
    assert refused == {"ok": False, "error": "file_not_found"}


def test_auth_test_and_revoke(slack):
    client = web(slack)
    me = client.auth_test().data
    check(sample("slack/web_api/auth.test"), me)
    check_types("slack/web_api/auth.test.java_sdk_all_fields", me)
    revoked = client.auth_revoke(test=True).data
    check(sample("slack/web_api/auth.revoke"), revoked)
    check_types("slack/web_api/auth.revoke.java_sdk_all_fields", revoked)


MODAL = {
    "type": "modal",
    "callback_id": "zqbo_settings",
    "title": {"type": "plain_text", "text": "zqbo settings"},
    "submit": {"type": "plain_text", "text": "Save"},
    "close": {"type": "plain_text", "text": "Cancel"},
    "private_metadata": "T0EMU",
    "blocks": [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "Where alerts go"},
            "accessory": {
                "type": "button",
                "action_id": "zqbo_help",
                "text": {"type": "plain_text", "text": "Help"},
                "value": "help",
            },
        },
        {
            "type": "input",
            "block_id": "channel",
            "label": {"type": "plain_text", "text": "Alert channel"},
            "element": {"type": "conversations_select", "action_id": "pick_channel"},
        },
        {
            "type": "input",
            "block_id": "email",
            "optional": True,
            "label": {"type": "plain_text", "text": "Dedicated user's email"},
            "element": {"type": "plain_text_input", "action_id": "email_text"},
        },
        {
            "type": "input",
            "block_id": "cadence",
            "label": {"type": "plain_text", "text": "Cadence"},
            "element": {
                "type": "static_select",
                "action_id": "pick_cadence",
                "options": [{"text": {"type": "plain_text", "text": "Daily"}, "value": "daily"}],
            },
        },
    ],
}
HOME = {
    "type": "home",
    "blocks": [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Setup*"},
            "accessory": {
                "type": "button",
                "action_id": "zqbo_open_settings",
                "text": {"type": "plain_text", "text": "Settings"},
            },
        },
        {"type": "divider"},
    ],
}


def test_views_open_update_publish(slack):
    client = web(slack)
    opened = client.views_open(trigger_id=slack.new_trigger_id(), view=MODAL).data
    check(sample("slack/web_api/views.open"), opened)
    check_types("slack/web_api/views.open.java_sdk_all_fields", opened)
    updated = client.views_update(view_id=opened["view"]["id"], view=MODAL).data
    check(sample("slack/web_api/views.update"), updated)
    check_types("slack/web_api/views.update.java_sdk_all_fields", updated)
    published = client.views_publish(user_id="U0ADMIN", view=HOME).data
    check(sample("slack/web_api/views.publish"), published)
    check_types("slack/web_api/views.publish.java_sdk_all_fields", published)


def test_oauth_v2_access_team_and_org_install(slack):
    slack.redirect_uri = "https://zqbo.example.com/slack/oauth_redirect"
    slack.add_team("T0ORGA", "Org East", enterprise_id="E0ORG", enterprise_name="Orgco")
    slack.add_user("U0OADMIN", "oona", "Oona Admin", "oona@org.example", team_id="T0ORGA", is_admin=True)
    for org, real, optional in (
        (False, "slack/web_api/oauth.v2.access", USER_TOKEN_ONLY),
        # an org-wide install answers team null (the sample's null accepts ours)
        (True, "slack/web_api/oauth.v2.access.org_install", USER_TOKEN_ONLY),
    ):
        code = _approve(slack, "T0ORGA" if not org else "E0ORG", "U0OADMIN", org)
        answer = WebClient(base_url=slack.api_url).oauth_v2_access(
            client_id=slack.client_id, client_secret=slack.client_secret, code=code
        )
        check(sample(real), answer.data, optional)
        check_types("slack/web_api/oauth.v2.access.java_sdk_all_fields", answer.data)


def test_sign_in_with_slack_token_and_user_info(slack):
    """Sign in with Slack's answers, through slack_sdk: the token (with a verifiable RS256
    id_token) and userInfo have the keys and types of Slack's samples; codes work once, for the
    redirect_uri they were issued to, and only such redirect URLs are accepted when the app has any."""
    import jwt

    redirect = "https://zqbo.example.com/qbo/oidc/callback"
    slack.openid.redirect_urls = [redirect]
    base = f"{slack.url}/openid/connect/authorize?response_type=code&client_id={slack.client_id}"
    assert (
        requests.get(f"{base}&scope=openid&redirect_uri=https://evil.example/cb", timeout=5).status_code
        == 400
    )
    assert requests.get(f"{base}&scope=profile&redirect_uri={redirect}", timeout=5).status_code == 400
    form = {
        "client_id": slack.client_id,
        "redirect_uri": redirect,
        "state": "s",
        "nonce": "n0nce",
        "decision": "allow",
        "user_id": "U0ADMIN",
    }
    approved = requests.post(
        f"{slack.url}/openid/connect/authorize/approve", data=form, allow_redirects=False, timeout=5
    )
    code = parse_qs(urlparse(approved.headers["Location"]).query)["code"][0]
    client = WebClient(base_url=slack.api_url)
    token = client.openid_connect_token(
        client_id=slack.client_id, client_secret=slack.client_secret, code=code, redirect_uri=redirect
    )
    check_types("slack/web_api/openid.connect.token.java_sdk_all_fields", token.data)
    assert token["token_type"] == "Bearer" and token["access_token"].startswith("xoxp-")
    keys = requests.get(f"{slack.url}/openid/connect/keys", timeout=5).json()["keys"]
    claims = jwt.decode(
        token["id_token"], jwt.PyJWK(keys[0]).key, algorithms=["RS256"], audience=slack.client_id
    )
    assert claims["https://slack.com/user_id"] == "U0ADMIN" and claims["nonce"] == "n0nce"
    info = client.openid_connect_userInfo(token=token["access_token"])
    check(sample("slack/web_api/openid.connect.userInfo"), info.data)
    assert info["https://slack.com/team_id"] == "T0EMU"
    again = WebClient(base_url=slack.api_url)
    with pytest.raises(Exception, match="invalid_code"):
        again.openid_connect_token(
            client_id=slack.client_id, client_secret=slack.client_secret, code=code, redirect_uri=redirect
        )


def _approve(slack: SlackEmulator, target: str, user_id: str, org: bool) -> str:
    form = {
        "client_id": slack.client_id,
        "scope": "commands,chat:write",
        "state": "s",
        "user_id": user_id,
        ("enterprise_id" if org else "team_id"): target,
    }
    resp = requests.post(
        f"{slack.url}/oauth/v2/authorize/approve", data=form, allow_redirects=False, timeout=5
    )
    assert resp.status_code == 302, resp.text
    return parse_qs(urlparse(resp.headers["Location"]).query)["code"][0]


# what the emulator sends to an app ----------------------------------------------------------------
class Receiver:
    """A stand-in app: records each request Slack's emulator sends, decoded as an app reads it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        app = Flask("receiver")

        @app.post("/slack/events")
        def events() -> Response:
            body = http_request.get_data()
            if http_request.content_type.startswith("application/json"):
                self.received.append(json.loads(body))
            else:
                form = dict(http_request.form.items())
                self.received.append(json.loads(form["payload"]) if "payload" in form else form)
            return Response("", status=200)

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/slack/events"

    def last(self) -> dict[str, Any]:
        return self.received[-1]

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def app() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


def test_slash_commands(slack, app):
    slack.send_command(app.url, "status")
    command = app.last()
    check(sample("slack/inbound/slash_command.plain"), command)
    check(sample("slack/inbound/slash_command.plain_with_args"), command)
    slack.add_team("T0ORGA", "Org East", enterprise_id="E0ORG", enterprise_name="Orgco")
    slack.add_user("U0OADMIN", "oona", "Oona Admin", "oona@org.example", team_id="T0ORGA")
    slack.add_channel("C0ORGA", "east", team_id="T0ORGA")
    slack.send_command(app.url, "status", user_id="U0OADMIN", team_id="T0ORGA", channel_id="C0ORGA")
    check(sample("slack/inbound/slash_command.enterprise_grid"), app.last())


def test_button_on_a_channel_message(slack, app):
    """The case a real trial caught: the embedded message carries `team` as a string."""
    posted = web(slack).chat_postMessage(channel="C0ALERTS", text="alert", blocks=ALERT_BLOCKS)
    [message] = slack.messages("C0ALERTS")
    slack.press_button(app.url, message, "zqbo_alert_mute")
    payload = app.last()
    check(sample("slack/inbound/block_actions.message"), payload, THREAD_ONLY)
    check(sample("slack/inbound/block_actions.message_2020"), payload, LEGACY_BOT_MESSAGE)
    check_types("slack/inbound/block_actions.java_sdk_all_fields", payload)
    assert payload["message"]["team"] == "T0EMU" and payload["message"]["ts"] == posted["ts"]
    [action] = payload["actions"]
    actions_block = posted["message"]["blocks"][2]
    assert action["block_id"] == actions_block["block_id"] and action["style"] == "danger"
    assert payload["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": "C0ALERTS",
        "is_ephemeral": False,
    }


def test_button_in_a_dm(slack, app):
    client = web(slack)
    dm = client.conversations_open(users="U0ADMIN")["channel"]["id"]
    client.chat_postMessage(channel=dm, text="checklist", blocks=ALERT_BLOCKS)
    [message] = slack.messages(dm)
    slack.press_button(app.url, message, "zqbo_alert_ack", channel_id=dm)
    payload = app.last()
    # no recorded DM press exists (corpus README, Missing): the channel one is the nearest shape
    check(sample("slack/inbound/block_actions.message"), payload, THREAD_ONLY)
    assert payload["channel"] == {"id": dm, "name": "directmessage"}


def test_button_on_an_ephemeral_message(slack, app):
    answer = {"text": "status", "blocks": ALERT_BLOCKS}  # a command's answer: Slack keeps none
    slack.press_button(app.url, answer, "zqbo_alert_ack")
    payload = app.last()
    for real in ("block_actions.ephemeral", "block_actions.ephemeral_2020"):
        check(sample(f"slack/inbound/{real}"), payload, THREAD_ONLY)
    assert "message" not in payload and payload["container"]["is_ephemeral"] is True


def test_button_in_a_modal_and_in_app_home(slack, app):
    client = web(slack)
    opened = client.views_open(trigger_id=slack.new_trigger_id(), view=MODAL)["view"]
    slack.press_button(app.url, opened, "zqbo_help")
    payload = app.last()
    check(sample("slack/inbound/block_actions.modal"), payload)
    check_types("slack/inbound/block_actions.java_sdk_all_fields", payload)
    assert payload["container"] == {"type": "view", "view_id": opened["id"]}

    client.views_publish(user_id="U0ADMIN", view=HOME)
    press, response_url = slack.press_button(app.url, slack.home_views["U0ADMIN"], "zqbo_open_settings")
    payload = app.last()
    # no recorded App Home press exists (corpus README, Missing): the modal one is the nearest
    check(sample("slack/inbound/block_actions.modal"), payload, HOME_VIEW)
    assert payload["view"]["type"] == "home" and response_url == "" and "response_url" not in payload


def test_view_submission(slack, app):
    opened = web(slack).views_open(trigger_id=slack.new_trigger_id(), view=MODAL)["view"]
    values = {"pick_channel": "C0ALERTS", "email_text": "x@acme.example", "pick_cadence": "daily"}
    slack.send_view_submission(app.url, opened["id"], values)
    payload = app.last()
    check(sample("slack/inbound/view_submission"), payload)
    check(sample("slack/inbound/view_submission_2020"), payload)
    check_types("slack/inbound/view_submission", payload)


def test_event_envelopes(slack, app):
    web(slack).views_publish(user_id="U0ADMIN", view=HOME)
    slack.send_event(app.url, {"type": "app_home_opened", "user": "U0ADMIN"})
    envelope = app.last()
    check(sample("slack/inbound/event_callback.app_home_opened"), envelope["event"])
    real_envelope = {
        k: v for k, v in sample("slack/inbound/event_callback.message_im").items() if k != "event"
    }
    check(real_envelope, envelope)  # a 2026 capture of a non-Grid workspace's envelope
    check_types("slack/inbound/event_callback.app_home_opened.java_sdk_all_fields", envelope)

    slack.add_team("T0ORGA", "Org East", enterprise_id="E0ORG", enterprise_name="Orgco")
    slack.add_user("U0OADMIN", "oona", "Oona Admin", "oona@org.example", team_id="T0ORGA", is_admin=True)
    slack.workspaces.issue(
        team_id=None,
        enterprise_id="E0ORG",
        is_enterprise_install=True,
        scope="commands",
        installer_id="U0OADMIN",
        now=slack.clock.now(),
    )
    slack.send_event(
        app.url, {"type": "app_home_opened", "user": "U0OADMIN", "tab": "messages"}, team_id="T0ORGA"
    )
    check(sample("slack/inbound/event_callback.app_home_opened.org_install"), app.last())

    slack.add_team("T0BETA", "Beta Ltd", enterprise_id="E0BETA", enterprise_name="Beta Group")
    slack.add_user("U0BADMIN", "bea", "Bea Admin", "bea@beta.example", team_id="T0BETA", is_admin=True)
    slack.workspaces.issue(
        team_id="T0BETA",
        enterprise_id="E0BETA",
        is_enterprise_install=False,
        scope="commands",
        installer_id="U0BADMIN",
        now=slack.clock.now(),
    )
    slack.uninstall(app.url, "T0BETA")
    revoked, uninstalled = app.received[-2:]
    for kind, ours in (("tokens_revoked", revoked), ("app_uninstalled", uninstalled)):
        check(sample(f"slack/inbound/event_callback.{kind}"), ours)
        check(sample(f"slack/inbound/event_callback.{kind}.with_authorizations"), ours)
        check_types(f"slack/inbound/event_callback.{kind}.java_sdk_all_fields", ours)


# Intuit OAuth / OpenID and QBO, over real HTTP ------------------------------------------------------
# The emulator leaves id_token out (API_FACTS: sign real RS256 id_tokens or send none; the bot
# learns who authorised from userinfo).
NO_ID_TOKEN = ("id_token",)
# userinfo's phone and address claims come only with the phone / address scopes zqbo does not ask.
EMAIL_PROFILE_ONLY = ("phoneNumber", "phoneNumberVerified", "address")
# What QBO itself puts on every entity; the rest of an entity (lines, refs) is the test's input.
QBO_SYSTEM_FIELDS = ("domain", "sparse", "Id", "SyncToken", "MetaData")


def system_fields(entity: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entity.items() if k in QBO_SYSTEM_FIELDS}


def fault_xml_as_json(name: str) -> dict[str, Any]:
    """A QBO Fault sample seen only as XML, in QBO's JSON form (attributes become keys)."""
    root = ElementTree.fromstring((CORPUS / f"{name}.xml").read_text())
    ns = {"i": "http://schema.intuit.com/finance/v3"}
    fault = root.find("i:Fault", ns)
    assert fault is not None
    errors = [
        {
            "Message": e.findtext("i:Message", "", ns),
            "Detail": e.findtext("i:Detail", "", ns),
            "code": e.get("code"),
        }
        for e in fault.findall("i:Error", ns)
    ]
    return {"Fault": {"Error": errors, "type": fault.get("type")}, "time": root.get("time")}


@pytest.fixture
def connected(intuit):
    """Tokens for the dedicated user on REALM, from the code exchange (the raw token response)."""
    auth_client = AuthClient(
        intuit.client_id, intuit.client_secret, "http://127.0.0.1:9/cb", intuit.discovery_url
    )
    url = auth_client.get_authorization_url(
        [Scopes.ACCOUNTING, Scopes.OPENID, Scopes.EMAIL, Scopes.PROFILE], "s"
    )
    code = parse_qs(urlparse(intuit.authorize(url, as_user=DEDICATED)).query)["code"][0]
    answer = requests.post(
        f"{intuit.url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1:9/cb"},
        auth=(intuit.client_id, intuit.client_secret),
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def qbo_get(intuit, token: str, path: str, **params: Any) -> requests.Response:
    return requests.get(
        f"{intuit.api_url}/company/{REALM}/{path}",
        params={"minorversion": 75, **params},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=5,
    )


def test_intuit_discovery_token_and_userinfo(intuit, connected):
    discovery = requests.get(intuit.discovery_url, timeout=5).json()
    check(sample("intuit/oauth/discovery.sandbox"), discovery)
    check(sample("intuit/oauth/discovery.production"), discovery)
    check(sample("intuit/oauth/token"), connected, NO_ID_TOKEN)
    assert connected["access_token"].startswith("eyJ") and len(connected["access_token"]) > 900
    assert connected["refresh_token"].startswith("AB11") and len(connected["refresh_token"]) == 50
    again = requests.post(
        f"{intuit.url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": connected["refresh_token"]},
        auth=(intuit.client_id, intuit.client_secret),
        timeout=5,
    )
    check(sample("intuit/oauth/token"), again.json(), NO_ID_TOKEN)
    stale = requests.post(  # the old refresh token, once rotated
        f"{intuit.url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": connected["refresh_token"]},
        auth=(intuit.client_id, intuit.client_secret),
        timeout=5,
    )
    assert stale.status_code == 400
    check(sample("intuit/oauth/token.invalid_grant"), stale.json())
    userinfo = requests.get(
        f"{intuit.url}/v1/openid_connect/userinfo",
        headers={"Authorization": f"Bearer {again.json()['access_token']}"},
        timeout=5,
    )
    check(sample("intuit/oauth/userinfo"), userinfo.json(), EMAIL_PROFILE_ONLY)


def test_qbo_companyinfo_query_and_cdc(intuit, clock, connected):
    token = connected["access_token"]
    check(sample("qbo/companyinfo"), qbo_get(intuit, token, f"companyinfo/{REALM}").json())

    since = clock.now()
    clock.advance(60)
    for _ in range(2):
        intuit.add_entry(REALM, "SalesReceipt", by=JANE)
        intuit.add_entry(REALM, "Estimate", by=DEDICATED)
    query = qbo_get(intuit, token, "query", query="select * from SalesReceipt").json()
    real = sample("qbo/query.sales_receipt")
    real["QueryResponse"]["SalesReceipt"] = [system_fields(e) for e in real["QueryResponse"]["SalesReceipt"]]
    check(real, query)
    check(
        sample("qbo/query.count"),
        qbo_get(intuit, token, "query", query="select count(*) from Payment").json(),
    )
    past_end = qbo_get(intuit, token, "query", query="select * from SalesReceipt startposition 50").json()
    check(sample("qbo/query.page_past_end"), past_end)
    assert past_end["QueryResponse"] == {}

    cdc = qbo_get(intuit, token, "cdc", entities="Estimate", changedSince=since.isoformat()).json()
    real = sample("qbo/cdc")
    for entry in real["CDCResponse"][0]["QueryResponse"]:
        entry["Estimate"] = [system_fields(e) for e in entry["Estimate"]]
    check(real, cdc)


def test_qbo_fault_bodies(intuit, connected):
    token = connected["access_token"]
    bad_query = qbo_get(intuit, token, "query", query="select * from")
    assert bad_query.status_code == 400
    check(sample("qbo/fault_400_query"), bad_query.json())
    unauthorised = qbo_get(intuit, "not-a-token", f"companyinfo/{REALM}")
    assert unauthorised.status_code == 401
    check(sample("qbo/fault_401"), unauthorised.json())
    check(sample("qbo/fault_401.malformed_token"), unauthorised.json())
    for status, real in ((403, "qbo/fault_403"), (429, None), (500, None)):
        intuit.fail_next("companyinfo", status)
        answer = qbo_get(intuit, token, f"companyinfo/{REALM}")
        assert answer.status_code == status
        if real:
            check(sample(real), answer.json())
            check(sample(f"{real}.application_authorization_failed"), answer.json())
        else:
            check(fault_xml_as_json(f"qbo/fault_{status}"), answer.json())


# the checks themselves ------------------------------------------------------------------------------
def test_the_check_catches_what_the_trial_caught():
    real = sample("slack/inbound/block_actions.message")
    without_team = json.loads(json.dumps(real))
    del without_team["message"]["team"]
    assert shape_problems(real, without_team, THREAD_ONLY) == ["message.team: missing"]
    as_object = json.loads(json.dumps(real))
    as_object["message"]["team"] = {"id": "T0EMU"}
    assert shape_problems(real, as_object) == ["message.team: string in the sample, object here"]
    no_block_ids = json.loads(json.dumps(real))
    for block in no_block_ids["message"]["blocks"]:
        del block["block_id"]
    assert shape_problems(real, no_block_ids) == [
        "message.blocks[0].block_id: missing",
        "message.blocks[1].block_id: missing",
    ]


def test_the_spec_check_catches_bad_calls():
    spec = slack_spec()
    assert spec_problems(spec, "chat.postMessage", {"channel": "C1", "text": "x"}, frozenset()) == []
    assert spec_problems(spec, "chat.postMessage", {"text": "x"}, frozenset()) == [
        "chat.postMessage: required channel missing"
    ]
    assert spec_problems(
        spec, "chat.update", {"channel": "C1", "ts": "1.2", "colour": "red"}, frozenset()
    ) == ["chat.update: colour is not an argument of chat.update"]
    assert spec_problems(spec, "conversations.history", {"channel": "C1", "limit": "ten"}, frozenset()) == [
        "conversations.history: limit='ten' is not a integer"
    ]
    assert spec_problems(spec, "chat.postMessages", {}, frozenset()) == ["chat.postMessages: not in the spec"]
