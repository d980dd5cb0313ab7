"""The Slack emulator, driven through slack_sdk: shapes, errors, rate limits, response_url."""

from __future__ import annotations

import threading
import time

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient


def web(slack, token: str | None = None) -> WebClient:
    return WebClient(token=token or slack.bot_token, base_url=slack.api_url)


def test_auth_test_and_users_info(slack):
    client = web(slack)
    assert client.auth_test()["user_id"] == "U0ZQBO"
    user = client.users_info(user="U0ADMIN")["user"]
    assert user["is_admin"] is True and user["profile"]["email"] == "ana@acme.example"
    assert client.users_info(user="U0STAFF")["user"]["is_admin"] is False
    with pytest.raises(SlackApiError) as err:
        client.users_info(user="U0NOBODY")
    assert err.value.response["error"] == "user_not_found"


def test_bad_token_is_invalid_auth(slack):
    with pytest.raises(SlackApiError) as err:
        web(slack, token="xoxb-wrong").auth_test()
    assert err.value.response.status_code == 200 and err.value.response["error"] == "invalid_auth"


def test_dm_post_and_update_in_place(slack):
    client = web(slack)
    channel = client.conversations_open(users="U0ADMIN")["channel"]["id"]
    assert channel.startswith("D")
    posted = client.chat_postMessage(channel=channel, text="step 1", blocks=[{"type": "divider"}])
    client.chat_update(channel=channel, ts=posted["ts"], text="step 2")
    [message] = slack.messages(channel)
    assert message["text"] == "step 2" and message["ts"] == posted["ts"]
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel=channel, ts="1.000000", text="x")
    assert err.value.response["error"] == "message_not_found"


def test_channel_errors(slack):
    slack.add_channel("C0PRIV", "private", is_member=False)
    client = web(slack)
    for channel, error in [("C0NONE", "channel_not_found"), ("C0PRIV", "not_in_channel")]:
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel=channel, text="hi")
        assert err.value.response["error"] == error


def test_block_limits_are_enforced(slack):
    client = web(slack)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C0ALERTS", text="x", blocks=[{"type": "divider"}] * 51)
    assert err.value.response["error"] == "invalid_blocks"
    long = {"type": "section", "text": {"type": "mrkdwn", "text": "a" * 3001}}
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C0ALERTS", text="x", blocks=[long])
    with pytest.raises(SlackApiError) as err, pytest.warns(UserWarning):
        client.chat_postMessage(channel="C0ALERTS")
    assert err.value.response["error"] == "no_text"


def test_injected_error_and_rate_limit(slack):
    slack.fail_next("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError):
        web(slack).chat_postMessage(channel="C0ALERTS", text="hi")
    slack.rate_limit_next("chat.postMessage", retry_after=0)
    plain = web(slack)
    with pytest.raises(SlackApiError) as err:
        plain.chat_postMessage(channel="C0ALERTS", text="hi")
    assert err.value.response.status_code == 429 and err.value.response.headers["retry-after"] in ("0", ["0"])

    slack.rate_limit_next("chat.postMessage", retry_after=0)
    retrying = web(slack)
    retrying.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    retrying.chat_postMessage(channel="C0ALERTS", text="after retry")
    calls = slack.calls_to("chat.postMessage")
    assert [c.status for c in calls[-2:]] == [429, 200]
    assert [m["text"] for m in slack.messages("C0ALERTS")] == ["after retry"]


def test_views_publish_keeps_the_home_tab(slack):
    published = web(slack).views_publish(
        user_id="U0ADMIN", view={"type": "home", "blocks": [{"type": "divider"}]}
    )
    [divider] = slack.home_views["U0ADMIN"]["blocks"]
    assert divider == {"type": "divider", "block_id": divider["block_id"]}  # Slack names each block
    assert published["view"]["id"] == slack.home_views["U0ADMIN"]["id"]
    again = web(slack).views_publish(user_id="U0ADMIN", view={"type": "home", "blocks": []})
    assert again["view"]["id"] == published["view"]["id"]  # one Home view per user, republished
    with pytest.raises(SlackApiError):
        web(slack).views_publish(user_id="U0ADMIN", view={"type": "modal", "blocks": []})


def test_response_url_takes_five_posts(slack):
    url = slack.new_response_url()
    hook = WebhookClient(url)
    for i in range(5):
        assert hook.send(text=f"update {i}", replace_original=True).status_code == 200
    assert hook.send(text="one too many").status_code == 404
    posts = slack.wait_for_responses(url, 5)
    assert [p["text"] for p in posts] == [f"update {i}" for i in range(5)]
    assert posts[0]["replace_original"] is True


def test_wait_for_responses_times_out(slack):
    with pytest.raises(TimeoutError):
        slack.wait_for_responses(slack.new_response_url(), 1, timeout=0.1)


def test_signed_requests_verify_with_slack_sdk(slack):
    body = b"text=status&user_id=U0ADMIN"
    headers = slack.sign(body)
    verifier = SignatureVerifier(slack.signing_secret)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    stale = slack.sign(body, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid(body, stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"])


def test_hold_next_hangs_until_released_then_fails_without_effect(slack):
    arrived = slack.hold_next("chat.postMessage")
    statuses: list[int] = []

    def post() -> None:
        try:
            web(slack).chat_postMessage(channel="C0ALERTS", text="held")
        except SlackApiError as exc:
            statuses.append(exc.response.status_code)

    poster = threading.Thread(target=post)
    poster.start()
    assert arrived.wait(5)
    poster.join(0.2)
    assert poster.is_alive()
    slack.release_held()
    poster.join(5)
    assert statuses == [500] and slack.messages("C0ALERTS") == []
