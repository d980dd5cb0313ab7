"""What only the PostgreSQL store has: its migrations, its two kinds of locks, and the sentence it
says when PostgreSQL is away. (The contract all stores share is in test_store_contract.py.)"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from bot.store.base import StoreUnavailable
from bot.store.postgres import MIGRATIONS, PostgresStore
from tests.conftest import DATABASE_URL, REDIS_URL
from tests.servers import PostgresServer, free_port, why_no_postgres_server


def _versions(store: PostgresStore) -> list[int]:
    with store._connection() as conn:
        return [v for (v,) in conn.execute("SELECT version FROM zqbo_schema ORDER BY version")]


def test_a_second_store_on_the_same_database_migrates_nothing(pg_schema, cipher):
    from tests.test_store_contract import make_connection

    first = PostgresStore(DATABASE_URL, cipher, schema=pg_schema)
    first.save_connection(make_connection("1"))
    second = PostgresStore(DATABASE_URL, cipher, schema=pg_schema)
    try:
        assert second.get_connection("1") == first.get_connection("1")  # same tables, kept
        assert _versions(second) == list(range(1, len(MIGRATIONS) + 1))  # each applied once
    finally:
        first.close()
        second.close()


def test_processes_starting_together_migrate_once(pg_schema, cipher):
    stores = [PostgresStore(DATABASE_URL, cipher, schema=pg_schema) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    problems: list[str] = []

    def start(store: PostgresStore) -> None:
        barrier.wait()
        problems.append(store.problem())

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert problems == [""] * len(stores)
        assert _versions(stores[0]) == list(range(1, len(MIGRATIONS) + 1))
    finally:
        for s in stores:
            s.close()


def test_with_redis_url_the_locks_are_redis_locks(pg_schema, cipher, redis_client, redis_prefix):
    store = PostgresStore(DATABASE_URL, cipher, schema=pg_schema, redis_url=REDIS_URL, prefix=redis_prefix)
    other = PostgresStore(DATABASE_URL, cipher, schema=pg_schema, redis_url=REDIS_URL, prefix=redis_prefix)
    try:
        with store.lock("refresh:1", ttl=1, wait=1, renew=True) as got:
            assert got and redis_client.exists(f"{redis_prefix}:lock:refresh:1")
            time.sleep(1.5)  # past its ttl: renewed while held
            with other.lock("refresh:1", ttl=1, wait=0.2) as again:
                assert not again
        with other.lock("refresh:1", ttl=1, wait=0.2) as again:
            assert again
        assert store.problem() == ""
    finally:
        store.close()
        other.close()


def test_an_advisory_lock_is_freed_when_its_holder_dies(pg_schema, cipher):
    """No ttl to wait out: the holder's session ends with its process, and the lock with it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from cryptography.fernet import Fernet
            from bot.store.crypto import TokenCipher
            from bot.store.postgres import PostgresStore
            store = PostgresStore({DATABASE_URL!r}, TokenCipher([Fernet.generate_key().decode()]),
                                  schema={pg_schema!r})
            with store.lock("job:audit:1", wait=5) as got:
                print("held" if got else "not held", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    store = PostgresStore(DATABASE_URL, cipher, schema=pg_schema)
    try:
        assert holder.stdout.readline().strip() == "held"
        with store.lock("job:audit:1", wait=0.2) as got:
            assert not got
        with store.lock("job:audit:2", wait=0) as got:
            assert got  # another name, another lock
        holder.kill()
        holder.wait(timeout=10)
        started = time.monotonic()
        with store.lock("job:audit:1", ttl=600, wait=5) as got:
            assert got and time.monotonic() - started < 2
    finally:
        holder.kill()
        holder.wait(timeout=10)
        store.close()


def test_a_lock_of_another_schema_is_another_lock(pg_schema, cipher, postgres):
    from psycopg import sql

    other_schema = f"{pg_schema}_b"
    postgres.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(other_schema)))
    one = PostgresStore(DATABASE_URL, cipher, schema=pg_schema)
    two = PostgresStore(DATABASE_URL, cipher, schema=other_schema)
    try:
        with one.lock("refresh:1", wait=1) as a, two.lock("refresh:1", wait=0.2) as b:
            assert a and b
    finally:
        one.close()
        two.close()
        postgres.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(other_schema)))


def test_postgres_away_is_said_in_a_sentence_without_the_password(cipher):
    port = free_port()
    store = PostgresStore(f"postgresql://zqbo:s3cret-pw@127.0.0.1:{port}/zqbo", cipher)
    sentence = f"PostgreSQL at 127.0.0.1:{port} refused the connection (is it running?)"
    try:
        assert store.problem() == sentence and not store.ping()
        for call in (lambda: store.get_connection("1"), store.change_marker, lambda: store.overview()):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as err:
                call()
            assert str(err.value) == sentence  # where, and what to check: never the password
            assert time.monotonic() - started < 1  # said at once, not after the pool's timeout
        with pytest.raises(StoreUnavailable, match="refused the connection"), store.lock("refresh:1"):
            pass
    finally:
        store.close()


def test_one_scheduler_leads_at_a_time_and_a_lost_session_hands_the_lease_on(pg_schema, cipher, postgres):
    from types import SimpleNamespace

    from bot.jobs.clock import Lease

    settings = SimpleNamespace(leader_lease_seconds=30, db_path="/nonexistent/unused")
    stores = [PostgresStore(DATABASE_URL, cipher, schema=pg_schema) for _ in range(2)]
    first, second = (Lease(SimpleNamespace(store=s, settings=settings)) for s in stores)
    try:
        assert first.hold() and not second.hold()
        assert first.hold() and not second.hold()  # each tick keeps it
        # The leader's session ends (PostgreSQL restarted, connection cut): its lock goes with it.
        postgres.execute("SELECT pg_terminate_backend(%s, 5000)", (first._session._conn.info.backend_pid,))
        assert second.hold() and not first.hold()  # and the old leader learns it at its next tick
        second.release()
        assert first.hold()
    finally:
        first.release()
        second.release()
        for s in stores:
            s.close()


def _doctor_store_line(intuit, slack, tmp_path, **env: str) -> tuple[str, str]:
    from tests.conftest import bot_env

    done = subprocess.run(
        [str(Path(sys.executable).parent / "zqbo"), "doctor"],
        env=bot_env(intuit, slack, "http://127.0.0.1:9", **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    [line] = [ln for ln in done.stdout.splitlines() if "store:" in ln]
    return line, done.stdout + done.stderr


def _schema_url(schema: str) -> str:
    """DATABASE_URL for a process of its own, its search_path set to the test's schema."""
    return f"{DATABASE_URL}{'&' if '?' in DATABASE_URL else '?'}options=-csearch_path%3D{schema}"


def test_doctor_names_postgres_and_where_its_locks_are(intuit, slack, tmp_path, pg_schema):
    url = _schema_url(pg_schema)
    line, _ = _doctor_store_line(intuit, slack, tmp_path, DATABASE_URL=url)
    assert line.startswith("ok") and "postgres answers at 127.0.0.1:5432 (locks in PostgreSQL)" in line
    line, _ = _doctor_store_line(intuit, slack, tmp_path, DATABASE_URL=url, REDIS_URL=REDIS_URL)
    assert "(locks on Redis)" in line


def test_doctor_says_why_postgres_is_away_without_the_password(intuit, slack, tmp_path):
    port = free_port()
    url = f"postgresql://zqbo:s3cret-pw@127.0.0.1:{port}/zqbo"
    line, output = _doctor_store_line(intuit, slack, tmp_path, DATABASE_URL=url)
    assert line.startswith("BAD") and f"PostgreSQL at 127.0.0.1:{port} refused the connection" in line
    assert "s3cret-pw" not in output and "Traceback" not in output


def test_the_bot_on_postgres_alone_connects_answers_refreshes_and_audits(intuit, slack, clock, pg_schema):
    import requests

    from tests.conftest import DEDICATED, REALM, make_settings, start_bot
    from tests.helpers import ack_message, card_text, command, connect

    settings = make_settings(intuit, slack, REDIS_URL="", DATABASE_URL=_schema_url(pg_schema))
    server, bot = start_bot(settings, clock)  # the store as `zqbo serve` opens it: from the settings
    try:
        assert requests.get(f"{bot.url}/healthz", timeout=10).json() == {"ok": True, "store": "postgres"}
        assert "That is the dedicated integration user" in connect(slack, intuit, bot, as_user=DEDICATED).text
        resp, first = command(slack, bot, "status")
        assert "Acme Payments Ltd" in card_text(ack_message(resp))
        slack.wait_for_responses(first, 1)  # its live probe is over: the next one is a new one
        clock.advance(3700)  # the access token has expired: the live probe refreshes it, under a lock
        resp, response_url = command(slack, bot, "status")
        [live] = slack.wait_for_responses(response_url, 1)
        assert "QuickBooks answered" in card_text(live)
        stored = bot.services.store.get_connection(REALM)
        assert stored.refresh_token == intuit.current_refresh_token(REALM) and stored.token_generation == 1

        # The scheduler: this process takes the leader lease (an advisory lock) and hands the due
        # audit to its own thread pool.
        from bot.jobs.clock import Clock

        ticker = Clock(bot.services, bot.services.engine)
        bot.services.store.schedule_set("audit", REALM, 0)
        ticker.tick()
        deadline = time.monotonic() + 20
        while bot.services.store.last_check(REALM, "audit") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ticker.lease.held and bot.services.store.last_check(REALM, "audit").ok
        ticker.lease.release()
    finally:
        server.shutdown()
        bot.services.store.close()


@pytest.fixture
def own_postgres():
    if why := why_no_postgres_server():
        pytest.skip(why)
    with tempfile.TemporaryDirectory(prefix="zqbo-pg-") as workdir:
        server = PostgresServer(Path(workdir))
        server.start()
        yield server
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()


def test_postgres_stopped_and_started_again_needs_no_restart_of_zqbo(own_postgres, cipher):
    store = PostgresStore(own_postgres.url, cipher)
    sentence = f"PostgreSQL at 127.0.0.1:{own_postgres.port} refused the connection (is it running?)"
    try:
        store.put_doc("alert", "a", {"state": "firing"})
        with store.lock("refresh:1", wait=1) as got:
            assert got
        own_postgres.stop()
        with pytest.raises(StoreUnavailable, match=re.escape(sentence)):
            store.get_doc("alert", "a")  # this one waits out the pool (5 s): its connection is dead
        started = time.monotonic()
        assert store.problem() == sentence and time.monotonic() - started < 1  # the next ones: at once
        with pytest.raises(StoreUnavailable, match=re.escape(sentence)), store.lock("refresh:1", wait=1):
            pass
        own_postgres.start()  # back, with its data: nothing to restart
        assert store.problem() == "" and store.get_doc("alert", "a") == {"state": "firing"}
        with store.lock("refresh:1", wait=1) as got:
            assert got
    finally:
        store.close()
