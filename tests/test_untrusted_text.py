"""Text from QBO, Intuit and users reaches Slack escaped, in blocks and in the top-level `text`,
on every surface: DMs, the status card and its live update, alerts and their resolved notes,
the checklist, disconnect prompts, command answers, App Home."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.store.redis import RedisStore
from tests.conftest import DEDICATED, DEDICATED_QBO_ID, JANE, REALM, REDIS_URL, make_settings, start_bot
from tests.helpers import ack_message, card_text, command, connect, link_buttons, signed_in

HOSTILE = "<!channel> Acme & Sons <https://evil.example|log in>"
HOSTILE_DOC = "<!everyone>"
SECOND_REALM = "4620816365025351930"
MARK = "Zomentum payment"

# What zqbo itself may put between < and >: mentions, dates, and links to the bot/emulators.
OURS = re.compile(
    r"^(@[UWB][A-Z0-9]+|!date\^\d+\^[^|]*\|[^<]*|(https?://127\.0\.0\.1:\d+|slack://channel\?)[^|<]*(\|[^<]*)?)$"
)


def _texts(value: Any, out: list[str]) -> list[str]:
    """Every mrkdwn/plain text a message carries: `text` keys at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                out.append(item)
            else:
                _texts(item, out)
    elif isinstance(value, list):
        for item in value:
            _texts(item, out)
    return out


@pytest.fixture
def hostile_bot(intuit, slack, clock, redis_prefix, cipher):
    intuit.companies[REALM].name = HOSTILE
    intuit.identities[JANE].given_name = "<!here> Jane"
    intuit.add_company(SECOND_REALM, "Beta <@U0OWNER> & Co", users={JANE: "9130360000000042"})
    settings = make_settings(
        intuit, slack, ZQBO_MARKERS="PrivateNote~Zomentum", ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID
    )
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    server, bot = start_bot(settings, clock, store=store)
    yield bot
    server.shutdown()
    store.close()


def test_untrusted_text_is_escaped_on_every_surface(hostile_bot, slack, intuit, clock):
    bot = hostile_bot
    acks: list[dict] = []
    followups: list[str] = []

    def run(text: str, wait: int = 0) -> dict:
        resp, url = command(slack, bot, text)
        acks.append(ack_message(resp))
        followups.append(url)
        if wait:
            slack.wait_for_responses(url, wait, timeout=15)
        return acks[-1]

    # connected as a person (DM), entries with a hostile DocNumber, a check raises alerts
    assert connect(slack, intuit, bot, as_user=JANE).status_code == 200
    for _ in range(2):
        intuit.add_entry(REALM, "Payment", by=JANE, doc_number=HOSTILE_DOC, private_note=MARK)
    clock.advance(60)
    run("check", wait=1)
    run("status", wait=1)
    run("alerts")
    run("disconnect")
    run("users", wait=1)
    run(f"mute {HOSTILE}")
    run(f"config dedicated-user {HOSTILE}")
    run(f"{HOSTILE} please")
    slack.send_event(bot.events_url, {"type": "app_home_opened", "user": "U0ADMIN", "tab": "home"})
    slack.wait_for_calls("views.publish", 1)

    # a second company: a reconnect without a realm lists both
    resp, url = command(slack, bot, "connect")
    ack_message(resp)
    [message] = slack.wait_for_responses(url, 1)
    [link] = link_buttons(message)
    browser, auth_url = signed_in(slack, link)
    assert browser.get(intuit.authorize(auth_url, as_user=JANE, realm=SECOND_REALM), timeout=10).ok
    run("reconnect", wait=1)
    assert "say which one" in card_text(slack.responses(followups[-1])[-1])

    # the guided reconnect for the hostile company, to the end: alerts resolve with notes
    run(f"reconnect {REALM}", wait=1)
    dm = slack.dm_channel("U0ADMIN")

    def checklist() -> dict:
        return next(m for m in slack.messages(dm) if m["text"].startswith("zqbo guided reconnect"))

    for action in ("zqbo_rc_user_done", "zqbo_rc_disconnect", "zqbo_rc_link"):
        before = len(slack.calls_to("chat.update"))
        slack.press_button(bot.events_url, checklist(), action, channel_id=dm)
        slack.wait_for_calls("chat.update", before + 1, ok=False)
    [link] = link_buttons(checklist())
    browser, auth_url = signed_in(slack, link)
    assert browser.get(intuit.authorize(auth_url, as_user=DEDICATED), timeout=10).ok
    clock.advance(60)
    run(f"check {REALM}", wait=1)
    assert any(m.get("thread_ts") for m in slack.messages("C0ALERTS")), "no resolved note was posted"

    # everything zqbo sent: API calls (accepted or not), response_url posts, acks
    sent: list[Any] = [c.args for c in slack.calls]
    for url in followups:
        sent.extend(slack.responses(url))
    sent.extend(acks)
    texts = _texts(sent, [])
    assert texts
    for text in texts:
        for broadcast in ("<!channel>", "<!here>", "<!everyone>", "<@U0OWNER>", "<https://evil"):
            assert broadcast not in text, text
        for token in re.findall(r"<([^<>]*)>", text):
            assert OURS.match(token), f"unexpected <{token}> in {text!r}"
    joined = "\n".join(texts)
    assert "&lt;!channel&gt; Acme &amp; Sons &lt;https://evil.example|log in&gt;" in joined
    assert "&lt;!everyone&gt;" in joined and "&lt;!here&gt; Jane" in joined
    # the deep link to the checklist DM names the workspace too
    assert "<slack://channel?team=T0EMU&amp;id=D0ADMIN|your DMs with zqbo>" in joined
    assert not [c for c in slack.calls if c.error in ("invalid_blocks", "msg_too_long")]
