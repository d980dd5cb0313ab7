"""bot/blocks/message.py: the one place that escapes untrusted text and fits Slack's limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from bot.blocks.message import (
    Message,
    Mrkdwn,
    actions,
    button,
    channel_link,
    code,
    confirm,
    context,
    cut,
    esc,
    home_view,
    link,
    md,
    mention,
    section,
    when,
)

EVIL = "<!channel> & <https://evil.example|log in>"
ESCAPED = "&lt;!channel&gt; &amp; &lt;https://evil.example|log in&gt;"


def test_values_put_into_mrkdwn_are_escaped_and_zqbos_own_tokens_kept():
    text = md("*{}* by {} at {}", EVIL, mention("U0ADMIN"), when(datetime(2026, 1, 1, tzinfo=UTC)))
    assert text.startswith(f"*{ESCAPED}* by <@U0ADMIN> at <!date^")
    assert Mrkdwn("a ") + EVIL == f"a {ESCAPED}"
    assert EVIL + Mrkdwn(" b") == f"{ESCAPED} b"
    assert Mrkdwn(", ").join([EVIL, mention("U0ADMIN")]) == f"{ESCAPED}, <@U0ADMIN>"
    assert esc(esc(EVIL)) == ESCAPED  # escaping twice is a no-op, not &amp;lt;


def test_a_plain_string_is_escaped_wherever_it_enters_a_message():
    message = Message(EVIL, [section(EVIL), context(EVIL)])
    assert message.text == ESCAPED
    assert message.blocks[0]["text"]["text"] == ESCAPED
    assert message.blocks[1]["elements"][0]["text"] == ESCAPED


def test_helpers_refuse_what_would_turn_into_a_live_token():
    assert mention("<!channel>") == "&lt;!channel&gt;"
    assert link("javascript:alert(1)", "x") == "x"
    assert link("https://ok.example/?a=1&b=2", "a|b>c") == "<https://ok.example/?a=1&amp;b=2|a¦b&gt;c>"
    assert channel_link("T0EMU", "D0ADMIN", "DMs") == "<slack://channel?team=T0EMU&amp;id=D0ADMIN|DMs>"
    assert channel_link("T0EMU", "not a channel", "DMs") == "DMs"
    assert code("a`b<c") == "`aˋb&lt;c`"


tokens = st.sampled_from(["&amp;", "&lt;", "&gt;", "<@U0ADMIN>", "<!date^1^{time}|x>", "<https://a.b|c>"])
plain = st.text(alphabet=st.characters(blacklist_characters="&<>"), max_size=20)


@given(st.lists(st.one_of(tokens, plain), max_size=40), st.integers(min_value=2, max_value=120))
def test_cutting_never_splits_an_entity_or_a_token(parts, limit):
    text = "".join(parts)
    result = cut(text, limit)
    assert len(result) <= limit
    if result != text:
        assert result.endswith("…")
        body = result[:-1]
        assert not re.search(r"&[a-z]*$", body), body  # no half entity at the end
        assert body.count("<") == body.count(">"), body  # no half <…> token
        assert text.startswith(body)


def test_messages_fit_slacks_limits():
    many = [section(f"block {i}") for i in range(80)]
    message = Message("x" * 50_000, many)
    assert len(message.text) == 40_000 and message.text.endswith("…")
    assert len(message.blocks) == 50 and "31 more not shown" in message.blocks[-1]["elements"][0]["text"]
    assert len(home_view(many + many)["blocks"]) == 100

    long = Message(
        "t",
        [
            section("s" * 5000, button("b" * 100, "a" * 300, value="v" * 3000)),
            context(*[f"part {i}" for i in range(14)]),
            actions(button("ok", "x", ask=confirm("T" * 150, "C" * 400, "Y" * 40, "N" * 40))),
        ],
    )
    sec, ctx, act = long.blocks
    assert len(sec["text"]["text"]) == 3000
    assert len(sec["accessory"]["text"]["text"]) == 75 and len(sec["accessory"]["value"]) == 2000
    assert len(sec["accessory"]["action_id"]) == 255
    assert len(ctx["elements"]) == 10 and "part 13" in ctx["elements"][-1]["text"]
    ask = act["elements"][0]["confirm"]
    assert (len(ask["title"]["text"]), len(ask["text"]["text"]), len(ask["confirm"]["text"])) == (
        100,
        300,
        30,
    )
    for block in long.blocks:
        assert Block.parse(block).to_dict()  # slack_sdk's own checks accept it
