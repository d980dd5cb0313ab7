"""Message metadata, conversations.history and "Slack acted but the answer was lost", through
slack_sdk: what a bot needs to ask Slack "did I already post this?" and to be tested when a post
half-fails.
"""

from __future__ import annotations

import json
import threading

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator


def web(slack) -> WebClient:
    return WebClient(token=slack.bot_token, base_url=slack.api_url)


ALERT = {"event_type": "zqbo_alert", "event_payload": {"fingerprint": "fp-1", "realm": "9130"}}


def test_metadata_is_stored_and_only_shown_when_asked_for(slack):
    client = web(slack)
    posted = client.chat_postMessage(channel="C0ALERTS", text="alert", metadata=ALERT)
    assert slack.messages("C0ALERTS")[0]["metadata"] == ALERT
    [with_meta] = client.conversations_history(channel="C0ALERTS", include_all_metadata=True)["messages"]
    assert with_meta["ts"] == posted["ts"] and with_meta["metadata"] == ALERT
    [without] = client.conversations_history(channel="C0ALERTS")["messages"]
    assert "metadata" not in without and without["text"] == "alert"


def test_metadata_as_a_json_string_and_on_update(slack):
    client = web(slack)
    form = {"channel": "C0ALERTS", "text": "form-encoded", "metadata": json.dumps(ALERT)}
    posted = client.api_call("chat.postMessage", data=form)
    assert slack.messages("C0ALERTS")[0]["metadata"] == ALERT
    client.chat_update(channel="C0ALERTS", ts=posted["ts"], text="resolved")
    assert slack.messages("C0ALERTS")[0]["metadata"] == ALERT  # kept when the update carries none
    resolved = {"event_type": "zqbo_alert", "event_payload": {"fingerprint": "fp-1", "resolved": True}}
    client.chat_update(channel="C0ALERTS", ts=posted["ts"], text="resolved", metadata=resolved)
    assert slack.messages("C0ALERTS")[0]["metadata"] == resolved


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ({"event_type": "zqbo_alert"}, "invalid_metadata_schema"),
        ({"event_type": "", "event_payload": {}}, "invalid_metadata_schema"),
        ("{not json", "invalid_metadata_format"),
    ],
)
def test_malformed_metadata_is_refused(slack, metadata, error):
    form = {"channel": "C0ALERTS", "text": "x", "metadata": metadata}
    with pytest.raises(SlackApiError) as err:
        if isinstance(metadata, str):
            web(slack).api_call("chat.postMessage", data=form)
        else:
            web(slack).api_call("chat.postMessage", json=form)
    assert err.value.response["error"] == error
    assert slack.messages("C0ALERTS") == [] and [c.error for c in slack.refused_calls()] == [error]


def test_history_pages_newest_first_without_thread_replies(slack):
    client = web(slack)
    ts = [client.chat_postMessage(channel="C0ALERTS", text=f"m{i}")["ts"] for i in range(5)]
    client.chat_postMessage(channel="C0ALERTS", text="reply", thread_ts=ts[1])
    first = client.conversations_history(channel="C0ALERTS", limit=2)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"] and first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    second = client.conversations_history(channel="C0ALERTS", limit=2, cursor=cursor)
    assert [m["text"] for m in second["messages"]] == ["m2", "m1"] and second["has_more"] is True
    parent = second["messages"][1]
    assert parent["thread_ts"] == ts[1] and parent["reply_count"] == 1
    third = client.conversations_history(
        channel="C0ALERTS", limit=2, cursor=second["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in third["messages"]] == ["m0"] and third["has_more"] is False
    assert third["response_metadata"]["next_cursor"] == ""
    everything = [
        m["text"]
        for page in client.conversations_history(channel="C0ALERTS", limit=2)
        for m in page["messages"]
    ]
    assert everything == ["m4", "m3", "m2", "m1", "m0"]  # slack_sdk's own cursor pagination
    assert len(slack.messages("C0ALERTS")) == 6  # the reply is in the channel, not in history
    with pytest.raises(SlackApiError) as err:
        client.conversations_history(channel="C0ALERTS", cursor="bm90LWEtY3Vyc29y")
    assert err.value.response["error"] == "invalid_cursor"


def test_history_window_oldest_latest_inclusive(slack):
    client = web(slack)
    ts = [client.chat_postMessage(channel="C0ALERTS", text=f"m{i}")["ts"] for i in range(4)]

    def texts(**kw):
        return [m["text"] for m in client.conversations_history(channel="C0ALERTS", **kw)["messages"]]

    assert texts(oldest=ts[1]) == ["m3", "m2"]
    assert texts(oldest=ts[1], inclusive=True) == ["m3", "m2", "m1"]
    assert texts(oldest=ts[0], latest=ts[3]) == ["m2", "m1"]
    assert texts(oldest=ts[0], latest=ts[3], inclusive=True) == ["m3", "m2", "m1", "m0"]
    assert texts(latest=ts[1]) == ["m0"]


def test_history_limit_defaults_to_100_and_stops_at_999(slack):
    client = web(slack)
    for i in range(1000):
        client.chat_postMessage(channel="C0ALERTS", text=f"m{i}")
    assert len(client.conversations_history(channel="C0ALERTS")["messages"]) == 100
    page = client.conversations_history(channel="C0ALERTS", limit=5000)
    assert len(page["messages"]) == 999 and page["has_more"] is True
    assert page["messages"][-1]["text"] == "m1"


def test_history_channel_errors(slack):
    slack.add_channel("C0PRIV", "private", is_member=False)
    client = web(slack)
    for channel, error in [("C0NONE", "channel_not_found"), ("C0PRIV", "not_in_channel")]:
        with pytest.raises(SlackApiError) as err:
            client.conversations_history(channel=channel)
        assert err.value.response["error"] == error


def test_drop_after_apply_posts_but_the_answer_is_lost(slack):
    slack.drop_after_apply("chat.postMessage")
    client = web(slack)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C0ALERTS", text="alert", metadata=ALERT)
    assert err.value.response.status_code == 500
    assert [m["text"] for m in slack.messages("C0ALERTS")] == ["alert"]
    [call] = slack.calls_to("chat.postMessage")
    assert (call.ok, call.status, call.answer_lost) == (True, 500, True)
    assert slack.refused_calls() == []
    client.chat_postMessage(channel="C0ALERTS", text="next")  # only the next call was dropped
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [500, 200]


def test_a_retried_post_whose_answer_was_lost_posts_twice(slack):
    slack.drop_after_apply("chat.postMessage", times=2)
    client = web(slack)
    client.retry_handlers.append(
        ServerErrorRetryHandler(
            max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.01)
        )
    )
    client.chat_postMessage(channel="C0ALERTS", text="alert")
    assert [m["text"] for m in slack.messages("C0ALERTS")] == ["alert"] * 3
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [500, 500, 200]


def test_hold_after_apply_shows_the_post_while_the_call_hangs(slack):
    applied = slack.hold_after_apply("chat.postMessage")
    outcome: list[object] = []

    def post() -> None:
        try:
            outcome.append(web(slack).chat_postMessage(channel="C0ALERTS", text="held"))
        except SlackApiError as exc:
            outcome.append(exc.response.status_code)

    poster = threading.Thread(target=post)
    poster.start()
    assert applied.wait(5)
    assert [m["text"] for m in slack.messages("C0ALERTS")] == ["held"]
    poster.join(0.2)
    assert poster.is_alive() and outcome == []  # the bot is still waiting for its answer
    slack.release_held()
    poster.join(5)
    assert outcome == [500]
    [call] = slack.calls_to("chat.postMessage")
    assert call.ok and call.answer_lost and call.status == 500
