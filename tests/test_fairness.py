"""Fairness (issue 15): each workspace's after-ack work waits in its own queue, a few at a time,
so a workspace that floods zqbo never delays another's answer; heavy commands are capped per
person and per workspace, on the embedded (in-memory) limiter backend and on Redis."""

from __future__ import annotations

import threading
import time

import pytest
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from bot.fairness import CommandLimits, FairPool, Refusal


class Busy:
    """Jobs that hold their thread until released, counting how many run at once per workspace."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.done: list[str] = []

    def job(self, scope: str, name: str) -> str:
        with self.lock:
            self.now[scope] = self.now.get(scope, 0) + 1
            self.peak[scope] = max(self.peak.get(scope, 0), self.now[scope])
        try:
            self.release.wait(10)
        finally:
            with self.lock:
                self.now[scope] -= 1
                self.done.append(name)
        return name


def test_forty_queued_slow_jobs_of_one_workspace_do_not_delay_another_workspaces_job():
    """(On the one shared FIFO pool zqbo had, B's 40 took all 32 threads and A's job waited.)"""
    pool = FairPool(max_workers=32, per_scope=4)
    busy = Busy()
    try:
        b_jobs = [pool.submit_for("TBETA", busy.job, "TBETA", f"b{i}") for i in range(40)]
        answered = threading.Event()
        a_job = pool.submit_for("TALPHA", answered.set)
        assert answered.wait(2), "A's job waited behind B's"
        assert a_job.result(1) is None
        # B holds 4 threads of 32; the other 36 wait their turn in B's own queue, in order
        assert (pool.running("TBETA"), pool.waiting("TBETA")) == (4, 36)
        assert busy.done == []
        busy.release.set()
        assert [f.result(10) for f in b_jobs] == [f"b{i}" for i in range(40)]
        assert busy.peak["TBETA"] == 4
        assert pool.running("TBETA") == pool.waiting("TBETA") == 0
    finally:
        busy.release.set()
        pool.shutdown(wait=True)


def test_draining_runs_the_work_still_waiting_for_its_turn_and_then_takes_no_more():
    pool = FairPool(max_workers=8, per_scope=2)
    ran: list[int] = []

    def job(i: int) -> None:
        time.sleep(0.05)
        ran.append(i)

    futures = [pool.submit_for("TBETA", job, i) for i in range(6)]
    assert pool.waiting("TBETA") == 4
    assert pool.drain(5) == 0  # everything submitted was answered within the bound
    assert sorted(ran) == list(range(6))
    assert all(f.done() for f in futures)
    with pytest.raises(RuntimeError):
        pool.submit_for("TALPHA", job, 99)


def test_draining_reports_the_work_still_running_at_the_bound():
    pool = FairPool(max_workers=8, per_scope=2)
    busy = Busy()
    try:
        for i in range(5):
            pool.submit_for("TBETA", busy.job, "TBETA", f"b{i}")
        assert pool.drain(0.3) == 5  # the 3 waiting went to the pool too: all 5 still running
    finally:
        busy.release.set()


@pytest.fixture(params=["memory", "redis"])
def limits(request, redis_client, redis_prefix):
    backend = StubBackend() if request.param == "memory" else RedisBackend(client=redis_client)
    return CommandLimits(backend, redis_prefix, in_flight_per_user=5, per_workspace_minute=8)


def test_a_person_has_at_most_five_heavy_commands_in_flight(limits):
    held = [limits.take("TBETA", "UB0BEA") for _ in range(5)]
    assert not any(isinstance(h, Refusal) for h in held)
    sixth = limits.take("TBETA", "UB0BEA")
    assert isinstance(sixth, Refusal) and sixth.limit == "in_flight"
    assert "still working on your last 5 requests" in sixth.sentence
    # someone else of the same workspace, and the same person elsewhere, are not held up by it
    assert not isinstance(limits.take("TBETA", "UB0TOM"), Refusal)
    assert not isinstance(limits.take("TALPHA", "UB0BEA"), Refusal)
    limits.give_back(held[0])  # one finished: room for one more
    assert not isinstance(limits.take("TBETA", "UB0BEA"), Refusal)


def test_a_workspace_has_so_many_heavy_commands_a_minute(limits):
    if 60 - time.time() % 60 < 3:  # minutes are counted in fixed buckets: start in a fresh one
        time.sleep(60 - time.time() % 60 + 0.1)
    for i in range(8):  # B's people, each command done before the next: only the minute counts
        held = limits.take("TBETA", f"UB0{i:03d}")
        assert not isinstance(held, Refusal)
        limits.give_back(held)
    ninth = limits.take("TBETA", "UB0NEW")
    assert isinstance(ninth, Refusal) and ninth.limit == "workspace_rate"
    assert "try again in a minute" in ninth.sentence
    assert not isinstance(limits.take("TALPHA", "UA0ANA"), Refusal)  # another workspace's own minute
    # refused commands hold no slot of their person: still the minute that refuses, not in-flight
    for _ in range(6):
        assert limits.take("TBETA", "UB0NEW").limit == "workspace_rate"


def test_limits_are_not_applied_while_redis_is_away(redis_prefix):
    import redis

    away = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    limits = CommandLimits(RedisBackend(client=away), redis_prefix, 1, 1)
    held = limits.take("TBETA", "UB0BEA")
    assert not isinstance(held, Refusal)
    limits.give_back(held)
