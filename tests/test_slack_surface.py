"""What a Slack user meets around the core flow: buttons, App Home, Slack misbehaving,
tokens going bad under a live status card."""

from __future__ import annotations

import logging
import time

import requests

from bot.models import ConnectionStatus
from tests.conftest import DEDICATED, JANE, REALM
from tests.helpers import ack_message, card_text, command, connect, dms_to, link_buttons


def test_connect_button_on_the_status_card_sends_a_link(bot, slack, intuit):
    resp, _ = command(slack, bot, "status")
    card = ack_message(resp)
    press, response_url = slack.press_button(bot.events_url, card, "zqbo_connect")
    assert press.status_code == 200
    [message] = slack.wait_for_responses(response_url, 1)
    [url] = link_buttons(message)
    assert url.startswith(f"{bot.url}/qbo/connect/")  # zqbo's link: Sign in with Slack, then Intuit


def test_forged_button_press_is_rejected(bot, slack):
    resp, _ = command(slack, bot, "status")
    card = ack_message(resp)
    payload_url = slack.new_response_url()
    forged, _ = slack.press_button(bot.events_url, card, "zqbo_connect", response_url=payload_url)
    assert forged.status_code == 200  # sanity: the real one works
    body = {"type": "block_actions", "actions": [{"action_id": "zqbo_connect"}], "response_url": payload_url}
    resp = slack.send_action(bot.events_url, body, bad_signature=True)
    assert resp.status_code == 401


def test_app_home_shows_the_status_card(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=DEDICATED)
    resp = slack.send_event(bot.events_url, {"type": "app_home_opened", "user": "U0STAFF", "tab": "home"})
    assert resp.status_code == 200
    [call] = slack.wait_for_calls("views.publish", 1)
    assert call.args["user_id"] == "U0STAFF"
    text = card_text({"blocks": slack.home_views["U0STAFF"]["blocks"]})
    assert "Acme Payments Ltd" in text and "connected" in text


def test_forged_event_is_rejected(bot, slack):
    resp = slack.send_event(
        bot.events_url, {"type": "app_home_opened", "user": "U0STAFF", "tab": "home"}, bad_signature=True
    )
    assert resp.status_code == 401
    time.sleep(0.2)
    assert slack.calls_to("views.publish") == []


def test_slack_rate_limit_on_the_dm_is_retried_and_the_page_does_not_wait(bot, slack, intuit):
    slack.rate_limit_next("chat.postMessage", retry_after=1)
    started = time.monotonic()
    page = connect(slack, intuit, bot, as_user=DEDICATED)
    assert page.status_code == 200
    [dm] = dms_to(slack, "U0ADMIN", wait_for=1)
    assert "Acme Payments Ltd" in card_text(dm)
    statuses = [c.status for c in slack.calls_to("chat.postMessage")]
    assert statuses == [429, 200]
    assert time.monotonic() - started < 5


def test_slack_refusing_the_dm_keeps_the_connection(bot, slack, intuit, caplog):
    caplog.set_level(logging.ERROR)
    slack.fail_next("conversations.open", "user_not_found")
    page = connect(slack, intuit, bot, as_user=DEDICATED)
    assert page.status_code == 200
    slack.wait_for_calls("conversations.open", 1, ok=False)
    deadline = time.monotonic() + 5
    while "could not DM" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "user_not_found" in caplog.text
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.CONNECTED


def test_refresh_token_near_its_end_shows_expiring(bot, slack, intuit, clock):
    connect(slack, intuit, bot, as_user=DEDICATED)
    clock.advance(90 * 86400)
    resp, _ = command(slack, bot, "status")
    card = card_text(ack_message(resp))
    assert "refresh token expiring" in card


def test_revoked_in_quickbooks_shows_lost_on_the_live_card(bot, slack, intuit):
    """Access token still in date, but the company disconnected the app: 401, refresh, invalid_grant."""
    connect(slack, intuit, bot, as_user=JANE)
    intuit.revoke_company(REALM)
    resp, response_url = command(slack, bot, "status")
    [live] = slack.wait_for_responses(response_url, 1)
    assert "connection lost" in card_text(live)
    assert intuit.count("token", grant_type="refresh_token") == 1
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.LOST


def test_one_401_is_healed_by_a_refresh(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=DEDICATED)
    intuit.fail_next("companyinfo", 401)
    resp, response_url = command(slack, bot, "status")
    [live] = slack.wait_for_responses(response_url, 1)
    assert "QuickBooks answered" in card_text(live)
    assert intuit.count("token", grant_type="refresh_token") == 1
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.CONNECTED


def test_probes_for_one_company_are_coalesced(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=DEDICATED)
    before = intuit.count("companyinfo")
    intuit.set_latency(0.5, endpoint="companyinfo")
    urls = []
    for _ in range(5):
        resp, url = command(slack, bot, "status")
        assert resp.status_code == 200
        urls.append(url)
    for url in urls:
        assert "QuickBooks answered" in card_text(slack.wait_for_responses(url, 1)[0])
    assert intuit.count("companyinfo") - before == 1


def test_callback_page_is_not_cached(bot, slack, intuit):
    page = connect(slack, intuit, bot, as_user=DEDICATED)
    assert page.headers["Cache-Control"] == "no-store"
    assert requests.get(f"{bot.url}/qbo/callback", timeout=5).headers["Referrer-Policy"] == "no-referrer"


def test_a_fresh_probe_is_shown_in_the_ack_without_a_second_update(
    intuit, slack, clock, redis_prefix, cipher
):
    from bot.store.redis import RedisStore
    from tests.conftest import REDIS_URL, make_settings, start_bot

    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(make_settings(intuit, slack), clock, store=store, probe_reuse_seconds=60)
    try:
        connect(slack, intuit, bot, as_user=DEDICATED)
        _, first_url = command(slack, bot, "status")
        slack.wait_for_responses(first_url, 1)
        probes = intuit.count("companyinfo")
        resp, second_url = command(slack, bot, "status")
        card = card_text(ack_message(resp))
        assert "Live probe" in card and "QuickBooks answered" in card and "Asking QuickBooks" not in card
        time.sleep(0.3)
        assert slack.responses(second_url) == []
        assert intuit.count("companyinfo") == probes
    finally:
        server.shutdown()
        store.close()
