"""Every way the OAuth callback can go wrong: a clear page, a DM when we know who, nothing stored."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.conftest import DEDICATED, REALM
from tests.helpers import ack_message, card_text, command, dms_to, link_buttons, signed_in


def slack_link(slack, bot, user_id: str = "U0ADMIN") -> str:
    resp, response_url = command(slack, bot, "connect", user_id=user_id)
    ack_message(resp)
    [message] = slack.wait_for_responses(response_url, 1)
    [url] = link_buttons(message)
    return url


def fresh_link(slack, bot, user_id: str = "U0ADMIN") -> tuple[requests.Session, str]:
    """A browser signed in with Slack as `user_id` through a fresh link, and Intuit's URL."""
    return signed_in(slack, slack_link(slack, bot, user_id), user_id)


def state_of(url: str) -> str:
    return parse_qs(urlparse(url).query)["state"][0]


def nothing_stored(bot) -> bool:
    return bot.services.store.list_connections() == []


def test_link_is_intuit_authorize_with_all_scopes(bot, slack, intuit):
    assert slack_link(slack, bot).startswith(f"{bot.url}/qbo/connect/")  # Sign in with Slack first
    _, url = fresh_link(slack, bot)
    query = parse_qs(urlparse(url).query)
    assert url.startswith(intuit.url)
    assert set(query["scope"][0].split()) == {
        "com.intuit.quickbooks.accounting",
        "openid",
        "email",
        "profile",
    }
    assert query["redirect_uri"] == [f"{bot.url}/qbo/callback"]
    assert len(query["state"][0]) >= 32


def test_missing_state(bot):
    resp = requests.get(f"{bot.url}/qbo/callback?code=abc&realmId={REALM}", timeout=5)
    assert resp.status_code == 400 and "no state" in resp.text
    assert nothing_stored(bot)


def test_forged_state(bot, slack):
    resp = requests.get(f"{bot.url}/qbo/callback?code=abc&realmId={REALM}&state=forged123", timeout=5)
    # no browser was bound to it by Sign in with Slack
    assert resp.status_code == 403 and "made for someone else" in resp.text
    assert nothing_stored(bot)
    assert slack.calls_to("chat.postMessage") == []  # we do not know whom to tell


def test_expired_state(bot, slack, intuit, clock):
    browser, url = fresh_link(slack, bot)
    callback = intuit.authorize(url, as_user=DEDICATED)
    clock.advance(601)
    resp = browser.get(callback, timeout=5)
    assert resp.status_code == 400 and "expired" in resp.text
    assert nothing_stored(bot)
    [dm] = dms_to(slack, "U0ADMIN", wait_for=1)
    assert "expired" in card_text(dm) and "/zqbo connect" in card_text(dm)


def test_reused_state(bot, slack, intuit):
    browser, url = fresh_link(slack, bot)
    callback = intuit.authorize(url, as_user=DEDICATED)
    assert browser.get(callback, timeout=5).status_code == 200
    bot.services.store.delete_connection(REALM)
    again = browser.get(callback, timeout=5)
    assert again.status_code == 400 and "already used" in again.text
    assert nothing_stored(bot)


def test_declined_consent(bot, slack, intuit):
    browser, url = fresh_link(slack, bot)
    callback = intuit.authorize(url, decline=True)
    assert "error=access_denied" in callback
    resp = browser.get(callback, timeout=5)
    assert "declined" in resp.text
    assert nothing_stored(bot)
    [dm] = dms_to(slack, "U0ADMIN", wait_for=1)
    assert "declined" in card_text(dm)


def test_bad_code(bot, slack):
    browser, url = fresh_link(slack, bot)
    resp = browser.get(
        f"{bot.url}/qbo/callback?code=not-a-real-code&realmId={REALM}&state={state_of(url)}", timeout=5
    )
    assert resp.status_code == 400 and "did not accept the authorisation code" in resp.text
    assert nothing_stored(bot)


def test_intuit_down_during_code_exchange(bot, slack, intuit):
    browser, url = fresh_link(slack, bot)
    callback = intuit.authorize(url, as_user=DEDICATED)
    intuit.fail_next("token", 503, times=5)
    resp = browser.get(callback, timeout=10)
    assert resp.status_code == 502 and "Reference" in resp.text
    assert nothing_stored(bot)


@pytest.mark.parametrize("user", ["U0OWNER"])
def test_state_is_bound_to_the_user_who_asked(bot, slack, intuit, user):
    browser, url = fresh_link(slack, bot, user_id=user)
    callback = intuit.authorize(url, as_user=DEDICATED)
    browser.get(callback, timeout=5)
    conn = bot.services.store.get_connection(REALM)
    assert conn.connected_by == user
    assert dms_to(slack, user, wait_for=1) and not dms_to(slack, "U0ADMIN")


def _tampered(callback: str, realm: str) -> str:
    parsed = urlparse(callback)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    query["realmId"] = realm
    return parsed._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


@pytest.mark.parametrize("realm", ["1111", "4620816365025351930"])
def test_tampered_realm_id_stores_nothing_and_revokes_the_grant(bot, slack, intuit, realm):
    """The realmId in the redirect is the browser's: editing it must not connect that realm."""
    if realm != "1111":
        intuit.add_company(
            realm, "Someone Else's Books Inc", users={"boss@else.example": "4620816365102938475"}
        )
    browser, url = fresh_link(slack, bot)
    callback = _tampered(intuit.authorize(url, as_user=DEDICATED), realm)
    resp = browser.get(callback, timeout=10)
    assert resp.status_code == 403
    assert "did not grant access" in resp.text and "connected ✓" not in resp.text
    assert nothing_stored(bot)
    # the grant Intuit issued for the real company is revoked, not left alive
    [grant] = intuit.grants(REALM)
    assert grant.revoked
    [dm] = dms_to(slack, "U0ADMIN", wait_for=1)
    assert "did not grant access" in card_text(dm) and "not connected" in card_text(dm)
    resp, _ = command(slack, bot, "status")
    assert "never connected" in card_text(ack_message(resp))


def test_non_numeric_realm_id_is_refused_before_the_code_is_spent(bot, slack, intuit):
    browser, url = fresh_link(slack, bot)
    callback = _tampered(intuit.authorize(url, as_user=DEDICATED), "١٢٣")  # Arabic-Indic digits
    resp = browser.get(callback, timeout=10)
    assert resp.status_code == 400 and nothing_stored(bot)
    assert intuit.count("token", "authorization_code") == 0


def test_qbo_down_while_verifying_the_company_stores_nothing(bot, slack, intuit):
    browser, url = fresh_link(slack, bot)
    callback = intuit.authorize(url, as_user=DEDICATED)
    intuit.fail_next("companyinfo", 503, times=10)
    resp = browser.get(callback, timeout=20)
    assert resp.status_code == 502 and "Reference" in resp.text
    assert nothing_stored(bot)
    [grant] = intuit.grants(REALM)
    assert grant.revoked  # nothing half-kept


def test_connected_company_is_verified_and_named_in_one_write(bot, slack, intuit):
    browser, url = fresh_link(slack, bot)
    resp = browser.get(intuit.authorize(url, as_user=DEDICATED), timeout=10)
    assert resp.status_code == 200 and "Acme Payments Ltd" in resp.text
    conn = bot.services.store.get_connection(REALM)
    assert conn.company_name == "Acme Payments Ltd" and conn.identity.email == DEDICATED
    assert not intuit.grants(REALM)[0].revoked


def test_a_person_keeps_at_most_three_connect_links_the_newest(bot, slack, intuit, redis_client):
    """Three hundred `/zqbo connect` leave three working links, not three hundred rows."""
    urls = []
    for _ in range(5):
        resp, response_url = command(slack, bot, "connect")
        ack_message(resp)
        [message] = slack.wait_for_responses(response_url, 1)
        [url] = link_buttons(message)
        urls.append(url)
    for dropped in urls[:2]:
        browser, auth_url = signed_in(slack, dropped)
        page = browser.get(intuit.authorize(auth_url, as_user=DEDICATED), timeout=10)
        assert page.status_code >= 400 and bot.services.store.get_connection(REALM) is None
    browser, auth_url = signed_in(slack, urls[2])
    kept = browser.get(intuit.authorize(auth_url, as_user=DEDICATED), timeout=10)  # the oldest of 3
    assert kept.status_code == 200 and bot.services.store.get_connection(REALM) is not None
