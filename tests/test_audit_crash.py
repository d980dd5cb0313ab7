"""A worker killed (SIGKILL) between fetching and posting: after a restart the alert is posted
exactly once. The worker is a real `zqbo check` process; the store a real SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bot.clock import SystemClock
from bot.emulator import IntuitEmulator, SlackEmulator
from bot.store.crypto import TokenCipher
from bot.store.sqlite import SQLiteStore
from tests.conftest import (
    DEDICATED,
    DEDICATED_QBO_ID,
    JANE,
    REALM,
    TEST_KEY,
    bot_env,
    make_settings,
    start_bot,
)
from tests.helpers import card_text, connect

ZQBO = str(Path(sys.executable).parent / "zqbo")


def _world(tmp_path, intuit, slack):
    """A connected company on a SQLite file, and the env of a `zqbo check` process for it."""
    intuit.seed_demo()
    db = str(tmp_path / "zqbo.db")
    settings = make_settings(
        intuit,
        slack,
        REDIS_URL="",
        ZQBO_DB=db,
        ZQBO_MARKERS="PrivateNote~Zomentum",
        ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID,
    )
    store = SQLiteStore(db, TokenCipher([TEST_KEY]))
    server, bot = start_bot(settings, SystemClock(), store=store)
    try:
        connect(slack, intuit, bot, as_user=DEDICATED)
        # the "connected" DM goes out in the background: let it, so holds below catch the alert
        slack.wait_for_calls("chat.postMessage", 1, timeout=10)
    finally:
        server.shutdown()
    env = {
        **os.environ,
        **bot_env(
            intuit,
            slack,
            bot.url,
            ZQBO_DB=db,
            ZQBO_MARKERS="PrivateNote~Zomentum",
            ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID,
            ZQBO_DEDICATED_EMAIL=DEDICATED,
            ZQBO_ALERT_CHANNEL="C0ALERTS",
            REDIS_URL="",
        ),
    }
    return store, env


def test_sigkill_after_slack_posted_but_before_the_save_posts_exactly_once(tmp_path):
    """The last window of exactly-once: Slack accepted chat.postMessage, the process died before
    it saved "posted". The restarted run finds the message (metadata) in the channel's history."""
    with IntuitEmulator(clock=SystemClock()) as intuit, SlackEmulator() as slack:
        store, env = _world(tmp_path, intuit, slack)
        intuit.add_entry(REALM, "Payment", by=JANE, private_note="Zomentum payment", doc_number="ZP-7")
        posted = slack.hold_after_apply("chat.postMessage")
        worker = subprocess.Popen([ZQBO, "check"], env=env, cwd=tmp_path)
        try:
            assert posted.wait(60), "the worker never posted"
            os.kill(worker.pid, signal.SIGKILL)  # Slack has the message; the answer never arrives
            worker.wait(10)
        finally:
            slack.release_held()
        assert len(slack.messages("C0ALERTS")) == 1

        for _ in range(2):  # the restarted worker, then a later scheduled run
            done = subprocess.run([ZQBO, "check"], env=env, cwd=tmp_path, capture_output=True, timeout=60)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
        [alert] = slack.messages("C0ALERTS")
        assert "Payment ZP-7" in card_text(alert)
        assert slack.calls_to("conversations.history"), "the restarted run did not look before posting"
        [stored] = [
            a for a in store.list_docs(f"alert:{REALM}").values() if a["kind"] == "entries_under_person"
        ]
        assert stored["posted"] and stored["ts"] == alert["ts"]
        store.close()


def test_sigkill_between_fetch_and_post_posts_exactly_once(tmp_path):
    with IntuitEmulator(clock=SystemClock()) as intuit, SlackEmulator() as slack:
        store, env = _world(tmp_path, intuit, slack)
        entry = intuit.add_entry(
            REALM, "Payment", by=JANE, private_note="Zomentum payment", doc_number="ZP-9"
        )
        posting = slack.hold_next("chat.postMessage")
        worker = subprocess.Popen([ZQBO, "check"], env=env, cwd=tmp_path)
        try:
            assert posting.wait(60), "the worker never tried to post"
            os.kill(worker.pid, signal.SIGKILL)  # fetched, queued, mid-post
            worker.wait(10)
        finally:
            slack.release_held()
        assert slack.messages("C0ALERTS") == []

        for _ in range(2):  # the restarted worker, then a later scheduled run
            done = subprocess.run([ZQBO, "check"], env=env, cwd=tmp_path, capture_output=True, timeout=60)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
        [alert] = slack.messages("C0ALERTS")
        assert "Payment ZP-9" in card_text(alert)
        assert store.seen(f"alerted:{REALM}", [f"Payment:{entry['Id']}"])
        store.close()
