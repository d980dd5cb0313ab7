"""Many companies, several worker processes, one queue (issue 8): real `zqbo worker` processes
on real Redis, Intuit/QBO emulated over HTTP; the emulator counts CDC calls per company.

Rounds are made by the test, not by waiting 15 minutes: it sets every company's audit due now
(what the passing of an interval does) and the workers' own leader hands them out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from bot.clock import SystemClock
from bot.emulator import IntuitEmulator, SlackEmulator
from bot.models import Identity
from bot.standing import ranker
from bot.store.crypto import TokenCipher
from bot.store.redis import RedisStore
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

# these tests' own database, flushed around each (another checkout running at once picks another)
REDIS_DB = os.environ.get("ZQBO_TEST_SCALE_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def world(tmp_path):
    with flushed_world(REDIS_DB) as (intuit, slack, store):
        fleet = Fleet(intuit, slack, tmp_path, REDIS_URL=REDIS_DB)
        try:
            yield intuit, slack, store, fleet
        finally:
            fleet.stop()


def test_two_workers_audit_every_company_exactly_once_per_round(world):
    intuit, slack, store, fleet = world
    realms = [f"71000000{i:04d}" for i in range(12)]
    seed(intuit, store, realms)
    fleet.start(2)
    for round_no in range(1, 4):
        force_round(store, realms)
        wait_until(
            lambda n=round_no: all(cdc_per_realm(intuit)[r] >= n for r in realms), 40, f"round {round_no}"
        )
        time.sleep(1.5)  # time for a duplicate to show up, if there were one
        counts = cdc_per_realm(intuit)
        assert {r: counts[r] for r in realms} == {r: round_no for r in realms}, f"round {round_no}"
    assert intuit.count("discovery") <= 2  # once per worker process, not per call


def test_a_killed_worker_s_companies_are_done_by_the_other_and_alerted_once(world):
    intuit, slack, store, fleet = world
    realms = [f"72000000{i:04d}" for i in range(16)]
    seed(intuit, store, realms, offending=True)
    intuit.set_latency(1.5, "cdc")  # long enough to kill a worker in the middle of its audits
    victim, survivor = fleet.start(2, concurrency=4)
    started = time.time()
    force_round(store, realms)
    wait_until(lambda: sum(cdc_in_flight(intuit).values()) >= 6, 20, "audits in flight")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    wait_until(
        lambda: all(
            (c := store.last_check(r, "audit")) is not None and c.at.timestamp() >= started for r in realms
        ),
        60,
        "every company audited by the surviving worker",
    )
    intuit.set_latency(0, "cdc")
    wait_until(lambda: len(alert_messages(slack)) >= len(realms), 20, "every alert posted")
    time.sleep(1)
    per_company = Counter(m["text"].rsplit("— ", 1)[-1] for m in alert_messages(slack))
    assert per_company == Counter({f"Company {r}": 1 for r in realms})  # each entry alerted once
    assert survivor.poll() is None


def _queue_state() -> dict:
    client = redis.Redis.from_url(REDIS_DB, decode_responses=True)
    out = {}
    for key in client.scan_iter("zqbo:*"):
        kind = client.type(key)
        size = {"list": client.llen, "hash": client.hlen, "set": client.scard, "zset": client.zcard}.get(kind)
        if "dramatiq" in key or "claim" in key or "lock" in key:
            out[key] = size(key) if size else client.pttl(key)
    return out


def test_killing_the_leader_hands_the_clock_over_without_skipping_or_doubling(world):
    intuit, slack, store, fleet = world
    realms = [f"73000000{i:04d}" for i in range(8)]
    seed(intuit, store, realms)
    workers = fleet.start(2)
    wait_until(lambda: (store.get_doc("scheduler", "heartbeat") or {}).get("leader"), 20, "a leader")
    force_round(store, realms)
    # round 1 finished (checks recorded), so a kill now tests the clock, not a job cut short
    wait_until(lambda: all(store.last_check(r, "audit") for r in realms), 30, "round 1")
    time.sleep(0.5)
    leader_pid = int(store.get_doc("scheduler", "heartbeat")["leader"].split(":")[1])
    [leader] = [w for w in workers if w.pid == leader_pid]
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait(10)
    force_round(store, realms)  # round 2 falls due while nobody holds the lease
    try:
        wait_until(
            lambda: all(cdc_per_realm(intuit)[r] >= 2 for r in realms), 30, "round 2 by the new leader"
        )
    except AssertionError:
        due = store.schedule_due("audit", time.time() + 10**6)
        for w in workers:
            if w.poll() is None:
                dump = subprocess.run(
                    [str(Path(sys.executable).parent / "py-spy"), "dump", "--pid", str(w.pid)],
                    capture_output=True,
                    text=True,
                )
                Path("/tmp/survivor-dump.txt").write_text(dump.stdout + dump.stderr)
        raise AssertionError(
            f"heartbeat {store.get_doc('scheduler', 'heartbeat')}, due {due[:3]}, "
            f"cdc {dict(cdc_per_realm(intuit))}, workers {[w.poll() for w in workers]}, "
            f"lease ttl {redis.Redis.from_url(REDIS_DB).pttl('zqbo:lease:scheduler')}, "
            f"seen {store.list_docs('workers')}, now {time.time()}, "
            f"queue {_queue_state()}\n{fleet.logs()}"
        ) from None
    time.sleep(1.5)
    assert {r: cdc_per_realm(intuit)[r] for r in realms} == {r: 2 for r in realms}
    beat = store.get_doc("scheduler", "heartbeat")
    assert int(beat["leader"].split(":")[1]) != leader_pid


def test_qbo_limits_hold_per_company_across_processes_under_a_burst(
    intuit, slack, clock, redis_prefix, cipher
):
    """40 threads in two service graphs (two processes' worth) call one company at once: the
    emulator never sees more than 10 of them in flight; another company is not held back."""
    from bot.app import build_services
    from tests.conftest import REALM, make_settings

    settings = make_settings(intuit, slack)
    graphs = [
        build_services(settings, store=RedisStore(REDIS_URL_0, cipher, redis_prefix), clock=clock)
        for _ in range(2)
    ]
    tokens = intuit.grant_directly(REALM, DEDICATED)
    graphs[0].connections.record_grant(
        REALM,
        _token_set(tokens, clock),
        identity=Identity(email=DEDICATED),
    )
    intuit.set_latency(0.3, "companyinfo")
    errors: list[Exception] = []

    def call(services) -> None:
        try:
            services.qbo.company_info(REALM)
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(graphs[i % 2],)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 5 <= intuit.max_in_flight(REALM) <= 10
    for g in graphs:
        g.engine.close()


REDIS_URL_0 = "redis://127.0.0.1:6379/0"


def _token_set(tokens: dict, clock):
    from bot.qbo.intuit import TokenSet

    now = clock.now()
    return TokenSet(
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        access_expires_at=now + timedelta(seconds=tokens["expires_in"]),
        refresh_expires_at=now + timedelta(seconds=tokens["x_refresh_token_expires_in"]),
    )


def test_zqbo_check_works_a_full_round_with_or_without_workers(world, tmp_path):
    intuit, slack, store, fleet = world
    realms = [f"74000000{i:04d}" for i in range(10)]
    seed(intuit, store, realms)
    alone = subprocess.run(
        [ZQBO, "check"], env=fleet.env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert "round done: 10 companies checked, 0 failed" in alone.stdout
    assert "worked by this process" in alone.stdout
    fleet.start(1)
    wait_until(lambda: store.list_docs("workers"), 20, "a live worker")
    helped = subprocess.run(
        [ZQBO, "check"], env=fleet.env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert "round done: 10 companies checked, 0 failed" in helped.stdout
    assert "worked by 1 worker process" in helped.stdout
    assert {r: cdc_per_realm(intuit)[r] for r in realms} == {r: 2 for r in realms}


# A CDC answer of a shape the audit cannot read: the job raises, and the queue retries it.
UNREADABLE_CDC = {"CDCResponse": "not a list"}


def _check(fleet: Fleet, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ZQBO, "check"],
        env={**fleet.env, "ZQBO_JOB_RETRIES": "2", "ZQBO_JOB_RETRY_SECONDS": "0.3", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_zqbo_check_waits_for_a_retried_audit_and_counts_its_final_outcome(world, tmp_path):
    intuit, slack, store, fleet = world
    realms = [f"74100000{i:04d}" for i in range(3)]
    seed(intuit, store, realms)
    intuit.fail_next("cdc", 200, body=UNREADABLE_CDC)  # one company's first attempt fails
    done = _check(fleet, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "round done: 3 companies checked, 0 failed" in done.stdout
    assert "FAILED" not in done.stdout
    # the round waited for the retry of the company whose first attempt failed
    assert sorted(cdc_per_realm(intuit)[r] for r in realms) == [1, 1, 2]


def test_zqbo_check_reports_a_company_failed_once_after_its_last_retry(world, tmp_path):
    intuit, slack, store, fleet = world
    realms = [f"74200000{i:04d}" for i in range(2)]
    seed(intuit, store, realms)
    intuit.fail_next("cdc", 200, body=UNREADABLE_CDC, times=100)  # every attempt fails
    done = _check(fleet, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert "round done: 2 companies checked, 2 failed" in done.stdout
    failed = [line for line in done.stdout.splitlines() if ": FAILED: " in line]
    assert sorted(line.split(":")[0] for line in failed) == realms  # each company once
    for line in failed:
        assert "failed after 3 attempts: AttributeError" in line, line  # the reason, with the attempts
    attempts = Counter(x.realm_id for x in intuit.calls if x.endpoint == "cdc")
    assert {r: attempts[r] for r in realms} == {r: 3 for r in realms}  # reported after the last one


def test_embedded_setup_runs_the_round_in_process_without_redis(tmp_path):
    with IntuitEmulator(clock=SystemClock()) as intuit, SlackEmulator() as slack:
        db = str(tmp_path / "zqbo.db")
        store = SQLiteStore(db, TokenCipher([TEST_KEY]), ranker(DEDICATED))
        realms = [f"75000000{i:04d}" for i in range(6)]
        seed(intuit, store, realms)
        env = {
            **os.environ,
            **bot_env(
                intuit, slack, "http://127.0.0.1:9", ZQBO_DB=db, ZQBO_DEDICATED_USER_ID=DEDICATED_QBO_ID
            ),
        }
        env.pop("REDIS_URL", None)
        done = subprocess.run(
            [ZQBO, "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "round done: 6 companies checked, 0 failed" in done.stdout
        assert {r: cdc_per_realm(intuit)[r] for r in realms} == {r: 1 for r in realms}
        store.close()


def test_doctor_shows_the_leader_and_the_workers_and_metrics_the_queue(world, tmp_path):
    from prometheus_client import generate_latest

    intuit, slack, store, fleet = world
    seed(intuit, store, ["760000000001"])
    fleet.start(2)
    wait_until(lambda: len(store.list_docs("workers")) == 2, 20, "two live workers")
    wait_until(lambda: (store.get_doc("scheduler", "heartbeat") or {}).get("leader"), 20, "a leader")
    doctor = subprocess.run(
        [ZQBO, "doctor"], env=fleet.env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    lines = {line.split(":")[0].split()[-1]: line for line in doctor.stdout.splitlines() if ":" in line}
    assert lines["scheduler"].startswith("ok") and "leader " in lines["scheduler"]
    assert lines["workers"].startswith("ok") and "2 live (8 jobs at once, dramatiq)" in lines["workers"]
    text = generate_latest().decode()
    for name in (
        "zqbo_queue_depth",
        "zqbo_jobs_total",
        "zqbo_round_lag_seconds",
        "zqbo_qbo_rate_limit_waits_total",
    ):
        assert name in text
