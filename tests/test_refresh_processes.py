"""Separate OS processes needing a refresh at the same moment: exactly one reaches Intuit and
every process ends up with the rotated tokens. Once on the SQLite store (file lock), once on
Redis (Redis lock)."""

from __future__ import annotations

import multiprocessing as mp
from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.app import build_services
from bot.clock import FakeClock
from bot.config import load_settings
from bot.store.crypto import TokenCipher
from bot.store.redis import RedisStore
from bot.store.sqlite import SQLiteStore
from tests.conftest import DEDICATED, REALM, REDIS_URL, bot_env, make_settings, start_bot
from tests.helpers import connect

WORKERS = 4


def _child(env: dict[str, Any], backend: str, where: str, now: str, barrier, results) -> None:
    settings = load_settings(_env_file=None, **env)
    cipher = TokenCipher([env["ZQBO_ENCRYPTION_KEY"]])  # conftest makes a new key per import
    store = SQLiteStore(where, cipher) if backend == "sqlite" else RedisStore(REDIS_URL, cipher, prefix=where)
    clock = FakeClock(datetime.fromisoformat(now))
    services = build_services(settings, store=store, clock=clock)
    barrier.wait(timeout=30)
    try:
        results.put(services.connections.valid(REALM).access_token)
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(f"error: {exc!r}")
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_processes_refresh_once(backend, intuit, slack, clock, tmp_path, redis_prefix, cipher):
    settings = make_settings(intuit, slack)
    if backend == "sqlite":
        where = str(tmp_path / "zqbo.db")
        store = SQLiteStore(where, cipher)
    else:
        where = redis_prefix
        store = RedisStore(REDIS_URL, cipher, prefix=where)
    server, bot = start_bot(settings, clock, store=store)
    try:
        connect(slack, intuit, bot, as_user=DEDICATED)
        before = store.get_connection(REALM)
        later = (clock.now() + timedelta(seconds=3700)).isoformat()
        env = bot_env(intuit, slack, bot.url)
        if backend == "redis":
            env["REDIS_URL"] = REDIS_URL
        clock.advance(3700)  # the emulator agrees the access token has expired
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(WORKERS)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_child, args=(env, backend, where, later, barrier, results))
            for _ in range(WORKERS)
        ]
        for p in procs:
            p.start()
        tokens = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert not [t for t in tokens if t.startswith("error")], tokens
        assert intuit.count("token", grant_type="refresh_token") == 1
        assert len(set(tokens)) == 1
        after = store.get_connection(REALM)
        assert after.refresh_token == intuit.current_refresh_token(REALM) != before.refresh_token
        assert after.access_token == tokens[0]
    finally:
        server.shutdown()
        store.close()
