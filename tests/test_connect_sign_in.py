"""A connect link works only for the person it was made for: Sign in with Slack before Intuit,
the QBO state bound to the browser that signed in. One workspace (the two-workspace cases are in
test_workspaces.py); real HTTP through slack_sdk and intuit-oauth against the emulators."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
import requests

from bot.config import ConfigError
from bot.connect import LINKS_PER_WORKSPACE
from tests.conftest import DEDICATED, REALM, make_settings, start_bot
from tests.helpers import ack_message, command, link_buttons, signed_in


def link_from_slack(slack, bot, user_id: str = "U0ADMIN") -> str:
    resp, response_url = command(slack, bot, "connect", user_id=user_id)
    ack_message(resp)
    [message] = slack.wait_for_responses(response_url, 1)
    [link] = link_buttons(message)
    return link


def nothing_stored(bot) -> bool:
    return bot.services.store.list_connections() == []


def test_the_right_person_connects_and_the_page_names_company_and_workspace(bot, slack, intuit):
    link = link_from_slack(slack, bot)
    assert link.startswith(f"{bot.url}/qbo/connect/") and "state=" not in link  # not Intuit's link
    first = requests.get(link, allow_redirects=False, timeout=10)
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/qbo" in cookie
    oidc = parse_qs(urlparse(first.headers["Location"]).query)
    assert oidc["scope"] == ["openid,profile,email"] and oidc["redirect_uri"] == [
        f"{bot.url}/qbo/oidc/callback"
    ]
    browser, auth_url = signed_in(slack, link, "U0ADMIN")
    assert auth_url.startswith(intuit.url)
    page = browser.get(intuit.authorize(auth_url, as_user=DEDICATED), timeout=10)
    assert page.status_code == 200
    assert (
        "QuickBooks company <b>Acme Payments Ltd</b> is now linked to the Slack workspace <b>Acme</b>"
        in page.text
    )
    assert bot.services.store.get_connection(REALM).connected_by == "U0ADMIN"
    assert [c.method for c in slack.calls if c.method.startswith(("openid", "auth.revoke"))] == [
        "openid.connect.token",
        "openid.connect.userInfo",
        "auth.revoke",  # the person's Slack token was read once and is dead now
    ]
    assert slack.openid.tokens == {}


def test_someone_else_in_the_same_workspace_is_refused_and_the_owner_still_can(bot, slack, intuit):
    link = link_from_slack(slack, bot, "U0ADMIN")
    page = slack.sign_in(link, "U0OWNER")  # an admin too, but not the one who asked
    assert page.status_code == 403 and "made for someone else" in page.text
    assert "Slack workspace <b>Acme</b>" in page.text
    assert nothing_stored(bot) and intuit.count("token") == 0
    browser, auth_url = signed_in(slack, link, "U0ADMIN")
    assert browser.get(intuit.authorize(auth_url, as_user=DEDICATED), timeout=10).status_code == 200


def test_intuit_link_finished_in_another_browser_stores_nothing_and_stays_usable(bot, slack, intuit):
    browser, auth_url = signed_in(slack, link_from_slack(slack, bot))
    callback = intuit.authorize(auth_url, as_user=DEDICATED)
    elsewhere = requests.get(callback, timeout=10)  # no cookie: the link was forwarded
    assert elsewhere.status_code == 403 and "made for someone else" in elsewhere.text
    assert f"realm {REALM}" in elsewhere.text and "was not linked" in elsewhere.text
    assert nothing_stored(bot) and intuit.count("token", "authorization_code") == 0
    wrong_cookie = requests.get(callback, cookies={"zqbo_browser": "x" * 43}, timeout=10)
    assert wrong_cookie.status_code == 403 and nothing_stored(bot)
    assert browser.get(callback, timeout=10).status_code == 200  # its own browser: not spent


def test_slack_sign_in_cancelled_connects_nothing(bot, slack, intuit):
    link = link_from_slack(slack, bot)
    page = slack.sign_in(link, "U0ADMIN", decline=True)
    assert page.status_code == 200 and "did not sign in with Slack" in page.text
    assert nothing_stored(bot) and not slack.calls_to("openid.connect.token")


def test_sign_in_answers_are_single_use_browser_bound_and_expire(bot, slack, intuit, clock):
    link = link_from_slack(slack, bot)
    browser, _ = signed_in(slack, link)
    [used] = slack.openid.codes.values()
    back = f"{bot.url}/qbo/oidc/callback?code={used.code}&state={used.state}"
    assert browser.get(back, allow_redirects=False, timeout=10).status_code == 400  # reused
    # an expired sign-in: opened, then Slack answered eleven minutes later
    stale = requests.Session()
    begin = stale.get(link_from_slack(slack, bot), allow_redirects=False, timeout=10)
    state = parse_qs(urlparse(begin.headers["Location"]).query)["state"][0]
    clock.advance(11 * 60)
    late = stale.get(f"{bot.url}/qbo/oidc/callback?code=whatever&state={state}", timeout=10)
    assert late.status_code == 400 and "expired" in late.text
    # and a link past its ten minutes does not even go to Slack
    gone = requests.get(link, allow_redirects=False, timeout=10)
    assert gone.status_code == 400 and "expired" in gone.text
    assert nothing_stored(bot)


def test_a_sign_in_answer_in_another_browser_is_refused_without_spending_the_code(bot, slack):
    """The link's own person starts signing in, then hands Slack's answer (code and state) to
    someone else's browser, hoping it gets bound there: refused before the code is exchanged."""
    link = link_from_slack(slack, bot)
    victim, asker = requests.Session(), requests.Session()
    begin = asker.get(link, allow_redirects=False, timeout=10)
    state = parse_qs(urlparse(begin.headers["Location"]).query)["state"][0]
    answer = victim.get(f"{bot.url}/qbo/oidc/callback?code=1.2.abc&state={state}", timeout=10)
    assert answer.status_code == 400 and not slack.calls_to("openid.connect.token")


def test_unknown_link_and_unknown_sign_in_state(bot):
    assert requests.get(f"{bot.url}/qbo/connect/not-a-link", timeout=10).status_code == 400
    page = requests.get(f"{bot.url}/qbo/oidc/callback?code=1&state=forged-0123456789abcdef", timeout=10)
    assert page.status_code == 400 and nothing_stored(bot)


def test_sign_in_off_hands_out_intuits_link_as_before(intuit, slack, clock, redis_prefix, cipher):
    from bot.store.redis import RedisStore
    from tests.conftest import REDIS_URL

    settings = make_settings(intuit, slack, ZQBO_CONNECT_SIGN_IN="off")
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings, clock, store=store)
    try:
        link = link_from_slack(slack, bot)
        assert link.startswith(intuit.url)
        assert requests.get(intuit.authorize(link, as_user=DEDICATED), timeout=10).status_code == 200
        assert bot.services.store.get_connection(REALM) is not None
        assert requests.get(f"{bot.url}/qbo/connect/anything", timeout=10).status_code == 404
    finally:
        server.shutdown()
        store.close()


def test_sign_in_needs_the_slack_apps_credentials_or_is_turned_off(intuit, slack):
    with pytest.raises(
        ConfigError, match=r"SLACK_CLIENT_ID and SLACK_CLIENT_SECRET.*ZQBO_CONNECT_SIGN_IN=off"
    ):
        make_settings(intuit, slack, SLACK_CLIENT_ID="", SLACK_CLIENT_SECRET="")
    assert not make_settings(intuit, slack, SLACK_CLIENT_ID="", ZQBO_CONNECT_SIGN_IN="off").sign_in
    with pytest.raises(ConfigError, match="one workspace only"):
        make_settings(intuit, slack, SLACK_BOT_TOKEN="", ZQBO_CONNECT_SIGN_IN="off")
    with pytest.raises(ConfigError, match="ZQBO_CONNECT_SIGN_IN is invalid"):
        make_settings(intuit, slack, ZQBO_CONNECT_SIGN_IN="maybe")


def test_a_workspace_keeps_at_most_its_newest_open_links(bot):
    oauth, store = bot.services.oauth, bot.services.store
    states = [oauth.start(f"U{i:08d}", "T0EMU")[1] for i in range(LINKS_PER_WORKSPACE + 1)]
    assert store.take_oauth_state(states[0].state)[1] is False  # the oldest was dropped
    assert store.take_oauth_state(states[1].state)[1] is True
