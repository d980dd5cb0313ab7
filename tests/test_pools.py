"""Connection pools sized from the process's concurrency (issue 14): real Redis and PostgreSQL.

Every thread that uses the Redis store pins a connection of its own and takes one more from the
pool for a pipeline or a lock command; a pool sized for N threads serves N threads doing all of
that at once, and a pool too small for its demand waits (bounded) instead of failing the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from bot.store.base import POOL_WAIT_SECONDS, StoreUnavailable, pool_size
from bot.store.postgres import LOCKS_HELD_PER_THREAD, PostgresStore
from bot.store.redis import RedisStore
from tests.conftest import DATABASE_URL, REDIS_URL, bot_env, make_settings


def _all_at_once(threads: int, work: Callable[[int], None]) -> None:
    """Run `work(i)` on `threads` threads at the same moment; re-raise the first error."""
    start = threading.Barrier(threads)

    def run(i: int) -> None:
        start.wait(timeout=30)
        work(i)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(run, i) for i in range(threads)]:
            future.result(timeout=60)


def _hold_a_lock_and_use_the_store(store, n: int) -> Callable[[int], None]:
    """Each thread holds a lock (renewed, as an audit does) while it reads with its own
    connection, writes through scripts and runs pipelines, with every other thread doing the same."""
    holding = threading.Barrier(n)

    def work(i: int) -> None:
        with store.lock(f"job:audit:pool-{i}", ttl=10, wait=5, renew=True) as got:
            assert got
            holding.wait(timeout=30)  # every thread holds its lock now
            for round_no in range(10):
                store.put_doc("pool-test", f"k{i}", {"n": round_no})
                assert store.get_doc("pool-test", f"k{i}") == {"n": round_no}
                keys = [f"{i}:{round_no}:{k}" for k in range(300)]  # pipelines long enough to overlap
                store.mark_seen("pool-test", keys)
                assert store.seen("pool-test", keys) == set(keys)
                store.overview(global_doc_kinds=["pool-test"])  # a MULTI pipeline
                with store.lock(f"refresh:pool-{i}", ttl=10, wait=5) as inner:  # nested, as a refresh
                    assert inner

    return work


def test_a_redis_store_for_n_threads_serves_n_threads_holding_locks_with_reads_and_pipelines(
    cipher, redis_prefix
):
    n = 64  # the README's `zqbo worker --concurrency 64`: more than redis-py's default pool of 100 needs
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix, threads=n)
    try:
        pool = store._r.connection_pool
        assert pool.max_connections == pool_size(n, 2) == 2 * n + 8
        _all_at_once(n, _hold_a_lock_and_use_the_store(store, n))
        assert len(pool._connections) <= pool.max_connections
    finally:
        store.close()


def test_a_redis_pool_smaller_than_its_demand_waits_and_every_call_succeeds(cipher, redis_prefix):
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix, threads=2)  # 12 connections, 2 pinned
    try:
        pool = store._r.connection_pool
        assert pool.max_connections == 12
        _all_at_once(40, _hold_a_lock_and_use_the_store(store, 40))
        assert len(pool._connections) <= 12
    finally:
        store.close()


def test_a_dry_redis_pool_waits_for_a_connection_to_come_back(cipher, redis_prefix):
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix, threads=1)
    pool = store._r.connection_pool
    taken = [pool.get_connection() for _ in range(pool.max_connections)]
    try:
        threading.Timer(0.5, pool.release, args=(taken.pop(),)).start()
        started = time.monotonic()
        store.put_doc("pool-test", "k", {"n": 1})  # waits for the one given back
        assert 0.4 < time.monotonic() - started < POOL_WAIT_SECONDS
        assert store.get_doc("pool-test", "k") == {"n": 1}
    finally:
        for conn in taken:
            pool.release(conn)
        store.close()


def test_a_redis_pool_that_stays_dry_says_so_in_a_sentence(cipher, redis_prefix):
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix, threads=1)
    pool = store._r.connection_pool
    pool.timeout = 0.3  # instead of POOL_WAIT_SECONDS: the test need not wait 5 s
    taken = [pool.get_connection() for _ in range(pool.max_connections)]
    try:
        expected = (
            "Redis at 127.0.0.1:6379 answers, but all of zqbo's 10 connections to it stayed busy for 0.3 s"
        )
        with pytest.raises(StoreUnavailable) as read:
            store.get_doc("pool-test", "k")
        assert str(read.value) == expected
        with pytest.raises(StoreUnavailable) as locked, store.lock("job:audit:dry", ttl=5, wait=1):
            pass
        assert str(locked.value) == expected
    finally:
        for conn in taken:
            pool.release(conn)
    store.put_doc("pool-test", "k", {"n": 2})  # the pool has connections again: works at once
    assert store.get_doc("pool-test", "k") == {"n": 2}
    store.close()


def test_threads_beyond_the_pinned_ones_use_the_pool_and_never_starve_it(cipher, redis_prefix):
    store = RedisStore(REDIS_URL, cipher, prefix=redis_prefix, threads=2)
    try:
        _all_at_once(12, lambda i: store.put_doc("pool-test", f"k{i}", {"n": i}))
        assert len(store._clients) <= 2  # at most `threads` threads pin a connection
        assert len(store.list_docs("pool-test")) == 12
    finally:
        store.close()


@pytest.mark.parametrize("locks_on", ["postgres", "redis"])
def test_a_postgres_store_for_n_threads_serves_n_threads_holding_locks(
    cipher, pg_schema, redis_prefix, locks_on
):
    n = 16  # a lock held by each thread is a PostgreSQL session of its own without Redis
    store = PostgresStore(
        DATABASE_URL,
        cipher,
        schema=pg_schema,
        prefix=redis_prefix,
        redis_url=REDIS_URL if locks_on == "redis" else "",
        threads=n,
    )
    try:
        assert store._pool.max_size == pool_size(n) == n + 8
        if locks_on == "postgres":
            assert store._lock_pool is not None
            assert store._lock_pool.max_size == pool_size(n, LOCKS_HELD_PER_THREAD)
        else:
            assert store._r is not None and store._r.connection_pool.max_connections == pool_size(n)
        _all_at_once(n, _hold_a_lock_and_use_the_store(store, n))
    finally:
        store.close()


def test_build_services_sizes_every_redis_pool_from_the_concurrency(intuit, slack, redis_prefix):
    from bot.app import build_services, store_threads

    settings = make_settings(intuit, slack)
    for threads in (8, 64):
        services = build_services(settings, threads=threads)
        try:
            everyone = store_threads(settings, threads)
            assert everyone == threads + 72  # the background, after-ack and Bolt listener pools
            assert services.threads == everyone
            store = services.store.inner._r.connection_pool
            broker = services.engine.broker.client.connection_pool  # type: ignore[attr-defined]
            limits = services.qbo._limits._backend.client.connection_pool
            assert store.max_connections == pool_size(everyone, 2)
            assert broker.max_connections == limits.max_connections == pool_size(everyone)
        finally:
            services.engine.close()
            services.store.close()


@pytest.mark.parametrize(
    ("argv", "threads"),
    [
        (["worker", "--concurrency", "64"], 64),
        (["worker"], 32),
        (["check", "--concurrency", "48"], 48),
    ],
)
def test_the_pools_follow_the_command_line_concurrency(intuit, slack, monkeypatch, argv, threads):
    from bot import app, cli

    seen: list[int] = []

    class Stop(Exception):
        pass

    def build_services(settings, **kwargs):
        seen.append(kwargs["threads"])
        raise Stop

    monkeypatch.setattr(app, "build_services", build_services)
    monkeypatch.setattr(cli, "_say_if_store_is_down", lambda settings: None)
    env = bot_env(intuit, slack, "http://127.0.0.1:9", REDIS_URL=REDIS_URL, ZQBO_ALERT_CHANNEL="C0ALERTS")
    result = CliRunner().invoke(cli.main, argv, env=env)
    assert isinstance(result.exception, Stop), result.output
    assert seen == [threads]
