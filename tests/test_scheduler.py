"""The schedule itself: jobs, their guards, the heartbeat the status card reads, `zqbo worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.jobs.work import Work
from bot.scheduler import build
from tests.conftest import DEDICATED, REALM, TEST_KEY, bot_env, make_settings, start_bot
from tests.helpers import ack_message, card_text, command, connect


def test_the_clock_is_one_tick_that_never_overlaps(bot):
    scheduler, _ = build(bot.services, blocking=False)
    [job] = scheduler.get_jobs()
    assert job.id == "tick" and job.max_instances == 1 and job.coalesce is True
    assert job.trigger.interval.total_seconds() == 5


def test_heartbeat_gives_status_a_next_check(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=DEDICATED)
    _, clock = build(bot.services, blocking=False)
    clock.tick()  # the leader's heartbeat
    Work(bot.services).audit(REALM, "r1")
    resp, _ = command(slack, bot, "status")
    card = card_text(ack_message(resp))
    assert "Next check:" in card and "in 15 min" in card
    assert "0 changed entries checked" in card


def test_a_held_lock_skips_the_run(bot, slack, intuit):
    connect(slack, intuit, bot, as_user=DEDICATED)
    before = intuit.count("cdc")
    with bot.services.store.lock(f"job:audit:{REALM}", ttl=30, wait=1):
        result = bot.services.auditor.run(REALM)
    assert result.skipped and intuit.count("cdc") == before


def test_zqbo_worker_runs_the_audit_and_stops_on_sigterm(tmp_path, intuit, slack):
    env = {
        **os.environ,
        **bot_env(intuit, slack, "http://127.0.0.1:9", ZQBO_DB=str(tmp_path / "zqbo.db"), REDIS_URL=""),
    }
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "zqbo"), "worker"], env=env, cwd=tmp_path, stdout=subprocess.PIPE
    )
    try:
        from bot.store.crypto import TokenCipher
        from bot.store.sqlite import SQLiteStore

        store = SQLiteStore(env["ZQBO_DB"], TokenCipher([TEST_KEY]))
        deadline = time.monotonic() + 30
        while store.get_doc("scheduler", "heartbeat") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.get_doc("scheduler", "heartbeat") is not None
        store.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0


@pytest.mark.parametrize(
    ("mode", "said", "not_said"),
    [
        ("", "`zqbo serve` schedules checks itself, every 15 min", "zqbo worker"),  # SQLite: serve
        ("off", "scheduled checks are off (`ZQBO_SCHEDULER=off`", "zqbo worker"),
        ("worker", "no scheduler has run yet (`zqbo worker`, every 15 min)", "zqbo serve"),
    ],
)
def test_before_the_first_tick_the_next_check_line_names_who_schedules(
    intuit, slack, clock, tmp_path, mode, said, not_said
):
    """On one host `zqbo serve` is the scheduler: the card must not send its reader to start a
    `zqbo worker` they do not need."""
    settings = make_settings(
        intuit, slack, REDIS_URL="", ZQBO_DB=str(tmp_path / "zqbo.db"), ZQBO_SCHEDULER=mode
    )
    server, bot = start_bot(settings, clock)
    try:
        connect(slack, intuit, bot, as_user=DEDICATED)
        resp, _ = command(slack, bot, "status")
        [line] = [line for line in card_text(ack_message(resp)).splitlines() if "Next check" in line]
    finally:
        server.shutdown()
        bot.services.store.close()
    assert said in line and not_said not in line
