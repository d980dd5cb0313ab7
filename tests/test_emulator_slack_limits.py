"""The Slack emulator refuses what Slack refuses (API_FACTS.md, "Slack: text, escaping and limits"),
driven through slack_sdk's WebClient and WebhookClient. Each limit is checked on both sides: the
largest value Slack takes is accepted, one more is refused with `invalid_blocks` naming the place.
"""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient


def web(slack) -> WebClient:
    return WebClient(token=slack.bot_token, base_url=slack.api_url)


def plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def section(text: str = "x", **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(text), **extra}


def button(action_id: str = "a", text: str = "Go", **extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": plain(text), **extra}


def actions(*elements: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "actions", "elements": list(elements), **extra}


def confirm(title: str = "Sure?", text: str = "Really.", yes: str = "Yes", no: str = "No") -> dict[str, Any]:
    return {"title": plain(title), "text": mrkdwn(text), "confirm": plain(yes), "deny": plain(no)}


# (name, blocks Slack takes, blocks one step over the limit, json-pointer named in the error)
LIMITS = [
    ("section text", [section("a" * 3000)], [section("a" * 3001)], "/blocks/0/text/text"),
    (
        "section fields count",
        [{"type": "section", "fields": [mrkdwn("f")] * 10}],
        [{"type": "section", "fields": [mrkdwn("f")] * 11}],
        "/blocks/0/fields",
    ),
    (
        "section field text",
        [{"type": "section", "fields": [mrkdwn("f" * 2000)]}],
        [{"type": "section", "fields": [mrkdwn("f" * 2001)]}],
        "/blocks/0/fields/0/text",
    ),
    (
        "header text",
        [{"type": "header", "text": plain("h" * 150)}],
        [{"type": "header", "text": plain("h" * 151)}],
        "/blocks/0/text/text",
    ),
    (
        "header is plain_text",
        [{"type": "header", "text": plain("h")}],
        [{"type": "header", "text": mrkdwn("h")}],
        "/blocks/0/text",
    ),
    ("button text", [actions(button(text="b" * 75))], [actions(button(text="b" * 76))], "/elements/0/text"),
    (
        "button value",
        [actions(button(value="v" * 2000))],
        [actions(button(value="v" * 2001))],
        "/blocks/0/elements/0/value",
    ),
    (
        "button url",
        [actions(button(url="https://x.example/" + "u" * 2982))],
        [actions(button(url="https://x.example/" + "u" * 2983))],
        "/blocks/0/elements/0/url",
    ),
    (
        "action_id length",
        [actions(button(action_id="a" * 255))],
        [actions(button(action_id="a" * 256))],
        "/blocks/0/elements/0/action_id",
    ),
    ("block_id length", [section(block_id="b" * 255)], [section(block_id="b" * 256)], "/blocks/0/block_id"),
    (
        "action_id unique within its block",
        [actions(button("same")), actions(button("same"))],
        [actions(button("same"), button("same"))],
        "/blocks/0/elements/1/action_id",
    ),
    (
        "block_id unique in the message",
        [section(block_id="one"), section(block_id="two")],
        [section(block_id="one"), section(block_id="one")],
        "/blocks/1/block_id",
    ),
    (
        "actions elements",
        [actions(*[button(f"a{i}") for i in range(25)])],
        [actions(*[button(f"a{i}") for i in range(26)])],
        "/blocks/0/elements",
    ),
    (
        "context elements",
        [{"type": "context", "elements": [mrkdwn("c")] * 10}],
        [{"type": "context", "elements": [mrkdwn("c")] * 11}],
        "/blocks/0/elements",
    ),
    (
        "confirm title",
        [actions(button(confirm=confirm(title="t" * 100)))],
        [actions(button(confirm=confirm(title="t" * 101)))],
        "/confirm/title/text",
    ),
    (
        "confirm text",
        [actions(button(confirm=confirm(text="t" * 300)))],
        [actions(button(confirm=confirm(text="t" * 301)))],
        "/confirm/text/text",
    ),
    (
        "confirm button",
        [actions(button(confirm=confirm(yes="y" * 30)))],
        [actions(button(confirm=confirm(yes="y" * 31)))],
        "/confirm/confirm/text",
    ),
    (
        "deny button",
        [actions(button(confirm=confirm(no="n" * 30)))],
        [actions(button(confirm=confirm(no="n" * 31)))],
        "/confirm/deny/text",
    ),
    (
        "text objects are mrkdwn or plain_text",
        [section("x")],
        [{"type": "section", "text": {"type": "markdown", "text": "x"}}],
        "/blocks/0/text",
    ),
    ("a text object, not a string", [section("x")], [{"type": "section", "text": "x"}], "/blocks/0/text"),
    ("known block types only", [{"type": "divider"}], [{"type": "banner"}], "/blocks/0/type"),
    (
        "slack_sdk's own checks (image needs alt_text)",
        [{"type": "image", "image_url": "https://x.example/a.png", "alt_text": "a"}],
        [{"type": "image", "image_url": "https://x.example/a.png"}],
        "/blocks/0",
    ),
]


@pytest.mark.parametrize(("name", "good", "bad", "pointer"), LIMITS, ids=[case[0] for case in LIMITS])
def test_each_block_kit_limit_is_enforced(slack, name, good, bad, pointer):
    client = web(slack)
    client.chat_postMessage(channel="C0ALERTS", text="fits", blocks=good)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C0ALERTS", text="over", blocks=bad)
    answer = err.value.response
    assert answer.status_code == 200 and answer["error"] == "invalid_blocks"
    assert any(pointer in problem for problem in answer["errors"]), answer["errors"]
    assert answer["response_metadata"]["messages"][0].startswith("[ERROR] ")
    assert [m["text"] for m in slack.messages("C0ALERTS")] == ["fits"]
    [refused] = slack.refused_calls()
    assert refused.args["text"] == "over" and refused.error == "invalid_blocks"


def test_block_count_and_text_length(slack):
    client = web(slack)
    client.chat_postMessage(channel="C0ALERTS", text="t" * 40_000, blocks=[{"type": "divider"}] * 50)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C0ALERTS", text="x", blocks=[{"type": "divider"}] * 51)
    assert err.value.response["error"] == "invalid_blocks"
    assert "at most 50 blocks" in err.value.response["errors"][0]
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C0ALERTS", text="t" * 40_001)
    assert err.value.response["error"] == "msg_too_long"
    with pytest.raises(SlackApiError) as err:
        client.api_call("chat.postMessage", json={"channel": "C0ALERTS", "text": "x", "blocks": "[oops"})
    assert err.value.response["error"] == "invalid_blocks_format"
    assert len(slack.messages("C0ALERTS")) == 1
    assert [c.error for c in slack.refused_calls()] == [
        "invalid_blocks",
        "msg_too_long",
        "invalid_blocks_format",
    ]


def test_update_and_ephemeral_are_checked_too(slack):
    client = web(slack)
    posted = client.chat_postMessage(channel="C0ALERTS", text="card", blocks=[section("ok")])
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C0ALERTS", ts=posted["ts"], text="card", blocks=[section("a" * 3001)])
    assert err.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as err:
        client.chat_postEphemeral(channel="C0ALERTS", user="U0ADMIN", text="t" * 40_001)
    assert err.value.response["error"] == "msg_too_long"
    [message] = slack.messages("C0ALERTS")
    assert message["blocks"] == posted["message"]["blocks"] and "edited" not in message
    assert [b["text"]["text"] for b in message["blocks"]] == ["ok"]
    assert [c.method for c in slack.refused_calls()] == ["chat.update", "chat.postEphemeral"]


def test_other_refusals_are_not_counted_as_bad_messages(slack):
    slack.add_channel("C0PRIV", "private", is_member=False)
    with pytest.raises(SlackApiError):
        web(slack).chat_postMessage(channel="C0PRIV", text="hi")
    assert slack.calls_to("chat.postMessage")[0].error == "not_in_channel"
    assert slack.refused_calls() == []


def test_home_view_takes_100_blocks_and_the_same_limits(slack):
    client = web(slack)
    client.views_publish(user_id="U0ADMIN", view={"type": "home", "blocks": [{"type": "divider"}] * 100})
    assert len(slack.home_views["U0ADMIN"]["blocks"]) == 100
    for blocks in ([{"type": "divider"}] * 101, [{"type": "header", "text": plain("h" * 151)}]):
        with pytest.raises(SlackApiError) as err:
            client.views_publish(user_id="U0ADMIN", view={"type": "home", "blocks": blocks})
        assert err.value.response["error"] == "invalid_blocks"
        assert "/view/blocks" in err.value.response["errors"][0]
    assert len(slack.home_views["U0ADMIN"]["blocks"]) == 100
    assert [c.method for c in slack.refused_calls()] == ["views.publish"] * 2


def test_response_url_refuses_a_bad_card_with_400_and_keeps_nothing(slack):
    url = slack.new_response_url()
    hook = WebhookClient(url)
    bad = hook.send(text="card", blocks=[section("a" * 3001)])
    assert (bad.status_code, bad.body) == (400, "invalid_blocks")
    long = hook.send(text="t" * 40_001)
    assert (long.status_code, long.body) == (400, "msg_too_long")
    assert slack.responses(url) == []
    refused = slack.refused_responses(url)
    assert [(r["status"], r["error"]) for r in refused] == [(400, "invalid_blocks"), (400, "msg_too_long")]
    assert "/blocks/0/text/text" in refused[0]["problems"][0]
    for i in range(5):  # refused posts do not use up the five
        assert hook.send(text=f"ok {i}").status_code == 200
    assert len(slack.responses(url)) == 5
    assert hook.send(text="sixth").status_code == 404
    assert slack.refused_responses(url)[-1]["error"] == "used_url"
    assert slack.refused_responses(slack.new_response_url()) == []


def test_text_is_kept_exactly_as_sent(slack):
    text = "Acme &amp; Sons &lt;!channel&gt; <!channel> a < b & c > d"
    url = slack.new_response_url()
    web(slack).chat_postMessage(channel="C0ALERTS", text=text, blocks=[section(text)])
    WebhookClient(url).send(text=text, blocks=[section(text)])
    [message] = slack.messages("C0ALERTS")
    assert message["text"] == text and message["blocks"][0]["text"]["text"] == text
    [post] = slack.responses(url)
    assert post["text"] == text and post["blocks"][0]["text"]["text"] == text
