"""SIGTERM drains (issue 14): real `zqbo worker` and `zqbo serve` processes on real Redis/SQLite,
Intuit/QBO and Slack emulated over HTTP. Intuit is made slow where it hurts most: it has rotated
the refresh token (the old one is dead) and holds its answer while the process is told to stop.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
import requests

from bot.clock import SystemClock
from bot.emulator import IntuitEmulator, SlackEmulator
from bot.jobs.engine import InlineEngine
from bot.jobs.work import Work
from bot.models import ConnectionStatus
from bot.standing import ranker
from bot.store.crypto import TokenCipher
from bot.store.sqlite import SQLiteStore
from tests.conftest import DEDICATED, DEDICATED_QBO_ID, TEST_KEY, bot_env
from tests.fleet import (
    ZQBO,
    Fleet,
    alert_messages,
    cdc_in_flight,
    cdc_per_realm,
    flushed_world,
    force_round,
    seed,
    wait_until,
)
from tests.test_read_your_writes import _free_port

# Its own database, flushed around each test (test_scale.py flushes another, maybe at the same time)
REDIS_DB = os.environ.get("ZQBO_TEST_DRAIN_REDIS_URL", "redis://127.0.0.1:6379/12")


@pytest.fixture
def world(tmp_path):
    with flushed_world(REDIS_DB) as (intuit, slack, store):
        yield intuit, slack, store, tmp_path


def expiring(store, realm: str) -> None:
    """The company's access token ends in two minutes: the next job or call refreshes it."""
    conn = store.get_connection(realm)
    store.save_connection(
        dataclasses.replace(conn, access_expires_at=SystemClock().now() + timedelta(minutes=2))
    )


def terminate(proc: subprocess.Popen, timeout: float = 40) -> tuple[int, float]:
    """SIGTERM; the exit code and how long the process took to exit."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout)
    return code, time.monotonic() - started


def assert_the_stored_token_is_intuit_s(intuit: IntuitEmulator, store, realm: str) -> None:
    conn = store.get_connection(realm)
    assert conn.status is ConnectionStatus.CONNECTED
    assert conn.refresh_token == intuit.current_refresh_token(realm)


def assert_another_process_can_refresh(intuit, store, realm: str, env: dict, cwd) -> None:
    """The connection still works: `zqbo check REALM` refreshes with the stored token."""
    intuit.hold_token_answers(0)
    before = store.get_connection(realm).token_generation
    expiring(store, realm)
    done = subprocess.run(
        [ZQBO, "check", realm], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert store.get_connection(realm).token_generation == before + 1
    assert_the_stored_token_is_intuit_s(intuit, store, realm)


def test_a_worker_stopped_mid_refresh_stores_the_rotated_token_and_exits_0(world):
    intuit, slack, store, tmp_path = world
    realm = "770000000001"
    seed(intuit, store, [realm])
    expiring(store, realm)
    intuit.hold_token_answers(4)  # Intuit has rotated; its answer comes 4 s later
    fleet = Fleet(intuit, slack, tmp_path, REDIS_URL=REDIS_DB)
    try:
        [worker] = fleet.start(1)
        store.schedule_set("refresh", realm, time.time() - 1)
        wait_until(lambda: intuit.count("token", "refresh_token") == 1, 30, "a refresh rotated at Intuit")
        assert store.get_connection(realm).refresh_token != intuit.current_refresh_token(realm)
        code, took = terminate(worker)
        assert code == 0, fleet.logs()
        assert 1.5 < took < 15, f"exited {took:.1f} s after SIGTERM"  # it waited for the answer
        assert_the_stored_token_is_intuit_s(intuit, store, realm)
        assert "drained in" in fleet.logs()
    finally:
        fleet.stop()
    assert_another_process_can_refresh(intuit, store, realm, fleet.env, tmp_path)


def test_audits_in_flight_finish_and_alert_once_and_the_jobs_not_started_go_to_another_worker(world):
    intuit, slack, store, tmp_path = world
    realms = [f"78000000{i:04d}" for i in range(10)]
    seed(intuit, store, realms, offending=True)
    intuit.set_latency(2, "cdc")
    # a heartbeat far longer than the test: the jobs not started reach the other worker because
    # the stopping one puts them back, not because it is taken for dead
    fleet = Fleet(intuit, slack, tmp_path, REDIS_URL=REDIS_DB)
    fleet.env["ZQBO_QUEUE_HEARTBEAT_SECONDS"] = "120"
    try:
        [stopping] = fleet.start(1, concurrency=2)
        started = time.time()
        force_round(store, realms)
        wait_until(lambda: sum(cdc_in_flight(intuit).values()) == 2, 20, "two audits in flight")
        in_flight = set(cdc_in_flight(intuit))
        other = fleet.start(1, concurrency=4)[-1]
        code, took = terminate(stopping)
        assert code == 0, fleet.logs()
        assert took < 15, f"exited {took:.1f} s after SIGTERM"
        # the audits it had started were finished by it
        assert all(cdc_per_realm(intuit)[r] == 1 for r in in_flight)
        wait_until(
            lambda: all(
                (c := store.last_check(r, "audit")) is not None and c.at.timestamp() >= started
                for r in realms
            ),
            40,
            "every company audited",
        )
        intuit.set_latency(0, "cdc")
        wait_until(lambda: len(alert_messages(slack)) >= len(realms), 20, "every alert posted")
        time.sleep(1.5)  # time for a duplicate to show up, if there were one
        assert {r: cdc_per_realm(intuit)[r] for r in realms} == {r: 1 for r in realms}
        per_company = Counter(m["text"].rsplit("— ", 1)[-1] for m in alert_messages(slack))
        assert per_company == Counter({f"Company {r}": 1 for r in realms})
        assert other.poll() is None
    finally:
        fleet.stop()


def test_a_job_that_hangs_past_the_bound_does_not_keep_the_worker_and_is_done_elsewhere(world):
    intuit, slack, store, tmp_path = world
    realm = "790000000001"
    seed(intuit, store, [realm], offending=True)
    intuit.set_latency(30, "cdc")
    fleet = Fleet(intuit, slack, tmp_path, REDIS_URL=REDIS_DB, ZQBO_DRAIN_SECONDS="3")
    try:
        [stopping] = fleet.start(1, concurrency=2)
        force_round(store, [realm])
        wait_until(lambda: cdc_in_flight(intuit).get(realm) == 1, 20, "the audit in flight")
        code, took = terminate(stopping)
        assert code == 0
        assert 2.5 < took < 6, f"exited {took:.1f} s after SIGTERM, the bound is 3 s"
        assert "still running" in fleet.logs()
        intuit.set_latency(0, "cdc")
        fleet.start(1)  # its message, never acked, is taken from the stopped worker (heartbeat 3 s)
        wait_until(lambda: len(alert_messages(slack)) >= 1, 30, "the audit done by the other worker")
        time.sleep(1)
        assert len(alert_messages(slack)) == 1
    finally:
        fleet.stop()


def test_serve_finishes_after_ack_work_with_a_refresh_in_flight_and_exits_0(tmp_path):
    """`/zqbo check` acks, then audits after the ack; its refresh is in flight at Intuit when
    `zqbo serve` is told to stop."""
    with IntuitEmulator(clock=SystemClock()) as intuit, SlackEmulator() as slack:
        db = str(tmp_path / "zqbo.db")
        store = SQLiteStore(db, TokenCipher([TEST_KEY]), ranker(DEDICATED))
        realm = "791000000001"
        seed(intuit, store, [realm])
        expiring(store, realm)
        port = _free_port()
        env = {
            **os.environ,
            **bot_env(
                intuit,
                slack,
                f"http://127.0.0.1:{port}",
                PORT=str(port),
                ZQBO_DB=db,
                ZQBO_DEDICATED_EMAIL=DEDICATED,
                ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID,
                ZQBO_ADMINS="U0ADMIN",
                ZQBO_SCHEDULER="off",
                ZQBO_DRAIN_SECONDS="10",
            ),
        }
        env.pop("REDIS_URL", None)
        log = open(tmp_path / "serve.log", "w")
        serve = subprocess.Popen(
            [ZQBO, "serve", "--workers", "1", "--threads", "4"], env=env, cwd=tmp_path, stderr=log
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: _healthy(url), 30, "zqbo serve")
            intuit.hold_token_answers(4)
            resp, response_url = slack.send_command(f"{url}/slack/events", "check")
            assert resp.status_code == 200
            wait_until(lambda: intuit.count("token", "refresh_token") == 1, 20, "a refresh rotated at Intuit")
            code, took = terminate(serve)
            logs = (tmp_path / "serve.log").read_text()
            assert code == 0, logs[-3000:]
            assert 1.5 < took < 10, f"exited {took:.1f} s after SIGTERM"
            assert "drained in" in logs
            [answer] = slack.wait_for_responses(response_url, 1, timeout=1)  # the after-ack work's end
            assert "check" in str(answer).lower()
            assert_the_stored_token_is_intuit_s(intuit, store, realm)
        finally:
            if serve.poll() is None:
                serve.kill()
            log.close()
        assert_another_process_can_refresh(intuit, store, realm, env, tmp_path)
        store.close()


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).ok
    except (requests.ConnectionError, requests.Timeout):
        return False


def test_without_a_broker_jobs_not_started_go_back_on_the_schedule_at_their_due_time(bot):
    release = threading.Event()

    class Slow(Work):
        def jobs(self):
            return {"audit": lambda realm, round_id: {"realm_id": realm, "ok": release.wait(10)}}

    engine = InlineEngine(Slow(bot.services), concurrency=1)
    for i, realm in enumerate(["r1", "r2", "r3"]):
        engine.submit("audit", realm, f"audit-{1000 + i:.3f}")
    try:
        assert engine.drain(0.2) == 1  # r1 runs past the bound
        assert bot.services.store.schedule_due("audit", 2000) == [("r2", 1001.0), ("r3", 1002.0)]
    finally:
        release.set()
