"""End to end over loopback HTTP: Slack emulator → bot (Bolt + Flask) → Intuit/QBO emulator,
real clients throughout, state in real Redis."""

from __future__ import annotations

import logging
import threading

import requests

from bot.models import ConnectionStatus
from tests.conftest import DEDICATED, JANE, REALM
from tests.helpers import ack_message, card_text, command, connect, dms_to


def test_status_before_any_connection_says_never_connected(bot, slack):
    resp, url = command(slack, bot, "status")
    text = card_text(ack_message(resp))
    assert "never connected" in text
    assert "Connect QuickBooks" in text


def test_connect_then_status_shows_company_and_identity(bot, slack, intuit):
    page = connect(slack, intuit, bot, as_user=JANE)
    assert page.status_code == 200
    assert "Acme Payments Ltd" in page.text and JANE in page.text
    assert "not the dedicated" in page.text

    conn = bot.services.store.get_connection(REALM)
    assert conn.identity.email == JANE and conn.company_name == "Acme Payments Ltd"
    [dm] = dms_to(slack, "U0ADMIN", wait_for=1)
    assert "Acme Payments Ltd" in card_text(dm) and JANE in card_text(dm)

    resp, response_url = command(slack, bot, "status")
    card = card_text(ack_message(resp))
    assert "Acme Payments Ltd" in card and REALM in card and JANE in card
    assert "not the dedicated user" in card
    [live] = slack.wait_for_responses(response_url, 1)
    assert live.get("replace_original") is True
    assert "Live probe" in card_text(live) and "QuickBooks answered" in card_text(live)


def test_connect_as_dedicated_user_is_confirmed(bot, slack, intuit):
    page = connect(slack, intuit, bot, as_user=DEDICATED)
    assert "That is the dedicated integration user" in page.text
    resp, _ = command(slack, bot, "status")
    assert "the dedicated integration user" in card_text(ack_message(resp))


def test_expired_access_token_is_refreshed_once_and_rotation_persisted(bot, slack, intuit, clock):
    connect(slack, intuit, bot, as_user=DEDICATED)
    before = bot.services.store.get_connection(REALM)
    clock.advance(3700)
    resp, response_url = command(slack, bot, "status")
    [live] = slack.wait_for_responses(response_url, 1)
    assert "QuickBooks answered" in card_text(live)
    assert intuit.count("token", grant_type="refresh_token") == 1
    after = bot.services.store.get_connection(REALM)
    assert after.refresh_token != before.refresh_token
    assert after.refresh_token == intuit.current_refresh_token(REALM)
    assert after.token_generation == before.token_generation + 1


def test_invalid_grant_marks_connection_lost_with_reconnect_hint(bot, slack, intuit, clock):
    connect(slack, intuit, bot, as_user=DEDICATED)
    intuit.revoke_company(REALM)  # someone disconnected the app inside QuickBooks
    clock.advance(3700)
    resp, response_url = command(slack, bot, "status")
    [live] = slack.wait_for_responses(response_url, 1)
    assert "connection lost" in card_text(live)
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.LOST
    resp, _ = command(slack, bot, "status")
    card = card_text(ack_message(resp))
    assert "lost" in card and "invalid_grant" in card and "/zqbo connect" in card


def test_qbo_429_then_200_probe_succeeds(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=DEDICATED)
    calls_before = intuit.count("companyinfo")
    intuit.fail_next("companyinfo", 429, retry_after=0)
    resp, response_url = command(slack, bot, "status")
    [live] = slack.wait_for_responses(response_url, 1)
    assert "QuickBooks answered" in card_text(live)
    assert intuit.count("companyinfo") == calls_before + 2


def test_qbo_outage_is_shown_on_the_card_not_crashed(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=DEDICATED)
    intuit.fail_next("companyinfo", 503, times=10)
    resp, response_url = command(slack, bot, "status")
    [live] = slack.wait_for_responses(response_url, 1)
    text = card_text(live)
    assert "did not answer" in text and "503" in text
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.CONNECTED


def test_transient_refresh_failure_does_not_lose_the_connection(bot, slack, intuit, clock):
    connect(slack, intuit, bot, as_user=DEDICATED)
    clock.advance(3700)
    intuit.fail_next("token", 503, times=10)
    resp, response_url = command(slack, bot, "status")
    [live] = slack.wait_for_responses(response_url, 1)
    assert "did not answer" in card_text(live)
    assert bot.services.store.get_connection(REALM).status is ConnectionStatus.CONNECTED


def test_concurrent_refresh_reaches_intuit_once(bot, slack, intuit, clock, cipher, redis_prefix):
    """Two 'processes' (separate service graphs sharing Redis), four threads each."""
    from bot.app import build_services
    from bot.store.redis import RedisStore
    from tests.conftest import REDIS_URL

    connect(slack, intuit, bot, as_user=DEDICATED)
    other = build_services(
        bot.services.settings, store=RedisStore(REDIS_URL, cipher, redis_prefix), clock=clock
    )
    clock.advance(3700)
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def need_token(services) -> None:
        barrier.wait()
        tokens.append(services.connections.valid(REALM).access_token)

    threads = [threading.Thread(target=need_token, args=(s,)) for s in [bot.services, other] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert intuit.count("token", grant_type="refresh_token") == 1
    assert len(set(tokens)) == 1


def test_malformed_command_text_gets_help(bot, slack):
    for text in ["frobnicate", "  ", "status;DROP TABLE", "<script>", "😀" * 300]:
        resp, _ = command(slack, bot, text)
        message = ack_message(resp)
        assert "zqbo keeps your QuickBooks connection honest" in card_text(
            message
        ) or "QuickBooks" in card_text(message)
    resp, _ = command(slack, bot, "frobnicate now")
    assert "I don't know" in card_text(ack_message(resp))


def test_bad_slack_signature_is_rejected_without_side_effect(bot, slack):
    resp, url = command(slack, bot, "connect", bad_signature=True)
    assert resp.status_code == 401
    import time

    resp2, _ = command(slack, bot, "connect", timestamp=int(time.time()) - 600)
    assert resp2.status_code == 401
    time.sleep(0.3)
    assert slack.responses(url) == []
    assert bot.services.store.list_docs("any") == {}


def test_no_token_reaches_the_logs(bot, slack, intuit, clock, caplog):
    caplog.set_level(logging.DEBUG)
    connect(slack, intuit, bot, as_user=JANE)
    clock.advance(3700)
    resp, response_url = command(slack, bot, "status")
    slack.wait_for_responses(response_url, 1)
    conn = bot.services.store.get_connection(REALM)
    assert intuit.count("token", grant_type="refresh_token") == 1
    secrets = [
        conn.access_token,
        conn.refresh_token,
        intuit.client_secret,
        slack.bot_token,
        slack.signing_secret,
    ]
    secrets += intuit.issued_tokens()
    logged = caplog.text
    assert logged  # the libraries did log at DEBUG
    for secret in secrets:
        assert secret not in logged


def test_healthz_and_metrics(bot):
    assert requests.get(f"{bot.url}/healthz", timeout=5).json() == {"ok": True, "store": "redis"}
    metrics = requests.get(f"{bot.url}/metrics", timeout=5)
    assert "zqbo_slack_commands_total" in metrics.text
    # Prometheus' own exposition type, said once (a scraper parses the header as given)
    from prometheus_client import CONTENT_TYPE_LATEST

    assert metrics.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert metrics.headers["Content-Type"].count("charset") == 1


def test_healthz_is_503_when_the_store_is_down(intuit, slack, clock, cipher):
    from bot.store.redis import RedisStore
    from tests.conftest import make_settings, start_bot

    dead = RedisStore("redis://127.0.0.1:1/0", cipher)
    server, handle = start_bot(make_settings(intuit, slack), clock, store=dead)
    try:
        resp = requests.get(f"{handle.url}/healthz", timeout=20)
        assert resp.status_code == 503 and resp.json()["ok"] is False
    finally:
        server.shutdown()
