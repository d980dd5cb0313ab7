"""The Slack emulator as many workspaces: OAuth v2 install (driven by a real Bolt app with
OAuthSettings and by slack_sdk), tokens scoped to their team or organisation, rotation, revocation
and uninstall, modals and view submissions. Everything goes over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from flask import Flask, Response
from flask import request as http_request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import FileInstallationStore
from slack_sdk.oauth.state_store import FileOAuthStateStore
from slack_sdk.signature import SignatureVerifier
from werkzeug.serving import make_server

from bot.clock import FakeClock
from bot.emulator import SlackEmulator
from bot.emulator.slack import NotAValidCommand

REDIRECT = "https://zqbo.example.com/slack/oauth_redirect"
SCOPES = "commands,chat:write,users:read"


def web(slack: SlackEmulator, token: str) -> WebClient:
    return WebClient(token=token, base_url=slack.api_url)


def api_error(call, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(SlackApiError) as err:
        call(*args, **kwargs)
    return err.value.response["error"]


def add_beta(slack: SlackEmulator) -> None:
    slack.add_team("T0BETA", "Beta Ltd")
    slack.add_user("U0BADMIN", "bea", "Bea Admin", "bea@beta.example", team_id="T0BETA", is_admin=True)
    slack.add_channel("C0BETA", "beta-alerts", team_id="T0BETA")


def add_org(slack: SlackEmulator) -> None:
    slack.add_team("T0ORGA", "Org East", enterprise_id="E0ORG", enterprise_name="Orgco")
    slack.add_team("T0ORGB", "Org West", enterprise_id="E0ORG")
    slack.add_user("U0OADMIN", "oona", "Oona Admin", "oona@org.example", team_id="T0ORGA", is_admin=True)
    slack.add_user("U0OWEST", "wes", "Wes West", "wes@org.example", team_id="T0ORGB")
    slack.add_channel("C0ORGA", "east", team_id="T0ORGA")
    slack.add_channel("C0ORGB", "west", team_id="T0ORGB")


def approve(
    slack: SlackEmulator,
    *,
    team_id: str | None = None,
    enterprise_id: str | None = None,
    user_id: str = "U0BADMIN",
    redirect_uri: str = REDIRECT,
    state: str = "st-1",
) -> str:
    """What the consent page's Allow button posts; returns the code Slack redirects with."""
    fields = {
        "client_id": slack.client_id,
        "scope": SCOPES,
        "state": state,
        "redirect_uri": redirect_uri,
        "user_id": user_id,
        **({"team_id": team_id} if team_id else {"enterprise_id": enterprise_id or ""}),
    }
    resp = requests.post(
        f"{slack.url}/oauth/v2/authorize/approve", data=fields, allow_redirects=False, timeout=5
    )
    assert resp.status_code == 302, resp.text
    location = urlparse(resp.headers["Location"])
    assert location.geturl().startswith(redirect_uri)
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


def exchange(slack: SlackEmulator, code: str, **overrides: Any) -> dict[str, Any]:
    args = {"client_id": slack.client_id, "client_secret": slack.client_secret, "code": code}
    args["redirect_uri"] = REDIRECT
    args.update(overrides)
    return WebClient(base_url=slack.api_url).oauth_v2_access(**args).data  # type: ignore[return-value]


def eventually(check, timeout: float = 5.0) -> bool:
    """Bolt runs listeners after the ack: wait for what they do."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# a signed-request receiver and a real hosted Bolt app -----------------------------------------------
def serve(app: Flask) -> tuple[Any, str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


@dataclass
class Receiver:
    """Records what Slack delivers (after checking Slack's signature) and answers `reply`."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    reply: tuple[str, int] = ("", 200)


@pytest.fixture
def receiver(slack: SlackEmulator) -> Iterator[Receiver]:
    rec = Receiver()
    verifier = SignatureVerifier(slack.signing_secret)
    app = Flask("receiver")

    @app.post("/slack/events")
    def events() -> Response:
        body = http_request.get_data()
        if not verifier.is_valid_request(body, dict(http_request.headers)):
            return Response("bad signature", status=401)
        if http_request.content_type.startswith("application/json"):
            rec.received.append(json.loads(body))
        else:
            form = {k: v for k, v in http_request.form.items()}
            rec.received.append(json.loads(form["payload"]) if "payload" in form else form)
        text, status = rec.reply
        return Response(text, status=status, content_type="application/json" if text else "text/plain")

    server, base = serve(app)
    rec.url = f"{base}/slack/events"
    yield rec
    server.shutdown()


@dataclass
class HostedBolt:
    url: str
    installations: FileInstallationStore

    @property
    def events_url(self) -> str:
        return f"{self.url}/slack/events"


@pytest.fixture
def bolt(slack: SlackEmulator, tmp_path, request: pytest.FixtureRequest) -> Iterator[HostedBolt]:
    """A minimal multi-workspace Bolt app (OAuthSettings, file stores) served by Flask: it
    installs, answers /zqbo in each workspace with that workspace's token, and forgets a
    workspace on app_uninstalled / tokens_revoked. Its /slack/install renders an Add to Slack
    page, or (parametrized False) redirects straight to Slack."""
    server = make_server("127.0.0.1", 0, None, threaded=True)  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{server.server_port}"
    installations = FileInstallationStore(base_dir=str(tmp_path / "installations"))
    app = App(
        signing_secret=slack.signing_secret,
        client=WebClient(base_url=slack.api_url),
        oauth_settings=OAuthSettings(
            client_id=slack.client_id,
            client_secret=slack.client_secret,
            scopes=SCOPES.split(","),
            redirect_uri=f"{url}/slack/oauth_redirect",
            authorization_url=f"{slack.url}/oauth/v2/authorize",
            installation_store=installations,
            state_store=FileOAuthStateStore(expiration_seconds=600, base_dir=str(tmp_path / "states")),
            install_page_rendering_enabled=getattr(request, "param", True),
        ),
    )
    app.enable_token_revocation_listeners()

    @app.command("/zqbo")
    def hello(ack, command, client, context) -> None:
        ack()
        client.chat_postMessage(channel=command["channel_id"], text=f"hello from {context.team_id}")

    handler = SlackRequestHandler(app)
    flask_app = Flask("hosted-bolt")
    for path in ("/slack/install", "/slack/oauth_redirect"):
        flask_app.add_url_rule(path, path, lambda: handler.handle(http_request), methods=["GET"])
    flask_app.add_url_rule("/slack/events", "events", lambda: handler.handle(http_request), methods=["POST"])
    server.app = flask_app
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield HostedBolt(url, installations)
    server.shutdown()


# the default team ------------------------------------------------------------------------------------
def test_the_default_team_is_preinstalled(slack):
    answer = web(slack, slack.bot_token).auth_test()
    assert (answer["team_id"], answer["team"], answer["url"]) == ("T0EMU", "Acme", "https://acme.slack.com/")
    assert (answer["user_id"], answer["bot_id"], answer["is_enterprise_install"]) == (
        "U0ZQBO",
        "B0ZQBO",
        False,
    )
    assert "chat:write" in answer.headers["x-oauth-scopes"]
    assert slack.token_for("T0EMU") == slack.bot_token


# Bolt's real OAuth flow -----------------------------------------------------------------------------
def test_bolt_installs_each_workspace_and_answers_it_with_its_own_token(slack, bolt):
    add_beta(slack)
    page = slack.install(bolt.url, "T0BETA")
    assert page.status_code == 200 and "Thank you!" in page.text

    installed = bolt.installations.find_installation(enterprise_id=None, team_id="T0BETA")
    assert installed is not None
    assert installed.bot_token == slack.token_for("T0BETA") != slack.bot_token
    assert installed.bot_token.startswith("xoxb-T0BETA-")
    assert (installed.user_id, installed.team_name, installed.bot_id) == (
        "U0BADMIN",
        "Beta Ltd",
        "B0BETAZQBO",
    )
    assert [c.method for c in slack.calls if c.ok][-2:] == ["oauth.v2.access", "auth.test"]

    resp, _ = slack.send_command(
        bolt.events_url, "hi", team_id="T0BETA", channel_id="C0BETA", user_id="U0BADMIN"
    )
    assert resp.status_code == 200
    slack.wait_for_calls("chat.postMessage", 1)
    assert [m["text"] for m in slack.messages("C0BETA")] == ["hello from T0BETA"]
    assert slack.messages("C0BETA")[0]["user"] == installed.bot_user_id

    # Acme has no installation in this app: Bolt refuses to act for it.
    _, response_url = slack.send_command(bolt.events_url, "hi")
    [apology] = slack.wait_for_responses(response_url, 1)
    assert "installation with this app is no longer available" in apology["text"]
    assert slack.messages("C0ALERTS") == []


def test_bolt_installs_org_wide_and_serves_every_team_of_the_org(slack, bolt):
    add_org(slack)
    assert slack.install(bolt.url, "T0ORGA", org=True).status_code == 200
    installed = bolt.installations.find_installation(
        enterprise_id="E0ORG", team_id=None, is_enterprise_install=True
    )
    assert installed is not None and installed.is_enterprise_install and installed.team_id is None
    assert installed.bot_token == slack.token_for("E0ORG") == slack.token_for("T0ORGB")
    assert installed.enterprise_url == "https://orgco.enterprise.slack.com/"

    slack.send_command(bolt.events_url, "hi", team_id="T0ORGB", user_id="U0OWEST", channel_id="C0ORGB")
    slack.wait_for_calls("chat.postMessage", 1)
    assert [m["text"] for m in slack.messages("C0ORGB")] == ["hello from T0ORGB"]


@pytest.mark.parametrize("bolt", [True, False], ids=["install-page", "redirect"], indirect=True)
def test_bolt_install_page_and_redirect_both_work(slack, bolt):
    """Through Bolt's Add to Slack page or its redirect; a reinstall gives a new token, and the
    old one keeps working (as Slack does for bot tokens)."""
    add_beta(slack)
    slack.install(bolt.url, "T0BETA")
    first = slack.token_for("T0BETA")
    again = slack.install(bolt.url, "T0BETA")
    assert again.status_code == 200
    second = slack.token_for("T0BETA")
    assert second != first
    assert web(slack, first).auth_test()["team_id"] == web(slack, second).auth_test()["team_id"] == "T0BETA"


def test_uninstall_revokes_the_tokens_and_bolt_forgets_the_workspace(slack, bolt):
    add_beta(slack)
    slack.install(bolt.url, "T0BETA")
    token = slack.token_for("T0BETA")
    revoked, uninstalled = slack.uninstall(bolt.events_url, "T0BETA")
    assert (revoked.status_code, uninstalled.status_code) == (200, 200)  # signed: Bolt verified both
    assert api_error(web(slack, token).auth_test) == "token_revoked"
    assert eventually(
        lambda: bolt.installations.find_installation(enterprise_id=None, team_id="T0BETA") is None
    )
    assert web(slack, slack.bot_token).auth_test()["ok"]  # other workspaces untouched


def test_uninstall_delivers_tokens_revoked_then_app_uninstalled(slack, receiver):
    add_beta(slack)
    exchange(slack, approve(slack, team_id="T0BETA"))
    slack.uninstall(receiver.url, "T0BETA")
    first, second = receiver.received
    assert first["event"]["type"] == "tokens_revoked"
    assert first["event"]["tokens"] == {"oauth": [], "bot": ["U0BETAZQBO"]}
    assert second["event"]["type"] == "app_uninstalled"
    for envelope in (first, second):
        # outside any organisation Slack sends no enterprise_id key (context_enterprise_id null)
        assert envelope["team_id"] == "T0BETA" and "enterprise_id" not in envelope
        assert envelope["context_enterprise_id"] is None
        assert envelope["authorizations"] == [
            {
                "enterprise_id": None,
                "team_id": "T0BETA",
                "user_id": "U0BETAZQBO",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ]


# tokens and teams ----------------------------------------------------------------------------------
def test_two_teams_get_different_tokens_and_cannot_see_each_other(slack):
    add_beta(slack)
    answer = exchange(slack, approve(slack, team_id="T0BETA"))
    assert set(answer) == {
        "ok",
        "app_id",
        "authed_user",
        "scope",
        "token_type",
        "access_token",
        "bot_user_id",
        "team",
        "enterprise",
        "is_enterprise_install",
    }
    assert answer["app_id"] == "A0ZQBO" and answer["token_type"] == "bot" and answer["scope"] == SCOPES
    assert answer["team"] == {"id": "T0BETA", "name": "Beta Ltd"} and answer["enterprise"] is None
    assert answer["authed_user"] == {"id": "U0BADMIN"} and answer["is_enterprise_install"] is False
    beta, acme = web(slack, answer["access_token"]), web(slack, slack.bot_token)

    me = beta.auth_test()
    assert (me["team_id"], me["team"], me["url"]) == ("T0BETA", "Beta Ltd", "https://beta-ltd.slack.com/")
    assert me["user_id"] == answer["bot_user_id"] != "U0ZQBO"

    assert beta.users_info(user="U0BADMIN")["user"]["team_id"] == "T0BETA"
    assert beta.chat_postMessage(channel="C0BETA", text="hi")["ok"]
    assert beta.conversations_open(users="U0BADMIN")["channel"]["id"] == "D0BADMIN"
    info = beta.conversations_info(channel="C0BETA")["channel"]
    assert {k: info[k] for k in ("id", "name", "is_channel", "is_im", "is_member", "context_team_id")} == {
        "id": "C0BETA",
        "name": "beta-alerts",
        "is_channel": True,
        "is_im": False,
        "is_member": True,
        "context_team_id": "T0BETA",
    }
    assert info["creator"] == "U0BADMIN" and not info["is_private"] and not info["is_archived"]
    for client, user, channel in ((beta, "U0ADMIN", "C0ALERTS"), (acme, "U0BADMIN", "C0BETA")):
        assert api_error(client.users_info, user=user) == "user_not_found"
        assert api_error(client.conversations_open, users=user) == "user_not_found"
        assert (
            api_error(client.views_publish, user_id=user, view={"type": "home", "blocks": []})
            == "user_not_found"
        )
        assert api_error(client.chat_postMessage, channel=channel, text="x") == "channel_not_found"
        assert api_error(client.chat_postMessage, channel=user, text="x") == "channel_not_found"
        assert api_error(client.chat_update, channel=channel, ts="1.000001", text="x") == "channel_not_found"
        assert (
            api_error(client.chat_postEphemeral, channel=channel, user=user, text="x") == "channel_not_found"
        )
        assert api_error(client.conversations_history, channel=channel) == "channel_not_found"
        assert api_error(client.conversations_info, channel=channel) == "channel_not_found"
    assert slack.messages("C0ALERTS") == []


def test_revoked_and_unknown_tokens(slack):
    add_beta(slack)
    token = exchange(slack, approve(slack, team_id="T0BETA"))["access_token"]
    assert web(slack, token).auth_revoke(test=True)["revoked"] is False
    assert web(slack, token).auth_test()["ok"]
    assert web(slack, token).auth_revoke()["revoked"] is True
    assert api_error(web(slack, token).auth_test) == "token_revoked"
    assert api_error(web(slack, "xoxb-T0BETA-nope").auth_test) == "invalid_auth"

    again = exchange(slack, approve(slack, team_id="T0BETA"))["access_token"]
    assert slack.revoke_team("T0BETA") == [again]
    assert api_error(web(slack, again).chat_postMessage, channel="C0BETA", text="x") == "token_revoked"
    assert web(slack, slack.bot_token).auth_test()["ok"]


def test_org_install_works_across_the_enterprise_teams_only(slack):
    add_org(slack)
    add_beta(slack)
    answer = exchange(slack, approve(slack, enterprise_id="E0ORG", user_id="U0OADMIN"))
    assert answer["team"] is None  # as Slack answers an org-wide install
    assert (
        answer["enterprise"] == {"id": "E0ORG", "name": "Orgco"} and answer["is_enterprise_install"] is True
    )
    assert answer["access_token"].startswith("xoxb-E0ORG-")
    org = web(slack, answer["access_token"])
    me = org.auth_test()
    assert (me["enterprise_id"], me["is_enterprise_install"], me["url"]) == (
        "E0ORG",
        True,
        "https://orgco.enterprise.slack.com/",
    )
    for channel in ("C0ORGA", "C0ORGB"):
        assert org.chat_postMessage(channel=channel, text="org-wide")["ok"]
    assert org.users_info(user="U0OWEST")["user"]["team_id"] == "T0ORGB"
    assert api_error(org.chat_postMessage, channel="C0BETA", text="x") == "channel_not_found"
    assert api_error(org.users_info, user="U0ADMIN") == "user_not_found"
    assert slack.token_for("T0ORGB") == slack.token_for("E0ORG") == answer["access_token"]


def test_requests_from_an_org_installed_team_say_so(slack, receiver):
    add_org(slack)
    exchange(slack, approve(slack, enterprise_id="E0ORG", user_id="U0OADMIN"))
    slack.send_command(receiver.url, "status", team_id="T0ORGB", user_id="U0OWEST", channel_id="C0ORGB")
    slack.send_event(receiver.url, {"type": "app_home_opened", "user": "U0OWEST"}, team_id="T0ORGB")
    command, event = receiver.received
    assert command["team_id"] == "T0ORGB" and command["team_domain"] == "org-west"
    assert command["enterprise_id"] == "E0ORG" and command["is_enterprise_install"] == "true"
    assert event["team_id"] == "T0ORGB" and event["enterprise_id"] == "E0ORG"
    [authorization] = event["authorizations"]
    assert authorization["is_enterprise_install"] is True and authorization["team_id"] == "T0ORGB"
    assert authorization["enterprise_id"] == "E0ORG" and authorization["is_bot"] is True

    message = {"ts": "1.000001", "channel": "C0ORGB", "blocks": [{"type": "actions", "elements": [
        {"type": "button", "action_id": "go", "text": {"type": "plain_text", "text": "Go"}}]}]}  # fmt: skip
    slack.press_button(receiver.url, message, "go", user_id="U0OWEST", team_id="T0ORGB")
    press = receiver.received[-1]
    assert press["team"]["id"] == "T0ORGB" and press["user"]["team_id"] == "T0ORGB"
    assert press["enterprise"] == {"id": "E0ORG", "name": "Orgco"} and press["is_enterprise_install"] is True


def test_a_slack_connect_channel_and_a_partner_of_another_organisation(slack, receiver):
    """A channel of T0EMU shared with Beta (Slack Connect): Beta's person presses buttons in it as
    themselves (user.team_id Beta, the message's team T0EMU); their /zqbo is typed in their own
    workspace, so without the app there Slack refuses it itself; once Beta installs, its token sees
    the shared channel and the command names Beta."""
    add_beta(slack)
    slack.add_channel("C0SHARED", "acme-beta", team_id="T0EMU", shared_with=("T0BETA",))
    message = {"ts": "1.000001", "channel": "C0SHARED", "blocks": [{"type": "actions", "elements": [
        {"type": "button", "action_id": "go", "text": {"type": "plain_text", "text": "Go"}}]}]}  # fmt: skip
    slack.press_button(receiver.url, message, "go", user_id="U0BADMIN", channel_id="C0SHARED")
    press = receiver.received[-1]
    assert press["team"]["id"] == "T0EMU" and press["user"]["team_id"] == "T0BETA"
    with pytest.raises(NotAValidCommand):
        slack.send_command(receiver.url, "status", user_id="U0BADMIN", channel_id="C0SHARED")
    beta = web(slack, exchange(slack, approve(slack, team_id="T0BETA"))["access_token"])
    assert beta.chat_postMessage(channel="C0SHARED", text="hello from Beta")["ok"]
    assert beta.auth_teams_list()["teams"] == [{"id": "T0BETA", "name": "Beta Ltd"}]
    slack.send_command(receiver.url, "status", user_id="U0BADMIN", channel_id="C0SHARED")
    assert receiver.received[-1]["team_id"] == "T0BETA"


def test_auth_teams_list_names_the_workspaces_an_org_install_reaches(slack, receiver):
    add_org(slack)
    org = web(
        slack, exchange(slack, approve(slack, enterprise_id="E0ORG", user_id="U0OADMIN"))["access_token"]
    )
    assert {t["id"] for t in org.auth_teams_list()["teams"]} == {"T0ORGA", "T0ORGB"}
    answer = slack.remove_from_org_install(receiver.url, "T0ORGB")
    assert answer.status_code == 200
    event = receiver.received[-1]
    assert event["event"] == {**event["event"], "type": "team_access_revoked", "team_ids": ["T0ORGB"]}
    assert event["authorizations"][0]["is_enterprise_install"] is True
    assert [t["id"] for t in org.auth_teams_list()["teams"]] == ["T0ORGA"]
    assert api_error(org.chat_postMessage, channel="C0ORGB", text="x") == "channel_not_found"


# OAuth errors ----------------------------------------------------------------------------------------
def test_code_errors(slack):
    add_beta(slack)
    code = approve(slack, team_id="T0BETA")
    assert api_error(exchange, slack, code, client_id="someone-else") == "invalid_client_id"
    assert api_error(exchange, slack, code, client_secret="wrong") == "bad_client_secret"
    assert api_error(exchange, slack, code, redirect_uri="https://evil.example/cb") == "bad_redirect_uri"
    assert api_error(exchange, slack, "1.2.not-a-code") == "invalid_code"
    assert exchange(slack, code)["ok"]
    assert api_error(exchange, slack, code) == "invalid_code"  # single use

    # client credentials as form fields work as well as HTTP Basic auth
    form = {
        "client_id": slack.client_id,
        "client_secret": slack.client_secret,
        "code": approve(slack, team_id="T0BETA"),
        "redirect_uri": REDIRECT,
    }
    assert requests.post(f"{slack.api_url}oauth.v2.access", data=form, timeout=5).json()["ok"] is True


def test_codes_expire_after_ten_minutes():
    clock = FakeClock()
    with SlackEmulator(clock=clock) as slack:
        add_beta(slack)
        late, in_time = approve(slack, team_id="T0BETA"), approve(slack, team_id="T0BETA")
        clock.advance(minutes=9)
        assert exchange(slack, in_time)["ok"]
        clock.advance(minutes=2)
        assert api_error(exchange, slack, late) == "invalid_code"


def test_authorize_page_refuses_an_unknown_app_and_cancel_says_access_denied(slack):
    bad = requests.get(
        f"{slack.url}/oauth/v2/authorize", params={"client_id": "nope", "scope": SCOPES}, timeout=5
    )
    assert bad.status_code == 400 and "invalid_client_id" in bad.text
    cancel = requests.post(
        f"{slack.url}/oauth/v2/authorize/approve",
        data={"client_id": slack.client_id, "state": "s&1", "redirect_uri": REDIRECT, "decision": "cancel"},
        allow_redirects=False,
        timeout=5,
    )
    assert cancel.status_code == 302
    assert parse_qs(urlparse(cancel.headers["Location"]).query) == {
        "error": ["access_denied"],
        "state": ["s&1"],
    }


def test_the_app_redirect_url_bounds_where_codes_go(slack):
    slack.redirect_uri = "https://zqbo.example.com/slack/"
    add_beta(slack)
    code = approve(slack, team_id="T0BETA")  # under the configured URL: fine
    assert exchange(slack, code)["ok"]
    params = {"client_id": slack.client_id, "scope": SCOPES, "redirect_uri": "https://evil.example/cb"}
    page = requests.get(f"{slack.url}/oauth/v2/authorize", params=params, timeout=5)
    assert page.status_code == 400 and "bad_redirect_uri" in page.text
    forged = requests.post(
        f"{slack.url}/oauth/v2/authorize/approve",
        data={**params, "team_id": "T0BETA", "user_id": "U0BADMIN"},
        allow_redirects=False,
        timeout=5,
    )
    assert forged.status_code == 400
    # No redirect_uri sent: Slack uses the app's own, and the exchange may omit it.
    del params["redirect_uri"]
    assert requests.get(f"{slack.url}/oauth/v2/authorize", params=params, timeout=5).status_code == 200
    slack.redirect_uri = "https://zqbo.example.com/slack/oauth_redirect"
    resp = requests.post(
        f"{slack.url}/oauth/v2/authorize/approve",
        data={**params, "team_id": "T0BETA", "user_id": "U0BADMIN"},
        allow_redirects=False,
        timeout=5,
    )
    assert resp.headers["Location"].startswith("https://zqbo.example.com/slack/oauth_redirect?code=")
    code = parse_qs(urlparse(resp.headers["Location"]).query)["code"][0]
    assert WebClient(base_url=slack.api_url).oauth_v2_access(
        client_id=slack.client_id, client_secret=slack.client_secret, code=code
    )["team"] == {"id": "T0BETA", "name": "Beta Ltd"}


def test_consent_page_lists_scopes_and_workspaces_and_escapes_what_it_echoes(slack):
    slack.add_team("T0EVIL", '<script>alert(1)</script> & "Co"')
    slack.add_user("U0EVIL", "eve", "Eve", "eve@evil.example", team_id="T0EVIL", is_admin=True)
    add_org(slack)
    hostile_state = '"><img src=x onerror=alert(1)>'
    page = requests.get(
        f"{slack.url}/oauth/v2/authorize",
        params={
            "client_id": slack.client_id,
            "scope": SCOPES,
            "state": hostile_state,
            "redirect_uri": REDIRECT,
        },
        timeout=5,
    )
    assert page.status_code == 200
    assert "<script>alert" not in page.text and '"><img' not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot;" in page.text
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text
    for scope in SCOPES.split(","):
        assert f"<code>{scope}</code>" in page.text
    for choice in ('name="team_id" value="T0EMU"', 'name="team_id" value="T0ORGA"', 'value="E0ORG"'):
        assert choice in page.text
    assert "the whole Orgco organisation" in page.text and "Cancel" in page.text


def test_token_rotation_refreshes_a_pair_and_tokens_expire():
    clock = FakeClock()
    with SlackEmulator(clock=clock, token_rotation=True) as slack:
        add_beta(slack)
        answer = exchange(slack, approve(slack, team_id="T0BETA"))
        assert answer["access_token"].startswith("xoxe.xoxb-T0BETA-")
        assert answer["refresh_token"].startswith("xoxe-1-") and answer["expires_in"] == 43200
        oauth = WebClient(base_url=slack.api_url)
        credentials = {"client_id": slack.client_id, "client_secret": slack.client_secret}
        fresh = oauth.oauth_v2_access(
            **credentials, grant_type="refresh_token", refresh_token=answer["refresh_token"]
        )
        assert fresh["token_type"] == "bot" and fresh["expires_in"] == 43200
        assert fresh["access_token"] != answer["access_token"]
        assert fresh["refresh_token"] != answer["refresh_token"]
        assert fresh["team"] == {"id": "T0BETA", "name": "Beta Ltd"}
        assert slack.token_for("T0BETA") == fresh["access_token"]
        stale = api_error(
            oauth.oauth_v2_access,
            **credentials,
            grant_type="refresh_token",
            refresh_token=answer["refresh_token"],
        )
        assert stale == "invalid_refresh_token"
        assert web(slack, answer["access_token"]).auth_test()["ok"]  # lives until it expires

        clock.advance(seconds=43_200)
        assert api_error(web(slack, answer["access_token"]).auth_test) == "token_expired"
        assert api_error(web(slack, fresh["access_token"]).auth_test) == "token_expired"
        newer = oauth.oauth_v2_access(
            **credentials, grant_type="refresh_token", refresh_token=fresh["refresh_token"]
        )
        assert web(slack, newer["access_token"]).auth_test()["team_id"] == "T0BETA"


# modals ----------------------------------------------------------------------------------------------
def modal(title: str = "Connect QuickBooks", **extra: Any) -> dict[str, Any]:
    option = {"text": {"type": "plain_text", "text": "Daily"}, "value": "daily"}
    label = {"type": "plain_text", "text": "Where"}
    return {
        "type": "modal",
        "callback_id": "zqbo_setup",
        "private_metadata": json.dumps({"realm": "9130"}),
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "channel",
                "label": label,
                "element": {"type": "conversations_select", "action_id": "pick_channel"},
            },
            {
                "type": "input",
                "block_id": "admins",
                "label": label,
                "element": {"type": "multi_users_select", "action_id": "pick_admins"},
            },
            {
                "type": "input",
                "block_id": "note",
                "optional": True,
                "label": label,
                "element": {"type": "plain_text_input", "action_id": "note_text", "multiline": True},
            },
            {
                "type": "input",
                "block_id": "cadence",
                "label": label,
                "element": {"type": "static_select", "action_id": "pick_cadence", "options": [option]},
            },
        ],
        **extra,
    }


def test_views_open_refuses_a_bad_modal_and_keeps_a_good_one(slack):
    client = web(slack, slack.bot_token)
    trigger = slack.new_trigger_id("U0STAFF")
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id=trigger, view=modal(title="A title longer than 24 chars"))
    assert err.value.response["error"] == "invalid_arguments"
    assert "/view/title/text" in err.value.response["response_metadata"]["messages"][0]
    bad_input = modal()
    bad_input["blocks"][0]["element"] = {"type": "button", "action_id": "x", "text": label_text("no")}
    assert api_error(client.views_open, trigger_id=trigger, view=bad_input) == "invalid_blocks"
    no_submit = modal()
    del no_submit["submit"]
    assert api_error(client.views_open, trigger_id=trigger, view=no_submit) == "invalid_arguments"
    assert api_error(client.views_open, trigger_id="1.2.made-up", view=modal()) == "invalid_trigger_id"

    opened = client.views_open(trigger_id=trigger, view=modal(external_id="setup-1"))["view"]
    assert slack.open_views[opened["id"]]["team_id"] == "T0EMU"
    assert slack.open_views[opened["id"]]["user"] == "U0STAFF" and "user" not in opened
    assert opened["callback_id"] == "zqbo_setup" and opened["state"] == {"values": {}}
    assert api_error(client.views_open, trigger_id=trigger, view=modal()) == "exchanged_trigger_id"

    step2 = modal(title="Step 2", external_id="setup-1")
    updated = client.views_update(view_id=opened["id"], view=step2, hash=opened["hash"])["view"]
    assert updated["title"]["text"] == "Step 2" and updated["hash"] != opened["hash"]
    assert (
        api_error(client.views_update, view_id=opened["id"], view=modal(), hash=opened["hash"])
        == "hash_conflict"
    )
    assert client.views_update(external_id="setup-1", view=modal(title="Step 3"))["ok"]
    assert (
        api_error(client.views_update, view_id=opened["id"], view=modal(title="x" * 25))
        == "invalid_arguments"
    )
    assert slack.open_views[opened["id"]]["title"]["text"] == "Step 3"

    add_beta(slack)
    beta = web(slack, exchange(slack, approve(slack, team_id="T0BETA"))["access_token"])
    assert api_error(beta.views_update, view_id=opened["id"], view=modal()) == "not_found"
    assert api_error(beta.views_open, trigger_id=slack.new_trigger_id(), view=modal()) == "invalid_trigger_id"


def test_trigger_ids_expire_after_three_seconds():
    clock = FakeClock()
    with SlackEmulator(clock=clock) as slack:
        client = web(slack, slack.bot_token)
        late, in_time = slack.new_trigger_id(), slack.new_trigger_id()
        clock.advance(seconds=3)
        assert client.views_open(trigger_id=in_time, view=modal())["ok"]
        clock.advance(seconds=1)
        assert api_error(client.views_open, trigger_id=late, view=modal()) == "expired_trigger_id"


def label_text(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def test_view_submission_payload_and_response_actions(slack, receiver):
    opened = web(slack, slack.bot_token).views_open(trigger_id=slack.new_trigger_id(), view=modal())["view"]
    values = {"pick_channel": "C0ALERTS", "pick_admins": ["U0ADMIN", "U0OWNER"], "pick_cadence": "daily"}
    receiver.reply = (json.dumps({"response_action": "errors", "errors": {"channel": "Pick a channel"}}), 200)
    resp = slack.send_view_submission(receiver.url, opened["id"], values)
    assert resp.status_code == 200 and resp.json()["response_action"] == "errors"
    [payload] = receiver.received
    assert payload["type"] == "view_submission" and payload["api_app_id"] == "A0ZQBO"
    assert payload["team"]["id"] == "T0EMU" and payload["user"] == {
        "id": "U0ADMIN",
        "username": "ana",
        "name": "ana",
        "team_id": "T0EMU",
    }
    assert (
        payload["trigger_id"] and payload["is_enterprise_install"] is False and payload["enterprise"] is None
    )
    view = payload["view"]
    assert view["id"] == opened["id"] and view["callback_id"] == "zqbo_setup" and view["team_id"] == "T0EMU"
    assert "user" not in view
    assert json.loads(view["private_metadata"]) == {"realm": "9130"}
    assert view["state"]["values"] == {
        "channel": {"pick_channel": {"type": "conversations_select", "selected_conversation": "C0ALERTS"}},
        "admins": {"pick_admins": {"type": "multi_users_select", "selected_users": ["U0ADMIN", "U0OWNER"]}},
        "note": {"note_text": {"type": "plain_text_input", "value": None}},
        "cadence": {
            "pick_cadence": {
                "type": "static_select",
                # the option as Slack kept it: plain_text gains "emoji" (inbound/view_submission.json)
                "selected_option": {
                    "text": {"type": "plain_text", "text": "Daily", "emoji": True},
                    "value": "daily",
                },
            }
        },
    }
    assert opened["id"] in slack.open_views  # errors keep the modal open

    receiver.reply = (json.dumps({"response_action": "update", "view": modal(title="x" * 30)}), 200)
    slack.send_view_submission(receiver.url, opened["id"], values)
    assert [c.error for c in slack.refused_calls()] == ["invalid_arguments"]

    receiver.reply = ("", 200)
    slack.send_view_submission(receiver.url, opened["id"], {**values, "note_text": "thanks"})
    assert receiver.received[-1]["view"]["state"]["values"]["note"]["note_text"]["value"] == "thanks"
    assert opened["id"] not in slack.open_views  # an empty 200 closes it

    with pytest.raises(ValueError, match="no input"):
        slack.send_view_submission(receiver.url, modal(), {"nope": "x"})
