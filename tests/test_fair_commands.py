"""Heavy commands (issue 15): `/zqbo check` over many companies runs as a round on the job engine
and shows its progress in one message; a workspace asking for too many heavy commands a minute
is told so, and `/zqbo status` still answers. Over real HTTP, the bot's own Slack client and
response_url posts, against the emulators."""

from __future__ import annotations

import time

import pytest

from bot.store.redis import RedisStore
from bot.store.sqlite import SQLiteStore
from tests.conftest import DEDICATED, DEDICATED_QBO_ID, REDIS_URL, make_settings, start_bot
from tests.helpers import ack_message, card_text, command

FAILING = "<!channel> & Co"  # a company name that would ping everyone if it were not escaped


@pytest.fixture(params=["dramatiq", "inline"])
def many(request, intuit, slack, clock, cipher, redis_prefix, tmp_path):
    """The bot with 6 companies — on Redis with a queue consumer of 4 threads in this process, or
    on SQLite with its own job pool (no broker): five answer QBO after 1.5 s; the first, named
    FAILING, answers at once: its grant was revoked in QuickBooks, so its check fails."""
    if request.param == "dramatiq":
        store, redis_url, jobs = RedisStore(REDIS_URL, cipher, prefix=redis_prefix), REDIS_URL, "16"
    else:
        store, redis_url, jobs = SQLiteStore(str(tmp_path / "zqbo.db"), cipher), "", "4"
    settings = make_settings(
        intuit,
        slack,
        REDIS_URL=redis_url,
        ZQBO_INLINE_CONCURRENCY=jobs,
        ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID,
        ZQBO_ADMINS="U0ADMIN",
    )
    server, bot = start_bot(settings, clock, store=store)
    assert bot.services.engine.name == request.param
    realms = [f"55000000000{i}" for i in range(6)]
    for i, realm in enumerate(realms):
        name = FAILING if i == 0 else f"Company {i}"
        intuit.add_company(realm, name, users={DEDICATED: DEDICATED_QBO_ID})
        store.save_connection(intuit.connected(realm, DEDICATED, name, clock.now()))
        if i:
            intuit.set_company_latency(realm, 1.5)
    intuit.revoke_company(realms[0])
    yield bot, realms
    server.shutdown()
    store.close()


def test_a_check_of_many_companies_shows_its_progress_in_one_message_and_ends_with_every_result(many, slack):
    bot, realms = many
    resp, url = command(slack, bot, "check")
    assert "Checking QuickBooks now" in card_text(ack_message(resp))
    final = None
    deadline = time.monotonic() + 30
    while final is None and time.monotonic() < deadline:
        posts = slack.responses(url)
        final = next((p for p in posts if "of 6 companies" not in p["text"]), None)
        time.sleep(0.05)
    assert final is not None, slack.responses(url)
    posts = slack.responses(url)
    progress, last = posts[:-1], posts[-1]
    assert last is final and all(p.get("replace_original") for p in posts)  # one message, updated
    # the first company to finish was the failing one: the first update names it, escaped
    assert progress, "no progress was shown"
    first = progress[0]
    assert "1 of 6 companies" in card_text(first) and "█" in card_text(first)
    assert "&lt;!channel&gt; &amp; Co" in str(first["blocks"]) and "<!channel>" not in str(first)
    # Slack takes 5 posts per response_url: progress is paced so the final card always fits
    assert len(posts) <= 4 and slack.refused_responses(url) == []
    text = card_text(last)
    assert "6 companies checked, 1 failed" in last["text"]
    assert all(realm in text for realm in realms)
    assert text.index(realms[0]) < min(text.index(r) for r in realms[1:])  # the failure first
    assert "<!channel>" not in str(last) and "&lt;!channel&gt; &amp; Co" in str(last["blocks"])


def test_a_workspace_asking_for_too_many_heavy_commands_a_minute_is_told_and_status_still_answers(
    intuit, slack, clock, cipher, redis_prefix
):
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix)
    settings = make_settings(intuit, slack, ZQBO_COMMANDS_PER_WORKSPACE_MINUTE="3")
    server, bot = start_bot(settings, clock, store=store)
    try:
        if 60 - time.time() % 60 < 5:  # a minute is one fixed bucket: start in a fresh one
            time.sleep(60 - time.time() % 60 + 0.1)
        for user in ("U0ADMIN", "U0ANA", "U0BOB"):  # each done before the next: only the minute counts
            resp, url = command(slack, bot, "users", user_id=user)
            assert "Reading 30 days" in card_text(ack_message(resp))
            slack.wait_for_responses(url, 1, timeout=10)
        resp, url = command(slack, bot, "users", user_id="U0CAROL")
        refused = card_text(ack_message(resp))
        assert "asked zqbo for 3 checks, user lists and links this minute" in refused
        assert "try again in a minute" in refused
        time.sleep(0.5)
        assert slack.responses(url) == []  # nothing was run for it
        resp, _ = command(slack, bot, "status", user_id="U0CAROL")
        assert "never connected" in card_text(ack_message(resp))
    finally:
        server.shutdown()
        store.close()
