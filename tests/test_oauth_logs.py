"""Logs never carry an OAuth code or state, Slack's or Intuit's, at any level: both OAuth flows
driven at DEBUG, their failure paths included, and the captured log searched for every code and
state that went by."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlparse

import requests

from bot.redact import REDACTOR
from tests.helpers import link_buttons, signed_in
from tests.test_workspaces import A, hosted, install, say  # noqa: F401  (fixture)


def test_bolts_failed_callback_line_is_redacted():
    line = (
        "Handling an OAuth callback failure (reason: invalid_state, error: None, request: "
        "{'code': ['1234.5678.abcdefabcdef'], 'state': ['f2b3c4d5-e6f7-4890-abcd-ef1234567890']})"
    )
    redacted = REDACTOR(line)
    assert "abcdefabcdef" not in redacted and "f2b3c4d5" not in redacted
    assert "invalid_state" in redacted  # the reason stays readable
    assert REDACTOR("checklist state: connected") == "checklist state: connected"


def test_no_oauth_code_or_state_reaches_the_log_at_debug(hosted, slack, intuit, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    # Slack: a real install, then a callback with a forged state and one with a used code
    install(slack, hosted, A)
    seen += list(slack.workspaces.codes)
    forged = {"code": "1234.5678.slackcodeforged0001", "state": "forged-state-0123456789abcdef"}
    requests.get(f"{hosted.url}/slack/oauth_redirect", params=forged, timeout=10)
    requests.get(
        f"{hosted.url}/slack/oauth_redirect", params={"error": "access_denied", **forged}, timeout=10
    )
    seen += list(forged.values())

    # Intuit: a real connect (the link's state, Intuit's code), a declined one, a forged state
    say(slack, hosted, A, f"config channel <#{A.channel}|alerts>")
    resp, response_url = slack.send_command(hosted.events_url, "connect", team_id=A.id, user_id=A.admin)
    [message] = slack.wait_for_responses(response_url, 1)
    [link] = link_buttons(message)
    seen.append(link.rsplit("/", 1)[1])  # the link id
    # Sign in with Slack on the way: a refused person, a cancel, then the link's own admin
    assert slack.sign_in(link, A.staff).status_code == 403
    assert "did not sign in" in slack.sign_in(link, A.admin, decline=True).text
    browser, auth_url = signed_in(slack, link, A.admin)
    seen.append(browser.cookies.get("zqbo_browser") or "")
    seen += [c.code for c in slack.openid.codes.values()] + [c.state for c in slack.openid.codes.values()]
    seen += [c.nonce for c in slack.openid.codes.values()] + list(slack.openid.tokens)
    used = next(c for c in slack.openid.codes.values() if c.used)
    replayed = requests.get(
        f"{hosted.url}/qbo/oidc/callback", params={"code": used.code, "state": used.state}, timeout=10
    )
    assert replayed.status_code == 400  # a sign-in answer replayed in another browser: refused
    seen += parse_qs(urlparse(auth_url).query)["state"]
    callback = intuit.authorize(auth_url, as_user=A.dedicated, realm=A.realm)
    seen += parse_qs(urlparse(callback).query)["code"]
    assert requests.get(callback, timeout=10).status_code == 403  # not the signed-in browser
    assert browser.get(callback, timeout=10).status_code == 200
    assert hosted.services.store.get_connection(A.realm) is not None  # connected through it
    assert browser.get(callback, timeout=10).status_code >= 400  # the same code again: refused
    forged_qbo = {
        "code": "AB11forgedintuitcode0000000001",
        "state": "forged-qbo-state-0123456789",
        "realmId": A.realm,
    }
    requests.get(f"{hosted.url}/qbo/callback", params=forged_qbo, timeout=10)
    seen += [forged_qbo["code"], forged_qbo["state"]]

    text = caplog.text
    assert len(caplog.records) > 50  # DEBUG really was on: the libraries said a lot
    leaked = [value for value in seen if value and value in text]
    assert leaked == [], f"OAuth codes or states in the log: {leaked}"
